"""A small pool of reusable scratch buffers for the conv kernels.

Each thread of a convolution copies windows into a tile buffer of about 2 MB, several times
per layer and step. Taking the same buffers back and forth, instead of allocating them
afresh, spares the allocator and keeps their pages mapped and warm. A buffer is given back
only by the code that took it, once it is dead, so nothing the caller can see is ever reused.

Buffers are kept as raw bytes and matched by size, not by shape: a request takes the
smallest free buffer that holds it with at most ``SLACK`` to spare, so the slightly
different tiles of a layer's forward and backward passes share their buffers.
"""

from __future__ import annotations

import math
import threading

import numpy as np

MAX_POOLED_BYTES = 1 << 30  # past this, given-back buffers are simply dropped
# Smaller buffers are allocated afresh: cheaper than the pool's lock and lookup (which cost
# a one-image LeNet-5 forward ~2 us per layer), and the allocator keeps such sizes anyway.
MIN_POOLED_BYTES = 128 << 10
SLACK = 1.25  # a pooled buffer serves requests down to 1/SLACK of its size

_free: list[np.ndarray] = []  # raw uint8 buffers
_pooled_bytes = 0
_lock = threading.Lock()  # the kernels' threads take and give buffers concurrently


def take(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """An uninitialized C-contiguous array of ``shape`` and ``dtype``, reused if one is free."""
    global _pooled_bytes
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes < MIN_POOLED_BYTES:
        return np.empty(shape, dtype=dtype)
    with _lock:
        fits = [i for i, raw in enumerate(_free) if nbytes <= raw.nbytes <= nbytes * SLACK]
        if fits:
            raw = _free.pop(min(fits, key=lambda i: _free[i].nbytes))
            _pooled_bytes -= raw.nbytes
        else:
            raw = np.empty(nbytes, dtype=np.uint8)
    return raw[:nbytes].view(dtype).reshape(shape)


def give(buf: np.ndarray | None) -> None:
    """Return a buffer obtained from :func:`take` that nothing references any more."""
    global _pooled_bytes
    if buf is None or buf.nbytes < MIN_POOLED_BYTES:
        return
    raw = buf.base
    if not isinstance(raw, np.ndarray) or raw.dtype != np.uint8 or raw.ndim != 1:
        return  # not one of ours
    with _lock:
        if _pooled_bytes + raw.nbytes > MAX_POOLED_BYTES or any(r is raw for r in _free):
            return
        _free.append(raw)
        _pooled_bytes += raw.nbytes


def clear() -> None:
    """Drop every pooled buffer (e.g. after training, to give the memory back)."""
    global _pooled_bytes
    with _lock:
        _free.clear()
        _pooled_bytes = 0
