"""Datasets held in memory as arrays, mini-batches, and deterministic splits.

Everything here works on whole arrays: a batch is ``images[idx]`` for an index array
``idx``, never a Python loop over samples. Shuffling draws one permutation per epoch (a
draw *without* replacement, so every sample is seen exactly once per epoch) from a
``np.random.Generator``: the loader's own, or cnnlab's global one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from cnnlab.data.transforms import Transform
from cnnlab.random import get_generator

__all__ = ["ArrayDataset", "DataLoader", "as_arrays", "random_split", "train_val_split"]

def default_generator() -> np.random.Generator:
    """cnnlab's global generator (``cnnlab.random.get_generator()``), looked up on each call.

    Looking it up every time matters: ``cnnlab.manual_seed`` may replace the generator.
    """
    return get_generator()


class ArrayDataset:
    """A labelled image dataset kept as two arrays.

    Args:
        images: ``(N, C, H, W)`` array; converted to float32 (no copy if it already is).
        labels: ``(N,)`` integer class indices; converted to int64.
        classes: class names, ``classes[label]``; defaults to ``["0", "1", ...]``.

    Shape:
        ``dataset[i]`` is ``(image (C, H, W) float32, label int64)``.

    Raises:
        ValueError: wrong number of dimensions, different lengths, labels that are not
            whole numbers or fall outside ``0..len(classes)-1``.

    Example:
        >>> import numpy as np
        >>> ds = ArrayDataset(np.zeros((4, 1, 2, 2)), [0, 1, 1, 0], classes=["no", "yes"])
        >>> len(ds), ds[1][0].shape, int(ds[1][1]), ds.images.dtype
        (4, (1, 2, 2), 1, dtype('float32'))
    """

    def __init__(self, images: Any, labels: Any, classes: Sequence[str] | None = None) -> None:
        images = np.asarray(images)
        labels = np.asarray(labels)
        name = type(self).__name__
        if images.ndim != 4:
            raise ValueError(
                f"{name}: expected images of shape (N, C, H, W), found shape {images.shape}; "
                "add a channel axis for grayscale images, e.g. images[:, None]"
            )
        if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
            raise ValueError(
                f"{name}: expected labels of shape ({images.shape[0]},) to match the images, "
                f"found shape {labels.shape}"
            )
        if labels.size and not np.issubdtype(labels.dtype, np.integer):
            if not np.all(np.mod(labels, 1) == 0):
                raise ValueError(
                    f"{name}: expected integer class labels, found {labels.dtype} "
                    "values with fractions"
                )
        labels = labels.astype(np.int64, copy=False)
        n_classes = int(labels.max()) + 1 if labels.size else 0
        if classes is None:
            classes = [str(i) for i in range(n_classes)]
        classes = [str(c) for c in classes]
        if labels.size and (labels.min() < 0 or labels.max() >= len(classes)):
            raise ValueError(
                f"{name}: expected labels in 0..{len(classes) - 1} for {len(classes)} classes, "
                f"found {labels.min()}..{labels.max()}"
            )
        self.images = images.astype(np.float32, copy=False)
        self.labels = labels
        self.classes = classes
        # Human-readable remarks about how the data was prepared (conversions, skips).
        if not hasattr(self, "notes"):
            self.notes: list[str] = []

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, index: Any) -> tuple[np.ndarray, Any]:
        return self.images[index], self.labels[index]

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image."""
        return tuple(int(s) for s in self.images.shape[1:])  # type: ignore[return-value]

    def __repr__(self) -> str:
        c, h, w = self.input_shape
        return (
            f"{type(self).__name__}(n={len(self)}, shape=({c}, {h}, {w}), "
            f"classes={len(self.classes)})"
        )


def as_arrays(data: Any) -> tuple[np.ndarray, np.ndarray, list[str] | None]:
    """Return ``(images, labels, classes)`` from a dataset or an ``(images, labels)`` pair.

    Raises:
        TypeError: neither a dataset with ``.images``/``.labels`` nor a pair of arrays, or
            a dataset of scenes (several labelled objects per image, no single label).
    """
    if callable(getattr(data, "get_batch", None)):
        raise TypeError(
            f"expected a dataset with one label per image, found {type(data).__name__} with "
            "several digits per image (masks, boxes, key points, captions); scenes train a "
            "segment, detect, keypoints or caption model, and DataLoader(scenes) batches them "
            "as (images, targets)"
        )
    if hasattr(data, "images") and hasattr(data, "labels"):
        return data.images, data.labels, list(getattr(data, "classes", None) or []) or None
    if isinstance(data, (tuple, list)) and len(data) == 2:
        ds = ArrayDataset(data[0], data[1])
        return ds.images, ds.labels, None
    raise TypeError(
        f"expected a dataset with .images and .labels or a pair (images, labels), found "
        f"{type(data).__name__}"
    )


