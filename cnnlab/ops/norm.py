"""Batch normalization per channel (over N, H, W), as BatchNorm2d does it."""

from __future__ import annotations

import numpy as np

from cnnlab.tensor import Function, Tensor


def _channels_last(x: np.ndarray) -> np.ndarray:
    return np.moveaxis(x, 1, -1)


class BatchNorm(Function):
    def forward(self, x, weight, bias, *, mean, var, eps, training):
        xc = _channels_last(x)  # a view; free on channels-last memory
        self.inv_std = (1.0 / np.sqrt(var + eps)).astype(x.dtype)
        self.xhat = (xc - mean) * self.inv_std
        self.weight, self.training = weight, training
        return np.moveaxis(self.xhat * weight + bias, -1, 1)

    def backward(self, grad):
        g = _channels_last(grad)
        axes = tuple(range(g.ndim - 1))
        dbias = g.sum(axis=axes)
        dweight = (g * self.xhat).sum(axis=axes)
        dx = None
        if self.needs_grad[0]:
            dxhat = g * self.weight
            if self.training:
                m = g.size // g.shape[-1]
                dxhat = dxhat - dxhat.mean(axis=axes) - self.xhat * (
                    (dxhat * self.xhat).sum(axis=axes) / m)
            dx = np.moveaxis(dxhat * self.inv_std, -1, 1)
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
    if input.ndim < 2 or input.shape[1] != weight.shape[0]:
        raise ValueError(f"batch_norm expected input with {weight.shape[0]} channels in "
                         f"dimension 1, got input of shape {input.shape}")
    per_channel = input.size // input.shape[1]
    if training and per_channel < 2:
        raise ValueError(f"batch_norm needs more than one value per channel in training, got "
                         f"input of shape {input.shape}; use a larger batch or eval()")
    if training or running_mean is None:
        xc = _channels_last(input.data)
        axes = tuple(range(xc.ndim - 1))
        mean, var = xc.mean(axis=axes), xc.var(axis=axes)
        if running_mean is not None and running_var is not None:
            unbiased = var * (per_channel / (per_channel - 1))
            running_mean *= 1 - momentum
            running_mean += momentum * mean.astype(running_mean.dtype)
            running_var *= 1 - momentum
            running_var += momentum * unbiased.astype(running_var.dtype)
        return BatchNorm.apply(input, weight, bias, mean=mean, var=var, eps=eps, training=True)
    return BatchNorm.apply(input, weight, bias, mean=running_mean, var=running_var, eps=eps,
                           training=False)
