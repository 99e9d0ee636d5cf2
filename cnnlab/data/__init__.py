"""Datasets, downloads, mini-batches and batch transforms, on NumPy alone.

Every classification dataset holds ``.images`` ``(N, C, H, W)`` float32 in [0, 1],
``.labels`` ``(N,)`` int64 and ``.classes`` (names); ``dataset[i]`` is ``(image, label)``.
``DigitScenes`` holds several digits per image (masks, boxes, key points, captions);
``dataset[i]`` is ``(image, target)``. ``DataLoader`` turns either into shuffled
mini-batches; transforms work on whole batches.

    >>> from cnnlab.data import Digits, DataLoader
    >>> train = Digits(train=True)
    >>> x, y = next(iter(DataLoader(train, batch_size=32)))
    >>> x.shape, y.dtype
    ((32, 1, 8, 8), dtype('int64'))
"""

from __future__ import annotations

import os
from typing import Any

from cnnlab import _checkout  # noqa: F401  (a folder named cnnlab hiding the package)
from cnnlab.data.captions import Vocabulary, caption, parse_caption
from cnnlab.data.cifar import CIFAR10
from cnnlab.data.digits import Digits
from cnnlab.data.download import data_home, default_root, safe_extract_tar
from cnnlab.data.errors import (
    ChecksumError,
    DataFormatError,
    DatasetNotFoundError,
    DownloadError,
    UnsafeArchiveError,
)
from cnnlab.data.folder import ImageFolder, load_image
from cnnlab.data.idx import read_idx, write_idx
from cnnlab.data.loader import ArrayDataset, DataLoader, random_split, train_val_split
from cnnlab.data.mnist import MNIST, FashionMNIST
from cnnlab.data.ragged import Ragged
from cnnlab.data.scenes import DigitScenes
from cnnlab.data.transforms import (
    Compose,
    Normalize,
    RandomCrop,
    RandomHorizontalFlip,
    compute_mean_std,
)

__all__ = [
    "DATASETS",
    "CIFAR10",
    "ArrayDataset",
    "ChecksumError",
    "Compose",
    "DataFormatError",
    "DataLoader",
    "DatasetNotFoundError",
    "DigitScenes",
    "Digits",
    "DownloadError",
    "FashionMNIST",
    "ImageFolder",
    "MNIST",
    "Normalize",
    "RandomCrop",
    "RandomHorizontalFlip",
    "Ragged",
    "UnsafeArchiveError",
    "Vocabulary",
    "caption",
    "compute_mean_std",
    "data_home",
    "default_root",
    "load_dataset",
    "load_image",
    "parse_caption",
    "random_split",
    "read_idx",
    "safe_extract_tar",
    "train_val_split",
    "write_idx",
]



def _scenes(source: str):
    def make(root=None, train: bool = True, download: bool = False) -> DigitScenes:
        return DigitScenes(source, train=train, root=root, download=download)

    make.__name__ = make.__qualname__ = f"{source}_scenes"
    make.__doc__ = f"``DigitScenes({source!r}, train, root=root, download=download)``."
    return make


# Names accepted by ``load_dataset`` (and the command line's --data).
DATASETS = {
    "mnist": MNIST,
    "fashion-mnist": FashionMNIST,
    "cifar10": CIFAR10,
    "digits": Digits,
    "mnist-scenes": _scenes("mnist"),
    "digits-scenes": _scenes("digits"),
}


def load_dataset(
    name: str,
    train: bool = True,
    root: str | os.PathLike | None = None,
    download: bool = False,
) -> Any:
    """Load a dataset by name, or an image folder by path.

    Args:
        name: one of ``DATASETS`` ("mnist", "fashion-mnist", "cifar10", "digits",
            "mnist-scenes", "digits-scenes"), or the path of a folder laid out as
            ``<class>/<image>`` (read with ``ImageFolder``).
        train: training part (True) or test part (False); ignored for a folder.
        root: where the dataset's files are (see each class); ignored for digits and
            digits-scenes.
        download: fetch missing files (MNIST, Fashion-MNIST, CIFAR-10, MNIST scenes).

    Returns:
        The dataset.

    Raises:
        ValueError: an unknown name that is not a folder either.
    """
    key = name.lower().replace("_", "-")
    if key in ("fashionmnist", "fashion"):
        key = "fashion-mnist"
    if key in ("cifar-10", "cifar"):
        key = "cifar10"
    if key == "digits":
        return Digits(train=train)
    if key in DATASETS:
        return DATASETS[key](root=root, train=train, download=download)
    if os.path.isdir(name):
        return ImageFolder(name)
    raise ValueError(
        f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)} or the path of a "
        "folder of images laid out as <class>/<image>"
    )
