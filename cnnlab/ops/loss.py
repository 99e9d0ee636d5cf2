"""Losses. Each checks its own result, so a NaN or Inf stops training where it appears.

Classification losses (``cross_entropy``, ``nll_loss``) take scores of shape (N, C) or
(N, C, d1, d2, ...) — a class axis second, as PyTorch does — and integer targets of shape
(N,) or (N, d1, d2, ...). They work on an (N, C, S) view of the input (S = d1*d2*...), so a
segmentation map is one vectorized reduction over the class axis, never a loop over pixels.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnlab.autograd import Function
from cnnlab.tensor import Tensor

REDUCTIONS = ("mean", "sum", "none")


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite; continuing would only spread it into the weights."""


def _check_finite(value: np.ndarray, who: str) -> None:
    if not np.all(np.isfinite(value)):
        raise NonFiniteLossError(
            f"{who}: the loss is {value.ravel()[~np.isfinite(value.ravel())][0]} (expected a "
            f"finite number); the inputs or weights hold NaN/Inf or have diverged — lower the "
            f"learning rate, check the data for NaN, or restart from the last checkpoint"
        )


def _check_reduction(reduction: str, who: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"{who}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _reduce(per_item: np.ndarray, reduction: str, who: str) -> np.ndarray:
    _check_reduction(reduction, who)
    if reduction == "mean":
        return np.asarray(per_item.mean(), dtype=per_item.dtype)
    if reduction == "sum":
        return np.asarray(per_item.sum(), dtype=per_item.dtype)
    return per_item


def _scale(grad: np.ndarray, reduction: str, count: float, dtype: np.dtype) -> np.ndarray:
    """The upstream gradient as a per-element factor: ``grad/count`` for a mean."""
    if reduction == "mean":
        return np.asarray(grad / dtype.type(count), dtype=dtype)
    return np.asarray(grad, dtype=dtype)


def _array(value: Any) -> np.ndarray:
    return np.asarray(value.data if isinstance(value, Tensor) else value)


# ----- classification: cross_entropy and nll_loss -------------------------------------------


class _Targets:
    """Class targets checked against an input, as flat (N, S) index and mask arrays."""

    def __init__(self, input: Tensor, target: Any, weight: Any, ignore_index: int, who: str):
        if input.ndim == 0:
            raise ValueError(f"{who} expects logits of shape (N, C) or (N, C, d1, ...), got a "
                             f"0-D input")
        t = _array(target)
        if input.ndim == 1:  # one sample, (C,) with a scalar target
            n, c, expected = 1, input.shape[0], ()
        else:
            n, c, expected = input.shape[0], input.shape[1], (input.shape[0], *input.shape[2:])
        if t.shape != expected:
            if t.shape == input.shape and t.dtype.kind == "f" and input.ndim > 1:
                raise ValueError(
                    f"{who}: class-probability targets (of the input's shape {input.shape}) "
                    f"are not supported; pass class indices of shape {expected}")
            count = int(np.prod(expected))
            layout = "(N,)" if input.ndim <= 2 else "(N, d1, ...) for input (N, C, d1, ...)"
            raise ValueError(
                f"{who} expects {count} integer labels of shape {expected} for logits of "
                f"shape {input.shape}, got target of shape {t.shape}; targets are {layout}")
        if t.dtype.kind not in "iu":
            if t.dtype.kind == "f" and np.all(t == np.round(t)):
                t = t.astype(np.int64)
            else:
                raise ValueError(f"{who} expects integer class labels, got dtype {t.dtype}")
        t = t.reshape(n, -1)
        valid = t != ignore_index
        self.all_valid = bool(valid.all())
        if t.size:
            kept = t if self.all_valid else t[valid]
            if kept.size and (kept.min() < 0 or kept.max() >= c):
                bad = kept[(kept < 0) | (kept >= c)]
                ignored = "" if ignore_index < 0 or ignore_index >= c else \
                    f" (ignore_index {ignore_index} is a class here)"
                raise ValueError(
                    f"{who}: target labels must be in [0, {c - 1}] for {c} classes, found "
                    f"{bad[0]} ({bad.size} out of range){ignored}; does the last layer have as "
                    f"many outputs as there are classes?"
                )
        self.index = t.astype(np.intp) if self.all_valid else \
            np.where(valid, t, 0).astype(np.intp)  # ignored targets read class 0, masked
        self.valid = None if self.all_valid else valid
        self.weight = None
        if weight is not None:
            w = _array(weight)
            if w.shape != (c,):
                raise ValueError(f"{who}: weight must hold one value per class, shape ({c},), "
                                 f"got shape {w.shape}")
            self.weight = w.astype(input.dtype)
        self.out_shape = expected
        self.classes = c


def _per_target_weight(weight: np.ndarray | None, index: np.ndarray, valid: np.ndarray | None,
                       dtype: np.dtype) -> np.ndarray | None:
    """The class weight of every target (0 where ignored), or None when all are 1."""
    if weight is None and valid is None:
        return None
    wt = weight[index] if weight is not None else np.ones(index.shape, dtype=dtype)
    if valid is not None:
        wt = np.where(valid, wt, dtype.type(0))
    return wt


def _mean_denominator(wt: np.ndarray | None, count: int, who: str) -> float:
    denom = float(count if wt is None else wt.sum(dtype=np.float64))
    if denom == 0:
        raise NonFiniteLossError(
            f"{who}: every target is ignore_index (or has class weight 0), so the mean over "
            f"no targets is undefined (PyTorch gives nan); use reduction='sum', or leave such "
            f"batches out")
    return denom


def _reduce_class_loss(per: np.ndarray, reduction: str, wt: np.ndarray | None,
                       out_shape: tuple[int, ...], who: str) -> tuple[np.ndarray, float]:
    """(the reduced loss, the mean's denominator: the sum of the targets' weights)."""
    if reduction == "none":
        return per.reshape(out_shape), 1.0
    if reduction == "sum":
        return np.asarray(per.sum(), dtype=per.dtype), 1.0
    denom = _mean_denominator(wt, per.size, who)
    return np.asarray(per.sum() / per.dtype.type(denom), dtype=per.dtype), denom


class CrossEntropy(Function):
    def forward(self, logits, *, targets, reduction, label_smoothing):
        t = targets
        n, c = len(t.index), t.classes
        # (N, C, S), each class a contiguous plane: the reductions over classes are then
        # elementwise operations between planes. A channels-last map is copied into this
        # layout first (reducing over its short, innermost class axis was 2.4x slower).
        x = np.ascontiguousarray(logits.reshape(n, c, -1))
        self.shape = logits.shape
        # Inf logits give inf - inf here; stay quiet, _check_finite raises the clear error.
        with np.errstate(invalid="ignore", over="ignore"):
            shifted = x - x.max(axis=1, keepdims=True)
            picked = np.take_along_axis(shifted, t.index[:, None, :], axis=1)[:, 0]
            smooth = None
            if label_smoothing:
                # -sum_c w_c log p_c = W * lse - sum_c w_c * shifted_c, per position
                smooth = (shifted.sum(axis=1) if t.weight is None else
                          np.einsum("ncs,c->ns", shifted, t.weight))
            e = np.exp(shifted, out=shifted)
            total = e.sum(axis=1)
            lse = np.log(total)
            nll = lse - picked  # -log p of the target
            wt = _per_target_weight(t.weight, t.index, t.valid, logits.dtype)
            per = nll if wt is None else nll * wt
            if label_smoothing:
                w_sum = c if t.weight is None else t.weight.sum()
                smooth = w_sum * lse - smooth
                if t.valid is not None:
                    smooth = np.where(t.valid, smooth, 0)
                eps = logits.dtype.type(label_smoothing)
                per = (1 - eps) * per + (eps / c) * smooth
            out, self.denom = _reduce_class_loss(per.astype(logits.dtype, copy=False),
                                                 reduction, wt, t.out_shape, "cross_entropy")
        _check_finite(out, "cross_entropy")
        # exp(shifted) and its sum are kept: backward scales them once, by its factor over
        # the sum, instead of dividing here and scaling there.
        self.e, self.total, self.targets, self.wt = e, total, t, wt
        self.reduction, self.smoothing = reduction, label_smoothing
        return out

    def backward(self, grad):
        t, dt = self.targets, self.e.dtype
        n, c, s = self.e.shape
        coef = _scale(grad, self.reduction, self.denom, dt)
        coef = np.broadcast_to(coef.reshape(n, -1) if self.reduction == "none" else coef,
                               (n, s))
        eps = dt.type(self.smoothing)
        # d loss / d logit_c = a * p_c - (1 - eps) w_t [c = t] - eps/C * w_c, per position,
        # with a = (1 - eps) w_t + eps/C * sum(w), all times the upstream factor.
        hit = coef if self.wt is None else coef * self.wt
        a = (1 - eps) * hit
        if self.smoothing:
            w_sum = c if t.weight is None else t.weight.sum()
            on = coef if t.valid is None else np.where(t.valid, coef, 0)
            a = a + (eps / c) * w_sum * on
        # Written into an array of the logits' shape (a reshaped view would be copied again
        # by the engine when it lands on a leaf's .grad).
        out = np.empty(self.shape, dtype=dt)
        g = np.multiply(self.e, (a / self.total)[:, None, :], out=out.reshape(n, c, s))
        idx = t.index[:, None, :]
        at_t = np.take_along_axis(g, idx, axis=1) - ((1 - eps) * hit)[:, None, :]
        np.put_along_axis(g, idx, at_t, axis=1)
        if self.smoothing:
            w = np.ones(c, dt) if t.weight is None else t.weight
            g -= ((eps / c) * on)[:, None, :] * w[None, :, None]
        return out


class NLLLoss(Function):
    def forward(self, logp, *, targets, reduction):
        t = targets
        n, c = len(t.index), t.classes
        x = logp.reshape(n, c, -1)
        self.shape, self.x3_shape = logp.shape, x.shape
        with np.errstate(invalid="ignore", over="ignore"):
            picked = np.take_along_axis(x, t.index[:, None, :], axis=1)[:, 0]
            wt = _per_target_weight(t.weight, t.index, t.valid, logp.dtype)
            per = -picked if wt is None else -picked * wt
            out, self.denom = _reduce_class_loss(per, reduction, wt, t.out_shape, "nll_loss")
        _check_finite(out, "nll_loss")
        self.targets, self.wt, self.reduction = t, wt, reduction
        return out

    def backward(self, grad):
        n = self.x3_shape[0]
        dt = grad.dtype
        coef = _scale(grad, self.reduction, self.denom, dt)
        coef = np.broadcast_to(coef.reshape(n, -1) if self.reduction == "none" else coef,
                               (n, self.x3_shape[2]))
        hit = coef if self.wt is None else coef * self.wt
        out = np.zeros(self.shape, dtype=dt)
        np.put_along_axis(out.reshape(self.x3_shape), self.targets.index[:, None, :],
                          -hit[:, None, :], axis=1)
        return out


def cross_entropy(input: Tensor, target: Any, weight: Any = None, ignore_index: int = -100,
                  reduction: str = "mean", label_smoothing: float = 0.0) -> Tensor:
    """Softmax cross-entropy between logits and integer class labels, as in PyTorch.

    ``loss_i = -w[t_i] * log(softmax(input_i)[t_i])``, computed from log-sum-exp with the
    maximum over classes subtracted, so logits of 1e4 are as safe as logits of 1. With
    ``label_smoothing`` = e the target becomes ``(1 - e) * one_hot + e / C``:
    ``loss_i = (1 - e) * w[t_i] * (-log p[t_i]) + e/C * sum_c w[c] * (-log p[c])``.

    Args:
        input: logits, (N, C), or (N, C, d1, d2, ...) for a class score per position (e.g.
            (N, C, H, W) for segmentation), or (C,) for one sample.
        target: integer labels in [0, C), (N,), (N, d1, d2, ...) or () (array, list or
            Tensor); float arrays of whole numbers are accepted.
        weight: (C,) weight per class, or None.
        ignore_index: targets with this value add nothing to the loss or the gradient, and
            do not count in the mean (e.g. padding of a sequence, void pixels).
        reduction: 'mean' (default): the sum divided by the sum of the weights of the
            non-ignored targets (their number without ``weight``), as PyTorch does; 'sum';
            or 'none': one loss per target, of the target's shape.
        label_smoothing: in [0, 1].

    Raises:
        ValueError: wrong shapes, non-integer labels, labels outside [0, C) (ignored ones
            aside), a weight of the wrong shape, a bad reduction or label smoothing.
        NonFiniteLossError: if the loss is NaN or infinite, or a mean over no targets (all
            ignored).

    Example:
        >>> import numpy as np, cnnlab
        >>> from cnnlab.nn import functional as F
        >>> round(F.cross_entropy(cnnlab.Tensor(np.zeros((2, 10))), [3, 7]).item(), 4)
        2.3026
        >>> logits = cnnlab.Tensor(np.zeros((2, 4, 3, 3)))  # 4 classes per pixel
        >>> labels = np.full((2, 3, 3), 1)
        >>> labels[0, 0, 0] = -100  # ignored
        >>> F.cross_entropy(logits, labels, reduction="none").shape
        (2, 3, 3)
    """
    _check_reduction(reduction, "cross_entropy")
    if not 0.0 <= float(label_smoothing) <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be between 0.0 and 1.0, got "
                         f"{label_smoothing}")
    targets = _Targets(input, target, weight, int(ignore_index), "cross_entropy")
    return CrossEntropy.apply(input, targets=targets, reduction=reduction,
                              label_smoothing=float(label_smoothing))


