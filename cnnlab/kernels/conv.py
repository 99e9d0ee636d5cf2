"""Convolution as im2col + GEMM on channels-last memory, one cache-sized tile at a time.

Each tile (``kernels.tiles``) copies its windows into a small buffer and multiplies it while
it is still in cache; threads take consecutive tiles. Nothing is kept between the forward
and the backward pass but the input: the weight gradient builds the windows again, tile by
tile, which costs less than writing the whole window matrix to memory and reading it back.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from cnnlab.kernels import parallel, pointwise, tiles, workspace
from cnnlab.kernels.window import col2im_taps, pad_nhwc, tap_slices, to_nhwc, unpad_nhwc, windows

# Up to this many input channels (first layers: gray or RGB images) a window row holds so few
# contiguous values that copying tap by tap in channel-major order is ~3x faster.
CHANNEL_MAJOR_MAX_C = 4

# Fewer samples than threads: bands of one image's rows are shared out only past this many
# multiply-adds (no gain measured at 4e7, 1.3x at 1.5e8 on 2 cores); below it, one thread.
BAND_SPLIT_WORK = 100_000_000

# OpenBLAS is slow on a GEMM with a long inner dimension and a small output, which is the
# weight gradient of a thin layer: up to this many bytes of windows per sample, one GEMM per
# sample and their sum run 1.3-2x faster (LeNet-5's layers; the CIFAR net's are above it).
PER_SAMPLE_SUM_BYTES = 256 << 10


class Geometry(NamedTuple):
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    groups: int
    cg: int  # input channels per group
    out_hw: tuple[int, int]

    @property
    def taps(self) -> int:  # length of one window row: KH * KW * C/groups
        return self.kernel[0] * self.kernel[1] * self.cg

    @property
    def channel_major(self) -> bool:
        return self.groups == 1 and self.cg <= CHANNEL_MAJOR_MAX_C


def fill_channel_major(buf: np.ndarray, xp: np.ndarray, stride: tuple[int, int],
                       dilation: tuple[int, int], out_hw: tuple[int, int],
                       pool_order: bool = False) -> None:
    """Fill a (KH, KW, C, positions) buffer from a padded NHWC array, positions in (N, OH,
    OW) order, or with ``pool_order`` in (2, 2, N, OH/2, OW/2) order (see :func:`_fill`):
    one strided copy for one channel or one image (fewest calls), else one contiguous block
    copy per tap and channel (streams better over several RGB images)."""
    kh, kw, c = buf.shape[:3]
    oh, ow = out_hw
    n = xp.shape[0]
    if c == 1 or n == 1:
        win = windows(xp, (kh, kw), stride, dilation, (oh, ow)).transpose(3, 4, 5, 0, 1, 2)
        src = _in_order(win, pool_order)
        np.copyto(buf.reshape(src.shape), src)  # the buffer is contiguous: a view
        return
    xc = np.ascontiguousarray(xp.transpose(3, 0, 1, 2))
    for i in range(kh):
        for j in range(kw):
            rows, cols = tap_slices(i, j, stride, dilation, (oh, ow))
            src = _in_order(xc[:, :, rows, cols], pool_order)
            np.copyto(buf[i, j].reshape(src.shape), src)


def _in_order(v: np.ndarray, pool_order: bool, at: int = -3) -> np.ndarray:
    """A view of ``v`` whose (N, OH, OW) axes, starting at axis ``at``, become (2, 2, N,
    OH/2, OW/2) when ``pool_order``: each 2x2 pooling window's four positions in four
    separate blocks."""
    if not pool_order:
        return v
    k = at % v.ndim
    n, oh, ow = v.shape[k:k + 3]
    v = v.reshape(*v.shape[:k], n, oh // 2, 2, ow // 2, 2, *v.shape[k + 3:])
    return v.transpose(*range(k), k + 2, k + 4, k, k + 1, k + 3, *range(k + 5, v.ndim))


def _windows_of(tile: tiles.Tile, xh: np.ndarray, xp_all: np.ndarray | None,
                geo: Geometry) -> np.ndarray:
    """The padded input a tile's windows read: the padded rows it needs when the whole
    input was padded once (row bands), else its samples, padded here (in its thread)."""
    if xp_all is None:
        return pad_nhwc(xh[tile.samples], *geo.padding)
    top = tile.rows.start * geo.stride[0]
    bottom = (tile.rows.stop - 1) * geo.stride[0] + geo.dilation[0] * (geo.kernel[0] - 1) + 1
    return xp_all[tile.samples, top:bottom]


def _fill(buf: np.ndarray, xp: np.ndarray, tile: tiles.Tile, g: int, geo: Geometry,
          ones: bool = False, pool_order: bool = False):
    """Group ``g``'s windows of a tile, copied into the flat buffer ``buf``; returns them as
    a (rows, KH*KW*Cg) matrix (a transposed view in the channel-major layout), with a last
    column of ones if ``ones`` (for the bias row of the weight matrix).

    Rows are output positions in (N, OH, OW) order; with ``pool_order`` (whole samples, even
    OH and OW), in (2, 2, N, OH/2, OW/2) order, so that 2x2 max pooling of the product is the
    maximum of its four row blocks."""
    kh, kw = geo.kernel
    ns, nr, ow = xp.shape[0], tile.rows.stop - tile.rows.start, geo.out_hw[1]
    rows, taps = ns * nr * ow, geo.taps
    width = taps + ones
    block = buf[:rows * width]
    if geo.channel_major:
        mat = block.reshape(width, rows)
        fill_channel_major(mat[:taps].reshape(kh, kw, geo.cg, rows), xp, geo.stride,
                           geo.dilation, (nr, ow), pool_order)
        if ones:
            mat[taps] = 1
        return mat.T  # BLAS reads the transposed view as it is
    win = windows(xp, geo.kernel, geo.stride, geo.dilation, (nr, ow))
    if geo.groups > 1:
        win = win[..., g * geo.cg:(g + 1) * geo.cg]
    mat = block.reshape(rows, width)
    win = _in_order(win, pool_order, at=0)
    np.copyto(mat[:, :taps].reshape(*win.shape[:-3], kh, kw, geo.cg), win)  # views: rows split
    if ones:
        mat[:, taps] = 1
    return mat


def _plan(xh: np.ndarray, geo: Geometry, cost: int):
    """The threads' shares of the output's tiles, and the once-padded input when tiles are
    row bands (None when each tile pads its own samples)."""
    n = xh.shape[0]
    oh, ow = geo.out_hw
    parts = parallel.workers(cost)
    if n < parts and cost < BAND_SPLIT_WORK:
        parts = 1
    row_bytes = ow * geo.taps * xh.itemsize
    if parts == 1 and 0 < n * oh * row_bytes <= tiles.TILE_BYTES:
        # One tile, one thread (batch 1): skipping the planning saves ~2 us a layer.
        whole = tiles.Tile(slice(0, n), slice(0, oh), slice(0, n * oh * ow))
        return [[whole]], None
    plan = tiles.plan(n, oh, ow, row_bytes, parts)
    banded = any(t.rows != slice(0, oh) for t in plan)
    xp_all = pad_nhwc(xh, *geo.padding) if banded else None
    return tiles.share(plan, parts), xp_all


def _gemm_tiles(xh: np.ndarray, wmats: list[np.ndarray], geo: Geometry, out: np.ndarray,
                relu: bool = False, pooled: bool = False) -> bool:
    """``out`` (N*OH*OW, F) = windows of ``xh`` (NHWC) times ``wmats`` (per group, (KH*KW*Cg,
    F/groups), or with one more row, the bias, which a column of ones in the windows picks
    up); then ``max(out, 0)`` if ``relu``, while each tile is in cache.

    With ``pooled`` (even OH and OW), ``out`` is (N*OH/2*OW/2, F) and receives the product's
    2x2 max pooling instead, taken per tile; returns False, having done nothing, when the
    layer is cut into row bands (a single large image), where tiles hold no whole windows.
    """
    n, (oh, ow) = xh.shape[0], geo.out_hw
    f = wmats[0].shape[1] * len(wmats)
    shares, xp_all = _plan(xh, geo, n * oh * ow * f * geo.taps)
    if pooled and xp_all is not None:
        return False
    width = wmats[0].shape[0]

    def work(share: list[tiles.Tile]) -> None:
        rows = tiles.largest(share)
        buf = workspace.take((rows * width,), xh.dtype)
        prod = workspace.take((rows * f,), xh.dtype) if pooled else None
        for tile in share:
            _forward_tile(buf, prod, tile, xh, xp_all, wmats, geo, out, relu)
        workspace.give(buf)
        workspace.give(prod)

    if len(shares) == 1 and len(shares[0]) == 1:
        # One tile (batch 1): the threads' bookkeeping would cost ~3 us a layer.
        tile = shares[0][0]
        rows = tile.flat.stop - tile.flat.start
        buf = np.empty(rows * width, dtype=xh.dtype)
        prod = np.empty(rows * f, dtype=xh.dtype) if pooled else None
        _forward_tile(buf, prod, tile, xh, xp_all, wmats, geo, out, relu)
    else:
        parallel.run_parts(work, shares)
    return True


def _forward_tile(buf: np.ndarray, prod: np.ndarray | None, tile: tiles.Tile, xh: np.ndarray,
                  xp_all: np.ndarray | None, wmats: list[np.ndarray], geo: Geometry,
                  out: np.ndarray, relu: bool) -> None:
    """One tile of :func:`_gemm_tiles`, its windows copied into ``buf``; the product goes
    into ``out``, or into ``prod`` and its 2x2 max pooling into ``out``."""
    xp = _windows_of(tile, xh, xp_all, geo)
    fg = wmats[0].shape[1]
    ones = wmats[0].shape[0] > geo.taps
    pooled = prod is not None
    rows = out[tile.flat] if not pooled else \
        prod[:(tile.flat.stop - tile.flat.start) * out.shape[1]].reshape(-1, out.shape[1])
    for g, wmat in enumerate(wmats):
        np.matmul(_fill(buf, xp, tile, g, geo, ones, pooled), wmat,
                  out=rows[:, g * fg:(g + 1) * fg])
    if pooled:
        # Rows come in (2, 2, N, OH/2, OW/2) order: the pooling is the max of four blocks
        # (ties keep no index: this path has no backward).
        q = len(rows) // 4
        block = [rows[k * q:(k + 1) * q] for k in range(4)]
        rows = out[tile.flat.start // 4:tile.flat.stop // 4]
        np.maximum(block[0], block[1], out=rows)
        np.maximum(rows, block[2], out=rows)
        np.maximum(rows, block[3], out=rows)
    if relu:  # after the pooling when pooled: they commute, and the map is smaller
        pointwise.relu(rows, rows)


def _weight_matrices(w: np.ndarray, groups: int, b: np.ndarray | None = None
                     ) -> list[np.ndarray]:
    """Filters as (KH*KW*Cg, F/groups) matrices, rows in window order (kh, kw, c), plus a
    last row with the bias when ``b`` is given: the GEMM then adds it (a pass over the
    output less; measured 1.5-5 us a layer at batch 1, ~1% of a training step)."""
    f, cg, kh, kw = w.shape
    fg, taps = f // groups, kh * kw * cg
    mats = []
    for g in range(groups):
        wg = w[g * fg:(g + 1) * fg].transpose(2, 3, 1, 0)
        if b is None:
            mats.append(wg.reshape(taps, fg))
            continue
        mat = np.empty((taps + 1, fg), dtype=w.dtype)
        mat[:taps].reshape(kh, kw, cg, fg)[...] = wg
        mat[taps] = b[g * fg:(g + 1) * fg]
        mats.append(mat)
    return mats


def conv2d_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray | None,
                   stride: tuple[int, int], padding: tuple[int, int],
                   dilation: tuple[int, int], groups: int,
                   out_hw: tuple[int, int], relu: bool = False) -> np.ndarray:
    """Forward convolution.

    Args:
        x: (N, C, H, W) input (any memory layout; NHWC memory is used as is).
        w: (F, C/groups, KH, KW) filters.
        b: (F,) bias or None.
        relu: apply ``max(., 0)`` to the result (tile by tile, in cache).

    Returns:
        (N, F, OH, OW), a view of NHWC memory.
    """
    return _forward(x, w, b, stride, padding, dilation, groups, out_hw, relu, pooled=False)


def conv2d_relu_maxpool_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray | None,
                                stride: tuple[int, int], padding: tuple[int, int],
                                dilation: tuple[int, int], groups: int,
                                out_hw: tuple[int, int]) -> np.ndarray | None:
    """``max_pool2d(relu(conv2d(x)), 2)`` for inference, the pooling taken per tile while
    the convolution's product is in cache: (N, F, OH/2, OW/2), a view of NHWC memory.

    Returns None, having done nothing, where this does not apply (odd OH or OW, or a single
    image large enough to be cut into row bands); the caller then runs the ops one by one.
    """
    if out_hw[0] % 2 or out_hw[1] % 2:
        return None
    return _forward(x, w, b, stride, padding, dilation, groups, out_hw, True, pooled=True)


def _forward(x, w, b, stride, padding, dilation, groups, out_hw, relu: bool,
             pooled: bool) -> np.ndarray | None:
    """The two forward entry points above: (N, F, OH, OW), or pooled (N, F, OH/2, OW/2);
    None when :func:`_gemm_tiles` declines to pool."""
    n = x.shape[0]
    f, cg, kh, kw = w.shape
    geo = Geometry((kh, kw), stride, padding, dilation, groups, cg, out_hw)
    oh, ow = (out_hw[0] // 2, out_hw[1] // 2) if pooled else out_hw
    out = np.empty((n * oh * ow, f), dtype=x.dtype)
    if not _gemm_tiles(to_nhwc(x), _weight_matrices(w, groups, b), geo, out, relu, pooled):
        return None
    return out.reshape(n, oh, ow, f).transpose(0, 3, 1, 2)


def conv2d_backward(grad: np.ndarray, x: np.ndarray, w: np.ndarray, stride: tuple[int, int],
                    padding: tuple[int, int], dilation: tuple[int, int], groups: int,
                    need_x: bool, need_w: bool, need_b: bool):
    """Gradients of :func:`conv2d_forward` with respect to x, w and b (None where not needed)."""
    n, c, h, wd = x.shape
    f, cg, kh, kw = w.shape
    oh, ow = grad.shape[2], grad.shape[3]
    geo = Geometry((kh, kw), stride, padding, dilation, groups, cg, (oh, ow))
    dout = to_nhwc(grad).reshape(n * oh * ow, f)
    dx = dw = db = None
    if need_b:
        db = np.ones(len(dout), dtype=grad.dtype) @ dout  # a GEMV beats a strided sum
    if need_w:
        dw = _weight_grad(to_nhwc(x), dout, geo, w.shape)
    if need_x:
        if _full_conv_applies(stride, padding, dilation, groups, (kh, kw), c, f):
            dx = _dx_full_conv(dout.reshape(n, oh, ow, f), w, padding, dilation, (h, wd))
        else:
            dxp = np.zeros((n, h + 2 * padding[0], wd + 2 * padding[1], c), grad.dtype)
            _dx_col2im(dout, w, geo, dxp)
            dx = unpad_nhwc(dxp, *padding)
        dx = dx.transpose(0, 3, 1, 2)
    return dx, dw, db


def _weight_grad(xh: np.ndarray, dout: np.ndarray, geo: Geometry,
                 w_shape: tuple[int, ...]) -> np.ndarray:
    """dW = windows^T @ dout, the windows rebuilt tile by tile; each thread sums its own
    tiles, then the threads' partial sums are added in order (same result for a fixed
    thread count)."""
    f, cg, kh, kw = w_shape
    fg = f // geo.groups
    shares, xp_all = _plan(xh, geo, dout.size * geo.taps)

    def work(share: list[tiles.Tile]) -> list[np.ndarray]:
        buf = workspace.take((tiles.largest(share) * geo.taps,), xh.dtype)
        sums = [np.zeros((geo.taps, fg), dtype=dout.dtype) for _ in range(geo.groups)]
        part = np.empty((geo.taps, fg), dtype=dout.dtype)
        for tile in share:
            xp = _windows_of(tile, xh, xp_all, geo)
            ns = tile.samples.stop - tile.samples.start
            rows = (tile.flat.stop - tile.flat.start) // ns
            per_sample = ns > 1 and rows * geo.taps * xh.itemsize <= PER_SAMPLE_SUM_BYTES
            for g in range(geo.groups):
                cols, d = _fill(buf, xp, tile, g, geo), dout[tile.flat, g * fg:(g + 1) * fg]
                if per_sample:
                    # One small GEMM per sample (batched), then their sum.
                    each = np.matmul(cols.reshape(ns, rows, geo.taps).transpose(0, 2, 1),
                                     d.reshape(ns, rows, fg))
                    np.sum(each, axis=0, out=part)
                else:
                    np.matmul(cols.T, d, out=part)
                sums[g] += part
        workspace.give(buf)
        return sums

    partials = parallel.run_parts(work, shares)
    if not partials:  # an empty batch
        return np.zeros(w_shape, dtype=dout.dtype)
    dw = np.empty(w_shape, dtype=dout.dtype)
    for g in range(geo.groups):
        dwg = partials[0][g]
        for other in partials[1:]:
            dwg += other[g]
        dw[g * fg:(g + 1) * fg] = dwg.reshape(kh, kw, cg, fg).transpose(3, 2, 0, 1)
    return dw


def _full_conv_applies(stride, padding, dilation, groups, kernel, c, f) -> bool:
    """At stride 1 the input gradient is itself a convolution (of the padded output gradient
    with the flipped filters). Measured, it beats GEMM + col2im from 16 input channels up to
    twice as many filters as channels (its window matrix grows with the filters)."""
    return (stride == (1, 1) and groups == 1 and f <= 2 * c and c >= 16
            and all(padding[a] <= dilation[a] * (kernel[a] - 1) for a in range(2)))


def _dx_full_conv(dout: np.ndarray, w: np.ndarray, padding, dilation,
                  hw: tuple[int, int]) -> np.ndarray:
    """dx (N, H, W, C): dout (N, OH, OW, F), padded by D*(K-1) - P, convolved with the
    flipped filters — the forward kernel, tiles and all."""
    f, c, kh, kw = w.shape
    q = (dilation[0] * (kh - 1) - padding[0], dilation[1] * (kw - 1) - padding[1])
    geo = Geometry((kh, kw), (1, 1), q, dilation, 1, f, hw)
    w_flipped = w[:, :, ::-1, ::-1].transpose(2, 3, 0, 1).reshape(kh * kw * f, c)
    dx = np.empty((dout.shape[0] * hw[0] * hw[1], c), dtype=dout.dtype)
    _gemm_tiles(dout, [w_flipped], geo, dx)
    return dx.reshape(dout.shape[0], *hw, c)


def _dx_col2im(dout: np.ndarray, w: np.ndarray, geo: Geometry, dxp: np.ndarray) -> None:
    """Add dx into the padded (N, Hp, Wp, C) ``dxp``: per tile of whole samples, one batched
    GEMM gives every tap's block, then K*K slice-adds (any stride, any groups)."""
    f, cg, kh, kw = w.shape
    fg, c = f // geo.groups, dxp.shape[3]
    oh, ow = geo.out_hw
    # "Tap-major": (KH*KW, Fg, Cg) so the batched GEMM writes each tap's block contiguously.
    w_taps = [w[g * fg:(g + 1) * fg].transpose(2, 3, 0, 1).reshape(kh * kw, fg, cg)
              for g in range(geo.groups)]
    parts = parallel.workers(dout.size * kh * kw * c)
    plan = tiles.plan(dxp.shape[0], oh, ow, ow * kh * kw * c * dout.itemsize, parts,
                      row_bands=False)

    def work(share: list[tiles.Tile]) -> None:
        buf = workspace.take((kh * kw * tiles.largest(share) * c,), dout.dtype)
        for tile in share:
            rows, ns = tile.flat.stop - tile.flat.start, tile.samples.stop - tile.samples.start
            taps = buf[:kh * kw * rows * c].reshape(kh * kw, rows, c)
            for g in range(geo.groups):
                np.matmul(dout[None, tile.flat, g * fg:(g + 1) * fg], w_taps[g],
                          out=taps[:, :, g * cg:(g + 1) * cg] if geo.groups > 1 else taps)
            col2im_taps(taps.reshape(kh, kw, ns, oh, ow, c), geo.stride, geo.dilation,
                        dxp[tile.samples])
        workspace.give(buf)

    parallel.run_parts(work, tiles.share(plan, parts))
