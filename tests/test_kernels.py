"""The speed paths inside the conv kernel each agree with the textbook reference.

The kernel picks among several ways to compute the same thing (channel-major windows for
thin inputs, the input gradient as a full convolution at stride 1, or GEMM + col2im); each
path is forced here on shapes that select it and compared with finite differences' partner,
the naive loop reference, so none is left untested by the choice of test shapes.
"""

import numpy as np
import pytest

import cnnlab
from cnnlab.kernels import conv as kconv
from cnnlab.kernels import parallel, pointwise, tiles, window, workspace
from cnnlab.kernels import pool as kpool
from cnnlab.nn import functional as F
from cnnlab.ops import conv as conv_op
from cnnlab.ops.reference import conv2d_naive, max_pool2d_naive
from cnnlab.shape import pair


def _conv_grads(x, w, b, **opts):
    X = cnnlab.Tensor(x, requires_grad=True)
    W = cnnlab.Tensor(w, requires_grad=True)
    B = cnnlab.Tensor(b, requires_grad=True)
    out = F.conv2d(X, W, B, **opts)
    g = np.random.default_rng(7).standard_normal(out.shape)
    out.backward(g)
    return out.data, g, X.grad.data, W.grad.data, B.grad.data


def _numeric_grads(x, w, b, g, **opts):
    """Central differences of sum(g * conv(x, w, b)) through the forward pass (float64)."""
    def objective(x_, w_, b_):
        return float(np.sum(g * F.conv2d(cnnlab.Tensor(x_), cnnlab.Tensor(w_),
                                         cnnlab.Tensor(b_), **opts).data))

    grads = []
    for which, arr in enumerate((x, w, b)):
        num = np.zeros_like(arr)
        for idx in np.ndindex(arr.shape):
            args = [x.copy(), w.copy(), b.copy()]
            args[which][idx] += 1e-6
            up = objective(*args)
            args[which][idx] -= 2e-6
            num[idx] = (up - objective(*args)) / 2e-6
        grads.append(num)
    return grads


@pytest.fixture(params=["one thread", "split over the batch"])
def threads(request, monkeypatch):
    """Run each case once in the calling thread and once split into uneven batch chunks."""
    if request.param == "split over the batch":
        pytest.importorskip("threadpoolctl", reason="batch splitting needs threadpoolctl")
        monkeypatch.setattr(parallel, "MIN_SPLIT_WORK", 0)
        previous = parallel.get_num_threads()
        parallel.set_num_threads(3)
        yield 3
        parallel.set_num_threads(previous)
    else:
        monkeypatch.setattr(parallel, "MIN_SPLIT_WORK", 1 << 62)
        yield 1


@pytest.fixture(params=["one tile", "one row per tile"])
def tile_bytes(request, monkeypatch):
    """Run each case with the whole batch in one tile and with the smallest tiles (a band
    of one output row), so tile edges fall everywhere they can."""
    monkeypatch.setattr(tiles, "TILE_BYTES", 1 << 40 if request.param == "one tile" else 1)


