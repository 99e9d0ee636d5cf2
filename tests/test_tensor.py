"""The autodiff engine: accumulation, deep graphs, broadcasting, no_grad, dtypes, seeding."""

from __future__ import annotations

import json

import numpy as np
import pytest

import cnnlab
from cnnlab import Tensor, nn
from cnnlab.nn import functional as F
from cnnlab.tensor import Function

# ----- accumulation for reused nodes --------------------------------------------------------


def test_x_times_x_counts_both_uses(f64):
    x = f64([1.5, -2.0, 3.0])
    (x * x).sum().backward()
    np.testing.assert_array_equal(x.grad, [3.0, -4.0, 6.0])


def test_a_plus_a(f64):
    a = f64([[1.0, 2.0]])
    (a + a).sum().backward()
    np.testing.assert_array_equal(a.grad, [[2.0, 2.0]])


def test_diamond_graph(f64):
    # x -> h -> (u, v) -> u * v: both branches through h must add up at h and then x.
    x = f64([0.5, -1.0])
    h = x * 3.0
    u, v = h.exp(), h * h
    (u * v).sum().backward()
    hv = 3 * x.data
    expected = 3 * (np.exp(hv) * hv**2 + np.exp(hv) * 2 * hv)
    np.testing.assert_allclose(x.grad, expected, rtol=1e-12)


def test_intermediate_reused_many_times(f64):
    x = f64([2.0])
    h = x * 1.0
    total = h
    for _ in range(9):
        total = total + h
    total.sum().backward()
    np.testing.assert_array_equal(x.grad, [10.0])


def test_gradients_accumulate_across_backward_calls(f64):
    x = f64([1.0, 2.0])
    (x * 2.0).sum().backward()
    (x * 3.0).sum().backward()
    np.testing.assert_array_equal(x.grad, [5.0, 5.0])


def test_leaf_gradients_never_share_memory(f64):
    # One upstream array flows to a directly and, reshaped, to b: b's gradient must be a
    # copy, or scaling a.grad in place (e.g. gradient clipping) would scale b.grad too.
    a, b = f64(np.ones((2, 3))), f64(np.ones(6))
    (a + b.reshape(2, 3)).backward(np.full((2, 3), 2.0))
    assert not np.shares_memory(a.grad, b.grad)
    a.grad *= 10
    np.testing.assert_array_equal(b.grad, np.full(6, 2.0))


def test_leaf_gradient_is_not_the_callers_array(f64):
    x = f64([1.0, 2.0])
    g = np.array([1.0, 1.0])
    x.backward(g)
    x.grad *= 5
    np.testing.assert_array_equal(g, [1.0, 1.0])


def test_shared_layer_gets_gradients_from_both_uses(rng):
    lin = nn.Linear(3, 3).double()
    x = rng.standard_normal((2, 3))
    lin(lin(Tensor(x))).sum().backward()
    w, b = lin.weight.data, lin.bias.data
    h = x @ w.T + b
    ones = np.ones((2, 3))
    # Outer use: d/dW = 1^T h; inner use: dL/dh = 1 W, so d/dW = (1 W)^T x.
    np.testing.assert_allclose(lin.weight.grad, ones.T @ h + (ones @ w).T @ x, rtol=1e-12)
    np.testing.assert_allclose(lin.bias.grad, ones.sum(0) + (ones @ w).sum(0), rtol=1e-12)


# ----- deep graphs --------------------------------------------------------------------------


def test_deep_chain_of_5000_ops_does_not_hit_recursion_limit():
    x = Tensor(np.array([1.0]), requires_grad=True)
    y = x
    for _ in range(5000):
        y = y * 1.0001
    y.sum().backward()
    np.testing.assert_allclose(x.grad, [1.0001**5000], rtol=1e-9)


def test_deep_chain_of_mixed_ops():
    x = Tensor(np.array([0.5, 0.25]), requires_grad=True)
    y = x
    for i in range(2500):
        y = (y + 0.001) if i % 2 else y.reshape(2)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, [1.0, 1.0])


# ----- broadcasting -------------------------------------------------------------------------


