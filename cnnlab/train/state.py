"""What the fit loop knows at any moment, shared with every callback."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class TrainState:
    """The training run as callbacks see it.

    The loop writes the counters and metrics; callbacks read them and may set ``stop`` (with a
    ``stop_reason``) to end the run after the current step.

    Attributes:
        model: The module being trained.
        optimizer: Its optimizer.
        scheduler: The learning-rate schedule, or None.
        generator: The ``np.random.Generator`` that shuffles the training set.
        epochs: Total number of epochs the run aims for.
        batch_size: Mini-batch size.
        num_samples: Training images per epoch.
        num_batches: Mini-batches per epoch.
        epoch: Index (0-based) of the current epoch; after an epoch ends, the number done.
        batch: Mini-batches done in the current epoch.
        loss: Loss of the last mini-batch.
        batch_images: Images in the last mini-batch.
        logs: Metrics of the last finished epoch (see ``history``).
        history: One dict per finished epoch: epoch (1-based), train_loss, train_acc,
            val_loss, val_acc (None without a validation set), lr, time (seconds).
        callbacks: The callbacks of this run, in the order they are called.
        stop: Set to True to end the run.
        stop_reason: Why the run ended: "completed", "early_stopping", "interrupted",
            "nonfinite", or what a callback wrote.
    """

    model: Any
    optimizer: Any
    scheduler: Any = None
    generator: np.random.Generator | None = None
    epochs: int = 1
    batch_size: int = 64
    num_samples: int = 0
    num_batches: int = 0
    epoch: int = 0
    batch: int = 0
    loss: float = math.nan
    batch_images: int = 0
    logs: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    callbacks: list = field(default_factory=list)
    stop: bool = False
    stop_reason: str | None = None
    # Running sums over the current epoch; saved in checkpoints so a resumed epoch reports
    # the same numbers as an uninterrupted one.
    running: dict = field(default_factory=lambda: new_running())
    # Shuffling generator's state when the current epoch began: a resumed run replays the
    # epoch's order from it.
    epoch_start_rng: dict | None = None
    epoch_start_time: float = field(default_factory=time.perf_counter)
    lr_at_epoch_start: float = math.nan
    # What the loop is doing: "train", "validation" or "epoch_end" (for error messages).
    phase: str = "train"

    @property
    def lr(self) -> float:
        """Learning rate of the first parameter group."""
        return float(self.optimizer.param_groups[0]["lr"])

    @property
    def train_loss(self) -> float:
        """Mean training loss over the batches done in this epoch."""
        seen = self.running["seen"]
        return self.running["loss_sum"] / seen if seen else math.nan

    @property
    def train_acc(self) -> float | None:
        """The running training metric (0..1, accuracy for a classifier) over the batches
        done in this epoch; None when the run measures none."""
        counted = self.running.get("counted", 0)
        return self.running["correct"] / counted if counted else None

    @property
    def images_per_second(self) -> float:
        """Training throughput of the current epoch."""
        elapsed = self.elapsed
        return self.running["seen"] / elapsed if elapsed > 0 else 0.0

    @property
    def elapsed(self) -> float:
        """Seconds spent in the current epoch (including time before a resume)."""
        return self.running["time_before"] + time.perf_counter() - self.epoch_start_time


def new_running() -> dict:
    """Fresh per-epoch sums: loss_sum (sum of batch loss x batch size), seen (images),
    correct and counted (the running metric's hits and what they are out of)."""
    return {"loss_sum": 0.0, "correct": 0, "counted": 0, "seen": 0, "time_before": 0.0}
