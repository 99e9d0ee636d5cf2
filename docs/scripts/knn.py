"""kNN on raw pixels against kNN on the features of an MNIST-trained network.

For MNIST and Fashion-MNIST, a k-nearest-neighbour classifier (cosine similarity, k = 1 and
k = 5, cnnlab.inspect.knn_classify) is fitted on the training set and scored on the test set,
once on the raw pixels and once on each chosen layer of the network (which never saw
Fashion-MNIST). Prints a Markdown table and writes the numbers as JSON.

    python docs/scripts/knn.py --model runs/mnist --mnist ~/data/mnist \
        --fashion /usr/share/datasets/fashion-mnist --out docs/scripts/knn.json
"""

from __future__ import annotations

import argparse
import json
import time

import cnnlab
from cnnlab.inspect.retrieval import describe_layer, knn_classify, layer_features
from cnnlab.tasks.base import normalizer


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--mnist", required=True, help="folder of the MNIST IDX files")
    p.add_argument("--fashion", required=True, help="folder of the Fashion-MNIST IDX files")
    p.add_argument("--layers", nargs="*", default=["7", "default"],
                   help="layers to compare (default: 7 and the input of the last Linear)")
    p.add_argument("--out", help="JSON file for the results")
    args = p.parse_args()

    model = cnnlab.io.load_model(args.model)
    norm = normalizer(model.spec)
    rows = []
    for name, cls, root in (("MNIST", cnnlab.data.MNIST, args.mnist),
                            ("Fashion-MNIST", cnnlab.data.FashionMNIST, args.fashion)):
        train, test = cls(root=root, train=True), cls(root=root, train=False)
        sets = {"raw pixels": (train.images.reshape(len(train), -1),
                               test.images.reshape(len(test), -1))}
        for layer in args.layers:
            chosen = None if layer == "default" else layer
            start = time.perf_counter()
            feats = [layer_features(model, norm(ds.images), chosen) for ds in (train, test)]
            what = describe_layer(model, chosen)
            print(f"{name}: features of {what} ({feats[0].shape[1]} values) in "
                  f"{time.perf_counter() - start:.0f} s", flush=True)
            sets[what] = tuple(feats)
        for what, (tr, te) in sets.items():
            for k in (1, 5):
                start = time.perf_counter()
                pred = knn_classify(tr, train.labels, te, k)
                acc = float((pred == test.labels).mean())
                rows.append({"data": name, "features": what, "dim": int(tr.shape[1]), "k": k,
                             "accuracy": acc, "seconds": time.perf_counter() - start})
                print(f"{name:13s} {what:35s} k={k}  {acc:.2%}  "
                      f"({rows[-1]['seconds']:.0f} s)", flush=True)
    print()
    print(table(rows))
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump({"model": args.model, "rows": rows}, f, indent=1)


def table(rows: list[dict]) -> str:
    """One row per feature kind, columns MNIST k=1, k=5, Fashion-MNIST k=1, k=5."""
    kinds = list(dict.fromkeys((r["features"], r["dim"]) for r in rows))
    acc = {(r["data"], r["features"], r["k"]): r["accuracy"] for r in rows}
    lines = ["| features | values | MNIST k=1 | MNIST k=5 | Fashion-MNIST k=1 | "
             "Fashion-MNIST k=5 |", "|---|---:|---:|---:|---:|---:|"]
    for what, dim in kinds:
        cells = [f"{acc[(d, what, k)]:.2%}" if (d, what, k) in acc else "-"
                 for d in ("MNIST", "Fashion-MNIST") for k in (1, 5)]
        lines.append(f"| {what} | {dim:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
