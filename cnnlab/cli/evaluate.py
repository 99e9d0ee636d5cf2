"""``cnnlab evaluate``: accuracy, loss, per-class accuracy and confusion matrix on a test set."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from cnnlab.cli.main import CLIError
from cnnlab.cli.text import printable
from cnnlab.cli.train import positive_int

MODEL_FILE = "model.safetensors"


def register(subparsers: Any) -> None:
    """Add the ``evaluate`` command."""
    from cnnlab import tasks
    from cnnlab.train.recipes import DATASETS

    p = subparsers.add_parser(
        "evaluate",
        help="measure a trained model on a test set",
        description=(
            "Measure a trained model on the test set of a dataset, as its task measures it: "
            "a classifier's accuracy, loss, accuracy per class and confusion matrix (rows: "
            "true class, columns: predicted); a segmenter's mean IoU; a detector's mAP; "
            "key points' PCK; captions' BLEU-4."
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
                   help="print one JSON object (the task's metrics) instead of text")
    for name in tasks.available():
        tasks.get(name).add_arguments("evaluate", p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Evaluate ``args.model`` on the test set of ``args.data``, as its task measures it."""
    import numpy as np

    from cnnlab import NonFiniteLossError
    from cnnlab.data import DataFormatError, DownloadError
    from cnnlab.train.recipes import data_name

    path, model = load_model(args.model)
    task = task_of(model, path)
    spec = model.spec
    c, h, w = spec["input_shape"]
    meta = model_meta(model)
    data = args.data or meta.get("data_arg")
    if not data:
        raise CLIError(f"{path} does not say which data it was trained on; pass --data")
    data_dir = args.data_dir if args.data_dir or args.data else meta.get("data_dir")
    try:
        test = task.open_test(spec, data, data_dir, args.download)
    except (FileNotFoundError, DataFormatError, DownloadError, ValueError) as exc:
        raise CLIError(str(exc).strip() or type(exc).__name__) from exc
    if test is None:
        raise CLIError(f"{data} has no test images (no test/ folder); pass a folder of images "
                       "to evaluate on with --data")
    for note in getattr(test, "notes", []):
        print(f"note: {printable(note)}", file=sys.stderr)
    got = tuple(int(d) for d in test.images.shape[1:])
    if got != (c, h, w):
        raise CLIError(f"the model expects images of {c}x{h}x{w}, but {data_name(data)} has "
                       f"{got[0]}x{got[1]}x{got[2]}")
    classes = spec.get("classes")
    test_classes = list(getattr(test, "classes", None) or [])
    if classes and test_classes and test_classes != list(classes):
        print(f"note: the model's classes {classes} differ from the data's {test_classes}",
              file=sys.stderr)
    try:
        # Overflow becomes NonFiniteLossError below, not a stream of NumPy warnings.
        with np.errstate(over="ignore", invalid="ignore"):
            result = task.evaluate(model, test, batch_size=args.batch_size,
                                   options=vars(args))
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    except NonFiniteLossError:
        raise CLIError(
            f"{path}: the model's outputs on the test images are NaN or infinite, so no loss "
            "or accuracy can be measured: its weights overflow on this data (the file may "
            "have been edited). Retrain the model, or evaluate an earlier one"
        ) from None
    if args.json:
        print(json.dumps({"model": str(path), "data": data_name(data), "split": "test",
                          **result}, allow_nan=False))
        return 0
    what = spec.get("arch") or spec["model"]["name"]
    print(f"model: {path} ({what}, input {c}x{h}x{w}, task {task.name})")
    print(f"data: {data_name(data)} test set, {result['n']:,} images")
    for line in task.report(result):
        print(printable(line))
    return 0


def task_of(model, path):
    """The task a model file was trained for (its spec's ``task``)."""
    from cnnlab import tasks

    try:
        task = tasks.get(model.spec.get("task", "classify"))
        task.check_model(model.spec)
    except ValueError as exc:
        raise CLIError(f"{path}: {exc}") from None
    return task


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
