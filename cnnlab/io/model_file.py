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

__all__ = ["FORMAT", "FORMAT_VERSION", "check_values", "load", "read_spec", "save"]

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
    bad = _not_unicode(spec)
    if bad is not None:
        raise ValueError(
            f"the model spec holds {bad!r}, which is not valid Unicode text (a lone "
            "surrogate, e.g. from a folder name that is not UTF-8); rename it"
        )
    return spec


def _not_unicode(value: Any) -> str | None:
    """The first string in a JSON value that cannot be written as UTF-8, or None."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value
        return None
    items = value.items() if isinstance(value, Mapping) else (
        enumerate(value) if isinstance(value, (list, tuple)) else ())
    for key, item in items:
        found = _not_unicode(key) if isinstance(key, str) else None
        found = found or _not_unicode(item)
        if found is not None:
            return found
    return None


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


def _compare(
    expected: Mapping[str, tuple[tuple[int, ...], str]],
    found: Mapping[str, tuple[np.dtype, tuple[int, ...]]],
    source: str,
    arch: str | None,
    error: type[Exception] = ModelFileError,
) -> None:
    """Raise ``error`` listing every name, shape or dtype-kind difference."""
    problems = []
    for name, (shape, kind) in expected.items():
        if name not in found:
            problems.append(f"layer {name}: expected {_describe(shape)}, file has none")
            continue
        dtype, got = found[name]
        if tuple(got) != tuple(shape):
            problems.append(f"layer {name}: expected {_describe(shape)}, file has {_describe(got)}")
        elif (kind == "f") != (dtype.kind == "f"):
            want = "float32" if kind == "f" else "int64"
            problems.append(f"layer {name}: expected {want} values, file has {dtype}")
    extra = [name for name in found if name not in expected]
    if extra:
        problems.append(f"unexpected tensors {extra}")
    if problems:
        what = f"the architecture {arch!r}" if arch else "the model"
        shown = "; ".join(problems[:5]) + (
            f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
        )
        raise error(
            f"{source}: the weights do not fit {what}: {shown}. The file was written for a "
            "different model, or edited; save the model again."
        )


def check_weights(
    model: Any, tensors: Mapping[str, np.ndarray], source: str, arch: str | None = None
) -> None:
    """Check that ``tensors`` fit ``model``'s state_dict exactly: names, shapes, dtype kinds.

    Raises:
        ModelFileError: listing every problem, e.g. ``layer 3.weight: expected
            (16, 6, 5, 5), file has (16, 3, 5, 5)``.
    """
    expected = {
        name: (tuple(v.shape), "f" if v.dtype.kind == "f" else "i")
        for name, v in model.state_dict().items()
    }
    _compare(expected, {n: (t.dtype, t.shape) for n, t in tensors.items()}, source, arch)


def check_values(
    tensors: Mapping[str, np.ndarray], source: str, error: type[Exception] = ModelFileError
) -> None:
    """Refuse weights no model should hold: NaN or infinite values anywhere, and negative
    batch-norm variances (``running_var``), whose square root is NaN.

    Raises:
        ``error`` (ModelFileError by default): naming the tensor and how many values.
    """
    for name, value in tensors.items():
        value = np.asarray(value)
        if value.dtype.kind in "fc":
            bad = value.size - int(np.count_nonzero(np.isfinite(value)))
            if bad:
                raise error(
                    f"{source}: tensor {name!r} holds {bad:,} NaN or infinite values (of "
                    f"{value.size:,}); a model with them gives NaN scores for every image. "
                    "Training diverged before the model was saved, or the file was edited: "
                    "train again (with a lower learning rate) or use an earlier checkpoint."
                )
        if name.rsplit(".", 1)[-1] == "running_var" and value.size and value.min() < 0:
            bad = int(np.count_nonzero(value < 0))
            raise error(
                f"{source}: batch-norm statistics {name!r} hold {bad} negative variances (the "
                f"smallest is {float(value.min()):g}); a variance is never negative, and "
                "normalizing by its square root gives NaN. The file was edited or damaged: "
                "save the model again."
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
            the output width, weights that do not fit the architecture, or weights that
            hold NaN or infinite values (or negative batch-norm variances).
        OSError: the file cannot be written (the message names it); an existing file is
            then left as it was.

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
    if merged.get("arch") is not None:  # from shape arithmetic: nothing is built
        try:
            expected = arch.state_shapes(merged["arch"], merged["input_shape"])
        except ValueError as exc:
            raise ValueError(f"cannot save: the spec's architecture does not build: {exc}"
                             ) from None
        found = {n: (t.dtype, t.shape) for n, t in tensors.items()}
        _compare(expected, found, "cannot save", merged["arch"], error=ValueError)
    else:
        with _keep_rng():
            try:
                fresh = build_from_spec(merged)
            except ValueError as exc:
                raise ValueError(f"cannot save: the spec's architecture does not build: {exc}"
                                 ) from None
        check_weights(fresh, tensors, "cannot save", _what(merged))
    check_values(tensors, "cannot save", error=ValueError)
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


def _check_header(
    shapes: Mapping[str, tuple[np.dtype, tuple[int, ...]]],
    metadata: Mapping[str, str],
    source: str,
) -> tuple[dict[str, Any], Any]:
    """The spec of a model file, checked against the file's tensor names and shapes before
    any tensor data is read: a file cannot make the loader allocate more than the weights
    it holds, nor declare a model one image cannot run through.

    An architecture string is checked by shape arithmetic, without building anything. A
    registered model (``spec["model"]``) is built by its builder, which bounds its own
    config, and its state_dict is compared with the header.

    Returns:
        (spec, the built model or None).
    """
    from cnnlab import arch
    from cnnlab.budget import TooLargeError

    spec = _spec_from_metadata(metadata, source)
    if spec.get("arch") is None:
        with _keep_rng():
            try:
                model = build_from_spec(spec)
            except ValueError as exc:
                raise ModelFileError(
                    f"{source}: its model cannot be built ({exc}); save the model again."
                ) from None
        expected = {name: (tuple(v.shape), "f" if v.dtype.kind == "f" else "i")
                    for name, v in model.state_dict().items()}
        _compare(expected, shapes, source, _what(spec))
        return spec, model
    try:
        expected = arch.state_shapes(spec["arch"], spec["input_shape"])
    except ValueError as exc:
        raise ModelFileError(
            f"{source}: its architecture cannot be built ({exc}); save the model again."
        ) from None
    _compare(expected, shapes, source, spec["arch"])
    try:
        arch.check_memory(spec["arch"], spec["input_shape"])
    except TooLargeError as exc:
        raise ModelFileError(f"{source}: {exc}") from None
    return spec, None


def read_spec(path: str | os.PathLike) -> dict[str, Any]:
    """Read only the spec of a model file (no weights are loaded).

    The header is checked as :func:`load` checks it: the tensors the file declares must be
    exactly those of its architecture.

    Raises:
        ModelFileError: as for :func:`load`.
    """
    path = _resolve_path(path)
    shapes, metadata = safetensors.read_header(path)
    return _check_header(shapes, metadata, path)[0]


def load(path: str | os.PathLike) -> Any:
    """Load a model saved by :func:`save`: rebuild it from its spec, copy the weights in.

    Everything is checked before memory is committed to it: the header's tensor names and
    shapes against the architecture (from shape arithmetic, before reading the weights),
    then the values (before building the layers).

    Args:
        path: the file, or a directory holding ``model.safetensors``.

    Returns:
        The ``nn.Sequential``, in eval mode, with ``model.spec`` set. Weights are
        bit-identical to the saved ones; a float64 model comes back as float64.

    Raises:
        ModelFileError: the file is missing, not a regular file, damaged, not safetensors
            (pickle and zip files are refused without being opened as such), has no cnnlab
            spec, its weights do not fit its architecture (naming each layer and both
            shapes), hold NaN or infinite values or negative batch-norm variances (naming
            the tensor), or its model would not fit in memory for one image.
    """

    path = _resolve_path(path)
    checked: list[tuple[dict[str, Any], Any]] = []

    def check(shapes, metadata):
        checked.append(_check_header(shapes, metadata, path))

    tensors, _ = safetensors.load_file_with_metadata(path, check=check)
    spec, model = checked[0]
    check_values(tensors, path)
    dtype = _float_dtype(tensors, path)
    if model is None:
        with _keep_rng():
            try:
                model = build_from_spec(spec)
            except ValueError as exc:
                raise ModelFileError(
                    f"{path}: its architecture cannot be built ({exc}); save the model again."
                ) from None
    check_weights(model, tensors, path, _what(spec))
    if dtype is not None:
        model.to(dtype)
    model.load_state_dict(tensors, strict=True)
    model.spec = spec
    model.eval()
    return model
