"""Measure a classifier on a labelled set: loss, accuracy, per-class accuracy, confusion."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass
class Evaluation:
    """Result of ``evaluate``.

    Attributes:
        loss: Mean loss over the set.
        accuracy: Fraction (0..1) of images classified correctly.
        n: Number of images.
        correct: Number classified correctly.
        predictions: Predicted class index per image, shape (n,).
        confusion: Counts, shape (num_classes, num_classes); rows are true classes, columns
            predicted ones.
    """

    loss: float
    accuracy: float | None
    n: int
    correct: int
    predictions: np.ndarray | None
    confusion: np.ndarray | None

    @property
    def per_class_accuracy(self) -> np.ndarray:
        """Accuracy of each true class (NaN for a class with no images), shape (classes,)."""
        totals = self.confusion.sum(axis=1)
        hits = np.diag(self.confusion).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(totals > 0, hits / np.maximum(totals, 1), np.nan)


def as_arrays(data, what: str = "data") -> tuple[np.ndarray, np.ndarray]:
    """Images and labels of a dataset (``.images``/``.labels``) or an ``(images, labels)`` pair.

    Raises:
        TypeError: for anything else.
        ValueError: when the counts of images and labels differ.
    """
    if hasattr(data, "images") and hasattr(data, "labels"):
        images, labels = data.images, data.labels
    elif isinstance(data, tuple | list) and len(data) == 2:
        images, labels = data
    else:
        raise TypeError(
            f"{what}: expected a dataset with .images and .labels or a pair (images, labels), "
            f"got {type(data).__name__}"
        )
    images, labels = np.asarray(images), np.asarray(labels)
    if len(images) != len(labels):
        raise ValueError(
            f"{what}: {len(images)} images but {len(labels)} labels; they must match one to one"
        )
    return images, labels


def evaluate(
    model,
    data,
    *,
    batch_size: int = 256,
    num_classes: int | None = None,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
    loss_fn: Callable | None = None,
    metric_fn: Callable | None = None,
    forward_fn: Callable | None = None,
) -> Evaluation:
    """Run ``model`` in eval mode over a labelled set without building a graph.

    With the default loss it measures a classifier: loss, accuracy, predictions and the
    confusion matrix. With a task's own ``loss_fn``, ``metric_fn`` and ``forward_fn`` (see
    :func:`cnnlab.train.fit`) it measures the mean loss and the metric (as ``accuracy``;
    None without a metric); ``predictions`` and ``confusion`` are then None.

    Args:
        model: A module returning logits of shape (N, num_classes) by default.
        data: A dataset with ``.images``/``.labels`` (or ``get_batch``), or a pair
            ``(images, labels)``.
        batch_size: Images per forward pass.
        num_classes: Size of the confusion matrix; defaults to the model's output width.
        transform: Applied to each batch of images first (normalization, say).
        loss_fn: ``loss_fn(outputs, targets)`` returning a mean; default cross-entropy.
        metric_fn: ``metric_fn(outputs, targets)`` -> ``(hits, count)``.
        forward_fn: ``forward_fn(model, images, targets)`` -> outputs.

    Shape:
        images (N, C, H, W), labels (N,) integers in [0, num_classes).

    Returns:
        An ``Evaluation``. The model's train/eval mode is restored afterwards.

    Raises:
        cnnlab.NonFiniteLossError: when the loss is NaN or infinite.
        ValueError: for an empty set.
    """
    if loss_fn is not None or forward_fn is not None or hasattr(data, "get_batch"):
        return _evaluate_task(model, data, batch_size, transform, loss_fn, metric_fn,
                              forward_fn)
    return _evaluate_classifier(model, data, batch_size, num_classes, transform)


def _evaluate_classifier(model, data, batch_size, num_classes, transform) -> Evaluation:
    import cnnlab
    from cnnlab.nn import functional as F

    images, labels = as_arrays(data)
    if len(images) == 0:
        raise ValueError("evaluate: the set is empty; give at least one labelled image")
    was_training = model.training
    model.eval()
    loss_sum, preds = 0.0, []
    try:
        with cnnlab.no_grad():
            for start in range(0, len(images), batch_size):
                x = images[start : start + batch_size]
                y = labels[start : start + batch_size].astype(np.int64, copy=False)
                if transform is not None:
                    x = transform(x)
                logits = model(cnnlab.Tensor(x))
                loss_sum += float(F.cross_entropy(logits, y).item()) * len(y)
                preds.append(np.asarray(logits.data).argmax(axis=1))
                if num_classes is None:
                    num_classes = int(logits.shape[1])
    finally:
        model.train(was_training)
    predictions = np.concatenate(preds).astype(np.int64)
    labels = labels.astype(np.int64, copy=False)
    num_classes = max(num_classes, int(labels.max()) + 1, int(predictions.max()) + 1)
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(confusion, (labels, predictions), 1)
    correct = int((predictions == labels).sum())
    return Evaluation(
        loss=loss_sum / len(images),
        accuracy=correct / len(images),
        n=len(images),
        correct=correct,
        predictions=predictions,
        confusion=confusion,
    )


def _evaluate_task(model, data, batch_size, transform, loss_fn, metric_fn,
                   forward_fn) -> Evaluation:
    import cnnlab
    from cnnlab.data import DataLoader
    from cnnlab.nn import functional as F

    loss_fn = loss_fn or F.cross_entropy
    if not hasattr(data, "get_batch") and not (hasattr(data, "images") and
                                               hasattr(data, "labels")):
        data = as_arrays(data)
    loader = DataLoader(data, batch_size=batch_size, shuffle=False, transform=transform)
    if loader.num_samples == 0:
        raise ValueError("evaluate: the set is empty; give at least one labelled image")
    was_training = model.training
    model.eval()
    loss_sum, hits, counted = 0.0, 0.0, 0.0
    try:
        with cnnlab.no_grad():
            for x, y in loader:
                outputs = forward_fn(model, x, y) if forward_fn else model(cnnlab.Tensor(x))
                loss_sum += float(loss_fn(outputs, y).item()) * len(x)
                if metric_fn is not None:
                    h, c = metric_fn(outputs, y)
                    hits, counted = hits + h, counted + c
    finally:
        model.train(was_training)
    n = loader.num_samples
    return Evaluation(loss=loss_sum / n, accuracy=hits / counted if counted else None, n=n,
                      correct=int(hits), predictions=None, confusion=None)
