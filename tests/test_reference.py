"""The fast kernels against the textbook loops in cnnlab.ops.reference (a third oracle)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnlab import Tensor
from cnnlab.nn import functional as F
from cnnlab.ops.reference import avg_pool2d_naive, conv2d_naive, max_pool2d_naive

PROPERTY = settings(max_examples=80, deadline=None, derandomize=True)
TOL = {np.float32: dict(rtol=1e-5, atol=1e-5), np.float64: dict(rtol=1e-12, atol=1e-12)}


@st.composite
def conv_cases(draw):
    groups = draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    h = max(1, dh * (kh - 1) + 1 - 2 * ph) + draw(st.integers(0, 4))
    w = max(1, dw * (kw - 1) + 1 - 2 * pw) + draw(st.integers(0, 4))
    return dict(
        x_shape=(draw(st.integers(1, 2)), groups * draw(st.integers(1, 2)), h, w),
        f=groups * draw(st.integers(1, 2)), kernel=(kh, kw),
        stride=(draw(st.integers(1, 3)), draw(st.integers(1, 3))), padding=(ph, pw),
        dilation=(dh, dw), groups=groups, bias=draw(st.booleans()),
        dtype=draw(st.sampled_from([np.float32, np.float64])), seed=draw(st.integers(0, 2**31)))


@PROPERTY
@given(case=conv_cases())
def test_conv2d_equals_naive_loops(case):
    rng = np.random.default_rng(case["seed"])
    dtype, groups = case["dtype"], case["groups"]
    x = rng.standard_normal(case["x_shape"]).astype(dtype)
    w = rng.standard_normal((case["f"], case["x_shape"][1] // groups, *case["kernel"]))
    w = w.astype(dtype)
    b = rng.standard_normal(case["f"]).astype(dtype) if case["bias"] else None
    opts = dict(stride=case["stride"], padding=case["padding"], dilation=case["dilation"],
                groups=groups)
    fast = F.conv2d(Tensor(x), Tensor(w), None if b is None else Tensor(b), **opts).data
    naive = conv2d_naive(x, w, b, **opts)
    assert fast.dtype == naive.dtype == dtype
    np.testing.assert_allclose(fast, naive, **TOL[dtype])


@st.composite
def pool_cases(draw):
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    ph, pw = draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2))
    h = max(1, kh - 2 * ph) + draw(st.integers(0, 5))
    w = max(1, kw - 2 * pw) + draw(st.integers(0, 5))
    stride = draw(st.one_of(st.none(), st.integers(1, 3),
                            st.tuples(st.integers(1, 3), st.integers(1, 3))))
    return dict(shape=(draw(st.integers(1, 2)), draw(st.integers(1, 3)), h, w),
                kernel=(kh, kw), stride=stride, padding=(ph, pw),
                ties=draw(st.booleans()), seed=draw(st.integers(0, 2**31)))


def _pool_input(case) -> np.ndarray:
    rng = np.random.default_rng(case["seed"])
    if case["ties"]:  # few distinct values: many windows hold their maximum twice
        return rng.integers(-2, 3, case["shape"]).astype(np.float64)
    return rng.standard_normal(case["shape"])


@PROPERTY
@given(case=pool_cases())
def test_max_pool2d_equals_naive_loops(case):
    x = _pool_input(case)
    fast = F.max_pool2d(Tensor(x), case["kernel"], case["stride"], case["padding"]).data
    naive = max_pool2d_naive(x, case["kernel"], case["stride"], case["padding"])
    np.testing.assert_array_equal(fast, naive)  # a maximum is exact


@PROPERTY
@given(case=pool_cases())
def test_avg_pool2d_equals_naive_loops(case):
    x = _pool_input(case)
    fast = F.avg_pool2d(Tensor(x), case["kernel"], case["stride"], case["padding"]).data
    naive = avg_pool2d_naive(x, case["kernel"], case["stride"], case["padding"])
    np.testing.assert_allclose(fast, naive, rtol=1e-12, atol=1e-12)


def test_conv2d_hand_computed_example():
    # A 3x3 input, a 2x2 filter of ones, bias 1: each output is its window's sum plus 1.
    x = np.arange(9.0).reshape(1, 1, 3, 3)
    w = np.ones((1, 1, 2, 2))
    expected = np.array([[[[0 + 1 + 3 + 4, 1 + 2 + 4 + 5], [3 + 4 + 6 + 7, 4 + 5 + 7 + 8]]]]) + 1
    np.testing.assert_array_equal(conv2d_naive(x, w, np.ones(1)), expected)
    np.testing.assert_array_equal(F.conv2d(Tensor(x), Tensor(w), Tensor(np.ones(1))).data,
                                  expected)


def test_pool_hand_computed_example():
    x = np.array([[1.0, 2.0, 5.0, 0.0], [3.0, 4.0, 1.0, 1.0], [0.0, 0.0, 2.0, 2.0],
                  [0.0, 8.0, 2.0, 2.0]]).reshape(1, 1, 4, 4)
    np.testing.assert_array_equal(max_pool2d_naive(x, 2)[0, 0], [[4, 5], [8, 2]])
    np.testing.assert_array_equal(F.max_pool2d(Tensor(x), 2).data[0, 0], [[4, 5], [8, 2]])
    np.testing.assert_array_equal(avg_pool2d_naive(x, 2)[0, 0], [[2.5, 1.75], [2, 2]])
    np.testing.assert_array_equal(F.avg_pool2d(Tensor(x), 2).data[0, 0], [[2.5, 1.75], [2, 2]])
    # Padding counts as zeros for the average and never wins the maximum.
    neg = -np.ones((1, 1, 2, 2))
    np.testing.assert_array_equal(F.max_pool2d(Tensor(neg), 3, 1, 1).data, -np.ones((1, 1, 2, 2)))
    np.testing.assert_array_equal(F.avg_pool2d(Tensor(neg), 3, 1, 1).data,
                                  np.full((1, 1, 2, 2), -4 / 9))


@pytest.mark.parametrize("layout", ["nchw", "nhwc_memory"])
def test_conv2d_accepts_any_memory_layout(layout, rng):
    x = rng.standard_normal((2, 3, 6, 5))
    if layout == "nhwc_memory":
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    w = rng.standard_normal((4, 3, 3, 3))
    np.testing.assert_allclose(F.conv2d(Tensor(x), Tensor(w), padding=1).data,
                               conv2d_naive(x, w, padding=1), rtol=1e-12, atol=1e-12)
