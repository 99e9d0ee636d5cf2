"""Image files as the commands take them: files or folders of them, read to a model's input
with a note on what was changed, and a first argument that is not a model file told apart
from one that is damaged."""

from __future__ import annotations

import struct
import sys
from pathlib import Path

from cnnlab.cli.main import CLIError, UsageError
from cnnlab.cli.text import printable

__all__ = ["check_model_argument", "image_files", "read_image"]

MODEL_FILE = "model.safetensors"

# The first bytes of the image formats cnnlab reads (and of a few others people try).
_MAGIC = {b"\x89PNG": "a PNG image", b"\xff\xd8\xff": "a JPEG image", b"GIF8": "a GIF image",
          b"BM": "a BMP image", b"RIFF": "a WebP image", b"II*\x00": "a TIFF image",
          b"MM\x00*": "a TIFF image"}


def _what_file(path: Path) -> str | None:
    """What a file that is not a safetensors file looks like, or None if it may be one."""
    from cnnlab.data.folder import IMAGE_EXTENSIONS

    try:
        with open(path, "rb") as f:
            head = f.read(16)
            size = path.stat().st_size
    except OSError:
        return None  # the loader says what is wrong with it
    for magic, kind in _MAGIC.items():
        if head.startswith(magic):
            return kind
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        return f"a {path.suffix.lower()} file"
    if len(head) < 9:
        return None
    (length,) = struct.unpack("<Q", head[:8])
    if length > size - 8 or head[8:9] not in b"{ \t\r\n":
        return "not a safetensors file"
    return None


def check_model_argument(arg: str, usage: str) -> None:
    """Refuse, as a usage error, a MODEL argument that is plainly not a model file (an image
    given first, a text file), so the user sees the usage rather than a parser's complaint
    about header lengths.

    Args:
        arg: the MODEL argument.
        usage: the command's form, e.g. ``"cnnlab predict MODEL IMAGE..."``.

    Raises:
        UsageError: naming the argument and what it looks like.
    """
    path = Path(arg)
    if path.is_dir() and not (path / MODEL_FILE).is_file():
        images = image_files([arg], strict=False)
        if images:
            raise UsageError(
                f"MODEL: {printable(arg)} is a folder of images, not a model; the model "
                f"comes first: {usage}"
            )
        return
    if path.is_file():
        kind = _what_file(path)
        if kind is not None:
            raise UsageError(
                f"MODEL: {printable(arg)} is not a cnnlab model file ({kind}); the model "
                f"comes first: {usage} (MODEL: a model.safetensors written by `cnnlab "
                "train`, or its --out folder)"
            )


def image_files(args: list[str], strict: bool = True) -> list[str]:
    """The image files named by ``args``: files as given, folders as the image files in
    them and their sub-folders, sorted (hidden files and folders skipped).

    Raises:
        CLIError: (with ``strict``) a name that does not exist, or a folder without images.
    """
    from cnnlab.data.folder import IMAGE_EXTENSIONS

    found: list[str] = []
    for arg in args:
        path = Path(arg)
        if path.is_dir():
            inside = sorted(
                str(p) for p in path.rglob("*")
                if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
            if not inside and strict:
                raise CLIError(f"{printable(arg)}: a folder without image files (expected "
                               f"{', '.join(IMAGE_EXTENSIONS)}, also in sub-folders)")
            found += inside
        elif path.exists() or not strict:
            found.append(arg)
        else:
            raise CLIError(f"{printable(arg)}: no such image file or folder")
    return found


def read_image(name: str, c: int, h: int, w: int):
    """Read an image as (c, h, w) float32 in [0, 1], noting on stderr what was changed.

    Raises:
        CLIError: when the file is missing, is not an image, or is too large to decode.
    """
    from cnnlab.budget import TooLargeError
    from cnnlab.data import DataFormatError, load_image
    from cnnlab.data.folder import _probe

    path = Path(name)
    shown = printable(name)
    if not path.is_file():
        raise CLIError(f"{shown}: no such image file")
    try:
        import PIL  # noqa: F401
    except ImportError:
        raise CLIError('reading images needs Pillow: pip install "cnnlab[cli]"') from None
    try:
        mode, size = _probe(path)
    except DataFormatError as exc:
        raise CLIError(printable(exc, multiline=True)) from None
    changes = []
    gray = mode in ("1", "L", "LA", "I", "F") or mode.startswith("I;16")
    if gray != (c == 1):
        changes.append(f"converted {mode} to {'grayscale' if c == 1 else 'RGB'}")
    if size != (h, w):
        changes.append(f"resized {size[0]}x{size[1]} to {h}x{w} (height x width)")
    if changes:
        print(f"note: {shown}: {' and '.join(changes)} to fit the model's input "
              f"({c}x{h}x{w})", file=sys.stderr)
    try:
        return load_image(path, channels=c, size=(h, w))
    except (DataFormatError, TooLargeError) as exc:
        raise CLIError(printable(exc, multiline=True)) from None
