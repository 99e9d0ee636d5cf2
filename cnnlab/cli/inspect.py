"""``cnnlab inspect``: pictures of what a saved model does with one image."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from cnnlab.cli.main import CLIError
from cnnlab.cli.text import printable


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "inspect",
        help="feature maps, filters and prediction of a model for one image, as PNGs",
        description="Run a saved model on one image and write PNGs: the input, the feature "
                    "maps of every conv layer, the first layer's filters and the predicted "
                    "class.",
    )
    p.add_argument("model", metavar="MODEL", help="a saved model file")
    p.add_argument("image", metavar="IMAGE",
                   help="an image file (resized to the model's input) or a .npy array CxHxW")
    p.add_argument("--out", metavar="DIR", default="inspect",
                   help="folder for the PNGs (default ./inspect)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import cnnlab
    from cnnlab.cli.images import check_model_argument, read_image
    from cnnlab.inspect.features import load_image, save_inspection

    if not Path(args.model).exists():
        raise CLIError(f"no model file at {args.model}; save one with `cnnlab train` first")
    check_model_argument(args.model, "cnnlab inspect MODEL IMAGE")
    if not Path(args.image).is_file():
        raise CLIError(f"no image at {args.image}")
    model = cnnlab.io.load_model(args.model)
    spec = getattr(model, "spec", None) or {}
    shape = spec.get("input_shape")
    if shape is None:
        raise CLIError(f"{args.model} does not record its input shape (spec.input_shape)")
    if Path(args.image).suffix.lower() == ".npy":
        try:
            image = load_image(args.image, shape)
        except ValueError as exc:
            raise CLIError(str(exc)) from None
    else:  # converted and resized as predict does it, saying so
        c, h, w = (int(d) for d in shape)
        if c not in (1, 3):
            raise CLIError(f"the model takes {c} channels; only 1 (gray) or 3 (RGB) images "
                           "can be read from an image file, pass a .npy array instead")
        image = read_image(args.image, c, h, w)
    x = image
    norm = spec.get("normalization") or {}
    if norm.get("mean") is not None and norm.get("std") is not None:
        mean = np.asarray(norm["mean"], dtype=np.float32).reshape(-1, 1, 1)
        std = np.asarray(norm["std"], dtype=np.float32).reshape(-1, 1, 1)
        x = (image - mean) / std
    result = save_inspection(model, x, args.out, display=image, classes=spec.get("classes"),
                             probabilities=spec.get("output") == "probabilities")
    for path in result["files"]:
        print(f"wrote {path}")
    pred = result["prediction"]
    if pred is not None:
        print(f"predicted: {printable(pred['class'])} (class {pred['index']}, "
              f"probability {pred['probability']:.3f})")
    return 0
