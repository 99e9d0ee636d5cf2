"""One file per trained model: ``model.safetensors`` with the weights and a JSON spec.

The weights are the model's ``state_dict`` (dotted names as tensor names). The header's
``__metadata__`` holds::

    "format":         "cnnlab-model"
    "format_version": "1"
    "spec":           JSON text: {"arch": "conv5x5x6p2-relu-...", "input_shape": [1, 28, 28],
                      "classes": ["0", ..., "9"] or null,
                      "normalization": {"mean": [0.1307], "std": [0.3081]} or null,
                      "cnnlab_version": "0.1.0", ...any other JSON the caller added}

:func:`load` rebuilds the network from ``spec["arch"]`` with :func:`cnnlab.arch.build` and
copies the weights in: the file holds data only, so loading it never runs code.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from cnnlab.io import safetensors
from cnnlab.io.errors import ModelFileError

__all__ = ["FORMAT", "FORMAT_VERSION", "load", "read_spec", "save"]

FORMAT = "cnnlab-model"
FORMAT_VERSION = 1
DEFAULT_NAME = "model.safetensors"


def _version() -> str:
    from cnnlab import __version__

    return __version__


@contextlib.contextmanager
def _keep_rng() -> Iterator[None]:
    """Building a model draws initial weights; saving or loading must not move the global
    generator, or a run that saves a model mid-way would stop being reproducible."""
    from cnnlab import random

    state = random.get_rng_state()
    try:
        yield
    finally:
        random.set_rng_state(state)


def _resolve_path(path: str | os.PathLike) -> str:
    path = os.fspath(path)
    return os.path.join(path, DEFAULT_NAME) if os.path.isdir(path) else path


# ----------------------------------------------------------------------------- the spec


def _plain(value: Any) -> Any:
    """NumPy scalars and arrays (e.g. a metric or a channel mean) as plain JSON values."""
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def check_spec(spec: Any) -> dict[str, Any]:
    """Validate a model spec and return a normalized copy (arch string made canonical).

    Raises:
        ValueError: naming the field that is missing or wrong.
    """
    from cnnlab import arch

    if not isinstance(spec, Mapping):
        raise ValueError(f"a model spec must be a dict, got {type(spec).__name__}")
    spec = _plain(dict(spec))
    if spec.get("input_shape") is None or (spec.get("arch") is None and
                                           spec.get("model") is None):
        missing = "input_shape" if spec.get("input_shape") is None else "arch"
        raise ValueError(
            f"the model spec has no {missing!r}; a model file needs the architecture (an "
            "architecture string, or a registered model's name and config) and the input "
            "shape to rebuild the model, e.g. spec={'arch': 'conv3x3x16p1-relu-pool2-fc10', "
            "'input_shape': [1, 28, 28]}"
        )
    if spec.get("arch") is not None:
        if not isinstance(spec["arch"], str):
            raise ValueError(f"spec['arch'] must be a string, got {type(spec['arch']).__name__}")
        spec["arch"] = arch.to_string(arch.resolve(spec["arch"]))
    else:
        model = spec["model"]
        if not isinstance(model, Mapping) or not isinstance(model.get("name"), str) or \
                not isinstance(model.get("config", {}), Mapping):
            raise ValueError(f"spec['model'] must be {{'name': str, 'config': dict}}, got "
                             f"{model!r}")
        spec["model"] = {"name": model["name"], "config": dict(model.get("config", {}))}
    task = spec.get("task", "classify")
    if not isinstance(task, str):
        raise ValueError(f"spec['task'] must be a string, got {task!r}")
    spec["task"] = task
    shape = spec["input_shape"]
    if (
        not isinstance(shape, (list, tuple))
        or len(shape) != 3
        or not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) for d in shape)
        or min(shape) < 1
    ):
        raise ValueError(f"spec['input_shape'] must be [C, H, W] with positive ints, got {shape!r}")
    spec["input_shape"] = [int(d) for d in shape]

    classes = spec.get("classes")
    if classes is not None:
        if not isinstance(classes, (list, tuple)) or not all(isinstance(c, str) for c in classes):
            raise ValueError(f"spec['classes'] must be a list of strings, got {classes!r}")
        classes = list(classes)
    spec["classes"] = classes

    norm = spec.get("normalization")
    if norm is not None:
        if not isinstance(norm, Mapping) or set(norm) != {"mean", "std"}:
            raise ValueError(
                f"spec['normalization'] must be {{'mean': [...], 'std': [...]}} or None, "
                f"got {norm!r}"
            )
        channels = spec["input_shape"][0]
        fixed = {}
        for key in ("mean", "std"):
            try:
                values = np.atleast_1d(np.asarray(norm[key], dtype=np.float64))
            except (TypeError, ValueError):
                values = np.zeros((0, 0))  # reported just below
            if values.ndim != 1 or len(values) not in (1, channels):
                raise ValueError(
                    f"spec['normalization'][{key!r}] must have 1 or {channels} values (one per "
                    f"input channel), got {norm[key]!r}"
                )
            if not np.all(np.isfinite(values)) or (key == "std" and np.any(values <= 0)):
                raise ValueError(
                    f"spec['normalization'][{key!r}] must be finite"
                    f"{' and > 0' if key == 'std' else ''}, got {norm[key]!r}"
                )
            fixed[key] = [float(v) for v in values]
        norm = fixed
    spec["normalization"] = norm
    try:
        json.dumps(spec, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"the model spec must be plain JSON data: {exc}") from None
    return spec


def build_from_spec(spec: Mapping[str, Any]) -> Any:
    """The untrained network a (checked) spec describes: from its architecture string, or
    from the registered model builder it names (:mod:`cnnlab.models`).

    Raises:
        ValueError: when the architecture does not build.
    """
    if spec.get("arch") is not None:
        from cnnlab import arch

        return arch.build(spec["arch"], spec["input_shape"])
    from cnnlab import models

    return models.build(spec["model"]["name"], spec["model"]["config"])


def _what(spec: Mapping[str, Any]) -> str:
    return spec["arch"] if spec.get("arch") is not None else spec["model"]["name"]


def _describe(shape: tuple[int, ...]) -> str:
    return str(tuple(shape))


def check_weights(
    model: Any, tensors: Mapping[str, np.ndarray], source: str, arch: str | None = None
) -> None:
    """Check that ``tensors`` fit ``model``'s state_dict exactly: names, shapes, dtype kinds.

    Raises:
        ModelFileError: listing every problem, e.g. ``layer 3.weight: expected
            (16, 6, 5, 5), file has (16, 3, 5, 5)``.
    """
    expected = model.state_dict()
    problems = []
    for name, want in expected.items():
        if name not in tensors:
            problems.append(f"layer {name}: expected {_describe(want.shape)}, file has none")
            continue
        got = tensors[name]
        if got.shape != want.shape:
            problems.append(
                f"layer {name}: expected {_describe(want.shape)}, file has {_describe(got.shape)}"
            )
        elif (want.dtype.kind == "f") != (got.dtype.kind == "f"):
            problems.append(f"layer {name}: expected {want.dtype} values, file has {got.dtype}")
    extra = [name for name in tensors if name not in expected]
    if extra:
        problems.append(f"unexpected tensors {extra}")
    if problems:
        what = f"the architecture {arch!r}" if arch else "the model"
        shown = "; ".join(problems[:5]) + (
            f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
        )
        raise ModelFileError(
            f"{source}: the weights do not fit {what}: {shown}. The file was written for a "
            "different model, or edited; save the model again."
        )


def _float_dtype(tensors: Mapping[str, np.ndarray], source: str) -> np.dtype | None:
    """float64 if the file's floating tensors are all float64 (then kept), else None."""
    kinds = {t.dtype for t in tensors.values() if t.dtype.kind == "f"}
    if np.dtype(np.float64) in kinds and len(kinds) > 1:
        raise ModelFileError(
            f"{source}: the file mixes float64 with {sorted(str(k) for k in kinds)} tensors; "
            "convert the model to one dtype (model.float() or model.double()) and save again."
        )
    return np.dtype(np.float64) if kinds == {np.dtype(np.float64)} else None


