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


class SyncBatchNorm(BatchNorm):
    # Forward is BatchNorm's, given statistics of the whole batch over every rank. Backward
    # needs two sums over that whole batch too (of the gradient, and of the gradient times
    # the normalized input); the parameters' gradients stay this rank's own sums, which the
    # data-parallel wrapper then averages like every other gradient.
    def forward(self, x, weight, bias, *, mean, var, eps, centred, group, count):
        self.group, self.count = group, count
        return super().forward(x, weight, bias, mean=mean, var=var, eps=eps, training=True,
                               centred=centred)

    def backward(self, grad):
        g = _rows(grad)
        dbias = _column_sums(g)
        dweight = _column_sums(g * self.xhat)
        dx = None
        if self.needs_grad[0]:
            both = self.group.all_reduce(np.concatenate([dbias, dweight]))
            total_dbias, total_dweight = np.split(both, 2)
            scale = self.weight * self.inv_std
            dx = np.multiply(g, scale)
            dx -= self.xhat * (scale * total_dweight / self.count)
            dx -= scale * total_dbias / self.count
            dx = _unrows(dx, grad)
        return dx, dweight, dbias


def combine_stats(stats: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Merge per-part statistics into those of the whole (Chan, Golub and LeVeque's pairwise
    formula, stable where "mean of squares minus square of mean" cancels).

    Args:
        stats: One row per part, ``[count, mean (C values), M2 (C values)]``, where M2 is
            the sum of squared deviations from the part's own mean.

    Returns:
        ``(count, mean, biased variance)`` of the parts taken together (float64).

    Example:
        >>> import numpy as np
        >>> a, b = np.array([1.0, 2.0]), np.array([4.0, 6.0, 8.0])
        >>> rows = np.array([[len(p), p.mean(), ((p - p.mean()) ** 2).sum()] for p in (a, b)])
        >>> n, mean, var = combine_stats(rows)
        >>> n, mean.item(), bool(np.isclose(var.item(), np.concatenate([a, b]).var()))
        (5.0, 4.2, True)
    """
    stats = np.asarray(stats, dtype=np.float64)
    channels = (stats.shape[1] - 1) // 2
    counts = stats[:, :1]
    means, m2 = stats[:, 1 : 1 + channels], stats[:, 1 + channels :]
    n = float(counts.sum())
    mean = (counts * means).sum(axis=0) / n
    spread = m2.sum(axis=0) + (counts * np.square(means - mean)).sum(axis=0)
    return n, mean, spread / n


def sync_batch_norm(input: Tensor, running_mean: np.ndarray | None,
                    running_var: np.ndarray | None, weight: Tensor, bias: Tensor,
                    training: bool, momentum: float, eps: float, group) -> Tensor:
    """Batch normalization whose training statistics are those of the batches of every rank
    of ``group`` taken together, as if they were one batch.

    Each rank sends its count, per-channel mean and sum of squared deviations (one
    ``all_gather``), and all merge them the same way (:func:`combine_stats`); backward sums
    two per-channel vectors over the ranks (one ``all_reduce``). In evaluation, or in a group
    of one, this is :func:`batch_norm`.

    Args:
        group: The ranks: an object with ``size``, ``all_gather(array) -> (size, *shape)``
            and ``all_reduce(array) -> sum`` (``cnnlab.distributed.WORLD``); every rank of
            it must make the same calls in the same order.

    Shape:
        As :func:`batch_norm`; ranks may hold batches of different sizes.

    Raises:
        ValueError: as :func:`batch_norm`, counting the values per channel over all ranks.
    """
    if not training or group.size == 1:
        return batch_norm(input, running_mean, running_var, weight, bias, training, momentum,
                          eps)
    x = input.data
    if x.ndim < 2 or x.shape[1] != weight.shape[0]:
        raise ValueError(f"sync_batch_norm expected input with {weight.shape[0]} channels in "
                         f"dimension 1, got input of shape {input.shape}")
    local = x.size // x.shape[1]
    if local:
        mean_here, var_here, centred = batch_stats(x)
    else:  # no images on this rank: it adds nothing to the statistics
        mean_here = var_here = np.zeros(x.shape[1], dtype=x.dtype)
        centred = _rows(x)
    mine = np.concatenate([[local], mean_here, var_here * local]).astype(np.float64)
    count, mean, var = combine_stats(group.all_gather(mine))
    if count < 2:
        raise ValueError(f"sync_batch_norm needs more than one value per channel over all "
                         f"ranks in training, got {int(count)}; use a larger batch or eval()")
    if running_mean is not None and running_var is not None:
        running_mean *= 1 - momentum
        running_mean += momentum * mean.astype(running_mean.dtype)
        running_var *= 1 - momentum
        running_var += momentum * (var * (count / (count - 1))).astype(running_var.dtype)
    centred += (mean_here - mean).astype(x.dtype)  # from this rank's mean to the global one
    return SyncBatchNorm.apply(input, weight, bias, mean=mean.astype(x.dtype),
                               var=var.astype(x.dtype), eps=eps, centred=centred, group=group,
                               count=count)
