"""Reading and writing IDX files, the format of MNIST and Fashion-MNIST.

An IDX file is a 4-byte magic number, one big-endian uint32 per dimension, then the data:

    bytes 0-1   0x00 0x00
    byte  2     dtype code (0x08 = unsigned byte, the only one used by MNIST)
    byte  3     number of dimensions
    then        ndim x uint32 (big-endian) sizes, then prod(sizes) data bytes, row-major

So images are magic ``0x00000803`` (N, rows, cols) and labels ``0x00000801`` (N,). Files
may be gzip-compressed; that is detected from the first two bytes (``1f 8b``), never from
the file name, because people rename and re-compress these files.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

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

GZIP_MAGIC = b"\x1f\x8b"
UBYTE = 0x08
IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801


def is_gzip(path: str | os.PathLike) -> bool:
    """Return True when the file starts with the gzip magic bytes ``1f 8b``."""
    with open(path, "rb") as f:
        return f.read(2) == GZIP_MAGIC


def read_bytes(path: str | os.PathLike) -> bytes:
    """Return the contents of a file, decompressed if it is gzip (detected by magic bytes).

    Raises:
        FileNotFoundError: the file does not exist.
        DataFormatError: the file looks like gzip but cannot be decompressed.
    """
    path = Path(path)
    if not is_gzip(path):
        return path.read_bytes()
    try:
        with gzip.open(path, "rb") as f:
            return f.read()
    except (EOFError, OSError, zlib.error) as exc:
        raise DataFormatError(
            f"{path}: starts like a gzip file but cannot be decompressed ({exc}); the file is "
            "probably cut short or damaged: download it again or replace it with a good copy"
        ) from exc


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
        DataFormatError: wrong magic number or dtype, file shorter than its header says
            (truncated) or longer (extra bytes).

    Example:
        >>> import tempfile, os, numpy as np
        >>> p = os.path.join(tempfile.mkdtemp(), "labels-idx1-ubyte.gz")
        >>> write_idx(p, np.array([3, 1, 4], dtype=np.uint8))
        >>> read_idx(p, LABELS_MAGIC)
        array([3, 1, 4], dtype=uint8)
    """
    path = Path(path)
    raw = read_bytes(path)
    if len(raw) < 4:
        raise DataFormatError(
            f"{path}: expected an IDX file (at least a 4-byte header), found only {len(raw)} "
            "bytes; the file is empty or truncated: download it again"
        )
    found = int.from_bytes(raw[:4], "big")
    want = f"0x{magic:08X} ({_magic_name(magic)})" if magic is not None else "an IDX magic"
    if raw[0] != 0 or raw[1] != 0:
        raise DataFormatError(
            f"{path}: expected magic number {want}, found 0x{found:08X}; this is not an IDX "
            "file (an HTML error page or another format?): replace it with the original file"
        )
    if raw[2] != UBYTE:
        raise DataFormatError(
            f"{path}: expected data type 0x08 (unsigned byte), found 0x{raw[2]:02X}; only "
            "unsigned-byte IDX files (as MNIST and Fashion-MNIST use) can be read"
        )
    if magic is not None and found != magic:
        raise DataFormatError(
            f"{path}: expected magic number {want}, found 0x{found:08X} "
            f"({_magic_name(found)} with {raw[3]} dimensions); check that the images and "
            "labels files are not swapped"
        )
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise DataFormatError(
            f"{path}: expected a header of {header} bytes for {ndim} dimensions, found "
            f"{len(raw)} bytes; the file is truncated or damaged: download it again"
        )
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = header + int(np.prod(dims, dtype=np.int64))
    if len(raw) != expected:
        kind = "truncated" if len(raw) < expected else "longer than its header says"
        raise DataFormatError(
            f"{path}: header says shape {dims}, so expected {expected} bytes, found "
            f"{len(raw)} bytes: the file is {kind}; download it again or replace it with "
            "the original file"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims).copy()


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
