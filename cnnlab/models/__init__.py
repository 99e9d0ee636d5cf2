"""Models rebuilt from JSON by name, for model files.

A model file's spec names how to rebuild the network: an architecture string
(``"arch"``, see :mod:`cnnlab.arch`), or a registered builder and its JSON configuration::

    "model": {"name": "graph", "config": {...}}

:func:`build` looks the name up among the builders registered with :func:`register` —
cnnlab's own are found by name without being imported first — and calls it with the
configuration. A file can only choose among these builders and give them data: loading it
never runs code from the file.

Example:
    >>> from cnnlab import models, nn
    >>> @models.register("tiny-mlp")
    ... def tiny_mlp(config):
    ...     return nn.Sequential(nn.Linear(config["inputs"], 2))
    >>> models.build("tiny-mlp", {"inputs": 3})[0].in_features
    3
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

__all__ = ["build", "names", "register"]

_BUILDERS: dict[str, Callable[[dict[str, Any]], Any]] = {}
# cnnlab's own builders, by the module that registers them when imported.
_BUILTIN = {"graph": "cnnlab.onnx.graph"}


def register(name: str) -> Callable[[Callable[[dict[str, Any]], Any]], Callable]:
    """Register ``fn(config) -> nn.Module`` as the builder called ``name``.

    Raises:
        ValueError: if ``name`` is empty or already taken by another builder.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"a model builder needs a non-empty name, got {name!r}")

    def decorate(fn: Callable[[dict[str, Any]], Any]) -> Callable[[dict[str, Any]], Any]:
        if _BUILDERS.get(name, fn) is not fn:
            raise ValueError(f"a model builder named {name!r} is already registered")
        _BUILDERS[name] = fn
        return fn

    return decorate


def _lookup(name: str) -> Callable[[dict[str, Any]], Any]:
    if name not in _BUILDERS and name in _BUILTIN:
        importlib.import_module(_BUILTIN[name])
    if name not in _BUILDERS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(names())}")
    return _BUILDERS[name]


def names() -> list[str]:
    """The names :func:`build` accepts."""
    return sorted(set(_BUILDERS) | set(_BUILTIN))


def build(name: str, config: dict[str, Any]) -> Any:
    """Build the model registered as ``name`` from its JSON ``config``.

    Raises:
        ValueError: an unknown name (listing the known ones), or a config the builder
            rejects.
    """
    if not isinstance(config, dict):
        raise ValueError(f"the config of model {name!r} must be a dict, got "
                         f"{type(config).__name__}")
    return _lookup(name)(config)
