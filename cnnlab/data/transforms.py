"""Batch transforms: normalization and data augmentation on whole ``(N, C, H, W)`` batches.

Random transforms draw all their random numbers for a batch at once from a
``np.random.Generator`` and apply them with array indexing, with no loop over samples:

* ``RandomCrop`` pads the batch once, takes a strided *view* of every possible window
  (``sliding_window_view``) and picks one window per sample by fancy indexing.
* ``RandomHorizontalFlip`` draws one coin per sample and reverses the last axis of the
  chosen samples in one assignment.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from cnnlab.random import get_generator

__all__ = [
    "Compose",
    "Normalize",
    "RandomCrop",
    "RandomHorizontalFlip",
    "Transform",
    "compute_mean_std",
]


class Transform:
    """Base class: ``transform(x, generator=None) -> x`` on a batch ``(N, C, H, W)``."""

    def __call__(self, x: np.ndarray, generator: np.random.Generator | None = None) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


def _batch(x: Any, who: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(
            f"{who}: expected a batch of shape (N, C, H, W), found shape "
            f"{x.shape}; use x[None] for a single image"
        )
    return x


def _per_channel(values: Any, name: str) -> tuple[float, ...]:
    arr = np.atleast_1d(np.asarray(values, dtype=np.float64))
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(
            f"Normalize: expected {name} as a number or one number per channel, found {values!r}"
        )
    return tuple(float(v) for v in arr)


class Normalize(Transform):
    """Subtract a per-channel mean and divide by a per-channel standard deviation.

    Args:
        mean: one value per channel (or one value for all).
        std: one positive value per channel (or one value for all).

    Shape:
        ``(N, C, H, W)`` or a single image ``(C, H, W)``; output has the same shape,
        float32: ``out[:, c] = (x[:, c] - mean[c]) / std[c]``.

    Raises:
        ValueError: a std that is not positive, or a channel count that does not match.

    Example:
        >>> import numpy as np
        >>> Normalize([0.5], [0.25])(np.ones((1, 1, 1, 2), np.float32)).tolist()
        [[[[2.0, 2.0]]]]
    """

    def __init__(self, mean: float | Sequence[float], std: float | Sequence[float]) -> None:
        self.mean = _per_channel(mean, "mean")
        self.std = _per_channel(std, "std")
        if len(self.mean) != len(self.std) and 1 not in (len(self.mean), len(self.std)):
            raise ValueError(
                f"Normalize: expected mean and std of the same length, found "
                f"{len(self.mean)} and {len(self.std)}"
            )
        if not all(np.isfinite(s) and s > 0 for s in self.std):
            raise ValueError(
                f"Normalize: expected every std > 0, found {list(self.std)}; a "
                "constant channel has std 0: use 1.0 for it"
            )

    def __call__(self, x: np.ndarray, generator: np.random.Generator | None = None) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim not in (3, 4):
            raise ValueError(
                f"Normalize: expected (N, C, H, W) or (C, H, W), found shape {x.shape}"
            )
        channels = x.shape[-3]
        n = max(len(self.mean), len(self.std))
        if n != 1 and n != channels:
            raise ValueError(
                f"Normalize: has {n} channel values but the input has "
                f"{channels} channels (shape {x.shape})"
            )
        mean = np.asarray(self.mean, dtype=np.float32).reshape(-1, 1, 1)
        std = np.asarray(self.std, dtype=np.float32).reshape(-1, 1, 1)
        return ((x.astype(np.float32, copy=False) - mean) / std).astype(np.float32, copy=False)


def _size2(size: int | Sequence[int], who: str) -> tuple[int, int]:
    pair = (size, size) if isinstance(size, (int, np.integer)) else tuple(size)
    if len(pair) != 2 or not all(isinstance(s, (int, np.integer)) and s > 0 for s in pair):
        raise ValueError(
            f"{who}: expected size as a positive int or (height, width), found {size!r}"
        )
    return int(pair[0]), int(pair[1])


class RandomCrop(Transform):
    """Zero-pad each image, then cut one random ``size`` window per image.

    Args:
        size: output ``(height, width)`` or one int for both.
        padding: zeros added on every side before cropping.

    Shape:
        ``(N, C, H, W)`` -> ``(N, C, h, w)``; each sample's window starts at a random
        ``(top, left)`` with ``0 <= top <= H + 2*padding - h`` (same for left).

    Raises:
        ValueError: the window is larger than the padded image.
    """

    def __init__(self, size: int | Sequence[int], padding: int = 0) -> None:
        self.size = _size2(size, "RandomCrop")
        if isinstance(padding, bool) or not isinstance(padding, (int, np.integer)) or padding < 0:
            raise ValueError(f"RandomCrop: expected padding to be an int >= 0, found {padding!r}")
        self.padding = int(padding)

    def __call__(self, x: np.ndarray, generator: np.random.Generator | None = None) -> np.ndarray:
        x = _batch(x, "RandomCrop")
        gen = generator if generator is not None else get_generator()
        h, w = self.size
        p = self.padding
        if p:
            x = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
        n, _, hp, wp = x.shape
        if h > hp or w > wp:
            raise ValueError(
                f"RandomCrop: crop {h}x{w} is larger than the padded image "
                f"{hp}x{wp} (input {hp - 2 * p}x{wp - 2 * p}, padding {p})"
            )
        top = gen.integers(0, hp - h + 1, size=n)
        left = gen.integers(0, wp - w + 1, size=n)
        # windows[n, c, i, j] is the h x w window whose top-left corner is (i, j): a view.
        windows = sliding_window_view(x, (h, w), axis=(2, 3))
        return windows[np.arange(n), :, top, left]


class RandomHorizontalFlip(Transform):
    """Mirror each image left-right with probability ``p``.

    Shape:
        ``(N, C, H, W)`` -> same; flipped samples are ``x[i, :, :, ::-1]``.

    Raises:
        ValueError: ``p`` outside [0, 1].
    """

    def __init__(self, p: float = 0.5) -> None:
        if not 0.0 <= float(p) <= 1.0:
            raise ValueError(f"RandomHorizontalFlip: expected p in [0, 1], found {p!r}")
        self.p = float(p)

    def __call__(self, x: np.ndarray, generator: np.random.Generator | None = None) -> np.ndarray:
        x = _batch(x, "RandomHorizontalFlip")
        gen = generator if generator is not None else get_generator()
        flip = gen.random(x.shape[0]) < self.p
        out = x.copy()
        out[flip] = x[flip][..., ::-1]
        return out


class Compose(Transform):
    """Apply transforms in order, passing the same generator to each.

    Example:
        >>> import numpy as np
        >>> t = Compose([RandomCrop(2), Normalize(0.0, 2.0)])
        >>> t(np.ones((3, 1, 4, 4), np.float32), np.random.default_rng(0)).shape
        (3, 1, 2, 2)
    """

    def __init__(self, transforms: Sequence[Any]) -> None:
        self.transforms = list(transforms)

    def __call__(self, x: np.ndarray, generator: np.random.Generator | None = None) -> np.ndarray:
        for t in self.transforms:
            x = t(x, generator=generator) if isinstance(t, Transform) else t(x)
        return x


def compute_mean_std(images: np.ndarray, chunk: int = 1024) -> tuple[list[float], list[float]]:
    """Per-channel mean and (population) standard deviation of ``(N, C, H, W)`` images.

    Sums are accumulated in float64, a chunk of samples at a time, so the result is
    accurate without making a float64 copy of the whole dataset.

    Returns:
        ``(mean, std)`` as lists of Python floats, one per channel (ready for
        ``Normalize`` and for a model file's JSON).

    Raises:
        ValueError: not 4-D or empty.
    """
    x = _batch(images, "compute_mean_std")
    if x.shape[0] == 0 or x.size == 0:
        raise ValueError(f"compute_mean_std: expected at least one image, found shape {x.shape}")
    total = np.zeros(x.shape[1], dtype=np.float64)
    total_sq = np.zeros(x.shape[1], dtype=np.float64)
    for start in range(0, x.shape[0], chunk):
        part = x[start : start + chunk]
        total += part.sum(axis=(0, 2, 3), dtype=np.float64)
        total_sq += np.square(part, dtype=np.float64).sum(axis=(0, 2, 3))
    count = x.shape[0] * x.shape[2] * x.shape[3]
    mean = total / count
    var = np.maximum(total_sq / count - mean**2, 0.0)
    return [float(m) for m in mean], [float(s) for s in np.sqrt(var)]
