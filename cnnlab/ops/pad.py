"""pad: padding a tensor's borders (constant, reflected or replicated), as in PyTorch."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from cnnlab.autograd import Function
from cnnlab.tensor import Tensor

PAD_MODES = ("constant", "reflect", "replicate")


class Pad(Function):
    def forward(self, x, *, widths, mode, value):
        self.widths, self.mode = widths, mode
        if mode == "constant":
            return np.pad(x, widths, mode="constant", constant_values=x.dtype.type(value))
        return np.pad(x, widths, mode="reflect" if mode == "reflect" else "edge")

    def backward(self, grad):
        # One axis at a time, outermost last: fold each border's gradient back onto the
        # input elements it copied (a reflected border onto the mirrored rows, a
        # replicated one onto the edge row), then cut the border off.
        for axis in reversed(range(grad.ndim)):
            lo, hi = self.widths[axis]
            if not lo and not hi:
                continue
            n = grad.shape[axis]
            inner = _take(grad, axis, lo, n - hi).copy()
            if self.mode == "reflect":
                if lo:
                    _take(inner, axis, 1, lo + 1)[...] += np.flip(_take(grad, axis, 0, lo), axis)
                if hi:
                    m = inner.shape[axis]
                    _take(inner, axis, m - 1 - hi, m - 1)[...] += np.flip(
                        _take(grad, axis, n - hi, n), axis)
            elif self.mode == "replicate":
                if lo:
                    _take(inner, axis, 0, 1)[...] += _take(grad, axis, 0, lo).sum(
                        axis=axis, keepdims=True)
                if hi:
                    m = inner.shape[axis]
                    _take(inner, axis, m - 1, m)[...] += _take(grad, axis, n - hi, n).sum(
                        axis=axis, keepdims=True)
            grad = inner
        return grad


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
