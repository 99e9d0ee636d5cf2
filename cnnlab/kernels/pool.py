"""Max and average pooling on channels-last memory."""

from __future__ import annotations

import numpy as np

from cnnlab.kernels.window import col2im_taps, pad_nhwc, tap_slices, to_nhwc, unpad_nhwc

_NO_DILATION = (1, 1)


def max_pool2d_forward(x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int],
                       padding: tuple[int, int], out_hw: tuple[int, int],
                       need_argmax: bool = True):
    """Returns ``(out NCHW view of NHWC memory, index of each window's maximum as int8)``;
    the index (needed only for the backward pass) is None unless ``need_argmax``.

    Works tap by tap over strided views (K*K passes over the output, no window copy); the
    first maximum in row-major window order wins ties, as in PyTorch.
    """
    kh, kw = kernel
    xp = pad_nhwc(to_nhwc(x), *padding, value=-np.inf)
    taps = [xp[:, r, c, :] for r, c in
            (tap_slices(i, j, stride, _NO_DILATION, out_hw) for i in range(kh) for j in range(kw))]
    out = taps[0].copy()
    for tap in taps[1:]:
        np.maximum(out, tap, out=out)
    if not need_argmax:
        return out.transpose(0, 3, 1, 2), None
    # arg counts the taps before the first maximum: PyTorch's tie rule, in three cheap
    # passes per tap (a masked copyto per tap is several times slower).
    arg = np.zeros(out.shape, dtype=np.int16 if kh * kw > 127 else np.int8)
    not_found = np.ones(out.shape, dtype=bool)
    differs = np.empty(out.shape, dtype=bool)
    for tap in taps[:-1]:
        np.not_equal(tap, out, out=differs)
        np.logical_and(not_found, differs, out=not_found)
        arg += not_found
    return out.transpose(0, 3, 1, 2), arg


def max_pool2d_backward(grad: np.ndarray, arg: np.ndarray, x_shape: tuple[int, ...],
                        kernel: tuple[int, int], stride: tuple[int, int],
                        padding: tuple[int, int]) -> np.ndarray:
    n, c, h, w = x_shape
    kh, kw = kernel
    ph, pw = padding
    oh, ow = arg.shape[1], arg.shape[2]
    g = to_nhwc(grad)
    if (kh, kw) == stride:
        # Windows don't overlap: each tap writes its own input cells, no accumulation.
        dxp = np.zeros((n, h + 2 * ph, w + 2 * pw, c), dtype=grad.dtype)
        for i in range(kh):
            for j in range(kw):
                rows, cols = tap_slices(i, j, stride, _NO_DILATION, (oh, ow))
                np.multiply(g, arg == i * kw + j, out=dxp[:, rows, cols, :])
    else:
        taps = np.empty((kh, kw, n, oh, ow, c), dtype=grad.dtype)
        for i in range(kh):
            for j in range(kw):
                np.multiply(g, arg == i * kw + j, out=taps[i, j])
        dxp = col2im_taps(taps, stride, _NO_DILATION,
                          np.zeros((n, h + 2 * ph, w + 2 * pw, c), dtype=grad.dtype))
    return unpad_nhwc(dxp, ph, pw).transpose(0, 3, 1, 2)


def avg_pool2d_forward(x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int],
                       padding: tuple[int, int], out_hw: tuple[int, int]) -> np.ndarray:
    """Average over each window, zero padding included in the count (PyTorch's default)."""
    kh, kw = kernel
    xp = pad_nhwc(to_nhwc(x), *padding)
    oh, ow = out_hw
    out = np.zeros((x.shape[0], oh, ow, x.shape[1]), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            rows, cols = tap_slices(i, j, stride, _NO_DILATION, out_hw)
            out += xp[:, rows, cols, :]
    out *= x.dtype.type(1.0 / (kh * kw))
    return out.transpose(0, 3, 1, 2)


def avg_pool2d_backward(grad: np.ndarray, x_shape: tuple[int, ...], kernel: tuple[int, int],
                        stride: tuple[int, int], padding: tuple[int, int]) -> np.ndarray:
    n, c, h, w = x_shape
    kh, kw = kernel
    ph, pw = padding
    g = to_nhwc(grad) * grad.dtype.type(1.0 / (kh * kw))
    taps = np.broadcast_to(g, (kh, kw) + g.shape)
    dxp = col2im_taps(taps, stride, _NO_DILATION,
                      np.zeros((n, h + 2 * ph, w + 2 * pw, c), dtype=grad.dtype))
    return unpad_nhwc(dxp, ph, pw).transpose(0, 3, 1, 2)
