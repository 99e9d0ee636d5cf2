"""L-BFGS: a quasi-Newton method that re-evaluates the loss through a closure.

All parameters are treated as one flat vector ``x`` (their entries in order, each
parameter flattened). Each iteration turns the gradient into a search direction with the
last ``history_size`` pairs ``(s, y)`` of position and gradient changes (the two-loop
recursion), then moves along it by a fixed step or by a step that satisfies the strong
Wolfe conditions (bracketing and zooming with cubic interpolation). The algorithm and its
stopping rules are PyTorch's (``torch.optim.LBFGS``), which follows minFunc.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import numpy as np

from cnnlab.autograd import enable_grad
from cnnlab.optim.optimizer import (
    Optimizer,
    _describe,
    check_int,
    check_number,
    load_array,
    load_count,
)

__all__ = ["LBFGS"]

# The line search's own bracket tolerance. PyTorch passes none, so its default (1e-9)
# applies whatever the optimizer's tolerance_change; kept so the iterates agree.
_LINE_SEARCH_TOLERANCE = 1e-9
# Sufficient decrease (Armijo) and curvature constants of the strong Wolfe conditions.
_C1, _C2 = 1e-4, 0.9
# A pair (s, y) joins the history only if y.s exceeds this (it keeps H positive definite).
_MIN_CURVATURE = 1e-10

# State that exists once an iteration has run (before that only the two counts do).
_ITERATION_STATE = frozenset(
    {"d", "t", "old_dirs", "old_stps", "ro", "H_diag", "prev_flat_grad", "prev_loss"}
)
_COUNT_STATE = frozenset({"func_evals", "n_iter"})


class LBFGS(Optimizer):
    r"""L-BFGS, with the algorithm, defaults and closure API of ``torch.optim.LBFGS``.

    ``step(closure)`` runs up to ``max_iter`` iterations and calls ``closure`` whenever it
    needs the loss and gradient at a new point. The closure must zero the gradients,
    compute the loss, call ``backward()`` and return the loss::

        def closure():
            optimizer.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            return loss

        for _ in range(steps):
            optimizer.step(closure)

    One iteration, with ``g`` the gradient of the flattened parameters ``x``::

        d = -H g          H: the inverse-Hessian estimate from the last history_size pairs
                          s = x_new - x_old, y = g_new - g_old (plain -g at the start)
        t = lr            (lr * min(1, 1 / sum|g|) on the very first iteration)
        x = x + t d       (with line_search_fn="strong_wolfe", t is searched for instead)

    A step stops early when the largest gradient entry is <= ``tolerance_grad``, when a
    move or a change of the loss is below ``tolerance_change``, or after ``max_eval``
    closure calls. The history stays between ``step`` calls, so calling ``step`` many times
    with ``max_iter=1`` continues one run.

    The optimizer holds ``history_size + 2`` vectors of the parameters' total size (the
    history grows to that as it fills). For one large parameter (an image being optimized,
    ``(1, 3, H, W)``) every operation is a whole-vector NumPy call; the work per iteration
    besides the closure is about ``4 * history_size`` vector operations.

    Its state is ``state[0]``: ``"func_evals"``, ``"n_iter"`` (ints), ``"d"`` (the last
    direction), ``"t"`` (the last step length), ``"old_dirs"`` and ``"old_stps"`` (the
    ``y`` and ``s`` vectors, as ``(k, n)`` arrays in ``state_dict()``), ``"ro"`` (``1 /
    y.s``), ``"H_diag"``, ``"prev_flat_grad"`` and ``"prev_loss"``.

    Args:
        params: the parameters, in one list or one group (L-BFGS has one set of settings
            for all of them, as in PyTorch).
        lr: step length factor, >= 0.
        max_iter: most iterations per ``step`` call, >= 1.
        max_eval: most closure calls per ``step`` call, >= 1; ``None`` means
            ``max_iter * 5 // 4``.
        tolerance_grad: stop when every gradient entry is at most this in size, >= 0.
        tolerance_change: stop when the step moves no entry by more than this, or the loss
            changes by less than it, >= 0.
        history_size: number of ``(s, y)`` pairs kept, >= 1.
        line_search_fn: ``None`` (fixed step ``lr``) or ``"strong_wolfe"``.

    Raises:
        ValueError: a hyperparameter is out of range, or more than one parameter group.
        TypeError: a hyperparameter has the wrong type.

    Example:
        >>> import numpy as np
        >>> from cnnlab.nn import Parameter
        >>> from cnnlab.optim import LBFGS
        >>> x = Parameter(np.array([-1.2, 1.0]))  # minimize Rosenbrock's function
        >>> opt = LBFGS([x], line_search_fn="strong_wolfe")
        >>> def closure():
        ...     opt.zero_grad()
        ...     a, b = x.data
        ...     x.grad = np.array([-2 * (1 - a) - 400 * a * (b - a * a), 200 * (b - a * a)])
        ...     return (1 - a) ** 2 + 100 * (b - a * a) ** 2
        >>> for _ in range(3):
        ...     print(f"loss {opt.step(closure):.3g}")  # the loss when each step began
        loss 24.2
        loss 0.423
        loss 4.22e-10
        >>> x.data.round(4), opt.state[0]["func_evals"]  # (1, 1) after 45 closure calls
        (array([1., 1.]), 45)
    """

    _scalar_state = _COUNT_STATE

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1,
        max_iter: int = 20,
        max_eval: int | None = None,
        tolerance_grad: float = 1e-7,
        tolerance_change: float = 1e-9,
        history_size: int = 100,
        line_search_fn: str | None = None,
    ) -> None:
        defaults = {
            "lr": lr,
            "max_iter": max_iter,
            "max_eval": max_eval,
            "tolerance_grad": tolerance_grad,
            "tolerance_change": tolerance_change,
            "history_size": history_size,
            "line_search_fn": line_search_fn,
        }
        super().__init__(params, defaults)
        self._params = self.param_groups[0]["params"]
        self._numel = sum(p.data.size for p in self._params)
        self._dtype = np.result_type(*(p.data.dtype for p in self._params))
        self._work_flat: np.ndarray | None = None
        self._spare: tuple[np.ndarray, np.ndarray] | None = None  # recycled (y, s) memory
        self._x_init: list[np.ndarray] | None = None

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add the one parameter group (a second is refused, as in PyTorch).

        Raises:
            ValueError: the optimizer already has its group.
        """
        if self.param_groups:
            raise ValueError(
                "LBFGS: takes one parameter group (it treats all parameters as one vector "
                "with one set of settings), got a second; put every parameter in one list"
            )
        super().add_param_group(param_group)

    def _check_group(self, group: dict[str, Any]) -> None:
        group["lr"] = check_number("LBFGS", "lr", group["lr"], 0)
        group["max_iter"] = check_int("LBFGS", "max_iter", group["max_iter"], 1)
        if group["max_eval"] is None:
            group["max_eval"] = group["max_iter"] * 5 // 4
        group["max_eval"] = check_int("LBFGS", "max_eval", group["max_eval"], 1)
        for name in ("tolerance_grad", "tolerance_change"):
            group[name] = check_number("LBFGS", name, group[name], 0)
        group["history_size"] = check_int("LBFGS", "history_size", group["history_size"], 1)
        if group["line_search_fn"] not in (None, "strong_wolfe"):
            raise ValueError(
                "LBFGS: line_search_fn must be None or 'strong_wolfe', got "
                f"{group['line_search_fn']!r}"
            )

    # -------------------------------------------------------------------- step
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        """Run up to ``max_iter`` L-BFGS iterations, calling ``closure`` for each new point.

        Args:
            closure: a function that zeroes the gradients, computes the loss, calls
                ``backward()`` and returns the loss (a number or a one-element tensor).

        Returns:
            What the first call of ``closure`` returned: the loss before this step.

        Raises:
            TypeError: no closure, or a closure that does not return a loss.
            ValueError: a gradient's shape differs from its parameter's.
        """
        if not callable(closure):
            raise TypeError(
                "LBFGS.step needs a closure: a function that zeroes the gradients, computes "
                "the loss, calls loss.backward() and returns the loss; call "
                f"optimizer.step(closure), got {_describe(closure)}"
            )
        closure = enable_grad()(closure)  # gradients are needed even inside no_grad
        group = self.param_groups[0]
        state = self.state.get(0) or {"func_evals": 0, "n_iter": 0}
        self.state[0] = state

        orig_loss = closure()
        loss = _loss_value(orig_loss)
        flat_grad = self._gather_flat_grad()
        state["func_evals"] += 1
        if self._abs_max(flat_grad) <= group["tolerance_grad"]:
            return orig_loss

        current_evals = 1
        for n_iter in range(1, group["max_iter"] + 1):
            state["n_iter"] += 1
            d = self._direction(state, flat_grad, group["history_size"])
            self._remember(state, "prev_flat_grad", flat_grad)
            state["prev_loss"] = loss
            t = state["t"] = self._initial_step(state, flat_grad, group["lr"])
            gtd = float(flat_grad @ d)
            if gtd > -group["tolerance_change"]:
                break  # not a descent direction any more

            if group["line_search_fn"] is None:
                self._add_to_params(t, d)
                evals = 0
                if n_iter != group["max_iter"]:  # the last point is evaluated by the next step
                    loss = _loss_value(closure())
                    flat_grad = self._gather_flat_grad()
                    evals = 1
            else:
                max_ls = group["max_eval"] - current_evals
                loss, flat_grad, t, evals = self._line_search(
                    closure, d, t, loss, flat_grad, gtd, max_ls
                )
                state["t"] = t
                self._add_to_params(t, d)
            current_evals += evals
            state["func_evals"] += evals

            if n_iter == group["max_iter"] or current_evals >= group["max_eval"]:
                break
            if self._abs_max(flat_grad) <= group["tolerance_grad"]:
                break  # a stationary point
            if self._abs_max(d) * abs(t) <= group["tolerance_change"]:
                break  # the move was too small
            if abs(loss - state["prev_loss"]) < group["tolerance_change"]:
                break  # the loss stopped changing
        return orig_loss

    def _direction(self, state: dict[str, Any], flat_grad: np.ndarray, history: int) -> np.ndarray:
        """The search direction ``-H g``; updates the history with the last move first."""
        if state["n_iter"] == 1:
            state["d"] = np.negative(flat_grad)
            state["old_dirs"], state["old_stps"], state["ro"] = [], [], []
            state["H_diag"] = 1.0
            return state["d"]
        self._update_history(state, flat_grad, history)
        return self._two_loop(state, flat_grad)

    def _update_history(self, state: dict[str, Any], flat_grad: np.ndarray, history: int) -> None:
        """Add the pair (s, y) of the last iteration, if its curvature y.s is positive."""
        spare_y, spare_s = self._spare or (None, None)
        y = np.subtract(flat_grad, state["prev_flat_grad"], out=spare_y)
        s = np.multiply(state["d"], state["t"], out=spare_s)
        ys = float(y @ s)
        if ys <= _MIN_CURVATURE:
            self._spare = (y, s)  # reused for the next pair
            return
        old_dirs, old_stps, ro = state["old_dirs"], state["old_stps"], state["ro"]
        self._spare = None
        while len(old_dirs) >= history:  # drop the oldest pair, and reuse its memory
            self._spare = (old_dirs.pop(0), old_stps.pop(0))
            ro.pop(0)
        old_dirs.append(y)
        old_stps.append(s)
        ro.append(1.0 / ys)
        state["H_diag"] = ys / float(y @ y)

    def _two_loop(self, state: dict[str, Any], flat_grad: np.ndarray) -> np.ndarray:
        """``-H g`` by the two-loop recursion, written over the previous direction's memory."""
        old_dirs, old_stps, ro = state["old_dirs"], state["old_stps"], state["ro"]
        work = self._flat_work()
        q = np.negative(flat_grad, out=state["d"])
        al = [0.0] * len(old_dirs)
        for i in range(len(old_dirs) - 1, -1, -1):
            al[i] = float(old_stps[i] @ q) * ro[i]
            q -= np.multiply(old_dirs[i], al[i], out=work)
        q *= state["H_diag"]
        for i in range(len(old_dirs)):
            be_i = float(old_dirs[i] @ q) * ro[i]
            q += np.multiply(old_stps[i], al[i] - be_i, out=work)
        return q

    @staticmethod
    def _initial_step(state: dict[str, Any], flat_grad: np.ndarray, lr: float) -> float:
        """``lr``, scaled down on the very first iteration by the gradient's size."""
        if state["n_iter"] == 1:
            return min(1.0, 1.0 / float(np.abs(flat_grad).sum())) * lr
        return lr

    def _line_search(
        self,
        closure: Callable[[], Any],
        d: np.ndarray,
        t: float,
        loss: float,
        flat_grad: np.ndarray,
        gtd: float,
        max_ls: int,
    ) -> tuple[float, np.ndarray, float, int]:
        """A step length along ``d`` meeting the strong Wolfe conditions (parameters kept)."""
        x_init = self._copy_params()

        def evaluate(step: float) -> tuple[float, np.ndarray, float]:
            self._add_to_params(step, d)
            try:
                value = _loss_value(closure())
                grad = self._gather_flat_grad()
            finally:
                self._set_params(x_init)
            return value, grad, float(grad @ d)

        d_norm = self._abs_max(d)
        return _strong_wolfe(evaluate, t, loss, flat_grad, gtd, d_norm, max_ls)

    # ------------------------------------------------------- flat parameters
    def _gather_flat_grad(self) -> np.ndarray:
        """A new flat array of every parameter's gradient (zeros where there is none)."""
        flat = np.empty(self._numel, dtype=self._dtype)
        offset = 0
        for index, p in enumerate(self._params):
            part = flat[offset : offset + p.data.size]
            offset += p.data.size
            if p.grad is None:
                part.fill(0)
                continue
            grad = np.asarray(p.grad)
            if grad.shape != p.data.shape:
                raise ValueError(
                    f"LBFGS: the gradient of parameter {index} has shape {grad.shape}, but the "
                    f"parameter has shape {p.data.shape}; check the op that produced it"
                )
            part[...] = grad.reshape(-1)
        return flat

    def _add_to_params(self, t: float, d: np.ndarray) -> None:
        """x <- x + t * d, each parameter updated in place from its slice of ``d``."""
        offset = 0
        for index, p in enumerate(self._params):
            data = p.data
            part = d[offset : offset + data.size].reshape(data.shape)
            offset += data.size
            data += np.multiply(part, t, out=self._work_array(index, data))

    def _copy_params(self) -> list[np.ndarray]:
        """The parameters' current values, in arrays reused from one line search to the next."""
        if self._x_init is None or any(
            x.shape != p.data.shape or x.dtype != p.data.dtype
            for x, p in zip(self._x_init, self._params, strict=True)
        ):
            self._x_init = [np.empty_like(p.data) for p in self._params]
        for x, p in zip(self._x_init, self._params, strict=True):
            np.copyto(x, p.data)
        return self._x_init

    def _set_params(self, values: list[np.ndarray]) -> None:
        for p, value in zip(self._params, values, strict=True):
            np.copyto(p.data, value)

    def _flat_work(self) -> np.ndarray:
        if self._work_flat is None:
            self._work_flat = np.empty(self._numel, dtype=self._dtype)
        return self._work_flat

    def _abs_max(self, flat: np.ndarray) -> float:
        return float(np.abs(flat, out=self._flat_work()).max())

    @staticmethod
    def _remember(state: dict[str, Any], name: str, flat: np.ndarray) -> None:
        """Copy ``flat`` into ``state[name]``, reusing its array when there is one."""
        if isinstance(state.get(name), np.ndarray) and state[name].shape == flat.shape:
            np.copyto(state[name], flat)
        else:
            state[name] = flat.copy()

    # ------------------------------------------------------------ save/restore
    def _save_entry(self, entry: dict[str, Any]) -> dict[str, Any]:
        saved: dict[str, Any] = {name: entry[name] for name in _COUNT_STATE}
        if "d" not in entry:
            return saved
        empty = np.zeros((0, self._numel), dtype=self._dtype)
        saved.update(
            d=entry["d"].copy(),
            t=float(entry["t"]),
            old_dirs=np.stack(entry["old_dirs"]) if entry["old_dirs"] else empty,
            old_stps=np.stack(entry["old_stps"]) if entry["old_stps"] else empty.copy(),
            ro=np.array(entry["ro"], dtype=np.float64),
            H_diag=float(entry["H_diag"]),
            prev_flat_grad=entry["prev_flat_grad"].copy(),
            prev_loss=float(entry["prev_loss"]),
        )
        return saved

    def _state_names(self, group: dict[str, Any]) -> tuple[set[str], set[str]]:
        return set(_COUNT_STATE), set(_COUNT_STATE | _ITERATION_STATE)

    def _load_entry(self, entry: Any, saved_id: int, p: Any, group: dict) -> dict[str, Any]:
        where = f"LBFGS.load_state_dict: state of parameter {saved_id}"
        if not isinstance(entry, dict):
            raise ValueError(f"{where} must be a dict, got {_describe(entry)}")
        if not entry:
            return {}
        if p is not self._params[0]:
            raise ValueError(f"{where}: LBFGS keeps its state under its first parameter only")
        self._check_state_names(entry, group, where)
        loaded: dict[str, Any] = {
            name: load_count(entry[name], f"{where}: '{name}'") for name in _COUNT_STATE
        }
        if not _ITERATION_STATE & entry.keys():
            return loaded
        missing = sorted(_ITERATION_STATE - entry.keys())
        if missing:
            raise ValueError(f"{where} has some of an iteration's state but lacks {missing}")
        return {**loaded, **self._load_iteration_state(entry, where, group["history_size"])}

    def _load_iteration_state(
        self, entry: dict[str, Any], where: str, history: int
    ) -> dict[str, Any]:
        n, dtype = self._numel, self._dtype
        flat = "the flattened parameters have shape"
        ro = np.asarray(entry["ro"])
        if not (ro.ndim == 1 and ro.dtype.kind in "iuf" and np.all(np.isfinite(ro) & (ro > 0))):
            raise ValueError(
                f"{where}: 'ro' must be a 1-D array of positive numbers (one per pair), got "
                f"{_describe(entry['ro'])}"
            )
        k = len(ro)
        if k > history:
            raise ValueError(
                f"{where}: holds {k} (s, y) pairs, but history_size is {history}; build the "
                "optimizer with the history_size it was saved with"
            )
        pairs = f"{k} pairs of the flattened parameters have shape"
        old_dirs = load_array(entry["old_dirs"], (k, n), dtype, f"{where}: 'old_dirs'", pairs)
        old_stps = load_array(entry["old_stps"], (k, n), dtype, f"{where}: 'old_stps'", pairs)
        return {
            "d": load_array(entry["d"], (n,), dtype, f"{where}: 'd'", flat),
            "t": _load_float(entry["t"], f"{where}: 't'", low=0),
            "old_dirs": list(old_dirs),
            "old_stps": list(old_stps),
            "ro": [float(r) for r in ro],
            "H_diag": _load_float(entry["H_diag"], f"{where}: 'H_diag'", low=0),
            "prev_flat_grad": load_array(
                entry["prev_flat_grad"], (n,), dtype, f"{where}: 'prev_flat_grad'", flat
            ),
            "prev_loss": _load_float(entry["prev_loss"], f"{where}: 'prev_loss'"),
        }