def nll_loss(input: Tensor, target: Any, weight: Any = None, ignore_index: int = -100,
             reduction: str = "mean") -> Tensor:
    """Negative log-likelihood of integer labels under log-probabilities, as in PyTorch.

    ``loss_i = -w[t_i] * input_i[t_i]``; ``cross_entropy(x, t)`` is
    ``nll_loss(log_softmax(x, dim=1), t)``. Shapes, ``weight``, ``ignore_index`` and
    ``reduction`` as for :func:`cross_entropy`.

    Raises:
        ValueError: wrong shapes, non-integer or out-of-range labels, a bad weight or
            reduction.
        NonFiniteLossError: if the loss is NaN or infinite, or a mean over no targets.

    Example:
        >>> import numpy as np, cnnlab
        >>> from cnnlab.nn import functional as F
        >>> logp = cnnlab.Tensor(np.log(np.array([[0.5, 0.25, 0.25]])))
        >>> round(F.nll_loss(logp, [0]).item(), 4)
        0.6931
    """
    _check_reduction(reduction, "nll_loss")
    targets = _Targets(input, target, weight, int(ignore_index), "nll_loss")
    return NLLLoss.apply(input, targets=targets, reduction=reduction)


# ----- regression: mse, l1, smooth l1 -------------------------------------------------------