@pytest.mark.parametrize("shape_a, shape_b", [
    ((2, 3, 4), (4,)), ((2, 3, 4), (3, 1)), ((2, 3, 4), (1, 1, 1)), ((2, 1, 4), (3, 1)),
    ((3,), (2, 3)), ((), (2, 2)),
])
def _broadcast_adjoint(upstream: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """For each element of an input of ``shape``, the sum of ``upstream`` over the output
    positions it was broadcast to (one element at a time: slow and obviously right)."""
    out = np.zeros(shape)
    for idx in np.ndindex(*shape):
        onehot = np.zeros(shape)
        onehot[idx] = 1
        out[idx] = np.sum(np.broadcast_to(onehot, upstream.shape) * upstream)
    return out


@pytest.mark.parametrize("shape_a, shape_b", [
    ((2, 3, 4), (4,)), ((2, 3, 4), (3, 1)), ((2, 3, 4), (1, 1, 1)), ((2, 1, 4), (3, 1)),
    ((3,), (2, 3)), ((), (2, 2)),
])
def test_broadcast_gradients_sum_to_input_shape(shape_a, shape_b, rng):
    a = Tensor(rng.standard_normal(shape_a), requires_grad=True)
    b = Tensor(rng.standard_normal(shape_b), requires_grad=True)
    out = a * b + a - b
    g = rng.standard_normal(out.shape)
    out.backward(g)
    assert a.grad.shape == a.shape and b.grad.shape == b.shape
    bb, ab = np.broadcast_to(b.data, out.shape), np.broadcast_to(a.data, out.shape)
    np.testing.assert_allclose(a.grad, _broadcast_adjoint(g * (bb + 1), a.shape), rtol=1e-12)
    np.testing.assert_allclose(b.grad, _broadcast_adjoint(g * (ab - 1), b.shape), rtol=1e-12)


def test_bias_broadcast_over_batch(f64):
    x, b = f64(np.ones((5, 3))), f64(np.zeros(3))
    (x + b).sum().backward()
    np.testing.assert_array_equal(b.grad, [5.0, 5.0, 5.0])


def test_max_ties_share_the_gradient():
    x = Tensor(np.array([[1.0, 3.0, 3.0], [2.0, 0.0, 1.0]]), requires_grad=True)
    x.max(axis=1).sum().backward()
    np.testing.assert_array_equal(x.grad, [[0, 0.5, 0.5], [1, 0, 0]])


def test_max_pool_tie_goes_to_first_element():
    x = Tensor(np.ones((1, 1, 2, 2)), requires_grad=True)
    F.max_pool2d(x, 2).sum().backward()
    np.testing.assert_array_equal(x.grad[0, 0], [[1, 0], [0, 0]])


def test_relu_gradient_at_zero_is_zero():
    x = Tensor(np.array([-1.0, 0.0, 2.0]), requires_grad=True)
    F.relu(x).sum().backward()
    np.testing.assert_array_equal(x.grad, [0, 0, 1])


# ----- no_grad ------------------------------------------------------------------------------


def test_no_grad_context():
    w = Tensor([1.0, 2.0], requires_grad=True)
    with cnnlab.no_grad():
        assert not cnnlab.is_grad_enabled()
        y = w * 2
    assert cnnlab.is_grad_enabled()
    assert not y.requires_grad and y._ctx is None
    assert (w * 2).requires_grad


def test_no_grad_decorator_and_recursion():
    @cnnlab.no_grad()
    def depth(n: int) -> bool:
        inside = cnnlab.is_grad_enabled()
        return inside or (n > 0 and depth(n - 1))

    assert depth(3) is False
    assert cnnlab.is_grad_enabled()  # restored after the recursion unwinds


def test_no_grad_restores_on_exception():
    with pytest.raises(ZeroDivisionError), cnnlab.no_grad():
        1 / 0  # noqa: B018
    assert cnnlab.is_grad_enabled()


def test_nested_no_grad():
    with cnnlab.no_grad():
        with cnnlab.no_grad():
            pass
        assert not cnnlab.is_grad_enabled()
    assert cnnlab.is_grad_enabled()


def test_no_grad_model_forward_has_no_graph(seeded):
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 2))
    with cnnlab.no_grad():
        out = net(Tensor(np.ones((1, 1, 4, 4), np.float32)))
    assert not out.requires_grad
    with pytest.raises(RuntimeError, match="does not require gradients"):
        out.sum().backward()


