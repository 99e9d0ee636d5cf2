"""Digit scenes: real handwritten digits pasted onto a blank canvas, with every answer known.

Each scene is a dark canvas holding 1 to 4 (by default) real digits at random places, no two
of them touching, so one image carries the targets of several tasks at once: a class per
pixel (segmentation), a box and a label per digit (detection), three key points per digit,
and a caption (``cnnlab.data.captions``).

Two sources:

* ``"mnist"``: 28x28 MNIST digits on a 64x64 canvas. The training scenes paste only MNIST
  training digits, the test scenes only MNIST test digits.
* ``"digits"``: the 8x8 UCI digits shipped with cnnlab on a 32x32 canvas (works offline).
  The digits are split into training and test digits exactly as ``Digits()`` splits them
  (a stratified 20% of each class, seed 0), so no digit appears in both.

Conventions (the same everywhere in cnnlab's dense tasks):

* **Ink**: a pixel of a digit whose value is at least ``threshold`` (default 0.5). Fainter
  pixels are pasted into the image but belong to no digit in the mask.
* **Mask**: ``0`` is background, digit ``d`` is ``d + 1`` on its ink pixels.
* **Boxes** ``x0, y0, x1, y1`` in pixels, torchvision's convention: pixel column ``c``
  covers ``[c, c + 1)``, so a box is the tight box of its digit's ink with ``x1, y1`` the
  far edges (exclusive): the ink occupies columns ``x0 .. x1 - 1`` and rows
  ``y0 .. y1 - 1``, and ``x1 - x0`` is the width.
* **Points** ``(x, y)`` in the same continuous frame: the centre of pixel (row r, column c)
  is ``(c + 0.5, r + 0.5)``. Key points, in this order (``KEYPOINT_NAMES``):
  ``center``, the centre of mass of the ink weighted by intensity; ``top``, the centre of
  the topmost ink row (``y = y0 + 0.5``, ``x`` the mean of the centres of the ink pixels
  in that row); ``bottom``, the same for the lowest ink row (``y = y1 - 0.5``).
* **Placement**: each digit is cut to its support (the box of its non-zero pixels) and
  placed at a uniformly random position on the canvas, drawn again until its support is at
  least ``gap`` pixels away from the supports already placed (a scene that cannot be
  finished is drawn again from its first digit). Boxes therefore never overlap and no
  pasted pixel is ever written twice.
* **Order**: the digits of a scene are stored in reading order (``captions.reading_order``:
  rows top to bottom, each left to right), the order its caption names them in.
* **Determinism**: a scene set depends only on its arguments; the random stream is
  ``np.random.default_rng([seed, 0 for train / 1 for test])``.

Variable-length fields (``boxes``, ``labels``, ``keypoints``, ``sources``) are ``Ragged``:
one flat array plus offsets. ``scenes[i]`` gives one scene's arrays; ``scenes.get_batch(idx)``
(what ``DataLoader`` calls) gives a batch.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from cnnlab.data.captions import (
    Vocabulary,
    _reading_order_padded,
    caption_length,
    captions_for,
)
from cnnlab.data.ragged import Ragged

__all__ = ["KEYPOINT_NAMES", "SOURCES", "DigitScenes"]

KEYPOINT_NAMES = ("center", "top", "bottom")
# source -> (canvas size, description); the digit size comes from the data.
SOURCES = {
    "mnist": (64, "MNIST"),
    "digits": (32, "UCI"),
}
# Candidate positions drawn per digit and round, and rounds before giving up: a scene that
# fits at all is nearly always finished in the first round or two.
CANDIDATES = 16
MAX_ROUNDS = 100
# Scenes pasted per step: bounds the temporary index arrays (~ 2.5 digits x 150 pixels each).
PASTE_CHUNK = 4096


def _positive_int(value: Any, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"DigitScenes: expected {name} to be an integer >= {minimum}, "
                         f"found {value!r}")
    return int(value)


def _canvas(value: Any) -> tuple[int, int]:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = (value, value)
    if (
        not isinstance(value, (tuple, list))
        or len(value) != 2
        or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value)
    ):
        raise ValueError(f"DigitScenes: expected canvas_size as an integer or (H, W), "
                         f"found {value!r}")
    return int(value[0]), int(value[1])


def _extent(mask: np.ndarray) -> tuple[np.ndarray, ...]:
    """Tight box ``(y0, x0, y1, x1)`` (ends exclusive) of each ``(n, h, w)`` mask."""
    h, w = mask.shape[1:]
    rows, cols = mask.any(axis=2), mask.any(axis=1)
    y0 = np.argmax(rows, axis=1)
    y1 = h - np.argmax(rows[:, ::-1], axis=1)
    x0 = np.argmax(cols, axis=1)
    x1 = w - np.argmax(cols[:, ::-1], axis=1)
    return y0, x0, y1, x1


class _Digits:
    """The source digits, measured once: supports, ink boxes, key points and the non-zero
    pixels as a sparse list (what pasting copies)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, threshold: float) -> None:
        n, h, w = images.shape
        self.labels = labels
        self.size = (h, w)
        nonzero = images > 0
        ink = images >= np.float32(threshold)
        self.has_ink = ink.any(axis=(1, 2))
        self.support = _extent(nonzero)
        self.ink_box = _extent(ink)
        # Key points in the digit's own frame (pixel centres at c + 0.5).
        centres_x = np.arange(w, dtype=np.float64) + 0.5
        centres_y = np.arange(h, dtype=np.float64) + 0.5
        weight = np.where(ink, images, np.float32(0))
        total = np.maximum(weight.sum(axis=(1, 2), dtype=np.float64), 1e-12)
        cx = weight.sum(axis=1, dtype=np.float64) @ centres_x / total
        cy = weight.sum(axis=2, dtype=np.float64) @ centres_y / total
        iy0, _, iy1, _ = self.ink_box
        every = np.arange(n)
        top_row = ink[every, iy0].astype(np.float64)
        bottom_row = ink[every, iy1 - 1].astype(np.float64)
        tx = top_row @ centres_x / np.maximum(top_row.sum(axis=1), 1)
        bx = bottom_row @ centres_x / np.maximum(bottom_row.sum(axis=1), 1)
        self.keypoints = np.stack(
            [np.stack([cx, cy], -1), np.stack([tx, iy0 + 0.5], -1),
             np.stack([bx, iy1 - 0.5], -1)], axis=1
        )  # (n, 3, 2) float64, converted once placed
        digit, row, col = np.nonzero(nonzero)
        self.values = images[digit, row, col]
        self.is_ink = self.values >= np.float32(threshold)
        sy0, sx0 = self.support[0], self.support[1]
        self.row = (row - sy0[digit]).astype(np.int64)
        self.col = (col - sx0[digit]).astype(np.int64)
        self.count = np.bincount(digit, minlength=n).astype(np.int64)
        self.start = np.concatenate([[0], np.cumsum(self.count)[:-1]]).astype(np.int64)