# --------------------------------------------------------------- line search
class _Point(NamedTuple):
    """A trial step length with the loss, gradient and slope along d found there."""

    t: float
    f: float
    g: np.ndarray
    gtd: float


def _strong_wolfe(
    evaluate: Callable[[float], tuple[float, np.ndarray, float]],
    t: float,
    f: float,
    g: np.ndarray,
    gtd: float,
    d_norm: float,
    max_ls: int,
) -> tuple[float, np.ndarray, float, int]:
    """Find a step length satisfying the strong Wolfe conditions.

    ``evaluate(t)`` returns the loss, gradient and slope ``g.d`` at ``x + t d``; ``f``,
    ``g``, ``gtd`` are those at ``t = 0`` and ``t`` is the first trial. The search first
    grows ``t`` until an interval holds an acceptable point (bracketing), then shrinks the
    interval by cubic interpolation (zooming). At most ``max_ls`` further evaluations.

    Returns:
        ``(loss, gradient, t, evaluations)`` at the best point found.
    """
    start = _Point(0.0, f, g, gtd)
    new = _Point(t, *evaluate(t))
    evals = 1
    ls_iter = 0
    prev = start
    bracket: list[_Point] | None = None
    while ls_iter < max_ls:
        if new.f > f + _C1 * new.t * gtd or (ls_iter > 1 and new.f >= prev.f):
            bracket = [prev, new]
            break
        if abs(new.gtd) <= -_C2 * gtd:
            return new.f, new.g, new.t, evals  # the first point found is acceptable
        if new.gtd >= 0:
            bracket = [prev, new]
            break
        # Extrapolate: a cubic's minimum, at least 1% past t and at most 10 t.
        low, high = new.t + 0.01 * (new.t - prev.t), new.t * 10
        t = _cubic_interpolate(prev, new, bounds=(low, high))
        prev, new = new, _Point(t, *evaluate(t))
        evals += 1
        ls_iter += 1
    if bracket is None:  # out of evaluations while still extrapolating
        return _best([start, new], evals)
    return _zoom(evaluate, bracket, f, gtd, d_norm, max_ls, ls_iter, evals)


