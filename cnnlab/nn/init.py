"""Weight initialization, drawing from cnnlab's seeded generator."""

from __future__ import annotations

import math

import numpy as np

from cnnlab.random import get_generator


def uniform(shape: tuple[int, ...], bound: float, dtype=np.float32) -> np.ndarray:
    """Samples from U(-bound, bound)."""
    return get_generator().uniform(-bound, bound, size=shape).astype(dtype)


def kaiming_uniform(shape: tuple[int, ...], fan_in: int, a: float = math.sqrt(5),
                    dtype=np.float32) -> np.ndarray:
    """He/Kaiming uniform init with leaky-ReLU slope ``a``: bound = gain * sqrt(3 / fan_in).

    With PyTorch's default ``a = sqrt(5)`` the bound is ``1 / sqrt(fan_in)``.
    """
    gain = math.sqrt(2.0 / (1 + a * a))
    return uniform(shape, gain * math.sqrt(3.0 / fan_in), dtype)


def normal(shape: tuple[int, ...], std: float = 1.0, dtype=np.float32) -> np.ndarray:
    """Samples from N(0, std^2) (``nn.Embedding``'s initialization, as in PyTorch)."""
    return (get_generator().standard_normal(size=shape) * std).astype(dtype)
