"""Adadelta: step sizes from running averages of squared gradients and squared updates."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from cnnlab.optim.optimizer import Optimizer, check_number

__all__ = ["Adadelta"]


class Adadelta(Optimizer):
    r"""Adadelta, with the same update rule as ``torch.optim.Adadelta``.

    For each parameter ``p`` with gradient ``g``::

        g = g + weight_decay * p                         (if weight_decay != 0)
        v = rho * v + (1 - rho) * g * g
        delta = sqrt(u + eps) / sqrt(v + eps) * g
        u = rho * u + (1 - rho) * delta * delta
        p = p - lr * delta

    The update is in the units of the parameter (the ratio of the two running root mean
    squares), so the default ``lr=1.0`` is the algorithm as published; ``lr`` scales it as in
    PyTorch. The state of parameter ``i`` is ``state[i]``: ``"step"`` (int), ``"square_avg"``
    (v) and ``"acc_delta"`` (u), both starting at zero.

    Args:
        params: parameters, or parameter-group dicts (see ``Optimizer``).
        lr: factor applied to every update, >= 0.
        rho: decay rate of both running averages, in [0, 1].
        eps: added inside both square roots, >= 0; it also sets the size of the first
            updates (about ``sqrt(eps)``).
        weight_decay: L2 penalty coefficient, >= 0 (added to the gradient).

    Raises:
        ValueError: a hyperparameter is out of range.
        TypeError: a hyperparameter has the wrong type.

    Example:
        >>> import numpy as np
        >>> from cnnlab.nn import Parameter
        >>> from cnnlab.optim import Adadelta
        >>> w = Parameter(np.array([1.0, -2.0], dtype=np.float32))
        >>> opt = Adadelta([w], lr=1.0)
        >>> w.grad = np.array([3.0, -0.5], dtype=np.float32)
        >>> opt.step()  # the first update is sqrt(eps / (1 - rho)) in size: about 3e-3
        >>> (w.data - [1.0, -2.0]).round(5)
        array([-0.00316,  0.00316])
    """

    _scalar_state = frozenset({"step"})

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1.0,
        rho: float = 0.9,
        eps: float = 1e-6,
        weight_decay: float = 0,
    ) -> None:
        defaults = {"lr": lr, "rho": rho, "eps": eps, "weight_decay": weight_decay}
        super().__init__(params, defaults)

    def _check_group(self, group: dict[str, Any]) -> None:
        group["lr"] = check_number("Adadelta", "lr", group["lr"], 0)
        group["rho"] = check_number("Adadelta", "rho", group["rho"], 0, 1)
        group["eps"] = check_number("Adadelta", "eps", group["eps"], 0)
        group["weight_decay"] = check_number("Adadelta", "weight_decay", group["weight_decay"], 0)

    def _state_names(self, group: dict[str, Any]) -> tuple[set[str], set[str]]:
        names = {"step", "square_avg", "acc_delta"}
        return names, names

    def _update(
        self, index: int, param: Any, grad: np.ndarray, state: dict[str, Any], group: dict
    ) -> None:
        rho, eps = group["rho"], group["eps"]
        data = param.data
        if not state:
            state["step"] = 0
            state["square_avg"] = np.zeros_like(data)
            state["acc_delta"] = np.zeros_like(data)
        state["step"] += 1
        square_avg, acc_delta = state["square_avg"], state["acc_delta"]
        work = self._work_array(index, data)
        delta = self._work_array(index, data, slot=1)

        if group["weight_decay"] != 0:
            g = np.multiply(data, group["weight_decay"], out=self._work_array(index, data, 2))
            g += grad
            grad = g

        # v <- rho * v + (1 - rho) * g * g
        square_avg *= rho
        np.multiply(grad, 1 - rho, out=work)
        work *= grad
        square_avg += work
        # delta <- sqrt(u + eps) / sqrt(v + eps) * g
        std = np.add(square_avg, eps, out=work)
        np.sqrt(std, out=std)
        np.add(acc_delta, eps, out=delta)
        np.sqrt(delta, out=delta)
        delta /= std
        delta *= grad
        # u <- rho * u + (1 - rho) * delta * delta
        acc_delta *= rho
        np.multiply(delta, 1 - rho, out=work)
        work *= delta
        acc_delta += work

        delta *= group["lr"]
        data -= delta