def _pair_target(input: Tensor, target: Any, who: str) -> Tensor:
    if not isinstance(target, Tensor):
        target = Tensor(np.asarray(target, dtype=input.dtype))
    if input.shape != target.shape:
        raise ValueError(f"{who} expects input and target of the same shape, got "
                         f"{input.shape} and {target.shape}")
    return target


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

    Example:
        >>> import cnnlab
        >>> from cnnlab.nn import functional as F
        >>> F.mse_loss(cnnlab.Tensor([1.0, 3.0]), [0.0, 1.0]).item()
        2.5
    """
    target = _pair_target(input, target, "mse_loss")
    return MSELoss.apply(input, target, reduction=reduction)


class SmoothL1(Function):
    """Huber-like loss: ``0.5 d^2 / beta`` for ``|d| < beta``, ``|d| - beta/2`` beyond;
    ``beta = 0`` is the L1 loss."""

    def forward(self, a, b, *, beta, reduction, who):
        with np.errstate(invalid="ignore", over="ignore"):
            d = a - b
            ad = np.abs(d)
            if beta > 0:
                bt = d.dtype.type(beta)
                self.inner = ad < bt
                per = np.where(self.inner, d * d * (d.dtype.type(0.5) / bt),
                               ad - d.dtype.type(0.5) * bt)
            else:
                self.inner, per = None, ad
            out = _reduce(per, reduction, who)
        _check_finite(out, who)
        self.d, self.beta, self.reduction = d, beta, reduction
        return out

    def backward(self, grad):
        d = self.d
        scale = _scale(grad, self.reduction, d.size, d.dtype)
        slope = np.sign(d)
        if self.inner is not None:
            slope = np.where(self.inner, d / d.dtype.type(self.beta), slope)
        g = slope * scale
        return g, (-g if self.needs_grad[1] else None)


def l1_loss(input: Tensor, target: Any, reduction: str = "mean") -> Tensor:
    """Mean absolute error ``mean(|input - target|)`` (gradient 0 where they are equal).

    Raises:
        ValueError: if the shapes differ or the reduction is unknown.
        NonFiniteLossError: if the loss is NaN or infinite.

    Example:
        >>> import cnnlab
        >>> from cnnlab.nn import functional as F
        >>> F.l1_loss(cnnlab.Tensor([1.0, 3.0]), [0.0, 1.0]).item()
        1.5
    """
    target = _pair_target(input, target, "l1_loss")
    return SmoothL1.apply(input, target, beta=0.0, reduction=reduction, who="l1_loss")


def smooth_l1_loss(input: Tensor, target: Any, reduction: str = "mean",
                   beta: float = 1.0) -> Tensor:
    """Smooth L1 loss: quadratic for small errors, linear for large ones (box regression).

    ``loss = 0.5 * d^2 / beta`` where ``|d| < beta``, else ``|d| - 0.5 * beta``, with
    ``d = input - target``; ``beta = 0`` gives :func:`l1_loss`.

    Raises:
        ValueError: if the shapes differ, ``beta`` is negative or the reduction unknown.
        NonFiniteLossError: if the loss is NaN or infinite.

    Example:
        >>> import cnnlab
        >>> from cnnlab.nn import functional as F
        >>> F.smooth_l1_loss(cnnlab.Tensor([0.5, 3.0]), [0.0, 0.0], reduction="none").data
        array([0.125, 2.5  ], dtype=float32)
    """
    if not float(beta) >= 0:
        raise ValueError(f"smooth_l1_loss: beta must be at least 0, got {beta}")
    target = _pair_target(input, target, "smooth_l1_loss")
    return SmoothL1.apply(input, target, beta=float(beta), reduction=reduction,
                          who="smooth_l1_loss")


# ----- binary: with logits, on probabilities, and the heat-map focal loss --------------------


def _broadcast_constant(value: Any, input: Tensor, name: str, who: str) -> np.ndarray | None:
    if value is None:
        return None
    arr = _array(value).astype(input.dtype)
    try:
        np.broadcast_shapes(arr.shape, input.shape)
    except ValueError:
        raise ValueError(f"{who}: {name} of shape {arr.shape} does not broadcast to the "
                         f"input's shape {input.shape}") from None
    if np.broadcast_shapes(arr.shape, input.shape) != input.shape:
        raise ValueError(f"{who}: {name} of shape {arr.shape} would enlarge the input's "
                         f"shape {input.shape}")
    return arr


def _sigmoid_parts(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(softplus(-x), sigmoid(x))`` without overflow, from ``exp(-|x|)``."""
    e = np.exp(-np.abs(x))
    softplus_neg = np.maximum(-x, 0) + np.log1p(e)
    sig = np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)
    return softplus_neg, sig


