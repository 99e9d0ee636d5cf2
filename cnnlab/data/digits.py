"""The UCI optical-recognition handwritten digits, shipped inside cnnlab (no network needed).

1797 images of 8x8 pixels, each pixel a count 0..16 of "on" pixels in a 4x4 block of a
32x32 bitmap, ten classes (digits 0-9). ``files/digits.csv.gz`` holds one row per image:
64 pixel values then the label. Source and licence: ``files/DIGITS_README.txt``.
"""

from __future__ import annotations

import gzip
import hashlib
import io
from importlib import resources

import numpy as np

from cnnlab.data.errors import DataFormatError
from cnnlab.data.loader import ArrayDataset, _check_fraction, stratified_indices

__all__ = ["Digits", "load_digits_arrays"]

FILE = "files/digits.csv.gz"
# SHA-256 of the shipped file: a damaged installation fails loudly instead of training on junk.
SHA256 = "09f66e6debdee2cd2b5ae59e0d6abbb73fc2b0e0185d2e1957e9ebb51e23aa22"
N_SAMPLES = 1797


def load_digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """Read the shipped file.

    Shape:
        images ``(1797, 1, 8, 8)`` float32 in [0, 1] (counts divided by 16), labels
        ``(1797,)`` int64.

    Raises:
        DataFormatError: the shipped file is missing its expected content.
    """
    ref = resources.files("cnnlab.data").joinpath(FILE)
    raw = ref.read_bytes()
    got = hashlib.sha256(raw).hexdigest()
    if got != SHA256:
        raise DataFormatError(
            f"cnnlab/data/{FILE}: expected SHA-256 {SHA256}, found {got}; the installation "
            "is damaged: reinstall cnnlab"
        )
    text = gzip.decompress(raw).decode("ascii")
    table = np.loadtxt(io.StringIO(text), delimiter=",", dtype=np.int64)
    if table.shape != (N_SAMPLES, 65):
        raise DataFormatError(
            f"cnnlab/data/{FILE}: expected {N_SAMPLES} rows of 65 values, "
            f"found shape {table.shape}; reinstall cnnlab"
        )
    images = table[:, :64].astype(np.float32).reshape(-1, 1, 8, 8)
    images /= np.float32(16.0)
    return images, table[:, 64]


class Digits(ArrayDataset):
    """Small handwritten digits that work offline: a quick dataset for tests and demos.

    The 1797 images are split into train and test parts, stratified by class (each digit
    keeps its share in both parts) and the same for the same ``seed``.

    Args:
        train: return the training part (True) or the test part (False).
        test_fraction: share of each class that goes to the test part.
        seed: seed of the split (no global random state is touched).

    Shape:
        ``.images`` ``(N, 1, 8, 8)`` float32 in [0, 1]; ``.labels`` ``(N,)`` int64;
        N is about ``1797 * (1 - test_fraction)`` for train.

    Raises:
        ValueError: ``test_fraction`` not strictly between 0 and 1.

    Example:
        >>> train, test = Digits(train=True), Digits(train=False)
        >>> len(train) + len(test), train.images.shape[1:], train.classes[:3]
        (1797, (1, 8, 8), ['0', '1', '2'])
    """

    name = "digits"

    def __init__(self, train: bool = True, test_fraction: float = 0.2, seed: int = 0) -> None:
        _check_fraction(test_fraction, "test_fraction", "Digits")
        self.train = bool(train)
        self.test_fraction = float(test_fraction)
        self.seed = seed
        self.notes: list[str] = []
        images, labels = load_digits_arrays()
        train_idx, test_idx = stratified_indices(labels, self.test_fraction, seed)
        idx = train_idx if train else test_idx
        super().__init__(images[idx], labels[idx], [str(d) for d in range(10)])

    def __repr__(self) -> str:
        split = "train" if self.train else "test"
        return f"Digits(split={split!r}, n={len(self)}, shape=(1, 8, 8))"
