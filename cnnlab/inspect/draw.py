"""Pictures of predictions: the input image, scaled up, with the answer written or drawn on it.

Every task's ``draw`` uses these (``cnnlab predict --out DIR``). Pillow only (the ``cli``
extra); small images are scaled up by a whole factor (nearest neighbour) so that an 8x8
digit is as readable as a photograph.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from cnnlab.inspect.features import _font, _pil

MIN_SIDE = 256  # images are scaled up to at least this many pixels on their shorter side
_BG, _INK = (255, 255, 255), (20, 20, 20)
# Ten distinct colours for classes (and one per extra object), from the Tableau palette.
PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
           (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]


def scale_for(height: int, width: int, minimum: int = MIN_SIDE) -> int:
    """The whole-number zoom that makes an image at least ``minimum`` pixels on its
    shorter side."""
    return max(1, math.ceil(minimum / max(1, min(height, width))))


def to_rgb(image: np.ndarray, zoom: int) -> Any:
    """A ``(C, H, W)`` image in [0, 1] as a PIL RGB image ``zoom`` times larger."""
    Image, _, _ = _pil()
    a = np.asarray(image, dtype=np.float64)
    a = np.repeat(a, 3, axis=0) if a.shape[0] == 1 else a[:3]
    a = np.clip(np.round(a.transpose(1, 2, 0) * 255), 0, 255).astype(np.uint8)
    a = np.repeat(np.repeat(a, zoom, axis=0), zoom, axis=1)
    return Image.fromarray(a, "RGB")


def with_caption(picture: Any, lines: Sequence[str]) -> Any:
    """``picture`` above a white band holding ``lines`` of text."""
    Image, ImageDraw, _ = _pil()
    font = _font(15)
    line_h = 20
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    width = max([picture.width] + [int(probe.textlength(t, font=font)) + 16 for t in lines])
    out = Image.new("RGB", (width, picture.height + 8 + line_h * len(lines)), _BG)
    out.paste(picture, ((width - picture.width) // 2, 0))
    draw = ImageDraw.Draw(out)
    for i, text in enumerate(lines):
        draw.text((8, picture.height + 4 + i * line_h), text, fill=_INK, font=font)
    return out


def save_png(picture: Any, path: str | os.PathLike) -> str:
    """Write ``picture`` as a PNG, atomically (parent folders are created)."""
    from cnnlab.io.atomic import atomic_write

    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_write(path) as f:
        picture.save(f, format="PNG")
    return path


def save_labelled(image: np.ndarray, text: str, path: str | os.PathLike) -> str:
    """The image, scaled up, with one line of text under it."""
    zoom = scale_for(*np.asarray(image).shape[1:])
    return save_png(with_caption(to_rgb(image, zoom), [text]), path)
