"""One seeded generator for everything random in cnnlab: weight init, dropout, shuffling.

A global ``np.random`` state would make runs impossible to reproduce or resume; a single
``np.random.Generator`` whose state can be saved and restored makes both exact.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from cnnlab import _checkout  # noqa: F401  (a folder named cnnlab hiding the package)

_generator = np.random.default_rng()


def manual_seed(seed: int) -> np.random.Generator:
    """Reseed cnnlab's global generator so init, dropout and shuffling repeat bit for bit.

    Args:
        seed: a non-negative integer.

    Returns:
        The reseeded generator.

    Example:
        >>> import cnnlab
        >>> _ = cnnlab.manual_seed(0); a = cnnlab.random.get_generator().random()
        >>> _ = cnnlab.manual_seed(0); a == cnnlab.random.get_generator().random()
        True
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"manual_seed expects a non-negative integer, got {seed!r}")
    global _generator
    _generator = np.random.default_rng(int(seed))
    return _generator


def get_generator() -> np.random.Generator:
    """The global generator used where no explicit generator is given."""
    return _generator


def get_rng_state() -> dict[str, Any]:
    """The global generator's state as a JSON-serializable dict."""
    return copy.deepcopy(_generator.bit_generator.state)


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore a state returned by :func:`get_rng_state`."""
    try:
        _generator.bit_generator.state = copy.deepcopy(state)
    except (TypeError, ValueError, KeyError) as exc:
        raise ValueError(f"not a valid cnnlab RNG state ({exc}); expected the dict that "
                         "cnnlab.random.get_rng_state() returns") from exc


class Generator:
    """A seedable source of randomness to hand to functions that take ``generator=``
    (``cnnlab.randn``, ``DataLoader``, ``random_split``), as ``torch.Generator``.

    Example:
        >>> import cnnlab
        >>> g = cnnlab.Generator().manual_seed(42)
        >>> a = cnnlab.rand(2, generator=g)
        >>> bool((a == cnnlab.rand(2, generator=cnnlab.Generator().manual_seed(42))).all())
        True
    """

    def __init__(self, device: Any = "cpu") -> None:
        self.numpy_generator = np.random.default_rng()
        self._seed: int | None = None

    def manual_seed(self, seed: int) -> Generator:
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"manual_seed expects a non-negative integer, got {seed!r}")
        self._seed = int(seed)
        self.numpy_generator = np.random.default_rng(self._seed)
        return self

    def initial_seed(self) -> int | None:
        return self._seed

    def get_state(self) -> dict[str, Any]:
        return copy.deepcopy(self.numpy_generator.bit_generator.state)

    def set_state(self, state: dict[str, Any]) -> None:
        self.numpy_generator.bit_generator.state = copy.deepcopy(state)
