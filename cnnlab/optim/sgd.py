"""Stochastic gradient descent with optional momentum, dampening, Nesterov and L2 decay."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from cnnlab.optim.optimizer import Optimizer, check_flag, check_number

__all__ = ["SGD"]


class SGD(Optimizer):
    r"""Stochastic gradient descent, with the same update rule as ``torch.optim.SGD``.

    For each parameter ``p`` with gradient ``g``, at step ``t``::

        g = g + weight_decay * p                       (if weight_decay != 0)
        b = g                                          (first step)
        b = momentum * b + (1 - dampening) * g         (later steps)
        g = g + momentum * b   if nesterov   else b    (if momentum != 0)
        p = p - lr * g

    The momentum buffer ``b`` is stored as ``state[i]["momentum_buffer"]``.

    Args:
        params: parameters, or parameter-group dicts (see ``Optimizer``).
        lr: learning rate, >= 0.
        momentum: momentum factor, in [0, 1).
        dampening: dampening of the gradient added to the momentum buffer, in [0, 1].
        weight_decay: L2 penalty coefficient, >= 0 (added to the gradient).
        nesterov: use Nesterov momentum (needs momentum > 0 and dampening = 0).

    Raises:
        ValueError: a hyperparameter is out of range, or nesterov is set without momentum
            or with dampening.
        TypeError: a hyperparameter has the wrong type.

    Example:
        >>> import numpy as np
        >>> from cnnlab.nn import Parameter
        >>> from cnnlab.optim import SGD
        >>> w = Parameter(np.array([1.0, -2.0], dtype=np.float32))
        >>> opt = SGD([w], lr=0.1, momentum=0.9)
        >>> w.grad = np.array([1.0, 1.0], dtype=np.float32)
        >>> opt.step()
        >>> w.data
        array([ 0.9, -2.1], dtype=float32)
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float,
        momentum: float = 0,
        dampening: float = 0,
        weight_decay: float = 0,
        nesterov: bool = False,
    ) -> None:
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "dampening": dampening,
            "weight_decay": weight_decay,
            "nesterov": nesterov,
        }
        super().__init__(params, defaults)

    def _check_group(self, group: dict[str, Any]) -> None:
        group["lr"] = check_number("SGD", "lr", group["lr"], 0)
        group["momentum"] = check_number("SGD", "momentum", group["momentum"], 0, 1, high_open=True)
        group["dampening"] = check_number("SGD", "dampening", group["dampening"], 0, 1)
        group["weight_decay"] = check_number("SGD", "weight_decay", group["weight_decay"], 0)
        group["nesterov"] = check_flag("SGD", "nesterov", group["nesterov"])
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError(
                "SGD: nesterov=True needs momentum > 0 and dampening = 0, got momentum="
                f"{group['momentum']!r}, dampening={group['dampening']!r}"
            )

    def _state_names(self, group: dict[str, Any]) -> tuple[set[str], set[str]]:
        required = {"momentum_buffer"} if group["momentum"] != 0 else set()
        return required, {"momentum_buffer"}

    def _update(
        self, index: int, param: Any, grad: np.ndarray, state: dict[str, Any], group: dict
    ) -> None:
        lr = group["lr"]
        momentum = group["momentum"]
        dampening = group["dampening"]
        weight_decay = group["weight_decay"]
        data = param.data
        work = self._work_array(index, data)

        # `d_p` is the direction; `owned` says whether it lives in a work array (and so may
        # be overwritten) or is somebody else's array (the gradient or the momentum buffer).
        d_p, owned = grad, False
        if weight_decay != 0:
            d_p = np.multiply(data, weight_decay, out=work)
            d_p += grad
            owned = True

        if momentum != 0:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = np.array(d_p, dtype=data.dtype, copy=True)
            else:
                buf *= momentum
                if dampening == 0:
                    buf += d_p
                else:
                    # Nesterov is off here (it needs dampening 0): d_p is not needed again.
                    buf += np.multiply(d_p, 1 - dampening, out=work)
            if group["nesterov"]:
                out = self._work_array(index, data, slot=1) if owned else work
                np.multiply(buf, momentum, out=out)
                out += d_p
                d_p, owned = out, True
            else:
                d_p, owned = buf, False

        if owned:
            d_p *= lr
        else:
            d_p = np.multiply(d_p, lr, out=work)
        data -= d_p
