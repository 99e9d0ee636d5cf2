"""Max and average pooling on channels-last memory."""

from __future__ import annotations

import numpy as np

from cnnlab.kernels.parallel import over_batch
from cnnlab.kernels.window import col2im_taps, pad_nhwc, tap_slices, to_nhwc, unpad_nhwc

_NO_DILATION = (1, 1)


def max_pool2d_forward(x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int],
                       padding: tuple[int, int], out_hw: tuple[int, int],
                       need_argmax: bool = True):
    """Returns ``(out NCHW view of NHWC memory, index of each window's maximum as int8)``;
    the index (needed only for the backward pass) is None unless ``need_argmax``.

    Works tap by tap over strided views (K*K passes over the output, no window copy), split
    over the batch; the first maximum in row-major window order wins ties, as in PyTorch.
    """
    kh, kw = kernel
    xh = to_nhwc(x)
    n, c = x.shape[0], x.shape[1]
    out = np.empty((n, *out_hw, c), dtype=x.dtype)
    arg = np.zeros(out.shape, dtype=np.int16 if kh * kw > 127 else np.int8) \
        if need_argmax else None

    def chunk(a: int, z: int) -> None:
        xp = pad_nhwc(xh[a:z], *padding, value=-np.inf)
        o = out[a:z]
        _separable_max(xp, kernel, stride, o)
        if arg is None:
            return
        taps = [xp[:, r, q, :] for r, q in
                (tap_slices(i, j, stride, _NO_DILATION, out_hw)
                 for i in range(kh) for j in range(kw))]
        # arg counts the taps before the first maximum: PyTorch's tie rule, in three cheap
        # passes per tap (a masked copyto per tap is several times slower).
        not_found = np.ones(o.shape, dtype=bool)
        differs = np.empty(o.shape, dtype=bool)
        for tap in taps[:-1]:
            np.not_equal(tap, o, out=differs)
            np.logical_and(not_found, differs, out=not_found)
            arg[a:z] += not_found

    over_batch(chunk, n, x.size)
    return out.transpose(0, 3, 1, 2), arg


def _separable_max(xp: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int],
                   out: np.ndarray) -> None:
    """Window maxima into ``out`` (N, OH, OW, C): the max over the kernel's rows, then over
    its columns — 2(K-1) passes instead of K*K-1."""
    (kh, kw), (sh, sw) = kernel, stride
    oh, ow = out.shape[1], out.shape[2]
    rows = [xp[:, i:i + sh * (oh - 1) + 1:sh] for i in range(kh)]
    by_row = rows[0] if kh == 1 else np.maximum(rows[0], rows[1])
    for r in rows[2:]:
        np.maximum(by_row, r, out=by_row)
    cols = [by_row[:, :, j:j + sw * (ow - 1) + 1:sw] for j in range(kw)]
    if kw == 1:
        np.copyto(out, cols[0])
        return
    np.maximum(cols[0], cols[1], out=out)
    for c in cols[2:]:
        np.maximum(out, c, out=out)


def max_pool2d_backward(grad: np.ndarray, arg: np.ndarray, x_shape: tuple[int, ...],
                        kernel: tuple[int, int], stride: tuple[int, int],
                        padding: tuple[int, int]) -> np.ndarray:
    n, c, h, w = x_shape
    kh, kw = kernel
    ph, pw = padding
    oh, ow = arg.shape[1], arg.shape[2]
    g = to_nhwc(grad)
    # Windows that tile the input exactly write every cell below: no zero-filling pass.
    tiled = (kh, kw) == stride and padding == (0, 0) and (h, w) == (oh * kh, ow * kw)
    dxp = (np.empty if tiled else np.zeros)((n, h + 2 * ph, w + 2 * pw, c), dtype=grad.dtype)

    def chunk(a: int, z: int) -> None:
        if (kh, kw) == stride:
            # Windows don't overlap: each tap writes its own input cells, no accumulation.
            for i in range(kh):
                for j in range(kw):
                    rows, cols = tap_slices(i, j, stride, _NO_DILATION, (oh, ow))
                    np.multiply(g[a:z], arg[a:z] == i * kw + j, out=dxp[a:z, rows, cols, :])
            return
        taps = np.empty((kh, kw, z - a, oh, ow, c), dtype=grad.dtype)
        for i in range(kh):
            for j in range(kw):
                np.multiply(g[a:z], arg[a:z] == i * kw + j, out=taps[i, j])
        col2im_taps(taps, stride, _NO_DILATION, dxp[a:z])

    over_batch(chunk, n, dxp.size)
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