class BCEWithLogits(Function):
    def forward(self, x, y, *, weight, pos_weight, reduction):
        with np.errstate(invalid="ignore", over="ignore"):
            sp, sig = _sigmoid_parts(x)  # softplus(-x) = -log(sigmoid(x))
            lw = None if pos_weight is None else 1 + (pos_weight - 1) * y
            per = (1 - y) * x + (sp if lw is None else lw * sp)
            if weight is not None:
                per = per * weight
            out = _reduce(per.astype(x.dtype, copy=False), reduction,
                          "binary_cross_entropy_with_logits")
        _check_finite(out, "binary_cross_entropy_with_logits")
        self.x, self.y, self.sp, self.sig, self.lw = x, y, sp, sig, lw
        self.weight, self.pos_weight, self.reduction = weight, pos_weight, reduction
        return out

    def backward(self, grad):
        x = self.x
        scale = _scale(grad, self.reduction, x.size, x.dtype)
        if self.weight is not None:
            scale = scale * self.weight
        gx = gy = None
        if self.needs_grad[0]:  # (1 - y) - lw * sigmoid(-x)
            sig_neg = 1 - self.sig
            gx = ((1 - self.y) - (sig_neg if self.lw is None else self.lw * sig_neg)) * scale
            gx = gx.astype(x.dtype, copy=False)
        if self.needs_grad[1]:  # -x + (pos_weight - 1) * softplus(-x)
            gy = -x if self.pos_weight is None else -x + (self.pos_weight - 1) * self.sp
            gy = np.broadcast_to(gy * scale, x.shape).astype(x.dtype)
        return gx, gy


