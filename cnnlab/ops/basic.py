"""Elementary ops behind Tensor's operators: arithmetic, reshaping, reductions."""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnlab.tensor import Function


def unbroadcast(grad: np.ndarray, like: np.ndarray | tuple[int, ...]) -> np.ndarray:
    """Sum a broadcast gradient back to the shape of the input it came from.

    Given the input array itself (not just its shape), the gradient also takes the input's
    dtype: float32 + float64 computes in float64, but each input's gradient keeps its own
    precision, as in PyTorch's type promotion.
    """
    shape = like if isinstance(like, tuple) else like.shape
    if not isinstance(like, tuple) and grad.dtype != like.dtype:
        grad = grad.astype(like.dtype)
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    if extra:
        grad = grad.sum(axis=tuple(range(extra)))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if axes:
        grad = grad.sum(axis=axes, keepdims=True)
    return grad.reshape(shape)


class Add(Function):
    def forward(self, a, b):
        self.a, self.b = a, b
        return a + b

    def backward(self, grad):
        return unbroadcast(grad, self.a), unbroadcast(grad, self.b)


class Sub(Function):
    def forward(self, a, b):
        self.a, self.b = a, b
        return a - b

    def backward(self, grad):
        gb = -unbroadcast(grad, self.b) if self.needs_grad[1] else None
        return unbroadcast(grad, self.a), gb


class Mul(Function):
    def forward(self, a, b):
        self.a, self.b = a, b
        return a * b

    def backward(self, grad):
        ga = unbroadcast(grad * self.b, self.a) if self.needs_grad[0] else None
        gb = unbroadcast(grad * self.a, self.b) if self.needs_grad[1] else None
        return ga, gb


class Div(Function):
    def forward(self, a, b):
        self.a, self.b = a, b
        return a / b

    def backward(self, grad):
        ga = unbroadcast(grad / self.b, self.a) if self.needs_grad[0] else None
        gb = (unbroadcast(-grad * self.a / (self.b * self.b), self.b)
              if self.needs_grad[1] else None)
        return ga, gb


class Neg(Function):
    def forward(self, a):
        return -a

    def backward(self, grad):
        return -grad


class Pow(Function):
    def forward(self, a, exponent: float):
        self.a, self.exponent = a, exponent
        return a ** a.dtype.type(exponent)

    def backward(self, grad):
        p = self.a.dtype.type(self.exponent)
        return grad * p * self.a ** (p - 1)


class Exp(Function):
    def forward(self, a):
        self.out = np.exp(a)
        return self.out

    def backward(self, grad):
        return grad * self.out


class Log(Function):
    def forward(self, a):
        self.a = a
        return np.log(a)

    def backward(self, grad):
        return grad / self.a


class MatMul(Function):
    def forward(self, a, b):
        if a.ndim < 1 or b.ndim < 1:
            raise ValueError("matmul needs tensors with at least one dimension")
        self.a, self.b = a, b
        return a @ b

    def backward(self, grad):
        a, b = self.a, self.b
        if a.ndim == 1 and b.ndim == 1:  # inner product: grad is a scalar
            ga = grad * b if self.needs_grad[0] else None
            gb = grad * a if self.needs_grad[1] else None
            return ga, gb
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        g = grad
        if a.ndim == 1:
            g = np.expand_dims(g, -2)
        if b.ndim == 1:
            g = np.expand_dims(g, -1)
        ga = gb = None
        if self.needs_grad[0]:
            ga = unbroadcast(g @ np.swapaxes(b2, -1, -2), a2.shape).reshape(a.shape).astype(
                a.dtype, copy=False)
        if self.needs_grad[1]:
            gb = unbroadcast(np.swapaxes(a2, -1, -2) @ g, b2.shape).reshape(b.shape).astype(
                b.dtype, copy=False)
        return ga, gb


class Reshape(Function):
    def forward(self, a, shape: tuple[int, ...]):
        self.shape = a.shape
        try:
            return a.reshape(shape)
        except ValueError:
            raise ValueError(
                f"cannot reshape a tensor of shape {a.shape} ({a.size} elements) into {shape}"
            ) from None

    def backward(self, grad):
        return grad.reshape(self.shape)


class Transpose(Function):
    def forward(self, a, axes: tuple[int, ...] | None):
        self.axes = axes
        return a.transpose(axes)

    def backward(self, grad):
        if self.axes is None:
            return grad.transpose()
        return grad.transpose(np.argsort(self.axes))


class GetItem(Function):
    def forward(self, a, index: Any):
        self.shape, self.dtype, self.index = a.shape, a.dtype, index
        return a[index]

    def backward(self, grad):
        out = np.zeros(self.shape, dtype=self.dtype)
        index = self.index if isinstance(self.index, tuple) else (self.index,)
        if all(i is None or i is Ellipsis or isinstance(i, (int, slice)) for i in index):
            out[self.index] = grad  # basic indexing never repeats an element
        else:
            np.add.at(out, self.index, grad)  # fancy indices may repeat: they must add up
        return out


class Sum(Function):
    def forward(self, a, axis: Any, keepdims: bool):
        self.shape, self.axis, self.keepdims = a.shape, axis, keepdims
        return np.asarray(a.sum(axis=axis, keepdims=keepdims))

    def backward(self, grad):
        if self.axis is not None and not self.keepdims:
            grad = np.expand_dims(grad, tuple(np.atleast_1d(self.axis)))
        return np.broadcast_to(grad, self.shape).copy()


class Max(Function):
    def forward(self, a, axis: Any, keepdims: bool):
        self.a, self.axis, self.keepdims = a, axis, keepdims
        self.out = np.asarray(a.max(axis=axis, keepdims=True))
        return self.out if keepdims else np.asarray(a.max(axis=axis, keepdims=False))

    def backward(self, grad):
        if self.axis is not None and not self.keepdims:
            grad = np.expand_dims(grad, tuple(np.atleast_1d(self.axis)))
        elif self.axis is None:
            grad = np.reshape(grad, (1,) * self.a.ndim)
        mask = self.a == self.out
        # Ties share the gradient equally, so the total stays that of one maximum.
        return (mask * (grad / mask.sum(axis=self.axis, keepdims=True))).astype(self.a.dtype)