@pytest.mark.parametrize(
    "c, f, opts, path",
    [
        (1, 3, dict(stride=1, padding=2), "channel-major"),
        (3, 4, dict(stride=2, padding=1, dilation=2), "channel-major"),
        (16, 8, dict(stride=1, padding=1), "full-conv"),
        (16, 16, dict(stride=1, padding=(2, 1), dilation=(2, 1)), "full-conv"),
        (16, 32, dict(stride=1, padding=1), "full-conv"),
        (16, 48, dict(stride=1, padding=1), "col2im"),
        (16, 8, dict(stride=2, padding=1), "col2im"),
        (16, 8, dict(stride=1, padding=1, groups=2), "col2im"),
    ],
)
def test_each_kernel_path_matches_the_reference(c, f, opts, path, threads, tile_bytes):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, c, 6, 5))  # 4 samples: chunks of 1, 1 and 2 with 3 threads
    w = rng.standard_normal((f, c // opts.get("groups", 1), 3, 2))
    b = rng.standard_normal(f)
    stride, padding, dilation = (pair(opts.get(k, d)) for k, d in
                                 (("stride", 1), ("padding", 0), ("dilation", 1)))
    full = kconv._full_conv_applies(stride, padding, dilation, opts.get("groups", 1),
                                    (3, 2), c, f)
    assert full == (path == "full-conv")
    assert (c <= kconv.CHANNEL_MAJOR_MAX_C) == (path == "channel-major")

    out, g, dx, dw, db = _conv_grads(x, w, b, **opts)
    np.testing.assert_allclose(out, conv2d_naive(x, w, b, **opts), rtol=1e-12, atol=1e-12)
    if tile_bytes == "one tile":
        expected = _numeric_grads(x, w, b, g, **opts)
        tolerance = 1e-6
    else:  # thousands of tiny tiles make finite differences slow: match the one-tile pass
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(tiles, "TILE_BYTES", 1 << 40)
            expected = _conv_grads(x, w, b, **opts)[2:]
        tolerance = 1e-12
    for analytic, want in zip((dx, dw, db), expected, strict=True):
        np.testing.assert_allclose(analytic, want, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("n, oh, ow, row_bytes, parts", [
    (128, 32, 32, 36_864, 2),  # CIFAR 32x32x32 layer: one sample per tile
    (64, 28, 28, 2_800, 2),  # LeNet first layer: many samples per tile, equal shares
    (1, 32, 32, 36_864, 2),  # a single image: bands of rows, one per thread
    (3, 7, 5, 10 << 20, 4),  # rows larger than a tile: one row per tile
    (5, 4, 4, 100, 3),
    (0, 4, 4, 100, 2),
])
def test_tiles_cover_every_output_row_once_and_share_it_evenly(n, oh, ow, row_bytes, parts):
    plan = tiles.plan(n, oh, ow, row_bytes, parts)
    covered = np.zeros((n, oh), dtype=int)
    for t in plan:
        covered[t.samples, t.rows] += 1
        assert t.samples.stop - t.samples.start == 1 or t.rows == slice(0, oh)
        rows = (t.samples.stop - t.samples.start) * (t.rows.stop - t.rows.start) * ow
        assert t.flat.stop - t.flat.start == rows
        assert t.flat.start == (t.samples.start * oh + t.rows.start) * ow
    assert (covered == 1).all()
    if not plan:
        return
    shares = tiles.share(plan, parts)
    assert [t for share in shares for t in share] == plan
    sizes = [sum(t.flat.stop - t.flat.start for t in share) for share in shares]
    assert len(shares) == min(parts, len(plan))
    assert max(sizes) - min(sizes) <= tiles.largest(plan)


def test_a_single_image_is_split_over_threads_in_bands_of_rows(monkeypatch):
    pytest.importorskip("threadpoolctl", reason="splitting needs threadpoolctl")
    monkeypatch.setattr(parallel, "MIN_SPLIT_WORK", 0)
    monkeypatch.setattr(kconv, "BAND_SPLIT_WORK", 0)
    rng = np.random.default_rng(4)
    x, w, b = (rng.standard_normal(s) for s in ((1, 16, 9, 7), (16, 16, 3, 3), (16,)))
    shares = []
    run_parts = parallel.run_parts
    monkeypatch.setattr(parallel, "run_parts",
                        lambda work, parts: shares.append(len(parts)) or run_parts(work, parts))
    previous = parallel.get_num_threads()
    parallel.set_num_threads(3)
    try:
        with parallel.region(batch=3):  # a pass that splits, given one large image
            out, g, dx, dw, db = _conv_grads(x, w, b, padding=1)
        assert shares[:3] == [3, 3, 3]  # forward, weight gradient, input gradient
        parallel.set_num_threads(1)
        expected = _conv_grads(x, w, b, padding=1)
    finally:
        parallel.set_num_threads(previous)
    np.testing.assert_allclose(out, conv2d_naive(x, w, b, padding=1), rtol=1e-12, atol=1e-12)
    for got, want in zip((dx, dw, db), expected[2:], strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_pooled_window_buffers_never_leak_between_graphs():
    # Two graphs alive at once; a third forward pass reuses the first one's freed buffers
    # while the second still needs its own: its gradients must be unaffected.
    rng = np.random.default_rng(3)
    w = rng.standard_normal((16, 16, 3, 3))
    xs = [rng.standard_normal((2, 16, 5, 5)) for _ in range(3)]

    def grads(x, run_between=None):
        W = cnnlab.Tensor(w, requires_grad=True)
        out = F.conv2d(cnnlab.Tensor(x), W, padding=1)
        if run_between:
            run_between()
        out.sum().backward()
        return W.grad.data

    expected = grads(xs[1])

    def interleave():
        first = cnnlab.Tensor(w, requires_grad=True)
        F.conv2d(cnnlab.Tensor(xs[0]), first, padding=1).sum().backward()  # frees its buffer
        F.conv2d(cnnlab.Tensor(xs[2]), cnnlab.Tensor(w, requires_grad=True), padding=1)

    np.testing.assert_array_equal(grads(xs[1], run_between=interleave), expected)


def test_a_second_backward_through_a_conv_accumulates_the_same_gradient_again():
    # Only the input is saved (the windows are rebuilt), so nothing is freed by backward.
    W = cnnlab.Tensor(np.arange(18.0).reshape(2, 1, 3, 3), requires_grad=True)
    loss = F.conv2d(cnnlab.Tensor(np.arange(16.0).reshape(1, 1, 4, 4)), W).sum()
    loss.backward()
    first = W.grad.data.copy()
    loss.backward()
    np.testing.assert_array_equal(W.grad, 2 * first)


def test_relu_split_over_the_batch_keeps_values_and_memory_layout(threads):
    rng = np.random.default_rng(5)
    nhwc = rng.standard_normal((5, 4, 3, 6))  # channels-last memory, seen as NCHW
    x = nhwc.transpose(0, 3, 1, 2)
    X = cnnlab.Tensor(x, requires_grad=True)
    out = F.relu(X)
    assert out.data.strides == x.strides
    np.testing.assert_array_equal(out.data, np.maximum(x, 0))
    g = rng.standard_normal(x.shape)
    out.backward(g)
    np.testing.assert_array_equal(X.grad, g * (x > 0))
    with cnnlab.no_grad():
        np.testing.assert_array_equal(F.relu(cnnlab.Tensor(x)).data, np.maximum(x, 0))


@pytest.mark.parametrize("kernel, stride, padding", [(2, 2, 0), (3, 2, 1), (3, 1, 1)])
def test_max_pool_split_over_the_batch_equals_the_unsplit_pass(kernel, stride, padding,
                                                               monkeypatch):
    pytest.importorskip("threadpoolctl", reason="batch splitting needs threadpoolctl")
    rng = np.random.default_rng(6)
    x = rng.integers(0, 3, (5, 3, 7, 6)).astype(np.float64)  # many ties: the rule must hold
    g = rng.standard_normal(F.max_pool2d(cnnlab.Tensor(x), kernel, stride, padding).shape)

    def run():
        X = cnnlab.Tensor(x, requires_grad=True)
        out = F.max_pool2d(X, kernel, stride, padding)
        out.backward(g)
        return out.data, X.grad.data

    monkeypatch.setattr(parallel, "MIN_SPLIT_WORK", 1 << 62)
    whole = run()
    monkeypatch.setattr(parallel, "MIN_SPLIT_WORK", 0)
    previous = parallel.get_num_threads()
    parallel.set_num_threads(3)
    try:
        with parallel.region(batch=5):
            split = run()
    finally:
        parallel.set_num_threads(previous)
    for a, b in zip(whole, split, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(whole[0], max_pool2d_naive(x, kernel, stride, padding))


@pytest.mark.parametrize("c", [3, 16])  # channel-major windows, and the full-conv gradient
def test_an_empty_batch_gives_empty_outputs_and_zero_weight_gradients(c):
    X = cnnlab.Tensor(np.ones((0, c, 8, 8), np.float32), requires_grad=True)
    W = cnnlab.Tensor(np.ones((4, c, 3, 3), np.float32), requires_grad=True)
    out = F.conv2d(X, W, padding=1)
    out.sum().backward()
    assert out.shape == (0, 4, 8, 8) and X.grad.shape == (0, c, 8, 8)
    np.testing.assert_array_equal(W.grad, np.zeros((4, c, 3, 3)))


@pytest.mark.parametrize("size", [100, pointwise.SMALL, pointwise.BLOCK * 3,
                                  pointwise.BLOCK * 2 + 37])
@pytest.mark.parametrize("layout", ["nchw", "nhwc memory", "strided"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pointwise_relu_is_max_with_zero_for_every_size_and_layout(size, layout, dtype):
    rng = np.random.default_rng(size)
    flat = rng.standard_normal(size * 2).astype(dtype)
    flat[::7] = np.nan  # NaN stays NaN, as with np.maximum
    flat[::11] = 0.0
    if layout == "nchw":
        x = flat[:size].reshape(size, 1, 1, 1)
    elif layout == "nhwc memory":
        x = flat[:size].reshape(1, 1, size, 1).transpose(0, 3, 1, 2)
    else:  # not contiguous in any order: the plain maximum
        x = flat[::2].reshape(1, 1, 1, size)
    out = pointwise.relu(x)
    assert out.dtype == dtype and out.strides == np.empty_like(x).strides
    np.testing.assert_array_equal(out, np.maximum(x, 0))
    inplace = x.copy(order="K")
    assert pointwise.relu(inplace, inplace) is inplace
    np.testing.assert_array_equal(inplace, np.maximum(x, 0))


def _conv_relu_grads(relu_fused: bool, x, w, b, **opts):
    X, W, B = (cnnlab.Tensor(a, requires_grad=True) for a in (x, w, b))
    out = conv_op.conv2d_relu(X, W, B, **opts) if relu_fused else F.relu(F.conv2d(X, W, B, **opts))
    out.backward(np.random.default_rng(3).standard_normal(out.shape))
    return out.data, X.grad.data, W.grad.data, B.grad.data


@pytest.mark.parametrize("n, c, hw", [(3, 2, 7), (2, 16, 12), (1, 8, 40)])
def test_conv_with_fused_relu_equals_conv_then_relu_in_every_tile_layout(n, c, hw, threads,
                                                                         tile_bytes):
    # Integer values: many outputs exactly 0, where the ReLU's gradient is 0 in both forms.
    rng = np.random.default_rng(c)
    x = rng.integers(-2, 3, (n, c, hw, hw)).astype(np.float64)
    w = rng.integers(-1, 2, (4, c, 3, 3)).astype(np.float64)
    b = rng.integers(-1, 2, 4).astype(np.float64)
    fused = _conv_relu_grads(True, x, w, b, padding=1)
    written = _conv_relu_grads(False, x, w, b, padding=1)
    assert (fused[0] == 0).mean() > 0.2
    for got, want in zip(fused, written, strict=True):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("small_pad_bytes", [0, 1 << 40], ids=["borders", "zero-filled"])
def test_both_ways_of_padding_give_the_same_array(small_pad_bytes, monkeypatch):
    monkeypatch.setattr(window, "SMALL_PAD_BYTES", small_pad_bytes)
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5)).astype(np.float32)
    out = window.pad_nhwc(x, 2, 1)
    want = np.pad(x, ((0, 0), (2, 2), (1, 1), (0, 0)))
    np.testing.assert_array_equal(out, want)
    assert out.dtype == np.float32 and out.flags.c_contiguous
    ninf = window.pad_nhwc(x, 1, 0, value=-np.inf)
    np.testing.assert_array_equal(ninf, np.pad(x, ((0, 0), (1, 1), (0, 0), (0, 0)),
                                                constant_values=-np.inf))


def test_the_workspace_reuses_large_buffers_and_leaves_small_ones_to_the_allocator():
    workspace.clear()
    large = (workspace.MIN_POOLED_BYTES // 4,)
    buf = workspace.take(large, np.float32)
    workspace.give(buf)
    again = workspace.take(large, np.float32)
    assert np.shares_memory(again, buf)
    workspace.give(again)
    small = workspace.take((16,), np.float32)
    workspace.give(small)
    assert not np.shares_memory(workspace.take((16,), np.float32), small)


def test_the_workspace_matches_buffers_by_size_within_its_slack():
    # A layer's forward tiles (windows plus a column of ones) and its weight-gradient tiles
    # differ slightly in size; they must share one pooled buffer, not keep one each.
    workspace.clear()
    n = workspace.MIN_POOLED_BYTES
    buf = workspace.take((n + 100,), np.float32)
    workspace.give(buf)
    slightly_smaller = workspace.take((n,), np.float32)
    assert np.shares_memory(slightly_smaller, buf) and slightly_smaller.shape == (n,)
    workspace.give(slightly_smaller)
    as_float64 = workspace.take((n // 4, 2), np.float64)  # the same bytes
    assert np.shares_memory(as_float64, buf) and as_float64.flags.c_contiguous
    workspace.give(as_float64)
    much_smaller = workspace.take((n // 2,), np.float32)
    assert not np.shares_memory(much_smaller, buf)  # beyond the slack: a new buffer
    workspace.clear()


@pytest.mark.parametrize("n, c, f, hw, k, groups", [
    (1, 32, 8, 12, 3, 1),  # one image, windows row by row
    (3, 6, 4, 10, 3, 1),   # a batch
    (1, 1, 6, 12, 5, 1),   # channel-major windows, one strided copy
    (3, 3, 4, 8, 3, 1),    # channel-major windows, copied tap by tap
    (2, 4, 6, 8, 3, 2),    # groups
])
def test_conv_relu_maxpool_in_one_pass_equals_the_three_ops(n, c, f, hw, k, groups, threads,
                                                             tile_bytes):
    # Integer values: ties inside pooling windows and exact zeros after the ReLU.
    rng = np.random.default_rng(n * c + f)
    x = rng.integers(-2, 3, (n, hw, hw, c)).astype(np.float32).transpose(0, 3, 1, 2)
    w = rng.integers(-1, 2, (f, c // groups, k, k)).astype(np.float32)
    b = rng.integers(-1, 2, f).astype(np.float32)
    args = (x, w, b, (1, 1), (1, 1), (1, 1), groups, (hw + 3 - k, hw + 3 - k))
    oh = args[-1][0]
    conv_out = kconv.conv2d_forward(*args, relu=True)
    want = kpool.max_pool2d_forward(conv_out, (2, 2), (2, 2), (0, 0), (oh // 2, oh // 2),
                                    need_argmax=False)[0]
    got = kconv.conv2d_relu_maxpool_forward(*args)
    if tiles.TILE_BYTES == 1:  # one output row per tile: bands, which hold no whole windows
        assert got is None  # so the caller runs the three ops
        return
    assert got is not None and got.strides == want.strides
    np.testing.assert_array_equal(got, want)


def test_conv_relu_maxpool_in_one_pass_declines_odd_maps():
    x = np.ones((1, 1, 5, 5), np.float32)
    w = np.ones((2, 1, 3, 3), np.float32)
    assert kconv.conv2d_relu_maxpool_forward(x, w, None, (1, 1), (0, 0), (1, 1), 1, (3, 3)) \
        is None
