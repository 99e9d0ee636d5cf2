"""cnnlab.cat and cnnlab.stack: values, gradients (finite differences and PyTorch), errors."""

from __future__ import annotations

import numpy as np
import pytest
from gradcheck import as_leaf, check_gradients, distinct_values
from torch_parity import DTYPES, compare, need_torch

import cnnlab
from cnnlab import Tensor

CAT_CASES = {
    # name: shapes, dim
    "dim0": ([(2, 3), (1, 3), (3, 3)], 0),
    "dim1_channels": ([(2, 3, 2, 2), (2, 1, 2, 2)], 1),
    "negative_dim": ([(2, 3, 1), (2, 3, 4)], -1),
    "single": ([(2, 2)], 0),
}
STACK_CASES = {
    "dim0": ([(2, 3)] * 3, 0),
    "dim1": ([(2, 3)] * 2, 1),
    "last": ([(2, 3)] * 2, 2),
    "negative": ([(4,)] * 3, -1),
    "negative_first": ([(2, 2)] * 2, -3),
}


@pytest.mark.parametrize("case", CAT_CASES, ids=list(CAT_CASES))
def test_cat_values_and_gradients(case, rng):
    shapes, dim = CAT_CASES[case]
    arrays = [distinct_values(s, rng) for s in shapes]
    np.testing.assert_array_equal(cnnlab.cat([Tensor(a) for a in arrays], dim).data,
                                  np.concatenate(arrays, axis=dim))
    leaves = [as_leaf(a) for a in arrays]
    check_gradients(lambda: cnnlab.cat(leaves, dim=dim), leaves)


@pytest.mark.parametrize("case", STACK_CASES, ids=list(STACK_CASES))
def test_stack_values_and_gradients(case, rng):
    shapes, dim = STACK_CASES[case]
    arrays = [distinct_values(s, rng) for s in shapes]
    np.testing.assert_array_equal(cnnlab.stack([Tensor(a) for a in arrays], dim).data,
                                  np.stack(arrays, axis=dim))
    leaves = [as_leaf(a) for a in arrays]
    check_gradients(lambda: cnnlab.stack(leaves, dim=dim), leaves)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", ["cat", "stack"])
def test_matches_torch(op, dtype, rng):
    torch = need_torch()
    shapes = [(2, 3, 4)] * 3 if op == "stack" else [(2, 3, 4), (2, 1, 4), (2, 2, 4)]
    dim = 1 if op == "cat" else -2
    compare(lambda *t: getattr(cnnlab, op)(list(t), dim=dim),
            lambda *t: getattr(torch, op)(list(t), dim=dim),
            [rng.standard_normal(s) for s in shapes], dtype)


def test_inputs_without_gradients_and_arrays(rng):
    a = Tensor(rng.standard_normal((2, 2)), requires_grad=True)
    b = rng.standard_normal((3, 2))  # a plain array: a constant
    out = cnnlab.cat([a, b])
    out.backward(np.arange(10.0).reshape(5, 2))
    np.testing.assert_array_equal(a.grad, [[0, 1], [2, 3]])
    assert not cnnlab.stack([np.zeros(2), np.ones(2)]).requires_grad
    # The same tensor twice: its gradients add up.
    c = Tensor(np.ones(3), requires_grad=True)
    cnnlab.stack([c, c * 2.0]).sum().backward()
    np.testing.assert_array_equal(c.grad, [3, 3, 3])


def test_float32_stays_float32_and_integers_join():
    out = cnnlab.cat([Tensor(np.zeros(2, np.float32)), Tensor(np.ones(1, np.float32))])
    assert out.dtype == np.float32
    assert cnnlab.stack([Tensor([1, 2]), Tensor([3, 4])]).data.tolist() == [[1, 2], [3, 4]]


@pytest.mark.parametrize("call, error, match", [
    (lambda: cnnlab.cat([]), ValueError, "cat expects a non-empty list of tensors"),
    (lambda: cnnlab.stack([]), ValueError, "stack expects a non-empty list of tensors"),
    (lambda: cnnlab.cat(Tensor(np.zeros(3))), TypeError,
     r"cat expects a list or tuple of tensors, got Tensor; wrap them: cat\(\[a, b\]\)"),
    (lambda: cnnlab.cat([np.zeros((2, 3)), np.zeros((2, 4))]), ValueError,
     r"cat: tensors must have the same shape except in dimension 0, got \(2, 3\) \(tensor 0\) "
     r"and \(2, 4\) \(tensor 1\)"),
    (lambda: cnnlab.cat([np.zeros((2, 3)), np.zeros(3)], dim=1), ValueError,
     "must have the same shape except in dimension 1"),
    (lambda: cnnlab.stack([np.zeros((2, 3)), np.zeros((3, 2))]), ValueError,
     r"stack: tensors must all have the same shape, got \(2, 3\) \(tensor 0\) and \(3, 2\) "
     r"\(tensor 1\)"),
    (lambda: cnnlab.cat([Tensor(np.zeros(2, np.float32)), Tensor(np.zeros(2))]), ValueError,
     "cat expects tensors of one dtype, got 0: float32, 1: float64"),
    (lambda: cnnlab.cat([np.zeros((2, 3))], dim=2), ValueError,
     r"cat: dim 2 is out of range for 2 dimensions \(expected -2 to 1\)"),
    (lambda: cnnlab.stack([np.zeros((2, 3))], dim=-4), ValueError,
     r"stack: dim -4 is out of range for 3 dimensions \(expected -3 to 2\)"),
    (lambda: cnnlab.cat([np.zeros(3)], dim=0.5), TypeError, "cat: dim must be an int"),
    (lambda: cnnlab.cat([Tensor(1.0)]), ValueError, "zero-dimensional tensors cannot be "
                                                    "concatenated; use stack"),
])
def test_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()
