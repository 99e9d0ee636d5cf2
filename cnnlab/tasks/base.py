"""What a task is: everything that differs between classifying, segmenting, detecting,
finding key points and captioning.

``cnnlab train``, ``evaluate`` and ``predict`` (and :func:`cnnlab.train.fit`) ask the task;
none of them branches on a task's name. A task owns:

- its data: which datasets it takes, how a split is prepared (targets batched as arrays, or
  dicts of arrays), the input normalization, the default recipe;
- its model: how the network is built for the data, and what the model file stores besides
  the weights (class names, a vocabulary...);
- training: the forward step (a captioner also reads the target words), the loss, and the
  running metric shown as ``acc`` while training (None where no accuracy applies);
- evaluation: the metrics, as one JSON-able dict, and their text;
- prediction: how raw outputs decode into answers (a class, a mask, boxes, points, words),
  what ``predict --json`` prints for an image, the line it prints without ``--json`` and
  the picture it draws with ``--out``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cnnlab.train.recipes import Recipe

__all__ = ["Prepared", "Recipe", "Task", "batches", "normalizer"]


@dataclass
class Prepared:
    """The data of one training run, as the task prepared it.

    Attributes:
        name: A short name of the data (for messages and the run folder).
        train: What the training loader batches: a dataset with ``.images`` and ``.labels``,
            or one with ``get_batch(indices) -> (images, targets)``.
        val: The validation set in the same form (None without one).
        test: The test set (None without one), not normalized.
        input_shape: (C, H, W) of one image.
        classes: Class names.
        normalize: The input normalization, a transform of a batch of images (or None).
        train_transform: Augmentation then normalization, for training batches.
        spec: What the model file stores besides the architecture (normalization, a
            vocabulary...), merged into ``model.spec``.
        notes: Remarks about how the data was prepared, printed once.
    """

    name: str
    train: Any
    val: Any
    test: Any
    input_shape: tuple[int, int, int]
    classes: list[str]
    normalize: Callable[[np.ndarray], np.ndarray] | None = None
    train_transform: Callable[..., np.ndarray] | None = None
    spec: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


class Task:
    """The base of every task (see the module docstring). Subclasses set the class
    attributes and implement the methods that raise NotImplementedError."""

    name: str = ""
    help: str = ""
    default_data: str = ""
    # The --data values this task takes (a folder of images is allowed where the task says).
    datasets: tuple[str, ...] = ()
    # What the running training metric measures ("acc" in the progress line), or None.
    metric_name: str | None = None
    # Whether ``merge`` can combine the metrics of consecutive parts of a set into those of
    # the whole (so that several processes can each evaluate a part).
    merges_metrics: bool = False

    # ----- command line ------------------------------------------------------------------
    def add_arguments(self, command: str, parser: argparse.ArgumentParser) -> None:
        """Add this task's own options to ``cnnlab <command>`` (train, evaluate, predict)."""

    # ----- data and model ----------------------------------------------------------------
    def recipe(self, data: str) -> Recipe:
        raise NotImplementedError

    def prepare(self, config: Mapping[str, Any]) -> Prepared:
        """Load the data named in ``config`` and split it for training."""
        raise NotImplementedError

    def open_test(self, spec: Mapping[str, Any], data: str, data_dir: str | None,
                  download: bool) -> Any:
        """The test set of ``data`` for a model with ``spec`` (for ``cnnlab evaluate``)."""
        raise NotImplementedError

    def build(self, arch: str, prepared: Prepared) -> Any:
        """An untrained model for the prepared data, with ``model.spec`` set."""
        raise NotImplementedError

    def check_model(self, spec: Mapping[str, Any]) -> None:
        """Raise ValueError when a model file's spec does not suit this task."""

    # ----- training ----------------------------------------------------------------------
    def forward(self, model: Any, images: np.ndarray, targets: Any) -> Any:
        """The outputs the loss compares with ``targets`` (most tasks: ``model(images)``)."""
        from cnnlab.tensor import Tensor

        return model(Tensor(images))

    def loss(self, outputs: Any, targets: Any) -> Any:
        raise NotImplementedError

    def train_metric(self, outputs: Any, targets: Any) -> tuple[float, float] | None:
        """``(hits, count)`` of the running training metric for one batch, or None."""
        return None

    # ----- evaluation ----------------------------------------------------------------------
    def evaluate(self, model: Any, dataset: Any, *, batch_size: int = 256,
                 options: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The task's metrics on ``dataset`` (not normalized: the model's spec says how),
        as one JSON-able dict with at least ``task`` and ``n``."""
        raise NotImplementedError

    def merge(self, parts: list[Mapping[str, Any]]) -> dict[str, Any]:
        """The metrics of a whole set from ``evaluate``'s results on consecutive parts of
        it, in order; only where ``merges_metrics`` (a mean average precision, say, does not
        add up from its parts' values)."""
        raise NotImplementedError

    def headline(self, result: Mapping[str, Any]) -> str:
        """One line for the end of ``cnnlab train`` (e.g. ``test accuracy: 98.6% ...``)."""
        raise NotImplementedError

    def report(self, result: Mapping[str, Any]) -> list[str]:
        """The text of ``cnnlab evaluate`` without ``--json``."""
        return [self.headline(result)]

    # ----- prediction ----------------------------------------------------------------------
    def predict(self, model: Any, images: np.ndarray,
                options: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """One JSON-able answer per image of ``images`` ((N, C, H, W) in [0, 1], not
        normalized)."""
        raise NotImplementedError

    def describe(self, result: Mapping[str, Any]) -> str:
        """The text ``cnnlab predict`` prints for one image's answer."""
        raise NotImplementedError

    def draw(self, image: np.ndarray, result: Mapping[str, Any], path: str,
             spec: Mapping[str, Any]) -> None:
        """Write a PNG of ``image`` ((C, H, W) in [0, 1]) with the answer drawn on it."""
        raise NotImplementedError


def normalizer(spec: Mapping[str, Any]) -> Callable[[np.ndarray], np.ndarray] | None:
    """The input normalization a model was trained with, as a batch transform (or None)."""
    from cnnlab.data import Normalize

    norm = spec.get("normalization")
    if not norm:
        return None
    return Normalize(norm["mean"], norm["std"])


def batches(n: int, batch_size: int):
    """``(start, stop)`` of consecutive batches covering ``range(n)``."""
    for start in range(0, n, batch_size):
        yield start, min(n, start + batch_size)
