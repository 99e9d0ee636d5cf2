"""A small pool of reusable scratch buffers for the conv kernels.

Each thread of a convolution copies windows into a tile buffer of about 2 MB, several times
per layer and step. Taking the same buffers back and forth, instead of allocating them
afresh, spares the allocator and keeps their pages mapped and warm. A buffer is given back
only by the code that took it, once it is dead, so nothing the caller can see is ever reused.
"""

from __future__ import annotations

import math
import threading

import numpy as np

ENABLED = True
MAX_POOLED_BYTES = 1 << 30  # past this, given-back buffers are simply dropped
# Smaller buffers are allocated afresh: cheaper than the pool's lock and lookup (which cost
# a one-image LeNet-5 forward ~2 us per layer), and the allocator keeps such sizes anyway.
MIN_POOLED_BYTES = 128 << 10
_pool: dict[tuple[tuple[int, ...], str], list[np.ndarray]] = {}
_pooled_bytes = 0
_lock = threading.Lock()  # the kernels' threads take and give buffers concurrently


def take(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """An uninitialized C-contiguous array of ``shape`` and ``dtype``, reused if one is free."""
    global _pooled_bytes
    dtype = np.dtype(dtype)
    if not ENABLED or math.prod(shape) * dtype.itemsize < MIN_POOLED_BYTES:
        return np.empty(shape, dtype=dtype)
    with _lock:
        free = _pool.get((shape, dtype.str))
        if free:
            buf = free.pop()
            _pooled_bytes -= buf.nbytes
            return buf
    return np.empty(shape, dtype=dtype)


def give(buf: np.ndarray | None) -> None:
    """Return a buffer obtained from :func:`take` that nothing references any more."""
    global _pooled_bytes
    if buf is None or not ENABLED or buf.nbytes < MIN_POOLED_BYTES:
        return
    with _lock:
        if _pooled_bytes + buf.nbytes > MAX_POOLED_BYTES:
            return
        _pool.setdefault((buf.shape, buf.dtype.str), []).append(buf)
        _pooled_bytes += buf.nbytes


def clear() -> None:
    """Drop every pooled buffer (e.g. after training, to give the memory back)."""
    global _pooled_bytes
    with _lock:
        _pool.clear()
        _pooled_bytes = 0
