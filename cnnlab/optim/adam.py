"""Adam and AdamW: adaptive moment estimation, with L2 or decoupled weight decay."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from cnnlab.optim.optimizer import Optimizer, check_flag, check_number

__all__ = ["Adam", "AdamW"]


class Adam(Optimizer):
    r"""Adam, with the same update rule as ``torch.optim.Adam``.

    For each parameter ``p`` with gradient ``g``, at step ``t = 1, 2, ...``::

        g = g + weight_decay * p                       (if weight_decay != 0)
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        v_max = max(v_max, v)                          (if amsgrad; then v_max replaces v)
        p = p - lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)

    The bias corrections divide, so the first steps are not shrunk towards zero. The state
    of parameter ``i`` is ``state[i]``: ``"step"`` (int), ``"exp_avg"`` (m),
    ``"exp_avg_sq"`` (v) and, with amsgrad, ``"max_exp_avg_sq"``.

    Args:
        params: parameters, or parameter-group dicts (see ``Optimizer``).
        lr: learning rate, >= 0.
        betas: decay rates ``(beta1, beta2)`` of the moment averages, each in [0, 1).
        eps: added to the denominator for numerical stability, >= 0.
        weight_decay: L2 penalty coefficient, >= 0 (added to the gradient).
        amsgrad: use the running maximum of ``v`` (AMSGrad).

    Raises:
        ValueError: a hyperparameter is out of range.
        TypeError: a hyperparameter has the wrong type.

    Example:
        >>> import numpy as np
        >>> from cnnlab.nn import Parameter
        >>> from cnnlab.optim import Adam
        >>> w = Parameter(np.array([1.0, -2.0], dtype=np.float32))
        >>> opt = Adam([w], lr=0.1)
        >>> w.grad = np.array([3.0, -0.5], dtype=np.float32)
        >>> opt.step()  # the first step moves every entry by about lr
        >>> w.data
        array([ 0.9, -1.9], dtype=float32)
    """

    _scalar_state = frozenset({"step"})
    # AdamW sets this: decay multiplies the parameter instead of joining the gradient.
    _decoupled_weight_decay = False

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        amsgrad: bool = False,
    ) -> None:
        defaults = {
            "lr": lr,
            "betas": betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "amsgrad": amsgrad,
        }
        super().__init__(params, defaults)

    def _check_group(self, group: dict[str, Any]) -> None:
        owner = type(self).__name__
        group["lr"] = check_number(owner, "lr", group["lr"], 0)
        betas = group["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"{owner}: betas must be a pair (beta1, beta2), got {betas!r}")
        group["betas"] = (
            check_number(owner, "betas[0]", betas[0], 0, 1, high_open=True),
            check_number(owner, "betas[1]", betas[1], 0, 1, high_open=True),
        )
        group["eps"] = check_number(owner, "eps", group["eps"], 0)
        group["weight_decay"] = check_number(owner, "weight_decay", group["weight_decay"], 0)
        group["amsgrad"] = check_flag(owner, "amsgrad", group["amsgrad"])

    def _state_names(self, group: dict[str, Any]) -> tuple[set[str], set[str]]:
        required = {"step", "exp_avg", "exp_avg_sq"}
        allowed = required | {"max_exp_avg_sq"}
        return (allowed if group["amsgrad"] else required), allowed

    def _update(
        self, index: int, param: Any, grad: np.ndarray, state: dict[str, Any], group: dict
    ) -> None:
        lr = group["lr"]
        beta1, beta2 = group["betas"]
        eps = group["eps"]
        weight_decay = group["weight_decay"]
        data = param.data
        if not state:
            state["step"] = 0
            state["exp_avg"] = np.zeros_like(data)
            state["exp_avg_sq"] = np.zeros_like(data)
        if group["amsgrad"] and "max_exp_avg_sq" not in state:
            state["max_exp_avg_sq"] = np.zeros_like(data)
        state["step"] += 1
        step = state["step"]
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        work = self._work_array(index, data)

        if weight_decay != 0:
            if self._decoupled_weight_decay:
                data *= 1 - lr * weight_decay
            else:
                g = np.multiply(data, weight_decay, out=self._work_array(index, data, slot=1))
                g += grad
                grad = g

        # v <- beta2 * v + (1 - beta2) * g * g
        exp_avg_sq *= beta2
        np.multiply(grad, 1 - beta2, out=work)
        work *= grad
        exp_avg_sq += work
        # m <- m + (1 - beta1) * (g - m): the same interpolation torch uses.
        _lerp_(exp_avg, grad, 1 - beta1, work)

        bias_correction1 = 1 - beta1**step
        bias_correction2_sqrt = math.sqrt(1 - beta2**step)
        step_size = lr / bias_correction1
        if group["amsgrad"]:
            second = np.maximum(state["max_exp_avg_sq"], exp_avg_sq, out=state["max_exp_avg_sq"])
        else:
            second = exp_avg_sq
        denom = np.sqrt(second, out=work)
        denom /= bias_correction2_sqrt
        denom += eps
        update = np.divide(exp_avg, denom, out=work)
        update *= step_size
        data -= update


class AdamW(Adam):
    r"""Adam with decoupled weight decay, with the same update rule as ``torch.optim.AdamW``.

    The decay shrinks the parameter directly, ``p = p * (1 - lr * weight_decay)``, before
    the Adam step, instead of adding ``weight_decay * p`` to the gradient; so it is not
    rescaled by the adaptive denominator.

    Args:
        params: parameters, or parameter-group dicts (see ``Optimizer``).
        lr: learning rate, >= 0.
        betas: decay rates ``(beta1, beta2)`` of the moment averages, each in [0, 1).
        eps: added to the denominator for numerical stability, >= 0.
        weight_decay: decoupled decay coefficient, >= 0.
        amsgrad: use the running maximum of the second moment (AMSGrad).

    Raises:
        ValueError: a hyperparameter is out of range.
        TypeError: a hyperparameter has the wrong type.

    Example:
        >>> import numpy as np
        >>> from cnnlab.nn import Parameter
        >>> from cnnlab.optim import AdamW
        >>> w = Parameter(np.array([1.0, -2.0], dtype=np.float32))
        >>> opt = AdamW([w], lr=0.1, weight_decay=0.5)
        >>> w.grad = np.zeros(2, dtype=np.float32)
        >>> opt.step()  # no gradient: only the decay acts, p *= 1 - 0.1 * 0.5
        >>> w.data
        array([ 0.95, -1.9 ], dtype=float32)
    """

    _decoupled_weight_decay = True

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
    ) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad)


def _lerp_(start: np.ndarray, end: np.ndarray, weight: float, work: np.ndarray) -> None:
    """start <- start + weight * (end - start), in place, rounded as torch.lerp rounds."""
    np.subtract(end, start, out=work)
    if weight < 0.5:
        work *= weight
        start += work
    else:
        # Near weight 1 torch computes from the end, which keeps the result close to it.
        work *= 1 - weight
        np.subtract(end, work, out=start)
