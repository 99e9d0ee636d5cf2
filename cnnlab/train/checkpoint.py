"""Checkpoints of a training run, and resuming from them exactly.

A checkpoint holds everything the next step depends on: weights and buffers, optimizer
state, the learning-rate schedule, the position (epoch and batch), both random generators
(the one that shuffles, the global one that dropout uses), the running metrics of the epoch,
the history so far and the state of every callback. Resuming from it therefore ends with
bit-identical weights to a run that was never interrupted.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.train.callback import Callback, callback_keys
from cnnlab.train.state import TrainState

FORMAT = "cnnlab.train/1"


class Checkpoint(Callback):
    """Save a checkpoint at the end of every epoch and when the run is stopped by Ctrl-C.

    The file is replaced atomically, so the previous checkpoint survives a crash while
    writing. A run stopped by a NaN/Inf loss saves nothing: the last checkpoint, from before
    the loss went bad, is kept. Parameters that are no longer finite are never saved.

    Args:
        path: The checkpoint file (``.safetensors``).
        meta: JSON-able information stored alongside (how the run was configured, say);
            ``read_meta(path)`` returns it.

    Attributes:
        saved_epoch: Epochs complete in the last checkpoint written (None before any).
    """

    order = 100  # last, so it saves what the other callbacks changed at the epoch's end

    def __init__(self, path: str | os.PathLike, meta: dict[str, Any] | None = None) -> None:
        self.path = Path(path)
        self.meta = meta or {}
        self.saved_epoch: int | None = None
        self.saved_batch: int = 0

    def on_epoch_end(self, state: TrainState) -> None:
        self.save(state)

    def on_train_end(self, state: TrainState) -> None:
        if state.stop_reason == "interrupted":
            self.save(state)

    def save(self, state: TrainState) -> None:
        """Write the run's current state to ``path``.

        Raises:
            cnnlab.NonFiniteLossError: when a parameter holds NaN or Inf (nothing written).
        """
        import cnnlab
        from cnnlab import io as cio

        for name, p in state.model.named_parameters():
            if not np.isfinite(p.data).all():
                raise cnnlab.NonFiniteLossError(
                    f"parameter {name!r} holds NaN or Inf; not saving it over the last good "
                    f"checkpoint {self.path}"
                )
        rng_state = {
            "global": cnnlab.random.get_rng_state(),
            "shuffle": state.generator.bit_generator.state,
        }
        callbacks = {
            key: sd
            for key, cb in zip(callback_keys(state.callbacks), state.callbacks, strict=True)
            if (sd := cb.state_dict()) is not None
        }
        extra = {
            "format": FORMAT,
            "batch": state.batch,
            "epochs": state.epochs,
            "epoch_start_rng": state.epoch_start_rng,
            "running": dict(state.running, time_before=state.elapsed if state.batch else 0.0),
            "history": state.history,
            "callbacks": callbacks,
            "meta": self.meta,
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        cio.save_checkpoint(
            self.path,
            model=state.model,
            optimizer=state.optimizer,
            scheduler=state.scheduler,
            epoch=state.epoch,
            rng_state=rng_state,
            extra=extra,
        )
        self.saved_epoch, self.saved_batch = state.epoch, state.batch


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint written by ``Checkpoint``.

    Returns:
        The dict of ``cnnlab.io.load_checkpoint`` (model, optimizer, scheduler, epoch,
        rng_state, extra, spec).

    Raises:
        FileNotFoundError: when there is no file at ``path``.
        ValueError: when the file is not a training checkpoint of this format
            (``cnnlab.io.ModelFileError`` for a damaged file).
    """
    from cnnlab import io as cio

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    ckpt = cio.load_checkpoint(path)
    extra = ckpt.get("extra") or {}
    if extra.get("format") != FORMAT:
        raise ValueError(
            f"{path} is not a training checkpoint written by cnnlab.train.Checkpoint "
            f"(format {extra.get('format')!r}, expected {FORMAT!r})"
        )
    return ckpt


def read_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The ``meta`` dict a ``Checkpoint`` stored in ``path``."""
    return read_checkpoint(path)["extra"].get("meta", {})


def restore(state: TrainState, path_or_checkpoint) -> dict | None:
    """Put a run back where a checkpoint left it.

    Loads weights, optimizer, schedule, position, history and callback states into
    ``state``. Random states are set now when the checkpoint is at an epoch boundary;
    in the middle of an epoch the shuffling generator is set to the epoch's start (so the
    loop can replay the epoch's order) and the states to apply after the replay are returned.

    Returns:
        None, or {"shuffle": ..., "global": ...} for the loop to apply after replaying
        ``state.batch`` batches.
    """
    import cnnlab

    if isinstance(path_or_checkpoint, dict):
        ckpt = path_or_checkpoint
    else:
        ckpt = read_checkpoint(path_or_checkpoint)
    from cnnlab import io as cio

    extra = ckpt["extra"]
    state.epoch = cio.restore_checkpoint(ckpt, state.model, state.optimizer, state.scheduler)
    state.batch = int(extra["batch"])
    state.history = copy.deepcopy(extra["history"])
    state.logs = state.history[-1] if state.history else {}
    state.running = dict(extra["running"])
    state.epoch_start_rng = extra["epoch_start_rng"]
    saved = extra.get("callbacks", {})
    for key, cb in zip(callback_keys(state.callbacks), state.callbacks, strict=True):
        if key in saved:
            cb.load_state_dict(saved[key])
    rng = ckpt["rng_state"]
    if state.batch == 0:
        state.generator.bit_generator.state = rng["shuffle"]
        cnnlab.random.set_rng_state(rng["global"])
        return None
    if state.batch > state.num_batches:
        raise ValueError(
            f"the checkpoint is {state.batch} batches into epoch {state.epoch + 1}, but this run "
            f"has {state.num_batches} batches per epoch; resume with the same data and batch size"
        )
    state.generator.bit_generator.state = state.epoch_start_rng
    return {"shuffle": rng["shuffle"], "global": rng["global"]}
