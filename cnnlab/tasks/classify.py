"""Classification: one class per image, from logits of shape (N, classes)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from cnnlab.tasks.base import Prepared, Recipe, Task, normalizer
from cnnlab.train import recipes


class Classify(Task):
    name = "classify"
    help = "one class per image (digits, MNIST, Fashion-MNIST, CIFAR-10, a folder of images)"
    default_data = "digits"
    datasets = ("digits", "mnist", "fashion-mnist", "cifar10")
    metric_name = "accuracy"
    merges_metrics = True

    def add_arguments(self, command: str, parser: argparse.ArgumentParser) -> None:
        if command == "predict":
            from cnnlab.cli.train import positive_int

            parser.add_argument("--top-k", type=positive_int, default=3, metavar="K",
                                help="classifiers: how many classes to show per image "
                                     "(default 3)")

    # ----- data and model ----------------------------------------------------------------
    def recipe(self, data: str) -> Recipe:
        return recipes.recipe_for(data)

    def prepare(self, config: Mapping[str, Any]) -> Prepared:
        """Training, validation (split off the training set) and test sets, normalization
        and augmentation."""
        from cnnlab.data import (
            Compose,
            Normalize,
            RandomCrop,
            RandomHorizontalFlip,
            compute_mean_std,
            train_val_split,
        )

        full = recipes.open_data(config["data"], "train", data_dir=config["data_dir"],
                                 download=config["download"])
        _require_labels(full, config["data"])
        notes = list(getattr(full, "notes", []))
        if config["limit"] is not None and config["limit"] < len(full):
            rng = np.random.default_rng(config["seed"])
            full = _subset(full, np.sort(rng.permutation(len(full))[: config["limit"]]))
        train, val = train_val_split(full, config["val_split"], seed=config["seed"])
        shape = tuple(int(d) for d in train.images.shape[1:])
        test = recipes.open_data(config["data"], "test", data_dir=config["data_dir"],
                                 download=config["download"], channels=shape[0],
                                 size=shape[1:], classes=list(full.classes))
        if test is not None:
            notes += list(getattr(test, "notes", []))
        mean, std = compute_mean_std(train.images)
        normalize = Normalize(mean, std)
        augment = []
        if config["augment"] in ("crop", "crop-flip"):  # shifts of about 2 pixels on 28x28
            augment.append(RandomCrop(shape[1:], padding=max(1, shape[1] // 14)))
        if config["augment"] == "crop-flip":
            augment.append(RandomHorizontalFlip())
        return Prepared(
            name=recipes.data_name(config["data"]),
            train=train,
            val=(normalize(val.images), val.labels),
            test=test,
            input_shape=shape,
            classes=list(full.classes),
            normalize=normalize,
            train_transform=Compose([*augment, normalize]) if augment else normalize,
            spec={"normalization": {"mean": list(mean), "std": list(std)}},
            notes=notes,
        )

    def open_test(self, spec: Mapping[str, Any], data: str, data_dir: str | None,
                  download: bool) -> Any:
        from pathlib import Path

        c, h, w = spec["input_shape"]
        is_folder = Path(data).expanduser().is_dir()
        test = recipes.open_data(data, "test", data_dir=data_dir, download=download,
                                 channels=c, size=(h, w),
                                 classes=spec.get("classes") if is_folder else None)
        if test is not None:
            _require_labels(test, data)
        return test

    def build(self, arch: str, prepared: Prepared) -> Any:
        from cnnlab import arch as archs

        arch = arch or recipes.default_arch(prepared.input_shape)
        model = archs.build(arch, prepared.input_shape, num_classes=len(prepared.classes))
        model.spec["classes"] = list(prepared.classes)
        return model

    def check_model(self, spec: Mapping[str, Any]) -> None:
        # A graph (a model imported from ONNX) may be any classifier.
        if spec.get("arch") is None and spec["model"]["name"] != "graph":
            raise ValueError("a classifier is built from an architecture string; this model "
                             f"file holds a {spec['model']['name']!r} model")

    # ----- training ----------------------------------------------------------------------
    def loss(self, outputs: Any, targets: Any) -> Any:
        from cnnlab.nn import functional as F

        return F.cross_entropy(outputs, targets)

    def train_metric(self, outputs: Any, targets: Any) -> tuple[float, float]:
        hits = np.asarray(outputs.data).argmax(axis=1) == np.asarray(targets)
        return float(hits.sum()), float(len(hits))

    # ----- evaluation ----------------------------------------------------------------------
    def evaluate(self, model: Any, dataset: Any, *, batch_size: int = 256,
                 options: Mapping[str, Any] | None = None) -> dict[str, Any]:
        from cnnlab.train.evaluate import evaluate

        spec = model.spec
        n_out = _output_width(model)
        labels = np.asarray(dataset.labels)
        if len(labels) and int(labels.max()) >= n_out:
            raise ValueError(f"the data has {len(dataset.classes)} classes, but the model "
                             f"predicts {n_out}; evaluate it on the data it was trained for")
        result = evaluate(model, dataset, batch_size=batch_size, transform=normalizer(spec),
                          num_classes=n_out)
        names = list(spec.get("classes") or dataset.classes)
        return {
            "task": self.name,
            "n": result.n,
            "correct": result.correct,
            "accuracy": result.accuracy,
            "loss": result.loss,
            "classes": names,
            "per_class_accuracy": {
                names[i] if i < len(names) else str(i): None if math.isnan(a) else float(a)
                for i, a in enumerate(result.per_class_accuracy)
            },
            "confusion": result.confusion.tolist(),
        }

    def merge(self, parts: list[Mapping[str, Any]]) -> dict[str, Any]:
        """Counts add up; the loss is a mean over images."""
        n = sum(p["n"] for p in parts)
        confusion = np.sum([np.asarray(p["confusion"], dtype=np.int64) for p in parts], axis=0)
        names = list(parts[0]["classes"])
        totals = confusion.sum(axis=1)
        correct = int(np.trace(confusion))
        return {
            "task": self.name,
            "n": n,
            "correct": correct,
            "accuracy": correct / n,
            "loss": sum(p["loss"] * p["n"] for p in parts) / n,
            "classes": names,
            "per_class_accuracy": {
                names[i] if i < len(names) else str(i):
                    float(confusion[i, i] / totals[i]) if totals[i] else None
                for i in range(len(confusion))
            },
            "confusion": confusion.tolist(),
        }

    def headline(self, result: Mapping[str, Any]) -> str:
        return (f"test accuracy: {result['accuracy']:.2%} ({result['correct']:,}/"
                f"{result['n']:,}), loss {result['loss']:.4f}")

    def report(self, result: Mapping[str, Any]) -> list[str]:
        names = list(result["classes"])
        confusion = np.asarray(result["confusion"])
        per_class = [math.nan if a is None else a for a in result["per_class_accuracy"].values()]
        return [
            f"accuracy: {result['accuracy']:.2%} ({result['correct']:,}/{result['n']:,})",
            f"loss: {result['loss']:.4f}",
            "",
            format_per_class(names, per_class, confusion.sum(axis=1)),
            "",
            format_confusion(names, confusion),
        ]

    # ----- prediction ----------------------------------------------------------------------
    def predict(self, model: Any, images: np.ndarray,
                options: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        import cnnlab

        transform = normalizer(model.spec)
        x = transform(images) if transform is not None else images
        # Overflow is reported once, below, rather than as NumPy warnings along the way.
        with cnnlab.no_grad(), np.errstate(over="ignore", invalid="ignore"):
            logits = np.asarray(model(cnnlab.Tensor(x)).data, dtype=np.float64)
        bad = np.flatnonzero(~np.isfinite(logits).all(axis=1))
        if bad.size:
            raise ValueError(
                f"the model's scores for image {int(bad[0]) + 1} (of {len(logits)}) are NaN "
                f"or infinite ({bad.size} image(s) in all), so no class can be named: its "
                "weights overflow on this input. Retrain the model, or use an earlier one"
            )
        # A model imported with its softmax says so: its outputs are probabilities already.
        probs = logits if model.spec.get("output") == "probabilities" else softmax(logits)
        classes = list(model.spec.get("classes") or [])
        names = [classes[j] if j < len(classes) else str(j) for j in range(probs.shape[1])]
        k = min(int((options or {}).get("top_k") or 3), probs.shape[1])
        out = []
        for p in probs:
            order = np.argsort(-p, kind="stable")[:k]
            top = [{"class": names[j], "index": int(j), "probability": float(p[j])}
                   for j in order]
            out.append({**top[0], "top_k": top})
        return out

    def describe(self, result: Mapping[str, Any]) -> str:
        others = ", ".join(f"{t['class']} {t['probability']:.1%}" for t in result["top_k"])
        return (f"{result['class']} ({result['probability']:.1%})    "
                f"top-{len(result['top_k'])}: {others}")

    def draw(self, image: np.ndarray, result: Mapping[str, Any], path: str,
             spec: Mapping[str, Any]) -> None:
        from cnnlab.inspect.draw import save_labelled

        save_labelled(image, f"{result['class']} ({result['probability']:.1%})", path)


def _require_labels(dataset: Any, data: str) -> None:
    labels = getattr(dataset, "labels", None)
    if not isinstance(labels, np.ndarray) or labels.ndim != 1:
        raise ValueError(
            f"--data {data}: a classifier needs one label per image, and this dataset has "
            "several objects per image; train it with --task segment, detect, keypoints or "
            "caption"
        )


def _subset(dataset: Any, idx: np.ndarray) -> Any:
    from cnnlab.data import ArrayDataset

    part = ArrayDataset(dataset.images[idx], dataset.labels[idx], dataset.classes)
    part.notes = list(getattr(dataset, "notes", []))
    return part


def _output_width(model: Any) -> int:
    import cnnlab
    from cnnlab import arch

    spec = model.spec
    if spec.get("arch") is not None:
        return int(math.prod(arch.plan(spec["arch"], spec["input_shape"])[-1]["output_shape"]))
    with cnnlab.no_grad():  # a graph: run it once
        out = model(cnnlab.Tensor(np.zeros((1, *spec["input_shape"]), np.float32)))
    return int(math.prod(out.shape[1:]))


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of a (N, K) array, computed stably."""
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


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
