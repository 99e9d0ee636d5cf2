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
from cnnlab.train.evaluate import Evaluation
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

    It runs before the other callbacks (``order = -100``), so they see the global numbers. A
    callback of yours that stops the run must decide alike on every rank (from the global
    numbers, as ``EarlyStopping`` does), or run before this one so that its wish is voted on.
    To resume, pass ``fit`` the checkpoint through :func:`resume_checkpoint`.

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
        keys = ("loss_sum", "correct", "counted", "seen")
        step = np.array([run.get(k, 0) - synced.get(k, 0) for k in keys]
                        + [self._wants_stop(state)], dtype=np.float64)
        comm.all_reduce(step, "sum")
        for key, value in zip(keys, step, strict=False):
            total = synced.get(key, 0) + value
            run[key] = int(round(total)) if isinstance(run.get(key, 0), int) else total
        state.batch_images = int(round(step[3]))
        state.loss = float(step[0] / step[3]) if step[3] else math.nan
        self._synced = dict(run)
        self._agree_to_stop(state, step[4])

    def on_epoch_end(self, state: TrainState) -> None:
        # Means over this rank's share, weighted by its images (exact for a classifier's
        # accuracy, and for any metric counted the same way in every image).
        logs, n = state.logs, self.val_count
        loss, metric = logs.get("val_loss"), logs.get("val_acc")
        sums = np.array([0.0 if loss is None else loss * n, 0.0 if metric is None else metric * n,
                         0.0 if loss is None else n, self._wants_stop(state)])
        comm.all_reduce(sums, "sum")
        if loss is not None and sums[2]:
            logs["val_loss"] = float(sums[0] / sums[2])
            if metric is not None:
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
        if comm.world_size() > 1 and state.get("ranks") and \
                state.get("resumed_on") != comm.rank():
            raise ValueError(
                "fit(resume=...) on several ranks needs each rank's own random states: pass "
                "resume=cnnlab.distributed.resume_checkpoint(cnnlab.train.read_checkpoint(path))"
            )


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
        saved["resumed_on"] = comm.rank()  # DistributedTraining checks it was done
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


class _Share:
    """Items ``start .. stop-1`` of a dataset that batches itself (``get_batch``), seen as a
    dataset of their own."""

    def __init__(self, data: Any, part: slice) -> None:
        self._data, self._start = data, part.start
        self.images = data.images[part]
        self.classes = getattr(data, "classes", None)

    def __len__(self) -> int:
        return len(self.images)

    def get_batch(self, indices: Any) -> Any:
        return self._data.get_batch(np.asarray(indices) + self._start)


def count(data: Any) -> int:
    """How many images a set holds: a pair ``(images, labels)`` or a dataset."""
    if isinstance(data, (tuple, list)):
        return len(data[1])
    return len(data.images) if hasattr(data, "images") else len(data)


def share(data: Any) -> Any:
    """This rank's contiguous share of a set (blocks in rank order, see :func:`shard`), in the
    set's own form: a pair ``(images, labels)``, a dataset with ``.images``/``.labels``
    (``.classes`` kept), or one that batches itself with ``get_batch``."""
    part = shard(count(data))
    if isinstance(data, (tuple, list)):
        return data[0][part], data[1][part]
    if callable(getattr(data, "get_batch", None)):
        return _Share(data, part)
    from cnnlab.data import ArrayDataset

    return ArrayDataset(data.images[part], data.labels[part], getattr(data, "classes", None))


def evaluate(model, data, **kwargs: Any) -> Evaluation:
    """``cnnlab.train.evaluate`` over every rank: each measures its contiguous share of
    ``data`` (:func:`share`) and the results are combined, so every rank gets the numbers of
    the whole set: the loss and metric weighted by images, summed counts and confusion
    matrix, predictions in the set's order.

    Args:
        model: The model (the same weights on every rank).
        data: The whole set, the same on every rank.
        **kwargs: As for ``cnnlab.train.evaluate`` (batch_size, num_classes, transform,
            loss_fn, metric_fn, forward_fn).

    Raises:
        ValueError: for an empty set.
    """
    total = count(data)
    if total == 0:
        raise ValueError("evaluate: the set is empty; give at least one labelled image")
    mine = share(data)
    here = evaluate_here(model, mine, **kwargs) if count(mine) else None
    n = here.n if here is not None else 0
    sums = np.zeros(6)
    if here is not None:
        sums[:] = [here.loss * n, 0.0 if here.accuracy is None else here.accuracy * n,
                   here.correct, n, here.accuracy is not None, here.confusion is not None]
    comm.all_reduce(sums, "sum")
    with_metric, classifier = sums[4] > 0, sums[5] > 0
    confusion = predictions = None
    if classifier:  # counts add up
        size = int(comm.all_reduce(0 if here is None else len(here.confusion), "max"))
        confusion = np.zeros((size, size), dtype=np.int64)
        if here is not None:
            confusion[: len(here.confusion), : len(here.confusion)] = here.confusion
        comm.all_reduce(confusion, "sum")
        predictions = comm.all_gather_rows(
            here.predictions if here is not None else np.zeros(0, dtype=np.int64))
        sums[1] = sums[2]  # accuracy: exactly the correct answers over the set
    return Evaluation(loss=float(sums[0] / total),
                      accuracy=float(sums[1] / total) if with_metric else None,
                      n=total, correct=int(round(sums[2])), predictions=predictions,
                      confusion=confusion)
