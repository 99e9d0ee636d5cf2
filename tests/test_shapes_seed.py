"""The shape arithmetic every CNN course starts with, and the one function that does it."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnlab import Tensor, nn
from cnnlab.nn import functional as F
from cnnlab.ops.reference import conv2d_naive
from cnnlab.shape import conv_output_size, is_exact


def test_32x32x3_through_six_then_ten_5x5_filters(seeded):
    x = Tensor(np.zeros((1, 3, 32, 32), np.float32))
    conv1, conv2 = nn.Conv2d(3, 6, 5), nn.Conv2d(6, 10, 5)
    assert conv1.weight.shape == (6, 3, 5, 5)  # six 5x5x3 filters
    assert conv2.weight.shape == (10, 6, 5, 5)  # ten 5x5x6 filters
    h = conv1(x)
    assert h.shape == (1, 6, 28, 28)
    assert conv2(h).shape == (1, 10, 24, 24)


@pytest.mark.parametrize("stride, padding, expected", [(1, 0, 5), (2, 0, 3), (1, 1, 7)])
def test_7x7_input_with_3x3_filter(stride, padding, expected):
    assert conv_output_size(7, 3, stride=stride, padding=padding) == expected
    out = F.conv2d(Tensor(np.zeros((1, 1, 7, 7))), Tensor(np.zeros((1, 1, 3, 3))),
                   stride=stride, padding=padding)
    assert out.shape == (1, 1, expected, expected)


def test_7x7_with_3x3_at_stride_3_does_not_fit_exactly():
    # (7 - 3)/3 + 1 is not an integer: the last column is dropped (floor), and is_exact says so.
    assert conv_output_size(7, 3, stride=3) == 2
    assert not is_exact(7, 3, stride=3)
    assert is_exact(7, 3, stride=2) and is_exact(32, 5)


def test_ten_5x5x3_filters_have_760_parameters(seeded):
    conv = nn.Conv2d(3, 10, 5)
    assert conv.weight.numel() == 750 and conv.bias.numel() == 10
    assert sum(p.numel() for p in conv.parameters()) == 760
    assert sum(p.numel() for p in nn.Conv2d(3, 10, 5, bias=False).parameters()) == 750


def test_parameter_count_with_groups(seeded):
    conv = nn.Conv2d(4, 8, 3, groups=2)  # each filter is 3x3x2
    assert conv.weight.shape == (8, 2, 3, 3)
    assert sum(p.numel() for p in conv.parameters()) == 8 * 2 * 9 + 8


def test_pooling_halves():
    x = Tensor(np.zeros((2, 6, 28, 28), np.float32))
    assert F.max_pool2d(x, 2).shape == (2, 6, 14, 14)
    assert F.avg_pool2d(x, 3, stride=2, padding=1).shape == (2, 6, 14, 14)
    assert F.adaptive_avg_pool2d(x, 1).shape == (2, 6, 1, 1)


def _by_definition(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """Count the window positions: start at 0 and step by the stride while the (dilated)
    window still ends inside the padded input."""
    span = dilation * (kernel - 1) + 1
    count, start = 0, 0
    while start + span <= size + 2 * padding:
        count += 1
        start += stride
    return count


sizes = dict(size=st.integers(1, 40), kernel=st.integers(1, 9), stride=st.integers(1, 5),
             padding=st.integers(0, 4), dilation=st.integers(1, 3))


@settings(max_examples=300, deadline=None, derandomize=True)
@given(**sizes)
def test_conv_output_size_matches_the_definition(size, kernel, stride, padding, dilation):
    expected = _by_definition(size, kernel, stride, padding, dilation)
    if expected == 0:
        with pytest.raises(ValueError, match="kernel spans"):
            conv_output_size(size, kernel, stride, padding, dilation)
        return
    got = conv_output_size(size, kernel, stride, padding, dilation)
    assert got == expected
    # The textbook formula, with dilation: floor((W + 2P - D(F-1) - 1)/S) + 1.
    assert got == math.floor((size + 2 * padding - dilation * (kernel - 1) - 1) / stride) + 1
    assert is_exact(size, kernel, stride, padding, dilation) == (
        (size + 2 * padding - dilation * (kernel - 1) - 1) % stride == 0)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(h=st.integers(1, 9), w=st.integers(1, 9), kh=st.integers(1, 4), kw=st.integers(1, 4),
       stride=st.integers(1, 3), padding=st.integers(0, 2), dilation=st.integers(1, 2))
def test_conv_output_size_matches_the_naive_reference(h, w, kh, kw, stride, padding, dilation):
    try:
        oh = conv_output_size(h, kh, stride, padding, dilation)
        ow = conv_output_size(w, kw, stride, padding, dilation)
    except ValueError:
        return  # an empty output: refused by both (checked in test_errors)
    x, wt = np.ones((1, 1, h, w)), np.ones((1, 1, kh, kw))
    naive = conv2d_naive(x, wt, stride=stride, padding=padding, dilation=dilation)
    fast = F.conv2d(Tensor(x), Tensor(wt), stride=stride, padding=padding, dilation=dilation)
    assert naive.shape == fast.shape == (1, 1, oh, ow)
