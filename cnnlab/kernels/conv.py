"""Convolution as im2col + one GEMM per group, on channels-last memory."""

from __future__ import annotations

import numpy as np

from cnnlab.kernels.window import col2im_taps, pad_nhwc, to_nhwc, unpad_nhwc, windows


def conv2d_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray | None,
                   stride: tuple[int, int], padding: tuple[int, int],
                   dilation: tuple[int, int], groups: int, out_hw: tuple[int, int]):
    """Forward convolution.

    Args:
        x: (N, C, H, W) input (any memory layout; NHWC memory is used as is).
        w: (F, C/groups, KH, KW) filters.
        b: (F,) bias or None.

    Returns:
        ``(out, cols)``: out is (N, F, OH, OW) viewing NHWC memory; cols, the
        (groups, N*OH*OW, KH*KW*C/groups) window matrices kept for the backward pass.
    """
    n = x.shape[0]
    f, cg, kh, kw = w.shape
    oh, ow = out_hw
    m = n * oh * ow
    xp = pad_nhwc(to_nhwc(x), *padding)
    win = windows(xp, (kh, kw), stride, dilation, out_hw)  # (N, OH, OW, KH, KW, C)
    fg = f // groups
    out = np.empty((m, f), dtype=x.dtype)
    cols = []
    for g in range(groups):
        # One copy turns the strided windows into a dense (M, KH*KW*Cg) matrix.
        col = win[..., g * cg:(g + 1) * cg].reshape(m, kh * kw * cg) if groups > 1 else \
            win.reshape(m, kh * kw * cg)
        wmat = w[g * fg:(g + 1) * fg].transpose(2, 3, 1, 0).reshape(kh * kw * cg, fg)
        np.matmul(col, wmat, out=out[:, g * fg:(g + 1) * fg] if groups > 1 else out)
        cols.append(col)
    if b is not None:
        out += b
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
    if need_x:
        ph, pw = padding
        taps = np.empty((kh * kw, m, c), dtype=grad.dtype)
        for g in range(groups):
            # "Tap-major": one batched GEMM gives each tap's (M, Cg) block contiguously.
            w_taps = w[g * fg:(g + 1) * fg].transpose(2, 3, 0, 1).reshape(kh * kw, fg, cg)
            np.matmul(dout[None, :, g * fg:(g + 1) * fg], w_taps,
                      out=taps[:, :, g * cg:(g + 1) * cg] if groups > 1 else taps)
        dxp = col2im_taps(taps.reshape(kh, kw, n, oh, ow, c),
                          (n, h + 2 * ph, wd + 2 * pw, c), stride, dilation)
        dx = unpad_nhwc(dxp, ph, pw).transpose(0, 3, 1, 2)
    return dx, dw, db
