"""A reader and writer for the safetensors format, in plain Python and NumPy.

A safetensors file has three parts::

    8 bytes   N, the length of the header (unsigned 64-bit, little-endian)
    N bytes   a JSON object, UTF-8, padded with spaces:
              {"<name>": {"dtype": "F32", "shape": [16, 6, 5, 5], "data_offsets": [begin, end]},
               ..., "__metadata__": {"<key>": "<string value>"}}      (metadata is optional)
    the rest  the byte buffer: tensor <name> is buffer[begin:end], C order, little-endian

The format holds arrays and strings only, so reading a file never runs code. The reader
checks everything the header claims against the file before it touches the data: the
header fits in the file, every dtype is known, every shape matches its byte span, and the
spans tile the buffer exactly (no gaps, overlaps or bytes past the end). Any violation is
a :class:`~cnnlab.io.ModelFileError` naming the file and the tensor.

Files written here load with the reference ``safetensors`` package and the other way round.
"""

from __future__ import annotations

import io
import json
import math
import os
import struct
from collections.abc import Mapping
from typing import BinaryIO

import numpy as np

from cnnlab.io.atomic import atomic_write
from cnnlab.io.errors import ModelFileError

__all__ = [
    "MAX_HEADER_BYTES",
    "load",
    "load_file",
    "load_file_with_metadata",
    "read_metadata",
    "save",
    "save_file",
]

# A header is a few kilobytes even for large models; a length above this is corruption
# (or an attempt to make the reader allocate a huge buffer).
MAX_HEADER_BYTES = 100 * 1024 * 1024

# safetensors dtype name -> little-endian NumPy dtype.
_DTYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype("|b1"),
    "U8": np.dtype("|u1"),
    "I8": np.dtype("|i1"),
    "U16": np.dtype("<u2"),
    "I16": np.dtype("<i2"),
    "F16": np.dtype("<f2"),
    "U32": np.dtype("<u4"),
    "I32": np.dtype("<i4"),
    "F32": np.dtype("<f4"),
    "U64": np.dtype("<u8"),
    "I64": np.dtype("<i8"),
    "F64": np.dtype("<f8"),
}
# (kind, itemsize) of a NumPy dtype -> safetensors name; byte order is handled separately.
_NAMES = {(dt.kind, dt.itemsize): name for name, dt in _DTYPES.items()}

_MAX_DIMS = 32  # NumPy's own limit is 64

_DAMAGED = "The file is damaged or is not a safetensors file; save or download it again."


def _error(source: str, problem: str, hint: str = _DAMAGED) -> ModelFileError:
    return ModelFileError(f"{source}: {problem}. {hint}")


# ----------------------------------------------------------------------------- writing


def _as_array(name: str, value: object) -> np.ndarray:
    if not isinstance(value, np.ndarray):
        # A cnnlab Tensor or Parameter, or anything array-like.
        value = value.numpy() if hasattr(value, "numpy") else np.asarray(value)
    key = (value.dtype.kind, value.dtype.itemsize)
    if key not in _NAMES:
        raise ValueError(
            f"cannot store tensor {name!r} of dtype {value.dtype}: safetensors holds "
            f"{', '.join(_DTYPES)}; convert it first (e.g. .astype(np.float32))"
        )
    # Little-endian, C order: what the format stores byte for byte.
    return np.asarray(value, dtype=_DTYPES[_NAMES[key]], order="C")  # keeps 0-d arrays 0-d


def _check_metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise ValueError(f"metadata must be a dict of str to str, got {type(metadata).__name__}")
    for key, value in metadata.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise ValueError(
                f"metadata must map str to str, but {key!r} -> {type(value).__name__}; "
                "encode other values as text first (e.g. json.dumps)"
            )
    return dict(metadata)


def _layout(
    tensors: Mapping[str, object], metadata: Mapping[str, str] | None
) -> tuple[bytes, list[np.ndarray]]:
    """Build the padded header and the arrays in the order their bytes are written."""
    if not isinstance(tensors, Mapping):
        raise ValueError(f"tensors must be a dict of name to array, got {type(tensors).__name__}")
    arrays = {}
    for name, value in tensors.items():
        if not isinstance(name, str):
            raise ValueError(f"tensor names must be strings, got {name!r}")
        if name == "__metadata__":
            raise ValueError("'__metadata__' is reserved for the metadata; rename that tensor")
        arrays[name] = _as_array(name, value)
    # Wider dtypes first: with the header padded to a multiple of 8, every tensor then
    # starts at a multiple of its item size.
    order = sorted(arrays, key=lambda n: (-arrays[n].dtype.itemsize, n))
    offsets, position = {}, 0
    for name in order:
        offsets[name] = (position, position + arrays[name].nbytes)
        position += arrays[name].nbytes
    header: dict[str, object] = {}
    meta = _check_metadata(metadata)
    if meta:
        header["__metadata__"] = meta
    for name, array in arrays.items():  # the caller's order, e.g. state_dict order
        header[name] = {
            "dtype": _NAMES[(array.dtype.kind, array.dtype.itemsize)],
            "shape": list(array.shape),
            "data_offsets": list(offsets[name]),
        }
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text, [arrays[n] for n in order]


