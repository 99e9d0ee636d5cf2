"""Learning-rate schedules: set each group's ``lr`` from the epoch count, or from a metric.

``StepLR``, ``MultiStepLR``, ``ExponentialLR`` and ``CosineAnnealingLR`` are closed-form
functions of ``last_epoch`` and each group's initial learning rate, so a schedule restored
from ``state_dict`` continues exactly where it stopped. ``ReduceLROnPlateau`` instead lowers
the rates when a monitored metric stops improving.
"""

from __future__ import annotations

import bisect
import math
import numbers
from typing import Any

from cnnlab.optim.optimizer import Optimizer, check_number

__all__ = [
    "LRScheduler",
    "StepLR",
    "MultiStepLR",
    "ExponentialLR",
    "CosineAnnealingLR",
    "ReduceLROnPlateau",
]


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


class MultiStepLR(LRScheduler):
    r"""Multiply the learning rate by ``gamma`` at each milestone epoch.

    ``lr = base_lr * gamma ** (number of milestones <= epoch)``, matching
    ``torch.optim.lr_scheduler.MultiStepLR`` (a milestone listed twice decays twice).

    Args:
        optimizer: the optimizer whose groups' ``lr`` this schedule sets.
        milestones: epochs at which to decay, ints >= 1 (in any order).
        gamma: decay factor, > 0.

    Raises:
        ValueError: a milestone < 1 or ``gamma`` <= 0.
        TypeError: ``milestones`` is not a list of ints, or ``optimizer`` is not an
            optimizer.

    Example:
        >>> import numpy as np
        >>> from cnnlab.nn import Parameter
        >>> from cnnlab.optim import SGD, MultiStepLR
        >>> opt = SGD([Parameter(np.zeros(1, dtype=np.float32))], lr=1.0)
        >>> sched = MultiStepLR(opt, milestones=[2, 5], gamma=0.1)
        >>> lrs = []
        >>> for epoch in range(7):
        ...     lrs.append(sched.get_last_lr()[0])
        ...     sched.step()
        >>> [round(lr, 6) for lr in lrs]
        [1.0, 1.0, 0.1, 0.1, 0.1, 0.01, 0.01]
    """

    def __init__(self, optimizer: Optimizer, milestones: list[int], gamma: float = 0.1) -> None:
        self._set_hyperparameters({"milestones": milestones, "gamma": gamma})
        super().__init__(optimizer)

    def _hyperparameters(self) -> dict[str, Any]:
        return {"milestones": list(self.milestones), "gamma": self.gamma}

    def _set_hyperparameters(self, values: dict[str, Any]) -> None:
        milestones = values["milestones"]
        if not isinstance(milestones, (list, tuple)):
            raise TypeError(
                f"MultiStepLR: milestones must be a list of epochs, got "
                f"{type(milestones).__name__} {milestones!r}"
            )
        checked = [_check_epochs("MultiStepLR", "each milestone", m) for m in milestones]
        gamma = check_number("MultiStepLR", "gamma", values["gamma"], 0, low_open=True)
        self.milestones, self.gamma = sorted(checked), gamma

    def _lr_at(self, epoch: int, base_lr: float) -> float:
        return base_lr * self.gamma ** bisect.bisect_right(self.milestones, epoch)


class ExponentialLR(LRScheduler):
    r"""Multiply the learning rate by ``gamma`` every epoch.

    ``lr = base_lr * gamma ** epoch``: the closed form of
    ``torch.optim.lr_scheduler.ExponentialLR``.

    Args:
        optimizer: the optimizer whose groups' ``lr`` this schedule sets.
        gamma: decay factor per epoch, > 0.

    Raises:
        ValueError: ``gamma`` <= 0.
        TypeError: ``optimizer`` is not an optimizer.

    Example:
        >>> import numpy as np
        >>> from cnnlab.nn import Parameter
        >>> from cnnlab.optim import SGD, ExponentialLR
        >>> opt = SGD([Parameter(np.zeros(1, dtype=np.float32))], lr=1.0)
        >>> sched = ExponentialLR(opt, gamma=0.5)
        >>> lrs = []
        >>> for epoch in range(4):
        ...     lrs.append(sched.get_last_lr()[0])
        ...     sched.step()
        >>> lrs
        [1.0, 0.5, 0.25, 0.125]
    """

    def __init__(self, optimizer: Optimizer, gamma: float) -> None:
        self._set_hyperparameters({"gamma": gamma})
        super().__init__(optimizer)

    def _hyperparameters(self) -> dict[str, Any]:
        return {"gamma": self.gamma}

    def _set_hyperparameters(self, values: dict[str, Any]) -> None:
        self.gamma = check_number("ExponentialLR", "gamma", values["gamma"], 0, low_open=True)

    def _lr_at(self, epoch: int, base_lr: float) -> float:
        return base_lr * self.gamma**epoch


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


