"""Batch normalization per channel (over N, H, W), as BatchNorm2d does it."""

from __future__ import annotations

import numpy as np

from cnnlab.autograd import Function
from cnnlab.ops.checks import check_float_input
from cnnlab.tensor import Tensor


def _rows(x: np.ndarray) -> np.ndarray:
    """(N, C) or (N, C, H, W) as an (M, C) matrix, channels last (free on NHWC memory)."""
    xc = np.moveaxis(x, 1, -1)
    return np.ascontiguousarray(xc).reshape(-1, x.shape[1])


def _unrows(m: np.ndarray, like: np.ndarray) -> np.ndarray:
    """The inverse of :func:`_rows`: an (M, C) matrix back to ``like``'s NC... shape."""
    return np.moveaxis(m.reshape(np.moveaxis(like, 1, -1).shape), -1, 1)


def _column_sums(m: np.ndarray) -> np.ndarray:
    # A GEMV reads the matrix once; NumPy's sum over the leading axis is several times slower.
    return np.ones(len(m), dtype=m.dtype) @ m


def batch_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-channel mean and (biased) variance of x, two-pass for accuracy; also returns the
    centred (M, C) matrix ``x - mean``, which the forward pass goes on with."""
    rows = _rows(x)
    mean = _column_sums(rows) / len(rows)
    centred = rows - mean
    return mean, _column_sums(np.square(centred)) / len(rows), centred


class BatchNorm(Function):
    # Few passes over the (M, C) matrix: column sums as GEMVs, per-channel factors folded.
    def forward(self, x, weight, bias, *, mean, var, eps, training, centred=None):
        inv_std = (1.0 / np.sqrt(var + eps)).astype(x.dtype)
        if centred is None:
            centred = _rows(x) - mean.astype(x.dtype, copy=False)
        self.xhat = np.multiply(centred, inv_std, out=centred)
        self.inv_std, self.weight, self.training = inv_std, weight, training
        out = np.multiply(self.xhat, weight)
        out += bias
        return _unrows(out, x)

    def backward(self, grad):
        g = _rows(grad)
        m = len(g)
        dbias = _column_sums(g)
        dweight = _column_sums(g * self.xhat)
        dx = None
        if self.needs_grad[0]:
            scale = self.weight * self.inv_std
            dx = np.multiply(g, scale)
            if self.training:  # the batch statistics depend on x too
                dx -= self.xhat * (scale * dweight / m)
                dx -= scale * dbias / m
            dx = _unrows(dx, grad)
        return dx, dweight, dbias


def batch_norm(input: Tensor, running_mean: np.ndarray | None, running_var: np.ndarray | None,
               weight: Tensor, bias: Tensor, training: bool = False, momentum: float = 0.1,
               eps: float = 1e-5) -> Tensor:
    """Normalize each channel to zero mean and unit variance, then scale and shift.

    In training the batch's statistics are used (over N, H, W for each channel) and the
    running estimates are updated in place (``running = (1-momentum)*running +
    momentum*batch``, unbiased variance, as PyTorch); in evaluation the running estimates are
    used.

    Shape:
        input (N, C) or (N, C, H, W); weight, bias, running_mean, running_var (C,).

    Raises:
        ValueError: if the channel count differs from ``weight``'s, or a training batch has a
            single value per channel.
    """
    if weight is not None:
        check_float_input("batch_norm", input, weight)
    if input.ndim < 2 or input.shape[1] != weight.shape[0]:
        raise ValueError(f"batch_norm expected input with {weight.shape[0]} channels in "
                         f"dimension 1, got input of shape {input.shape}")
    per_channel = input.data.size // input.shape[1]
    if training and per_channel < 2:
        raise ValueError(f"batch_norm needs more than one value per channel in training, got "
                         f"input of shape {input.shape}; use a larger batch or eval()")
    if training or running_mean is None:
        mean, var, centred = batch_stats(input.data)
        if running_mean is not None and running_var is not None:
            unbiased = var * (per_channel / (per_channel - 1))
            running_mean *= 1 - momentum
            running_mean += momentum * mean.astype(running_mean.dtype)
            running_var *= 1 - momentum
            running_var += momentum * unbiased.astype(running_var.dtype)
        return BatchNorm.apply(input, weight, bias, mean=mean, var=var, eps=eps, training=True,
                               centred=centred)
    return BatchNorm.apply(input, weight, bias, mean=running_mean, var=running_var, eps=eps,
                           training=False)
