"""Every op and layer against central differences in float64 (see tests/gradcheck.py)."""

from __future__ import annotations

import numpy as np
import pytest
from gradcheck import (
    GradientCheckError,
    as_leaf,
    check_gradients,
    check_module,
    check_op,
    distinct_values,
)

import cnnlab
from cnnlab import Tensor, nn
from cnnlab.nn import functional as F
from cnnlab.ops import conv as conv_op
from cnnlab.tensor import Function

# ----- the checker itself ------------------------------------------------------------------


class _WrongSquare(Function):
    """x**2 with a backward that is wrong at one element."""

    def forward(self, x):
        self.x = x
        return x * x

    def backward(self, grad):
        g = 2 * self.x * grad
        g[1, 2] *= 1.01
        return g


def test_checker_reports_worst_element_values_and_error(rng):
    x = distinct_values((3, 4), rng)
    with pytest.raises(GradientCheckError,
                       match=r"input 'x', element \(1, 2\): analytic .*, numeric .*, "
                             r"relative error 0\.0099"):
        check_op(_WrongSquare.apply, x, names=["x"])


def test_checker_reports_input_without_gradient(rng):
    a, b = as_leaf(distinct_values((3,), rng)), as_leaf(distinct_values((3,), rng))
    with pytest.raises(GradientCheckError, match="input 'b' received no gradient"):
        # Cutting b from the graph loses its gradient although the output depends on it.
        check_gradients(lambda: a * b.detach(), [a, b], names=["a", "b"])


def test_checker_requires_float64(rng):
    x = Tensor(distinct_values((2,), rng).astype(np.float32), requires_grad=True)
    with pytest.raises(TypeError, match="must be a float64 Tensor"):
        check_gradients(lambda: x * 2, [x])


def test_checker_passes_a_correct_op_with_tiny_error(rng):
    worst = check_op(lambda x: x * x, distinct_values((3, 4), rng))
    assert worst.rel_error < 1e-8


# ----- convolution --------------------------------------------------------------------------

CONV_CASES = {
    # name: (N, C, H, W), (F, KH, KW), stride, padding, dilation, groups, bias
    "basic": ((1, 2, 6, 5), (3, 3, 3), 1, 0, 1, 1, True),
    "stride2_pad1": ((2, 2, 7, 6), (3, 3, 3), 2, 1, 1, 1, True),
    "pad2": ((1, 2, 5, 5), (2, 3, 3), 1, 2, 1, 1, True),
    "dilation2": ((2, 2, 7, 7), (2, 3, 3), 1, 1, 2, 1, True),
    "groups2": ((2, 4, 5, 6), (4, 3, 2), 1, 1, 1, 2, True),
    "no_bias": ((2, 3, 6, 6), (2, 3, 3), 1, 0, 1, 1, False),
    "nonsquare_all": ((2, 2, 7, 5), (3, 3, 2), (2, 1), (1, 2), (1, 2), 1, True),
    "one_by_one": ((2, 3, 4, 4), (2, 1, 1), 1, 0, 1, 1, True),
    "grouped_strided_dilated": ((1, 4, 9, 8), (2, 2, 3), 2, 2, 2, 2, False),
}


