"""CIFAR-10 from its *binary* distribution (``cifar-10-binary.tar.gz``).

Each ``.bin`` file is a run of 3073-byte records: one label byte (0..9), then 1024 red,
1024 green and 1024 blue pixel bytes, each plane row-major 32x32. That is already the
``(C, H, W)`` layout, so a file becomes an array with one reshape. The Python version of
CIFAR is a pickle and is never read: unpickling runs code from the file.

Layout accepted under the dataset folder::

    cifar-10-batches-bin/data_batch_1.bin ... data_batch_5.bin, test_batch.bin,
                         batches.meta.txt (class names, one per line)
    or cifar-10-binary.tar.gz   (extracted safely next to itself on first use)
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from cnnlab.data import download as dl
from cnnlab.data import streams
from cnnlab.data.errors import DataFormatError
from cnnlab.data.loader import ArrayDataset
from cnnlab.data.mnist import to_unit_float

__all__ = ["CIFAR10", "read_cifar_bin"]

ARCHIVE = "cifar-10-binary.tar.gz"
FOLDER = "cifar-10-batches-bin"
RECORD = 1 + 3 * 32 * 32
TRAIN_FILES = [f"data_batch_{i}.bin" for i in range(1, 6)]
TEST_FILES = ["test_batch.bin"]
# What the archive may unpack to: its 8 files take 184 MB.
ARCHIVE_MAX_BYTES = 256 << 20
ARCHIVE_MAX_MEMBERS = 64
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def read_cifar_bin(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR-10 binary batch file.

    Shape:
        images ``(N, 3, 32, 32)`` uint8, labels ``(N,)`` uint8, with N = size / 3073.

    Raises:
        DataFormatError: empty file, size not a multiple of 3073 bytes, or a label >= 10.
    """
    path = Path(path)
    with streams.open_data_file(path) as (stream, size, compressed):
        if compressed or size == 0 or size % RECORD:
            raise DataFormatError(
                f"{path}: expected a whole number of {RECORD}-byte records (1 label byte + "
                f"3072 pixel bytes), found {size} bytes ({size // RECORD} records and "
                f"{size % RECORD} bytes left over"
                f"{', and gzip-compressed' if compressed else ''}); the file is truncated "
                "or not from the CIFAR-10 binary version: download cifar-10-binary.tar.gz again"
            )
        streams.check_declared(path, size, size, False, f"{size // RECORD} records")
        raw = np.empty(size, dtype=np.uint8)
        got = streams.read_into(stream, raw)
    if got != size:
        raise DataFormatError(f"{path}: the file shrank while it was read; read it again")
    records = raw.reshape(-1, RECORD)
    labels = records[:, 0].copy()
    bad = np.flatnonzero(labels >= len(CLASSES))
    if bad.size:
        raise DataFormatError(
            f"{path}: expected labels 0..9, found {int(labels[bad[0]])} in record "
            f"{int(bad[0])} ({bad.size} bad records); this is not a CIFAR-10 binary file "
            "(CIFAR-100's binary records are 3074 bytes with two labels)"
        )
    images = records[:, 1:].reshape(-1, 3, 32, 32).copy()
    return images, labels


def _batches_folder(base: Path) -> Path | None:
    if (base / FOLDER).is_dir():
        return base / FOLDER
    if (base / TEST_FILES[0]).is_file() or (base / TRAIN_FILES[0]).is_file():
        return base  # the user pointed straight at the extracted folder
    return None


def _extract(archive: Path) -> Path:
    """Extract the archive next to itself, moving the folder into place only when complete."""
    base = archive.parent
    tmp = Path(tempfile.mkdtemp(prefix=".cifar-extract-", dir=base))
    try:
        dl.safe_extract_tar(archive, tmp, max_bytes=ARCHIVE_MAX_BYTES,
                            max_members=ARCHIVE_MAX_MEMBERS)
        if not (tmp / FOLDER).is_dir():
            raise DataFormatError(
                f"{archive}: expected a folder {FOLDER}/ inside the archive, found "
                f"{sorted(p.name for p in tmp.iterdir())}; this is not the CIFAR-10 binary "
                f"version: get {ARCHIVE}"
            )
        os.replace(tmp / FOLDER, base / FOLDER)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return base / FOLDER


