"""Convolution as im2col + one GEMM per group, on channels-last memory.

Rows of the window matrix are ordered by sample, so a layer splits over the batch into
independent chunks (``parallel.over_batch``): each pads, copies and multiplies its own rows.
"""

from __future__ import annotations

import numpy as np

from cnnlab.kernels import parallel, workspace
from cnnlab.kernels.window import col2im_taps, pad_nhwc, tap_slices, to_nhwc, unpad_nhwc, windows

# Up to this many input channels (first layers: gray or RGB images) a window row holds so few
# contiguous values that copying tap by tap in channel-major order is ~3x faster.
CHANNEL_MAJOR_MAX_C = 4


def fill_channel_major(buf: np.ndarray, xp: np.ndarray, stride: tuple[int, int],
                       dilation: tuple[int, int]) -> None:
    """Fill a (KH, KW, C, N, OH, OW) buffer from a padded NHWC array, one contiguous block
    copy per tap and channel."""
    kh, kw, c, n, oh, ow = buf.shape
    _, hp, wp, _ = xp.shape
    xc = xp.reshape(1, n, hp, wp) if c == 1 else np.ascontiguousarray(xp.transpose(3, 0, 1, 2))
    for i in range(kh):
        for j in range(kw):
            rows, cols = tap_slices(i, j, stride, dilation, (oh, ow))
            buf[i, j] = xc[:, :, rows, cols]


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
    per_sample = oh * ow
    m, kk, fg = n * per_sample, kh * kw * cg, f // groups
    xh = to_nhwc(x)
    out = np.empty((m, f), dtype=x.dtype)
    channel_major = groups == 1 and cg <= CHANNEL_MAJOR_MAX_C
    if channel_major:
        buf = workspace.take((kh, kw, cg, n, oh, ow), x.dtype)
        cols = [buf.reshape(kk, m).T]  # a transposed view: BLAS reads it as it is
    else:
        cols = [workspace.take((m, kk), x.dtype) for _ in range(groups)]
    wmats = [w[g * fg:(g + 1) * fg].transpose(2, 3, 1, 0).reshape(kk, fg) for g in range(groups)]

    def chunk(a: int, z: int) -> None:
        rows = slice(a * per_sample, z * per_sample)
        xp = pad_nhwc(xh[a:z], *padding)
        if channel_major:
            fill_channel_major(buf[:, :, :, a:z], xp, stride, dilation)
        else:
            # One copy turns the strided windows into dense (rows, KH*KW*Cg) matrices.
            win = windows(xp, (kh, kw), stride, dilation, out_hw)
            for g in range(groups):
                np.copyto(cols[g][rows].reshape(z - a, oh, ow, kh, kw, cg),
                          win[..., g * cg:(g + 1) * cg] if groups > 1 else win)
        for g in range(groups):
            np.matmul(cols[g][rows], wmats[g],
                      out=out[rows, g * fg:(g + 1) * fg] if groups > 1 else out[rows])
        if b is not None:
            out[rows] += b

    with parallel.single_threaded_blas:
        parallel.over_batch(chunk, n, cost=m * kk * f)
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
    per_sample = oh * ow
    m, fg = n * per_sample, f // groups
    ph, pw = padding
    dout = to_nhwc(grad).reshape(m, f)
    full = need_x and _full_conv_applies(stride, padding, dilation, groups, (kh, kw), c, f)
    dx = dxp = None
    if need_x:
        if full:
            dx = np.empty((n, h, wd, c), dtype=grad.dtype)
        else:
            dxp = np.zeros((n, h + 2 * ph, wd + 2 * pw, c), dtype=grad.dtype)

    def chunk(a: int, z: int) -> list[np.ndarray] | None:
        rows = slice(a * per_sample, z * per_sample)
        if dx is not None:
            _dx_full_conv(dout[rows].reshape(z - a, oh, ow, f), w, padding, dilation, dx[a:z])
        elif dxp is not None:
            _dx_col2im(dout[rows], w, stride, dilation, groups, (oh, ow), dxp[a:z])
        if need_w:
            # cols.T is a transposed view: BLAS reads it without a copy.
            return [cols[g][rows].T @ dout[rows, g * fg:(g + 1) * fg] for g in range(groups)]
        return None

    dw = db = None
    with parallel.single_threaded_blas:
        if need_b:
            db = np.ones(m, dtype=grad.dtype) @ dout  # a GEMV beats a strided sum here
        partials = parallel.over_batch(chunk, n, cost=m * kh * kw * c * f * (need_x + need_w))
    if need_w:
        dw = np.empty_like(w)
        for g in range(groups):
            dwg = partials[0][g]
            for part in partials[1:]:
                dwg += part[g]
            dw[g * fg:(g + 1) * fg] = dwg.reshape(kh, kw, cg, fg).transpose(3, 2, 0, 1)
        release(cols)  # dead from here on: the next forward pass reuses the memory
    if need_x:
        dx = dx if dx is not None else unpad_nhwc(dxp, ph, pw)
        dx = dx.transpose(0, 3, 1, 2)
    return dx, dw, db


def _full_conv_applies(stride, padding, dilation, groups, kernel, c, f) -> bool:
    """At stride 1 the input gradient is itself a convolution (of the padded output gradient
    with the flipped filters). It beats GEMM + col2im when there are no more filters than
    input channels, since its window matrix is then no larger than col2im's tap blocks."""
    return (stride == (1, 1) and groups == 1 and f <= c and c >= 16
            and all(padding[a] <= dilation[a] * (kernel[a] - 1) for a in range(2)))


def _dx_full_conv(dout: np.ndarray, w: np.ndarray, padding, dilation, out: np.ndarray) -> None:
    """dx (N, H, W, C) into ``out``: dout, padded by D*(K-1) - P, convolved with w flipped."""
    f, c, kh, kw = w.shape
    n, h, wd, _ = out.shape
    q = (dilation[0] * (kh - 1) - padding[0], dilation[1] * (kw - 1) - padding[1])
    dp = pad_nhwc(dout, *q)
    cols = workspace.take((n * h * wd, kh * kw * f), dout.dtype)
    np.copyto(cols.reshape(n, h, wd, kh, kw, f), windows(dp, (kh, kw), (1, 1), dilation, (h, wd)))
    w_flipped = w[:, :, ::-1, ::-1].transpose(2, 3, 0, 1).reshape(kh * kw * f, c)
    np.matmul(cols, w_flipped, out=out.reshape(n * h * wd, c))
    workspace.give(cols)


def _dx_col2im(dout: np.ndarray, w: np.ndarray, stride, dilation, groups, out_hw,
               out: np.ndarray) -> None:
    """Add dx into the padded (N, Hp, Wp, C) ``out`` by one GEMM per tap and K*K slice-adds
    (any stride, any groups)."""
    f, cg, kh, kw = w.shape
    fg = f // groups
    m, c = dout.shape[0], cg * groups
    taps = workspace.take((kh * kw, m, c), dout.dtype)
    for g in range(groups):
        # "Tap-major": one batched GEMM gives each tap's (M, Cg) block contiguously.
        w_taps = w[g * fg:(g + 1) * fg].transpose(2, 3, 0, 1).reshape(kh * kw, fg, cg)
        np.matmul(dout[None, :, g * fg:(g + 1) * fg], w_taps,
                  out=taps[:, :, g * cg:(g + 1) * cg] if groups > 1 else taps)
    col2im_taps(taps.reshape(kh, kw, out.shape[0], *out_hw, c), stride, dilation, out)
    workspace.give(taps)
