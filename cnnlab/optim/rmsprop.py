"""RMSprop: gradients divided by a running root mean square of their recent values."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from cnnlab.optim.adam import _lerp_
from cnnlab.optim.optimizer import Optimizer, check_flag, check_number

__all__ = ["RMSprop"]


class RMSprop(Optimizer):
    r"""RMSprop, with the same update rule as ``torch.optim.RMSprop``.

    For each parameter ``p`` with gradient ``g``::

        g = g + weight_decay * p                         (if weight_decay != 0)
        v = alpha * v + (1 - alpha) * g * g
        m = alpha * m + (1 - alpha) * g                  (if centered)
        avg = sqrt(v - m * m) + eps   if centered   else sqrt(v) + eps
        b = momentum * b + g / avg                       (if momentum != 0)
        p = p - lr * b   if momentum != 0   else p - lr * g / avg

    ``eps`` is added outside the square root, as in PyTorch (Keras adds it inside). The
    state of parameter ``i`` is ``state[i]``: ``"step"`` (int), ``"square_avg"`` (v) and,
    when used, ``"momentum_buffer"`` (b) and ``"grad_avg"`` (m), all starting at zero.

    Args:
        params: parameters, or parameter-group dicts (see ``Optimizer``).
        lr: learning rate, >= 0.
        alpha: decay rate of the running averages, in [0, 1].
        eps: added to the denominator for numerical stability, >= 0.
        weight_decay: L2 penalty coefficient, >= 0 (added to the gradient).
        momentum: momentum factor, in [0, 1).
        centered: divide by an estimate of the gradient's standard deviation (its mean
            square minus its squared mean) instead of its root mean square.

    Raises:
        ValueError: a hyperparameter is out of range.
        TypeError: a hyperparameter has the wrong type.

    Example:
        >>> import numpy as np
        >>> from cnnlab.nn import Parameter
        >>> from cnnlab.optim import RMSprop
        >>> w = Parameter(np.array([1.0, -2.0], dtype=np.float32))
        >>> opt = RMSprop([w], lr=0.01)
        >>> w.grad = np.array([3.0, -0.5], dtype=np.float32)
        >>> opt.step()  # first step: g / sqrt(0.01 * g * g) = 10 * sign(g), times lr
        >>> w.data
        array([ 0.9, -1.9], dtype=float32)
    """

    _scalar_state = frozenset({"step"})

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0,
        momentum: float = 0,
        centered: bool = False,
    ) -> None:
        defaults = {
            "lr": lr,
            "alpha": alpha,
            "eps": eps,
            "weight_decay": weight_decay,
            "momentum": momentum,
            "centered": centered,
        }
        super().__init__(params, defaults)

    def _check_group(self, group: dict[str, Any]) -> None:
        group["lr"] = check_number("RMSprop", "lr", group["lr"], 0)
        group["alpha"] = check_number("RMSprop", "alpha", group["alpha"], 0, 1)
        group["eps"] = check_number("RMSprop", "eps", group["eps"], 0)
        group["weight_decay"] = check_number("RMSprop", "weight_decay", group["weight_decay"], 0)
        group["momentum"] = check_number(
            "RMSprop", "momentum", group["momentum"], 0, 1, high_open=True
        )
        group["centered"] = check_flag("RMSprop", "centered", group["centered"])

    def _state_names(self, group: dict[str, Any]) -> tuple[set[str], set[str]]:
        required = {"step", "square_avg"}
        if group["momentum"] != 0:
            required.add("momentum_buffer")
        if group["centered"]:
            required.add("grad_avg")
        return required, {"step", "square_avg", "momentum_buffer", "grad_avg"}

    def _update(
        self, index: int, param: Any, grad: np.ndarray, state: dict[str, Any], group: dict
    ) -> None:
        alpha, momentum = group["alpha"], group["momentum"]
        data = param.data
        if not state:
            state["step"] = 0
            state["square_avg"] = np.zeros_like(data)
        if momentum != 0 and "momentum_buffer" not in state:
            state["momentum_buffer"] = np.zeros_like(data)
        if group["centered"] and "grad_avg" not in state:
            state["grad_avg"] = np.zeros_like(data)
        state["step"] += 1
        square_avg = state["square_avg"]
        work = self._work_array(index, data)
        avg = self._work_array(index, data, slot=1)

        if group["weight_decay"] != 0:
            g = np.multiply(data, group["weight_decay"], out=self._work_array(index, data, 2))
            g += grad
            grad = g

        # v <- alpha * v + (1 - alpha) * g * g
        square_avg *= alpha
        np.multiply(grad, 1 - alpha, out=work)
        work *= grad
        square_avg += work
        if group["centered"]:
            grad_avg = state["grad_avg"]
            _lerp_(grad_avg, grad, 1 - alpha, work)
            np.multiply(grad_avg, grad_avg, out=avg)
            np.subtract(square_avg, avg, out=avg)
            np.sqrt(avg, out=avg)
        else:
            np.sqrt(square_avg, out=avg)
        avg += group["eps"]

        update = np.divide(grad, avg, out=work)
        if momentum != 0:
            buf = state["momentum_buffer"]
            buf *= momentum
            buf += update
            update = np.multiply(buf, group["lr"], out=work)
        else:
            update *= group["lr"]
        data -= update