def _check_generator(generator: Any, who: str) -> None:
    if generator is not None and not isinstance(generator, np.random.Generator):
        raise TypeError(
            f"{who}: expected generator to be a numpy.random.Generator or None, "
            f"found {type(generator).__name__}; use np.random.default_rng(seed)"
        )


class DataLoader:
    """Iterate over a dataset in mini-batches, optionally shuffled and transformed.

    Args:
        dataset: a dataset with ``.images`` and ``.labels``, a pair ``(images, labels)``, or
            a dataset with a ``get_batch(indices)`` method returning ``(images, targets)``
            (``DigitScenes``), whose targets are then yielded in place of labels.
        batch_size: samples per batch (the last one may be smaller unless ``drop_last``).
        shuffle: draw a new permutation (without replacement) at the start of each epoch.
        drop_last: skip a final batch smaller than ``batch_size``.
        transform: applied to each batch of images: a ``cnnlab.data`` transform (called
            with the loader's generator) or any function ``x -> x``.
        generator: the ``np.random.Generator`` for shuffling and random transforms; None
            means cnnlab's global one (``cnnlab.random.get_generator()``, seeded by
            ``cnnlab.manual_seed``).
        sampler: decides which samples each epoch reads, in which order, instead of
            ``shuffle``: an object with ``len()`` and ``indices()`` (an integer array) or
            an iterable of indices, e.g. ``cnnlab.distributed.DistributedSampler`` (this
            rank's share of the epoch; call its ``set_epoch`` each epoch).

    Shape:
        yields ``(x, y)``: x ``(B, C, H, W)`` float32, y ``(B,)`` int64 (or the targets
        of ``dataset.get_batch``).

    Resuming: the order of an epoch and its random transforms depend only on the
    generator's state when the epoch starts. Save ``state_dict()`` (or
    ``generator.bit_generator.state``) at an epoch boundary and restore it to replay the
    same batches.

    Raises:
        ValueError: ``batch_size`` below 1, an empty dataset, or both ``shuffle`` and a
            ``sampler``.

    Example:
        >>> import numpy as np
        >>> x, y = np.zeros((10, 1, 4, 4), np.float32), np.arange(10) % 2
        >>> loader = DataLoader((x, y), batch_size=4, shuffle=True,
        ...                     generator=np.random.default_rng(0))
        >>> len(loader), [len(b) for _, b in loader]
        (3, [4, 4, 2])
    """

    def __init__(
        self,
        dataset: Any,
        batch_size: int = 64,
        shuffle: bool = False,
        drop_last: bool = False,
        transform: Callable[..., np.ndarray] | None = None,
        generator: np.random.Generator | None = None,
        sampler: Any = None,
    ) -> None:
        if (
            isinstance(batch_size, bool)
            or not isinstance(batch_size, (int, np.integer))
            or batch_size < 1
        ):
            raise ValueError(
                f"DataLoader: expected batch_size to be an integer >= 1, found {batch_size!r}"
            )
        _check_generator(generator, "DataLoader")
        self.dataset = dataset
        self._get_batch = getattr(dataset, "get_batch", None)
        if callable(self._get_batch):
            self.images, self.labels = dataset.images, None
            self.classes = list(getattr(dataset, "classes", None) or []) or None
        else:
            self._get_batch = None
            self.images, self.labels, self.classes = as_arrays(dataset)
        self._n = int(self.images.shape[0]) if self.labels is None else len(self.labels)
        if self._n == 0:
            raise ValueError("DataLoader: the dataset is empty; expected at least one sample")
        if sampler is not None and shuffle:
            raise ValueError(
                "DataLoader: give shuffle=True or a sampler, not both; the sampler decides "
                "the order (DistributedSampler shuffles itself)"
            )
        self.sampler = sampler
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.transform = transform
        self._generator = generator

    @property
    def num_samples(self) -> int:
        """Samples read per epoch, before ``drop_last``: the dataset's, or the sampler's
        share of it."""
        return self._n if self.sampler is None else len(self.sampler)

    @property
    def generator(self) -> np.random.Generator:
        """The generator in use: the one given, else cnnlab's global one (looked up now)."""
        return self._generator if self._generator is not None else default_generator()

    def __len__(self) -> int:
        n = self.num_samples
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[np.ndarray, Any]]:
        gen = self.generator
        if self.sampler is not None:
            order = self._sampled()
        else:
            order = gen.permutation(self._n) if self.shuffle else np.arange(self._n)
        n = len(order)
        stop = (n // self.batch_size) * self.batch_size if self.drop_last else n
        for start in range(0, stop, self.batch_size):
            idx = order[start : start + self.batch_size]
            if self._get_batch is not None:
                x, y = self._get_batch(idx)
            else:
                x, y = self.images[idx], self.labels[idx]
            if self.transform is not None:
                x = _apply(self.transform, x, gen)
            yield x, y

    def _sampled(self) -> np.ndarray:
        """The sampler's indices for this epoch, checked against the dataset's size."""
        indices = getattr(self.sampler, "indices", None)
        order = np.asarray(indices() if callable(indices) else list(self.sampler), np.int64)
        n = self._n
        if order.ndim != 1 or (order.size and (order.min() < 0 or order.max() >= n)):
            raise ValueError(
                f"DataLoader: the sampler gave indices outside 0..{n - 1} for a dataset of "
                f"{n} samples; make the sampler for this dataset's size"
            )
        return order

    def state_dict(self) -> dict[str, Any]:
        """The generator's state (JSON-serializable); restore with ``load_state_dict``."""
        return {"bit_generator": self.generator.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the generator's state saved by ``state_dict`` (at an epoch boundary)."""
        self.generator.bit_generator.state = state["bit_generator"]

    def __repr__(self) -> str:
        return (
            f"DataLoader(n={self._n}, batch_size={self.batch_size}, "
            f"shuffle={self.shuffle}, drop_last={self.drop_last}, batches={len(self)})"
        )


def _apply(
    transform: Callable[..., np.ndarray], x: np.ndarray, gen: np.random.Generator
) -> np.ndarray:
    if isinstance(transform, Transform):
        return transform(x, generator=gen)
    return transform(x)


def stratified_indices(
    labels: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split indices so each class contributes ``round(fraction * count)`` to the second part.

    Deterministic for a given ``seed``; both parts come back sorted (original order).

    Returns:
        ``(first, second)`` index arrays.
    """
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    second = []
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        take = int(round(fraction * len(members)))
        second.append(rng.permutation(members)[:take])
    second_idx = np.sort(np.concatenate(second)) if second else np.zeros(0, np.int64)
    mask = np.ones(len(labels), dtype=bool)
    mask[second_idx] = False
    return np.flatnonzero(mask), second_idx


def _check_fraction(value: float, name: str, who: str) -> None:
    if not (isinstance(value, (float, int)) and 0.0 < float(value) < 1.0):
        raise ValueError(f"{who}: expected {name} strictly between 0 and 1, found {value!r}")


def train_val_split(
    data: Any, val_fraction: float = 0.1, seed: int = 0
) -> tuple[ArrayDataset, ArrayDataset]:
    """Split a dataset into training and validation parts, stratified by class.

    The same ``seed`` always gives the same split (it does not touch any global state).

    Args:
        data: a dataset or an ``(images, labels)`` pair.
        val_fraction: share of each class that goes to validation.
        seed: seed of the split.

    Returns:
        ``(train, val)`` as ``ArrayDataset``s that keep the class names.

    Raises:
        ValueError: ``val_fraction`` not in (0, 1), or a part would be empty.
    """
    _check_fraction(val_fraction, "val_fraction", "train_val_split")
    images, labels, classes = as_arrays(data)
    train_idx, val_idx = stratified_indices(labels, float(val_fraction), seed)
    if len(train_idx) == 0 or len(val_idx) == 0:
        raise ValueError(
            f"train_val_split: val_fraction={val_fraction} of {len(labels)} samples leaves "
            f"{len(train_idx)} for training and {len(val_idx)} for validation; expected both "
            "non-empty: change val_fraction or use more data"
        )
    return (
        ArrayDataset(images[train_idx], labels[train_idx], classes),
        ArrayDataset(images[val_idx], labels[val_idx], classes),
    )


def random_split(
    data: Any, lengths: Sequence[int | float], generator: np.random.Generator | None = None
) -> list[ArrayDataset]:
    """Split a dataset at random into parts of the given sizes (as ``torch.utils.data``).

    Args:
        data: a dataset or an ``(images, labels)`` pair.
        lengths: sample counts summing to ``len(data)``, or fractions summing to 1
            (rounded down; the remainder goes to the first parts, one each).
        generator: source of the permutation; None means cnnlab's global generator.

    Returns:
        One ``ArrayDataset`` per entry of ``lengths``.

    Raises:
        ValueError: lengths that do not add up.
    """
    _check_generator(generator, "random_split")
    images, labels, classes = as_arrays(data)
    n = len(labels)
    if lengths and all(isinstance(v, float) for v in lengths):
        if not np.isclose(sum(lengths), 1.0):
            raise ValueError(
                f"random_split: expected fractions summing to 1, found "
                f"{list(lengths)} (sum {sum(lengths)})"
            )
        counts = [int(np.floor(n * f)) for f in lengths]
        for i in range(n - sum(counts)):
            counts[i % len(counts)] += 1
    else:
        counts = [int(v) for v in lengths]
    if sum(counts) != n or any(c < 0 for c in counts):
        raise ValueError(
            f"random_split: expected lengths summing to {n} samples, found {list(lengths)}"
        )
    gen = generator if generator is not None else default_generator()
    order = gen.permutation(n)
    bounds = np.cumsum([0, *counts])
    return [
        ArrayDataset(images[order[a:b]], labels[order[a:b]], classes)
        for a, b in zip(bounds[:-1], bounds[1:], strict=True)
    ]
