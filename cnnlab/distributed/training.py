"""Training and evaluation over several ranks with ``cnnlab.train``: global metrics, one
decision to stop, every rank's random streams in checkpoints, resuming on the same ranks."""

from __future__ import annotations

import math
import signal
import threading
from typing import Any

import numpy as np

from cnnlab.distributed import comm
from cnnlab.distributed.sampler import shard
from cnnlab.train.callback import Callback
from cnnlab.train.evaluate import Evaluation, as_arrays
from cnnlab.train.evaluate import evaluate as evaluate_here
from cnnlab.train.state import TrainState

CALLBACK_KEY = "DistributedTraining"  # where its state sits among a checkpoint's callbacks


class DistributedTraining(Callback):
    """Keep the ranks of a data-parallel ``fit`` in step and its numbers global.

    Give it to ``fit`` on every rank (with a ``DistributedDataParallel`` model, a
    ``DistributedSampler`` and each rank's share of the validation set). After every step it
    sums the ranks' training loss, correct answers and images in one small ``Allreduce``, so
    ``state.train_loss``, ``train_acc``, ``batch_images`` and the history are those of the
    whole batch, the same on every rank; after every epoch it does the same for the
    validation numbers. The same message carries each rank's wish to stop (Ctrl-C, a
    callback): when one rank stops, all stop after the same step, so none is left waiting.
    For that, during training it takes Ctrl-C (SIGINT, which ``srun`` forwards to every
    rank) over from the loop: the first is a vote to stop after the current step, a second
    one interrupts at once, as in one process. (``mpirun`` turns Ctrl-C into SIGTERM, which
    ends the ranks at once; the last epoch's checkpoint stays as it was.)
    Before each checkpoint it gathers every rank's random-generator states, which the
    ``Checkpoint`` callback (on rank 0) stores; :func:`resume_checkpoint` hands each rank its
    own back.

    It runs before the other callbacks (``order = -100``), so they see the global numbers.

    Args:
        val_count: Validation images this rank evaluates (its share); 0 without validation.
    """

    order = -100

    def __init__(self, val_count: int = 0) -> None:
        self.val_count = int(val_count)
        self.world_size = comm.world_size()
        self._synced: dict = {}
        self._ranks: list | None = None
        self._ctrl_c = False
        self._handling = False

    def on_train_begin(self, state: TrainState) -> None:
        state.num_samples = int(comm.all_reduce(int(state.num_samples), "sum"))
        self._synced = dict(state.running)

    def on_epoch_begin(self, state: TrainState) -> None:
        self._synced = dict(state.running)
        # Here, not in on_train_begin: the loop installs its own handler after that event.
        if not self._handling and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, self._on_ctrl_c)
            self._handling = True  # the loop puts the old handler back when training ends

    def _on_ctrl_c(self, signum, frame) -> None:
        self._ctrl_c = True
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a second one: at once

    def _wants_stop(self, state: TrainState) -> float:
        return float(state.stop or self._ctrl_c)

    def on_batch_end(self, state: TrainState) -> None:
        run, synced = state.running, self._synced
        step = np.array([run["loss_sum"] - synced["loss_sum"], run["correct"] - synced["correct"],
                         run["seen"] - synced["seen"], self._wants_stop(state)],
                        dtype=np.float64)
        comm.all_reduce(step, "sum")
        run["loss_sum"] = synced["loss_sum"] + step[0]
        run["correct"] = synced["correct"] + int(round(step[1]))
        run["seen"] = synced["seen"] + int(round(step[2]))
        state.batch_images = int(round(step[2]))
        state.loss = float(step[0] / step[2]) if step[2] else math.nan
        self._synced = dict(run)
        self._agree_to_stop(state, step[3])

    def on_epoch_end(self, state: TrainState) -> None:
        logs = state.logs
        have_val = logs.get("val_loss") is not None
        sums = np.array([logs["val_loss"] * self.val_count if have_val else 0.0,
                         round(logs["val_acc"] * self.val_count) if have_val else 0.0,
                         self.val_count if have_val else 0.0, self._wants_stop(state)])
        comm.all_reduce(sums, "sum")
        if sums[2]:
            logs["val_loss"] = float(sums[0] / sums[2])
            logs["val_acc"] = float(sums[1] / sums[2])
        self._agree_to_stop(state, sums[3])
        self._gather_random_states(state)

    def on_train_end(self, state: TrainState) -> None:
        if state.stop_reason == "interrupted":  # the checkpoint saved now needs them too
            self._gather_random_states(state)

    def _agree_to_stop(self, state: TrainState, votes: float) -> None:
        if votes and not state.stop:
            state.stop, state.stop_reason = True, "interrupted"

    def _gather_random_states(self, state: TrainState) -> None:
        import cnnlab

        mine = {"global": cnnlab.random.get_rng_state(),
                "shuffle": state.generator.bit_generator.state,
                "epoch_start": state.epoch_start_rng}
        self._ranks = comm.gather_json(mine)

    def state_dict(self) -> dict[str, Any]:
        return {"world_size": self.world_size, "ranks": self._ranks}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        check_world_size(state.get("world_size", 1))


