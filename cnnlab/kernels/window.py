"""Sliding windows as strided views (im2col without a gather) and their adjoint (col2im)."""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided


def to_nhwc(x: np.ndarray) -> np.ndarray:
    """An NCHW array as a C-contiguous NHWC array (free when its memory is NHWC already)."""
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1))


# Up to this many bytes, zero-filled memory and one copy beat writing the borders alone
# (2.4 -> 1.0 us for one MNIST image; one pass too many for a batch).
SMALL_PAD_BYTES = 256 << 10


def pad_nhwc(x: np.ndarray, ph: int, pw: int, value: float = 0.0) -> np.ndarray:
    """Pad H and W of an NHWC array (one allocation and one copy)."""
    if ph == 0 and pw == 0:
        return x
    n, h, w, c = x.shape
    shape = (n, h + 2 * ph, w + 2 * pw, c)
    if value == 0.0 and n * shape[1] * shape[2] * c * x.itemsize <= SMALL_PAD_BYTES:
        out = np.zeros(shape, dtype=x.dtype)
        out[:, ph:h + ph, pw:w + pw] = x
        return out
    out = np.empty(shape, dtype=x.dtype)
    if value == 0.0:
        out[:, :ph] = 0
        out[:, h + ph:] = 0
        out[:, ph:h + ph, :pw] = 0
        out[:, ph:h + ph, w + pw:] = 0
    else:
        out.fill(value)
    out[:, ph:h + ph, pw:w + pw] = x
    return out


def windows(xp: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int],
            dilation: tuple[int, int], out_hw: tuple[int, int]) -> np.ndarray:
    """A read-only (N, OH, OW, KH, KW, C) view of every window of a padded NHWC array."""
    n, _, _, c = xp.shape
    sn, sh, sw, sc = xp.strides
    shape = (n, out_hw[0], out_hw[1], kernel[0], kernel[1], c)
    strides = (sn, sh * stride[0], sw * stride[1], sh * dilation[0], sw * dilation[1], sc)
    if xp.flags.c_contiguous:
        # Same view as as_strided, at a fraction of its call overhead (matters at batch 1).
        view = np.ndarray(shape, xp.dtype, buffer=xp, strides=strides)
        view.flags.writeable = False
        return view
    return as_strided(xp, shape=shape, strides=strides, writeable=False)


def tap_slices(i: int, j: int, stride: tuple[int, int], dilation: tuple[int, int],
               out_hw: tuple[int, int]) -> tuple[slice, slice]:
    """The input rows and columns that kernel tap (i, j) touches, over all output positions."""
    r0, c0 = i * dilation[0], j * dilation[1]
    return (slice(r0, r0 + stride[0] * (out_hw[0] - 1) + 1, stride[0]),
            slice(c0, c0 + stride[1] * (out_hw[1] - 1) + 1, stride[1]))


def col2im_taps(taps: np.ndarray, stride: tuple[int, int], dilation: tuple[int, int],
                out: np.ndarray, fill: float | np.ndarray | None = None) -> np.ndarray:
    """Scatter-add per-tap blocks into a padded NHWC array.

    Args:
        taps: (KH, KW, N, OH, OW, C), the gradient each kernel tap sends to its inputs.
        out: (N, Hp, Wp, C), added to in place with KH*KW slice-adds (no ``np.add.at``).
        fill: None to add into ``out`` as it is. Otherwise ``out`` is uninitialized and
            ends as ``fill`` (a number, or one value per channel) plus the taps: without
            dilation, the first ``stride`` taps of each axis never share a position, so
            they are written (with ``fill`` added) instead of added, and only the positions
            they miss are filled first — no pass that zeroes the whole array.

    Returns:
        ``out``.
    """
    kh, kw, _, oh, ow, _ = taps.shape
    first = (0, 0)  # how many taps per axis are written rather than added
    if fill is not None:
        first = (min(kh, stride[0]) if dilation[0] == 1 else 0,
                 min(kw, stride[1]) if dilation[1] == 1 else 0)
        if 0 in first:
            out[...] = fill
        else:
            # Rows the first taps miss: the phases past the kernel, and past the last window.
            for a in range(first[0], stride[0]):
                out[:, a::stride[0]] = fill
            out[:, stride[0] * oh:] = fill
            for b in range(first[1], stride[1]):
                out[:, :, b::stride[1]] = fill
            out[:, :, stride[1] * ow:] = fill
    for i in range(kh):
        for j in range(kw):
            rows, cols = tap_slices(i, j, stride, dilation, (oh, ow))
            if i < first[0] and j < first[1]:
                np.add(taps[i, j], fill, out=out[:, rows, cols, :])
            else:
                out[:, rows, cols, :] += taps[i, j]
    return out


def unpad_nhwc(xp: np.ndarray, ph: int, pw: int) -> np.ndarray:
    if ph == 0 and pw == 0:
        return xp
    return xp[:, ph:xp.shape[1] - ph, pw:xp.shape[2] - pw, :]
