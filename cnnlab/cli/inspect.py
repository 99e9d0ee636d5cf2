"""``cnnlab inspect``: pictures of what a saved model does with one image."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from cnnlab.cli.main import CLIError


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
    from cnnlab.inspect.features import load_image, save_inspection

    if not Path(args.model).exists():
        raise CLIError(f"no model file at {args.model}; save one with `cnnlab train` first")
    if not Path(args.image).is_file():
        raise CLIError(f"no image at {args.image}")
    model = cnnlab.io.load_model(args.model)
    spec = getattr(model, "spec", None) or {}
    shape = spec.get("input_shape")
    if shape is None:
        raise CLIError(f"{args.model} does not record its input shape (spec.input_shape)")
    image = load_image(args.image, shape)
    x = image
    norm = spec.get("normalization") or {}
    if norm.get("mean") is not None and norm.get("std") is not None:
        mean = np.asarray(norm["mean"], dtype=np.float32).reshape(-1, 1, 1)
        std = np.asarray(norm["std"], dtype=np.float32).reshape(-1, 1, 1)
        x = (image - mean) / std
    result = save_inspection(model, x, args.out, display=image, classes=spec.get("classes"))
    for path in result["files"]:
        print(f"wrote {path}")
    pred = result["prediction"]
    if pred is not None:
        print(f"predicted: {pred['class']} (class {pred['index']}, "
              f"probability {pred['probability']:.3f})")
    return 0
