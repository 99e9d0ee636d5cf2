"""Loss modules: ``nn.CrossEntropyLoss()(logits, target)`` as in PyTorch.

Each holds its options (a class weight is a buffer, saved in ``state_dict``) and calls one
function of ``cnnlab.nn.functional``. The constructors take PyTorch's arguments in PyTorch's
order; the long-deprecated ``size_average`` and ``reduce`` are accepted only as None.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnlab.nn.module import Module
from cnnlab.ops import loss as F
from cnnlab.tensor import Tensor


def _reduction(layer: str, reduction: str, size_average: Any, reduce: Any) -> str:
    if size_average is not None or reduce is not None:
        raise ValueError(f"{layer}: size_average and reduce are deprecated (also in "
                         f"PyTorch); use reduction='mean', 'sum' or 'none'")
    if reduction not in F.REDUCTIONS:
        raise ValueError(f"{layer}: reduction must be 'mean', 'sum' or 'none', got "
                         f"{reduction!r}")
    return reduction


def _as_buffer(value: Any) -> np.ndarray:
    arr = np.asarray(value.data if isinstance(value, Tensor) else value)
    return arr.astype(np.float32) if arr.dtype.kind != "f" else arr.copy()


class _Loss(Module):
    def __init__(self, reduction: str, size_average: Any = None, reduce: Any = None):
        super().__init__()
        self.reduction = _reduction(type(self).__name__, reduction, size_average, reduce)

    def _optional_buffer(self, name: str, value: Any) -> None:
        if value is None:
            setattr(self, name, None)
        else:
            self.register_buffer(name, _as_buffer(value))

    def extra_repr(self) -> str:
        return "" if self.reduction == "mean" else f"reduction={self.reduction!r}"


class CrossEntropyLoss(_Loss):
    """Softmax cross-entropy of logits against class indices (see ``F.cross_entropy``).

    Shape:
        input (N, C) or (N, C, d1, ...); target (N,) or (N, d1, ...); output a scalar, or
        the target's shape with ``reduction='none'``.

    Example:
        >>> import numpy as np, cnnlab
        >>> from cnnlab import nn
        >>> loss = nn.CrossEntropyLoss(ignore_index=255)
        >>> round(loss(cnnlab.Tensor(np.zeros((1, 3, 2, 2))),
        ...            np.array([[[0, 1], [2, 255]]])).item(), 4)
        1.0986
    """

    def __init__(self, weight: Any = None, size_average: Any = None, ignore_index: int = -100,
                 reduce: Any = None, reduction: str = "mean", label_smoothing: float = 0.0):
        super().__init__(reduction, size_average, reduce)
        self._optional_buffer("weight", weight)
        self.ignore_index = int(ignore_index)
        if not 0.0 <= float(label_smoothing) <= 1.0:
            raise ValueError(f"CrossEntropyLoss: label_smoothing must be between 0.0 and 1.0, "
                             f"got {label_smoothing}")
        self.label_smoothing = float(label_smoothing)

    def forward(self, input: Tensor, target: Any) -> Tensor:
        return F.cross_entropy(input, target, self.weight, self.ignore_index, self.reduction,
                               self.label_smoothing)

    def extra_repr(self) -> str:
        parts = [super().extra_repr()] if self.reduction != "mean" else []
        if self.ignore_index != -100:
            parts.append(f"ignore_index={self.ignore_index}")
        if self.label_smoothing:
            parts.append(f"label_smoothing={self.label_smoothing}")
        return ", ".join(parts)


class NLLLoss(_Loss):
    """Negative log-likelihood of class indices under log-probabilities (see
    ``F.nll_loss``); shapes as for :class:`CrossEntropyLoss`."""

    def __init__(self, weight: Any = None, size_average: Any = None, ignore_index: int = -100,
                 reduce: Any = None, reduction: str = "mean"):
        super().__init__(reduction, size_average, reduce)
        self._optional_buffer("weight", weight)
        self.ignore_index = int(ignore_index)

    def forward(self, input: Tensor, target: Any) -> Tensor:
        return F.nll_loss(input, target, self.weight, self.ignore_index, self.reduction)


class MSELoss(_Loss):
    """Mean squared error (see ``F.mse_loss``); input and target of the same shape."""

    def __init__(self, size_average: Any = None, reduce: Any = None, reduction: str = "mean"):
        super().__init__(reduction, size_average, reduce)

    def forward(self, input: Tensor, target: Any) -> Tensor:
        return F.mse_loss(input, target, self.reduction)


class L1Loss(_Loss):
    """Mean absolute error (see ``F.l1_loss``); input and target of the same shape."""

    def __init__(self, size_average: Any = None, reduce: Any = None, reduction: str = "mean"):
        super().__init__(reduction, size_average, reduce)

    def forward(self, input: Tensor, target: Any) -> Tensor:
        return F.l1_loss(input, target, self.reduction)


class SmoothL1Loss(_Loss):
    """Quadratic below ``beta``, linear above (see ``F.smooth_l1_loss``).

    Example:
        >>> import cnnlab
        >>> from cnnlab import nn
        >>> nn.SmoothL1Loss(beta=0.5)(cnnlab.Tensor([0.25, 2.0]), [0.0, 0.0]).item()
        0.90625
    """

    def __init__(self, size_average: Any = None, reduce: Any = None, reduction: str = "mean",
                 beta: float = 1.0):
        super().__init__(reduction, size_average, reduce)
        if not float(beta) >= 0:
            raise ValueError(f"SmoothL1Loss: beta must be at least 0, got {beta}")
        self.beta = float(beta)

    def forward(self, input: Tensor, target: Any) -> Tensor:
        return F.smooth_l1_loss(input, target, self.reduction, self.beta)

    def extra_repr(self) -> str:
        parts = [super().extra_repr()] if self.reduction != "mean" else []
        if self.beta != 1.0:
            parts.append(f"beta={self.beta}")
        return ", ".join(parts)


class BCEWithLogitsLoss(_Loss):
    """Sigmoid + binary cross-entropy, stable for any logit (see
    ``F.binary_cross_entropy_with_logits``); ``weight`` and ``pos_weight`` are buffers."""

    def __init__(self, weight: Any = None, size_average: Any = None, reduce: Any = None,
                 reduction: str = "mean", pos_weight: Any = None):
        super().__init__(reduction, size_average, reduce)
        self._optional_buffer("weight", weight)
        self._optional_buffer("pos_weight", pos_weight)

    def forward(self, input: Tensor, target: Any) -> Tensor:
        return F.binary_cross_entropy_with_logits(input, target, self.weight, self.reduction,
                                                  self.pos_weight)
