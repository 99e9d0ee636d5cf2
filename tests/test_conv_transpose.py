"""ConvTranspose2d / conv_transpose2d: finite differences, the naive loops, the adjoint
identity with conv2d, PyTorch (forward and gradients), the layer and its errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from gradcheck import check_module, check_op, distinct_values
from hypothesis import given, settings
from hypothesis import strategies as st
from torch_parity import DTYPES, assert_close, channels_last, compare, need_torch

import cnnlab
from cnnlab import Tensor, nn
from cnnlab.nn import functional as F
from cnnlab.ops.reference import conv_transpose2d_naive
from cnnlab.shape import conv_transpose_output_size

PROPERTY = settings(max_examples=30, deadline=None, derandomize=True)

CASES = {
    # name: (N, C_in, H, W), (C_out, KH, KW), stride, padding, output_padding, groups,
    #       dilation, bias
    "basic": ((1, 2, 3, 4), (3, 3, 3), 1, 0, 0, 1, 1, True),
    "k2_s2_upsample": ((2, 3, 3, 3), (2, 2, 2), 2, 0, 0, 1, 1, True),
    "k4_s2_p1": ((1, 2, 3, 3), (2, 4, 4), 2, 1, 0, 1, 1, True),
    "k3_s2_p1_op1": ((2, 2, 3, 2), (3, 3, 3), 2, 1, 1, 1, 1, True),
    "groups2": ((2, 4, 3, 3), (4, 3, 2), 2, 1, 1, 2, 1, True),
    "dilation2_op1_s1": ((1, 2, 3, 3), (2, 3, 3), 1, 1, 1, 1, 2, False),
    "nonsquare_all": ((2, 2, 3, 4), (3, 3, 2), (2, 3), (1, 0), (1, 2), 1, (1, 2), True),
    "stride3_gaps": ((1, 2, 3, 3), (2, 2, 2), 3, 0, 0, 1, 1, True),
    "stride1_full_conv_path": ((1, 8, 3, 3), (16, 3, 3), 1, 1, 0, 1, 1, True),
}


def _arrays(case, rng):
    (n, c, h, w), (co, kh, kw), stride, padding, op, groups, dilation, bias = CASES[case]
    x = distinct_values((n, c, h, w), rng)
    wt = rng.standard_normal((c, co // groups, kh, kw)) * 0.5
    b = rng.standard_normal(co) if bias else None
    return x, wt, b, dict(stride=stride, padding=padding, output_padding=op, groups=groups,
                          dilation=dilation)


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_gradients_against_finite_differences(case, rng):
    x, wt, b, opts = _arrays(case, rng)
    arrays, names = [x, wt] + ([b] if b is not None else []), ["x", "weight", "bias"]

    def op(*t):
        return F.conv_transpose2d(t[0], t[1], t[2] if b is not None else None, **opts)

    check_op(op, *arrays, names=names[:len(arrays)])


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_forward_equals_naive_loops(case, rng):
    x, wt, b, opts = _arrays(case, rng)
    ours = F.conv_transpose2d(Tensor(x), Tensor(wt), None if b is None else Tensor(b), **opts)
    ref = conv_transpose2d_naive(x, wt, b, **opts)
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours.data, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_is_the_adjoint_of_conv2d(case, rng):
    # <conv_transpose2d(x), y> = <x, conv2d(y)> for the same weights and geometry.
    x, wt, _, opts = _arrays(case, rng)
    op = opts.pop("output_padding")
    out = F.conv_transpose2d(Tensor(x), Tensor(wt), output_padding=op, **opts)
    y = rng.standard_normal(out.shape)
    back = F.conv2d(Tensor(y), Tensor(wt), **opts).data
    # An output padding of at least the stride (allowed by the dilation) makes room for
    # more windows than the input has positions; those are not part of the adjoint.
    back = back[:, :, :x.shape[2], :x.shape[3]]
    assert back.shape == x.shape
    assert np.sum(out.data * y) == pytest.approx(np.sum(x * back), rel=1e-12)


def test_channels_last_input_gives_the_same_values(rng):
    x, wt, b, opts = _arrays("k3_s2_p1_op1", rng)
    a = F.conv_transpose2d(Tensor(x), Tensor(wt), Tensor(b), **opts).data
    c = F.conv_transpose2d(Tensor(channels_last(x)), Tensor(wt), Tensor(b), **opts).data
    np.testing.assert_array_equal(a, c)


@st.composite
def configs(draw):
    groups = draw(st.integers(1, 2))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    oph = draw(st.integers(0, max(sh, dh) - 1))
    opw = draw(st.integers(0, max(sw, dw) - 1))
    h, w = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    # Padding that leaves a non-empty output.
    ph = draw(st.integers(0, max(0, min(2, ((h - 1) * sh + dh * (kh - 1) + oph) // 2))))
    pw = draw(st.integers(0, max(0, min(2, ((w - 1) * sw + dw * (kw - 1) + opw) // 2))))
    return dict(n=draw(st.integers(1, 3)), c=groups * draw(st.integers(1, 3)),
                co=groups * draw(st.integers(1, 3)), h=h, w=w, kernel=(kh, kw),
                opts=dict(stride=(sh, sw), padding=(ph, pw), output_padding=(oph, opw),
                          groups=groups, dilation=(dh, dw)),
                bias=draw(st.booleans()), cl=draw(st.booleans()))


@PROPERTY
@given(cfg=configs(), dtype=st.sampled_from(DTYPES), seed=st.integers(0, 2**31 - 1))
def test_matches_torch(cfg, dtype, seed):
    torch = need_torch()
    rng = np.random.default_rng(seed)
    g = cfg["opts"]["groups"]
    arrays = [rng.standard_normal((cfg["n"], cfg["c"], cfg["h"], cfg["w"])),
              rng.standard_normal((cfg["c"], cfg["co"] // g, *cfg["kernel"]))]
    if cfg["bias"]:
        arrays.append(rng.standard_normal(cfg["co"]))
    layouts = [channels_last if cfg["cl"] else (lambda a: a)] + [lambda a: a] * (
        len(arrays) - 1)
    opts = cfg["opts"]
    compare(lambda x, w, b=None: F.conv_transpose2d(x, w, b, **opts),
            lambda x, w, b=None: torch.nn.functional.conv_transpose2d(x, w, b, **opts),
            arrays, dtype, ["x", "weight", "bias"][:len(arrays)], seed, layouts)


@pytest.mark.parametrize("dtype", DTYPES)
def test_layer_matches_torch_layer_with_output_size(dtype, rng, seeded):
    torch = need_torch()
    ours = nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, groups=2).to(dtype)
    theirs = torch.nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, groups=2)
    theirs.to(torch.float64 if dtype == np.float64 else torch.float32)
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    x = rng.standard_normal((2, 4, 5, 5)).astype(dtype)
    for size in [(9, 9), (10, 10), (9, 10), [2, 6, 10, 9]]:
        out = ours(Tensor(x), output_size=size)
        ref = theirs(torch.from_numpy(x), output_size=size)
        assert_close(out.data, ref, dtype, f"output for output_size={size}")


def test_layer_parameters_and_pytorch_default_init(seeded):
    layer = nn.ConvTranspose2d(64, 32, 4, stride=2, padding=1)
    assert layer.weight.shape == (64, 32, 4, 4) and layer.bias.shape == (32,)
    assert layer.weight.dtype == np.float32
    bound = 1 / math.sqrt(32 * 4 * 4)  # fan-in of PyTorch's transposed weight layout
    w = layer.weight.data
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.95 * bound
    assert w.std() == pytest.approx(bound / math.sqrt(3), rel=0.05)  # uniform's deviation
    assert np.abs(layer.bias.data).max() <= bound
    assert [n for n, _ in layer.named_parameters()] == ["weight", "bias"]
    grouped = nn.ConvTranspose2d(4, 6, (3, 2), groups=2, bias=False)
    assert grouped.weight.shape == (4, 3, 3, 2) and grouped.bias is None
    assert repr(nn.ConvTranspose2d(8, 4, 3, stride=2, padding=1, output_padding=1)) == (
        "ConvTranspose2d(8, 4, kernel_size=(3, 3), stride=(2, 2), padding=(1, 1), "
        "output_padding=(1, 1))")


LAYERS = {
    "k2_s2": (lambda: nn.ConvTranspose2d(3, 2, 2, stride=2), (2, 3, 3, 3)),
    "k3_s2_p1_op1_groups": (lambda: nn.ConvTranspose2d(4, 2, 3, 2, 1, 1, groups=2),
                            (1, 4, 3, 3)),
    "dilated_no_bias": (lambda: nn.ConvTranspose2d(2, 3, 2, dilation=2, bias=False),
                        (2, 2, 3, 2)),
}


@pytest.mark.parametrize("name", LAYERS, ids=list(LAYERS))
def test_layer_gradients(name, rng, seeded):
    factory, shape = LAYERS[name]
    check_module(factory(), distinct_values(shape, rng))


def test_output_size_shape_formula():
    assert conv_transpose_output_size(16, 2, 2) == 32
    assert conv_transpose_output_size(16, 4, 2, 1) == 32
    assert conv_transpose_output_size(5, 3, 2, 1, 1) == 10
    assert conv_transpose_output_size(4, 3, 1, 0, 1, dilation=2) == 9
    for size, k, s, p, op, d in [(3, 2, 2, 0, 1, 1), (7, 3, 3, 2, 2, 2), (1, 1, 1, 0, 0, 1)]:
        out = conv_transpose_output_size(size, k, s, p, op, d)
        assert out == (size - 1) * s - 2 * p + d * (k - 1) + op + 1


# ----- errors -------------------------------------------------------------------------------


def test_output_padding_must_be_below_stride_or_dilation():
    with pytest.raises(ValueError, match=r"ConvTranspose2d: output_padding \(2, 2\) must be at "
                                         r"least 0 and smaller than either the stride \(2, 2\) "
                                         r"or the dilation \(1, 1\)"):
        nn.ConvTranspose2d(2, 2, 3, stride=2, output_padding=2)
    with pytest.raises(ValueError, match=r"conv_transpose2d cannot be applied to input of shape "
                                         r"\(1, 2, 4, 4\): output_padding must be at least 0 and "
                                         r"smaller than either the stride \(1\) or the "
                                         r"dilation \(1\), got 1"):
        F.conv_transpose2d(Tensor(np.zeros((1, 2, 4, 4))), Tensor(np.zeros((2, 2, 3, 3))),
                           output_padding=1)
    # Allowed by the dilation, as in PyTorch.
    assert nn.ConvTranspose2d(2, 2, 3, output_padding=1, dilation=2)(
        Tensor(np.zeros((1, 2, 4, 4), np.float32))).shape == (1, 2, 9, 9)


def test_channel_mismatch_names_the_layer():
    layer = nn.ConvTranspose2d(8, 4, 2, stride=2)
    with pytest.raises(ValueError, match=r"ConvTranspose2d\(8, 4, kernel_size=\(2, 2\), "
                                         r"stride=\(2, 2\)\): conv_transpose2d expected input "
                                         r"with 8 channels .* got 3 channels in input of shape "
                                         r"\(1, 3, 5, 5\)"):
        layer(Tensor(np.zeros((1, 3, 5, 5), np.float32)))
    with pytest.raises(ValueError, match=r"expects a 4-D input \(N, C_in, H, W\), got 3-D input "
                                         r"of shape \(8, 5, 5\); for a single image use "
                                         r"x.reshape\(1, 8, 5, 5\)"):
        layer(Tensor(np.zeros((8, 5, 5), np.float32)))


def test_other_bad_arguments():
    with pytest.raises(ValueError, match="the output would have length -1"):
        F.conv_transpose2d(Tensor(np.zeros((1, 1, 1, 1))), Tensor(np.zeros((1, 1, 1, 1))),
                           padding=1)
    with pytest.raises(ValueError, match="groups=3 must divide both in_channels=4"):
        nn.ConvTranspose2d(4, 6, 3, groups=3)
    with pytest.raises(ValueError, match="only padding_mode='zeros' is supported"):
        nn.ConvTranspose2d(2, 2, 3, padding_mode="reflect")
    with pytest.raises(ValueError, match=r"bias must have shape \(6,\) \(C_out\), got \(3,\)"):
        F.conv_transpose2d(Tensor(np.zeros((1, 4, 2, 2))), Tensor(np.zeros((4, 3, 2, 2))),
                           Tensor(np.zeros(3)), groups=2)
    with pytest.raises(ValueError, match=r"requested an output size of \(12, 12\), but for an "
                                         r"input of 5x5 the valid sizes range from \(9, 9\) to "
                                         r"\(10, 10\)"):
        nn.ConvTranspose2d(2, 2, 3, stride=2, padding=1)(
            Tensor(np.zeros((1, 2, 5, 5), np.float32)), output_size=(12, 12))


def test_mixed_dtypes_are_refused_naming_the_layer():
    with pytest.raises(TypeError, match=r"ConvTranspose2d\(2, 2, kernel_size=\(2, 2\)\): "
                                        r"conv_transpose2d: the input is float64 but the "
                                        r"weights are float32"):
        nn.ConvTranspose2d(2, 2, 2)(Tensor(np.zeros((1, 2, 3, 3))))


def test_float32_stays_float32_and_no_gradient_for_constants(rng):
    x = Tensor(rng.standard_normal((2, 3, 4, 4)).astype(np.float32), requires_grad=True)
    w = Tensor(rng.standard_normal((3, 2, 2, 2)).astype(np.float32))
    out = F.conv_transpose2d(x, w, stride=2)
    assert out.dtype == np.float32 and out.requires_grad
    out.sum().backward()
    assert x.grad.dtype == np.float32 and w.grad is None
    with cnnlab.no_grad():
        assert not F.conv_transpose2d(x, w, stride=2).requires_grad


@pytest.mark.parametrize("kernel, stride, dilation, extra", [
    ((2, 2), (2, 2), (1, 1), (0, 0)),  # taps tile the array: nothing filled
    ((4, 3), (2, 2), (1, 1), (1, 0)),  # overlapping taps, a trailing row
    ((2, 1), (3, 2), (1, 1), (0, 1)),  # gaps between the taps
    ((3, 3), (2, 1), (2, 1), (1, 0)),  # dilated rows: filled, then all added
    ((1, 1), (1, 1), (1, 1), (2, 2)),
])
def test_col2im_with_fill_equals_filling_then_adding(kernel, stride, dilation, extra, rng):
    from cnnlab.kernels.window import col2im_taps

    kh, kw = kernel
    n, oh, ow, c = 2, 3, 4, 5
    hp = stride[0] * (oh - 1) + dilation[0] * (kh - 1) + 1 + extra[0]
    wp = stride[1] * (ow - 1) + dilation[1] * (kw - 1) + 1 + extra[1]
    taps = rng.standard_normal((kh, kw, n, oh, ow, c))
    bias = rng.standard_normal(c)
    expected = col2im_taps(taps, stride, dilation, np.broadcast_to(bias, (n, hp, wp, c)).copy())
    out = np.full((n, hp, wp, c), np.nan)  # uninitialized: every position must be written
    col2im_taps(taps, stride, dilation, out, fill=bias)
    np.testing.assert_allclose(out, expected, rtol=1e-13, atol=1e-13)
    zero = col2im_taps(taps, stride, dilation, np.full((n, hp, wp, c), np.nan), fill=0.0)
    np.testing.assert_allclose(zero, expected - bias, rtol=1e-12, atol=1e-12)
