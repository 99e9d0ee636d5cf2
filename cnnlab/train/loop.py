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

from cnnlab.train.callback import Callback, emit, sort_callbacks
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
    generator: np.random.Generator | None = None,
    transform: Callable | None = None,
    resume=None,
    eval_batch_size: int = 256,
    sampler=None,
) -> TrainState:
    """Train ``model`` for ``epochs`` epochs of shuffled mini-batches.

    Each step is the four steps of gradient descent: sample a mini-batch, forward to the
    loss, backward, update. Around them the loop emits events (see ``Callback``).

    The first Ctrl-C asks the loop to stop after the current step (a ``Checkpoint`` callback
    then saves the exact position); a second one interrupts at once.

    Args:
        model: A module returning logits (N, classes).
        optimizer: Updates ``model``'s parameters (``zero_grad()``, ``step()``).
        train_data: A dataset (``.images``, ``.labels``) or a pair of arrays.
        epochs: Total epochs; a resumed run continues up to this number.
        batch_size: Mini-batch size; the last batch of an epoch may be smaller.
        val_data: Optional held-out set, measured after each epoch (``val_loss``,
            ``val_acc``). Keep the test set out of it.
        scheduler: Optional learning-rate schedule, stepped once per epoch by an
            ``LearningRateSchedule`` callback that ``fit`` adds.
        callbacks: Callback instances.
        loss_fn: ``loss_fn(logits, labels)`` -> scalar Tensor; default cross-entropy.
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
    import cnnlab
    from cnnlab.nn import functional as F
    from cnnlab.train.callbacks import LearningRateSchedule
    from cnnlab.train.checkpoint import restore

    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"fit: epochs must be an integer >= 1, got {epochs!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"fit: batch_size must be an integer >= 1, got {batch_size!r}")
    loss_fn = loss_fn or F.cross_entropy
    if generator is None:
        seed = int(cnnlab.random.get_generator().integers(2**63))
        generator = np.random.Generator(np.random.PCG64(seed))
    images, labels = as_arrays(train_data, "fit: train_data")
    if len(images) == 0:
        raise ValueError("fit: train_data is empty; give at least one labelled image")
    loader = _make_loader((images, labels), batch_size, generator, transform, sampler)
    per_epoch = len(images) if sampler is None else len(sampler)

    extra = [LearningRateSchedule(scheduler)] if scheduler is not None else []
    state = TrainState(
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        generator=generator,
        epochs=epochs,
        batch_size=batch_size,
        num_samples=per_epoch,
        num_batches=math.ceil(per_epoch / batch_size),
        callbacks=sort_callbacks(list(callbacks) + extra),
    )
    # RNG states to apply once a resumed epoch has replayed its first batches.
    pending_rng = restore(state, resume) if resume is not None else None

    emit(state, "on_train_begin")
    try:
        # Overflow on the way to a NaN is reported once, as NonFiniteLossError, instead of
        # as a stream of NumPy warnings.
        with _StopOnCtrlC() as ctrl_c, np.errstate(over="ignore", invalid="ignore"):
            while state.epoch < epochs and not state.stop:
                finished = _train_epoch(state, loader, loss_fn, ctrl_c, pending_rng)
                pending_rng = None
                if not finished:
                    break
                _end_epoch(state, val_data, loss_fn, eval_batch_size)
                if ctrl_c.requested and not state.stop:
                    state.stop, state.stop_reason = True, "interrupted"
    except cnnlab.NonFiniteLossError as exc:
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
    return state


def _nonfinite_message(state: TrainState, exc: Exception) -> str:
    if state.phase == "train":
        return (f"the training loss became NaN or infinite at epoch {state.epoch + 1}, "
                f"batch {state.batch + 1}")
    if state.phase == "validation":
        return f"the validation loss became NaN or infinite after epoch {state.epoch + 1}"
    return f"{exc} (after epoch {state.epoch})"


def _train_epoch(state: TrainState, loader, loss_fn, ctrl_c, pending_rng) -> bool:
    """One pass over the training set (or its rest, after a resume). False if stopped early."""
    import cnnlab

    model, optimizer = state.model, state.optimizer
    if state.batch == 0:
        state.epoch_start_rng = state.generator.bit_generator.state
        state.running = new_running()
    state.lr_at_epoch_start = state.lr
    state.epoch_start_time = time.perf_counter()
    emit(state, "on_epoch_begin")
    model.train()
    state.phase = "train"
    if hasattr(loader.sampler, "set_epoch"):
        loader.sampler.set_epoch(state.epoch)
    batches = iter(loader)
    for _ in range(state.batch):  # a resumed epoch replays the order it was interrupted in
        next(batches)
    if pending_rng is not None:
        state.generator.bit_generator.state = pending_rng["shuffle"]
        cnnlab.random.set_rng_state(pending_rng["global"])

    for x, y in batches:  # 1. sample a mini-batch
        logits = model(cnnlab.Tensor(x))  # 2. forward to the loss
        loss = loss_fn(logits, y)
        optimizer.zero_grad()  # 3. backward
        loss.backward()
        optimizer.step()  # 4. update
        _record_batch(state, loss, logits, y)
        emit(state, "on_batch_end")
        if ctrl_c.requested and not state.stop:
            state.stop, state.stop_reason = True, "interrupted"
        if state.stop:
            return False
    return True


def _record_batch(state: TrainState, loss, logits, y) -> None:
    import cnnlab

    value = float(loss.item())
    if not math.isfinite(value):  # a custom loss may not check for itself
        raise cnnlab.NonFiniteLossError(f"the training loss is {value}")
    n = len(y)
    run = state.running
    run["loss_sum"] += value * n
    run["correct"] += int((np.asarray(logits.data).argmax(axis=1) == np.asarray(y)).sum())
    run["seen"] += n
    state.loss, state.batch_images = value, n
    state.batch += 1


def _end_epoch(state: TrainState, val_data, loss_fn, eval_batch_size: int) -> None:
    """Measure the epoch, append it to the history, emit on_epoch_end."""
    val_loss = val_acc = None
    state.phase = "validation"
    if val_data is not None:
        result = evaluate(state.model, val_data, batch_size=eval_batch_size, loss_fn=loss_fn)
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


def _make_loader(arrays, batch_size: int, generator, transform, sampler):
    from cnnlab.data import DataLoader

    return DataLoader(arrays, batch_size=batch_size, shuffle=sampler is None,
                      generator=generator, transform=transform, sampler=sampler)


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
