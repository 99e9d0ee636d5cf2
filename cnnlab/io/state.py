"""``cnnlab.save`` and ``cnnlab.load``: a state_dict (or nested dicts and lists of tensors,
arrays and plain numbers, such as an optimizer's state) in one safetensors file.

The way PyTorch code saves weights works unchanged::

    cnnlab.save(net.state_dict(), PATH)
    net.load_state_dict(cnnlab.load(PATH, weights_only=True))

Arrays and tensors are stored as safetensors tensors, named by their path in the structure
(a state_dict's own keys, ``state.0.exp_avg`` inside an optimizer's state); the structure
itself is JSON in the header's ``__metadata__``. Nothing is pickled, so loading never runs
code: ``weights_only`` is always in effect. A safetensors file from elsewhere (e.g.
``safetensors.torch.save_file(model.state_dict(), path)``) loads as a dict of tensors.

To save a whole model with its architecture, for ``cnnlab evaluate/predict``, use
:func:`cnnlab.io.save_model`.
"""

from __future__ import annotations

import io
import json
import os
from typing import Any, BinaryIO

import numpy as np

from cnnlab.io import safetensors, tree
from cnnlab.io.errors import ModelFileError

__all__ = ["load", "save"]

FORMAT = "cnnlab-state"
FORMAT_VERSION = 1


def save(obj: Any, f: str | os.PathLike | BinaryIO) -> None:
    """Save tensors and plain data (a ``state_dict``, an optimizer's ``state_dict``, or
    dicts/lists/tuples of them) to a file path or a binary file object; a path is written
    atomically.

    Raises:
        TypeError: for a module or another object that is not plain data (say what to save
            instead).

    Example:
        >>> import os, tempfile, cnnlab
        >>> from cnnlab import nn
        >>> net = nn.Linear(3, 2)
        >>> path = os.path.join(tempfile.mkdtemp(), "net.safetensors")
        >>> cnnlab.save(net.state_dict(), path)
        >>> sorted(cnnlab.load(path, weights_only=True))
        ['bias', 'weight']
    """
    from cnnlab.nn import Module

    if isinstance(obj, Module):
        raise TypeError(
            f"cnnlab.save stores tensors and plain data, not a {type(obj).__name__} object: "
            "save model.state_dict() (and rebuild the model, then load_state_dict), or use "
            "cnnlab.io.save_model(model, path) for a model built by cnnlab.arch"
        )
    arrays: dict[str, np.ndarray] = {}
    try:
        record = tree.encode(obj, [], arrays)
    except ValueError as exc:
        raise TypeError(f"cnnlab.save: {exc}") from None
    metadata = {"format": FORMAT, "format_version": str(FORMAT_VERSION),
                "tree": json.dumps(record, allow_nan=False)}
    if isinstance(f, (str, os.PathLike)):
        path = os.fspath(f)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        safetensors.save_file(arrays, path, metadata)
    else:
        f.write(safetensors.save(arrays, metadata))


def load(f: str | os.PathLike | BinaryIO, map_location: Any = None, weights_only: bool = True,
         **kwargs: Any) -> Any:
    """Load what :func:`save` wrote (or any safetensors file, as a dict of tensors).

    Args:
        f: a path or a binary file object.
        map_location: accepted for PyTorch code; the only device is the CPU.
        weights_only: accepted for PyTorch code; cnnlab never unpickles, so loading is
            always weights-only.

    Raises:
        ModelFileError: a missing, damaged or non-safetensors file (a pickle is refused
            without being opened as one), naming the file.
    """
    from cnnlab.tensor import Tensor, check_device

    if map_location is not None and not callable(map_location) and \
            not isinstance(map_location, dict):
        check_device(map_location, "cnnlab.load")
    if isinstance(f, (str, os.PathLike)):
        source = os.fspath(f)
        tensors, metadata = safetensors.load_file_with_metadata(source)
    else:
        source = getattr(f, "name", "<file object>")
        tensors, metadata = _load_stream(f, str(source))
    if metadata.get("format") != FORMAT:
        if metadata.get("format") in ("cnnlab-model", "cnnlab-checkpoint"):
            kind = "model file" if metadata["format"] == "cnnlab-model" else "checkpoint"
            hint = ("cnnlab.io.load_model(path)" if kind == "model file"
                    else "cnnlab.io.load_checkpoint(path)")
            raise ModelFileError(f"{source}: this is a cnnlab {kind}; read it with {hint}")
        return {name: Tensor(a, dtype=a.dtype) for name, a in tensors.items()}
    try:
        record = json.loads(metadata.get("tree", ""))
        used: set[str] = set()
        return tree.decode(record, tensors, used)
    except (ValueError, RecursionError) as exc:
        raise ModelFileError(f"{source}: the structure stored in the file is invalid ({exc}); "
                             "the file is damaged, save it again") from None


def _load_stream(f: BinaryIO, source: str) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    data = f.read()
    with io.BytesIO(data) as buf:
        return safetensors._read(buf, len(data), source)
