"""``cnnlab features``: one layer's activations for every image of a dataset, as a .npz file.

The file holds ``features`` (N, D) float32, ``labels`` (N,) int64 (-1 where unknown),
``classes`` and, for a folder, ``files`` (paths relative to it), plus what made them
(``model``, ``data``, ``split``, ``layer``); every array is numbers or unicode text, so
``np.load(path)`` reads it without pickle.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.cli.main import CLIError, UsageError
from cnnlab.cli.text import printable
from cnnlab.cli.train import positive_int

# The classification datasets whose images have one label each.
DATASETS = ("digits", "mnist", "fashion-mnist", "cifar10")


def register(subparsers: Any) -> None:
    """Add the ``features`` command."""
    p = subparsers.add_parser(
        "features",
        help="save one layer's activations for every image of a dataset (.npz)",
        description=(
            "Run a trained model over a dataset and save what one layer computes for each "
            "image, flattened to a vector, with the labels (and file names for a folder), "
            "in a .npz file for kNN, clustering or plots. The default layer is the input of "
            "the last fully-connected layer: the representation the classifier sees."
        ),
    )
    p.add_argument("model", metavar="MODEL",
                   help="a model file, or the --out folder of `cnnlab train`")
    add_data_arguments(p, positional=True)
    p.add_argument("--out", metavar="FILE", default="features.npz",
                   help="the .npz file to write (default features.npz)")
    p.set_defaults(func=run)


def add_data_arguments(p: argparse.ArgumentParser, positional: bool) -> None:
    """DATA (or --data), --split, --data-dir, --download, --layer and --batch-size."""
    what = (f"{', '.join(DATASETS)}, or a folder of images (PATH/<class>/<image>, or the "
            "images directly in PATH)")
    if positional:
        p.add_argument("data", metavar="DATA", help=what)
    else:
        p.add_argument("--data", metavar="NAME|PATH", required=True,
                       help=f"the images to search: {what}")
    p.add_argument("--split", choices=["train", "test"], default="train",
                   help="which part of a dataset, or of a folder with train/ and test/ "
                        "sub-folders (default train)")
    p.add_argument("--data-dir", metavar="DIR", help="where the dataset files are")
    p.add_argument("--download", action="store_true",
                   help="download the dataset if its files are missing")
    p.add_argument("--layer", metavar="NAME|INDEX",
                   help="the layer: a name as in `cnnlab summary` (3, features.2) or a "
                        "position (-2 is the second-to-last); default: the input of the last "
                        "fully-connected layer")
    p.add_argument("--batch-size", type=positive_int, default=256, metavar="N",
                   help="images per forward pass (default 256)")


def run(args: argparse.Namespace) -> int:
    from cnnlab.io.atomic import atomic_write

    path, model = load(args.model, "cnnlab features MODEL DATA")
    layer_text = check_layer(model, args.layer)
    images = open_images(args.data, args.split, args.data_dir, args.download,
                         model.spec["input_shape"])
    feats = extract(model, images.images, args.layer, args.batch_size)
    arrays = {
        "features": feats.astype(np.float32, copy=False),
        "labels": images.labels,
        "classes": np.array(images.classes, dtype=str),
        "model": np.array(str(path)),
        "data": np.array(images.name),
        "split": np.array(images.split),
        "layer": np.array("" if args.layer is None else str(args.layer)),
        "layer_description": np.array(layer_text),
    }
    if images.files is not None:
        arrays["files"] = np.array(images.files, dtype=str)
    out = Path(args.out)
    if not out.parent.is_dir():
        raise CLIError(f"--out {printable(args.out)}: the folder {printable(out.parent)} does "
                       "not exist")
    with atomic_write(out) as f:
        np.savez(f, **arrays)
    print(f"wrote {printable(out)}: {feats.shape[0]:,} vectors of {feats.shape[1]:,} values "
          f"({layer_text}) of {printable(images.name)} {images.split}, with "
          f"{'labels and file names' if images.files is not None else 'labels'}")
    return 0


# ------------------------------------------------------------------------ shared helpers


@dataclass
class Images:
    """Images to run a model on: (N, C, H, W) in [0, 1], labels (-1: unknown), class names
    and, for a folder, file names relative to it."""

    images: np.ndarray
    labels: np.ndarray
    classes: list[str]
    name: str
    split: str
    files: list[str] | None = None
    notes: list[str] = field(default_factory=list)

    def label_of(self, i: int) -> str:
        label = int(self.labels[i])
        return self.classes[label] if 0 <= label < len(self.classes) else ""


def load(arg: str, usage: str):
    """(path, model) of a model file; an image or a text file given as MODEL is a usage
    error, a missing or damaged model file a runtime one."""
    from cnnlab.cli.evaluate import load_model
    from cnnlab.cli.images import check_model_argument

    check_model_argument(arg, usage)
    return load_model(arg)


def check_layer(model, layer: str | None) -> str:
    """A description of the layer ``--layer`` names; a layer the model does not have is a
    usage error listing the names it has (without --layer: a model with no Linear layer
    whose input would be the default, a runtime error saying to pass --layer)."""
    from cnnlab.inspect.retrieval import describe_layer

    try:
        return describe_layer(model, layer)
    except ValueError as exc:
        if layer is None:
            raise CLIError(f"{exc} with --layer") from None
        raise UsageError(f"--layer {printable(layer)}: {exc}") from None


def extract(model, images: np.ndarray, layer: str | None, batch_size: int) -> np.ndarray:
    """The layer's features of ``images`` (in [0, 1]; normalized here as the model was
    trained), batch by batch, with a progress bar on a terminal."""
    from cnnlab.inspect.retrieval import layer_features
    from cnnlab.tasks.base import normalizer

    norm = normalizer(model.spec)
    parts = []
    chunk = batch_size * 8  # normalize a few batches at a time, not the whole set at once
    with Progress(len(images), "features") as bar:
        for start in range(0, len(images), chunk):
            x = images[start:start + chunk]
            x = norm(x) if norm is not None else x
            parts.append(layer_features(model, x, layer, batch_size=batch_size, progress=bar))
    if not parts:
        raise CLIError("there are no images to compute features of")
    return np.concatenate(parts) if len(parts) > 1 else parts[0]


class Progress:
    """A tqdm bar on stderr when it is a terminal and the run is long (more than
    ``minimum`` images); nothing otherwise, so logs stay clean. Call it with the number
    of images done."""

    def __init__(self, total: int, desc: str, minimum: int = 1024) -> None:
        self.bar = None
        isatty = getattr(sys.stderr, "isatty", None)
        if total > minimum and isatty is not None and isatty():
            try:
                from tqdm import tqdm
            except ImportError:
                return
            self.bar = tqdm(total=total, desc=desc, unit="img", file=sys.stderr, leave=False,
                            dynamic_ncols=True)

    def __call__(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.close()


def open_images(data: str, split: str, data_dir: str | None, download: bool,
                input_shape) -> Images:
    """A classification dataset's split, or a folder of images converted and resized to
    the model's input (saying so on stderr).

    Raises:
        CLIError: unknown data, missing files, or images whose size the model cannot take.
    """
    from cnnlab.cli.train import open_data
    from cnnlab.train.recipes import DATASETS as ALL

    c, h, w = (int(d) for d in input_shape)
    if data in ALL and data not in DATASETS:
        raise CLIError(f"{data} has several objects per image; features are computed for "
                       f"whole images of {', '.join(DATASETS)} or of a folder")
    if data in DATASETS:
        ds = open_data(data, split, data_dir=data_dir, download=download)
        got = tuple(int(d) for d in ds.images.shape[1:])
        if got != (c, h, w):
            raise CLIError(f"the model takes images of {c}x{h}x{w}, but {data} has images of "
                           f"{got[0]}x{got[1]}x{got[2]}; use a model trained on {data}-sized "
                           "images, or a folder of images (they are resized)")
        images = Images(ds.images, np.asarray(ds.labels, dtype=np.int64), list(ds.classes),
                        data, split)
    else:
        images = _open_folder(data, split, c, h, w)
    for note in images.notes:
        print(f"note: {printable(note)}", file=sys.stderr)
    if len(images.images) == 0:
        raise CLIError(f"{printable(data)}: no images")
    return images


def _open_folder(data: str, split: str, c: int, h: int, w: int) -> Images:
    from cnnlab.data import DataFormatError, ImageFolder
    from cnnlab.data.folder import IMAGE_EXTENSIONS

    root = Path(data).expanduser()
    if not root.is_dir():
        raise CLIError(f"{printable(repr(data))} is neither a dataset ({', '.join(DATASETS)}) "
                       "nor a folder of images")
    notes: list[str] = []
    name = root.resolve().name or "folder"
    if (root / split).is_dir():
        root = root / split
    elif (root / "train").is_dir() or (root / "test").is_dir():
        raise CLIError(f"{printable(data)} has no {split}/ folder; choose --split "
                       f"{'test' if split == 'train' else 'train'}")
    else:
        split = "all"  # a folder without train/ and test/: every image in it
    visible = [p for p in sorted(root.iterdir()) if not p.name.startswith(".")]
    direct = [p for p in visible if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
    has_classes = any(p.is_dir() for p in visible)
    try:
        if has_classes:
            folder = ImageFolder(root, channels=c, size=(h, w))
            if direct:
                notes.append(f"left out {len(direct)} images directly in {root} (the images "
                             "in its class folders were read)")
            files = [str(p.relative_to(root)) for p in folder.files]
            return Images(folder.images, folder.labels, list(folder.classes), name, split,
                          files, notes + list(folder.notes))
        return _flat_folder(root, direct, name, split, (c, h, w), notes)
    except (DataFormatError, FileNotFoundError, ValueError) as exc:
        raise CLIError(printable(exc, multiline=True)) from None


def _flat_folder(root: Path, files: list[Path], name: str, split: str,
                 shape: tuple[int, int, int], notes: list[str]) -> Images:
    """Images directly in ``root``: no labels."""
    from cnnlab.data import load_image
    from cnnlab.data.folder import _probe

    if not files:
        raise CLIError(f"{printable(root)}: no images (PNG, JPEG, BMP, GIF or WebP files, "
                       "directly or in class folders)")
    c, h, w = shape
    images = np.empty((len(files), c, h, w), dtype=np.float32)
    resized = 0
    for i, path in enumerate(files):
        resized += _probe(path)[1] != (h, w)
        images[i] = load_image(path, channels=c, size=(h, w))
    if resized:
        notes.append(f"resized {resized} of {len(files)} images to {h}x{w} (the model's input)")
    return Images(images, np.full(len(files), -1, dtype=np.int64), [], name, split,
                  [p.name for p in files], notes)