def _write(f: BinaryIO, tensors: Mapping[str, object], metadata: Mapping[str, str] | None):
    header, arrays = _layout(tensors, metadata)
    f.write(header)
    for array in arrays:
        f.write(array.tobytes())


def save(tensors: Mapping[str, object], metadata: Mapping[str, str] | None = None) -> bytes:
    """Serialize named arrays (and optional string metadata) to safetensors bytes.

    Args:
        tensors: name -> array (NumPy array, cnnlab Tensor, or array-like).
        metadata: optional str -> str pairs stored under ``__metadata__``.

    Returns:
        The complete file contents.

    Raises:
        ValueError: for a dtype the format cannot hold, a non-string name or metadata value.
    """
    buffer = io.BytesIO()
    _write(buffer, tensors, metadata)
    return buffer.getvalue()


def save_file(
    tensors: Mapping[str, object],
    path: str | os.PathLike,
    metadata: Mapping[str, str] | None = None,
) -> None:
    """Write named arrays to a safetensors file, atomically (see :func:`atomic_write`).

    Args:
        tensors: name -> array.
        path: the file to write; an existing file is replaced only once the write succeeded.
        metadata: optional str -> str pairs stored under ``__metadata__``.

    Raises:
        ValueError: as for :func:`save`; OSError when the file cannot be written.

    Example:
        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "w.safetensors")
        >>> save_file({"w": np.arange(3, dtype=np.float32)}, path, {"note": "hi"})
        >>> load_file(path)["w"]
        array([0., 1., 2.], dtype=float32)
        >>> read_metadata(path)
        {'note': 'hi'}
    """
    header, arrays = _layout(tensors, metadata)  # validate before touching the disk
    with atomic_write(path, "wb") as f:
        f.write(header)
        for array in arrays:
            f.write(array.tobytes())


# ----------------------------------------------------------------------------- reading


def _sniff(source: str, head: bytes, tail: bytes) -> None:
    """Name the format of a file that is clearly not safetensors, without parsing it."""
    safe = "cnnlab never unpickles files, because loading a pickle can run arbitrary code"
    convert = (
        "If you trust its origin, convert it to safetensors with the tool that wrote it "
        "(e.g. safetensors.torch.save_file(torch.load(...))) and load that instead."
    )
    if head[:4] == b"PK\x03\x04":
        raise _error(
            source,
            "this is a zip archive (the format torch.save uses for .pt/.pth files, which holds "
            f"a pickle), not a safetensors file; {safe}",
            convert,
        )
    if (head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")) or (
        tail == b"."
    ):
        raise _error(
            source,
            "this looks like a Python pickle file (as written by pickle, torch.save or joblib), "
            f"not a safetensors file; {safe}",
            convert,
        )
    if head[:6] == b"\x93NUMPY":
        raise _error(
            source,
            "this is a NumPy .npy file, not a safetensors file",
            "Read it with numpy.load(path, allow_pickle=False).",
        )