# ----- dtypes -------------------------------------------------------------------------------


def test_dtype_rules():
    assert Tensor([1.0, 2.0]).dtype == np.float32
    assert Tensor([[1, 2.5]]).dtype == np.float32
    assert Tensor(2.5).dtype == np.float32
    assert cnnlab.tensor([0.1]).dtype == np.float32
    assert Tensor(np.zeros(3)).dtype == np.float64  # a float64 array is kept
    assert Tensor(np.zeros(3, np.float32)).dtype == np.float32
    assert Tensor(np.zeros(3, np.float16)).dtype == np.float32
    assert Tensor(np.arange(3)).dtype.kind == "i"  # integer arrays (labels) stay integer
    assert Tensor(np.zeros(3), dtype=np.float32).dtype == np.float32
    assert cnnlab.tensor([1, 2], dtype=np.float64).dtype == np.float64


def test_float64_array_is_not_copied():
    a = np.zeros(3)
    assert Tensor(a).data is a


def test_integer_tensor_cannot_require_grad():
    with pytest.raises(ValueError, match="only floating-point tensors can require gradients"):
        Tensor(np.arange(3), requires_grad=True)


def test_integer_mean_is_refused_not_truncated():
    with pytest.raises(TypeError, match="mean\\(\\) needs a floating-point tensor"):
        Tensor(np.arange(3)).mean()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_scalars_and_arrays_keep_tensor_dtype(dtype):
    x = Tensor(np.ones((2, 2), dtype), requires_grad=True)
    y = (x * 2.5 + np.ones(2) - 1 / (x + 1.0)) ** 2
    y = (y @ np.ones((2, 2))).mean() + x.exp().log().sum() + x.max()
    assert y.dtype == dtype
    y.backward()
    assert x.grad.dtype == dtype


def test_float32_layers_stay_float32(seeded):
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Flatten(), nn.Dropout(0.5), nn.Linear(2, 3))
    out = net(Tensor(np.ones((2, 1, 4, 4), np.float32)))
    loss = F.cross_entropy(out, [0, 1])
    assert out.dtype == np.float32 and loss.dtype == np.float32
    loss.backward()
    assert all(p.grad.dtype == np.float32 for p in net.parameters())


# ----- item, detach, repr -------------------------------------------------------------------


def test_basic_properties():
    x = Tensor(np.arange(6.0).reshape(2, 3))
    assert x.shape == (2, 3) and x.ndim == 2 and x.size() == (2, 3) and x.numel() == 6
    assert len(x) == 2 and x.size(1) == 3 and x.size(-2) == 2 and x.dim() == 2
    assert x.numpy() is x.data
    assert Tensor([3.5]).item() == 3.5
    assert x.argmax(axis=1).tolist() == [2, 2]
    assert "requires_grad=True" in repr(Tensor([1.0], requires_grad=True))


def test_detach_cuts_the_graph():
    x = Tensor([1.0, 2.0], requires_grad=True)
    d = (x * 2).detach()
    assert not d.requires_grad and d._ctx is None
    np.testing.assert_array_equal(d.data, [2.0, 4.0])


# ----- backward errors ----------------------------------------------------------------------


def test_backward_on_tensor_without_grad():
    with pytest.raises(RuntimeError, match="does not require gradients"):
        Tensor([1.0]).backward()


def test_backward_on_non_scalar_needs_grad():
    x = Tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match=r"single-element tensor, got shape \(2,\)"):
        (x * 2).backward()


def test_backward_grad_of_wrong_shape():
    x = Tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match=r"gradient has shape \(3,\), expected \(2,\)"):
        (x * 2).backward(np.ones(3))


class _BadShape(Function):
    def forward(self, x):
        return x * 2

    def backward(self, grad):
        return grad[:1]


class _BadDtype(Function):
    def forward(self, x):
        return x * 2

    def backward(self, grad):
        return grad.astype(np.float64)


class _TooMany(Function):
    def forward(self, x):
        return x * 2

    def backward(self, grad):
        return grad, grad


