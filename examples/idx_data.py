"""Read MNIST-style IDX files with NumPy alone, for the example programs.

The examples run unchanged on cnnlab and on PyTorch, so their data must not come from
either library: this module reads ``train-images-idx3-ubyte[.gz]`` and friends from a folder
and returns uint8 images and int64 labels.
"""

import gzip
import os

import numpy as np

FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _open(folder, stem):
    for name in (stem, stem + ".gz"):
        path = os.path.join(folder, name)
        if os.path.exists(path):
            return gzip.open(path, "rb") if name.endswith(".gz") else open(path, "rb")
    raise FileNotFoundError(f"{folder}: no {stem} or {stem}.gz; pass the folder that holds "
                            "the MNIST IDX files with --data-dir")


def _read(folder, stem, ndim):
    with _open(folder, stem) as f:
        header = f.read(4 + 4 * ndim)
        magic = int.from_bytes(header[:4], "big")
        if magic != 0x0800 + ndim:
            raise ValueError(f"{stem}: not an IDX file of {ndim}-D unsigned bytes")
        shape = [int.from_bytes(header[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
        # A writable buffer: torch.from_numpy warns about read-only arrays.
        data = np.frombuffer(bytearray(f.read(int(np.prod(shape)))), dtype=np.uint8)
    return data.reshape(shape)


def load(folder, split, limit=None):
    """``(images (N, 28, 28) uint8, labels (N,) int64)`` of the train or test split."""
    images_stem, labels_stem = FILES[split]
    images = _read(folder, images_stem, 3)
    labels = _read(folder, labels_stem, 1).astype(np.int64)
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    return images, labels