def binary_cross_entropy_with_logits(input: Tensor, target: Any, weight: Any = None,
                                     reduction: str = "mean", pos_weight: Any = None
                                     ) -> Tensor:
    """Sigmoid + binary cross-entropy in one stable step, as in PyTorch.

    ``loss = -w * (pos_weight * y * log(sigmoid(x)) + (1 - y) * log(1 - sigmoid(x)))``,
    computed as ``w * ((1 - y) * x + (1 + (pos_weight - 1) * y) * softplus(-x))`` with
    ``softplus(-x) = max(-x, 0) + log1p(exp(-|x|))``: no overflow for any logit.

    Args:
        input: logits, any shape.
        target: the same shape, values in [0, 1].
        weight: broadcastable to the input, a weight per element, or None.
        reduction: 'mean' (over all elements), 'sum' or 'none'.
        pos_weight: broadcastable to the input (e.g. (C,) against (N, C)), the weight of
            positive examples, or None.

    Raises:
        ValueError: if shapes differ or do not broadcast, or the reduction is unknown.
        NonFiniteLossError: if the loss is NaN or infinite.

    Example:
        >>> import cnnlab
        >>> from cnnlab.nn import functional as F
        >>> x = cnnlab.Tensor([0.0, 100.0, -100.0])  # no overflow at either end
        >>> F.binary_cross_entropy_with_logits(x, [1.0, 1.0, 1.0], reduction="none").data
        array([6.931472e-01, 3.783506e-44, 1.000000e+02], dtype=float32)
    """
    who = "binary_cross_entropy_with_logits"
    _check_reduction(reduction, who)
    target = _pair_target(input, target, who)
    return BCEWithLogits.apply(input, target,
                               weight=_broadcast_constant(weight, input, "weight", who),
                               pos_weight=_broadcast_constant(pos_weight, input, "pos_weight",
                                                              who),
                               reduction=reduction)