def _zoom(
    evaluate: Callable[[float], tuple[float, np.ndarray, float]],
    bracket: list[_Point],
    f: float,
    gtd: float,
    d_norm: float,
    max_ls: int,
    ls_iter: int,
    evals: int,
) -> tuple[float, np.ndarray, float, int]:
    """Shrink ``bracket`` until a point in it meets the strong Wolfe conditions."""
    low, high = (0, 1) if bracket[0].f <= bracket[1].f else (1, 0)
    insufficient_progress = False
    while ls_iter < max_ls:
        if abs(bracket[1].t - bracket[0].t) * d_norm < _LINE_SEARCH_TOLERANCE:
            break
        t = _cubic_interpolate(bracket[0], bracket[1])
        # Keep t off the interval's ends: if it lands within 10% of one twice in a row (or
        # outside), move it to 10% inside.
        left, right = min(bracket[0].t, bracket[1].t), max(bracket[0].t, bracket[1].t)
        margin = 0.1 * (right - left)
        if min(right - t, t - left) < margin:
            if insufficient_progress or t >= right or t <= left:
                t = right - margin if abs(t - right) < abs(t - left) else left + margin
                insufficient_progress = False
            else:
                insufficient_progress = True
        else:
            insufficient_progress = False

        new = _Point(t, *evaluate(t))
        evals += 1
        ls_iter += 1
        if new.f > f + _C1 * t * gtd or new.f >= bracket[low].f:
            bracket[high] = new  # not low enough: the new point closes the interval
            low, high = (0, 1) if bracket[0].f <= bracket[1].f else (1, 0)
            continue
        if abs(new.gtd) <= -_C2 * gtd:
            bracket[low] = new
            break  # the Wolfe conditions hold
        if new.gtd * (bracket[high].t - bracket[low].t) >= 0:
            bracket[high] = bracket[low]
        bracket[low] = new
    return _best(bracket, evals, low)


