"""MNIST and Fashion-MNIST: 28x28 grayscale images in ten classes, stored as IDX files.

Files (either ``.gz`` or decompressed, found by name, checked by content)::

    train-images-idx3-ubyte[.gz]   train-labels-idx1-ubyte[.gz]   (60,000 samples)
    t10k-images-idx3-ubyte[.gz]    t10k-labels-idx1-ubyte[.gz]    (10,000 samples)

Files already on disk are validated by their content (magic numbers, dimensions, exact
sizes, matching counts), not by the checksum of the ``.gz``: a copy that was decompressed
or re-compressed is still the same data. Downloads are checked against the published
checksums (see ``cnnlab.data.download``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from cnnlab.data import download as dl
from cnnlab.data.errors import DataFormatError
from cnnlab.data.idx import read_idx_pair
from cnnlab.data.loader import ArrayDataset

__all__ = ["FashionMNIST", "MNIST"]


def to_unit_float(pixels: np.ndarray) -> np.ndarray:
    """uint8 0..255 -> float32 0..1 (one float32 array, no float64 detour)."""
    out = pixels.astype(np.float32)
    out /= np.float32(255.0)
    return out


def _find(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


class _IDXDataset(ArrayDataset):
    name = ""
    class_names: list[str] = []
    image_size = (28, 28)

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        train: bool = True,
        download: bool = False,
    ) -> None:
        self.train = bool(train)
        self.notes: list[str] = []
        split = "train" if train else "t10k"
        stems = [f"{split}-images-idx3-ubyte", f"{split}-labels-idx1-ubyte"]
        folders = dl.candidate_folders(root, self.name)
        found = self._locate(folders, stems)
        if found is None:
            target = folders[0]
            missing = [s + ".gz" for s in stems if _find(target, s) is None]
            if not download:
                raise dl.missing_files_error(
                    self.name,
                    missing,
                    target,
                    reason=f"{type(self).__name__}: {', '.join(missing)} not found in "
                    + " or ".join(str(f) for f in folders),
                )
            dl.fetch(self.name, missing, target)
            found = self._locate([target], stems)
            if found is None:  # fetch saves every file or raises; guard against a race
                raise dl.missing_files_error(self.name, missing, target)
        self.root, (images_path, labels_path) = found
        self.files = [images_path, labels_path]
        images, labels = read_idx_pair(images_path, labels_path)
        if images.shape[1:] != self.image_size:
            raise DataFormatError(
                f"{images_path}: expected {self.image_size[0]}x{self.image_size[1]} images "
                f"for {type(self).__name__}, found {images.shape[1]}x{images.shape[2]}"
            )
        if labels.size and labels.max() >= len(self.class_names):
            raise DataFormatError(
                f"{labels_path}: expected labels 0..{len(self.class_names) - 1}, found "
                f"{int(labels.max())} at index {int(np.argmax(labels))}; the file is damaged "
                "or from another dataset"
            )
        super().__init__(to_unit_float(images)[:, None], labels, self.class_names)

    @staticmethod
    def _locate(folders: list[Path], stems: list[str]) -> tuple[Path, list[Path]] | None:
        for folder in folders:
            paths = [_find(folder, stem) for stem in stems]
            if all(p is not None for p in paths):
                return folder, paths  # type: ignore[return-value]
        return None

    def __repr__(self) -> str:
        split = "train" if self.train else "test"
        return (
            f"{type(self).__name__}(split={split!r}, n={len(self)}, shape=(1, 28, 28), "
            f"root={str(self.root)!r})"
        )


class MNIST(_IDXDataset):
    """The MNIST handwritten digits (LeCun, Cortes and Burges).

    Args:
        root: folder holding the four IDX files (also looked for in ``root/mnist``);
            None means ``$CNNLAB_DATA/mnist``, else ``~/.cache/cnnlab/mnist``.
        train: the 60,000 training samples (True) or the 10,000 test samples (False).
        download: fetch missing files (checksums verified) instead of raising.

    Shape:
        ``.images`` ``(N, 1, 28, 28)`` float32 in [0, 1]; ``.labels`` ``(N,)`` int64;
        ``dataset[i]`` is ``(image (1, 28, 28), label)``.

    Raises:
        DatasetNotFoundError: files missing and ``download`` False; the message names
            each file, the folder to put it in and the URLs it comes from.
        DataFormatError: a file is not valid IDX (wrong magic, truncated, extra bytes,
            counts that differ between images and labels).
        DownloadError, ChecksumError: downloading failed.
    """

    name = "mnist"
    class_names = [str(d) for d in range(10)]


class FashionMNIST(_IDXDataset):
    """Fashion-MNIST (Xiao, Rasul and Vollgraf): Zalando article images, MNIST's format.

    Same arguments, shapes and errors as ``MNIST``; the default folder is
    ``$CNNLAB_DATA/fashion-mnist`` (else ``~/.cache/cnnlab/fashion-mnist``).
    """

    name = "fashion-mnist"
    class_names = [
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ]
