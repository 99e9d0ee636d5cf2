"""Learning-rate schedules: set each group's ``lr`` from the epoch count.

Each schedule is a closed-form function of ``last_epoch`` and the groups' initial learning
rates, so a schedule restored from ``state_dict`` continues exactly where it stopped.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from cnnlab.optim.optimizer import Optimizer, check_number

__all__ = ["LRScheduler", "StepLR", "CosineAnnealingLR"]


class LRScheduler:
    """Base class of learning-rate schedules, used like ``torch.optim.lr_scheduler``.

    Construction records each group's starting rate as ``group["initial_lr"]`` (kept if
    already there) into ``base_lrs`` and applies epoch 0. Each ``step()`` (call it once per
    epoch, after that epoch's ``optimizer.step()`` calls) advances ``last_epoch`` by one
    and writes the new rates into ``optimizer.param_groups``. Subclasses define
    ``_lr_at(epoch, base_lr)`` and ``_hyperparameters()``.

    Args:
        optimizer: the optimizer whose groups' ``lr`` this schedule sets.

    Raises:
        TypeError: ``optimizer`` is not a cnnlab optimizer.
    """

    def __init__(self, optimizer: Optimizer) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(
                f"{type(self).__name__}: expected a cnnlab.optim optimizer, got "
                f"{type(optimizer).__name__}"
            )
        self.optimizer = optimizer
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        self.base_lrs = [float(group["initial_lr"]) for group in optimizer.param_groups]
        self.last_epoch = -1
        self._last_lr: list[float] = []
        self.step()

    def _lr_at(self, epoch: int, base_lr: float) -> float:
        raise NotImplementedError

    def _hyperparameters(self) -> dict[str, Any]:
        raise NotImplementedError

    def _set_hyperparameters(self, values: dict[str, Any]) -> None:
        raise NotImplementedError

    def get_lr(self) -> list[float]:
        """Return the learning rate of each group at ``last_epoch``."""
        return [self._lr_at(self.last_epoch, base_lr) for base_lr in self.base_lrs]

    def step(self) -> None:
        """Advance one epoch and set every group's ``lr`` to its scheduled value."""
        self.last_epoch += 1
        self._apply()

    def _apply(self) -> None:
        self._last_lr = self.get_lr()
        for group, lr in zip(self.optimizer.param_groups, self._last_lr, strict=True):
            group["lr"] = lr

    def get_last_lr(self) -> list[float]:
        """Return the learning rates the last ``step()`` (or construction) set, per group."""
        return list(self._last_lr)

    def state_dict(self) -> dict[str, Any]:
        """Return the schedule's state as a JSON-serializable dict.

        Returns:
            ``{"type": class name, "last_epoch": int, "base_lrs": [float], ...}`` plus the
            schedule's hyperparameters.
        """
        return {
            "type": type(self).__name__,
            "last_epoch": self.last_epoch,
            "base_lrs": list(self.base_lrs),
            **self._hyperparameters(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a state from ``state_dict()`` and set the groups' ``lr`` to match it.

        Args:
            state_dict: a dict from ``state_dict()`` (possibly after a JSON round trip).

        Raises:
            ValueError: the dict is from another kind of schedule, is missing entries, has
                a different number of groups, or holds out-of-range values.
        """
        name = type(self).__name__
        expected = {"type", "last_epoch", "base_lrs", *self._hyperparameters()}
        if not isinstance(state_dict, dict) or set(state_dict) != expected:
            found = sorted(state_dict) if isinstance(state_dict, dict) else type(state_dict)
            raise ValueError(
                f"{name}.load_state_dict: expected a dict with keys {sorted(expected)}, got {found}"
            )
        if state_dict["type"] != name:
            raise ValueError(
                f"{name}.load_state_dict: the state_dict is from a {state_dict['type']}; "
                f"load it into a {state_dict['type']}"
            )
        last_epoch = state_dict["last_epoch"]
        if isinstance(last_epoch, bool) or not isinstance(last_epoch, int) or last_epoch < 0:
            raise ValueError(
                f"{name}.load_state_dict: last_epoch must be an int >= 0, got {last_epoch!r}"
            )
        base_lrs = state_dict["base_lrs"]
        groups = len(self.optimizer.param_groups)
        if not isinstance(base_lrs, list) or len(base_lrs) != groups:
            raise ValueError(
                f"{name}.load_state_dict: base_lrs must be a list of {groups} learning "
                f"rates (one per parameter group), got {base_lrs!r}"
            )
        base_lrs = [check_number(name, f"base_lrs[{i}]", lr, 0) for i, lr in enumerate(base_lrs)]
        # Validate the hyperparameters on a copy first, so a bad dict changes nothing.
        hyper = {key: state_dict[key] for key in self._hyperparameters()}
        saved = self._hyperparameters()
        try:
            self._set_hyperparameters(hyper)
        except (TypeError, ValueError):
            self._set_hyperparameters(saved)
            raise
        self.base_lrs = base_lrs
        self.last_epoch = last_epoch
        self._apply()

    def __repr__(self) -> str:
        hyper = ", ".join(f"{key}={value!r}" for key, value in self._hyperparameters().items())
        return f"{type(self).__name__}({hyper}, last_epoch={self.last_epoch})"


class StepLR(LRScheduler):
    r"""Multiply the learning rate by ``gamma`` every ``step_size`` epochs.

    ``lr = base_lr * gamma ** (epoch // step_size)``, matching
    ``torch.optim.lr_scheduler.StepLR``.

    Args:
        optimizer: the optimizer whose groups' ``lr`` this schedule sets.
        step_size: epochs between decays, an int >= 1.
        gamma: decay factor, > 0.

    Raises:
        ValueError: ``step_size`` < 1 or ``gamma`` <= 0.
        TypeError: ``step_size`` is not an int, or ``optimizer`` is not an optimizer.

    Example:
        >>> import numpy as np
        >>> from cnnlab.nn import Parameter
        >>> from cnnlab.optim import SGD, StepLR
        >>> opt = SGD([Parameter(np.zeros(1, dtype=np.float32))], lr=1.0)
        >>> sched = StepLR(opt, step_size=2, gamma=0.5)
        >>> lrs = []
        >>> for epoch in range(5):
        ...     lrs.append(sched.get_last_lr()[0])  # train one epoch with this lr here
        ...     sched.step()
        >>> lrs
        [1.0, 1.0, 0.5, 0.5, 0.25]
    """

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1) -> None:
        self._set_hyperparameters({"step_size": step_size, "gamma": gamma})
        super().__init__(optimizer)

    def _hyperparameters(self) -> dict[str, Any]:
        return {"step_size": self.step_size, "gamma": self.gamma}

    def _set_hyperparameters(self, values: dict[str, Any]) -> None:
        self.step_size = _check_epochs("StepLR", "step_size", values["step_size"])
        self.gamma = check_number("StepLR", "gamma", values["gamma"], 0, low_open=True)

    def _lr_at(self, epoch: int, base_lr: float) -> float:
        return base_lr * self.gamma ** (epoch // self.step_size)


class CosineAnnealingLR(LRScheduler):
    r"""Anneal the learning rate from ``base_lr`` to ``eta_min`` along a half cosine.

    ``lr = eta_min + (base_lr - eta_min) * (1 + cos(pi * epoch / T_max)) / 2``: the
    closed form of ``torch.optim.lr_scheduler.CosineAnnealingLR``. It reaches ``eta_min``
    at epoch ``T_max`` and, past it, rises again (period ``2 * T_max``) as torch's does.

    Args:
        optimizer: the optimizer whose groups' ``lr`` this schedule sets.
        T_max: epochs from the start to the minimum, an int >= 1.
        eta_min: the minimum learning rate, >= 0.

    Raises:
        ValueError: ``T_max`` < 1 or ``eta_min`` < 0.
        TypeError: ``T_max`` is not an int, or ``optimizer`` is not an optimizer.

    Example:
        >>> import numpy as np
        >>> from cnnlab.nn import Parameter
        >>> from cnnlab.optim import SGD, CosineAnnealingLR
        >>> opt = SGD([Parameter(np.zeros(1, dtype=np.float32))], lr=1.0)
        >>> sched = CosineAnnealingLR(opt, T_max=4)
        >>> lrs = []
        >>> for epoch in range(5):
        ...     lrs.append(round(sched.get_last_lr()[0], 4))
        ...     sched.step()
        >>> lrs
        [1.0, 0.8536, 0.5, 0.1464, 0.0]
    """

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0) -> None:  # noqa: N803
        self._set_hyperparameters({"T_max": T_max, "eta_min": eta_min})
        super().__init__(optimizer)

    def _hyperparameters(self) -> dict[str, Any]:
        return {"T_max": self.T_max, "eta_min": self.eta_min}

    def _set_hyperparameters(self, values: dict[str, Any]) -> None:
        self.T_max = _check_epochs("CosineAnnealingLR", "T_max", values["T_max"])
        self.eta_min = check_number("CosineAnnealingLR", "eta_min", values["eta_min"], 0)

    def _lr_at(self, epoch: int, base_lr: float) -> float:
        if epoch == 0:
            return base_lr  # exactly, as torch starts from the group's lr
        cosine = 1 + math.cos(epoch * math.pi / self.T_max)
        return self.eta_min + (base_lr - self.eta_min) * cosine / 2


def _check_epochs(owner: str, name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{owner}: {name} must be an int, got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"{owner}: {name} must be >= 1, got {value}")
    return int(value)
