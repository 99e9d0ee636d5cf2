"""Callbacks for ``fit``: progress display, history files, LR schedule, early stopping.

``Checkpoint`` lives in ``cnnlab.train.checkpoint`` and is re-exported by ``cnnlab.train``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import sys
from pathlib import Path
from typing import IO, Any

from cnnlab.train.callback import Callback
from cnnlab.train.state import TrainState

HISTORY_FIELDS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "time")


def format_epoch(logs: dict, epochs: int, images_per_second: float | None = None) -> str:
    """One line summing up an epoch, e.g.
    ``epoch 2/5  loss 0.1432  acc 95.60%  val_loss 0.1120  val_acc 96.50%  lr 0.001  3.1s``.
    """
    width = len(str(epochs))
    parts = [f"epoch {logs['epoch']:>{width}}/{epochs}", _metrics(logs)]
    parts.append(f"lr {logs['lr']:.3g}")
    parts.append(f"{logs['time']:.1f}s")
    if images_per_second:
        parts.append(f"{images_per_second:,.0f} img/s")
    return "  ".join(parts)


MIN_BAR_WIDTH = 40  # columns a progress bar needs to show anything useful


def _terminal_width(file: IO[str]) -> int:
    """Columns of the terminal ``file`` writes to (0 when it reports none)."""
    try:
        return os.get_terminal_size(file.fileno()).columns
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return shutil.get_terminal_size(fallback=(0, 0)).columns


def _metrics(logs: dict) -> str:
    """``loss ...  acc ...  val_loss ...  val_acc ...``, leaving out what was not measured
    (a task without an accuracy, a run without a validation set)."""
    parts = [f"loss {logs['train_loss']:.4f}"]
    if logs.get("train_acc") is not None:
        parts.append(f"acc {logs['train_acc']:.2%}")
    if logs.get("val_loss") is not None:
        parts.append(f"val_loss {logs['val_loss']:.4f}")
    if logs.get("val_acc") is not None:
        parts.append(f"val_acc {logs['val_acc']:.2%}")
    return "  ".join(parts)


class ProgressBar(Callback):
    """Show progress: a live bar on a terminal, one line per epoch anywhere else.

    On a terminal (and with tqdm installed) each epoch gets a bar with loss, accuracy,
    images per second and the time left; it stays on screen with the validation numbers
    when the epoch ends. When the output is a file or a pipe (a log, CI), the bar would flood
    it, so the callback writes one ``format_epoch`` line per epoch instead; so it does on a
    terminal narrower than ``MIN_BAR_WIDTH`` columns (or one that reports a width of 0).

    Args:
        file: Where to write; default ``sys.stdout``.
        tty: Force bar (True) or line (False) mode; default: whether ``file`` is a terminal.
    """

    def __init__(self, file: IO[str] | None = None, tty: bool | None = None) -> None:
        self.file = file
        self.tty = tty
        self._bar = None

    def _out(self) -> IO[str]:
        return self.file if self.file is not None else sys.stdout

    def on_train_begin(self, state: TrainState) -> None:
        if self.tty is None:
            isatty = getattr(self._out(), "isatty", None)
            self.tty = bool(isatty and isatty())
            # A terminal too narrow for a bar (or one that reports no width at all) gets
            # the epoch lines: a bar squeezed to nothing prints only blank lines.
            if self.tty and _terminal_width(self._out()) < MIN_BAR_WIDTH:
                self.tty = False
        if self.tty:
            try:
                import tqdm  # noqa: F401
            except ImportError:  # optional dependency: fall back to epoch lines
                self.tty = False

    def on_epoch_begin(self, state: TrainState) -> None:
        if not self.tty:
            return
        from tqdm import tqdm

        self._bar = tqdm(
            total=state.num_samples,
            initial=state.running["seen"],
            desc=f"epoch {state.epoch + 1}/{state.epochs}",
            unit="img",
            file=self._out(),
            leave=True,
            dynamic_ncols=True,
        )

    def on_batch_end(self, state: TrainState) -> None:
        if self._bar is None:
            return
        self._bar.set_postfix_str(
            _metrics({"train_loss": state.train_loss, "train_acc": state.train_acc}),
            refresh=False,
        )
        self._bar.update(state.batch_images)

    def on_epoch_end(self, state: TrainState) -> None:
        logs = state.logs
        if self._bar is not None:
            self._bar.set_postfix_str(_metrics(logs), refresh=True)
            self._bar.close()
            self._bar = None
        else:
            speed = state.running["seen"] / logs["time"] if logs["time"] > 0 else None
            print(format_epoch(logs, state.epochs, speed), file=self._out(), flush=True)

    def on_train_end(self, state: TrainState) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class HistoryFile(Callback):
    """Write the per-epoch history after every epoch, as JSON and/or CSV.

    Each record has: epoch (1-based), train_loss, train_acc, val_loss, val_acc (null/empty
    without a validation set), lr (during the epoch), time (seconds). Files are replaced
    atomically, so a reader never sees half a file.

    Args:
        json_path: Path of the JSON file (a list of records), or None.
        csv_path: Path of the CSV file (a header row, then one row per epoch), or None.
    """

    def __init__(self, json_path: str | os.PathLike | None = None,
                 csv_path: str | os.PathLike | None = None) -> None:
        if json_path is None and csv_path is None:
            raise ValueError("HistoryFile: give json_path, csv_path or both")
        self.json_path = Path(json_path) if json_path is not None else None
        self.csv_path = Path(csv_path) if csv_path is not None else None

    def on_epoch_end(self, state: TrainState) -> None:
        self.write(state.history)

    def on_train_end(self, state: TrainState) -> None:
        if state.history:
            self.write(state.history)

    def write(self, history: list[dict]) -> None:
        """Write ``history`` to the configured files."""
        records = [{k: _json_number(rec.get(k)) for k in HISTORY_FIELDS} for rec in history]
        if self.json_path is not None:
            write_atomic(self.json_path, json.dumps(records, indent=1) + "\n")
        if self.csv_path is not None:
            buffer = io.StringIO()
            writer = csv.DictWriter(buffer, fieldnames=HISTORY_FIELDS, lineterminator="\n")
            writer.writeheader()
            for rec in records:
                writer.writerow({k: "" if v is None else v for k, v in rec.items()})
            write_atomic(self.csv_path, buffer.getvalue())


class LearningRateSchedule(Callback):
    """Step a learning-rate schedule once at the end of every epoch.

    ``fit(scheduler=...)`` adds this callback itself; the schedule's state is saved in
    checkpoints by ``Checkpoint``. A ``ReduceLROnPlateau`` is given the epoch's validation
    loss (its training loss when there is no validation data).
    """

    def __init__(self, scheduler) -> None:
        self.scheduler = scheduler

    def on_epoch_end(self, state: TrainState) -> None:
        from cnnlab.optim.lr_scheduler import ReduceLROnPlateau

        if isinstance(self.scheduler, ReduceLROnPlateau):
            logs = state.logs
            val_loss = logs.get("val_loss")
            self.scheduler.step(logs["train_loss"] if val_loss is None else val_loss)
        else:
            self.scheduler.step()


class EarlyStopping(Callback):
    """Stop when a monitored metric has not improved for ``patience`` epochs.

    Args:
        monitor: A history key: "val_loss" (default), "val_acc", "train_loss", "train_acc".
        patience: Epochs without improvement to tolerate.
        min_delta: Smallest change that counts as an improvement.
        mode: "min", "max", or "auto" (max for accuracies, min otherwise).

    Raises:
        ValueError: for a bad argument, or (at the first epoch end) when the monitored
            metric is missing, e.g. "val_loss" without a validation set.
    """

    def __init__(self, monitor: str = "val_loss", patience: int = 5, min_delta: float = 0.0,
                 mode: str = "auto") -> None:
        if monitor not in HISTORY_FIELDS[1:5]:
            raise ValueError(
                f"EarlyStopping: monitor must be one of {list(HISTORY_FIELDS[1:5])}, "
                f"got {monitor!r}"
            )
        if not isinstance(patience, int) or patience < 1:
            raise ValueError(f"EarlyStopping: patience must be an integer >= 1, got {patience!r}")
        if min_delta < 0:
            raise ValueError(f"EarlyStopping: min_delta must be >= 0, got {min_delta!r}")
        if mode == "auto":
            mode = "max" if monitor.endswith("acc") else "min"
        if mode not in ("min", "max"):
            raise ValueError(f"EarlyStopping: mode must be 'min', 'max' or 'auto', got {mode!r}")
        self.monitor, self.patience, self.min_delta, self.mode = monitor, patience, min_delta, mode
        self.best: float | None = None
        self.best_epoch = 0
        self.wait = 0
        self.message = ""

    def on_epoch_end(self, state: TrainState) -> None:
        value = state.logs.get(self.monitor)
        if value is None:
            raise ValueError(
                f"EarlyStopping monitors {self.monitor!r}, but the run reports no such value; "
                "give fit a val_data set or monitor 'train_loss'"
            )
        sign = 1.0 if self.mode == "min" else -1.0
        if self.best is None or sign * (value - self.best) < -self.min_delta:
            self.best, self.best_epoch, self.wait = value, state.logs["epoch"], 0
            return
        self.wait += 1
        if self.wait >= self.patience:
            state.stop, state.stop_reason = True, "early_stopping"
            self.message = (
                f"early stopping: {self.monitor} has not improved for {self.wait} epochs "
                f"(best {self.best:.4f} at epoch {self.best_epoch})"
            )

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_epoch, self.wait = state["best"], state["best_epoch"], state["wait"]


def write_atomic(path: str | os.PathLike, text: str) -> None:
    """Replace ``path`` with ``text`` in one step (temporary file, then ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _json_number(value):
    # JSON has no NaN/Infinity; an undefined number is written as null.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
