"""Images in class folders (``root/<class>/<image>``) and single image files, via Pillow.

Pillow is imported only when an image is read, so the rest of cnnlab needs NumPy alone.
All images of a dataset end up with one channel count and one size: unless given, the
most common ones among the files (ties go to the first file in sorted order); the others
are converted / resized (bilinear) and ``.notes`` says how many.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.data.errors import DataFormatError
from cnnlab.data.loader import ArrayDataset

__all__ = ["IMAGE_EXTENSIONS", "ImageFolder", "load_image"]

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
    return DataFormatError(
        f"{path}: cannot read this image ({type(exc).__name__}: {exc}); expected a PNG, JPEG, "
        "BMP, GIF or WebP file: replace it, or remove it from the folder"
    )


def _probe(path: Path) -> tuple[str, tuple[int, int]]:
    """Mode and (height, width) from the file header, without decoding the pixels."""
    image_mod = _pillow()
    try:
        with image_mod.open(path) as im:
            return im.mode, (im.height, im.width)
    except Exception as exc:  # Pillow raises many types for bad files
        raise _open_error(path, exc) from exc


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
        with image_mod.open(path) as im:
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
        DataFormatError: the file cannot be decoded as an image.
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
    if channels is None:
        channels = _channels_of(_probe(path)[0])
    arr, _ = _pixels(path, channels, size2)
    out = arr.astype(np.float32)
    out /= np.float32(255.0)
    return out


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
        DataFormatError: no images, or a file that cannot be decoded (named in the message).
        ImportError: Pillow is not installed.
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
        folders = sorted(p.name for p in self.root.iterdir() if p.is_dir() and _visible(p))
        if classes is None:
            class_names = folders
        else:
            class_names = [str(c) for c in classes]
            absent = [c for c in class_names if c not in folders]
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
            for path in sorted((self.root / name).iterdir()):
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
