"""Images in class folders (``root/<class>/<image>``) and single image files, via Pillow.

Pillow is imported only when an image is read, so the rest of cnnlab needs NumPy alone.
All images of a dataset end up with one channel count and one size: unless given, the
most common ones among the files (ties go to the first file in sorted order); the others
are converted / resized (bilinear) and ``.notes`` says how many.

Sizes are checked before pixels are decoded: every file's header is read first, an image
above Pillow's decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``) is refused, and so
is a data set whose decoded pixels would not fit in memory. A JPEG much larger than the
size it is resized to is decoded at a reduced scale.
"""

from __future__ import annotations

import os
import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.data.errors import DataFormatError
from cnnlab.data.loader import ArrayDataset

__all__ = ["IMAGE_EXTENSIONS", "ImageFolder", "check_decoded_size", "class_text", "load_image"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
# Pillow modes that hold one value per pixel; every other mode is read as RGB.
GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


def _pillow() -> Any:
    try:
        from PIL import Image
    except ImportError as exc:
        raise ImportError(
            'reading image files needs Pillow, which is not installed: pip install "cnnlab[cli]"'
        ) from exc
    return Image


def _channels_of(mode: str) -> int:
    return 1 if mode in GRAY_MODES else 3


def _size_pair(size: int | Sequence[int] | None, who: str) -> tuple[int, int] | None:
    if size is None:
        return None
    pair = (size, size) if isinstance(size, (int, np.integer)) else tuple(size)
    if len(pair) != 2 or not all(isinstance(s, (int, np.integer)) and s > 0 for s in pair):
        raise ValueError(
            f"{who}: expected size as a positive int or (height, width), found {size!r}"
        )
    return int(pair[0]), int(pair[1])


def _check_channels(channels: int | None, who: str) -> None:
    if channels not in (None, 1, 3):
        raise ValueError(f"{who}: expected channels 1 (grayscale) or 3 (RGB), found {channels!r}")


def _open_error(path: Path, exc: Exception) -> DataFormatError:
    image_mod = _pillow()
    bomb = (getattr(image_mod, "DecompressionBombWarning", ()),
            getattr(image_mod, "DecompressionBombError", ()))
    if isinstance(exc, bomb):
        limit = image_mod.MAX_IMAGE_PIXELS
        return DataFormatError(
            f"{path}: the image declares more pixels than Pillow's safety limit of "
            f"{limit:,} ({exc}); decoding it could exhaust memory (a decompression bomb). "
            "Shrink it first, or raise PIL.Image.MAX_IMAGE_PIXELS if you trust the file"
        )
    return DataFormatError(
        f"{path}: not an image cnnlab can read ({type(exc).__name__}: {exc}); expected a PNG, "
        "JPEG, BMP, GIF or WebP file: replace it or remove it"
    )


def _open(image_mod: Any, path: Path):
    """``Image.open`` with Pillow's decompression-bomb warning turned into an error: an image
    just under the hard limit still decodes to hundreds of megabytes."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", image_mod.DecompressionBombWarning)
        return image_mod.open(path)


def _probe(path: Path) -> tuple[str, tuple[int, int]]:
    """Mode and (height, width) from the file header, without decoding the pixels."""
    image_mod = _pillow()
    try:
        with _open(image_mod, path) as im:
            return im.mode, (im.height, im.width)
    except Exception as exc:  # Pillow raises many types for bad files
        raise _open_error(path, exc) from exc


def check_decoded_size(shapes: Sequence[tuple[int, int, int]], who: str,
                       hint: str = "pass size=(height, width) to resize the images as they "
                                   "load, or shrink the files") -> None:
    """Refuse images whose decoded pixels (uint8 while decoding, then float32) would not fit
    in memory, before any is decoded.

    Args:
        shapes: ``(C, H, W)`` of every image as it will be stored.
        who: what is loading them, for the message.
        hint: what to do about it.

    Raises:
        cnnlab.budget.TooLargeError: with the figure.
    """
    from cnnlab.budget import check_fits

    values = sum(c * h * w for c, h, w in shapes)
    if not shapes:
        return
    c, h, w = shapes[0]
    same = all(s == shapes[0] for s in shapes)
    what = (f"{who}: {len(shapes):,} images of {c}x{h}x{w}" if same
            else f"{who}: {len(shapes):,} images ({values:,} values)")
    check_fits(what, 5 * values, hint)


def _pixels(
    path: Path, channels: int, size: tuple[int, int] | None
) -> tuple[np.ndarray, dict[str, bool]]:
    """Decode one image to ``(C, H, W)`` uint8, and say what had to change.

    Returns:
        the pixels and flags ``converted`` (gray <-> RGB), ``alpha`` (transparency
        dropped) and ``resized``.
    """
    image_mod = _pillow()
    target_mode = "L" if channels == 1 else "RGB"
    try:
        with _open(image_mod, path) as im:
            if size is not None and im.format == "JPEG" and \
                    min(im.height // size[0], im.width // size[1]) >= 2:
                im.draft(target_mode, (size[1], size[0]))  # decode at 1/2, 1/4 or 1/8 scale
            im.load()
            changes = {
                "converted": _channels_of(im.mode) != channels,
                "alpha": im.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in im.info,
            }
            if im.mode != target_mode:
                if im.mode.startswith("I;16") or im.mode == "I":
                    # 16-bit gray: scale to 8 bits instead of clipping at 255.
                    arr16 = np.asarray(im, dtype=np.float32)
                    peak = 65535.0 if im.mode.startswith("I;16") else max(arr16.max(), 1.0)
                    im = image_mod.fromarray(
                        np.clip(arr16 * (255.0 / peak), 0, 255).astype(np.uint8), "L"
                    )
                im = im.convert(target_mode)
            changes["resized"] = size is not None and (im.height, im.width) != size
            if changes["resized"]:
                resampling = getattr(image_mod, "Resampling", image_mod)  # Pillow < 9.1
                im = im.resize((size[1], size[0]), resampling.BILINEAR)
            arr = np.asarray(im, dtype=np.uint8)
    except DataFormatError:
        raise
    except Exception as exc:  # truncated data, bad chunks, unsupported variants
        raise _open_error(path, exc) from exc
    arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    return arr, changes


def load_image(
    path: str | os.PathLike,
    channels: int | None = None,
    size: int | Sequence[int] | None = None,
) -> np.ndarray:
    """Read one image file as a float32 array in [0, 1].

    Args:
        path: a PNG, JPEG, BMP, GIF (first frame) or WebP file.
        channels: 1 (grayscale) or 3 (RGB); None keeps the file's own (alpha dropped).
        size: ``(height, width)`` or one int; resized with bilinear interpolation.
            None keeps the file's size.

    Shape:
        returns ``(C, H, W)``.

    Raises:
        FileNotFoundError: no such file.
        DataFormatError: the file cannot be decoded as an image, or declares more pixels
            than Pillow's decompression-bomb limit.
        cnnlab.budget.TooLargeError: its pixels would not fit in memory.
        ImportError: Pillow is not installed.

    Example:
        >>> from PIL import Image; import tempfile, os
        >>> p = os.path.join(tempfile.mkdtemp(), "a.png")
        >>> Image.new("RGB", (5, 4), (255, 0, 0)).save(p)
        >>> x = load_image(p, channels=3, size=2)
        >>> x.shape, float(x[0].max()), x.dtype
        ((3, 2, 2), 1.0, dtype('float32'))
    """
    _check_channels(channels, "load_image")
    size2 = _size_pair(size, "load_image")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"load_image: {path} does not exist or is not a file")
    mode, hw = _probe(path)
    if channels is None:
        channels = _channels_of(mode)
    check_decoded_size([(max(channels, _channels_of(mode)), *hw)], f"load_image {path}",
                       "shrink the file first")
    arr, _ = _pixels(path, channels, size2)
    out = arr.astype(np.float32)
    out /= np.float32(255.0)
    return out


def class_text(name: str) -> str:
    r"""A folder name as printable, saveable text: bytes that are not UTF-8 (which
    ``os.fsdecode`` turns into lone surrogates) are written as ``\xNN``.

    Example:
        >>> class_text("cat"), class_text("caf\udce9")
        ('cat', 'caf\\xe9')
    """
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        raw = name.encode("utf-8", "surrogateescape")
        return raw.decode("utf-8", "backslashreplace")


def _visible(path: Path) -> bool:
    return not path.name.startswith(".")


class ImageFolder(ArrayDataset):
    """A labelled dataset from folders of images: ``root/<class name>/<image file>``.

    Args:
        root: the folder whose sub-folders are the classes.
        channels: 1 or 3; None means the most common among the images.
        size: ``(height, width)`` or one int; None means the most common image size.
        classes: class names in label order; None means every sub-folder, sorted. Folders
            not named are ignored (and mentioned in ``.notes``).

    Shape:
        ``.images`` ``(N, C, H, W)`` float32 in [0, 1]; ``.labels`` ``(N,)`` int64.
        Files are ordered by class, then by name.

    Hidden files and folders (starting with ".") are skipped; so are files without an
    image extension (counted in ``.notes``).

    Raises:
        FileNotFoundError: ``root`` or a named class folder does not exist.
        DataFormatError: no images, a file that cannot be decoded (named in the message),
            or one above Pillow's decompression-bomb limit.
        cnnlab.budget.TooLargeError: the decoded images would not fit in memory (checked
            from the files' headers, before any is decoded).
        ImportError: Pillow is not installed.

    Folder names that are not valid UTF-8 become class names with the odd bytes written
    as ``\\xNN``.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        channels: int | None = None,
        size: int | Sequence[int] | None = None,
        classes: Sequence[str] | None = None,
    ) -> None:
        _check_channels(channels, "ImageFolder")
        size2 = _size_pair(size, "ImageFolder")
        self.root = Path(root).expanduser()
        self.notes: list[str] = []
        if not self.root.is_dir():
            raise FileNotFoundError(
                f"ImageFolder: {self.root} is not a folder; expected root/<class>/<image> files"
            )
        real = sorted(p.name for p in self.root.iterdir() if p.is_dir() and _visible(p))
        # A folder name that is not UTF-8 (bytes os.fsdecode turns into lone surrogates)
        # becomes text with the bytes written as \xNN, so it can be printed and saved.
        by_name = {class_text(f): f for f in real}
        folders = list(by_name)
        if classes is None:
            class_names = folders
        else:
            class_names = [class_text(str(c)) for c in classes]
            absent = [c for c in class_names if c not in by_name]
            if absent:
                raise FileNotFoundError(
                    f"ImageFolder: class folders {absent} not found in {self.root}; found {folders}"
                )
            ignored = [f for f in folders if f not in class_names]
            if ignored:
                self.notes.append(f"ignored folders not in classes: {', '.join(ignored)}")
        files: list[Path] = []
        labels: list[int] = []
        skipped: list[str] = []
        for label, name in enumerate(class_names):
            for path in sorted((self.root / by_name[name]).iterdir()):
                if not _visible(path) or not path.is_file():
                    continue
                if path.suffix.lower() not in IMAGE_EXTENSIONS:
                    skipped.append(f"{name}/{path.name}")
                    continue
                files.append(path)
                labels.append(label)
        if skipped:
            shown = ", ".join(skipped[:5]) + (", ..." if len(skipped) > 5 else "")
            self.notes.append(f"skipped {len(skipped)} files that are not images: {shown}")
        if not files:
            raise DataFormatError(
                f"ImageFolder: no images found in {self.root}; expected "
                f"root/<class>/<image> with extensions {', '.join(IMAGE_EXTENSIONS)} "
                f"(class folders found: {folders})"
            )
        probes = [_probe(p) for p in files]
        if channels is None:
            channels = Counter(_channels_of(mode) for mode, _ in probes).most_common(1)[0][0]
        if size2 is None:
            size2 = Counter(s for _, s in probes).most_common(1)[0][0]
        # What the data set takes once decoded, and the largest single decode on the way.
        check_decoded_size([(channels, *size2)] * len(files), f"ImageFolder {self.root}")
        largest = max(probes, key=lambda p: p[1][0] * p[1][1])
        check_decoded_size([(3, *largest[1])], f"ImageFolder {self.root}, its largest image",
                           "shrink the largest images first")
        images = np.empty((len(files), channels, *size2), dtype=np.uint8)
        counts: Counter[str] = Counter()
        for i, path in enumerate(files):
            images[i], changes = _pixels(path, channels, size2)
            counts.update(k for k, v in changes.items() if v)
        n = len(files)
        mode_name = "grayscale" if channels == 1 else "RGB"
        if counts["converted"]:
            self.notes.append(f"converted {counts['converted']} of {n} images to {mode_name}")
        if counts["alpha"]:
            self.notes.append(f"dropped the transparency of {counts['alpha']} of {n} images")
        if counts["resized"]:
            self.notes.append(
                f"resized {counts['resized']} of {n} images to {size2[0]}x{size2[1]} (bilinear)"
            )
        present = set(labels)
        empty = [c for i, c in enumerate(class_names) if i not in present]
        if empty:
            self.notes.append(f"classes with no images: {', '.join(empty)}")
        self.files = files
        out = images.astype(np.float32)
        out /= np.float32(255.0)
        super().__init__(out, np.asarray(labels, dtype=np.int64), class_names)

    def __repr__(self) -> str:
        c, h, w = self.input_shape
        return (
            f"ImageFolder(root={str(self.root)!r}, n={len(self)}, shape=({c}, {h}, {w}), "
            f"classes={self.classes})"
        )