def _read_header(f: BinaryIO, size: int, source: str) -> tuple[dict, dict[str, str], int]:
    """Parse and check the header. Returns (entries, metadata, data size)."""
    head = f.read(9)
    length = struct.unpack("<Q", head[:8])[0] if len(head) >= 8 else None
    if head[8:9] != b"{" or length is None or length > min(size - 8, MAX_HEADER_BYTES):
        # Not a well-formed start: say what the file is if we can tell (a pickle above all).
        tail = b""
        if size > 0:
            f.seek(size - 1)
            tail = f.read(1)
        _sniff(source, head, tail)
    if length is None:
        raise _error(
            source,
            f"truncated file: it has {size} bytes, but a safetensors file starts with an "
            "8-byte header length",
        )
    (length,) = struct.unpack("<Q", head[:8])
    if length > MAX_HEADER_BYTES:
        raise _error(
            source,
            f"oversized header: the header length field says {length} bytes, more than the "
            f"{MAX_HEADER_BYTES}-byte limit",
        )
    if length > size - 8:
        raise _error(
            source,
            f"oversized header: the header length field says {length} bytes, but only "
            f"{size - 8} bytes follow it (the file is truncated or corrupt)",
        )
    f.seek(8)
    raw = f.read(length)
    if not raw.startswith(b"{"):
        raise _error(source, "not a safetensors file: the JSON header must start with '{'")
    try:
        header = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise _error(source, f"invalid JSON header: not UTF-8 text ({exc.reason})") from None
    except json.JSONDecodeError as exc:
        raise _error(source, f"invalid JSON header: {exc}") from None
    except RecursionError:
        raise _error(source, "invalid JSON header: nested too deeply") from None
    if not isinstance(header, dict):
        raise _error(source, "invalid JSON header: expected a JSON object at the top level")

    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise _error(source, "invalid __metadata__: it must map strings to strings")

    data_size = size - 8 - length
    spans = []
    for name, info in header.items():
        what = f"tensor {name!r}"
        if not isinstance(info, dict):
            raise _error(source, f"invalid header entry for {what}: expected an object")
        dtype = info.get("dtype")
        if not isinstance(dtype, str) or dtype not in _DTYPES:
            hint = (
                "NumPy has no bfloat16; convert the file to F32 with the tool that wrote it."
                if dtype == "BF16"
                else f"cnnlab reads {', '.join(_DTYPES)}; convert the tensor to one of these."
            )
            raise _error(source, f"unknown dtype {dtype!r} for {what}", hint)
        shape, offsets = info.get("shape"), info.get("data_offsets")
        if (
            not isinstance(shape, list)
            or len(shape) > _MAX_DIMS
            or not all(_is_count(d) for d in shape)
            # even an empty array must have a size NumPy can represent
            or math.prod(max(d, 1) for d in shape) * _DTYPES[dtype].itemsize >= 2**62
        ):
            raise _error(
                source,
                f"invalid shape {shape!r} for {what}: expected a list of at most {_MAX_DIMS} "
                "sizes >= 0 that describe an array NumPy can hold",
            )
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(_is_count(o) for o in offsets)
        ):
            raise _error(
                source, f"invalid data_offsets {offsets!r} for {what}: expected [begin, end]"
            )
        begin, end = offsets
        if end < begin:
            raise _error(
                source,
                f"bad offsets for {what}: data_offsets [{begin}, {end}] end before they begin",
            )
        if end > data_size:
            raise _error(
                source,
                f"offsets out of range for {what}: data_offsets [{begin}, {end}] reach past the "
                f"{data_size}-byte data section (the file is truncated or its header is corrupt)",
            )
        needed = math.prod(shape) * _DTYPES[dtype].itemsize
        if needed != end - begin:
            raise _error(
                source,
                f"size mismatch for {what}: shape {shape} of {dtype} needs {needed} bytes, but "
                f"data_offsets [{begin}, {end}] span {end - begin}",
            )
        spans.append((begin, end, name))

    # The spans must tile the buffer: each starts where the previous one ended.
    position, previous = 0, None
    for begin, end, name in sorted(spans):
        if begin < position:
            raise _error(
                source,
                f"overlapping offsets: tensor {name!r} starts at byte {begin}, inside "
                f"tensor {previous!r} (which ends at byte {position})",
            )
        if begin > position:
            raise _error(
                source,
                f"offsets do not cover the buffer: bytes {position}..{begin} before "
                f"tensor {name!r} belong to no tensor",
            )
        position, previous = end, name
    if position != data_size:
        raise _error(
            source,
            f"offsets do not cover the buffer: {data_size - position} bytes at the end "
            "belong to no tensor",
        )
    return header, metadata, data_size


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _read(f: BinaryIO, size: int, source: str) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    header, metadata, data_size = _read_header(f, size, source)
    data = f.read(data_size)
    if len(data) != data_size:
        raise _error(source, f"truncated file: expected {data_size} data bytes, read {len(data)}")
    tensors = {}
    for name, info in header.items():
        dtype = _DTYPES[info["dtype"]]
        begin, end = info["data_offsets"]
        shape = tuple(info["shape"])
        if dtype.kind == "b":  # any nonzero byte is True, as in C
            flat = np.frombuffer(data, np.uint8, end - begin, begin) != 0
        else:
            flat = np.frombuffer(data, dtype, (end - begin) // dtype.itemsize, begin)
            # A writable copy in native byte order.
            flat = flat.astype(dtype.newbyteorder("="), copy=True)
        tensors[name] = flat.reshape(shape)
    return tensors, metadata


def _open(path: str | os.PathLike) -> tuple[BinaryIO, int, str]:
    source = os.fspath(path)
    try:
        f = open(source, "rb")  # noqa: SIM115 - closed by the caller
    except FileNotFoundError:
        raise ModelFileError(f"{source}: no such file. Check the path.") from None
    except IsADirectoryError:
        raise ModelFileError(f"{source}: is a directory, not a safetensors file.") from None
    return f, os.fstat(f.fileno()).st_size, source


def load_file_with_metadata(
    path: str | os.PathLike,
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Read a safetensors file: its arrays and its ``__metadata__``.

    Args:
        path: the file.

    Returns:
        (name -> writable NumPy array in native byte order, metadata dict of str -> str).

    Raises:
        ModelFileError: missing file, pickle/zip/npy file, truncated file, oversized or
            invalid header, unknown dtype, bad offsets, shape/size mismatch.
    """
    f, size, source = _open(path)
    with f:
        return _read(f, size, source)


def load_file(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read the arrays of a safetensors file (see :func:`load_file_with_metadata`)."""
    return load_file_with_metadata(path)[0]


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """Read only the ``__metadata__`` of a safetensors file (the header is fully checked).

    Raises:
        ModelFileError: as for :func:`load_file_with_metadata`.
    """
    f, size, source = _open(path)
    with f:
        return _read_header(f, size, source)[1]


def load(data: bytes, name: str = "<bytes>") -> dict[str, np.ndarray]:
    """Read arrays from safetensors bytes; ``name`` is used in error messages."""
    return _read(io.BytesIO(data), len(data), name)[0]