def checkpoint_world_size(ckpt: dict[str, Any]) -> int:
    """How many ranks trained the run a checkpoint (``cnnlab.train.read_checkpoint``) holds."""
    saved = (ckpt.get("extra") or {}).get("callbacks", {}).get(CALLBACK_KEY)
    return int(saved["world_size"]) if saved else 1


def check_world_size(saved: int) -> None:
    """Refuse to continue a run on a different number of ranks than it was trained on.

    Raises:
        ValueError: one line saying what differs and how to resume.
    """
    now = comm.world_size()
    if saved == now:
        return
    how = "without mpirun (one process)" if saved == 1 else f"with mpirun -np {saved}"
    raise ValueError(
        f"the checkpoint was written by a run on {saved} rank{'s' * (saved != 1)} and this one "
        f"has {now}; resume it {how}: each rank's share of the data and of the batch and its "
        "random streams depend on the number of ranks, so another number would not continue "
        "the same run"
    )


def resume_checkpoint(ckpt: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint ready for ``fit(resume=...)`` on this rank: the same world size is
    checked and this rank's own random states put where ``fit`` reads them.

    Args:
        ckpt: From ``cnnlab.train.read_checkpoint`` (every rank reads the file).

    Returns:
        ``ckpt``, changed in place.

    Raises:
        ValueError: when the number of ranks differs from the run's (see
            :func:`check_world_size`).
    """
    check_world_size(checkpoint_world_size(ckpt))
    saved = (ckpt.get("extra") or {}).get("callbacks", {}).get(CALLBACK_KEY)
    if saved and saved.get("ranks") and comm.world_size() > 1:
        mine = saved["ranks"][comm.rank()]
        ckpt["rng_state"] = {"global": mine["global"], "shuffle": mine["shuffle"]}
        ckpt["extra"]["epoch_start_rng"] = mine["epoch_start"]
    return ckpt


def split_random_streams(*generators: np.random.Generator) -> None:
    """Give this rank random streams of its own: cnnlab's global generator (dropout) and each
    of ``generators`` (augmentation) jump ``rank`` x 2**127 draws ahead, so no two ranks draw
    the same dropout masks or crops, and a run repeats exactly. Rank 0 keeps its streams.

    Call it on every rank after the model is built (its initial weights must be drawn alike)
    and before training.
    """
    import cnnlab

    me = comm.rank()
    if me == 0:
        return
    global_state = cnnlab.random.get_generator().bit_generator.jumped(me).state
    cnnlab.random.set_rng_state(global_state)
    for gen in generators:
        gen.bit_generator.state = gen.bit_generator.jumped(me).state


def evaluate(model, data, **kwargs: Any) -> Evaluation:
    """``cnnlab.train.evaluate`` over every rank: each measures its contiguous share of
    ``data`` and the results are combined, so every rank gets the numbers of the whole set
    (predictions in the set's order, summed confusion matrix).

    Args:
        model: The model (the same weights on every rank).
        data: The whole set, the same on every rank.
        **kwargs: As for ``cnnlab.train.evaluate`` (batch_size, num_classes, transform,
            loss_fn).

    Raises:
        ValueError: for an empty set.
    """
    images, labels = as_arrays(data)
    if len(images) == 0:
        raise ValueError("evaluate: the set is empty; give at least one labelled image")
    part = shard(len(images))
    if part.stop > part.start:
        here = evaluate_here(model, (images[part], labels[part]), **kwargs)
        loss_sum, predictions, confusion = here.loss * here.n, here.predictions, here.confusion
    else:  # more ranks than images: this one has none
        loss_sum, predictions = 0.0, np.zeros(0, dtype=np.int64)
        confusion = np.zeros((0, 0), dtype=np.int64)
    classes = int(comm.all_reduce(len(confusion), "max"))
    padded = np.zeros((classes, classes), dtype=np.int64)
    padded[: len(confusion), : len(confusion)] = confusion
    comm.all_reduce(padded, "sum")
    total_loss = comm.all_reduce(float(loss_sum), "sum")
    predictions = comm.all_gather_rows(predictions)
    correct = int(np.trace(padded))
    return Evaluation(loss=total_loss / len(images), accuracy=correct / len(images),
                      n=len(images), correct=correct, predictions=predictions,
                      confusion=padded)