@pytest.mark.parametrize("relu", [False, True], ids=["conv", "conv+relu fused"])
@pytest.mark.parametrize("case", CONV_CASES, ids=list(CONV_CASES))
def test_conv2d(case, relu, rng):
    (n, c, h, w), (f, kh, kw), stride, padding, dilation, groups, bias = CONV_CASES[case]
    x = distinct_values((n, c, h, w), rng)
    wt = rng.standard_normal((f, c // groups, kh, kw)) * 0.5
    arrays, names = [x, wt], ["x", "weight"]
    if bias:
        arrays.append(rng.standard_normal(f))
        names.append("bias")
    conv = conv_op.conv2d_relu if relu else F.conv2d

    def op(*t):
        return conv(t[0], t[1], t[2] if bias else None, stride, padding, dilation, groups)

    check_op(op, *arrays, names=names)


# ----- pooling ------------------------------------------------------------------------------

POOL_CASES = {
    # name: (N, C, H, W), kernel, stride, padding
    "k2": ((2, 2, 6, 6), 2, None, 0),
    "k2_odd_input": ((1, 2, 7, 5), 2, None, 0),
    "k3_s2_p1": ((2, 2, 7, 7), 3, 2, 1),
    "k3_s1_overlap": ((1, 3, 5, 6), 3, 1, 0),
    "k3_s3_p1": ((1, 2, 7, 8), 3, 3, 1),
    "nonsquare": ((2, 1, 7, 6), (2, 3), (1, 2), (1, 1)),
    "stride_gt_kernel": ((1, 2, 8, 8), 2, 3, 0),
}


@pytest.mark.parametrize("pool", [F.max_pool2d, F.avg_pool2d], ids=["max", "avg"])
@pytest.mark.parametrize("case", POOL_CASES, ids=list(POOL_CASES))
def test_pool2d(pool, case, rng):
    shape, kernel, stride, padding = POOL_CASES[case]
    check_op(lambda x: pool(x, kernel, stride, padding), distinct_values(shape, rng))


def test_adaptive_avg_pool2d_global(rng):
    check_op(lambda x: F.adaptive_avg_pool2d(x, 1), distinct_values((2, 3, 5, 4), rng))


def test_adaptive_avg_pool2d_divisible(rng):
    check_op(lambda x: F.adaptive_avg_pool2d(x, (2, 3)), distinct_values((1, 2, 4, 6), rng))


# ----- linear and activations ---------------------------------------------------------------


@pytest.mark.parametrize("x_shape", [(4, 5), (2, 3, 5), (5,)], ids=["2d", "3d", "1d"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
def test_linear(x_shape, bias, rng):
    arrays = [distinct_values(x_shape, rng), rng.standard_normal((3, 5))]
    if bias:
        arrays.append(rng.standard_normal(3))
    check_op(F.linear, *arrays)


ACTIVATIONS = {
    "relu": F.relu,
    "leaky_relu": lambda x: F.leaky_relu(x, 0.1),
    "leaky_relu_default": F.leaky_relu,
    "sigmoid": F.sigmoid,
    "tanh": F.tanh,
    "softmax_last": lambda x: F.softmax(x, dim=-1),
    "softmax_dim1": lambda x: F.softmax(x, dim=1),
    "log_softmax_last": lambda x: F.log_softmax(x, dim=-1),
    "log_softmax_dim0": lambda x: F.log_softmax(x, dim=0),
    "tensor_relu_method": lambda x: x.relu(),
}


@pytest.mark.parametrize("name", ACTIVATIONS, ids=list(ACTIVATIONS))
def test_activation(name, rng):
    check_op(ACTIVATIONS[name], distinct_values((3, 4, 5), rng, -3, 3))


def test_sigmoid_and_softmax_at_large_inputs(rng):
    x = distinct_values((2, 6), rng, -30, 30)
    check_op(F.sigmoid, x)
    check_op(lambda t: F.log_softmax(t, dim=1), x)


# ----- losses -------------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy(reduction, rng):
    logits = distinct_values((5, 4), rng, -3, 3)
    target = np.array([0, 3, 1, 1, 2])
    check_op(lambda z: F.cross_entropy(z, target, reduction=reduction), logits)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_loss(reduction, rng):
    check_op(lambda a, b: F.mse_loss(a, b, reduction=reduction),
             distinct_values((3, 4), rng), distinct_values((3, 4), rng), names=["input", "target"])


# ----- dropout and batch norm ---------------------------------------------------------------


@pytest.mark.parametrize("p", [0.3, 0.5])
def test_dropout_with_fixed_generator(p, rng):
    # A fresh generator with the same seed per evaluation: the same mask every time.
    def op(x):
        return F.dropout(x, p, training=True, generator=np.random.default_rng(7))

    x = distinct_values((4, 6), rng)
    check_op(op, x)
    out = op(Tensor(x)).data
    assert np.any(out == 0) and np.any(out != 0)


@pytest.mark.parametrize("shape", [(4, 3, 3, 2), (6, 3)], ids=["nchw", "nc"])
def test_batch_norm_train(shape, rng):
    def op(x, w, b):
        # Fresh running statistics each time, so repeated evaluations are identical.
        return F.batch_norm(x, np.zeros(shape[1]), np.ones(shape[1]), w, b, training=True)

    check_op(op, distinct_values(shape, rng, -2, 2), rng.standard_normal(shape[1]),
             rng.standard_normal(shape[1]), names=["x", "weight", "bias"])


def test_batch_norm_without_running_stats(rng):
    check_op(lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True),
             distinct_values((3, 2, 2, 2), rng), rng.standard_normal(2), rng.standard_normal(2))


def test_batch_norm_eval(rng):
    mean, var = rng.standard_normal(3), rng.uniform(0.5, 2.0, 3)
    check_op(lambda x, w, b: F.batch_norm(x, mean, var, w, b, training=False),
             distinct_values((2, 3, 3, 3), rng), rng.standard_normal(3), rng.standard_normal(3),
             names=["x", "weight", "bias"])


# ----- tensor operations --------------------------------------------------------------------

TENSOR_OPS = {
    # name: (function, input shapes)
    "flatten": (lambda x: x.flatten(1), [(2, 3, 4)]),
    "F.flatten": (lambda x: F.flatten(x), [(2, 3, 2, 2)]),
    "reshape": (lambda x: x.reshape(4, -1), [(2, 3, 4)]),
    "view": (lambda x: x.view((6, 4)), [(2, 3, 4)]),
    "transpose_default": (lambda x: x.transpose(), [(2, 3, 4)]),
    "transpose_axes": (lambda x: x.transpose(2, 0, 1), [(2, 3, 4)]),
    "T": (lambda x: x.T, [(3, 5)]),
    "getitem_slice": (lambda x: x[1:, ::2, -1], [(3, 4, 5)]),
    "getitem_int_ellipsis_none": (lambda x: x[0, ..., None], [(3, 4)]),
    "getitem_fancy_repeats": (lambda x: x[[0, 2, 0, 0]], [(3, 4)]),
    "getitem_fancy_tuple": (lambda x: x[np.array([0, 1, 1]), np.array([2, 2, 0])], [(2, 3)]),
    "getitem_bool_mask": (lambda x: x[x.data > 0], [(3, 4)]),
    "sum_all": (lambda x: x.sum(), [(2, 3, 4)]),
    "sum_axis": (lambda x: x.sum(axis=1), [(2, 3, 4)]),
    "sum_axes_keepdims": (lambda x: x.sum(axis=(0, -1), keepdims=True), [(2, 3, 4)]),
    "mean_all": (lambda x: x.mean(), [(2, 3, 4)]),
    "mean_axis_neg": (lambda x: x.mean(axis=-1), [(2, 3, 4)]),
    "mean_axes_keepdims": (lambda x: x.mean(axis=(0, 2), keepdims=True), [(2, 3, 4)]),
    "max_all": (lambda x: x.max(), [(2, 3, 4)]),
    "max_axis": (lambda x: x.max(axis=1), [(2, 3, 4)]),
    "max_axes_keepdims": (lambda x: x.max(axis=(0, -1), keepdims=True), [(2, 3, 4)]),
    "exp": (lambda x: x.exp(), [(3, 4)]),
    "log": (lambda x: (x * x + 0.5).log(), [(3, 4)]),
    "pow2": (lambda x: x ** 2, [(3, 4)]),
    "pow3": (lambda x: x ** 3, [(3, 4)]),
    "pow_half": (lambda x: (x * x + 0.5) ** 0.5, [(3, 4)]),
    "pow_minus1": (lambda x: (x * x + 0.5) ** -1, [(3, 4)]),
    "neg": (lambda x: -x, [(3, 4)]),
    "matmul_2d": (lambda a, b: a @ b, [(3, 4), (4, 2)]),
    "matmul_batched": (lambda a, b: a @ b, [(2, 3, 4), (2, 4, 5)]),
    "matmul_broadcast_batch": (lambda a, b: a @ b, [(2, 3, 4), (4, 5)]),
    "matmul_broadcast_left": (lambda a, b: a @ b, [(3, 4), (2, 4, 5)]),
    "matmul_vec_mat": (lambda a, b: a @ b, [(4,), (4, 3)]),
    "matmul_mat_vec": (lambda a, b: a @ b, [(3, 4), (4,)]),
    "matmul_vec_vec": (lambda a, b: a @ b, [(4,), (4,)]),
    "matmul_batched_vec": (lambda a, b: a @ b, [(2, 3, 4), (4,)]),
    "add_broadcast": (lambda a, b: a + b, [(2, 3, 4), (3, 1)]),
    "sub_broadcast": (lambda a, b: a - b, [(2, 1, 4), (3, 1)]),
    "mul_broadcast": (lambda a, b: a * b, [(2, 3, 4), (4,)]),
    "div_broadcast": (lambda a, b: a / (b * b + 0.5), [(2, 3, 4), (1, 3, 1)]),
    "scalar_ops": (lambda a: (2.0 - a) * 3.0 / 2.0 + 1.0 - 0.5 * a, [(3, 4)]),
    "rtruediv": (lambda a: 1.0 / (a * a + 0.5), [(3, 4)]),
    "array_operand": (lambda a: np.full((3, 4), 2.0) * a + np.ones(4), [(3, 4)]),
    "reused_input": (lambda a: a * a + a.exp() * a, [(3, 4)]),
    "diamond": (lambda a: (lambda h: h.exp() * h.sum(axis=0))(a * 2.0), [(3, 4)]),
}


@pytest.mark.parametrize("name", TENSOR_OPS, ids=list(TENSOR_OPS))
def test_tensor_op(name, rng):
    fn, shapes = TENSOR_OPS[name]
    check_op(fn, *[distinct_values(s, rng) for s in shapes])


# ----- layers -------------------------------------------------------------------------------

LAYERS = {
    # name: (factory, input shape)
    "Conv2d": (lambda: nn.Conv2d(2, 3, 3), (2, 2, 5, 5)),
    "Conv2d_all_options": (lambda: nn.Conv2d(4, 2, (3, 2), stride=(2, 1), padding=(1, 2),
                                             dilation=(2, 1), groups=2), (2, 4, 7, 5)),
    "Conv2d_no_bias": (lambda: nn.Conv2d(2, 2, 3, padding=1, bias=False), (1, 2, 4, 4)),
    "Linear": (lambda: nn.Linear(6, 4), (3, 6)),
    "Linear_no_bias": (lambda: nn.Linear(6, 4, bias=False), (3, 6)),
    "MaxPool2d": (lambda: nn.MaxPool2d(2), (2, 2, 4, 6)),
    "MaxPool2d_k3s2p1": (lambda: nn.MaxPool2d(3, stride=2, padding=1), (1, 2, 5, 5)),
    "AvgPool2d": (lambda: nn.AvgPool2d(2), (2, 2, 4, 6)),
    "AvgPool2d_k3s2p1": (lambda: nn.AvgPool2d(3, 2, 1), (1, 2, 5, 5)),
    "AdaptiveAvgPool2d": (lambda: nn.AdaptiveAvgPool2d(1), (2, 3, 4, 4)),
    "ReLU": (nn.ReLU, (2, 3, 4)),
    "LeakyReLU": (lambda: nn.LeakyReLU(0.2), (2, 3, 4)),
    "Sigmoid": (nn.Sigmoid, (2, 3, 4)),
    "Tanh": (nn.Tanh, (2, 3, 4)),
    "Flatten": (nn.Flatten, (2, 3, 2, 2)),
    "Dropout_eval": (lambda: nn.Dropout(0.5).eval(), (2, 3, 4)),
    "BatchNorm2d_train": (lambda: nn.BatchNorm2d(3), (4, 3, 2, 2)),
    "BatchNorm2d_eval": (lambda: nn.BatchNorm2d(3).eval(), (2, 3, 2, 2)),
}


@pytest.mark.parametrize("name", LAYERS, ids=list(LAYERS))
def test_layer(name, rng, seeded):
    factory, shape = LAYERS[name]
    layer = factory()
    if isinstance(layer, nn.BatchNorm2d):
        # Non-trivial affine parameters and running statistics.
        layer.weight.data[...] = rng.uniform(0.5, 1.5, 3)
        layer.bias.data[...] = rng.standard_normal(3)
        layer.running_mean[...] = rng.standard_normal(3)
        layer.running_var[...] = rng.uniform(0.5, 2.0, 3)
    check_module(layer, distinct_values(shape, rng))


def test_dropout_layer_in_training(rng):
    layer = nn.Dropout(0.4)
    x = as_leaf(distinct_values((3, 5), rng))

    def fn():
        cnnlab.manual_seed(3)  # the same mask at every evaluation
        return layer(x)

    check_gradients(fn, [x])


def test_sequential_conv_net_end_to_end(rng, seeded):
    """Loss of a small conv net: gradients of the input and of every parameter."""
    net = nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(3, 4, 3), nn.Tanh(), nn.AvgPool2d(2, stride=1), nn.Flatten(),
        nn.Linear(4, 5), nn.LeakyReLU(0.1), nn.Linear(5, 3),
    ).double()
    x = as_leaf(distinct_values((3, 1, 8, 8), rng))
    target = np.array([0, 2, 1])
    named = list(net.named_parameters())
    assert len(named) == 10
    leaves = [x] + [p for _, p in named]
    names = ["input"] + [n for n, _ in named]
    check_gradients(lambda: F.cross_entropy(net(x), target), leaves, names=names)


def test_conv_net_with_global_pool_and_dropout(rng, seeded):
    net = nn.Sequential(
        nn.Conv2d(2, 4, 3, stride=2, padding=1), nn.Sigmoid(), nn.Conv2d(4, 4, 1, groups=2),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.25), nn.Linear(4, 3),
    )
    x = distinct_values((2, 2, 6, 6), rng)

    class Loss(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, x):
            cnnlab.manual_seed(11)  # dropout mask fixed across evaluations
            return F.mse_loss(self.net(x), np.ones((2, 3)), reduction="sum")

    check_module(Loss(), x)
