"""pad: padding a tensor's borders (constant, reflected or replicated), as in PyTorch."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from cnnlab.autograd import Function
from cnnlab.tensor import Tensor

PAD_MODES = ("constant", "reflect", "replicate")


class Pad(Function):
    # Forward: one allocation, the input copied in once, then each padded axis's two border
    # slabs filled from the array itself (np.pad's general path is ~2x slower here).
    # Backward: one copy of the gradient, each border folded back onto the elements it
    # copied, in place, one axis at a time (a corner folds along both), then the interior.
    def forward(self, x, *, widths, mode, value):
        self.widths, self.mode = widths, mode
        shape = tuple(n + lo + hi for n, (lo, hi) in zip(x.shape, widths, strict=True))
        out = np.empty(shape, dtype=x.dtype)
        out[_interior(x.shape, widths)] = x
        for axis, (lo, hi) in enumerate(widths):
            if not lo and not hi:
                continue
            m = shape[axis]
            if mode == "constant":
                _take(out, axis, 0, lo)[...] = value
                _take(out, axis, m - hi, m)[...] = value
            elif mode == "replicate":
                _take(out, axis, 0, lo)[...] = _take(out, axis, lo, lo + 1)
                _take(out, axis, m - hi, m)[...] = _take(out, axis, m - hi - 1, m - hi)
            else:  # reflect: the border mirrors the inside without repeating the edge
                _take(out, axis, 0, lo)[...] = np.flip(_take(out, axis, lo + 1, 2 * lo + 1),
                                                      axis)
                _take(out, axis, m - hi, m)[...] = np.flip(
                    _take(out, axis, m - 2 * hi - 1, m - hi - 1), axis)
        return out

    def backward(self, grad):
        if self.mode == "constant":
            return np.ascontiguousarray(grad[_interior_of(grad.shape, self.widths)])
        g = grad.copy()
        for axis, (lo, hi) in enumerate(self.widths):
            if not lo and not hi:
                continue
            m = g.shape[axis]
            if self.mode == "replicate":
                if lo:
                    _take(g, axis, lo, lo + 1)[...] += _take(g, axis, 0, lo).sum(
                        axis=axis, keepdims=True)
                if hi:
                    _take(g, axis, m - hi - 1, m - hi)[...] += _take(g, axis, m - hi, m).sum(
                        axis=axis, keepdims=True)
            else:
                if lo:
                    _take(g, axis, lo + 1, 2 * lo + 1)[...] += np.flip(_take(g, axis, 0, lo),
                                                                       axis)
                if hi:
                    _take(g, axis, m - 2 * hi - 1, m - hi - 1)[...] += np.flip(
                        _take(g, axis, m - hi, m), axis)
        return np.ascontiguousarray(g[_interior_of(g.shape, self.widths)])


def _interior(shape, widths) -> tuple[slice, ...]:
    """Where an input of ``shape`` sits inside its padded array."""
    return tuple(slice(lo, lo + n) for n, (lo, _) in zip(shape, widths, strict=True))


def _interior_of(padded_shape, widths) -> tuple[slice, ...]:
    """The same, given the padded array's shape."""
    return tuple(slice(lo, m - hi) for m, (lo, hi) in zip(padded_shape, widths, strict=True))


def _take(a: np.ndarray, axis: int, start: int, stop: int) -> np.ndarray:
    """``a[..., start:stop, ...]`` on ``axis`` (a view)."""
    index = [slice(None)] * a.ndim
    index[axis] = slice(start, stop)
    return a[tuple(index)]


def pad(input: Tensor, pad: Sequence[int], mode: str = "constant", value: float = 0.0
        ) -> Tensor:
    """Pad the last dimensions of a tensor, PyTorch's ``F.pad``.

    Args:
        input: any shape.
        pad: ``(left, right)`` for the last dimension, then ``(top, bottom)`` for the one
            before it, and so on: an even number of non-negative widths, at most two per
            dimension.
        mode: ``"constant"`` (fill with ``value``; ``-inf`` is allowed, e.g. before max
            pooling), ``"reflect"`` (mirror without repeating the edge; each width must be
            smaller than its dimension) or ``"replicate"`` (repeat the edge).
        value: the fill value of ``"constant"``.

    Shape:
        Each padded dimension grows by its two widths.

    Raises:
        ValueError: an odd or too long ``pad``, a negative width, an unknown mode, or a
            reflection wider than its dimension.

    Example:
        >>> import numpy as np, cnnlab
        >>> from cnnlab.ops.pad import pad
        >>> pad(cnnlab.Tensor(np.ones((1, 1, 2, 2), np.float32)), (1, 1, 0, 2)).shape
        (1, 1, 4, 4)
    """
    widths = [int(w) for w in pad]
    if len(widths) % 2 or len(widths) // 2 > input.ndim:
        raise ValueError(f"pad expects an even number of widths, two per padded dimension "
                         f"(at most {2 * input.ndim} for input of shape {input.shape}), got "
                         f"{tuple(pad)}")
    if any(w < 0 for w in widths):
        raise ValueError(f"pad widths must be >= 0, got {tuple(pad)}; slice the tensor to "
                         "crop it")
    if mode not in PAD_MODES:
        raise ValueError(f"pad mode must be one of {', '.join(PAD_MODES)}, got {mode!r}")
    per_axis = [(0, 0)] * input.ndim
    for k in range(len(widths) // 2):
        axis = input.ndim - 1 - k
        lo, hi = widths[2 * k], widths[2 * k + 1]
        if mode == "reflect" and max(lo, hi) >= input.shape[axis]:
            raise ValueError(f"reflect padding of ({lo}, {hi}) needs dimension {axis} to be "
                             f"longer than both widths, got input of shape {input.shape}")
        if mode == "replicate" and (lo or hi) and input.shape[axis] == 0:
            raise ValueError(f"replicate padding needs a non-empty dimension {axis}, got "
                             f"input of shape {input.shape}")
        per_axis[axis] = (lo, hi)
    value = float(value)
    if math.isnan(value):
        raise ValueError("pad value must be a number or +-inf, got nan")
    return Pad.apply(input, widths=tuple(per_axis), mode=mode, value=value)
