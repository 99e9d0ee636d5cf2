"""Central-difference gradient checking in float64, with a useful report when it fails.

``check_gradients(fn, inputs)`` evaluates ``fn()`` (a function of float64 tensors that
require gradients, e.g. the inputs of an op or the parameters of a model), reduces the output
to a scalar with fixed random weights ``r`` (so every output element counts and no symmetry
hides an error), and compares the analytic gradient of ``sum(r * fn())`` from ``backward``
with the central difference ``(L(x + eps) - L(x - eps)) / (2 eps)`` for every element of
every input. On failure it names the input, the worst element's index, both values and the
relative error ``|analytic - numeric| / max(|analytic|, |numeric|, floor)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

import cnnlab
from cnnlab import Tensor

EPS = 1e-5  # float64: truncation error ~eps^2, rounding error ~1e-16 * |L| / eps
TOL = 1e-6  # the largest relative error accepted
FLOOR = 1e-3  # gradients smaller than this are compared absolutely (error / FLOOR)


@dataclass
class Worst:
    """The element of one input whose analytic and numeric gradients disagree the most."""

    input_name: str
    index: tuple[int, ...]
    analytic: float
    numeric: float
    rel_error: float

    def describe(self) -> str:
        return (f"input {self.input_name!r}, element {self.index}: analytic "
                f"{self.analytic:.12g}, numeric {self.numeric:.12g}, relative error "
                f"{self.rel_error:.3g}")


class GradientCheckError(AssertionError):
    """The analytic gradient disagrees with the numeric one (the message says where)."""


def distinct_values(shape: Sequence[int], rng: np.random.Generator, low: float = -1.0,
                    high: float = 1.0) -> np.ndarray:
    """float64 values in (low, high), all different by at least (high-low)/size, none at 0.

    Keeps ReLU inputs away from the kink and max-pooling windows free of ties, so that a
    step of ``EPS`` never changes which branch or which element wins.
    """
    n = int(np.prod(shape))
    step = (high - low) / n
    values = low + step * (rng.permutation(n) + 0.5)
    # Nudge off exact zero (possible for symmetric ranges): half a step stays distinct.
    values[np.abs(values) < step / 4] += step / 4
    return values.reshape(shape)


def as_leaf(x: np.ndarray | Tensor) -> Tensor:
    """A float64 tensor that requires gradients (arrays are copied; tensors are used)."""
    if isinstance(x, Tensor):
        return x
    return Tensor(np.array(x, dtype=np.float64), requires_grad=True)


def _loss(fn: Callable[[], Tensor], weights: np.ndarray) -> float:
    with cnnlab.no_grad():
        out = fn()
    return float(np.sum(out.data * weights))


def check_gradients(fn: Callable[[], Tensor], inputs: Sequence[Tensor],
                    names: Sequence[str] | None = None, eps: float = EPS, tol: float = TOL,
                    floor: float = FLOOR, seed: int = 0) -> Worst:
    """Compare ``backward`` with central differences for every element of every input.

    Args:
        fn: computes the output from ``inputs`` (read through closure) with no arguments.
        inputs: float64 tensors requiring gradients; their ``.data`` is perturbed in place
            and restored.
        names: one label per input for the report (default "0", "1", ...).
        eps: finite-difference step.
        tol: largest accepted relative error.
        floor: smallest denominator of the relative error.
        seed: seeds the random weights that reduce the output to a scalar.

    Returns:
        The worst element over all inputs.

    Raises:
        GradientCheckError: naming the worst element, both gradients and the relative error,
            or saying which input got no gradient or a gradient of the wrong shape or dtype.
        TypeError: if an input is not a float64 tensor requiring gradients.
    """
    names = [str(i) for i in range(len(inputs))] if names is None else list(names)
    for name, t in zip(names, inputs, strict=True):
        if not isinstance(t, Tensor) or t.dtype != np.float64 or not t.requires_grad:
            raise TypeError(f"gradient check input {name!r} must be a float64 Tensor with "
                            f"requires_grad=True, got {t!r:.80}")
        t.grad = None
    out = fn()
    if out.dtype != np.float64:
        raise GradientCheckError(f"output dtype is {out.dtype}, expected float64 (inputs "
                                 f"are float64; an op lost precision)")
    weights = np.random.default_rng(seed).standard_normal(out.shape)
    out.backward(weights)

    worst: Worst | None = None
    for name, t in zip(names, inputs, strict=True):
        analytic = None if t.grad is None else t.grad.data
        if analytic is None:
            analytic = np.zeros_like(t.data)
            missing = True
        else:
            missing = False
            if analytic.shape != t.shape or analytic.dtype != np.float64:
                raise GradientCheckError(
                    f"input {name!r}: gradient has shape {analytic.shape} {analytic.dtype}, "
                    f"expected {t.shape} float64")
        numeric = np.empty_like(t.data)
        flat = t.data.reshape(-1)  # a view: perturbing it perturbs the input
        if not np.shares_memory(flat, t.data):
            raise TypeError(f"input {name!r} must be contiguous so it can be perturbed")
        for k in range(flat.size):
            orig = flat[k]
            flat[k] = orig + eps
            plus = _loss(fn, weights)
            flat[k] = orig - eps
            minus = _loss(fn, weights)
            flat[k] = orig
            numeric.reshape(-1)[k] = (plus - minus) / (2 * eps)
        if missing and np.any(numeric != 0):
            k = int(np.argmax(np.abs(numeric)))
            raise GradientCheckError(
                f"input {name!r} received no gradient, but the numeric gradient is "
                f"{numeric.reshape(-1)[k]:.6g} at element "
                f"{np.unravel_index(k, t.shape)}")
        err = np.abs(analytic - numeric) / np.maximum(
            np.maximum(np.abs(analytic), np.abs(numeric)), floor)
        k = int(np.argmax(err)) if err.size else 0
        index = tuple(int(i) for i in np.unravel_index(k, t.shape)) if err.size else ()
        this = Worst(name, index, float(analytic.reshape(-1)[k]) if err.size else 0.0,
                     float(numeric.reshape(-1)[k]) if err.size else 0.0,
                     float(err.reshape(-1)[k]) if err.size else 0.0)
        if this.rel_error > tol or not np.isfinite(this.rel_error):
            raise GradientCheckError(f"gradient check failed at {this.describe()} > {tol:g}")
        if worst is None or this.rel_error > worst.rel_error:
            worst = this
    assert worst is not None, "no inputs to check"
    return worst


def check_op(op: Callable[..., Tensor], *arrays: np.ndarray, names: Sequence[str] | None = None,
             **kwargs) -> Worst:
    """``check_gradients`` for ``op(*tensors)`` with float64 leaves made from ``arrays``."""
    leaves = [as_leaf(a) for a in arrays]
    return check_gradients(lambda: op(*leaves), leaves, names=names, **kwargs)


def check_module(module: cnnlab.nn.Module, x: np.ndarray, check_input: bool = True,
                 **kwargs) -> Worst:
    """``check_gradients`` for every parameter of ``module`` (converted to float64) and,
    optionally, its input."""
    module.double()
    named = list(module.named_parameters())
    leaves = [p for _, p in named]
    names = [n for n, _ in named]
    xt = as_leaf(x)
    if check_input:
        leaves, names = [xt, *leaves], ["input", *names]
    else:
        xt.requires_grad = False
    return check_gradients(lambda: module(xt), leaves, names=names, **kwargs)
