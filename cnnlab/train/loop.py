"""The fit loop: sample a mini-batch, forward to the loss, backward, update — and emit events.

Everything else (progress display, history files, checkpoints, learning-rate schedule, early
stopping) is a callback; see ``cnnlab.train.callbacks``.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Callable, Iterable

import numpy as np

from cnnlab import nn
from cnnlab.kernels.memory import keep_freed_memory
from cnnlab.nn import functional as F
from cnnlab.ops.loss import NonFiniteLossError
from cnnlab.random import get_generator, set_rng_state
from cnnlab.tensor import Tensor
from cnnlab.train.callback import Callback, emit, sort_callbacks
from cnnlab.train.callbacks import LearningRateSchedule
from cnnlab.train.checkpoint import restore
from cnnlab.train.evaluate import as_arrays, evaluate
from cnnlab.train.state import TrainState, new_running


def fit(
    model,
    optimizer,
    train_data,
    *,
    epochs: int,
    batch_size: int = 64,
    val_data=None,
    scheduler=None,
    callbacks: Iterable[Callback] = (),
    loss_fn: Callable | None = None,
    metric_fn: Callable | None = None,
    forward_fn: Callable | None = None,
    generator: np.random.Generator | None = None,
    transform: Callable | None = None,
    resume=None,
    eval_batch_size: int = 256,
    sampler=None,
) -> TrainState:
    """Train ``model`` for ``epochs`` epochs of shuffled mini-batches.

    Each step is the four steps of gradient descent: sample a mini-batch, forward to the
    loss, backward, update. Around them the loop emits events (see ``Callback``). The model
    runs fused (:func:`cnnlab.nn.fuse`: the same values and gradients, faster); ``model``
    itself is what gets trained, and what callbacks and checkpoints see.

    The first Ctrl-C asks the loop to stop after the current step (a ``Checkpoint`` callback
    then saves the exact position); a second one interrupts at once. Freed memory is kept
    for the next step (:func:`cnnlab.keep_freed_memory`).

    Args:
        model: A module; by default it returns logits (N, classes).
        optimizer: Updates ``model``'s parameters (``zero_grad()``, ``step()``).
        train_data: A dataset (``.images`` and ``.labels``, or ``get_batch(indices)``
            returning ``(images, targets)``) or a pair of arrays.
        epochs: Total epochs; a resumed run continues up to this number.
        batch_size: Mini-batch size; the last batch of an epoch may be smaller.
        val_data: Optional held-out set, measured after each epoch (``val_loss``,
            ``val_acc``). Keep the test set out of it.
        scheduler: Optional learning-rate schedule, stepped once per epoch by an
            ``LearningRateSchedule`` callback that ``fit`` adds.
        callbacks: Callback instances.
        loss_fn: ``loss_fn(outputs, targets)`` -> scalar Tensor; default cross-entropy.
        metric_fn: ``metric_fn(outputs, targets)`` -> ``(hits, count)``, the running
            ``acc``; default classification accuracy with the default loss, else none.
        forward_fn: ``forward_fn(model, images, targets)`` -> outputs; default
            ``model(Tensor(images))``.
        generator: Shuffles the training set each epoch; default a fresh one drawn from the
            global generator. Its state goes into checkpoints.
        transform: Applied to each training batch by the data loader (augmentation).
        resume: Path of a checkpoint written by ``Checkpoint``: the run continues from it
            exactly, ending with the weights an uninterrupted run would have.
        eval_batch_size: Batch size for validation.
        sampler: Decides which images each epoch reads, in which order, instead of the
            shuffle by ``generator`` (which then drives only ``transform``); its
            ``set_epoch(epoch)`` is called before each epoch. For data-parallel training,
            ``cnnlab.distributed.DistributedSampler`` (see ``docs/distributed.md``).

    Returns:
        The final ``TrainState``: ``history`` (one dict per epoch), ``stop_reason``.

    Raises:
        cnnlab.NonFiniteLossError: when the loss becomes NaN or infinite; the run stops and
            the last checkpoint (from before it happened) is kept.
        ValueError: for epochs < 1 or batch_size < 1.

    Example:
        >>> import numpy as np, cnnlab
        >>> _ = cnnlab.manual_seed(0)
        >>> model = cnnlab.arch.build("fc3", input_shape=(1, 4, 4))
        >>> x = np.random.default_rng(0).random((30, 1, 4, 4), dtype=np.float32)
        >>> y = np.arange(30) % 3
        >>> sgd = cnnlab.optim.SGD(model.parameters(), lr=0.1)
        >>> state = fit(model, sgd, (x, y), epochs=2, batch_size=10)
        >>> len(state.history), state.stop_reason
        (2, 'completed')
    """
    _check_sizes(epochs, batch_size)
    if loss_fn is None:
        loss_fn, metric_fn = F.cross_entropy, metric_fn or accuracy
    step = _Step(nn.fuse(model), loss_fn, metric_fn, forward_fn or _model_forward)
    if generator is None:
        generator = np.random.Generator(np.random.PCG64(int(get_generator().integers(2**63))))
    loader = _make_loader(train_data, batch_size, generator, transform, sampler)
    state = TrainState(
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        generator=generator,
        epochs=epochs,
        batch_size=batch_size,
        num_samples=loader.num_samples,
        num_batches=len(loader),
        callbacks=sort_callbacks(
            list(callbacks) + ([LearningRateSchedule(scheduler)] if scheduler else [])),
    )
    # RNG states to apply once a resumed epoch has replayed its first batches.
    pending_rng = restore(state, resume) if resume is not None else None
    keep_freed_memory()
    _run(state, loader, step, val_data, eval_batch_size, pending_rng)
    return state


def accuracy(outputs, targets) -> tuple[float, float]:
    """``(correct, count)`` of a batch of logits (N, classes) against integer labels."""
    hits = np.asarray(outputs.data).argmax(axis=1) == np.asarray(targets)
    return float(hits.sum()), float(hits.size)


def _model_forward(model, images, targets):
    return model(Tensor(images))


class _Step:
    """What one training (or validation) step runs: the fused model, the loss and metric."""

    def __init__(self, model, loss_fn, metric_fn, forward_fn):
        self.model, self.loss_fn, self.metric_fn, self.forward_fn = \
            model, loss_fn, metric_fn, forward_fn


def _check_sizes(epochs, batch_size) -> None:
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"fit: epochs must be an integer >= 1, got {epochs!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"fit: batch_size must be an integer >= 1, got {batch_size!r}")


def _run(state: TrainState, loader, step: _Step, val_data, eval_batch_size: int,
         pending_rng) -> None:
    """The epochs, with the events around them; how the run ended goes to the state."""
    emit(state, "on_train_begin")
    try:
        # Overflow on the way to a NaN is reported once, as NonFiniteLossError, instead of
        # as a stream of NumPy warnings.
        with _StopOnCtrlC() as ctrl_c, np.errstate(over="ignore", invalid="ignore"):
            while state.epoch < state.epochs and not state.stop:
                finished = _train_epoch(state, loader, step, ctrl_c, pending_rng)
                pending_rng = None
                if not finished:
                    break
                _end_epoch(state, val_data, step, eval_batch_size)
                if ctrl_c.requested and not state.stop:
                    state.stop, state.stop_reason = True, "interrupted"
    except NonFiniteLossError as exc:
        state.stop, state.stop_reason = True, "nonfinite"
        emit(state, "on_train_end")
        raise type(exc)(f"{_nonfinite_message(state, exc)}; training stopped") from exc
    except BaseException:
        state.stop, state.stop_reason = True, "error"
        emit(state, "on_train_end")
        raise
    if state.stop_reason is None:
        state.stop_reason = "completed"
    emit(state, "on_train_end")


def _nonfinite_message(state: TrainState, exc: Exception) -> str:
    if state.phase == "train":
        return (f"the training loss became NaN or infinite at epoch {state.epoch + 1}, "
                f"batch {state.batch + 1}")
    if state.phase == "validation":
        return f"the validation loss became NaN or infinite after epoch {state.epoch + 1}"
    return f"{exc} (after epoch {state.epoch})"


def _train_epoch(state: TrainState, loader, step: _Step, ctrl_c, pending_rng) -> bool:
    """One pass over the training set (or its rest, after a resume). False if stopped early."""
    if state.batch == 0:
        state.epoch_start_rng = state.generator.bit_generator.state
        state.running = new_running()
    state.lr_at_epoch_start = state.lr
    state.epoch_start_time = time.perf_counter()
    emit(state, "on_epoch_begin")
    step.model.train()
    state.phase = "train"
    if hasattr(loader.sampler, "set_epoch"):
        loader.sampler.set_epoch(state.epoch)
    batches = iter(loader)
    for _ in range(state.batch):  # a resumed epoch replays the order it was interrupted in
        next(batches)
    if pending_rng is not None:
        state.generator.bit_generator.state = pending_rng["shuffle"]
        set_rng_state(pending_rng["global"])

    optimizer = state.optimizer
    for x, y in batches:  # 1. sample a mini-batch
        outputs = step.forward_fn(step.model, x, y)  # 2. forward to the loss
        loss = step.loss_fn(outputs, y)
        optimizer.zero_grad()  # 3. backward
        loss.backward()
        optimizer.step()  # 4. update
        _record_batch(state, loss, len(x), step.metric_fn and step.metric_fn(outputs, y))
        emit(state, "on_batch_end")
        if ctrl_c.requested and not state.stop:
            state.stop, state.stop_reason = True, "interrupted"
        if state.stop:
            return False
    return True


def _record_batch(state: TrainState, loss, n: int, metric) -> None:
    value = float(loss.item())
    if not math.isfinite(value):  # a custom loss may not check for itself
        raise NonFiniteLossError(f"the training loss is {value}")
    run = state.running
    run["loss_sum"] += value * n
    run["seen"] += n
    if metric is not None:
        run["correct"] += metric[0]
        run["counted"] = run.get("counted", 0) + metric[1]
    state.loss, state.batch_images = value, n
    state.batch += 1


def _end_epoch(state: TrainState, val_data, step: _Step, eval_batch_size: int) -> None:
    """Measure the epoch, append it to the history, emit on_epoch_end."""
    val_loss = val_acc = None
    state.phase = "validation"
    if val_data is not None:
        result = evaluate(step.model, val_data, batch_size=eval_batch_size,
                          loss_fn=step.loss_fn, metric_fn=step.metric_fn,
                          forward_fn=step.forward_fn)
        val_loss, val_acc = result.loss, result.accuracy
    logs = {
        "epoch": state.epoch + 1,
        "train_loss": state.train_loss,
        "train_acc": state.train_acc,
        "val_loss": val_loss,
        "val_acc": val_acc,
        "lr": state.lr_at_epoch_start,
        "time": round(state.elapsed, 3),
    }
    state.history.append(logs)
    state.logs = logs
    state.epoch += 1
    state.batch = 0
    state.phase = "epoch_end"
    emit(state, "on_epoch_end")


def _make_loader(data, batch_size: int, generator, transform, sampler):
    from cnnlab.data import DataLoader

    if not hasattr(data, "get_batch") and not (hasattr(data, "images") and
                                               hasattr(data, "labels")):
        images, labels = as_arrays(data, "fit: train_data")
        data = (images, labels)
    loader = DataLoader(data, batch_size=batch_size, shuffle=sampler is None,
                        generator=generator, transform=transform, sampler=sampler)
    if loader.num_samples == 0:
        raise ValueError("fit: train_data is empty; give at least one labelled image")
    return loader


class _StopOnCtrlC:
    """Turn the first Ctrl-C into a request to stop after the current step.

    Stopping between steps keeps weights and optimizer state consistent, so the checkpoint
    saved on the way out resumes exactly. A second Ctrl-C raises KeyboardInterrupt at once.
    Outside the main thread signals can't be caught and Ctrl-C behaves as usual.
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous = None
        self._installed = False

    def __enter__(self) -> _StopOnCtrlC:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.getsignal(signal.SIGINT)
            signal.signal(signal.SIGINT, self._handle)
            self._installed = True
        return self

    def _handle(self, signum, frame) -> None:
        self.requested = True
        signal.signal(signal.SIGINT, self._restore_target())

    def _restore_target(self):
        return self._previous if self._previous is not None else signal.default_int_handler

    def __exit__(self, *exc) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._restore_target())
