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
import re
import stat
import struct
from collections.abc import Callable, Mapping
from typing import BinaryIO

import numpy as np

from cnnlab.io.atomic import atomic_write
from cnnlab.io.errors import ModelFileError

__all__ = [
    "MAX_HEADER_BYTES",
    "load",
    "load_file",
    "load_file_with_metadata",
    "read_header",
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
    "C64": np.dtype("<c8"),
}
# (kind, itemsize) of a NumPy dtype -> safetensors name; byte order is handled separately.
_NAMES = {(dt.kind, dt.itemsize): name for name, dt in _DTYPES.items()}

# NumPy's limit on dimensions (64 since NumPy 2.0), and the deepest JSON nesting the
# reference reader accepts.
_MAX_DIMS = 64 if np.lib.NumpyVersion(np.__version__) >= "2.0.0" else 32
_MAX_NESTING = 127

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


def _check_text(text: str, what: str) -> None:
    """Names and metadata are UTF-8 in the file: a string with a lone surrogate (as
    ``os.fsdecode`` makes of a file name that is not UTF-8) cannot be written or read."""
    match = _SURROGATE.search(text)
    if match:
        raise ValueError(
            f"the {what} {text!r} is not valid Unicode text (it holds the lone surrogate "
            f"{match.group()!r}, e.g. from a file name that is not UTF-8); rename it"
        )


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
    for name in arrays:
        _check_text(name, "tensor name")
    for key, value in meta.items():
        _check_text(key, "metadata key")
        _check_text(value, f"metadata value of {key!r}")
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


class _Pairs(list):
    """A JSON object as its (key, value) pairs, in order, duplicates kept: the format
    refuses a repeated field where a dict would silently keep the last one."""


class _NotCount:
    """A JSON integer that is negative or wider than 64 bits: valid JSON, never a size."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _json_int(text: str) -> int | _NotCount:
    if text.startswith("-") or len(text) > 20 or int(text) >= 2**64:
        return _NotCount(text)
    return int(text)


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_SURROGATE = re.compile("[\ud800-\udfff]")


def _nesting(text: str) -> int:
    """The deepest nesting of objects and arrays in JSON text (strings ignored)."""
    brackets = re.sub(r"[^\[\]{}]", "", _STRING.sub("", text))
    if not brackets:
        return 0
    steps = np.frombuffer(brackets.encode("ascii"), np.uint8)
    return int(np.cumsum(np.where((steps == ord("[")) | (steps == ord("{")), 1, -1)).max())


def _lone_surrogate(value: object) -> bool:
    """True when a string anywhere in the parsed JSON holds half of a surrogate pair
    (``"\udcff"``): valid for Python's json module, not Unicode text."""
    if isinstance(value, str):
        return _SURROGATE.search(value) is not None
    if isinstance(value, _Pairs):
        return any(_lone_surrogate(k) or _lone_surrogate(v) for k, v in value)
    if isinstance(value, list):
        return any(_lone_surrogate(v) for v in value)
    return False