class BCE(Function):
    def forward(self, p, y, *, weight, reduction):
        with np.errstate(divide="ignore", invalid="ignore"):
            self.log_p = np.maximum(np.log(p), p.dtype.type(-100))  # PyTorch's clamp
            self.log_q = np.maximum(np.log1p(-p), p.dtype.type(-100))
            per = -(y * self.log_p + (1 - y) * self.log_q)
            if weight is not None:
                per = per * weight
            out = _reduce(per.astype(p.dtype, copy=False), reduction, "binary_cross_entropy")
        _check_finite(out, "binary_cross_entropy")
        self.p, self.y, self.weight, self.reduction = p, y, weight, reduction
        return out

    def backward(self, grad):
        p, y = self.p, self.y
        scale = _scale(grad, self.reduction, p.size, p.dtype)
        if self.weight is not None:
            scale = scale * self.weight
        gp = gy = None
        if self.needs_grad[0]:  # (p - y) / (p (1 - p)), the denominator at least 1e-12
            gp = ((p - y) / np.maximum(p * (1 - p), p.dtype.type(1e-12)) * scale).astype(
                p.dtype, copy=False)
        if self.needs_grad[1]:
            gy = np.broadcast_to((self.log_q - self.log_p) * scale, p.shape).astype(p.dtype)
        return gp, gy


def binary_cross_entropy(input: Tensor, target: Any, weight: Any = None,
                         reduction: str = "mean") -> Tensor:
    """Binary cross-entropy on probabilities: ``-w * (y log p + (1 - y) log(1 - p))``.

    As in PyTorch, each log is clamped at -100 (so p = 0 or 1 gives a large, finite loss)
    and the gradient's denominator ``p (1 - p)`` at 1e-12. Prefer
    :func:`binary_cross_entropy_with_logits` on logits: it is exact where this one clamps.

    Raises:
        ValueError: if shapes differ, an input is outside [0, 1] or the reduction unknown.
        NonFiniteLossError: if the loss is NaN or infinite.

    Example:
        >>> import cnnlab
        >>> from cnnlab.nn import functional as F
        >>> round(F.binary_cross_entropy(cnnlab.Tensor([0.5]), [1.0]).item(), 4)
        0.6931
    """
    who = "binary_cross_entropy"
    _check_reduction(reduction, who)
    target = _pair_target(input, target, who)
    p = input.data
    outside = (p < 0) | (p > 1) | np.isnan(p)
    if outside.any():
        raise ValueError(f"{who}: all input values must be probabilities in [0, 1], found "
                         f"{p[outside][0]}; apply a sigmoid first, or use "
                         f"binary_cross_entropy_with_logits")
    return BCE.apply(input, target, weight=_broadcast_constant(weight, input, "weight", who),
                     reduction=reduction)


