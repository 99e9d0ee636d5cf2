"""``cnnlab predict``: the class of each image file, with the top-k probabilities."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from cnnlab.cli.main import CLIError
from cnnlab.cli.train import positive_int


def register(subparsers: Any) -> None:
    """Add the ``predict`` command."""
    p = subparsers.add_parser(
        "predict",
        help="classify image files with a trained model",
        description=(
            "Classify image files with a trained model and show the most likely classes. "
            "Images are converted (grayscale/RGB) and resized to the model's input, with a "
            "note on stderr when that happens."
        ),
    )
    p.add_argument("model", metavar="MODEL",
                   help="a model file, or the --out folder of `cnnlab train`")
    p.add_argument("images", metavar="IMAGE", nargs="+",
                   help="PNG, JPEG, BMP, GIF or WebP files")
    p.add_argument("--top-k", type=positive_int, default=3, metavar="K",
                   help="how many classes to show per image (default 3)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object with a list of predictions instead of text")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Predict the class of every image in ``args.images``."""
    import numpy as np

    import cnnlab
    from cnnlab.cli.evaluate import load_model, normalizer

    path, model = load_model(args.model)
    spec = model.spec
    c, h, w = (int(d) for d in spec["input_shape"])
    batch = np.empty((len(args.images), c, h, w), dtype=np.float32)
    for i, name in enumerate(args.images):
        batch[i] = read_image(name, c, h, w)
    transform = normalizer(spec)
    x = transform(batch) if transform is not None else batch
    with cnnlab.no_grad():
        logits = np.asarray(model(cnnlab.Tensor(x)).data, dtype=np.float64)
    # An imported model may end in a softmax already (its spec says so).
    probs = logits if spec.get("output") == "probabilities" else softmax(logits)
    classes = list(spec.get("classes") or [])
    names = [classes[j] if j < len(classes) else str(j) for j in range(probs.shape[1])]
    k = min(args.top_k, probs.shape[1])

    predictions = []
    for name, p in zip(args.images, probs, strict=True):
        order = np.argsort(-p, kind="stable")[:k]
        top = [{"class": names[j], "index": int(j), "probability": float(p[j])} for j in order]
        predictions.append({"file": name, **top[0], "top_k": top})
    if args.json:
        print(json.dumps({"model": str(path), "predictions": predictions}))
        return 0
    width = max(len(p["file"]) for p in predictions)
    for pred in predictions:
        others = ", ".join(f"{t['class']} {t['probability']:.1%}" for t in pred["top_k"])
        print(f"{pred['file']:<{width}}  {pred['class']} ({pred['probability']:.1%})"
              f"    top-{k}: {others}")
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


def softmax(logits):
    """Row-wise softmax of a (N, K) array, computed stably."""
    import numpy as np

    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)
