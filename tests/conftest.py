"""Fixtures shared by the test files: seeded randomness and float64 tensors."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import settings

import cnnlab

# Property-based tests draw the same examples on every run: a failure in CI reproduces.
settings.register_profile("cnnlab", derandomize=True, print_blob=True)
settings.load_profile("cnnlab")


@pytest.fixture
def rng() -> np.random.Generator:
    """A NumPy generator with a fixed seed, fresh for each test."""
    return np.random.default_rng(0)


@pytest.fixture
def seeded() -> np.random.Generator:
    """cnnlab's global generator reseeded to 0 (weight init and dropout repeat)."""
    return cnnlab.manual_seed(0)


@pytest.fixture
def f64() -> Callable[..., cnnlab.Tensor]:
    """Make a float64 tensor that requires gradients: ``f64(array_like)``."""

    def make(data, requires_grad: bool = True) -> cnnlab.Tensor:
        return cnnlab.Tensor(np.array(data, dtype=np.float64), requires_grad=requires_grad)

    return make