class HeatmapFocal(Function):
    def forward(self, x, y, *, alpha, beta, eps, reduction):
        dt = x.dtype.type
        with np.errstate(invalid="ignore", over="ignore"):
            _, sig = _sigmoid_parts(x)
            lo, hi = dt(eps), dt(1 - eps)
            p = np.clip(sig, lo, hi)
            pos = y == 1
            neg_w = np.where(pos, dt(0), (1 - y) ** dt(beta))  # (1 - y)^beta where y < 1
            q = 1 - p
            log_p, log_q = np.log(p), np.log(q)
            per = -np.where(pos, q ** dt(alpha) * log_p, neg_w * p ** dt(alpha) * log_q)
            self.count = max(int(pos.sum()), 1)
            if reduction == "mean":
                out = np.asarray(per.sum() / dt(self.count), dtype=x.dtype)
            else:
                out = _reduce(per.astype(x.dtype, copy=False), reduction,
                              "focal_loss_heatmap")
        _check_finite(out, "focal_loss_heatmap")
        # d per / d p, then through the clamp (zero outside it) and the sigmoid.
        a = dt(alpha)
        dpos = -(q ** a / p) + a * q ** (a - 1) * log_p
        dneg = neg_w * (p ** a / q - a * p ** (a - 1) * log_q)
        inside = (sig > lo) & (sig < hi)
        self.dx = np.where(pos, dpos, dneg) * np.where(inside, sig * (1 - sig), dt(0))
        self.reduction = reduction
        return out

    def backward(self, grad):
        scale = _scale(grad, self.reduction, self.count, self.dx.dtype)
        return (self.dx * scale).astype(self.dx.dtype, copy=False), None


def focal_loss_heatmap(input: Tensor, target: Any, alpha: float = 2.0, beta: float = 4.0,
                       eps: float = 1e-4, reduction: str = "mean") -> Tensor:
    """The penalty-reduced pixel-wise focal loss of heat-map detectors (CornerNet,
    CenterNet), on logits.

    With ``p = clamp(sigmoid(input), eps, 1 - eps)`` (CenterNet's clamped sigmoid) and a
    target heat map ``y`` in [0, 1] holding 1 exactly at object centres (Gaussian bumps
    around them):

    - where ``y == 1``: ``-(1 - p)^alpha * log(p)``;
    - elsewhere: ``-(1 - y)^beta * p^alpha * log(1 - p)`` — near a centre the penalty for a
      high score is reduced.

    The sum is divided by the number of positive peaks (``y == 1``; by 1 when there are
    none), as in the CenterNet paper. The gradient is zero where the clamp is active.

    Args:
        input: logits, any shape, e.g. (N, classes, H, W).
        target: heat map of the same shape, values in [0, 1] (array or Tensor; constant).
        alpha, beta: the focal and penalty-reduction exponents (2 and 4 in the papers).
        eps: the sigmoid's clamp.
        reduction: 'mean' (default): the sum over all elements divided by the number of
            peaks (at least 1) — not by the number of elements; 'sum'; or 'none'.

    Raises:
        ValueError: if the shapes differ, ``eps`` is outside (0, 0.5) or the reduction is
            unknown.
        NonFiniteLossError: if the loss is NaN or infinite.

    Example:
        >>> import numpy as np, cnnlab
        >>> from cnnlab.nn import functional as F
        >>> heat = np.zeros((1, 1, 3, 3)); heat[0, 0, 1, 1] = 1.0
        >>> logits = cnnlab.Tensor(np.where(heat == 1, 3.0, -3.0))
        >>> round(F.focal_loss_heatmap(logits, heat).item(), 5)
        0.00098
    """
    who = "focal_loss_heatmap"
    _check_reduction(reduction, who)
    if not 0 < eps < 0.5:
        raise ValueError(f"{who}: eps must be in (0, 0.5), got {eps}")
    y = _array(target).astype(input.dtype)
    if y.shape != input.shape:
        raise ValueError(f"{who} expects input and target of the same shape, got "
                         f"{input.shape} and {y.shape}")
    return HeatmapFocal.apply(input, Tensor(y), alpha=float(alpha), beta=float(beta),
                              eps=float(eps), reduction=reduction)
