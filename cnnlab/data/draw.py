"""Pictures of digit scenes: masks, boxes, key points and captions drawn over the images.

``plot_scenes(scenes, path)`` draws some scenes of a ``DigitScenes``; ``draw_scene_grid``
draws any images with any of the annotations (a model's predictions as well as the truth).
Both need matplotlib (``pip install 'cnnlab[plot]'``) and write a PNG.

The images are drawn with each pixel ``(row r, column c)`` covering ``[c, c + 1) x
[r, r + 1)``, the frame boxes and key points are given in, so what is drawn lines up with
the pixels exactly.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["draw_scene_grid", "plot_scenes"]

CELL_INCHES = 2.2
DPI = 100
# Marker of each key point, in KEYPOINT_NAMES order: centre, top, bottom.
MARKERS = ("o", "^", "v")
# A caption is wrapped to lines of this many characters, and at most this many lines (the
# longest caption of four digits takes three).
CAPTION_WIDTH = 36
CAPTION_LINES = 4


def _import_pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ImportError(
            "drawing scenes needs matplotlib; install it with pip install 'cnnlab[plot]'"
        ) from None
    matplotlib.use("Agg", force=True)  # files only, never a window
    import matplotlib.pyplot as plt

    return plt


def _per_image(value: Any, n: int, name: str) -> list | None:
    if value is None:
        return None
    items = list(value)
    if len(items) != n:
        raise ValueError(f"draw_scene_grid: expected {name} for each of the {n} images, "
                         f"found {len(items)}")
    return items


def draw_scene_grid(
    images: Any,
    path: str | os.PathLike,
    *,
    masks: Any = None,
    boxes: Sequence[Any] | None = None,
    labels: Sequence[Any] | None = None,
    keypoints: Sequence[Any] | None = None,
    captions: Sequence[str] | None = None,
    classes: Sequence[str] | None = None,
    cols: int = 4,
    title: str | None = None,
) -> Path:
    """Draw images in a grid with whatever annotations are given.

    Args:
        images: ``(N, 1, H, W)`` or ``(N, H, W)`` values in [0, 1].
        path: the PNG to write (parent folders are created).
        masks: ``(N, H, W)`` class indices, 0 = background (drawn as a translucent colour
            per class).
        boxes: per image ``(K, 4)`` boxes ``x0, y0, x1, y1`` in pixels.
        labels: per image ``(K,)`` class indices of the boxes / key points.
        keypoints: per image ``(K, P, 2)`` points ``(x, y)`` (P up to 3: centre, top,
            bottom).
        captions: per image a line of text, written under it.
        classes: names of the labels (default: the label numbers).
        cols: images per row.
        title: a line above the grid.

    Returns:
        ``path`` as a Path.

    Raises:
        ImportError: matplotlib is not installed.
        ValueError: images of the wrong shape, annotations not one per image.
    """
    images = np.asarray(images)
    if images.ndim == 4 and images.shape[1] == 1:
        images = images[:, 0]
    if images.ndim != 3 or images.shape[0] == 0:
        raise ValueError(f"draw_scene_grid: expected images of shape (N, 1, H, W) or (N, H, W) "
                         f"with N >= 1, found shape {images.shape}")
    if isinstance(cols, bool) or not isinstance(cols, (int, np.integer)) or cols < 1:
        raise ValueError(f"draw_scene_grid: expected cols >= 1, found {cols!r}")
    n, height, width = images.shape
    masks = _per_image(masks, n, "a mask")
    boxes = _per_image(boxes, n, "boxes")
    labels = _per_image(labels, n, "labels")
    keypoints = _per_image(keypoints, n, "key points")
    captions = _per_image(captions, n, "a caption")
    plt = _import_pyplot()
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Rectangle

    colours = plt.get_cmap("tab10").colors
    mask_map = ListedColormap([(0, 0, 0, 0), *[(*c, 0.5) for c in colours]])
    cols = min(int(cols), n)
    rows = -(-n // cols)
    text_lines = CAPTION_LINES if captions is not None else 0
    fig, axes = plt.subplots(
        rows, cols, squeeze=False, dpi=DPI,
        figsize=(cols * CELL_INCHES, rows * (CELL_INCHES + 0.14 * text_lines) + 0.3),
    )
    extent = (0, width, height, 0)  # pixel c covers [c, c + 1)
    try:
        for ax in axes.ravel()[n:]:
            ax.axis("off")
        for i, ax in enumerate(axes.ravel()[:n]):
            ax.imshow(images[i], cmap="gray", vmin=0, vmax=1, extent=extent,
                      interpolation="nearest")
            if masks is not None:
                mask = np.asarray(masks[i])
                ax.imshow(np.clip(mask, 0, 10), cmap=mask_map, vmin=0, vmax=10, extent=extent,
                          interpolation="nearest")
            lab = None if labels is None else np.asarray(labels[i]).reshape(-1)
            if boxes is not None:
                for k, (x0, y0, x1, y1) in enumerate(np.asarray(boxes[i]).reshape(-1, 4)):
                    c = colours[int(lab[k]) % 10] if lab is not None else "yellow"
                    ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False,
                                           edgecolor=c, linewidth=1.2))
                    if lab is not None:
                        name = classes[int(lab[k])] if classes is not None else str(lab[k])
                        ax.text(x0, y0, name, color="white", fontsize=7, va="bottom",
                                ha="left", bbox={"facecolor": c, "pad": 1, "linewidth": 0})
            if keypoints is not None:
                points = np.asarray(keypoints[i]).reshape(-1, np.shape(keypoints[i])[-2], 2)
                for p in range(points.shape[1]):
                    ax.scatter(points[:, p, 0], points[:, p, 1], s=14,
                               marker=MARKERS[p % len(MARKERS)], c="red",
                               edgecolors="white", linewidths=0.5, zorder=3)
            ax.set_xlim(0, width)
            ax.set_ylim(height, 0)
            ax.set_xticks([])
            ax.set_yticks([])
            if captions is not None:
                lines = textwrap.wrap(captions[i], CAPTION_WIDTH)
                if len(lines) > text_lines:
                    lines = [*lines[: text_lines - 1], lines[text_lines - 1] + " ..."]
                ax.set_xlabel("\n".join(lines), fontsize=7)
        if title:
            fig.suptitle(title, fontsize=10)
        fig.tight_layout()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        from cnnlab.io.atomic import atomic_write

        with atomic_write(path) as f:
            fig.savefig(f, dpi=DPI, format="png")
    finally:
        plt.close(fig)
    return path


def plot_scenes(
    scenes: Any,
    path: str | os.PathLike,
    indices: Any = None,
    *,
    show: Sequence[str] = ("mask", "boxes", "keypoints", "caption"),
    cols: int = 4,
    title: str | None = None,
) -> Path:
    """Draw scenes of a ``DigitScenes`` with their annotations.

    Args:
        scenes: a ``DigitScenes``.
        path: the PNG to write.
        indices: which scenes (default the first eight).
        show: any of ``"mask"``, ``"boxes"``, ``"keypoints"``, ``"caption"``.
        cols: scenes per row.
        title: a line above the grid.

    Returns:
        ``path`` as a Path.

    Raises:
        ImportError: matplotlib is not installed.
        ValueError: an unknown entry in ``show``.
    """
    known = ("mask", "boxes", "keypoints", "caption")
    unknown = [s for s in show if s not in known]
    if unknown:
        raise ValueError(f"plot_scenes: expected show to list some of {', '.join(known)}, "
                         f"found {unknown}")
    idx = np.arange(min(8, len(scenes))) if indices is None else np.arange(len(scenes))[indices]
    images, targets = scenes.get_batch(idx)
    return draw_scene_grid(
        images,
        path,
        masks=targets["masks"] if "mask" in show else None,
        boxes=targets["boxes"] if "boxes" in show else None,
        labels=targets["labels"] if ("boxes" in show or "keypoints" in show) else None,
        keypoints=targets["keypoints"] if "keypoints" in show else None,
        captions=[scenes.captions[i] for i in idx] if "caption" in show else None,
        classes=scenes.classes,
        cols=cols,
        title=title,
    )
