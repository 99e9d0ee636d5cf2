"""Per-item arrays of different lengths, kept as one flat array and offsets.

A scene holds one to a few digits, so its boxes are ``(K, 4)`` with K varying from scene to
scene. ``Ragged`` stores all of them in one ``(M, 4)`` array plus ``offsets``: item ``i``
owns rows ``offsets[i]:offsets[i + 1]``. Indexing with one integer gives that item's rows (a
view); indexing with a slice or an index array gives another ``Ragged`` (a batch), gathered
with array arithmetic, never a loop over items. A batch is used either flat (``.data`` with
``.item_index``, which says which item each row belongs to: what a scatter into per-image
target maps needs) or padded to a rectangle (``.padded()``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

__all__ = ["Ragged"]


class Ragged:
    """Items of different lengths: ``data`` ``(M, ...)`` split by ``offsets`` ``(N + 1,)``.

    Args:
        data: the rows of all items, one after the other.
        offsets: non-decreasing integers from 0 to ``len(data)``; item ``i`` is
            ``data[offsets[i]:offsets[i + 1]]``.

    Shape:
        ``len(r)`` is N (items); ``r[i]`` is ``(K_i, ...)``; ``r.data`` is ``(M, ...)``.

    Raises:
        ValueError: offsets that are not 1-D, do not start at 0, decrease, or do not end at
            ``len(data)``.

    Example:
        >>> import numpy as np
        >>> r = Ragged.from_lengths(np.arange(6), [2, 0, 3, 1])
        >>> len(r), r[2].tolist(), r.lengths.tolist()
        (4, [2, 3, 4], [2, 0, 3, 1])
        >>> batch = r[[3, 0]]
        >>> batch.data.tolist(), batch.item_index.tolist()
        ([5, 0, 1], [0, 1, 1])
        >>> values, valid = batch.padded(fill=-1)
        >>> values.tolist(), valid.tolist()
        ([[5, -1], [0, 1]], [[True, False], [True, True]])
    """

    def __init__(self, data: Any, offsets: Any) -> None:
        data = np.asarray(data)
        offsets = np.asarray(offsets)
        if data.ndim == 0:
            raise ValueError("Ragged: expected data with at least one axis (rows), found a scalar")
        if (
            offsets.ndim != 1
            or offsets.size == 0
            or not np.issubdtype(offsets.dtype, np.integer)
        ):
            raise ValueError(
                f"Ragged: expected offsets as a 1-D integer array of N + 1 values, found "
                f"shape {offsets.shape} dtype {offsets.dtype}"
            )
        offsets = offsets.astype(np.int64, copy=False)
        if offsets[0] != 0 or offsets[-1] != data.shape[0] or np.any(np.diff(offsets) < 0):
            raise ValueError(
                f"Ragged: expected offsets rising from 0 to len(data) = {data.shape[0]}, found "
                f"{offsets[:3].tolist()}...{offsets[-1:].tolist()}"
            )
        self.data = data
        self.offsets = offsets

    @classmethod
    def from_lengths(cls, data: Any, lengths: Any) -> Ragged:
        """Split ``data`` into consecutive items of the given lengths."""
        lengths = np.asarray(lengths, dtype=np.int64)
        offsets = np.zeros(lengths.size + 1, np.int64)
        np.cumsum(lengths, out=offsets[1:])
        return cls(data, offsets)

    @classmethod
    def from_list(cls, items: Sequence[Any], dtype: Any = None, row_shape: tuple = ()) -> Ragged:
        """Stack a list of ``(K_i, ...)`` arrays; ``row_shape`` and ``dtype`` give the
        shape of an empty result (when ``items`` is empty)."""
        arrays = [np.asarray(a, dtype=dtype) for a in items]
        if arrays:
            data = np.concatenate(arrays, axis=0)
        else:
            data = np.zeros((0, *row_shape), dtype=dtype)
        return cls.from_lengths(data, [a.shape[0] for a in arrays])

    def __len__(self) -> int:
        return int(self.offsets.shape[0] - 1)

    @property
    def lengths(self) -> np.ndarray:
        """``(N,)`` int64: the number of rows of each item."""
        return np.diff(self.offsets)

    @property
    def item_index(self) -> np.ndarray:
        """``(M,)`` int64: for each row of ``data``, the item it belongs to."""
        return np.repeat(np.arange(len(self), dtype=np.int64), self.lengths)

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, (int, np.integer)):
            n = len(self)
            i = int(index)
            if not -n <= i < n:
                raise IndexError(f"Ragged: index {i} out of range for {n} items")
            i %= n
            return self.data[self.offsets[i] : self.offsets[i + 1]]
        idx = np.arange(len(self))[index]  # slices, boolean masks and index arrays alike
        lengths = self.lengths[idx]
        out_offsets = np.zeros(idx.size + 1, np.int64)
        np.cumsum(lengths, out=out_offsets[1:])
        # Row j of the result comes from start_of_its_item + (j - first_row_of_its_item).
        shift = np.repeat(self.offsets[idx] - out_offsets[:-1], lengths)
        rows = shift + np.arange(out_offsets[-1], dtype=np.int64)
        return Ragged(self.data[rows], out_offsets)

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(len(self)):
            yield self.data[self.offsets[i] : self.offsets[i + 1]]

    def tolist(self) -> list:
        """One nested list per item."""
        return [item.tolist() for item in self]

    def padded(self, fill: Any = 0, length: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The items as one rectangle, filled where an item is shorter.

        Args:
            fill: the value of the missing rows.
            length: rows per item (default: the longest item's length).

        Returns:
            ``(values (N, L, ...), valid (N, L) bool)``.

        Raises:
            ValueError: ``length`` shorter than the longest item.
        """
        longest = int(self.lengths.max()) if len(self) else 0
        length = longest if length is None else int(length)
        if length < longest:
            raise ValueError(
                f"Ragged.padded: expected length >= {longest} (the longest item), found {length}"
            )
        values = np.full((len(self), length, *self.data.shape[1:]), fill, dtype=self.data.dtype)
        valid = np.zeros((len(self), length), dtype=bool)
        slot = np.arange(self.data.shape[0], dtype=np.int64) - np.repeat(
            self.offsets[:-1], self.lengths
        )
        item = self.item_index
        values[item, slot] = self.data
        valid[item, slot] = True
        return values, valid

    def __repr__(self) -> str:
        return (
            f"Ragged(items={len(self)}, rows={self.data.shape[0]}, "
            f"row_shape={tuple(self.data.shape[1:])}, dtype={self.data.dtype})"
        )