class DigitScenes:
    """Scenes of real handwritten digits on a blank canvas, for segmentation, detection,
    key points and captioning (see the module's description for every convention).

    Args:
        source: ``"mnist"`` (28x28 digits, 64x64 canvas) or ``"digits"`` (the built-in
            8x8 UCI digits, 32x32 canvas, offline).
        train: scenes of training digits (True) or of test digits (False).
        num_scenes: how many scenes (default: as many as the split has digits: 60,000 /
            10,000 for MNIST, 1,438 / 359 for the UCI digits).
        min_digits, max_digits: digits per scene, drawn uniformly in this range.
        canvas_size: ``H`` or ``(H, W)`` (default 64 for MNIST, 32 for UCI digits); at
            least the size of one digit.
        gap: empty pixels kept between the supports of two digits (0 lets them touch).
        threshold: ink level in (0, 1]: pixels at or above it are a digit's ink (mask,
            boxes, key points).
        seed: seed of the scenes (the train and test splits draw from different streams).
        captions: build the captions now and add their ids (``caption_ids``) to every
            sample and batch; ``captions`` text is available either way (built on first
            use).
        root, download: where the MNIST files are and whether to fetch them, as for
            ``MNIST`` (ignored for ``"digits"``).

    Shape:
        ``.images`` ``(N, 1, H, W)`` float32 in [0, 1], light ink on a dark canvas;
        ``.masks`` ``(N, H, W)`` uint8 (0 background, digit d as d + 1; samples and
        batches give int64); ``.num_digits`` ``(N,)`` int64; ``.boxes`` ``Ragged`` of
        ``(K, 4)`` float32; ``.labels`` ``Ragged`` of ``(K,)`` int64; ``.keypoints``
        ``Ragged`` of ``(K, 3, 2)`` float32; ``.sources`` ``Ragged`` of ``(K,)`` int64,
        the index of each pasted digit in its source split.
        ``scenes[i]`` is ``(image (1, H, W), target)`` with target keys ``mask`` (H, W),
        ``boxes``, ``labels``, ``keypoints`` (and ``caption_ids`` (T,) with
        ``captions=True``); ``scenes[idx]`` for a slice or index array is
        ``get_batch(idx)``.

    Raises:
        ValueError: an unknown source, digit counts outside 1 <= min <= max, a canvas
            smaller than a digit, a negative gap, a threshold outside (0, 1], or digits
            that cannot be placed without overlapping (the message says how many scenes
            failed and what to change).
        DatasetNotFoundError, DataFormatError: MNIST files missing or damaged.

    Example:
        >>> scenes = DigitScenes("digits", train=False)
        >>> scenes
        DigitScenes(source='digits', split='test', n=359, canvas=(32, 32), digits=1..4, seed=0)
        >>> image, target = scenes[0]
        >>> image.shape, target["mask"].shape, target["boxes"].shape, target["keypoints"].shape
        ((1, 32, 32), (32, 32), (3, 4), (3, 3, 2))
        >>> target["labels"].tolist(), target["boxes"][0].tolist()
        ([7, 2, 9], [2.0, 1.0, 6.0, 9.0])
        >>> scenes.captions[0]
        'a 7 at the top left, a 2 down to its right and a 9 down to its left'
    """

    def __init__(
        self,
        source: str = "digits",
        train: bool = True,
        *,
        num_scenes: int | None = None,
        min_digits: int = 1,
        max_digits: int = 4,
        canvas_size: int | tuple[int, int] | None = None,
        gap: int = 1,
        threshold: float = 0.5,
        seed: int = 0,
        captions: bool = False,
        root: str | os.PathLike | None = None,
        download: bool = False,
    ) -> None:
        if source not in SOURCES:
            raise ValueError(f"DigitScenes: expected source 'mnist' or 'digits', found {source!r}")
        self._check(min_digits, max_digits, gap, threshold, num_scenes, seed)
        if source == "mnist":
            from cnnlab.data.mnist import MNIST

            digits = MNIST(root=root, train=train, download=download)
        else:
            from cnnlab.data.digits import Digits

            digits = Digits(train=train)
        self._build(
            digits.images[:, 0], digits.labels, source=source, train=train,
            num_scenes=num_scenes, min_digits=min_digits, max_digits=max_digits,
            canvas_size=SOURCES[source][0] if canvas_size is None else canvas_size,
            gap=gap, threshold=threshold, seed=seed, captions=captions,
        )

    @classmethod
    def from_digits(
        cls,
        images: Any,
        labels: Any,
        *,
        canvas_size: int | tuple[int, int],
        train: bool = True,
        num_scenes: int | None = None,
        min_digits: int = 1,
        max_digits: int = 4,
        gap: int = 1,
        threshold: float = 0.5,
        seed: int = 0,
        captions: bool = False,
    ) -> DigitScenes:
        """Scenes made of any digits: ``images`` ``(n, h, w)`` or ``(n, 1, h, w)`` in
        [0, 1] (light on dark), ``labels`` ``(n,)`` in 0..9. Other arguments as for the
        constructor; ``train`` only picks the random stream.

        Raises:
            ValueError: as the constructor, or images / labels of the wrong shape or range.
        """
        images = np.asarray(images)
        labels = np.asarray(labels)
        if images.ndim == 4 and images.shape[1] == 1:
            images = images[:, 0]
        if images.ndim != 3 or images.shape[0] == 0:
            raise ValueError(f"DigitScenes.from_digits: expected images of shape (n, h, w) or "
                             f"(n, 1, h, w) with n >= 1, found shape {images.shape}")
        if labels.shape != (images.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"DigitScenes.from_digits: expected integer labels of shape "
                             f"({images.shape[0]},), found {labels.dtype} {labels.shape}")
        if labels.min() < 0 or labels.max() > 9:
            raise ValueError(f"DigitScenes.from_digits: expected labels 0..9, found "
                             f"{labels.min()}..{labels.max()}")
        if not (np.all(images >= 0) and np.all(images <= 1)):
            raise ValueError(f"DigitScenes.from_digits: expected pixel values in [0, 1], found "
                             f"{images.min()}..{images.max()}; divide 8-bit images by 255")
        self = cls.__new__(cls)
        self._check(min_digits, max_digits, gap, threshold, num_scenes, seed)
        self._build(
            images.astype(np.float32, copy=False), labels.astype(np.int64), source="custom",
            train=train, num_scenes=num_scenes, min_digits=min_digits, max_digits=max_digits,
            canvas_size=canvas_size, gap=gap, threshold=threshold, seed=seed, captions=captions,
        )
        return self

    @staticmethod
    def _check(min_digits: Any, max_digits: Any, gap: Any, threshold: Any,
               num_scenes: Any, seed: Any) -> None:
        _positive_int(seed, "seed", minimum=0)
        lo = _positive_int(min_digits, "min_digits")
        hi = _positive_int(max_digits, "max_digits")
        if lo > hi:
            raise ValueError(f"DigitScenes: expected min_digits <= max_digits, found "
                             f"{lo} > {hi}")
        _positive_int(gap, "gap", minimum=0)
        if num_scenes is not None:
            _positive_int(num_scenes, "num_scenes")
        if (
            isinstance(threshold, bool)
            or not isinstance(threshold, (float, int, np.floating))
            or not 0.0 < float(threshold) <= 1.0
        ):
            raise ValueError(f"DigitScenes: expected threshold in (0, 1], found {threshold!r}")

    # ------------------------------------------------------------------------- building

    def _build(self, images: np.ndarray, labels: np.ndarray, *, source: str, train: bool,
               num_scenes: int | None, min_digits: int, max_digits: int,
               canvas_size: Any, gap: int, threshold: float, seed: int,
               captions: bool) -> None:
        height, width = _canvas(canvas_size)
        h, w = images.shape[1:]
        if height < h or width < w:
            raise ValueError(f"DigitScenes: expected a canvas at least as large as one digit "
                             f"({h}x{w}), found canvas_size {height}x{width}")
        self.source = source
        self.train = bool(train)
        self.seed = seed
        self.min_digits, self.max_digits = int(min_digits), int(max_digits)
        self.gap = int(gap)
        self.threshold = float(threshold)
        self.canvas_size = (height, width)
        self.digit_size = (h, w)
        self.classes = [str(d) for d in range(10)]
        self.keypoint_names = list(KEYPOINT_NAMES)
        self.vocabulary = Vocabulary()
        self.notes: list[str] = []

        digits = _Digits(images, labels, self.threshold)
        pool = np.flatnonzero(digits.has_ink)
        if pool.size == 0:
            raise ValueError(f"DigitScenes: no source digit has a pixel at or above threshold "
                             f"{self.threshold}; lower the threshold")
        if pool.size < len(labels):
            self.notes.append(f"left out {len(labels) - pool.size} of {len(labels)} source "
                              f"digits with no pixel at or above {self.threshold}")
        n = len(labels) if num_scenes is None else int(num_scenes)
        rng = np.random.default_rng([int(seed), 0 if self.train else 1])
        count = rng.integers(self.min_digits, self.max_digits + 1, size=n)
        total = int(count.sum())
        # Each source digit is used once before any is used again (a fresh permutation
        # per pass over the pool).
        passes = -(-total // pool.size)
        chosen = np.concatenate([rng.permutation(pool) for _ in range(passes)])[:total]

        offsets = np.zeros(n + 1, np.int64)
        np.cumsum(count, out=offsets[1:])
        slots = np.arange(self.max_digits)[None, :] < count[:, None]  # (n, max_digits)
        sy0, sx0, sy1, sx1 = (a[chosen] for a in digits.support)
        size_h = np.zeros(slots.shape, np.int64)
        size_w = np.zeros(slots.shape, np.int64)
        size_h[slots], size_w[slots] = sy1 - sy0, sx1 - sx0
        py, px = self._place(rng, count, size_h, size_w)
        top, left = py[slots], px[slots]  # where each support's corner lands, scene-major

        iy0, ix0, iy1, ix1 = (a[chosen] for a in digits.ink_box)
        dy, dx = top - sy0, left - sx0  # digit frame -> canvas
        boxes = np.stack([ix0 + dx, iy0 + dy, ix1 + dx, iy1 + dy], axis=1).astype(np.float64)
        keypoints = digits.keypoints[chosen] + np.stack([dx, dy], axis=1)[:, None, :]

        # Store each scene's digits in reading order.
        padded = np.zeros((*slots.shape, 4), np.float64)
        padded[slots] = boxes
        order, _ = _reading_order_padded(padded, slots)
        perm = (offsets[:-1, None] + order)[slots]
        chosen, top, left = chosen[perm], top[perm], left[perm]
        boxes, keypoints = boxes[perm], keypoints[perm]
        scene_of = np.repeat(np.arange(n, dtype=np.int64), count)

        self.images = np.zeros((n, 1, height, width), np.float32)
        self.masks = np.zeros((n, height, width), np.uint8)
        self._paste(digits, chosen, scene_of, top, left, offsets)

        self.num_digits = count.astype(np.int64)
        self.boxes = Ragged(boxes.astype(np.float32), offsets)
        self.labels = Ragged(digits.labels[chosen].astype(np.int64), offsets)
        self.keypoints = Ragged(keypoints.astype(np.float32), offsets)
        self.sources = Ragged(chosen.astype(np.int64), offsets)
        uses = np.bincount(chosen, minlength=len(labels))[pool]
        name = SOURCES[source][1] if source in SOURCES else "source"
        split = "training" if self.train else "test"
        self.notes.append(f"pasted {total:,} {name} {split} digits into {n:,} scenes (each "
                          f"digit used {uses.min()} to {uses.max()} times)")
        self._captions: list[str] | None = None
        self.with_captions = bool(captions)
        self.caption_ids = self.encode_captions() if captions else None

    def _place(self, rng: np.random.Generator, count: np.ndarray, size_h: np.ndarray,
               size_w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Top-left corners ``(n, max_digits)`` of the supports, drawn digit by digit (each
        step vectorized over all unfinished scenes)."""
        height, width = self.canvas_size
        gap = self.gap
        py = np.zeros(size_h.shape, np.int64)
        px = np.zeros(size_h.shape, np.int64)
        pending = np.arange(len(count))
        for _ in range(MAX_ROUNDS):
            if pending.size == 0:
                return py, px
            failed = np.zeros(pending.size, bool)
            for k in range(self.max_digits):
                active = np.flatnonzero((count[pending] > k) & ~failed)
                if active.size == 0:
                    break
                s = pending[active]
                h, w = size_h[s, k][:, None], size_w[s, k][:, None]
                y = rng.integers(0, height - h + 1, size=(s.size, CANDIDATES))
                x = rng.integers(0, width - w + 1, size=(s.size, CANDIDATES))
                ok = np.ones(y.shape, bool)
                for j in range(k):
                    y0, x0 = py[s, j][:, None], px[s, j][:, None]
                    y1, x1 = y0 + size_h[s, j][:, None], x0 + size_w[s, j][:, None]
                    ok &= ~((y < y1 + gap) & (y0 < y + h + gap)
                            & (x < x1 + gap) & (x0 < x + w + gap))
                found = ok.any(axis=1)
                first = np.argmax(ok, axis=1)
                rows = np.flatnonzero(found)
                py[s[rows], k] = y[rows, first[rows]]
                px[s[rows], k] = x[rows, first[rows]]
                failed[active[~found]] = True
            pending = pending[failed]
        if pending.size == 0:
            return py, px
        worst = pending[0]
        raise ValueError(
            f"DigitScenes: could not place the digits of {pending.size} of {len(count)} scenes "
            f"without overlap after {MAX_ROUNDS} tries each (e.g. scene {worst}: "
            f"{count[worst]} digits of up to {self.digit_size[0]}x{self.digit_size[1]} "
            f"pixels, gap {gap}, on a {height}x{width} canvas); use a larger canvas_size, "
            "a smaller max_digits or a smaller gap"
        )

    def _paste(self, digits: _Digits, chosen: np.ndarray, scene_of: np.ndarray,
               top: np.ndarray, left: np.ndarray, offsets: np.ndarray) -> None:
        """Copy every non-zero source pixel to its place (one indexed assignment per chunk
        of scenes: supports never overlap, so no pixel is written twice)."""
        height, width = self.canvas_size
        flat_image = self.images.reshape(-1)
        flat_mask = self.masks.reshape(-1)
        # A source pixel's place relative to its support's corner, as a flat offset.
        shift = digits.row * width + digits.col
        corner = (scene_of * height + top) * width + left  # per pasted digit
        labels = (digits.labels[chosen] + 1).astype(np.uint8)
        n = len(offsets) - 1
        for first in range(0, n, PASTE_CHUNK):
            a, b = offsets[first], offsets[min(n, first + PASTE_CHUNK)]
            counts = digits.count[chosen[a:b]]
            local = np.zeros(b - a + 1, np.int64)
            np.cumsum(counts, out=local[1:])
            pixel = np.repeat(digits.start[chosen[a:b]] - local[:-1], counts)
            pixel += np.arange(local[-1], dtype=np.int64)
            where = np.repeat(corner[a:b], counts)
            where += shift[pixel]
            flat_image[where] = digits.values[pixel]
            ink = digits.is_ink[pixel]
            flat_mask[where[ink]] = np.repeat(labels[a:b], counts)[ink]

    # ------------------------------------------------------------------------- access

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image."""
        return tuple(int(s) for s in self.images.shape[1:])  # type: ignore[return-value]

    def __getitem__(self, index: Any) -> tuple[np.ndarray, dict[str, Any]]:
        if not isinstance(index, (int, np.integer)) or isinstance(index, bool):
            return self.get_batch(index)
        n = len(self)
        if not -n <= int(index) < n:
            raise IndexError(f"DigitScenes: index {int(index)} out of range for {n} scenes")
        i = int(index) % n
        target = {
            "mask": self.masks[i].astype(np.int64),
            "boxes": self.boxes[i],
            "labels": self.labels[i],
            "keypoints": self.keypoints[i],
        }
        if self.caption_ids is not None:
            target["caption_ids"] = self.caption_ids[i]
        return self.images[i], target

    def get_batch(self, indices: Any) -> tuple[np.ndarray, dict[str, Any]]:
        """Images and targets of several scenes (what ``DataLoader`` yields).

        Args:
            indices: an index array, a slice or a boolean mask over the scenes.

        Returns:
            ``(images (B, 1, H, W) float32, targets)``; targets holds ``masks`` (B, H, W)
            int64, ``num_digits`` (B,) int64, ``boxes``, ``labels`` and ``keypoints`` as
            ``Ragged`` batches (``.data`` flat with ``.item_index`` giving each digit's
            position in the batch, or ``.padded()``), and ``caption_ids`` (B, T) int64
            when the scenes were built with ``captions=True``.
        """
        idx = np.arange(len(self))[indices]
        targets: dict[str, Any] = {
            "masks": self.masks[idx].astype(np.int64),
            "num_digits": self.num_digits[idx],
            "boxes": self.boxes[idx],
            "labels": self.labels[idx],
            "keypoints": self.keypoints[idx],
        }
        if self.caption_ids is not None:
            targets["caption_ids"] = self.caption_ids[idx]
        return self.images[idx], targets

    def subset(self, indices: Any) -> DigitScenes:
        """The scenes at ``indices`` (a slice, index array or boolean mask) as a new
        ``DigitScenes`` with the same settings (for a validation split)."""
        idx = np.arange(len(self))[indices]
        part = object.__new__(type(self))
        part.__dict__.update(self.__dict__)
        part.images = self.images[idx]
        part.masks = self.masks[idx]
        part.num_digits = self.num_digits[idx]
        for name in ("boxes", "labels", "keypoints", "sources"):
            setattr(part, name, getattr(self, name)[idx])
        part._captions = None if self._captions is None else [self._captions[i] for i in idx]
        part.caption_ids = None if self.caption_ids is None else self.caption_ids[idx]
        part.notes = [*self.notes, f"a subset of {len(idx):,} of {len(self):,} scenes"]
        return part

    # ------------------------------------------------------------------------ captions

    @property
    def captions(self) -> list[str]:
        """One caption per scene (``cnnlab.data.captions``), built on first use."""
        if self._captions is None:
            self._captions = captions_for(self.boxes, self.labels, self.canvas_size)
        return self._captions

    @property
    def caption_max_len(self) -> int:
        """Ids per encoded caption: the longest possible caption for ``max_digits`` plus
        ``<start>`` and ``<end>`` (the same for the train and test scenes)."""
        return caption_length(self.max_digits) + 2

    def encode_captions(self, max_len: int | None = None,
                        vocabulary: Vocabulary | None = None) -> np.ndarray:
        """The captions as ids: ``(N, T)`` int64, each row ``<start>`` words ``<end>``
        then ``<pad>`` (0).

        Args:
            max_len: T (default ``caption_max_len``).
            vocabulary: default ``self.vocabulary``.

        Raises:
            ValueError: a caption longer than ``max_len``.
        """
        vocab = self.vocabulary if vocabulary is None else vocabulary
        return vocab.encode_batch(self.captions,
                                  self.caption_max_len if max_len is None else max_len)

    def plot(self, path: str | os.PathLike, indices: Any = None, **kwargs: Any) -> Any:
        """Draw scenes with their masks, boxes, key points and captions to a PNG; see
        ``cnnlab.data.draw.plot_scenes`` for the options."""
        from cnnlab.data.draw import plot_scenes

        return plot_scenes(self, path, indices=indices, **kwargs)

    def __repr__(self) -> str:
        split = "train" if self.train else "test"
        return (
            f"DigitScenes(source={self.source!r}, split={split!r}, n={len(self)}, "
            f"canvas={self.canvas_size}, digits={self.min_digits}..{self.max_digits}, "
            f"seed={self.seed})"
        )
