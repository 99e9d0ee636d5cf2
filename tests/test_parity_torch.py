"""Parity with PyTorch: the same seeded inputs and weights give the same forward values and
the same gradients, in float32 (relative error <= 1e-4) and float64 (<= 1e-9).

The relative error of an array is ``max|ours - torch| / max|torch|``. Every comparison also
checks that float32 stays float32 and float64 stays float64, outputs and gradients alike.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnlab import Tensor, nn
from cnnlab.nn import functional as F
from cnnlab.ops import conv as conv_op

torch = pytest.importorskip("torch", reason="parity tests compare against PyTorch")
TF = torch.nn.functional

TOL = {np.float32: 1e-4, np.float64: 1e-9, np.int64: 0.0}
DTYPES = [np.float32, np.float64]
# The worst relative error seen per dtype (reported by whoever runs the suite).
WORST = {np.float32: 0.0, np.float64: 0.0, np.int64: 0.0}

PROPERTY = settings(max_examples=25, deadline=None, derandomize=True)


def rel_error(ours: np.ndarray, theirs: np.ndarray) -> float:
    scale = float(np.max(np.abs(theirs))) if theirs.size else 0.0
    diff = float(np.max(np.abs(ours - theirs))) if theirs.size else 0.0
    return diff / scale if scale > 0 else diff


def assert_close(ours: np.ndarray, theirs, dtype, what: str) -> None:
    theirs = theirs.detach().numpy() if isinstance(theirs, torch.Tensor) else np.asarray(theirs)
    ours = np.asarray(ours)
    assert ours.dtype == dtype, f"{what}: dtype {ours.dtype}, expected {np.dtype(dtype)}"
    assert ours.shape == theirs.shape, f"{what}: shape {ours.shape}, torch {theirs.shape}"
    err = rel_error(ours.astype(np.float64), theirs.astype(np.float64))
    WORST[dtype] = max(WORST[dtype], err)
    assert err <= TOL[dtype], (f"{what}: relative error {err:.3g} > {TOL[dtype]:g} "
                               f"({np.dtype(dtype).name})")


def compare(ours, theirs, arrays, dtype, names=None, seed=0) -> None:
    """Run ``ours`` on cnnlab tensors and ``theirs`` on torch tensors made from the same
    arrays; compare the outputs, then the gradients after the same upstream gradient."""
    names = names or [f"input {i}" for i in range(len(arrays))]
    cn = [Tensor(np.array(a, dtype=dtype), requires_grad=True) for a in arrays]
    th = [torch.tensor(np.array(a, dtype=dtype), requires_grad=True) for a in arrays]
    out_cn, out_th = ours(*cn), theirs(*th)
    assert_close(out_cn.data, out_th, dtype, "output")
    g = np.random.default_rng(seed).standard_normal(out_cn.shape).astype(dtype)
    out_cn.backward(g)
    out_th.backward(torch.from_numpy(g))
    for name, c, t in zip(names, cn, th, strict=True):
        assert c.grad is not None, f"{name}: no gradient"
        assert_close(c.grad, t.grad, dtype, f"gradient of {name}")


dtypes = st.sampled_from(DTYPES)
seeds = st.integers(0, 2**31 - 1)


# ----- convolution --------------------------------------------------------------------------


@st.composite
def conv_configs(draw):
    groups = draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    # Inputs at least as large as the padded kernel span, up to a few steps more.
    h = max(1, dh * (kh - 1) + 1 - 2 * ph) + draw(st.integers(0, 5))
    w = max(1, dw * (kw - 1) + 1 - 2 * pw) + draw(st.integers(0, 5))
    return dict(n=draw(st.integers(1, 3)), c=groups * draw(st.integers(1, 3)),
                f=groups * draw(st.integers(1, 3)), h=h, w=w, kernel=(kh, kw), stride=(sh, sw),
                padding=(ph, pw), dilation=(dh, dw), groups=groups, bias=draw(st.booleans()))


@pytest.mark.parametrize("relu", [False, True], ids=["conv", "conv+relu fused"])
@PROPERTY
@given(cfg=conv_configs(), dtype=dtypes, seed=seeds)
def test_conv2d(cfg, dtype, seed, relu):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((cfg["n"], cfg["c"], cfg["h"], cfg["w"]))
    w = rng.standard_normal((cfg["f"], cfg["c"] // cfg["groups"], *cfg["kernel"]))
    arrays = [x, w] + ([rng.standard_normal(cfg["f"])] if cfg["bias"] else [])
    opts = dict(stride=cfg["stride"], padding=cfg["padding"], dilation=cfg["dilation"],
                groups=cfg["groups"])

    def ours(x, w, b=None):
        return (conv_op.conv2d_relu if relu else F.conv2d)(x, w, b, **opts)

    def theirs(x, w, b=None):
        out = TF.conv2d(x, w, b, **opts)
        return TF.relu(out) if relu else out

    compare(ours, theirs, arrays, dtype, ["x", "weight", "bias"][:len(arrays)], seed)


# ----- pooling ------------------------------------------------------------------------------


@st.composite
def pool_configs(draw):
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = draw(st.one_of(st.none(), st.tuples(st.integers(1, 3), st.integers(1, 3))))
    ph, pw = draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2))
    h = max(1, kh - 2 * ph) + draw(st.integers(0, 6))
    w = max(1, kw - 2 * pw) + draw(st.integers(0, 6))
    return dict(shape=(draw(st.integers(1, 2)), draw(st.integers(1, 3)), h, w),
                kernel=(kh, kw), stride=stride, padding=(ph, pw))


@PROPERTY
@given(cfg=pool_configs(), dtype=dtypes, seed=seeds)
def test_max_pool2d(cfg, dtype, seed):
    x = np.random.default_rng(seed).standard_normal(cfg["shape"])  # ties: probability 0
    compare(lambda t: F.max_pool2d(t, cfg["kernel"], cfg["stride"], cfg["padding"]),
            lambda t: TF.max_pool2d(t, cfg["kernel"], cfg["stride"], cfg["padding"]),
            [x], dtype, seed=seed)


@PROPERTY
@given(cfg=pool_configs(), dtype=dtypes, seed=seeds)
def test_max_pool2d_ties_go_where_torch_sends_them(cfg, dtype, seed):
    # Three distinct values: most windows hold their maximum more than once. Like PyTorch,
    # the first maximum in row-major window order takes the whole gradient.
    x = np.random.default_rng(seed).integers(-1, 2, cfg["shape"]).astype(np.float64)
    compare(lambda t: F.max_pool2d(t, cfg["kernel"], cfg["stride"], cfg["padding"]),
            lambda t: TF.max_pool2d(t, cfg["kernel"], cfg["stride"], cfg["padding"]),
            [x], dtype, seed=seed)


@PROPERTY
@given(cfg=pool_configs(), dtype=dtypes, seed=seeds)
def test_avg_pool2d(cfg, dtype, seed):
    x = np.random.default_rng(seed).standard_normal(cfg["shape"])
    compare(lambda t: F.avg_pool2d(t, cfg["kernel"], cfg["stride"], cfg["padding"]),
            lambda t: TF.avg_pool2d(t, cfg["kernel"], cfg["stride"], cfg["padding"]),
            [x], dtype, seed=seed)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size, out", [((5, 7), 1), ((4, 6), (2, 3)), ((6, 6), 3)])
def test_adaptive_avg_pool2d(size, out, dtype, rng):
    x = rng.standard_normal((2, 3, *size))
    compare(lambda t: F.adaptive_avg_pool2d(t, out), lambda t: TF.adaptive_avg_pool2d(t, out),
            [x], dtype)


# ----- linear, activations, softmax ---------------------------------------------------------


@PROPERTY
@given(lead=st.lists(st.integers(1, 4), min_size=0, max_size=2), fin=st.integers(1, 8),
       fout=st.integers(1, 8), bias=st.booleans(), dtype=dtypes, seed=seeds)
def test_linear(lead, fin, fout, bias, dtype, seed):
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal((*lead, fin)), rng.standard_normal((fout, fin))]
    if bias:
        arrays.append(rng.standard_normal(fout))
    compare(F.linear, TF.linear, arrays, dtype, seed=seed)


ACTIVATIONS = {
    "relu": (F.relu, TF.relu),
    "leaky_relu": (lambda x: F.leaky_relu(x, 0.2), lambda x: TF.leaky_relu(x, 0.2)),
    "leaky_relu_default": (F.leaky_relu, TF.leaky_relu),
    "sigmoid": (F.sigmoid, torch.sigmoid),
    "tanh": (F.tanh, torch.tanh),
    "softmax_dim1": (lambda x: F.softmax(x, 1), lambda x: TF.softmax(x, 1)),
    "softmax_last": (lambda x: F.softmax(x, -1), lambda x: TF.softmax(x, -1)),
    "log_softmax_dim1": (lambda x: F.log_softmax(x, 1), lambda x: TF.log_softmax(x, 1)),
    "log_softmax_dim0": (lambda x: F.log_softmax(x, 0), lambda x: TF.log_softmax(x, 0)),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scale", [1.0, 30.0])
@pytest.mark.parametrize("name", ACTIVATIONS, ids=list(ACTIVATIONS))
def test_activation(name, scale, dtype, rng):
    ours, theirs = ACTIVATIONS[name]
    compare(ours, theirs, [rng.standard_normal((3, 5, 4)) * scale], dtype)


# ----- losses -------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scale", [1.0, 1e4], ids=["logits1", "logits1e4"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy(reduction, scale, dtype, rng):
    logits = rng.standard_normal((6, 5)) * scale
    target = rng.integers(0, 5, 6)
    compare(lambda z: F.cross_entropy(z, target, reduction=reduction),
            lambda z: TF.cross_entropy(z, torch.from_numpy(target), reduction=reduction),
            [logits], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_huge_logits_stay_finite(dtype):
    logits = np.array([[1e4, -1e4, 0.0], [5e3, 5e3 + 1, -3e3]])
    loss = F.cross_entropy(Tensor(logits.astype(dtype)), [1, 0])
    expected = TF.cross_entropy(torch.tensor(logits.astype(dtype)), torch.tensor([1, 0]))
    assert np.isfinite(loss.item())
    assert_close(loss.data, expected, dtype, "loss")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_loss(reduction, dtype, rng):
    compare(lambda a, b: F.mse_loss(a, b, reduction=reduction),
            lambda a, b: TF.mse_loss(a, b, reduction=reduction),
            [rng.standard_normal((4, 3)), rng.standard_normal((4, 3))], dtype)


# ----- batch norm ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(4, 3, 5, 2), (8, 3)], ids=["nchw", "nc"])
def test_batch_norm_functional_train_and_running_stats(shape, dtype, rng):
    c = shape[1]
    rm_cn, rv_cn = rng.standard_normal(c).astype(dtype), rng.uniform(0.5, 2, c).astype(dtype)
    rm_th, rv_th = torch.tensor(rm_cn), torch.tensor(rv_cn)
    compare(lambda x, w, b: F.batch_norm(x, rm_cn, rv_cn, w, b, True, 0.2, 1e-3),
            lambda x, w, b: TF.batch_norm(x, rm_th, rv_th, w, b, True, 0.2, 1e-3),
            [rng.standard_normal(shape) * 3 + 1, rng.standard_normal(c),
             rng.standard_normal(c)], dtype, ["x", "weight", "bias"])
    assert_close(rm_cn, rm_th, dtype, "running_mean")
    assert_close(rv_cn, rv_th, dtype, "running_var")


@pytest.mark.parametrize("dtype", DTYPES)
def test_batch_norm_functional_eval(dtype, rng):
    mean, var = rng.standard_normal(3).astype(dtype), rng.uniform(0.5, 2, 3).astype(dtype)
    compare(lambda x, w, b: F.batch_norm(x, mean, var, w, b, False),
            lambda x, w, b: TF.batch_norm(x, torch.tensor(mean), torch.tensor(var), w, b,
                                          False),
            [rng.standard_normal((2, 3, 4, 4)), rng.standard_normal(3), rng.standard_normal(3)],
            dtype, ["x", "weight", "bias"])


@pytest.mark.parametrize("dtype", DTYPES)
def test_batchnorm2d_layer_train_then_eval(dtype, rng, seeded):
    ours, theirs = nn.BatchNorm2d(4, momentum=0.3), torch.nn.BatchNorm2d(4, momentum=0.3)
    ours.to(dtype)
    theirs.to(torch.float64 if dtype == np.float64 else torch.float32)
    with torch.no_grad():
        theirs.weight.copy_(torch.tensor(rng.uniform(0.5, 1.5, 4)))
        theirs.bias.copy_(torch.tensor(rng.standard_normal(4)))
    ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    for step in range(3):  # each step updates the running statistics
        x = rng.standard_normal((3, 4, 3, 3)) * (step + 1) + step
        compare(ours, theirs, [x], dtype, seed=step)
    for name, value in theirs.state_dict().items():
        assert_close(np.asarray(ours.state_dict()[name]), value,
                     np.int64 if name == "num_batches_tracked" else dtype, name)
    for p_ours, (name, p_theirs) in zip(ours.parameters(), theirs.named_parameters(),
                                        strict=True):
        assert_close(p_ours.grad, p_theirs.grad, dtype, f"gradient of {name}")
    ours.eval()
    theirs.eval()
    compare(ours, theirs, [rng.standard_normal((2, 4, 3, 3))], dtype)


# ----- dropout ------------------------------------------------------------------------------


@pytest.mark.parametrize("p", [0.2, 0.5, 0.8])
def test_dropout_scaling_semantics_match_torch(p):
    n = 200_000
    x = np.full(n, 3.0, dtype=np.float32)
    ours = F.dropout(Tensor(x), p, training=True, generator=np.random.default_rng(0)).data
    torch.manual_seed(0)
    theirs = TF.dropout(torch.from_numpy(x), p, training=True).numpy()
    sigma = math.sqrt(p * (1 - p) / n)
    for out in (ours, theirs):
        # Survivors are scaled by 1/(1-p); zeros appear with probability p.
        assert set(np.unique(out).tolist()) == {0.0, np.float32(3.0 / (1 - p)).item()}
        assert abs(np.mean(out == 0) - p) < 5 * sigma
        assert abs(out.mean() - 3.0) < 5 * 3.0 / (1 - p) * sigma  # expectation unchanged
    np.testing.assert_array_equal(F.dropout(Tensor(x), p, training=False).data, x)
    np.testing.assert_array_equal(TF.dropout(torch.from_numpy(x), p, training=False), x)


@pytest.mark.parametrize("dtype", DTYPES)
def test_dropout_gradient_uses_the_same_mask(dtype):
    x = Tensor(np.ones((50, 40), dtype), requires_grad=True)
    out = F.dropout(x, 0.3, generator=np.random.default_rng(1))
    out.backward(np.ones(out.shape, dtype))
    assert out.dtype == dtype and x.grad.dtype == dtype
    np.testing.assert_array_equal(x.grad, out.data)  # d(mask * x)/dx = mask = out for x = 1


@pytest.mark.parametrize("p", [0.0, 1.0])
def test_dropout_extremes(p):
    x = np.arange(1.0, 7.0, dtype=np.float32)
    ours = F.dropout(Tensor(x), p).data
    theirs = TF.dropout(torch.from_numpy(x), p).numpy()
    np.testing.assert_array_equal(ours, theirs)


# ----- tensor operations --------------------------------------------------------------------

TENSOR_OPS = {
    "add_sub_mul_div_broadcast": (lambda a, b: (a + b) * a - b / (b * b + 1.0), None,
                                  [(2, 3, 4), (3, 1)]),
    "matmul_batched_broadcast": (lambda a, b: a @ b, None, [(2, 3, 4), (4, 5)]),
    "matmul_vec": (lambda a, b: a @ b, None, [(4,), (4,)]),
    "sum_mean_axes": (lambda a: a.sum(axis=(0, 2)) + a.mean(axis=1).sum(axis=-1)[:, None],
                      None, [(2, 3, 3)]),
    "max_axis": (lambda a: a.max(axis=1), lambda a: a.max(dim=1).values, [(3, 4, 5)]),
    "max_all": (lambda a: a.max(), lambda a: a.max(), [(3, 4)]),
    "exp_log_pow": (lambda a: (a.exp() + 1.0).log() ** 2 + (a * a + 1.0) ** 0.5, None,
                    [(3, 4)]),
    "reshape_transpose_getitem": (lambda a: a.reshape(4, 6).T[1:5:2, ::2] * 2.0,
                                  lambda a: a.reshape(4, 6).T[1:5:2, ::2] * 2.0, [(2, 3, 4)]),
    "flatten_permute": (lambda a: a.transpose(0, 2, 1, 3).flatten(1),
                        lambda a: a.permute(0, 2, 1, 3).flatten(1), [(2, 3, 2, 2)]),
    "fancy_index_repeats": (lambda a: a[[0, 2, 0]], None, [(3, 4)]),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", TENSOR_OPS, ids=list(TENSOR_OPS))
def test_tensor_op(name, dtype, rng):
    ours, theirs, shapes = TENSOR_OPS[name]
    compare(ours, theirs or ours, [rng.standard_normal(s) for s in shapes], dtype)


# ----- a whole LeNet-5 ----------------------------------------------------------------------


def lenet5(lib, classic: bool):
    """LeNet-5 for 1x28x28 input, built from either library's layers with the same names."""
    act = lib.Tanh if classic else lib.ReLU
    pool = lib.AvgPool2d if classic else lib.MaxPool2d
    return lib.Sequential(
        lib.Conv2d(1, 6, 5, padding=2), act(), pool(2),
        lib.Conv2d(6, 16, 5), act(), pool(2),
        lib.Flatten(),
        lib.Linear(16 * 5 * 5, 120), act(),
        lib.Linear(120, 84), act(),
        lib.Linear(84, 10),
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("classic", [True, False], ids=["tanh_avgpool", "relu_maxpool"])
def test_lenet5_loss_and_every_parameter_gradient(classic, dtype, rng, seeded):
    ours, theirs = lenet5(nn, classic), lenet5(torch.nn, classic)
    ours.to(dtype)
    theirs.to(torch.float64 if dtype == np.float64 else torch.float32)
    # Same parameter names on both sides; copy ours (seeded init) into torch.
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    x = rng.random((4, 1, 28, 28)).astype(dtype)
    y = rng.integers(0, 10, 4)

    loss = F.cross_entropy(ours(Tensor(x)), y)
    loss.backward()
    loss_t = TF.cross_entropy(theirs(torch.from_numpy(x)), torch.from_numpy(y))
    loss_t.backward()
    assert_close(loss.data, loss_t, dtype, "loss")
    named_t = dict(theirs.named_parameters())
    names = [n for n, _ in ours.named_parameters()]
    assert names == list(named_t)
    for name, p in ours.named_parameters():
        assert_close(p.grad, named_t[name].grad, dtype, f"gradient of {name}")
