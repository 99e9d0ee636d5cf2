"""Training: the fit loop, evaluation, and the callbacks that show and keep its progress.

The loop runs the four steps (sample a mini-batch, forward to the loss, backward, update)
and emits events; callbacks turn them into a progress bar, history files, checkpoints, a
learning-rate schedule and early stopping.
"""

from cnnlab import _checkout  # noqa: F401  (a folder named cnnlab hiding the package)
from cnnlab.train.callback import Callback
from cnnlab.train.callbacks import (
    EarlyStopping,
    HistoryFile,
    LearningRateSchedule,
    ProgressBar,
    format_epoch,
)
from cnnlab.train.checkpoint import Checkpoint, read_checkpoint
from cnnlab.train.evaluate import Evaluation, evaluate
from cnnlab.train.loop import fit
from cnnlab.train.state import TrainState

__all__ = [
    "Callback",
    "Checkpoint",
    "EarlyStopping",
    "Evaluation",
    "HistoryFile",
    "LearningRateSchedule",
    "ProgressBar",
    "TrainState",
    "evaluate",
    "fit",
    "format_epoch",
    "read_checkpoint",
]
