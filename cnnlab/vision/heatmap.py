"""Peaks of class heat maps: the decoding step of centre-point detectors (CenterNet)."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from cnnlab.kernels.pool import max_pool2d_forward
from cnnlab.tensor import Tensor


class Peaks(NamedTuple):
    """The ``k`` highest peaks of each image, best first; each field is (N, k)."""

    scores: Tensor  # the heat at the peak (float)
    classes: Tensor  # int64 channel of the peak
    ys: Tensor  # int64 row
    xs: Tensor  # int64 column


def heatmap_peaks(heat: Any, k: int = 100, kernel_size: int = 3) -> Peaks:
    """The ``k`` best local maxima of each image's class heat maps.

    A position is a peak when it equals the maximum of its ``kernel_size`` x
    ``kernel_size`` neighbourhood (max pooling with stride 1 and same padding): this keeps
    one position per object without non-maximum suppression. Other positions score 0, then
    the ``k`` best positions over all classes are taken per image, all images at once.

    Args:
        heat: (N, C, H, W) scores in [0, 1] — the sigmoid of the heat-map logits (a
            non-peak scores 0, so negative scores would rank below it).
        k: how many peaks per image, at most C*H*W.
        kernel_size: odd neighbourhood size (3 in CenterNet).

    Returns:
        :class:`Peaks` of (N, k) Tensors: scores, classes, ys, xs, by decreasing score;
        equal scores come in (class, y, x) order, and of several positions tied at the
        k-th score the first ones in that order are taken.

    Raises:
        ValueError: a heat map that is not 4-D, or ``k`` / ``kernel_size`` out of range.

    Example:
        >>> import numpy as np
        >>> from cnnlab import vision
        >>> heat = np.zeros((1, 2, 4, 4), np.float32)
        >>> heat[0, 1, 2, 3], heat[0, 1, 2, 2], heat[0, 0, 0, 0] = 0.9, 0.8, 0.5
        >>> p = vision.heatmap_peaks(heat, k=2)
        >>> p.scores.data, p.classes.data, p.ys.data, p.xs.data
        (array([[0.9, 0.5]], dtype=float32), array([[1, 0]]), array([[2, 0]]), array([[3, 0]]))
    """
    h = heat.data if isinstance(heat, Tensor) else np.asarray(heat)
    if h.dtype.kind != "f":
        h = h.astype(np.float32)
    if h.ndim != 4:
        raise ValueError(f"heatmap_peaks expects a 4-D heat map (N, C, H, W), got shape "
                         f"{h.shape}")
    n, c, hh, ww = h.shape
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or \
            kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"heatmap_peaks: kernel_size must be an odd positive integer, got "
                         f"{kernel_size!r}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= c * hh * ww:
        raise ValueError(f"heatmap_peaks: k must be between 1 and C*H*W = {c * hh * ww}, "
                         f"got {k!r}")
    pad = kernel_size // 2
    hmax, _ = max_pool2d_forward(h, (kernel_size, kernel_size), (1, 1), (pad, pad), (hh, ww),
                                 need_argmax=False)
    flat = np.where(hmax == h, h, h.dtype.type(0)).reshape(n, -1)
    # The k best of each row, ties at the k-th score broken by position: everything above
    # the k-th score, then the first positions equal to it.
    kth = -np.partition(-flat, k - 1, axis=1)[:, k - 1:k]
    above = flat > kth
    at = flat == kth
    chosen = above | (at & (np.cumsum(at, axis=1) <= k - above.sum(axis=1, keepdims=True)))
    top = np.nonzero(chosen)[1].reshape(n, k)  # row by row, k in each
    scores = np.take_along_axis(flat, top, axis=1)
    order = np.lexsort((top, -scores), axis=-1)  # by score, then by position
    top = np.take_along_axis(top, order, axis=1).astype(np.int64)
    scores = np.take_along_axis(scores, order, axis=1)
    classes, rest = np.divmod(top, hh * ww)
    ys, xs = np.divmod(rest, ww)
    return Peaks(Tensor(scores), Tensor(classes), Tensor(ys), Tensor(xs))
