"""Convolution as im2col + one GEMM per group, on channels-last memory."""

from __future__ import annotations

import numpy as np

from cnnlab.kernels import workspace
from cnnlab.kernels.window import col2im_taps, pad_nhwc, tap_slices, to_nhwc, unpad_nhwc, windows

# Up to this many input channels (first layers: gray or RGB images) a window row holds so few
# contiguous values that copying tap by tap in channel-major order is ~3x faster.
CHANNEL_MAJOR_MAX_C = 4


def im2col_channel_major(xp: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int],
                         dilation: tuple[int, int], out_hw: tuple[int, int]) -> np.ndarray:
    """Window matrix of a padded NHWC array as a (M, KH*KW*C) *transposed view* of a
    (KH*KW*C, M) buffer filled with one contiguous block copy per tap and channel."""
    n, hp, wp, c = xp.shape
    kh, kw = kernel
    oh, ow = out_hw
    xc = xp.reshape(1, n, hp, wp) if c == 1 else np.ascontiguousarray(xp.transpose(3, 0, 1, 2))
    buf = workspace.take((kh, kw, c, n, oh, ow), xp.dtype)
    for i in range(kh):
        for j in range(kw):
            rows, cols = tap_slices(i, j, stride, dilation, out_hw)
            buf[i, j] = xc[:, :, rows, cols]
    return buf.reshape(kh * kw * c, n * oh * ow).T


def release(cols: list[np.ndarray]) -> None:
    """Give window matrices back to the workspace pool and empty the list."""
    for col in cols:
        workspace.give(col.base if col.base is not None else col)
    cols.clear()


def conv2d_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray | None,
                   stride: tuple[int, int], padding: tuple[int, int],
                   dilation: tuple[int, int], groups: int, out_hw: tuple[int, int],
                   keep_cols: bool = True):
    """Forward convolution.

    Args:
        x: (N, C, H, W) input (any memory layout; NHWC memory is used as is).
        w: (F, C/groups, KH, KW) filters.
        b: (F,) bias or None.

    Returns:
        ``(out, cols)``: out is (N, F, OH, OW) viewing NHWC memory; cols, one
        (N*OH*OW, KH*KW*C/groups) window matrix per group, kept for the weight gradient
        (which gives them back to the workspace pool), or empty unless ``keep_cols``.
    """
    n = x.shape[0]
    f, cg, kh, kw = w.shape
    oh, ow = out_hw
    m = n * oh * ow
    xp = pad_nhwc(to_nhwc(x), *padding)
    fg = f // groups
    out = np.empty((m, f), dtype=x.dtype)
    cols = []
    if groups == 1 and cg <= CHANNEL_MAJOR_MAX_C:
        win = None
    else:
        win = windows(xp, (kh, kw), stride, dilation, out_hw)  # (N, OH, OW, KH, KW, C)
    for g in range(groups):
        if win is None:
            col = im2col_channel_major(xp, (kh, kw), stride, dilation, out_hw)
        else:
            # One copy turns the strided windows into a dense (M, KH*KW*Cg) matrix.
            col = workspace.take((m, kh * kw * cg), x.dtype)
            np.copyto(col.reshape(n, oh, ow, kh, kw, cg),
                      win[..., g * cg:(g + 1) * cg] if groups > 1 else win)
        wmat = w[g * fg:(g + 1) * fg].transpose(2, 3, 1, 0).reshape(kh * kw * cg, fg)
        np.matmul(col, wmat, out=out[:, g * fg:(g + 1) * fg] if groups > 1 else out)
        cols.append(col)
    if b is not None:
        out += b
    if not keep_cols:
        release(cols)
    return out.reshape(n, oh, ow, f).transpose(0, 3, 1, 2), cols


