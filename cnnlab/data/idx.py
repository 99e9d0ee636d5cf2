"""Reading and writing IDX files, the format of MNIST and Fashion-MNIST.

An IDX file is a 4-byte magic number, one big-endian uint32 per dimension, then the data:

    bytes 0-1   0x00 0x00
    byte  2     dtype code (0x08 = unsigned byte, the only one used by MNIST)
    byte  3     number of dimensions
    then        ndim x uint32 (big-endian) sizes, then prod(sizes) data bytes, row-major

So images are magic ``0x00000803`` (N, rows, cols) and labels ``0x00000801`` (N,). Files
may be gzip-compressed; that is detected from the first two bytes (``1f 8b``), never from
the file name, because people rename and re-compress these files.

The header is read first; the data is then read in one pass into an array of exactly the
declared size, and a file with more bytes than that is refused as soon as the first extra
byte appears, so a small gzip file that inflates to gigabytes never does.
"""

from __future__ import annotations

import gzip
import math
import os
from pathlib import Path

import numpy as np

from cnnlab.data import streams
from cnnlab.data.errors import DataFormatError

__all__ = [
    "IMAGES_MAGIC",
    "LABELS_MAGIC",
    "is_gzip",
    "read_bytes",
    "read_idx",
    "read_idx_pair",
    "write_idx",
]

GZIP_MAGIC = streams.GZIP_MAGIC
UBYTE = 0x08
IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801


def is_gzip(path: str | os.PathLike) -> bool:
    """Return True when the file starts with the gzip magic bytes ``1f 8b``."""
    with open(path, "rb") as f:
        return f.read(2) == GZIP_MAGIC


def _damaged_gzip(path: Path, exc: Exception) -> DataFormatError:
    return DataFormatError(
        f"{path}: starts like a gzip file but cannot be decompressed ({exc}); the file is "
        "probably cut short or damaged: download it again or replace it with a good copy"
    )


def read_bytes(path: str | os.PathLike, limit: int | None = None) -> bytes:
    """Return the contents of a file, decompressed if it is gzip (detected by magic bytes).

    Args:
        path: the file.
        limit: the most bytes to accept after decompression; default the memory limit
            (:func:`cnnlab.budget.memory_limit`).

    Raises:
        FileNotFoundError: the file does not exist.
        DataFormatError: not a regular file, more than ``limit`` bytes, or a file that
            looks like gzip but cannot be decompressed.
    """
    from cnnlab.budget import memory_limit

    path = Path(path)
    limit = memory_limit() if limit is None else limit
    try:
        with streams.open_data_file(path) as (stream, _, _):
            data = streams.read_exact(stream, limit + 1)
    except streams.GZIP_ERRORS as exc:
        raise _damaged_gzip(path, exc) from exc
    if len(data) > limit:
        raise DataFormatError(f"{path}: holds more than the {limit:,}-byte limit")
    return data


def _magic_name(magic: int) -> str:
    return {IMAGES_MAGIC: "images", LABELS_MAGIC: "labels"}.get(magic, "data")


def read_idx(path: str | os.PathLike, magic: int | None = None) -> np.ndarray:
    """Read one IDX file of unsigned bytes into a uint8 array.

    Args:
        path: file name; gzip or raw, detected by content.
        magic: the expected magic number (``IMAGES_MAGIC``, ``LABELS_MAGIC``), or None to
            accept any unsigned-byte IDX file.

    Shape:
        images ``(N, rows, cols)``, labels ``(N,)``: the dimensions stored in the header.

    Returns:
        A new uint8 array (a copy, safe to modify).

    Raises:
        FileNotFoundError: no such file.
        DataFormatError: wrong magic number or dtype, file shorter than its header says
            (truncated) or longer (extra bytes, also after decompression), a header that
            declares more than the file or memory can hold, or not a regular file.

    Example:
        >>> import tempfile, os, numpy as np
        >>> p = os.path.join(tempfile.mkdtemp(), "labels-idx1-ubyte.gz")
        >>> write_idx(p, np.array([3, 1, 4], dtype=np.uint8))
        >>> read_idx(p, LABELS_MAGIC)
        array([3, 1, 4], dtype=uint8)
    """
    path = Path(path)
    try:
        with streams.open_data_file(path) as (stream, size, compressed):
            return _read_idx(stream, path, size, compressed, magic)
    except streams.GZIP_ERRORS as exc:
        raise _damaged_gzip(path, exc) from exc
    except OSError as exc:
        if isinstance(exc, (FileNotFoundError, IsADirectoryError, PermissionError)):
            raise
        raise _damaged_gzip(path, exc) from exc