class ReduceLROnPlateau:
    r"""Lower the learning rates when a monitored metric stops improving.

    Call ``step(metric)`` once per epoch with the metric (a validation loss, say). A metric
    counts as better than the best so far when, for ``mode="min"``, it is below
    ``best * (1 - threshold)`` (``threshold_mode="rel"``) or ``best - threshold`` (``"abs"``);
    for ``mode="max"`` above ``best * (1 + threshold)`` or ``best + threshold``. After more
    than ``patience`` epochs in a row without a better metric, every group's rate becomes
    ``max(lr * factor, min_lr)`` (changes smaller than ``eps`` are skipped), and the next
    ``cooldown`` epochs are not counted. Each group is lowered from its own current rate.
    The rules are those of ``torch.optim.lr_scheduler.ReduceLROnPlateau``.

    Args:
        optimizer: the optimizer whose groups' ``lr`` this schedule lowers.
        mode: ``"min"`` (lower is better) or ``"max"``.
        factor: multiplies the rates at each reduction, in [0, 1).
        patience: epochs without improvement tolerated before a reduction, an int >= 0.
        threshold: how much better a metric must be to count, >= 0.
        threshold_mode: ``"rel"`` or ``"abs"`` (see above).
        cooldown: epochs after a reduction during which bad epochs are not counted, >= 0.
        min_lr: the lowest rate, >= 0: one number, or one per parameter group.
        eps: the smallest change of a rate that is applied, >= 0.

    Raises:
        ValueError: a setting out of range, an unknown mode, or a ``min_lr`` list whose
            length is not the number of groups.
        TypeError: ``optimizer`` is not an optimizer, or a setting has the wrong type.

    Example:
        >>> import numpy as np
        >>> from cnnlab.nn import Parameter
        >>> from cnnlab.optim import SGD, ReduceLROnPlateau
        >>> opt = SGD([Parameter(np.zeros(1, dtype=np.float32))], lr=1.0)
        >>> sched = ReduceLROnPlateau(opt, factor=0.5, patience=1)
        >>> lrs = []
        >>> for val_loss in [3.0, 2.0, 2.0, 2.0, 1.0, 1.0, 1.0]:
        ...     sched.step(val_loss)  # two epochs without improvement: halve the rate
        ...     lrs.append(sched.get_last_lr()[0])
        >>> lrs
        [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25]
    """

    def __init__(
        self,
        optimizer: Optimizer,
        mode: str = "min",
        factor: float = 0.1,
        patience: int = 10,
        threshold: float = 1e-4,
        threshold_mode: str = "rel",
        cooldown: int = 0,
        min_lr: float | list[float] = 0,
        eps: float = 1e-8,
    ) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(
                f"ReduceLROnPlateau: expected a cnnlab.optim optimizer, got "
                f"{type(optimizer).__name__}"
            )
        self.optimizer = optimizer
        groups = len(optimizer.param_groups)
        min_lrs = list(min_lr) if isinstance(min_lr, (list, tuple)) else [min_lr] * groups
        self._set_hyperparameters(
            {
                "mode": mode,
                "factor": factor,
                "patience": patience,
                "threshold": threshold,
                "threshold_mode": threshold_mode,
                "cooldown": cooldown,
                "min_lrs": min_lrs,
                "eps": eps,
            }
        )
        self.last_epoch = 0
        self.best = self._worst()
        self.num_bad_epochs = 0
        self.cooldown_counter = 0
        self._last_lr = [group["lr"] for group in optimizer.param_groups]

    def step(self, metrics: Any) -> None:
        """Record one epoch's metric and lower the rates if it has plateaued.

        Args:
            metrics: the monitored value: a number or a one-element tensor.

        Raises:
            TypeError: ``metrics`` is not a number.
        """
        current = _metric_value(metrics)
        self.last_epoch += 1
        if self._is_better(current):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0  # bad epochs in the cooldown do not count
        if self.num_bad_epochs > self.patience:
            self._reduce()
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def get_last_lr(self) -> list[float]:
        """Return each group's learning rate after the last ``step()``."""
        return list(self._last_lr)

    def _reduce(self) -> None:
        groups = self.optimizer.param_groups
        if len(groups) != len(self.min_lrs):
            raise ValueError(
                f"ReduceLROnPlateau: the optimizer has {len(groups)} parameter groups but "
                f"min_lr has {len(self.min_lrs)} values; a group was added after the schedule "
                "was made: set scheduler.min_lrs to one value per group"
            )
        for group, min_lr in zip(groups, self.min_lrs, strict=True):
            old = float(group["lr"])
            new = max(old * self.factor, min_lr)
            if old - new > self.eps:
                group["lr"] = new

    def _worst(self) -> float:
        return math.inf if self.mode == "min" else -math.inf

    def _is_better(self, value: float) -> bool:
        if self.mode == "min":
            if self.threshold_mode == "rel":
                return value < self.best * (1.0 - self.threshold)
            return value < self.best - self.threshold
        if self.threshold_mode == "rel":
            return value > self.best * (self.threshold + 1.0)
        return value > self.best + self.threshold

    def _hyperparameters(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "factor": self.factor,
            "patience": self.patience,
            "threshold": self.threshold,
            "threshold_mode": self.threshold_mode,
            "cooldown": self.cooldown,
            "min_lrs": list(self.min_lrs),
            "eps": self.eps,
        }

    def _set_hyperparameters(self, values: dict[str, Any]) -> None:
        """Validate every value first, then set them all (so a bad dict changes nothing)."""
        owner = "ReduceLROnPlateau"
        checked = {
            "mode": _check_choice(owner, "mode", values["mode"], ("min", "max")),
            "factor": check_number(owner, "factor", values["factor"], 0, 1, high_open=True),
            "patience": _check_count(owner, "patience", values["patience"]),
            "threshold": check_number(owner, "threshold", values["threshold"], 0),
            "threshold_mode": _check_choice(
                owner, "threshold_mode", values["threshold_mode"], ("rel", "abs")
            ),
            "cooldown": _check_count(owner, "cooldown", values["cooldown"]),
            "eps": check_number(owner, "eps", values["eps"], 0),
        }
        min_lrs = values["min_lrs"]
        groups = len(self.optimizer.param_groups)
        if not isinstance(min_lrs, (list, tuple)) or len(min_lrs) != groups:
            raise ValueError(
                f"{owner}: min_lr must be one number or a list of {groups} (one per parameter "
                f"group), got {min_lrs!r}"
            )
        checked["min_lrs"] = [
            check_number(owner, f"min_lr[{i}]", lr, 0) for i, lr in enumerate(min_lrs)
        ]
        for key, value in checked.items():
            setattr(self, key, value)

    def state_dict(self) -> dict[str, Any]:
        """Return the schedule's state as a JSON-serializable dict.

        Returns:
            ``{"type", "last_epoch", "best" (None before the first metric), "num_bad_epochs",
            "cooldown_counter"}`` plus the settings.
        """
        return {
            "type": type(self).__name__,
            "last_epoch": self.last_epoch,
            "best": None if math.isinf(self.best) else self.best,
            "num_bad_epochs": self.num_bad_epochs,
            "cooldown_counter": self.cooldown_counter,
            **self._hyperparameters(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a state from ``state_dict()``; the groups' rates are left as they are.

        Raises:
            ValueError: the dict is from another kind of schedule, is missing entries, or
                holds out-of-range values.
        """
        name = type(self).__name__
        counters = ("last_epoch", "num_bad_epochs", "cooldown_counter")
        expected = {"type", "best", *counters, *self._hyperparameters()}
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
        counts = {key: _check_count(name, key, state_dict[key]) for key in counters}
        best = state_dict["best"]
        if best is not None:
            best = check_number(name, "best", best, -math.inf)
        saved = self._hyperparameters()
        try:
            self._set_hyperparameters({key: state_dict[key] for key in saved})
        except (TypeError, ValueError):
            self._set_hyperparameters(saved)
            raise
        for key, value in counts.items():
            setattr(self, key, value)
        self.best = self._worst() if best is None else best

    def __repr__(self) -> str:
        return (
            f"ReduceLROnPlateau(mode={self.mode!r}, factor={self.factor!r}, "
            f"patience={self.patience!r}, best={self.best!r}, "
            f"num_bad_epochs={self.num_bad_epochs!r})"
        )


def _metric_value(value: Any) -> float:
    item = getattr(value, "item", None)
    number = item() if callable(item) else value
    if isinstance(number, bool) or not isinstance(number, numbers.Real):
        raise TypeError(
            "ReduceLROnPlateau.step: metrics must be a number (such as the validation loss), "
            f"got {type(value).__name__} {value!r}"
        )
    return float(number)


def _check_choice(owner: str, name: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        options = " or ".join(repr(c) for c in choices)
        raise ValueError(f"{owner}: {name} must be {options}, got {value!r}")
    return value


def _check_count(owner: str, name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{owner}: {name} must be an int, got {type(value).__name__} {value!r}")
    if value < 0:
        raise ValueError(f"{owner}: {name} must be >= 0, got {value}")
    return int(value)


def _check_epochs(owner: str, name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{owner}: {name} must be an int, got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"{owner}: {name} must be >= 1, got {value}")
    return int(value)
