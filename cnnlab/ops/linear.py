"""linear: the fully-connected layer's op, ``y = x W^T + b``."""

from __future__ import annotations

import numpy as np

from cnnlab.autograd import Function
from cnnlab.ops.checks import check_float_input
from cnnlab.tensor import Tensor


class Linear(Function):
    def forward(self, x, w, b=None):
        self.x, self.w = x, w
        out = x @ w.T
        if b is not None:
            out += b
        return out

    def backward(self, grad):
        x, w = self.x, self.w
        g2 = grad.reshape(-1, grad.shape[-1])
        db = None
        dx = (grad @ w) if self.needs_grad[0] else None
        dw = (g2.T @ x.reshape(-1, x.shape[-1])) if self.needs_grad[1] else None
        if len(self.needs_grad) > 2 and self.needs_grad[2]:
            db = np.ones(g2.shape[0], dtype=grad.dtype) @ g2
        return (dx, dw, db)[:len(self.needs_grad)]


def linear(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """Fully-connected map ``input @ weight.T + bias``.

    Shape:
        input (N, *, in_features), weight (out_features, in_features), bias (out_features,)
        -> (N, *, out_features).

    Raises:
        ValueError: if the input's last dimension is not ``in_features``.
    """
    if input.ndim < 1 or input.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"linear expected input with {weight.shape[1]} features in its last dimension, "
            f"got input of shape {input.shape}; did you forget a Flatten before it, or does "
            f"the previous layer's output size differ?"
        )
    check_float_input("linear", input, weight)
    args = (input, weight) if bias is None else (input, weight, bias)
    return Linear.apply(*args)