# ----------------------------------------------------------------------------- save/load


def save(
    model: Any,
    path: str | os.PathLike,
    *,
    spec: Mapping[str, Any] | None = None,
    meta: Mapping[str, Any] | None = None,
) -> str:
    """Save a model's weights and spec to one safetensors file, atomically.

    The spec is ``model.spec`` (set by :func:`cnnlab.arch.build` and :func:`load`), updated
    with ``spec`` and then ``meta``. It needs ``arch`` and ``input_shape``; ``classes``
    (class names) and ``normalization`` (``{"mean": [...], "std": [...]}`` per input
    channel) are optional, and any other JSON-able keys are kept.

    Args:
        model: an ``nn.Module`` whose ``state_dict`` fits ``spec["arch"]``.
        path: the file (``.safetensors`` by convention); an existing directory gets
            ``model.safetensors`` inside it. Parent directories are created.
        spec: spec fields to set or override.
        meta: more fields, applied after ``spec`` (e.g. ``{"classes": [...]}``).

    Returns:
        The path written.

    Raises:
        ValueError: no arch/input_shape, a malformed field, class names that do not match
            the output width, or weights that do not fit the architecture.

    Example:
        >>> import os, tempfile, cnnlab
        >>> model = cnnlab.arch.build("conv3x3x4-relu-fc2", input_shape=(1, 6, 6))
        >>> path = os.path.join(tempfile.mkdtemp(), "model.safetensors")
        >>> _ = save(model, path, meta={"classes": ["cat", "dog"]})
        >>> load(path).spec["classes"]
        ['cat', 'dog']
    """
    from cnnlab import arch

    merged = dict(getattr(model, "spec", None) or {})
    merged.update(spec or {})
    merged.update(meta or {})
    if not (merged.get("arch") or merged.get("model")) or not merged.get("input_shape"):
        raise ValueError(
            f"cannot save this {type(model).__name__}: it has no spec, and a model file needs "
            "the architecture string and input shape to rebuild it. Build it with "
            "cnnlab.arch.build(...), or pass spec={'arch': 'conv3x3x16p1-relu-pool2-fc10', "
            "'input_shape': [1, 28, 28]}"
        )
    merged.pop("format_version", None)
    merged["cnnlab_version"] = _version()
    merged = check_spec(merged)

    tensors = model.state_dict()
    with _keep_rng():
        try:
            fresh = build_from_spec(merged)
        except ValueError as exc:
            raise ValueError(f"cannot save: the spec's architecture does not build: {exc}"
                             ) from None
    check_weights(fresh, tensors, "cannot save", _what(merged))
    outputs = None if merged.get("arch") is None else math.prod(
        arch.plan(merged["arch"], merged["input_shape"])[-1]["output_shape"])
    if outputs is not None and merged["classes"] is not None and \
            len(merged["classes"]) != outputs:
        raise ValueError(
            f"cannot save: spec['classes'] has {len(merged['classes'])} names, but the model "
            f"outputs {outputs} scores; give one name per output"
        )
    metadata = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "spec": json.dumps(merged, allow_nan=False),
    }
    path = _resolve_path(path)
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    safetensors.save_file(tensors, path, metadata)
    return path


