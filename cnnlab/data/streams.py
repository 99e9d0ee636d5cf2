"""Opening data files safely: regular files only, gzip detected by content, sizes bounded.

A parser reads a file's header first, works out how many bytes the header declares, checks
that number against the file (and against memory) and only then reads exactly that many,
refusing a file that holds more. A gzip file cannot be measured before it is decompressed,
but deflate never compresses better than about 1032 to 1, so a header that declares more
than that ratio allows is refused at once, and a gzip "bomb" whose stream runs on past
the declared size is refused as soon as the first extra byte appears.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import stat
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

from cnnlab.data.errors import DataFormatError

__all__ = [
    "GZIP_MAGIC", "GZIP_MAX_RATIO", "check_declared", "open_data_file", "read_exact", "read_into",
]

GZIP_MAGIC = b"\x1f\x8b"
# deflate's best case is 258 bytes from a 2-bit code (about 1032:1); with headers, a gzip
# file of n bytes never decompresses to more than GZIP_MAX_RATIO * n + GZIP_SLACK bytes.
GZIP_MAX_RATIO = 1032
GZIP_SLACK = 1024
CHUNK = 1 << 20

# What a corrupt gzip stream raises while it is read.
GZIP_ERRORS = (EOFError, zlib.error, gzip.BadGzipFile)


def _open_regular(path: Path) -> BinaryIO:
    """Open for reading, refusing (without blocking) anything but a regular file."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags)  # FileNotFoundError, IsADirectoryError, PermissionError
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        if stat.S_ISDIR(info.st_mode):
            raise IsADirectoryError(f"{path}: is a folder, expected a data file")
        raise DataFormatError(
            f"{path}: not a regular file (a FIFO, device or socket); expected a data file on "
            "disk: copy the data into a file and give that"
        )
    if hasattr(os, "set_blocking"):
        os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


@contextlib.contextmanager
def open_data_file(path: str | os.PathLike) -> Iterator[tuple[BinaryIO, int, bool]]:
    """Open a data file, decompressing it on the fly when it starts with the gzip magic.

    Yields:
        ``(stream, size on disk, compressed)``.

    Raises:
        FileNotFoundError: no such file.
        DataFormatError: not a regular file.
    """
    path = Path(path)
    raw = _open_regular(path)
    with raw:
        size = os.fstat(raw.fileno()).st_size
        compressed = raw.read(2) == GZIP_MAGIC
        raw.seek(0)
        if not compressed:
            yield raw, size, False
            return
        with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
            yield stream, size, True


def check_declared(path: Path, declared: int, size: int, compressed: bool, what: str) -> None:
    """Refuse a declared byte count that the file cannot hold or memory cannot take.

    Args:
        path: for messages.
        declared: bytes the header says follow it (header included).
        size: the file's size on disk.
        compressed: whether it is gzip.
        what: what the header declared, e.g. ``"shape (60000, 28, 28)"``.

    Raises:
        DataFormatError: the file is too small to hold that much, or the data would not
            fit in memory.
    """
    from cnnlab.budget import format_bytes, memory_limit

    if compressed and declared > GZIP_MAX_RATIO * size + GZIP_SLACK:
        raise DataFormatError(
            f"{path}: the header declares {what}, {declared:,} bytes, but a gzip file of "
            f"{size:,} bytes can hold at most about {GZIP_MAX_RATIO * size + GZIP_SLACK:,}; "
            "the file is damaged: download it again or replace it with the original file"
        )
    limit = memory_limit()
    if declared > limit:
        raise DataFormatError(
            f"{path}: the header declares {what}, {format_bytes(declared)}, more than the "
            f"{format_bytes(limit)} of memory this machine has; the header is damaged, or "
            "the data set is too large for this machine"
        )


def read_into(stream: BinaryIO, out: np.ndarray) -> int:
    """Fill ``out`` (a contiguous array) from ``stream``; return the bytes read, which is
    less than ``out.nbytes`` only when the stream ended early."""
    view = memoryview(out).cast("B")
    filled = 0
    while filled < len(view):
        n = stream.readinto(view[filled : filled + CHUNK])
        if not n:
            break
        filled += n
    return filled


def read_exact(stream: BinaryIO, n: int) -> bytes:
    """Up to ``n`` bytes: fewer only at the end of the stream."""
    parts, got = [], 0
    while got < n:
        part = stream.read(min(n - got, CHUNK))
        if not part:
            break
        parts.append(part)
        got += len(part)
    return b"".join(parts)
