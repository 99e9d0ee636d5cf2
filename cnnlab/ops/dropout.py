"""Inverted dropout: zero a fraction p of activations and scale the rest by 1/(1-p)."""

from __future__ import annotations

import numpy as np

from cnnlab.autograd import Function
from cnnlab.random import get_generator
from cnnlab.tensor import Tensor


class Dropout(Function):
    def forward(self, x, *, p, generator):
        keep = generator.random(x.shape, dtype=np.float32) >= p
        self.mask = keep * x.dtype.type(1.0 / (1.0 - p)) if p < 1 else np.zeros_like(x)
        return x * self.mask

    def backward(self, grad):
        return grad * self.mask


def dropout(input: Tensor, p: float = 0.5, training: bool = True,
            generator: np.random.Generator | None = None) -> Tensor:
    """Inverted dropout: in training, zero each element with probability ``p`` and scale the
    survivors by ``1/(1-p)`` so the expected value is unchanged; identity in evaluation.

    Raises:
        ValueError: if ``p`` is outside [0, 1].
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability must be in [0, 1], got {p}")
    if not training or p == 0.0:
        return input
    return Dropout.apply(input, p=p, generator=generator or get_generator())
