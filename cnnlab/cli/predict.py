"""``cnnlab predict``: the class of each image file, with the top-k probabilities."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from cnnlab.cli.main import CLIError


def register(subparsers: Any) -> None:
    """Add the ``predict`` command."""
    from cnnlab import tasks

    p = subparsers.add_parser(
        "predict",
        help="run a trained model on image files",
        description=(
            "Run a trained model on image files and print its answer for each: a classifier's "
            "most likely classes, a segmenter's mask, a detector's boxes, key points, or a "
            "caption. Images are converted (grayscale/RGB) and resized to the model's input, "
            "with a note on stderr when that happens."
        ),
    )
    p.add_argument("model", metavar="MODEL",
                   help="a model file, or the --out folder of `cnnlab train`")
    p.add_argument("images", metavar="IMAGE", nargs="+",
                   help="PNG, JPEG, BMP, GIF or WebP files")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object per image (one per line) instead of text")
    p.add_argument("--out", metavar="DIR",
                   help="also draw each image with the model's answer on it, as DIR/<name>.png")
    for name in tasks.available():
        tasks.get(name).add_arguments("predict", p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the model on every image in ``args.images``."""
    import numpy as np

    from cnnlab.cli.evaluate import load_model, task_of

    path, model = load_model(args.model)
    task = task_of(model, path)
    c, h, w = (int(d) for d in model.spec["input_shape"])
    batch = np.empty((len(args.images), c, h, w), dtype=np.float32)
    for i, name in enumerate(args.images):
        batch[i] = read_image(name, c, h, w)
    try:
        results = task.predict(model, batch, options=vars(args))
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    if args.out:
        for name, image, result in zip(args.images, batch, results, strict=True):
            task.draw(image, result, str(Path(args.out) / (Path(name).stem + ".png")),
                      model.spec)
    if args.json:
        for name, result in zip(args.images, results, strict=True):
            print(json.dumps({"file": name, "task": task.name, **result}, allow_nan=False))
        return 0
    width = max(len(name) for name in args.images)
    for name, result in zip(args.images, results, strict=True):
        print(f"{name:<{width}}  {task.describe(result)}")
    if args.out:
        print(f"drew {len(results)} picture(s) in {args.out}")
    return 0


def read_image(name: str, c: int, h: int, w: int):
    """Read an image as (c, h, w) float32 in [0, 1], noting on stderr what was changed.

    Raises:
        CLIError: when the file is missing or is not an image.
    """
    from cnnlab.data import DataFormatError, load_image

    path = Path(name)
    if not path.is_file():
        raise CLIError(f"{name}: no such image file")
    try:
        from PIL import Image
    except ImportError:
        raise CLIError('reading images needs Pillow: pip install "cnnlab[cli]"') from None
    try:
        with Image.open(path) as im:
            mode, size = im.mode, (im.height, im.width)
    except Exception as exc:  # Pillow raises many kinds of errors for bad files
        raise CLIError(f"{name}: not an image Pillow can read ({exc})") from None
    changes = []
    gray = mode in ("1", "L", "LA", "I", "F") or mode.startswith("I;16")
    if gray != (c == 1):
        changes.append(f"converted {mode} to {'grayscale' if c == 1 else 'RGB'}")
    if size != (h, w):
        changes.append(f"resized {size[1]}x{size[0]} to {w}x{h}")
    if changes:
        print(f"note: {name}: {' and '.join(changes)} to fit the model's input "
              f"({c}x{h}x{w})", file=sys.stderr)
    try:
        return load_image(path, channels=c, size=(h, w))
    except DataFormatError as exc:
        raise CLIError(str(exc)) from None