def conv2d_backward(grad: np.ndarray, cols: list[np.ndarray], x_shape: tuple[int, ...],
                    w: np.ndarray, stride: tuple[int, int], padding: tuple[int, int],
                    dilation: tuple[int, int], groups: int,
                    need_x: bool, need_w: bool, need_b: bool):
    """Gradients of :func:`conv2d_forward` with respect to x, w and b (None where not needed)."""
    n, c, h, wd = x_shape
    f, cg, kh, kw = w.shape
    oh, ow = grad.shape[2], grad.shape[3]
    m = n * oh * ow
    fg = f // groups
    dout = to_nhwc(grad).reshape(m, f)
    dx = dw = db = None
    if need_b:
        db = np.ones(m, dtype=grad.dtype) @ dout  # a GEMV beats a strided sum here
    if need_w:
        dw = np.empty_like(w)
        for g in range(groups):
            # cols.T is a transposed view: BLAS reads it without a copy.
            dwg = cols[g].T @ dout[:, g * fg:(g + 1) * fg]  # (KH*KW*Cg, Fg)
            dw[g * fg:(g + 1) * fg] = dwg.reshape(kh, kw, cg, fg).transpose(3, 2, 0, 1)
    release(cols)  # dead from here on: the next forward pass reuses the memory
    if need_x:
        if _full_conv_applies(stride, padding, dilation, groups, (kh, kw), c, f):
            dx = _dx_full_conv(dout.reshape(n, oh, ow, f), w, padding, dilation, (h, wd))
        else:
            dx = _dx_col2im(dout, w, x_shape, stride, padding, dilation, groups, (oh, ow))
        dx = dx.transpose(0, 3, 1, 2)
    return dx, dw, db


def _full_conv_applies(stride, padding, dilation, groups, kernel, c, f) -> bool:
    """At stride 1 the input gradient is itself a convolution (of the padded output gradient
    with the flipped filters). It beats GEMM + col2im when there are no more filters than
    input channels, since its window matrix is then no larger than col2im's tap blocks."""
    return (stride == (1, 1) and groups == 1 and f <= c and c >= 16
            and all(padding[a] <= dilation[a] * (kernel[a] - 1) for a in range(2)))


def _dx_full_conv(dout: np.ndarray, w: np.ndarray, padding, dilation, in_hw) -> np.ndarray:
    """dx (N, H, W, C) as the convolution of dout, padded by D*(K-1) - P, with w flipped."""
    f, c, kh, kw = w.shape
    q = (dilation[0] * (kh - 1) - padding[0], dilation[1] * (kw - 1) - padding[1])
    dp = pad_nhwc(dout, *q)
    n = dout.shape[0]
    m = n * in_hw[0] * in_hw[1]
    cols = workspace.take((m, kh * kw * f), dout.dtype)
    np.copyto(cols.reshape(n, *in_hw, kh, kw, f), windows(dp, (kh, kw), (1, 1), dilation, in_hw))
    w_flipped = w[:, :, ::-1, ::-1].transpose(2, 3, 0, 1).reshape(kh * kw * f, c)
    dx = (cols @ w_flipped).reshape(n, in_hw[0], in_hw[1], c)
    workspace.give(cols)
    return dx


def _dx_col2im(dout: np.ndarray, w: np.ndarray, x_shape, stride, padding, dilation, groups,
               out_hw) -> np.ndarray:
    """dx (N, H, W, C) by one GEMM per tap and K*K slice-adds (any stride, groups)."""
    n, c, h, wd = x_shape
    f, cg, kh, kw = w.shape
    fg = f // groups
    m = dout.shape[0]
    ph, pw = padding
    taps = workspace.take((kh * kw, m, c), dout.dtype)
    for g in range(groups):
        # "Tap-major": one batched GEMM gives each tap's (M, Cg) block contiguously.
        w_taps = w[g * fg:(g + 1) * fg].transpose(2, 3, 0, 1).reshape(kh * kw, fg, cg)
        np.matmul(dout[None, :, g * fg:(g + 1) * fg], w_taps,
                  out=taps[:, :, g * cg:(g + 1) * cg] if groups > 1 else taps)
    dxp = col2im_taps(taps.reshape(kh, kw, n, *out_hw, c),
                      (n, h + 2 * ph, wd + 2 * pw, c), stride, dilation)
    workspace.give(taps)
    return unpad_nhwc(dxp, ph, pw)
