"""``cnnlab evaluate``: accuracy, loss, per-class accuracy and confusion matrix on a test set."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from cnnlab.cli.main import CLIError
from cnnlab.cli.train import positive_int

MODEL_FILE = "model.safetensors"


def register(subparsers: Any) -> None:
    """Add the ``evaluate`` command."""
    from cnnlab.train.recipes import DATASETS

    p = subparsers.add_parser(
        "evaluate",
        help="measure a trained model on a test set",
        description=(
            "Measure a trained model on the test set of a dataset: accuracy, loss, accuracy "
            "per class and the confusion matrix (rows: true class, columns: predicted)."
        ),
    )
    p.add_argument("model", metavar="MODEL",
                   help="a model file, or the --out folder of `cnnlab train`")
    p.add_argument("--data", metavar="NAME|PATH",
                   help=f"{', '.join(DATASETS)}, or a folder of images (default: the data the "
                        "model was trained on)")
    p.add_argument("--data-dir", metavar="DIR", help="where the dataset files are")
    p.add_argument("--download", action="store_true",
                   help="download the dataset if its files are missing")
    p.add_argument("--batch-size", type=positive_int, default=256, metavar="N",
                   help="images per forward pass (default 256)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object (accuracy, loss, n, per-class accuracy, "
                        "confusion matrix) instead of text")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Evaluate ``args.model`` on the test set of ``args.data``."""
    from cnnlab import train as T
    from cnnlab.cli.train import open_data
    from cnnlab.train.recipes import data_name

    path, model = load_model(args.model)
    spec = model.spec
    c, h, w = spec["input_shape"]
    meta = model_meta(model)
    data = args.data or meta.get("data_arg")
    if not data:
        raise CLIError(f"{path} does not say which data it was trained on; pass --data")
    classes = spec.get("classes")
    is_folder = Path(data).expanduser().is_dir()
    data_dir = args.data_dir if args.data_dir or args.data else meta.get("data_dir")
    test = open_data(data, "test", data_dir=data_dir, download=args.download,
                     channels=c, size=(h, w), classes=classes if is_folder else None)
    if test is None:
        raise CLIError(f"{data} has no test images (no test/ folder); pass a folder of images "
                       "to evaluate on with --data")
    for note in getattr(test, "notes", []):
        print(f"note: {note}", file=sys.stderr)
    got = tuple(int(d) for d in test.images.shape[1:])
    if got != (c, h, w):
        raise CLIError(f"the model expects images of {c}x{h}x{w}, but {data_name(data)} has "
                       f"{got[0]}x{got[1]}x{got[2]}")
    n_out = _output_width(model)
    if int(test.labels.max()) >= n_out:
        raise CLIError(f"{data_name(data)} has {len(test.classes)} classes, but the model "
                       f"predicts {n_out}; evaluate it on the data it was trained for")
    if classes and list(test.classes) != list(classes):
        print(f"note: the model's classes {classes} differ from the data's {test.classes}",
              file=sys.stderr)
    names = list(classes or test.classes)
    result = T.evaluate(model, test, batch_size=args.batch_size,
                        transform=normalizer(spec), num_classes=n_out)

    per_class = result.per_class_accuracy
    if args.json:
        print(json.dumps({
            "model": str(path),
            "data": data_name(data),
            "split": "test",
            "n": result.n,
            "correct": result.correct,
            "accuracy": result.accuracy,
            "loss": result.loss,
            "classes": names,
            "per_class_accuracy": {
                names[i] if i < len(names) else str(i): None if math.isnan(a) else float(a)
                for i, a in enumerate(per_class)
            },
            "confusion": result.confusion.tolist(),
        }))
        return 0
    what = spec.get("arch") or f"{spec['model']['name']} model"
    print(f"model: {path} ({what}, input {c}x{h}x{w})")
    print(f"data: {data_name(data)} test set, {result.n:,} images")
    print(f"accuracy: {result.accuracy:.2%} ({result.correct:,}/{result.n:,})")
    print(f"loss: {result.loss:.4f}")
    print()
    print(format_per_class(names, per_class, result.confusion.sum(axis=1)))
    print()
    print(format_confusion(names, result.confusion))
    return 0


def load_model(arg: str):
    """Load a model file given as a path or as a training run's folder.

    Returns:
        (path, model).

    Raises:
        CLIError: when there is no model file there.
    """
    import cnnlab

    path = Path(arg)
    if path.is_dir():
        path = path / MODEL_FILE
    if not path.is_file():
        raise CLIError(f"{arg}: no model file there; give a model.safetensors written by "
                       "`cnnlab train` (or its --out folder)")
    model = cnnlab.io.load_model(path)
    model.eval()
    return path, model


def model_meta(model) -> dict[str, Any]:
    """What ``cnnlab train`` stored about the run in the model's spec (empty if none)."""
    meta = model.spec.get("training")
    return dict(meta) if isinstance(meta, dict) else {}


def normalizer(spec: dict[str, Any]):
    """The input normalization a model was trained with, as a batch transform (or None)."""
    from cnnlab.data import Normalize

    norm = spec.get("normalization")
    if not norm:
        return None
    return Normalize(norm["mean"], norm["std"])


def _output_width(model) -> int:
    import numpy as np

    import cnnlab

    c, h, w = model.spec["input_shape"]
    with cnnlab.no_grad():
        out = model(cnnlab.Tensor(np.zeros((1, c, h, w), dtype=np.float32)))
    return int(out.shape[1])


def format_per_class(names: list[str], accuracy, counts) -> str:
    """A table: class, accuracy, number of images."""
    width = max(5, *(len(n) for n in names))
    lines = ["per-class accuracy:", f"  {'class':<{width}}  {'accuracy':>8}  {'images':>6}"]
    for name, acc, n in zip(names, accuracy, counts, strict=False):
        text = "-" if math.isnan(acc) else f"{acc:.2%}"
        lines.append(f"  {name:<{width}}  {text:>8}  {int(n):>6}")
    return "\n".join(lines)


def format_confusion(names: list[str], confusion) -> str:
    """The confusion matrix with class names along both axes (rows: true class)."""
    k = confusion.shape[0]
    labels = [names[i] if i < len(names) else str(i) for i in range(k)]
    label_w = max(len(s) for s in labels)
    cell_w = max(max(len(s) for s in labels), len(str(int(confusion.max()))))
    lines = ["confusion matrix (rows: true class, columns: predicted class):"]
    lines.append(" " * (label_w + 3) + " ".join(f"{s:>{cell_w}}" for s in labels))
    for i in range(k):
        cells = " ".join(f"{int(v):>{cell_w}}" for v in confusion[i])
        lines.append(f"  {labels[i]:>{label_w}}" + " " + cells)
    return "\n".join(lines)