def _best(
    bracket: list[_Point], evals: int, low: int | None = None
) -> tuple[float, np.ndarray, float, int]:
    if low is None:
        low = 0 if bracket[0].f <= bracket[1].f else 1
    point = bracket[low]
    return point.f, point.g, point.t, evals


def _cubic_interpolate(a: _Point, b: _Point, bounds: tuple[float, float] | None = None) -> float:
    """The minimizer of the cubic through two points' values and slopes, within bounds.

    Without ``bounds`` the interval between the two points is used. If the cubic has no
    minimum (or the points coincide) the middle of the bounds is returned.
    """
    if bounds is None:
        bounds = (a.t, b.t) if a.t <= b.t else (b.t, a.t)
    low, high = bounds
    if a.t == b.t:
        return (low + high) / 2.0
    d1 = a.gtd + b.gtd - 3 * (a.f - b.f) / (a.t - b.t)
    d2_square = d1**2 - a.gtd * b.gtd
    if d2_square < 0:
        return (low + high) / 2.0
    d2 = math.sqrt(d2_square)
    near, far = (a, b) if a.t <= b.t else (b, a)
    denominator = far.gtd - near.gtd + 2 * d2
    if denominator == 0:
        return (low + high) / 2.0
    min_pos = far.t - (far.t - near.t) * ((far.gtd + d2 - d1) / denominator)
    return min(max(min_pos, low), high)


# ------------------------------------------------------------------- helpers
def _loss_value(loss: Any) -> float:
    """The closure's loss as a float (a number, a NumPy scalar or a one-element tensor)."""
    item = getattr(loss, "item", None)
    try:
        value = item() if callable(item) else loss
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(
            "LBFGS: the closure must return the loss, a number or a one-element tensor, got "
            f"{_describe(loss)}; end the closure with `return loss`"
        ) from None


def _load_float(value: Any, what: str, low: float = -math.inf) -> float:
    number = np.asarray(value)
    if not (
        number.ndim == 0 and number.dtype.kind in "iuf" and np.isfinite(number) and number >= low
    ):
        bound = "" if low == -math.inf else f" >= {low:g}"
        raise ValueError(f"{what} must be a finite number{bound}, got {value!r}")
    return float(number)
