"""F.interpolate and nn.Upsample: a per-pixel loop written from PyTorch's formulas, finite
differences, PyTorch itself (forward and gradients), layouts and errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from gradcheck import check_module, check_op, distinct_values
from torch_parity import DTYPES, channels_last, compare, need_torch

from cnnlab import Tensor, nn
from cnnlab.nn import functional as F


def naive_interpolate(x, out_hw, mode, align_corners=False, scales=(None, None)):
    """One output pixel at a time, each source position computed as PyTorch documents it."""
    n, c, h, w = x.shape
    out = np.zeros((n, c, *out_hw), dtype=x.dtype)
    ftype = np.float32 if mode.startswith("nearest") else x.dtype.type

    def scale(n_in, n_out, s):
        if mode == "bilinear" and align_corners:
            return ftype((n_in - 1) / (n_out - 1)) if n_out > 1 else ftype(0)
        return ftype(1.0 / s) if s else ftype(n_in) / ftype(n_out)

    def source(o, n_in, n_out, s):  # [(index, weight)]
        if n_in == n_out or (mode == "nearest" and n_out == 2 * n_in):
            return [(o * n_in // n_out, 1.0)]
        sc = scale(n_in, n_out, s)
        if mode == "nearest":
            return [(min(math.floor(ftype(o) * sc), n_in - 1), 1.0)]
        if mode == "nearest-exact":
            return [(min(math.floor((ftype(o) + ftype(0.5)) * sc), n_in - 1), 1.0)]
        src = sc * ftype(o) if align_corners else max(sc * (ftype(o) + ftype(0.5)) - ftype(0.5),
                                                      0)
        i0 = min(math.floor(src), n_in - 1)
        lam = min(max(src - i0, 0), 1)
        return [(i0, 1 - lam), (min(i0 + 1, n_in - 1), lam)]

    for i in range(out_hw[0]):
        for j in range(out_hw[1]):
            for r, wr in source(i, h, out_hw[0], scales[0]):
                for q, wq in source(j, w, out_hw[1], scales[1]):
                    out[:, :, i, j] += x[:, :, r, q] * x.dtype.type(wr * wq)
    return out


MODES = [("nearest", None), ("nearest-exact", None), ("bilinear", False), ("bilinear", True)]
MODE_IDS = ["nearest", "nearest-exact", "bilinear", "bilinear-corners"]
RESIZES = {
    "x2": dict(scale_factor=2),
    "x3_2": dict(scale_factor=(3, 2)),
    "x2.5": dict(scale_factor=2.5),
    "x2.1_doubles": dict(scale_factor=2.1),  # 5 -> 10: nearest takes o // 2
    "half": dict(scale_factor=0.5),
    "x0.7_x1.6": dict(scale_factor=(0.7, 1.6)),
    "x1.1_same_size": dict(scale_factor=1.1),  # 5 -> 5: copied, whatever the scale
    "recompute": dict(scale_factor=2.5, recompute_scale_factor=True),
    "size_7x3": dict(size=(7, 3)),
    "size_11x13": dict(size=(11, 13)),
    "size_1": dict(size=1),
}


def _expected(x, resize):
    h, w = x.shape[2:]
    if "size" in resize:
        size = resize["size"]
        return ((size, size) if isinstance(size, int) else size), (None, None)
    s = resize["scale_factor"]
    s = (s, s) if not isinstance(s, tuple) else s
    out = (math.floor(h * s[0]), math.floor(w * s[1]))
    return out, ((None, None) if resize.get("recompute_scale_factor") else s)


@pytest.mark.parametrize("resize", RESIZES, ids=list(RESIZES))
@pytest.mark.parametrize("mode, align", MODES, ids=MODE_IDS)
def test_forward_equals_naive_loop(mode, align, resize, rng):
    x = rng.standard_normal((2, 3, 5, 6))
    out_hw, scales = _expected(x, RESIZES[resize])
    ours = F.interpolate(Tensor(x), mode=mode, align_corners=align, **RESIZES[resize]).data
    np.testing.assert_allclose(ours, naive_interpolate(x, out_hw, mode, bool(align), scales),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("resize", ["x2", "x2.5", "half", "x0.7_x1.6", "size_7x3", "size_1"])
@pytest.mark.parametrize("mode, align", MODES, ids=MODE_IDS)
def test_gradients_against_finite_differences(mode, align, resize, rng):
    check_op(lambda t: F.interpolate(t, mode=mode, align_corners=align, **RESIZES[resize]),
             distinct_values((2, 2, 4, 5), rng))


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("resize", RESIZES, ids=list(RESIZES))
@pytest.mark.parametrize("mode, align", MODES, ids=MODE_IDS)
def test_matches_torch(mode, align, resize, dtype, layout, rng):
    torch = need_torch()
    x = rng.standard_normal((2, 3, 5, 6))
    kw = RESIZES[resize]
    compare(lambda t: F.interpolate(t, mode=mode, align_corners=align, **kw),
            lambda t: torch.nn.functional.interpolate(t, mode=mode, align_corners=align, **kw),
            [x], dtype, layouts=[channels_last if layout == "channels_last" else (lambda a: a)])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode, align", MODES, ids=MODE_IDS)
def test_matches_torch_on_larger_maps(mode, align, dtype, rng):
    torch = need_torch()
    x = rng.standard_normal((2, 4, 17, 32))
    for kw in (dict(scale_factor=2), dict(size=(40, 24)), dict(scale_factor=(1.75, 0.6))):
        compare(lambda t, kw=kw: F.interpolate(t, mode=mode, align_corners=align, **kw),
                lambda t, kw=kw: torch.nn.functional.interpolate(t, mode=mode,
                                                                 align_corners=align, **kw),
                [x], dtype)


def test_channels_last_stays_channels_last(rng):
    x = channels_last(rng.standard_normal((2, 3, 4, 4)).astype(np.float32))
    t = Tensor(x, requires_grad=True)
    out = F.interpolate(t, scale_factor=2, mode="bilinear")
    assert out.data.transpose(0, 2, 3, 1).flags.c_contiguous
    np.testing.assert_allclose(out.data, F.interpolate(Tensor(np.ascontiguousarray(x)),
                                                       scale_factor=2, mode="bilinear").data)
    out.backward(np.ones(out.shape, np.float32))
    assert t.grad.dtype == np.float32 and t.grad.shape == x.shape
    # Every input pixel's weights sum to the number of outputs it feeds: 4 at scale 2.
    np.testing.assert_allclose(t.grad, 4.0)


def test_nearest_upsampling_repeats_pixels():
    x = np.arange(4, dtype=np.float32).reshape(1, 1, 2, 2)
    out = F.interpolate(Tensor(x), scale_factor=2).data[0, 0]
    np.testing.assert_array_equal(out, [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]])


UPSAMPLERS = {
    "nearest_x2": (lambda: nn.Upsample(scale_factor=2), (2, 2, 3, 3)),
    "bilinear_size": (lambda: nn.Upsample(size=(5, 4), mode="bilinear"), (1, 2, 3, 3)),
    "bilinear_corners": (lambda: nn.Upsample(scale_factor=2, mode="bilinear",
                                             align_corners=True), (1, 2, 3, 2)),
    "UpsamplingNearest2d": (lambda: nn.UpsamplingNearest2d(scale_factor=3), (1, 2, 2, 2)),
    "UpsamplingBilinear2d": (lambda: nn.UpsamplingBilinear2d(size=4), (1, 2, 3, 2)),
}


@pytest.mark.parametrize("name", UPSAMPLERS, ids=list(UPSAMPLERS))
def test_layers_gradients(name, rng):
    factory, shape = UPSAMPLERS[name]
    check_module(factory(), distinct_values(shape, rng))


@pytest.mark.parametrize("name", UPSAMPLERS, ids=list(UPSAMPLERS))
def test_layers_match_torch(name, rng):
    torch = need_torch()
    factory, shape = UPSAMPLERS[name]
    layer = factory()
    theirs = getattr(torch.nn, type(layer).__name__)(
        **{k: getattr(layer, k) for k in ("size", "scale_factor")},
        **({"mode": layer.mode, "align_corners": layer.align_corners}
           if type(layer) is nn.Upsample else {}))
    compare(layer, theirs, [rng.standard_normal(shape)], np.float64)


def test_layer_repr():
    assert repr(nn.Upsample(scale_factor=2, mode="bilinear")) == \
        "Upsample(scale_factor=2, mode='bilinear')"
    assert repr(nn.UpsamplingBilinear2d(size=(4, 5))) == \
        "UpsamplingBilinear2d(size=(4, 5), mode='bilinear', align_corners=True)"


@pytest.mark.parametrize("kwargs, match", [
    (dict(scale_factor=2, mode="bicubic"), "mode must be one of 'nearest', 'nearest-exact', "
                                           "'bilinear', got 'bicubic'"),
    (dict(scale_factor=2, align_corners=True), "align_corners can only be set with "
                                               "mode='bilinear', got mode='nearest'"),
    (dict(), "give exactly one of size and scale_factor, got neither"),
    (dict(size=4, scale_factor=2), "give exactly one of size and scale_factor, got both"),
    (dict(scale_factor=0.1), r"input and output sizes must be positive, got input of shape "
                             r"\(1, 2, 5, 6\) and output size \(0, 0\)"),
    (dict(scale_factor=-2), "scale_factor must be positive, got -2"),
    (dict(size=(2, 3, 4)), r"size must be a number or a pair for a 4-D input"),
    (dict(scale_factor=2, antialias=True), "antialias=True is not supported"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        F.interpolate(Tensor(np.zeros((1, 2, 5, 6))), **kwargs)


def test_bad_input_and_layer_errors_name_the_layer():
    with pytest.raises(ValueError, match=r"interpolate expects a 4-D input \(N, C, H, W\), got "
                                         r"3-D input of shape \(2, 5, 6\)"):
        F.interpolate(Tensor(np.zeros((2, 5, 6))), scale_factor=2)
    with pytest.raises(ValueError, match=r"Upsample\(scale_factor=0.1, mode='nearest'\): "
                                         r"interpolate: input and output sizes"):
        nn.Upsample(scale_factor=0.1)(Tensor(np.zeros((1, 1, 4, 4))))
    with pytest.raises(ValueError, match="Upsample: give exactly one of size and scale_factor"):
        nn.Upsample()
