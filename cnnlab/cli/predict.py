"""``cnnlab predict``: the class of each image file, with the top-k probabilities."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from cnnlab.cli.main import CLIError
from cnnlab.cli.text import printable


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
                   help="PNG, JPEG, BMP, GIF or WebP files, or folders of them (their images "
                        "and their sub-folders' images, in sorted order)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object per image (one per line) instead of text")
    p.add_argument("--out", metavar="DIR",
                   help="also draw each image with the model's answer on it, as DIR/<name>.png")
    for name in tasks.available():
        tasks.get(name).add_arguments("predict", p)
    p.set_defaults(func=run)


# Images per forward pass: a folder of thousands is read and run a batch at a time.
BATCH = 256


def run(args: argparse.Namespace) -> int:
    """Run the model on every image in ``args.images`` (files, or folders of them)."""
    import numpy as np

    from cnnlab.cli.evaluate import load_model, task_of
    from cnnlab.cli.images import check_model_argument, image_files, read_image
    from cnnlab.data.folder import class_text

    check_model_argument(args.model, "cnnlab predict MODEL IMAGE...")
    path, model = load_model(args.model)
    task = task_of(model, path)
    c, h, w = (int(d) for d in model.spec["input_shape"])
    names = image_files(args.images)
    results = []
    for start in range(0, len(names), BATCH):
        chunk = names[start:start + BATCH]
        batch = np.empty((len(chunk), c, h, w), dtype=np.float32)
        for i, name in enumerate(chunk):
            batch[i] = read_image(name, c, h, w)
        try:
            results += task.predict(model, batch, options=vars(args))
        except ValueError as exc:
            raise CLIError(str(exc)) from None
        if args.out:
            for name, image, result in zip(chunk, batch, results[start:], strict=True):
                task.draw(image, result, str(Path(args.out) / (Path(name).stem + ".png")),
                          model.spec)
    if args.json:
        for name, result in zip(names, results, strict=True):
            print(json.dumps({"file": class_text(name), "task": task.name, **result},
                             allow_nan=False))
        return 0
    shown = [printable(name) for name in names]
    width = max(len(name) for name in shown)
    for name, result in zip(shown, results, strict=True):
        print(f"{name:<{width}}  {printable(task.describe(result))}")
    if args.out:
        print(f"drew {len(results)} picture(s) in {args.out}")
    return 0


def read_image(name: str, c: int, h: int, w: int):
    """Read one image for the model (see :func:`cnnlab.cli.images.read_image`)."""
    from cnnlab.cli.images import read_image as read

    return read(name, c, h, w)