@pytest.mark.parametrize("op, match", [
    (_BadShape, r"_BadShape.backward returned a gradient of shape \(1,\) float32 for an "
                r"input of shape \(2,\) float32"),
    (_BadDtype, r"_BadDtype.backward returned a gradient of shape \(2,\) float64"),
    (_TooMany, r"_TooMany.backward returned 2 gradients for 1 inputs"),
])
def test_backward_names_the_op_that_returned_a_bad_gradient(op, match):
    x = Tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match=match):
        op.apply(x).sum().backward()


def test_pow_with_tensor_exponent_is_refused():
    with pytest.raises(TypeError, match="only a number is supported as an exponent"):
        Tensor([1.0]) ** Tensor([2.0])


def test_reshape_error_names_shapes():
    with pytest.raises(ValueError, match=r"cannot reshape a tensor of shape \(2, 3\) "
                                         r"\(6 elements\) into \(4, -1\)"):
        Tensor(np.zeros((2, 3))).reshape(4, -1)


# ----- seeding ------------------------------------------------------------------------------


def _init_and_dropout(seed: int):
    cnnlab.manual_seed(seed)
    conv, lin = nn.Conv2d(3, 4, 3), nn.Linear(5, 2)
    drop = F.dropout(Tensor(np.ones((4, 8), np.float32)), 0.5).data
    return [conv.weight.data, conv.bias.data, lin.weight.data, lin.bias.data, drop]


def test_manual_seed_reproduces_bit_for_bit():
    first, second = _init_and_dropout(123), _init_and_dropout(123)
    for a, b in zip(first, second, strict=True):
        assert a.tobytes() == b.tobytes()
    other = _init_and_dropout(124)
    assert first[0].tobytes() != other[0].tobytes()


def test_rng_state_round_trip_through_json():
    cnnlab.manual_seed(5)
    cnnlab.random.get_generator().random(10)  # advance it
    state = json.loads(json.dumps(cnnlab.random.get_rng_state()))
    expected = _draws()
    cnnlab.manual_seed(999)
    cnnlab.random.set_rng_state(state)
    assert _draws() == expected


def _draws():
    conv = nn.Conv2d(1, 2, 3)
    drop = F.dropout(Tensor(np.ones(16, np.float32)), 0.5).data
    return conv.weight.data.tobytes() + drop.tobytes()


def test_get_rng_state_is_a_copy():
    cnnlab.manual_seed(1)
    state = cnnlab.random.get_rng_state()
    cnnlab.random.get_generator().random(5)
    assert state != cnnlab.random.get_rng_state()


def test_bad_seed_and_state():
    for seed in (-1, 1.5, "1", True):
        with pytest.raises(ValueError, match="manual_seed expects a non-negative integer"):
            cnnlab.manual_seed(seed)
    with pytest.raises(ValueError, match="not a valid cnnlab RNG state"):
        cnnlab.random.set_rng_state({"bit_generator": "nope"})


def test_dropout_uses_given_generator_not_global():
    x = Tensor(np.ones(64, np.float32))
    a = F.dropout(x, 0.5, generator=np.random.default_rng(1)).data
    cnnlab.manual_seed(0)
    before = cnnlab.random.get_rng_state()
    b = F.dropout(x, 0.5, generator=np.random.default_rng(1)).data
    assert cnnlab.random.get_rng_state() == before
    np.testing.assert_array_equal(a, b)


def test_mixed_precision_arithmetic_gives_each_input_its_own_dtype_gradient():
    a = cnnlab.Tensor(np.array([1.0, 2.0], dtype=np.float32), requires_grad=True)
    b = cnnlab.Tensor(np.array([3.0, 4.0], dtype=np.float64), requires_grad=True)
    out = (a * b + a - b / a).sum()
    assert out.dtype == np.float64
    out.backward()
    assert a.grad.dtype == np.float32 and b.grad.dtype == np.float64
    np.testing.assert_allclose(a.grad, [3 + 1 + 3 / 1, 4 + 1 + 4 / 4], rtol=1e-6)
    np.testing.assert_allclose(b.grad, [1 - 1 / 1, 2 - 1 / 2])


def test_integer_tensor_times_a_float_is_float():
    x = cnnlab.Tensor(np.array([1, 2, 3]))
    assert (x * 0.5).data.tolist() == [0.5, 1.0, 1.5]
