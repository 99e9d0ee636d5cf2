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
from cnnlab.kernels import parallel
from cnnlab.nn import functional as F
from cnnlab.ops.reference import conv2d_naive, max_pool2d_naive
from cnnlab.shape import pair


def _conv_grads(x, w, b, **opts):
    X = cnnlab.Tensor(x, requires_grad=True)
    W = cnnlab.Tensor(w, requires_grad=True)
    B = cnnlab.Tensor(b, requires_grad=True)
    out = F.conv2d(X, W, B, **opts)
    g = np.random.default_rng(7).standard_normal(out.shape)
    out.backward(g)
    return out.data, g, X.grad, W.grad, B.grad


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


@pytest.mark.parametrize(
    "c, f, opts, path",
    [
        (1, 3, dict(stride=1, padding=2), "channel-major"),
        (3, 4, dict(stride=2, padding=1, dilation=2), "channel-major"),
        (16, 8, dict(stride=1, padding=1), "full-conv"),
        (16, 16, dict(stride=1, padding=(2, 1), dilation=(2, 1)), "full-conv"),
        (16, 32, dict(stride=1, padding=1), "col2im"),
        (16, 8, dict(stride=2, padding=1), "col2im"),
        (16, 8, dict(stride=1, padding=1, groups=2), "col2im"),
    ],
)
def test_each_kernel_path_matches_the_reference(c, f, opts, path, threads):
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
    for analytic, numeric in zip((dx, dw, db), _numeric_grads(x, w, b, g, **opts), strict=True):
        np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-6)


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
        return W.grad

    expected = grads(xs[1])

    def interleave():
        first = cnnlab.Tensor(w, requires_grad=True)
        F.conv2d(cnnlab.Tensor(xs[0]), first, padding=1).sum().backward()  # frees its buffer
        F.conv2d(cnnlab.Tensor(xs[2]), cnnlab.Tensor(w, requires_grad=True), padding=1)

    np.testing.assert_array_equal(grads(xs[1], run_between=interleave), expected)


def test_second_backward_through_a_conv_is_a_clear_error():
    W = cnnlab.Tensor(np.ones((2, 1, 3, 3)), requires_grad=True)
    loss = F.conv2d(cnnlab.Tensor(np.ones((1, 1, 4, 4))), W).sum()
    loss.backward()
    with pytest.raises(RuntimeError, match="backward through the same graph a second time"):
        loss.backward()


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
        return out.data, X.grad

    monkeypatch.setattr(parallel, "MIN_SPLIT_WORK", 1 << 62)
    whole = run()
    monkeypatch.setattr(parallel, "MIN_SPLIT_WORK", 0)
    previous = parallel.get_num_threads()
    parallel.set_num_threads(3)
    try:
        split = run()
    finally:
        parallel.set_num_threads(previous)
    for a, b in zip(whole, split, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(whole[0], max_pool2d_naive(x, kernel, stride, padding))
