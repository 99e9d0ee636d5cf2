"""Nested Python data with arrays in it, as JSON plus named arrays (for safetensors files).

``encode`` turns dicts, lists, tuples, numbers, strings, NumPy arrays and tensors into JSON,
moving each array to a dict under its path joined by dots (``state.0.exp_avg``); ``decode``
puts them back. JSON keeps Python ints exact however big (a PCG64 state is a 128-bit
number). Tuples and dicts with non-string keys (an optimizer's ``{0: {...}}``) are tagged so
they come back as they went in.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

# Tags for what JSON cannot say directly; a dict with one of these keys is rebuilt.
_ARRAY, _TENSOR, _TUPLE, _ITEMS = "__array__", "__tensor__", "__tuple__", "__items__"
_TAGS = {_ARRAY, _TENSOR, _TUPLE, _ITEMS}


def encode(value: Any, path: list[str], arrays: dict[str, np.ndarray]) -> Any:
    """A JSON-able copy of ``value``; arrays are moved to ``arrays`` under a dotted name.

    Raises:
        ValueError: for a value of another type, or two arrays with the same name.
    """
    from cnnlab.tensor import Tensor

    where = ".".join(path)
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (np.ndarray, Tensor)):
        if where in arrays:
            raise ValueError(f"two arrays would both be stored as {where!r}")
        arrays[where] = value.data if isinstance(value, Tensor) else value
        return {_TENSOR if isinstance(value, Tensor) else _ARRAY: where}
    if isinstance(value, tuple):
        return {_TUPLE: [encode(v, [*path, str(i)], arrays) for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [encode(v, [*path, str(i)], arrays) for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        if all(isinstance(k, str) for k in value) and not _TAGS & set(value):
            return {k: encode(v, [*path, k], arrays) for k, v in value.items()}
        return {
            _ITEMS: [
                [encode(k, [*path, "key"], arrays), encode(v, [*path, str(k)], arrays)]
                for k, v in value.items()
            ]
        }
    raise ValueError(
        f"cannot store {where or 'a value'} of type {type(value).__name__}; use numbers, "
        "strings, lists, dicts, tuples, tensors and NumPy arrays"
    )


def decode(value: Any, arrays: dict[str, np.ndarray], used: set[str]) -> Any:
    """The value :func:`encode` was given (arrays from ``arrays``; their names go to ``used``).

    Raises:
        ValueError: for a reference to an array that ``arrays`` lacks.
    """
    if isinstance(value, list):
        return [decode(v, arrays, used) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1 and (_ARRAY in value or _TENSOR in value):
        name = value.get(_ARRAY, value.get(_TENSOR))
        if not isinstance(name, str) or name not in arrays:
            raise ValueError(f"refers to tensor {name!r}, which the file does not have")
        used.add(name)
        if _TENSOR in value:
            from cnnlab.tensor import Tensor

            return Tensor(arrays[name], dtype=arrays[name].dtype)
        return arrays[name]
    if len(value) == 1 and _TUPLE in value:
        return tuple(decode(v, arrays, used) for v in value[_TUPLE])
    if len(value) == 1 and _ITEMS in value:
        items = [[decode(k, arrays, used), decode(v, arrays, used)] for k, v in value[_ITEMS]]
        return {_hashable(k): v for k, v in items}
    return {k: decode(v, arrays, used) for k, v in value.items()}


def _hashable(key: Any) -> Any:
    return tuple(_hashable(k) for k in key) if isinstance(key, (list, tuple)) else key
