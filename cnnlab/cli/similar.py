"""``cnnlab similar``: the images of a dataset that a trained model finds most like a query."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.cli.features import add_data_arguments, check_layer, extract, load, open_images
from cnnlab.cli.main import CLIError
from cnnlab.cli.text import printable
from cnnlab.cli.train import positive_int


def register(subparsers: Any) -> None:
    """Add the ``similar`` command."""
    p = subparsers.add_parser(
        "similar",
        help="find the images most similar to a query, as a trained model sees them",
        description=(
            "Compute one layer's features of a query image and of every image of a dataset "
            "and list (and draw) the K images whose features have the highest cosine "
            "similarity with the query's. The default layer is the input of the last "
            "fully-connected layer."
        ),
    )
    p.add_argument("model", metavar="MODEL",
                   help="a model file, or the --out folder of `cnnlab train`")
    p.add_argument("query", metavar="QUERY_IMAGE",
                   help="an image file (converted and resized to the model's input) or a "
                        ".npy array CxHxW")
    add_data_arguments(p, positional=False)
    p.add_argument("--top-k", type=positive_int, default=8, metavar="K",
                   help="how many similar images (default 8)")
    p.add_argument("--out", metavar="FILE",
                   help="also draw the query and the K images, with labels and similarities, "
                        "as a PNG")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cnnlab.inspect.retrieval import most_similar

    path, model = load(args.model, "cnnlab similar MODEL QUERY_IMAGE --data DATA")
    layer_text = check_layer(model, args.layer)
    query = read_query(args.query, model.spec["input_shape"])
    images = open_images(args.data, args.split, args.data_dir, args.download,
                         model.spec["input_shape"])
    n = len(images.images)
    k = args.top_k
    if k > n:
        print(f"note: --top-k {k}, but there are {n} images; showing them all", file=sys.stderr)
        k = n
    query_feats = extract(model, query[None], args.layer, 1)
    feats = extract(model, images.images, args.layer, args.batch_size)
    idx, sims = most_similar(query_feats, feats, k)
    idx, sims = idx[0], sims[0]

    print(f"query: {printable(args.query)}; the {k} most similar of {n:,} images of "
          f"{printable(images.name)} {images.split} by cosine similarity of {layer_text} "
          f"({feats.shape[1]:,} values)")
    names = [printable(where(images, int(i))) for i in idx]
    labels = [printable(images.label_of(int(i))) or "-" for i in idx]
    label_w = max(5, *(len(s) for s in labels))
    print(f"{'rank':>4}  {'similarity':>10}  {'label':<{label_w}}  image")
    for rank, (sim, label, name) in enumerate(zip(sims, labels, names, strict=True), 1):
        print(f"{rank:>4}  {sim:>10.4f}  {label:<{label_w}}  {name}")
    if args.out:
        from cnnlab.inspect.draw import save_png
        from cnnlab.inspect.retrieval import similar_image

        captions = [[f"#{r}  {s:.3f}", label if images.files is None else name]
                    for r, (s, label, name) in enumerate(zip(sims, labels, names,
                                                             strict=True), 1)]
        title = (f"the {k} most similar of {n:,} {images.name} {images.split} images "
                 f"(cosine similarity of {layer_text})")
        picture = similar_image(query, images.images[idx], captions, title,
                                query_caption=["query", Path(args.query).name])
        print(f"wrote {printable(save_png(picture, args.out))}")
    return 0


def where(images, i: int) -> str:
    """How to find image ``i`` again: its file, or its index in the split."""
    if images.files is not None:
        return images.files[i]
    return f"{images.name} {images.split} #{i}"


def read_query(name: str, input_shape) -> np.ndarray:
    """The query as (C, H, W) in [0, 1]: an image file (converted and resized, with a note)
    or a .npy array of exactly the model's input size."""
    from cnnlab.cli.images import read_image

    c, h, w = (int(d) for d in input_shape)
    if Path(name).suffix.lower() == ".npy":
        from cnnlab.inspect.features import load_image

        if not Path(name).is_file():
            raise CLIError(f"{printable(name)}: no such file")
        try:
            return load_image(name, (c, h, w))
        except ValueError as exc:
            raise CLIError(f"{printable(exc)}; the model takes {c}x{h}x{w} inputs") from None
    return read_image(name, c, h, w)
