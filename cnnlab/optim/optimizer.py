"""The optimizer base class: parameter groups, per-parameter state, saving and restoring.

A parameter is any object with ``.data`` (a floating NumPy array, updated in place) and
``.grad`` (a NumPy array of the same shape, or ``None`` when it received no gradient).
``cnnlab.nn.Parameter`` is one.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

__all__ = ["Optimizer"]


class Optimizer:
    """Base class of all optimizers: holds parameter groups and per-parameter state.

    Subclasses define ``_check_group`` (validate and normalize one group's hyperparameters)
    and ``_update`` (update one parameter in place). The base class walks the parameters,
    skips those whose ``grad`` is ``None``, and keeps the state keyed by the parameter's
    position: parameters are numbered 0, 1, 2, ... across the groups, in order.

    Args:
        params: an iterable of parameters, or of dicts (parameter groups) each with a
            ``"params"`` entry and optional hyperparameters that override ``defaults``.
        defaults: hyperparameters used by groups that do not set their own.

    Raises:
        TypeError: ``params`` is a single parameter, or holds something that is not a
            parameter.
        ValueError: no parameters, a parameter listed twice, a non-floating parameter, or
            a hyperparameter out of range.

    Example:
        >>> import numpy as np
        >>> from cnnlab.nn import Parameter
        >>> from cnnlab.optim import SGD
        >>> w, b = Parameter(np.ones(3, dtype=np.float32)), Parameter(np.zeros(1, dtype=np.float32))
        >>> opt = SGD([{"params": [w]}, {"params": [b], "lr": 0.5}], lr=0.1)
        >>> [group["lr"] for group in opt.param_groups]
        [0.1, 0.5]
    """

    # Entries of a parameter's state that are integers (step counts) rather than arrays.
    _scalar_state: frozenset[str] = frozenset()

    def __init__(self, params: Iterable[Any], defaults: dict[str, Any]) -> None:
        self.defaults = dict(defaults)
        self.param_groups: list[dict[str, Any]] = []
        self.state: dict[int, dict[str, Any]] = {}
        # Reused work arrays, one set per parameter, so step() allocates nothing per batch.
        self._work: dict[tuple[int, int], np.ndarray] = {}

        if _is_parameter(params):
            raise TypeError(
                f"{type(self).__name__}: params must be an iterable of parameters or of "
                "parameter-group dicts, got a single parameter; wrap it in a list: [param]"
            )
        if isinstance(params, dict):
            params = [params]
        groups = list(params)
        if not groups:
            raise ValueError(
                f"{type(self).__name__}: got an empty parameter list; pass "
                "model.parameters() of a model that has parameters"
            )
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)
        if not any(group["params"] for group in self.param_groups):
            raise ValueError(
                f"{type(self).__name__}: every parameter group is empty; "
                "give the optimizer at least one parameter"
            )

    # ------------------------------------------------------------------ groups
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group of parameters with its own hyperparameters.

        Args:
            param_group: a dict with ``"params"`` (a parameter or an iterable of them) and
                optional hyperparameters; missing ones are taken from ``defaults``.

        Raises:
            TypeError: ``param_group`` is not a dict, or holds a non-parameter.
            ValueError: a parameter is already in this optimizer, is not floating point, or
                a hyperparameter is out of range.
        """
        name = type(self).__name__
        index = len(self.param_groups)
        if not isinstance(param_group, dict):
            raise TypeError(
                f"{name}: parameter group {index} must be a dict with a 'params' entry, "
                f"got {type(param_group).__name__}; don't mix dicts and parameters in one list"
            )
        if "params" not in param_group:
            raise ValueError(
                f"{name}: parameter group {index} has no 'params' entry; "
                "write {'params': [...], ...}"
            )
        params = param_group["params"]
        params = [params] if _is_parameter(params) else list(params)
        seen = {id(p) for group in self.param_groups for p in group["params"]}
        for position, p in enumerate(params):
            where = f"parameter {position} of group {index}"
            if not _is_parameter(p):
                raise TypeError(
                    f"{name}: {where} is a {type(p).__name__}, not a parameter (an object "
                    "with .data, a NumPy array, and .grad); pass model.parameters()"
                )
            if not np.issubdtype(p.data.dtype, np.floating):
                raise ValueError(
                    f"{name}: {where} has dtype {p.data.dtype}; only floating-point "
                    "parameters (float32 or float64) can be optimized"
                )
            if id(p) in seen:
                raise ValueError(
                    f"{name}: {where} appears more than once in this optimizer; "
                    "list each parameter in exactly one group"
                )
            seen.add(id(p))

        group = {key: value for key, value in param_group.items() if key != "params"}
        for key, value in self.defaults.items():
            group.setdefault(key, value)
        self._check_group(group)
        group["params"] = params
        self.param_groups.append(group)

    def _check_group(self, group: dict[str, Any]) -> None:
        """Validate a group's hyperparameters in place, converting them to plain types."""
        raise NotImplementedError

    # -------------------------------------------------------------------- step
    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear the gradients of all parameters.

        Args:
            set_to_none: set ``grad`` to ``None`` (the default, frees memory and lets
                ``step`` skip parameters that get no new gradient); otherwise fill the
                existing gradient arrays with zeros in place.
        """
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none:
                    p.grad = None
                elif p.grad is not None:
                    np.asarray(p.grad).fill(0)

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Update every parameter that has a gradient, in place.

        Args:
            closure: optional function that recomputes the loss (runs forward and
                backward) and returns it; called once before the update.

        Returns:
            The closure's return value, or ``None`` without a closure.

        Raises:
            ValueError: a gradient's shape differs from its parameter's.
        """
        loss = closure() if closure is not None else None
        index = 0
        for group in self.param_groups:
            for p in group["params"]:
                grad = p.grad
                if grad is not None:
                    grad = np.asarray(grad)
                    if grad.shape != p.data.shape:
                        raise ValueError(
                            f"{type(self).__name__}: the gradient of parameter {index} has "
                            f"shape {grad.shape}, but the parameter has shape "
                            f"{p.data.shape}; check the op that produced this gradient"
                        )
                    state = self.state.get(index, {})
                    self._update(index, p, grad, state, group)
                    if state:
                        self.state[index] = state
                index += 1
        return loss

    def _update(
        self, index: int, param: Any, grad: np.ndarray, state: dict[str, Any], group: dict
    ) -> None:
        """Update one parameter in place (subclasses)."""
        raise NotImplementedError

    def _work_array(self, index: int, data: np.ndarray, slot: int = 0) -> np.ndarray:
        """A scratch array shaped like ``data``, kept between steps (contents undefined)."""
        work = self._work.get((index, slot))
        if work is None or work.shape != data.shape or work.dtype != data.dtype:
            work = np.empty_like(data)
            self._work[(index, slot)] = work
        return work

    # ------------------------------------------------------------ save/restore
    def state_dict(self) -> dict[str, Any]:
        """Return the optimizer's state as plain data (arrays are copies).

        Returns:
            ``{"state": {index: {name: array | int}}, "param_groups": [{hyperparameters...,
            "params": [indices]}]}``. Parameters are referred to by their position across
            the groups, so the dict can be loaded into an optimizer built the same way on
            another model instance.
        """
        groups = []
        index = 0
        for group in self.param_groups:
            saved = {key: value for key, value in group.items() if key != "params"}
            saved["params"] = list(range(index, index + len(group["params"])))
            index += len(group["params"])
            groups.append(saved)
        state = {i: self._save_entry(entry) for i, entry in sorted(self.state.items())}
        return {"state": state, "param_groups": groups}

    def _save_entry(self, entry: dict[str, Any]) -> dict[str, Any]:
        """One parameter's state as plain data: arrays copied, counts as they are."""
        return {
            name: value.copy() if isinstance(value, np.ndarray) else value
            for name, value in entry.items()
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a state saved by ``state_dict`` (arrays are copied in).

        Hyperparameters come from the saved groups; the parameters stay this optimizer's.
        State arrays are cast to their parameter's dtype. Nothing changes unless the whole
        dict is valid.

        Args:
            state_dict: a dict from ``state_dict()``; state keys may be ints or digit
                strings (as after a JSON round trip).

        Raises:
            ValueError: the dict's layout does not match this optimizer (number of groups,
                parameters per group, state names, array shapes) or a hyperparameter is out
                of range.
        """
        saved_groups = self._check_saved_layout(state_dict)
        new_groups, targets = self._match_saved_groups(saved_groups)
        new_state = self._load_saved_state(state_dict["state"], targets)
        # Everything is valid: only now does the optimizer change.
        for current, group in zip(self.param_groups, new_groups, strict=True):
            current.clear()
            current.update(group)
        self.state = new_state

    def _check_saved_layout(self, state_dict: Any) -> list[dict[str, Any]]:
        """Check the outer shape of a saved dict; return its parameter groups."""
        name = type(self).__name__
        if (
            not isinstance(state_dict, dict)
            or "state" not in state_dict
            or "param_groups" not in state_dict
        ):
            raise ValueError(
                f"{name}.load_state_dict: expected a dict with keys 'state' and "
                f"'param_groups' (from optimizer.state_dict()), got {_describe(state_dict)}"
            )
        saved_groups = state_dict["param_groups"]
        if not isinstance(state_dict["state"], dict) or not (
            isinstance(saved_groups, list) and all(isinstance(g, dict) for g in saved_groups)
        ):
            raise ValueError(
                f"{name}.load_state_dict: 'state' must be a dict and 'param_groups' a list of "
                "dicts, as optimizer.state_dict() returns them"
            )
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(
                f"{name}.load_state_dict: the state_dict has {len(saved_groups)} parameter "
                f"groups, but this optimizer has {len(self.param_groups)}; build the "
                "optimizer with the same groups it was saved with"
            )
        return saved_groups

    def _match_saved_groups(
        self, saved_groups: list[dict[str, Any]]
    ) -> tuple[list[dict[str, Any]], dict[int, tuple[int, Any, dict[str, Any]]]]:
        """Merge each saved group into a copy of the current one and map the saved ids.

        Returns:
            The new groups (validated hyperparameters, this optimizer's parameters) and, for
            each saved parameter id, ``(position in this optimizer, parameter, new group)``.
        """
        name = type(self).__name__
        targets: dict[int, tuple[int, Any, dict[str, Any]]] = {}
        new_groups = []
        position = 0
        for g, (saved, current) in enumerate(zip(saved_groups, self.param_groups, strict=True)):
            saved_ids = list(saved.get("params", []))
            if len(saved_ids) != len(current["params"]):
                raise ValueError(
                    f"{name}.load_state_dict: parameter group {g} of the state_dict has "
                    f"{len(saved_ids)} parameters, but this optimizer's group {g} has "
                    f"{len(current['params'])}; was it saved for a different model?"
                )
            group = self._merged_group(saved, current)
            new_groups.append(group)
            for saved_id, p in zip(saved_ids, current["params"], strict=True):
                saved_id = _as_index(saved_id, name)
                if saved_id in targets:
                    raise ValueError(
                        f"{name}.load_state_dict: parameter {saved_id} is listed in more "
                        "than one place in the state_dict's param_groups"
                    )
                targets[saved_id] = (position, p, group)
                position += 1
        return new_groups, targets

    def _merged_group(self, saved: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
        """The current group's settings overridden by the saved ones, validated."""
        group = {key: value for key, value in current.items() if key != "params"}
        group.update({key: value for key, value in saved.items() if key != "params"})
        self._check_group(group)
        group["params"] = current["params"]
        return group

    def _load_saved_state(
        self, saved_state: dict[Any, Any], targets: dict[int, tuple[int, Any, dict[str, Any]]]
    ) -> dict[int, dict[str, Any]]:
        """Validate and copy each saved state entry, keyed by this optimizer's positions."""
        name = type(self).__name__
        new_state: dict[int, dict[str, Any]] = {}
        for key, entry in saved_state.items():
            saved_id = _as_index(key, name)
            if saved_id not in targets:
                raise ValueError(
                    f"{name}.load_state_dict: the state_dict has state for parameter "
                    f"{saved_id}, which none of its param_groups lists"
                )
            position, p, group = targets[saved_id]
            new_state[position] = self._load_entry(entry, saved_id, p, group)
        return new_state

    def _state_names(self, group: dict[str, Any]) -> tuple[set[str], set[str]]:
        """(required, allowed) names of a stepped parameter's state under ``group``."""
        return set(), set()

    def _load_entry(self, entry: Any, saved_id: int, p: Any, group: dict) -> dict[str, Any]:
        """Validate one parameter's saved state; return a copy cast to the parameter's dtype."""
        where = f"{type(self).__name__}.load_state_dict: state of parameter {saved_id}"
        if not isinstance(entry, dict):
            raise ValueError(f"{where} must be a dict of arrays, got {_describe(entry)}")
        if not entry:
            return {}
        self._check_state_names(entry, group, where)
        return {
            key: load_count(value, f"{where}: '{key}'")
            if key in self._scalar_state
            else load_array(
                value,
                p.data.shape,
                p.data.dtype,
                f"{where}: '{key}'",
                "the parameter has shape",
            )
            for key, value in entry.items()
        }

    def _check_state_names(self, entry: dict[str, Any], group: dict, where: str) -> None:
        """Raise unless ``entry`` has every required state name and no unknown one."""
        required, allowed = self._state_names(group)
        missing = sorted(required - entry.keys())
        unexpected = sorted(entry.keys() - allowed)
        if missing or unexpected:
            raise ValueError(
                f"{where} has entries {sorted(entry)}; missing {missing}, unexpected "
                f"{unexpected}; was it saved by a different optimizer?"
            )

    def __repr__(self) -> str:
        def hyper(group: dict[str, Any]) -> str:
            return ", ".join(
                f"{key}={value!r}"
                for key, value in group.items()
                if key not in ("params", "initial_lr")
            )

        if len(self.param_groups) == 1:
            return f"{type(self).__name__}({hyper(self.param_groups[0])})"
        groups = "; ".join(
            f"group {i}: {hyper(group)}" for i, group in enumerate(self.param_groups)
        )
        return f"{type(self).__name__}({groups})"


# ---------------------------------------------------------------- validation
def check_number(
    owner: str,
    name: str,
    value: Any,
    low: float,
    high: float = math.inf,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Return ``value`` as a float if it lies in the range, else raise ValueError.

    The range is ``[low, high]``; ``low_open``/``high_open`` exclude an end. The message
    names the owner, the hyperparameter, the valid range and the value received.

    Raises:
        TypeError: ``value`` is not a real number.
        ValueError: ``value`` is NaN or outside the range.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{owner}: {name} must be a number, got {_describe(value)}")
    value = float(value)
    above = value > low if low_open else value >= low
    below = value < high if high_open else value <= high
    if not (above and below):  # also true for NaN
        if high == math.inf:
            valid = f"> {low:g}" if low_open else f">= {low:g}"
        else:
            valid = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
            valid = f"in {valid}"
        raise ValueError(f"{owner}: {name} must be {valid}, got {value!r}")
    return value


def check_int(owner: str, name: str, value: Any, low: int) -> int:
    """Return ``value`` as an int if it is a whole number >= ``low``, else raise.

    Raises:
        TypeError: ``value`` is not an int (a bool or a float is refused).
        ValueError: ``value`` < ``low``.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{owner}: {name} must be an int, got {_describe(value)}")
    if value < low:
        raise ValueError(f"{owner}: {name} must be >= {low}, got {value}")
    return int(value)


def check_flag(owner: str, name: str, value: Any) -> bool:
    """Return ``value`` if it is a bool (or NumPy bool), else raise TypeError."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{owner}: {name} must be True or False, got {_describe(value)}")
    return bool(value)


def load_count(value: Any, what: str) -> int:
    """A saved whole number >= 0 (a step count) as an int, else ValueError naming ``what``."""
    count = np.asarray(value)
    if not (
        count.ndim == 0
        and count.dtype.kind in "iuf"
        and np.isfinite(count)
        and count >= 0
        and count == np.floor(count)
    ):
        raise ValueError(f"{what} must be a whole number >= 0, got {value!r}")
    return int(count)


def load_array(
    value: Any, shape: tuple[int, ...], dtype: np.dtype, what: str, expected: str
) -> np.ndarray:
    """A saved numeric array of ``shape``, copied and cast to ``dtype``, else ValueError.

    The shape message reads ``"{what} has shape S, but {expected} {shape}; ..."``.
    """
    array = np.asarray(value)
    if array.dtype.kind not in "iuf":
        raise ValueError(f"{what} must be a numeric array, got {array.dtype}")
    if array.shape != shape:
        raise ValueError(
            f"{what} has shape {array.shape}, but {expected} {shape}; "
            "was it saved for a different model?"
        )
    return np.array(array, dtype=dtype, copy=True)


def _is_parameter(obj: Any) -> bool:
    return isinstance(getattr(obj, "data", None), np.ndarray) and hasattr(obj, "grad")


def _as_index(key: Any, owner: str) -> int:
    if isinstance(key, str) and key.isdigit():
        return int(key)
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool) and key >= 0:
        return int(key)
    raise ValueError(f"{owner}.load_state_dict: parameter ids must be integers >= 0, got {key!r}")


def _describe(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"
