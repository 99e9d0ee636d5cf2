"""The callback interface: the fit loop calls these methods, callbacks do the rest."""

from __future__ import annotations

from typing import Any

from cnnlab.train.state import TrainState

EVENTS = ("on_train_begin", "on_epoch_begin", "on_batch_end", "on_epoch_end", "on_train_end")


class Callback:
    """Base class: override the events you need; each receives the shared ``TrainState``.

    Events, in the order the loop emits them::

        on_train_begin
          on_epoch_begin      (also when a run resumes in the middle of an epoch)
            on_batch_end      (after every optimizer step)
          on_epoch_end        (state.logs holds the epoch's metrics, validation included)
        on_train_end          (always, even after Ctrl-C or a non-finite loss; see
                               state.stop_reason)

    Callbacks run in ascending ``order`` (ties keep the given order). Checkpointing runs
    last so that it saves what the others changed at the end of an epoch.

    A callback with state that must survive a resume (early-stopping counters, say) returns it
    from ``state_dict()`` as a JSON-able dict and takes it back in ``load_state_dict()``.
    """

    order: int = 0

    def on_train_begin(self, state: TrainState) -> None:
        pass

    def on_epoch_begin(self, state: TrainState) -> None:
        pass

    def on_batch_end(self, state: TrainState) -> None:
        pass

    def on_epoch_end(self, state: TrainState) -> None:
        pass

    def on_train_end(self, state: TrainState) -> None:
        pass

    def state_dict(self) -> dict[str, Any] | None:
        """JSON-able state to store in checkpoints, or None when there is none."""
        return None

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""


def sort_callbacks(callbacks: list[Callback]) -> list[Callback]:
    """Callbacks in the order the loop calls them (stable sort on ``order``)."""
    for cb in callbacks:
        if not isinstance(cb, Callback):
            raise TypeError(
                f"fit: callbacks must be cnnlab.train.Callback instances, got "
                f"{type(cb).__name__}; subclass Callback and override the events you need"
            )
    return sorted(callbacks, key=lambda cb: cb.order)


def callback_keys(callbacks: list[Callback]) -> list[str]:
    """Stable names for callbacks in checkpoints: class name, plus an index when repeated."""
    keys, seen = [], {}
    for cb in callbacks:
        name = type(cb).__name__
        seen[name] = seen.get(name, 0) + 1
        keys.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    return keys


def emit(state: TrainState, event: str) -> None:
    """Call ``event`` on every callback of the run, in order."""
    for cb in state.callbacks:
        getattr(cb, event)(state)