class CIFAR10(ArrayDataset):
    """CIFAR-10 (Krizhevsky, 2009): 32x32 colour images in ten classes.

    Args:
        root: folder holding ``cifar-10-batches-bin/`` or ``cifar-10-binary.tar.gz``
            (also looked for in ``root/cifar10``; ``root`` may also be the extracted
            folder itself); None means ``$CNNLAB_DATA/cifar10``, else
            ``~/.cache/cnnlab/cifar10``.
        train: the 50,000 training samples (True) or the 10,000 test samples (False).
        download: fetch the archive (checksums verified) if nothing is found.

    Shape:
        ``.images`` ``(N, 3, 32, 32)`` float32 in [0, 1]; ``.labels`` ``(N,)`` int64.

    Raises:
        DatasetNotFoundError: nothing found and ``download`` False; the message says
            what to put where.
        DataFormatError: a batch file with a wrong size or labels, or an unexpected archive.
        UnsafeArchiveError: the archive holds links, absolute or ``..`` paths.
        DownloadError, ChecksumError: downloading failed.
    """

    name = "cifar10"

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        train: bool = True,
        download: bool = False,
    ) -> None:
        self.train = bool(train)
        self.notes: list[str] = []
        folders = dl.candidate_folders(root, self.name)
        batches = self._locate(folders)
        if batches is None:
            if not download:
                where = " or ".join(str(f) for f in folders)
                raise dl.missing_files_error(
                    self.name,
                    [ARCHIVE],
                    folders[0],
                    reason=f"CIFAR10: neither {FOLDER}/ nor {ARCHIVE} found in {where}",
                    hint=f"the extracted folder {FOLDER}/ works too.",
                )
            archive = dl.fetch(
                self.name, [ARCHIVE], folders[0], hint=f"the extracted folder {FOLDER}/ works too."
            )[0]
            batches = _extract(archive)
        wanted = TRAIN_FILES if train else TEST_FILES
        missing = [f for f in wanted if not (batches / f).is_file()]
        if missing:
            raise dl.missing_files_error(
                self.name,
                [ARCHIVE],
                batches.parent,
                reason=f"CIFAR10: {batches} lacks {', '.join(missing)}",
                hint=f"then remove the incomplete folder {batches} so that the archive is "
                "extracted again (or restore the missing files in it).",
                offer_download=False,
            )
        self.root = batches
        self.files = [batches / f for f in wanted]
        parts = [read_cifar_bin(p) for p in self.files]
        images = np.concatenate([p[0] for p in parts])
        labels = np.concatenate([p[1] for p in parts])
        super().__init__(to_unit_float(images), labels, self._class_names(batches))

    @staticmethod
    def _locate(folders: list[Path]) -> Path | None:
        for base in folders:
            found = _batches_folder(base)
            if found is not None:
                return found
        for base in folders:
            if (base / ARCHIVE).is_file():
                return _extract(base / ARCHIVE)
        return None

    def _class_names(self, batches: Path) -> list[str]:
        meta = batches / "batches.meta.txt"
        if not meta.is_file():
            return list(CLASSES)
        names = [line.strip() for line in meta.read_text(errors="replace").splitlines()]
        names = [n for n in names if n]
        if len(names) != len(CLASSES):
            self.notes.append(
                f"{meta} lists {len(names)} class names, expected 10; "
                "using the standard CIFAR-10 names"
            )
            return list(CLASSES)
        return names

    def __repr__(self) -> str:
        split = "train" if self.train else "test"
        return (
            f"CIFAR10(split={split!r}, n={len(self)}, shape=(3, 32, 32), root={str(self.root)!r})"
        )
