"""Elementary ops behind Tensor's operators: arithmetic, reshaping, reductions."""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnlab.autograd import Function


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


class Extreme(Function):
    """max or min over some axes (or all); ties share the gradient equally, so the total
    stays that of one extreme element."""

    def forward(self, a, *, fn, axis, keepdims):
        self.a, self.axis, self.keepdims = a, axis, keepdims
        reduce = np.max if fn == "max" else np.min
        if a.size == 0:
            raise ValueError(f"{fn}() of an empty tensor (shape {a.shape}) has no value")
        self.out = np.asarray(reduce(a, axis=axis, keepdims=True))
        return self.out if keepdims else np.asarray(reduce(a, axis=axis))

    def backward(self, grad):
        if self.axis is not None and not self.keepdims:
            grad = np.expand_dims(grad, tuple(np.atleast_1d(self.axis)))
        elif self.axis is None:
            grad = np.reshape(grad, (1,) * self.a.ndim)
        mask = self.a == self.out
        return (mask * (grad / mask.sum(axis=self.axis, keepdims=True))).astype(self.a.dtype)


class TakeAlong(Function):
    """Elements picked along one dimension by an index array (gather, max/min with dim,
    topk); the gradient goes back to the picked positions, added where one repeats."""

    def forward(self, a, *, indices, dim):
        self.shape, self.indices, self.dim = a.shape, indices, dim
        return np.take_along_axis(a, indices, axis=dim)

    def backward(self, grad):
        out = np.zeros(self.shape, dtype=grad.dtype)
        if self.indices.shape[self.dim] == 1:  # one pick per line (max, min): no repeats
            np.put_along_axis(out, self.indices, grad, axis=self.dim)
            return out
        # Repeats are possible: add each pick in turn (a loop over the picked dimension).
        for j in range(self.indices.shape[self.dim]):
            sel = [slice(None)] * grad.ndim
            sel[self.dim] = slice(j, j + 1)
            idx, g = self.indices[tuple(sel)], grad[tuple(sel)]
            np.put_along_axis(out, idx, np.take_along_axis(out, idx, axis=self.dim) + g,
                              axis=self.dim)
        return out


class Maximum(Function):
    """Elementwise maximum of two tensors (ties: the gradient is split evenly)."""

    pick = staticmethod(np.greater)

    def forward(self, a, b):
        self.a, self.b = a, b
        return np.maximum(a, b) if self.pick is np.greater else np.minimum(a, b)

    def backward(self, grad):
        first = self.pick(self.a, self.b) + 0.5 * (self.a == self.b)
        first = first.astype(grad.dtype)
        ga = unbroadcast(grad * first, self.a) if self.needs_grad[0] else None
        gb = unbroadcast(grad * (1 - first), self.b) if self.needs_grad[1] else None
        return ga, gb


class Minimum(Maximum):
    pick = staticmethod(np.less)


class Abs(Function):
    def forward(self, a):
        self.sign = np.sign(a)
        return np.abs(a)

    def backward(self, grad):
        return grad * self.sign


class Clamp(Function):
    def forward(self, a, *, low, high):
        self.inside = np.ones(a.shape, dtype=bool)
        if low is not None:
            self.inside &= a >= low
        if high is not None:
            self.inside &= a <= high
        return np.clip(a, low, high).astype(a.dtype, copy=False)

    def backward(self, grad):
        return grad * self.inside


class Clone(Function):
    def forward(self, a):
        return a.copy()

    def backward(self, grad):
        return grad


class Cast(Function):
    """A change of dtype; the gradient goes back in the input's dtype."""

    def forward(self, a, *, dtype):
        self.dtype = a.dtype
        return a.astype(dtype)

    def backward(self, grad):
        return grad.astype(self.dtype)


class Expand(Function):
    def forward(self, a, *, shape):
        self.a_shape = a.shape
        try:
            return np.broadcast_to(a, shape)
        except ValueError:
            raise ValueError(f"expand: a tensor of shape {a.shape} cannot be expanded to "
                             f"{shape}; only dimensions of size 1 can grow") from None

    def backward(self, grad):
        return unbroadcast(grad, self.a_shape)


class Repeat(Function):
    def forward(self, a, *, reps):
        if len(reps) < a.ndim:
            raise ValueError(f"repeat needs at least {a.ndim} sizes for a tensor of shape "
                             f"{a.shape}, got {reps}")
        self.orig_shape = a.shape
        self.a_shape = (1,) * (len(reps) - a.ndim) + a.shape
        self.reps = reps
        return np.tile(a, reps)

    def backward(self, grad):
        split = []
        for r, n in zip(self.reps, self.a_shape, strict=True):
            split += [r, n]
        g = grad.reshape(split).sum(axis=tuple(range(0, len(split), 2)))
        return g.reshape(self.orig_shape)


class Where(Function):
    """``a`` where ``condition`` holds, ``b`` elsewhere; each gets the gradient of the
    elements it gave."""

    def forward(self, a, b, *, condition):
        self.a, self.b, self.cond = a, b, condition
        return np.where(condition, a, b)

    def backward(self, grad):
        zero = grad.dtype.type(0)
        ga = unbroadcast(np.where(self.cond, grad, zero), self.a) if self.needs_grad[0] else None
        gb = unbroadcast(np.where(self.cond, zero, grad), self.b) if self.needs_grad[1] else None
        return ga, gb
