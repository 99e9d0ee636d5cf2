"""Elementwise activations and (log-)softmax."""

from __future__ import annotations

import numpy as np

from cnnlab.autograd import Function
from cnnlab.kernels import parallel, pointwise
from cnnlab.kernels.parallel import over_batch
from cnnlab.tensor import Tensor


class ReLU(Function):
    # Large maps are split over the batch: one memory-bound pass per thread.
    def forward(self, x):
        zero = x.dtype.type(0)
        if x.ndim == 0:
            self.mask = x > zero
            return x * self.mask
        if not self.needs_grad[0]:  # inference: one pass, no mask to keep
            if parallel.workers(x.size) == 1:  # no split: skip over_batch's bookkeeping
                return pointwise.relu(x)
            out = np.empty_like(x)
            over_batch(lambda a, z: pointwise.relu(x[a:z], out[a:z]), len(x), x.size)
            return out
        out = np.empty_like(x)  # same memory layout as x (channels-last stays so)
        self.mask = np.empty_like(x, dtype=bool)

        def chunk(a: int, z: int) -> None:
            np.greater(x[a:z], zero, out=self.mask[a:z])
            pointwise.relu(x[a:z], out[a:z])

        over_batch(chunk, len(x), x.size)
        return out

    def backward(self, grad):
        if grad.ndim == 0:
            return grad * self.mask
        out = np.empty_like(grad)
        over_batch(lambda a, z: np.multiply(grad[a:z], self.mask[a:z], out=out[a:z]),
                   len(grad), grad.size)
        return out


def relu_mask_grad(grad: np.ndarray, out: np.ndarray) -> np.ndarray:
    """The gradient through a ReLU whose output was ``out``: ``grad`` where ``out > 0``."""
    res = np.empty_like(grad)

    def chunk(a: int, z: int) -> None:
        np.multiply(grad[a:z], out[a:z] > 0, out=res[a:z])

    over_batch(chunk, len(grad), grad.size)
    return res


class LeakyReLU(Function):
    def forward(self, x, *, negative_slope):
        self.scale = np.where(x > 0, x.dtype.type(1), x.dtype.type(negative_slope))
        return x * self.scale

    def backward(self, grad):
        return grad * self.scale


class Sigmoid(Function):
    def forward(self, x):
        # exp of a negative number only: no overflow for large |x|.
        e = np.exp(-np.abs(x))
        self.out = np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)
        return self.out

    def backward(self, grad):
        return grad * self.out * (1 - self.out)


class Tanh(Function):
    def forward(self, x):
        self.out = np.tanh(x)
        return self.out

    def backward(self, grad):
        return grad * (1 - self.out * self.out)


class Softmax(Function):
    def forward(self, x, *, dim):
        e = np.exp(x - x.max(axis=dim, keepdims=True))
        self.out, self.dim = e / e.sum(axis=dim, keepdims=True), dim
        return self.out

    def backward(self, grad):
        s = self.out
        return s * (grad - (grad * s).sum(axis=self.dim, keepdims=True))


class LogSoftmax(Function):
    def forward(self, x, *, dim):
        shifted = x - x.max(axis=dim, keepdims=True)
        self.out = shifted - np.log(np.exp(shifted).sum(axis=dim, keepdims=True))
        self.dim = dim
        return self.out

    def backward(self, grad):
        return grad - np.exp(self.out) * grad.sum(axis=self.dim, keepdims=True)


def relu(input: Tensor) -> Tensor:
    """``max(x, 0)`` elementwise (gradient 0 at 0, as in PyTorch)."""
    return ReLU.apply(input)


def leaky_relu(input: Tensor, negative_slope: float = 0.01) -> Tensor:
    """``x`` where positive, ``negative_slope * x`` elsewhere."""
    return LeakyReLU.apply(input, negative_slope=negative_slope)


def sigmoid(input: Tensor) -> Tensor:
    """``1 / (1 + exp(-x))``, computed without overflow."""
    return Sigmoid.apply(input)


def tanh(input: Tensor) -> Tensor:
    """Hyperbolic tangent."""
    return Tanh.apply(input)


def softmax(input: Tensor, dim: int = -1) -> Tensor:
    """``exp(x) / sum(exp(x))`` along ``dim``, shifted by the maximum for stability."""
    return Softmax.apply(input, dim=dim)


def log_softmax(input: Tensor, dim: int = -1) -> Tensor:
    """``log(softmax(x))`` along ``dim``, computed stably (no log of 0)."""
    return LogSoftmax.apply(input, dim=dim)