def _read_idx(stream, path: Path, size: int, compressed: bool, magic: int | None) -> np.ndarray:
    head = streams.read_exact(stream, 4)
    if len(head) < 4:
        raise DataFormatError(
            f"{path}: expected an IDX file (at least a 4-byte header), found only {len(head)} "
            "bytes; the file is empty or truncated: download it again"
        )
    found = int.from_bytes(head, "big")
    want = f"0x{magic:08X} ({_magic_name(magic)})" if magic is not None else "an IDX magic"
    if head[0] != 0 or head[1] != 0:
        raise DataFormatError(
            f"{path}: expected magic number {want}, found 0x{found:08X}; this is not an IDX "
            "file (an HTML error page or another format?): replace it with the original file"
        )
    if head[2] != UBYTE:
        raise DataFormatError(
            f"{path}: expected data type 0x08 (unsigned byte), found 0x{head[2]:02X}; only "
            "unsigned-byte IDX files (as MNIST and Fashion-MNIST use) can be read"
        )
    if magic is not None and found != magic:
        raise DataFormatError(
            f"{path}: expected magic number {want}, found 0x{found:08X} "
            f"({_magic_name(found)} with {head[3]} dimensions); check that the images and "
            "labels files are not swapped"
        )
    ndim = head[3]
    header = 4 + 4 * ndim
    sizes = streams.read_exact(stream, 4 * ndim)
    if ndim == 0 or len(sizes) < 4 * ndim:
        raise DataFormatError(
            f"{path}: expected a header of {header} bytes for {ndim} dimensions, found "
            f"{4 + len(sizes)} bytes; the file is truncated or damaged: download it again"
        )
    dims = tuple(int.from_bytes(sizes[4 * i : 4 * i + 4], "big") for i in range(ndim))
    count = math.prod(dims)  # Python ints: no overflow however large the sizes
    expected = header + count
    if not compressed and size != expected:
        kind = "truncated" if size < expected else "longer than its header says"
        raise DataFormatError(
            f"{path}: header says shape {dims}, so expected {expected} bytes, found "
            f"{size} bytes: the file is {kind}; download it again or replace it with "
            "the original file"
        )
    streams.check_declared(path, expected, size, compressed, f"shape {dims}")
    out = np.empty(count, dtype=np.uint8)
    got = streams.read_into(stream, out)
    if got < count:
        raise DataFormatError(
            f"{path}: header says shape {dims}, so expected {expected} bytes, found "
            f"{header + got} bytes: the file is truncated; download it again or replace it "
            "with the original file"
        )
    if stream.read(1):
        raise DataFormatError(
            f"{path}: header says shape {dims}, so expected {expected} bytes after "
            "decompression, but the data goes on past them: the file is longer than its "
            "header says (or a decompression bomb); replace it with the original file"
        )
    return out.reshape(dims)


def read_idx_pair(
    images_path: str | os.PathLike, labels_path: str | os.PathLike
) -> tuple[np.ndarray, np.ndarray]:
    """Read an images file and its labels file and check that they belong together.

    Shape:
        images ``(N, rows, cols)`` uint8, labels ``(N,)`` uint8.

    Raises:
        DataFormatError: any problem of ``read_idx``, or different sample counts.
    """
    images = read_idx(images_path, IMAGES_MAGIC)
    labels = read_idx(labels_path, LABELS_MAGIC)
    if images.shape[0] != labels.shape[0]:
        raise DataFormatError(
            f"{images_path} holds {images.shape[0]} images but {labels_path} holds "
            f"{labels.shape[0]} labels; expected the same count: the two files come from "
            "different splits or versions, replace them with a matching pair"
        )
    return images, labels


def write_idx(path: str | os.PathLike, array: np.ndarray, compress: bool | None = None) -> None:
    """Write a uint8 array as an IDX file (used by tests and to make small fixtures).

    Args:
        path: destination file.
        array: values 0..255 with 1 to 255 dimensions; 1-D gives a labels file, 3-D an
            images file.
        compress: gzip the file; None means "if the name ends with .gz".

    Raises:
        ValueError: values outside 0..255 or a 0-dimensional array.
    """
    arr = np.asarray(array)
    if arr.ndim == 0 or arr.ndim > 255:
        raise ValueError(f"write_idx: expected 1 to 255 dimensions, found {arr.ndim}")
    if arr.size and (arr.min() < 0 or arr.max() > 255):
        raise ValueError(f"write_idx: expected values in 0..255, found {arr.min()}..{arr.max()}")
    header = bytes([0, 0, UBYTE, arr.ndim]) + np.asarray(arr.shape, dtype=">u4").tobytes()
    payload = header + np.ascontiguousarray(arr, dtype=np.uint8).tobytes()
    if compress is None:
        compress = str(path).endswith(".gz")
    if compress:
        payload = gzip.compress(payload)
    Path(path).write_bytes(payload)