def _spec_from_metadata(metadata: Mapping[str, str], source: str) -> dict[str, Any]:
    fmt = metadata.get("format")
    if fmt == "cnnlab-checkpoint":
        raise ModelFileError(
            f"{source}: this is a training checkpoint, not a model file. Read it with "
            "cnnlab.io.load_checkpoint, or resume training from it."
        )
    if fmt != FORMAT or "spec" not in metadata:
        raise ModelFileError(
            f"{source}: a safetensors file without a cnnlab model spec (its __metadata__ has "
            f"no 'format': '{FORMAT}' and 'spec'), so the architecture is unknown. If it holds "
            "the state_dict of a model you can build, use "
            "model.load_state_dict(cnnlab.io.safetensors.load_file(path))."
        )
    try:
        version = int(metadata.get("format_version", ""))
    except ValueError:
        raise ModelFileError(
            f"{source}: bad format_version {metadata.get('format_version')!r}; "
            "the file is damaged, save the model again."
        ) from None
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{source}: written with model file format version {version}, but this cnnlab "
            f"({_version()}) reads version {FORMAT_VERSION}; upgrade cnnlab."
        )
    try:
        spec = json.loads(metadata["spec"])
        return check_spec(spec)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError too
        raise ModelFileError(
            f"{source}: the model spec in the file is invalid ({exc}); save the model again."
        ) from None


def read_spec(path: str | os.PathLike) -> dict[str, Any]:
    """Read only the spec of a model file (no weights are loaded).

    Raises:
        ModelFileError: as for :func:`load`.
    """
    path = _resolve_path(path)
    return _spec_from_metadata(safetensors.read_metadata(path), path)


def load(path: str | os.PathLike) -> Any:
    """Load a model saved by :func:`save`: rebuild it from its spec, copy the weights in.

    Args:
        path: the file, or a directory holding ``model.safetensors``.

    Returns:
        The ``nn.Sequential``, in eval mode, with ``model.spec`` set. Weights are
        bit-identical to the saved ones; a float64 model comes back as float64.

    Raises:
        ModelFileError: the file is missing, damaged, not safetensors (pickle and zip
            files are refused without being opened as such), has no cnnlab spec, or its
            weights do not fit its architecture (naming each layer and both shapes).
    """

    path = _resolve_path(path)
    tensors, metadata = safetensors.load_file_with_metadata(path)
    spec = _spec_from_metadata(metadata, path)
    with _keep_rng():
        try:
            model = build_from_spec(spec)
        except ValueError as exc:
            raise ModelFileError(
                f"{path}: its architecture cannot be built ({exc}); save the model again."
            ) from None
    check_weights(model, tensors, path, _what(spec))
    dtype = _float_dtype(tensors, path)
    if dtype is not None:
        model.to(dtype)
    model.load_state_dict(tensors, strict=True)
    model.spec = spec
    model.eval()
    return model
