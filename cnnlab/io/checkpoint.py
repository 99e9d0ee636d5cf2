"""Training checkpoints: everything needed to resume a run, in one safetensors file.

Arrays become tensors, everything else JSON text in ``__metadata__``::

    model.<name>               the model's state_dict
    optim.state.<i>.<key>      the optimizer's per-parameter arrays (e.g. Adam's exp_avg)
    __metadata__["format"]     "cnnlab-checkpoint", "format_version": "1"
    __metadata__["checkpoint"] JSON: epoch, optimizer param_groups and scalar state (step
                               counts), scheduler state, RNG state, extra, model spec

JSON keeps Python ints exact however big (a PCG64 state is a 128-bit number). Tuples and
dicts with non-string keys (the optimizer's ``{0: {...}}``) are tagged so they come back as
they went in; arrays inside the scheduler, RNG or extra parts are stored as tensors too.
The file is written atomically, so a crash mid-save leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from cnnlab.io import safetensors
from cnnlab.io.errors import ModelFileError
from cnnlab.io.model_file import check_values, check_weights
from cnnlab.io.tree import decode as _decode
from cnnlab.io.tree import encode as _encode

__all__ = ["FORMAT", "FORMAT_VERSION", "load_checkpoint", "restore_checkpoint", "save_checkpoint"]

FORMAT = "cnnlab-checkpoint"
FORMAT_VERSION = 1

def save_checkpoint(
    path: str | os.PathLike,
    *,
    model: Any,
    optimizer: Any = None,
    scheduler: Any = None,
    epoch: int,
    rng_state: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> str:
    """Write a training checkpoint atomically (the old file survives a failed write).

    Args:
        path: the file (``.safetensors`` by convention); parent directories are created.
        model: its ``state_dict()`` is stored under ``model.<name>``; its ``spec``, if any.
        optimizer: anything with ``state_dict()`` (cnnlab.optim); arrays go to
            ``optim.state.<i>.<key>``, the rest to JSON.
        scheduler: anything with a ``state_dict()`` of plain data.
        epoch: the number of finished epochs (int >= 0).
        rng_state: e.g. ``cnnlab.random.get_rng_state()``; big ints are kept exactly.
        extra: any other JSON-able data (arrays allowed), e.g. the metric history.

    Returns:
        The path written.

    Raises:
        ValueError: for a negative or non-int epoch, a value that cannot be stored, or
            model weights that hold NaN or infinite values (or negative batch-norm
            variances): nothing is written then, the previous checkpoint stays.
        OSError: the file cannot be written (the message names it).
    """
    if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or epoch < 0:
        raise ValueError(f"save_checkpoint: epoch must be an int >= 0, got {epoch!r}")
    state = model.state_dict()
    check_values(state, f"save_checkpoint: not saving {os.fspath(path)}", error=ValueError)
    tensors = {f"model.{name}": value for name, value in state.items()}
    arrays: dict[str, np.ndarray] = {}
    record = {
        "epoch": int(epoch),
        "cnnlab_version": _version(),
        "spec": _encode(getattr(model, "spec", None), ["spec"], arrays),
        "optimizer": None
        if optimizer is None
        else _encode(optimizer.state_dict(), ["optim"], arrays),
        "optimizer_type": None if optimizer is None else type(optimizer).__name__,
        "scheduler": None
        if scheduler is None
        else _encode(scheduler.state_dict(), ["sched"], arrays),
        "rng_state": _encode(rng_state, ["rng"], arrays),
        "extra": _encode(extra, ["extra"], arrays),
    }
    clash = sorted(set(arrays) & set(tensors))
    if clash:
        raise ValueError(f"checkpoint: array names {clash} clash with model weights")
    tensors.update(arrays)
    metadata = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "checkpoint": json.dumps(record),
    }
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    safetensors.save_file(tensors, path, metadata)
    return path


def _version() -> str:
    from cnnlab import __version__

    return __version__


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Returns:
        ``{"epoch", "model" (name -> array), "optimizer" (state_dict or None),
        "optimizer_type", "scheduler" (state_dict or None), "rng_state", "extra", "spec",
        "cnnlab_version"}``; values come back as they were saved (ints, tuples, int keys).

    Raises:
        ModelFileError: a damaged or non-checkpoint file (e.g. a model file), or model
            weights that hold NaN or infinite values or negative batch-norm variances.
    """
    source = os.fspath(path)
    tensors, metadata = safetensors.load_file_with_metadata(source)
    fmt = metadata.get("format")
    if fmt == "cnnlab-model":
        raise ModelFileError(
            f"{source}: this is a model file, not a training checkpoint; load it with "
            "cnnlab.io.load_model(path)."
        )
    if fmt != FORMAT or "checkpoint" not in metadata:
        raise ModelFileError(
            f"{source}: not a cnnlab checkpoint (its __metadata__ has no 'format': "
            f"'{FORMAT}'); pass a file written by cnnlab.io.save_checkpoint."
        )
    version = metadata.get("format_version", "")
    if not version.isdigit() or int(version) > FORMAT_VERSION:
        raise ModelFileError(
            f"{source}: checkpoint format version {version!r}, but this cnnlab reads version "
            f"{FORMAT_VERSION}; upgrade cnnlab or use the version that wrote it."
        )
    try:
        record = json.loads(metadata["checkpoint"])
        if not isinstance(record, dict) or not isinstance(record.get("epoch"), int):
            raise ValueError("expected an object with an int 'epoch'")
        used: set[str] = set()
        others = {k: v for k, v in tensors.items() if not k.startswith("model.")}
        result = {key: _decode(value, others, used) for key, value in record.items()}
    except (ValueError, TypeError, KeyError, RecursionError) as exc:
        raise ModelFileError(
            f"{source}: the checkpoint record is invalid ({exc}); the file is damaged."
        ) from None
    unused = sorted(set(others) - used)
    if unused:
        raise ModelFileError(
            f"{source}: tensors {unused[:5]} belong to nothing in the checkpoint record; "
            "the file is damaged or was edited."
        )
    result["model"] = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    check_values(result["model"], source)
    return result


def restore_checkpoint(
    ckpt: Mapping[str, Any], model: Any, optimizer: Any = None, scheduler: Any = None
) -> int:
    """Load a checkpoint's states into a model (and optimizer, scheduler) built as before.

    The RNG state is left to the caller: ``cnnlab.random.set_rng_state(ckpt["rng_state"])``.

    Args:
        ckpt: the dict from :func:`load_checkpoint`.
        model: a model with the same architecture.
        optimizer, scheduler: built the same way as when saving; skipped when None.

    Returns:
        The checkpoint's epoch (finished epochs), i.e. where to resume.

    Raises:
        ModelFileError: weights that do not fit the model, or optimizer/scheduler state
            asked for but not in the checkpoint.
        ValueError: from the optimizer's or scheduler's ``load_state_dict``.
    """
    check_weights(model, ckpt["model"], "checkpoint")
    model.load_state_dict(ckpt["model"], strict=True)
    for name, target in (("optimizer", optimizer), ("scheduler", scheduler)):
        if target is None:
            continue
        if ckpt.get(name) is None:
            raise ModelFileError(
                f"checkpoint: it has no {name} state, so the {name} cannot be restored; "
                f"pass {name}=None to start it fresh."
            )
        target.load_state_dict(ckpt[name])
    return int(ckpt["epoch"])
