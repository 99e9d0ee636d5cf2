"""Datasets and the DataLoader as PyTorch code uses them.

A dataset is anything with ``__len__`` and ``__getitem__(i)``; the loader draws indices
(shuffled once per epoch, without replacement), fetches a batch and collates it into
tensors. A dataset that can fetch a whole batch at once — ``__getitems__(indices)``, as
:class:`TensorDataset` does with one fancy index per tensor — is never looped over item by
item, so in-memory data batches as fast as the arrays allow.

For cnnlab's own array datasets (``cnnlab.data``), :class:`cnnlab.data.DataLoader` yields
NumPy arrays and applies batch transforms; this one yields tensors, as PyTorch's does.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from cnnlab import random as _random
from cnnlab.tensor import Tensor

__all__ = ["DataLoader", "Dataset", "RandomSampler", "SequentialSampler", "Subset",
           "TensorDataset", "default_collate", "random_split"]


def _numpy_generator(generator: Any) -> np.random.Generator:
    """A NumPy generator from ``None`` (cnnlab's global one), a NumPy generator, or a
    :class:`cnnlab.Generator`."""
    if generator is None:
        return _random.get_generator()
    if isinstance(generator, np.random.Generator):
        return generator
    inner = getattr(generator, "numpy_generator", None)
    if isinstance(inner, np.random.Generator):
        return inner
    raise TypeError(f"expected a cnnlab.Generator or np.random.Generator, got "
                    f"{type(generator).__name__}")


class Dataset:
    """Base of map-style datasets: implement ``__len__`` and ``__getitem__``."""

    def __getitem__(self, index: int) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must implement __getitem__")

    def __len__(self) -> int:
        raise NotImplementedError(f"{type(self).__name__} must implement __len__")


class TensorDataset(Dataset):
    """Samples are the i-th rows of equally long tensors (or arrays).

    Example:
        >>> import cnnlab
        >>> ds = TensorDataset(cnnlab.zeros(4, 1, 2, 2), cnnlab.tensor([0, 1, 1, 0]))
        >>> len(ds), ds[1][0].shape, int(ds[1][1])
        (4, (1, 2, 2), 1)
    """

    def __init__(self, *tensors: Any):
        if not tensors:
            raise ValueError("TensorDataset needs at least one tensor")
        self.tensors = tuple(t if isinstance(t, Tensor) else Tensor(np.asarray(t))
                             for t in tensors)
        sizes = {len(t.data) for t in self.tensors}
        if len(sizes) != 1:
            raise ValueError(f"TensorDataset: the tensors' first dimensions differ "
                             f"({[len(t.data) for t in self.tensors]}); they must match")

    def __getitem__(self, index: int) -> tuple[Tensor, ...]:
        return tuple(t[index] for t in self.tensors)

    def __getitems__(self, indices: Sequence[int]) -> tuple[Tensor, ...]:
        idx = np.asarray(indices, dtype=np.int64)
        return tuple(Tensor(t.data[idx], dtype=t.data.dtype) for t in self.tensors)

    def __len__(self) -> int:
        return len(self.tensors[0].data)


class Subset(Dataset):
    """The items of ``dataset`` at ``indices``."""

    def __init__(self, dataset: Any, indices: Sequence[int]):
        self.dataset, self.indices = dataset, np.asarray(indices, dtype=np.int64)

    def __getitem__(self, index: int) -> Any:
        return self.dataset[int(self.indices[index])]

    def __getitems__(self, indices: Sequence[int]) -> Any:
        inner = self.indices[np.asarray(indices, dtype=np.int64)]
        if hasattr(self.dataset, "__getitems__"):
            return self.dataset.__getitems__(inner)
        return [self.dataset[int(i)] for i in inner]

    def __len__(self) -> int:
        return len(self.indices)


def random_split(dataset: Any, lengths: Sequence[float], generator: Any = None) -> list[Subset]:
    """Split at random into non-overlapping subsets of the given lengths (or fractions that
    sum to 1; remainders go one each to the first parts, as in PyTorch).

    Raises:
        ValueError: lengths that do not add up to the dataset's length (or to 1).
    """
    n = len(dataset)
    if all(0 <= f <= 1 for f in lengths) and math.isclose(sum(lengths), 1) and \
            sum(lengths) != n:
        counts = [math.floor(n * f) for f in lengths]
        for i in range(n - sum(counts)):
            counts[i % len(counts)] += 1
        lengths = counts
    if sum(lengths) != n or any(int(x) != x or x < 0 for x in lengths):
        raise ValueError(f"random_split: lengths {list(lengths)} must be whole numbers adding "
                         f"up to the dataset's length {n}, or fractions adding up to 1")
    order = _numpy_generator(generator).permutation(n)
    out, start = [], 0
    for length in lengths:
        out.append(Subset(dataset, order[start:start + int(length)]))
        start += int(length)
    return out


class SequentialSampler:
    """Indices 0, 1, ..., n-1."""

    def __init__(self, data_source: Any):
        self.n = len(data_source)

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.n))

    def __len__(self) -> int:
        return self.n


class RandomSampler:
    """A new permutation of 0..n-1 every epoch (without replacement)."""

    def __init__(self, data_source: Any, generator: Any = None):
        self.n, self.generator = len(data_source), generator

    def __iter__(self) -> Iterator[int]:
        return iter(_numpy_generator(self.generator).permutation(self.n).tolist())

    def __len__(self) -> int:
        return self.n


def default_collate(batch: Any) -> Any:
    """Stack a list of samples into a batch: tensors and arrays along a new first dimension,
    numbers into a tensor (int64 for ints, float32 for floats), tuples and dicts field by
    field; strings stay a list."""
    first = batch[0]
    if isinstance(first, (Tensor, np.ndarray)):
        arrays = [b.data if isinstance(b, Tensor) else np.asarray(b) for b in batch]
        return Tensor(np.stack(arrays), dtype=arrays[0].dtype)
    if isinstance(first, (bool, np.bool_)):
        return Tensor(np.asarray(batch, dtype=np.bool_))
    if isinstance(first, (int, np.integer)):
        return Tensor(np.asarray(batch, dtype=np.int64))
    if isinstance(first, (float, np.floating)):
        return Tensor(np.asarray(batch, dtype=np.float32))
    if isinstance(first, str):
        return list(batch)
    if isinstance(first, dict):
        return {k: default_collate([b[k] for b in batch]) for k in first}
    if isinstance(first, (tuple, list)):
        return type(first)(default_collate(list(field)) for field in zip(*batch, strict=True))
    raise TypeError(f"default_collate: cannot batch samples of type {type(first).__name__}; "
                    "pass a collate_fn")


class DataLoader:
    """Mini-batches of a dataset, as ``torch.utils.data.DataLoader``.

    Args:
        dataset: a map-style dataset (``len`` and indexing).
        batch_size: samples per batch (None: yield single samples, uncollated).
        shuffle: a new random order every epoch (from ``generator``, or cnnlab's global
            generator: ``cnnlab.manual_seed`` makes it repeat).
        sampler: an iterable of indices instead of ``shuffle`` (e.g. a distributed sampler).
        drop_last: drop the last batch when it is smaller.
        collate_fn: turns a list of samples into a batch (default :func:`default_collate`).
        generator: ``cnnlab.Generator`` or ``np.random.Generator`` for shuffling.
        num_workers, pin_memory, persistent_workers, prefetch_factor: accepted for PyTorch
            code and ignored (batches are fetched in the calling thread).

    Example:
        >>> import cnnlab
        >>> ds = TensorDataset(cnnlab.arange(10).float(), cnnlab.arange(10))
        >>> [y.tolist() for _, y in DataLoader(ds, batch_size=4)]
        [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    """

    def __init__(self, dataset: Any, batch_size: int | None = 1, shuffle: bool = False,
                 sampler: Iterable[int] | None = None, batch_sampler: Any = None,
                 num_workers: int = 0, collate_fn: Callable[[list], Any] | None = None,
                 pin_memory: bool = False, drop_last: bool = False,
                 generator: Any = None, **ignored: Any):
        if batch_size is not None and (isinstance(batch_size, bool) or
                                       not isinstance(batch_size, int) or batch_size < 1):
            raise ValueError(f"DataLoader: batch_size must be a positive integer or None, got "
                             f"{batch_size!r}")
        if sampler is not None and shuffle:
            raise ValueError("DataLoader: sampler and shuffle=True cannot be used together; "
                             "a sampler decides the order")
        self.dataset, self.batch_size, self.drop_last = dataset, batch_size, drop_last
        self.collate_fn = collate_fn or default_collate
        self.generator = generator
        self.batch_sampler = batch_sampler
        if sampler is None:
            sampler = RandomSampler(dataset, generator) if shuffle else \
                SequentialSampler(dataset)
        self.sampler = sampler

    def _index_batches(self) -> Iterator[list[int]]:
        if self.batch_sampler is not None:
            yield from self.batch_sampler
            return
        indices = list(self.sampler)
        size = self.batch_size or 1
        stop = len(indices) - len(indices) % size if self.drop_last else len(indices)
        for start in range(0, stop, size):
            yield indices[start:start + size]

    def __iter__(self) -> Iterator[Any]:
        fetch_many = getattr(self.dataset, "__getitems__", None)
        for idx in self._index_batches():
            if self.batch_size is None and self.batch_sampler is None:
                yield self.dataset[idx[0]]
            elif fetch_many is not None:
                # A list of samples, or (TensorDataset) a ready batch: one fancy index per
                # tensor instead of a loop over the samples.
                batch = fetch_many(idx)
                yield self.collate_fn(batch) if isinstance(batch, list) else batch
            else:
                yield self.collate_fn([self.dataset[i] for i in idx])

    def __len__(self) -> int:
        if self.batch_sampler is not None:
            return len(self.batch_sampler)
        n = len(self.sampler)
        size = self.batch_size or 1
        return n // size if self.drop_last else math.ceil(n / size)
