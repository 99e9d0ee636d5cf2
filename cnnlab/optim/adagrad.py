"""Adagrad: each entry's step shrinks with the sum of its squared gradients so far."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from cnnlab.optim.optimizer import Optimizer, check_number

__all__ = ["Adagrad"]


class Adagrad(Optimizer):
    r"""Adagrad, with the same update rule as ``torch.optim.Adagrad``.

    For each parameter ``p`` with gradient ``g``, at step ``t = 1, 2, ...``::

        g = g + weight_decay * p                         (if weight_decay != 0)
        s = s + g * g                 (s starts at initial_accumulator_value)
        p = p - lr / (1 + (t - 1) * lr_decay) * g / (sqrt(s) + eps)

    The state of parameter ``i`` is ``state[i]``: ``"step"`` (int) and ``"sum"`` (s). It is
    created on the parameter's first step (PyTorch creates it in the constructor; the
    updates are the same).

    Args:
        params: parameters, or parameter-group dicts (see ``Optimizer``).
        lr: learning rate, >= 0.
        lr_decay: the learning rate is divided by ``1 + (t - 1) * lr_decay``, >= 0.
        weight_decay: L2 penalty coefficient, >= 0 (added to the gradient).
        initial_accumulator_value: starting value of every entry of ``s``, >= 0.
        eps: added to the denominator for numerical stability, >= 0.

    Raises:
        ValueError: a hyperparameter is out of range.
        TypeError: a hyperparameter has the wrong type.

    Example:
        >>> import numpy as np
        >>> from cnnlab.nn import Parameter
        >>> from cnnlab.optim import Adagrad
        >>> w = Parameter(np.array([1.0, -2.0], dtype=np.float32))
        >>> opt = Adagrad([w], lr=0.1)
        >>> for _ in range(4):
        ...     w.grad = np.array([3.0, -0.5], dtype=np.float32)
        ...     opt.step()  # steps of lr / sqrt(t) against the gradient: 0.1 + 0.0707 + ...
        >>> w.data.round(4)
        array([ 0.7216, -1.7216], dtype=float32)
    """

    _scalar_state = frozenset({"step"})

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-2,
        lr_decay: float = 0,
        weight_decay: float = 0,
        initial_accumulator_value: float = 0,
        eps: float = 1e-10,
    ) -> None:
        defaults = {
            "lr": lr,
            "lr_decay": lr_decay,
            "weight_decay": weight_decay,
            "initial_accumulator_value": initial_accumulator_value,
            "eps": eps,
        }
        super().__init__(params, defaults)

    def _check_group(self, group: dict[str, Any]) -> None:
        group["lr"] = check_number("Adagrad", "lr", group["lr"], 0)
        group["lr_decay"] = check_number("Adagrad", "lr_decay", group["lr_decay"], 0)
        group["weight_decay"] = check_number("Adagrad", "weight_decay", group["weight_decay"], 0)
        group["initial_accumulator_value"] = check_number(
            "Adagrad", "initial_accumulator_value", group["initial_accumulator_value"], 0
        )
        group["eps"] = check_number("Adagrad", "eps", group["eps"], 0)

    def _state_names(self, group: dict[str, Any]) -> tuple[set[str], set[str]]:
        return {"step", "sum"}, {"step", "sum"}

    def _update(
        self, index: int, param: Any, grad: np.ndarray, state: dict[str, Any], group: dict
    ) -> None:
        data = param.data
        if not state:
            state["step"] = 0
            state["sum"] = np.full_like(data, group["initial_accumulator_value"])
        state["step"] += 1
        total = state["sum"]
        work = self._work_array(index, data)

        if group["weight_decay"] != 0:
            g = np.multiply(data, group["weight_decay"], out=self._work_array(index, data, 1))
            g += grad
            grad = g

        clr = group["lr"] / (1 + (state["step"] - 1) * group["lr_decay"])
        np.multiply(grad, grad, out=work)
        total += work
        std = np.sqrt(total, out=work)
        std += group["eps"]
        update = np.divide(grad, std, out=work)
        update *= clr
        data -= update
