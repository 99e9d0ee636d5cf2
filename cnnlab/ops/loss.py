"""Losses. Each checks its own result, so a NaN or Inf stops training where it appears."""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnlab.tensor import Function, Tensor


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite; continuing would only spread it into the weights."""


def _check_finite(value: np.ndarray, who: str) -> None:
    if not np.all(np.isfinite(value)):
        raise NonFiniteLossError(
            f"{who}: the loss is {value.ravel()[~np.isfinite(value.ravel())][0]} (expected a "
            f"finite number); the inputs or weights hold NaN/Inf or have diverged — lower the "
            f"learning rate, check the data for NaN, or restart from the last checkpoint"
        )


def _reduce(per_item: np.ndarray, reduction: str, who: str) -> np.ndarray:
    if reduction == "mean":
        return np.asarray(per_item.mean(), dtype=per_item.dtype)
    if reduction == "sum":
        return np.asarray(per_item.sum(), dtype=per_item.dtype)
    if reduction == "none":
        return per_item
    raise ValueError(f"{who}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


class CrossEntropy(Function):
    def forward(self, logits, *, target, reduction):
        n = logits.shape[0]
        # Inf logits give inf - inf here; stay quiet, _check_finite raises the clear error.
        with np.errstate(invalid="ignore", over="ignore"):
            shifted = logits - logits.max(axis=1, keepdims=True)
            logsumexp = np.log(np.exp(shifted).sum(axis=1, keepdims=True))
            log_probs = shifted - logsumexp
            per_item = -log_probs[np.arange(n), target]
            out = _reduce(per_item, reduction, "cross_entropy")
        _check_finite(out, "cross_entropy")
        self.log_probs, self.target, self.reduction = log_probs, target, reduction
        return out

    def backward(self, grad):
        n = self.target.shape[0]
        g = np.exp(self.log_probs)  # softmax
        g[np.arange(n), self.target] -= 1
        if self.reduction == "mean":
            g *= grad / n
        elif self.reduction == "sum":
            g *= grad
        else:
            g *= grad[:, None]
        return g


def cross_entropy(input: Tensor, target: Any, reduction: str = "mean") -> Tensor:
    """Softmax cross-entropy between logits and integer class labels.

    ``loss_i = -log(softmax(input_i)[target_i])``, computed from log-sum-exp with the row
    maximum subtracted, so logits of 1e4 are as safe as logits of 1.

    Args:
        input: (N, C) logits.
        target: (N,) integer labels in [0, C) (array, list or Tensor).
        reduction: 'mean' (default), 'sum' or 'none'.

    Raises:
        ValueError: wrong shapes, non-integer labels or labels outside [0, C).
        NonFiniteLossError: if the loss is NaN or infinite.

    Example:
        >>> import numpy as np, cnnlab
        >>> from cnnlab.nn import functional as F
        >>> round(F.cross_entropy(cnnlab.Tensor(np.zeros((2, 10))), [3, 7]).item(), 4)
        2.3026
    """
    t = np.asarray(target.data if isinstance(target, Tensor) else target)
    if input.ndim != 2:
        raise ValueError(f"cross_entropy expects logits of shape (N, C), got {input.shape}")
    n, c = input.shape
    if t.shape != (n,):
        raise ValueError(f"cross_entropy expects {n} integer labels of shape ({n},) for logits "
                         f"of shape {input.shape}, got target of shape {t.shape}")
    if t.dtype.kind not in "iu":
        if t.dtype.kind == "f" and np.all(t == np.round(t)):
            t = t.astype(np.int64)
        else:
            raise ValueError(f"cross_entropy expects integer class labels, got dtype {t.dtype}")
    if n and (t.min() < 0 or t.max() >= c):
        bad = t[(t < 0) | (t >= c)]
        raise ValueError(
            f"cross_entropy: target labels must be in [0, {c - 1}] for {c} classes, found "
            f"{bad[0]} ({bad.size} out of range); does the last layer have as many outputs as "
            f"there are classes?"
        )
    return CrossEntropy.apply(input, target=t.astype(np.intp), reduction=reduction)


class MSELoss(Function):
    def forward(self, a, b, *, reduction):
        # Overflow or inf - inf stays quiet: _check_finite raises the clear error.
        with np.errstate(invalid="ignore", over="ignore"):
            self.diff = a - b
            out = _reduce(self.diff * self.diff, reduction, "mse_loss")
        _check_finite(out, "mse_loss")
        self.reduction = reduction
        return out

    def backward(self, grad):
        scale = 2.0 / self.diff.size if self.reduction == "mean" else 2.0
        g = self.diff * (grad * self.diff.dtype.type(scale))
        return g, (-g if self.needs_grad[1] else None)


def mse_loss(input: Tensor, target: Any, reduction: str = "mean") -> Tensor:
    """Mean squared error ``mean((input - target)^2)``.

    Raises:
        ValueError: if the shapes differ.
        NonFiniteLossError: if the loss is NaN or infinite.
    """
    if not isinstance(target, Tensor):
        target = Tensor(np.asarray(target, dtype=input.dtype))
    if input.shape != target.shape:
        raise ValueError(f"mse_loss expects input and target of the same shape, got "
                         f"{input.shape} and {target.shape}")
    return MSELoss.apply(input, target, reduction=reduction)