def _parse_json(raw: bytes, source: str) -> _Pairs:
    """The header as JSON, read as strictly as the reference implementation reads it."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _error(source, f"invalid JSON header: not UTF-8 text ({exc.reason})") from None
    if _nesting(text) > _MAX_NESTING:
        raise _error(source, f"invalid JSON header: nested more than {_MAX_NESTING} levels deep")
    try:
        header = json.loads(text, object_pairs_hook=_Pairs, parse_int=_json_int,
                            parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise _error(source, f"invalid JSON header: {exc}") from None
    except (ValueError, RecursionError) as exc:
        raise _error(source, f"invalid JSON header: {exc}") from None
    if not isinstance(header, _Pairs):
        raise _error(source, "invalid JSON header: expected a JSON object at the top level")
    if _lone_surrogate(header):
        raise _error(
            source, "invalid JSON header: a string holds a lone surrogate (\\ud800-\\udfff "
            "without its pair), which is not Unicode text"
        )
    return header


def _metadata(pairs: _Pairs, source: str) -> dict[str, str]:
    values = [v for k, v in pairs if k == "__metadata__"]
    if len(values) > 1:
        raise _error(source, "invalid JSON header: the field '__metadata__' appears twice")
    if not values or values[0] is None:
        return {}
    if not isinstance(values[0], _Pairs) or not all(isinstance(v, str) for _, v in values[0]):
        raise _error(source, "invalid __metadata__: it must map strings to strings")
    return dict(values[0])


def _fields(info: object, what: str, source: str) -> tuple[object, object, object]:
    """(dtype, shape, data_offsets) of one header entry: an object with those three fields
    (others are ignored) or, as the reference reader also accepts, a list of the three."""
    if isinstance(info, list) and not isinstance(info, _Pairs):
        if len(info) != 3:
            raise _error(source, f"invalid header entry for {what}: a list entry must be "
                                 f"[dtype, shape, data_offsets], got {len(info)} values")
        return info[0], info[1], info[2]
    if not isinstance(info, _Pairs):
        raise _error(source, f"invalid header entry for {what}: expected an object")
    found: dict[str, object] = {}
    for key, value in info:
        if key in ("dtype", "shape", "data_offsets"):
            if key in found:
                raise _error(source, f"invalid header entry for {what}: {key!r} appears twice")
            found[key] = value
    missing = [k for k in ("dtype", "shape", "data_offsets") if k not in found]
    if missing:
        raise _error(source, f"invalid header entry for {what}: no {missing[0]!r}")
    return found["dtype"], found["shape"], found["data_offsets"]


def _dtype_name(dtype: object) -> object:
    # {"F32": null} is how serde writes a unit enum variant as an object; accepted there too
    if isinstance(dtype, _Pairs) and len(dtype) == 1 and dtype[0][1] is None:
        return dtype[0][0]
    return dtype


def _holdable(shape: list[int], dtype: np.dtype) -> bool:
    """Whether NumPy can make an array of this shape (dimension count, total size)."""
    size = math.prod(shape)
    try:  # allocates nothing: an empty array, or one with the same number of dimensions
        np.empty(shape if size == 0 else [0] * len(shape), dtype=dtype)
    except (ValueError, MemoryError):
        return False
    return True


def _entry(name: str, info: object, data_size: int, source: str) -> tuple[str, list, int, int]:
    what = f"tensor {name!r}"
    dtype, shape, offsets = _fields(info, what, source)
    dtype = _dtype_name(dtype)
    if not isinstance(dtype, str) or dtype not in _DTYPES:
        hint = (
            "NumPy has no bfloat16; convert the file to F32 with the tool that wrote it."
            if dtype == "BF16"
            else f"cnnlab reads {', '.join(_DTYPES)}; convert the tensor to one of these."
        )
        raise _error(source, f"unknown dtype {dtype!r} for {what}", hint)
    if not isinstance(shape, list) or isinstance(shape, _Pairs) or not all(
        _is_count(d) for d in shape
    ):
        raise _error(source, f"invalid shape {shape!r} for {what}: expected a list of sizes >= 0")
    if not isinstance(offsets, list) or isinstance(offsets, _Pairs) or len(offsets) != 2 or \
            not all(_is_count(o) for o in offsets):
        raise _error(
            source, f"invalid data_offsets {offsets!r} for {what}: expected [begin, end]"
        )
    begin, end = offsets
    if end < begin:
        raise _error(
            source, f"bad offsets for {what}: data_offsets [{begin}, {end}] end before they begin"
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
    if not _holdable(shape, _DTYPES[dtype]):
        raise _error(
            source,
            f"invalid shape {shape!r} for {what}: NumPy cannot make an array of it (at most "
            f"{_MAX_DIMS} dimensions, and a size it can address)",
        )
    return dtype, shape, begin, end


def _check_tiling(spans: list[tuple[int, int, str]], data_size: int, source: str) -> None:
    """The spans must tile the buffer: each starts where the previous one ended."""
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


def _read_header(f: BinaryIO, size: int, source: str) -> tuple[dict, dict[str, str], int]:
    """Parse and check the header. Returns ({name: {"dtype", "shape", "data_offsets"}},
    metadata, data size)."""
    head = f.read(9)
    length = struct.unpack("<Q", head[:8])[0] if len(head) >= 8 else None
    starts_well = head[8:9] in (b"{", b" ", b"\t", b"\n", b"\r")
    if not starts_well or length is None or length > min(size - 8, MAX_HEADER_BYTES):
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
    if not raw.lstrip(b" \t\n\r").startswith(b"{"):
        raise _error(source, "not a safetensors file: the JSON header must start with '{'")
    pairs = _parse_json(raw, source)
    metadata = _metadata(pairs, source)
    data_size = size - 8 - length
    header: dict[str, dict] = {}
    for name, info in pairs:  # a repeated tensor name: the last entry counts
        if name != "__metadata__":
            dtype, shape, begin, end = _entry(name, info, data_size, source)
            header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}
    _check_tiling([(*h["data_offsets"], n) for n, h in header.items()], data_size, source)
    return header, metadata, data_size


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _read(
    f: BinaryIO, size: int, source: str, check: Callable | None = None
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    header, metadata, data_size = _read_header(f, size, source)
    if check is not None:
        check({n: (_DTYPES[h["dtype"]], tuple(h["shape"])) for n, h in header.items()}, metadata)
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
    """Open a regular file for reading. A FIFO, a device or a socket is refused without
    blocking on it (opening a FIFO for reading waits for a writer)."""
    source = os.fspath(path)
    try:
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
        fd = os.open(source, flags)
    except FileNotFoundError:
        raise ModelFileError(f"{source}: no such file. Check the path.") from None
    except IsADirectoryError:
        raise ModelFileError(f"{source}: is a directory, not a safetensors file.") from None
    except PermissionError:
        raise ModelFileError(
            f"{source}: permission denied; check the file's permissions."
        ) from None
    info = os.fstat(fd)
    if stat.S_ISDIR(info.st_mode):
        os.close(fd)
        raise ModelFileError(f"{source}: is a directory, not a safetensors file.")
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise ModelFileError(
            f"{source}: not a regular file (a FIFO, device or socket); a model file must be "
            "a file on disk: save or copy it to one."
        )
    if hasattr(os, "set_blocking"):
        os.set_blocking(fd, True)
    return os.fdopen(fd, "rb"), info.st_size, source


def load_file_with_metadata(
    path: str | os.PathLike,
    check: Callable[[dict[str, tuple[np.dtype, tuple[int, ...]]], dict[str, str]], None]
    | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Read a safetensors file: its arrays and its ``__metadata__``.

    Args:
        path: the file.
        check: called with ``(name -> (dtype, shape), metadata)`` once the header has been
            read and checked, before any tensor data is read; it raises to stop there.

    Returns:
        (name -> writable NumPy array in native byte order, metadata dict of str -> str).

    Raises:
        ModelFileError: missing file, pickle/zip/npy file, truncated file, oversized or
            invalid header, unknown dtype, bad offsets, shape/size mismatch.
    """
    f, size, source = _open(path)
    with f:
        return _read(f, size, source, check)


def load_file(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read the arrays of a safetensors file (see :func:`load_file_with_metadata`)."""
    return load_file_with_metadata(path)[0]


def read_header(
    path: str | os.PathLike,
) -> tuple[dict[str, tuple[np.dtype, tuple[int, ...]]], dict[str, str]]:
    """Read only the header of a safetensors file: what it holds, not the values.

    Everything the header claims is checked against the file (as :func:`load_file` does),
    but no tensor data is read, so a caller can check names and shapes before it commits
    any memory to them.

    Returns:
        (name -> (NumPy dtype, shape), metadata dict of str -> str).

    Raises:
        ModelFileError: as for :func:`load_file_with_metadata`.
    """
    f, size, source = _open(path)
    with f:
        header, metadata, _ = _read_header(f, size, source)
    return {n: (_DTYPES[h["dtype"]], tuple(h["shape"])) for n, h in header.items()}, metadata


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
