"""Named model builders: networks that an architecture string cannot describe (a U-Net with
skip connections, a detector with several heads, a CNN feeding an LSTM).

A model file stores ``{"model": {"name": NAME, "config": {...}}}`` in its spec instead of an
architecture string; loading calls the builder registered under ``NAME`` with ``config`` —
code that ships with cnnlab, never code from the file. A builder validates its config (it
comes from a file) before allocating anything, and returns a module whose
``model.spec["model"]`` is what rebuilds it.

Example:
    >>> from cnnlab import models, nn
    >>> @models.register("tiny-mlp", "a one-layer net, for this example")
    ... def tiny(config):
    ...     return nn.Linear(models.check_int(config, "features", 1, 64), 2)
    >>> models.build("tiny-mlp", {"features": 3}).in_features
    3
    >>> del models.REGISTRY["tiny-mlp"]
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["REGISTRY", "Builder", "build", "check_int", "names", "register"]


@dataclass(frozen=True)
class Builder:
    """A registered model: its builder, a one-line description and the config the presets
    use (``cnnlab summary`` lists them)."""

    name: str
    build: Callable[[Mapping[str, Any]], Any]
    description: str
    defaults: Mapping[str, Any]


REGISTRY: dict[str, Builder] = {}
_LOADED = False


def register(name: str, description: str = "", defaults: Mapping[str, Any] | None = None):
    """Decorator: register ``builder(config) -> nn.Module`` under ``name``."""

    def decorate(builder: Callable[[Mapping[str, Any]], Any]):
        REGISTRY[name] = Builder(name, builder, description, dict(defaults or {}))
        return builder

    return decorate


def _load_builtin() -> None:
    """Import the modules that register cnnlab's own models (once, on first use)."""
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    import importlib

    for module in ("cnnlab.models.unet", "cnnlab.models.centernet", "cnnlab.models.caption",
                   "cnnlab.models.graph"):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise


def names() -> list[str]:
    """The registered model names, sorted."""
    _load_builtin()
    return sorted(REGISTRY)


def get(name: str) -> Builder:
    """The builder registered as ``name``.

    Raises:
        ValueError: for an unknown name (with the closest match, if any).
    """
    _load_builtin()
    if name not in REGISTRY:
        close = difflib.get_close_matches(name, REGISTRY, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown model {name!r}{hint}; known models: "
                         f"{', '.join(sorted(REGISTRY)) or 'none'}")
    return REGISTRY[name]


def build(name: str, config: Mapping[str, Any] | None = None) -> Any:
    """Build the registered model ``name`` from ``config`` (the preset's defaults, updated
    with ``config``); the result's ``spec["model"]`` records both.

    Raises:
        ValueError: an unknown name, or a config the builder refuses.
    """
    builder = get(name)
    if config is not None and not isinstance(config, Mapping):
        raise ValueError(f"the config of model {name!r} must be a dict, got "
                         f"{type(config).__name__}")
    merged = {**builder.defaults, **(config or {})}
    model = builder.build(merged)
    spec = dict(getattr(model, "spec", None) or {})
    spec["model"] = {"name": name, "config": merged}
    model.spec = spec
    return model


def check_int(config: Mapping[str, Any], key: str, low: int, high: int) -> int:
    """``config[key]`` as an int in [low, high], or a ValueError naming the key."""
    value = config.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"model config {key!r} must be an integer in [{low}, {high}], "
                         f"got {value!r}")
    return value
