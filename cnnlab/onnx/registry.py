"""Where the converters register: one exporter per cnnlab layer or op, one importer per
ONNX op type. The converters themselves live in :mod:`cnnlab.onnx.converters`, each
exporter next to the importer of the same operation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

MODULE_EXPORTERS: dict[type, Callable[..., None]] = {}
"""Layer class -> ``fn(ctx, call)``: the layer is recorded as one call, its inside unseen."""

FUNCTION_EXPORTERS: dict[Any, Callable[..., None]] = {}
"""Op class (a ``Function`` subclass) or a pass's own key -> ``fn(ctx, call)``."""

IMPORTERS: dict[str, Callable[..., None]] = {}
"""ONNX op type -> ``fn(builder, node)``."""


def exports(*targets: Any) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Register an exporter for layer classes, op classes or pass keys; None targets (a
    layer this version of cnnlab lacks) are skipped."""

    def register(fn: Callable[..., None]) -> Callable[..., None]:
        from cnnlab.nn.module import Module

        for target in targets:
            if target is None:
                continue
            if isinstance(target, type) and issubclass(target, Module):
                MODULE_EXPORTERS[target] = fn
            else:
                FUNCTION_EXPORTERS[target] = fn
        return fn

    return register


def imports(*op_types: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Register an importer for ONNX op types."""

    def register(fn: Callable[..., None]) -> Callable[..., None]:
        for op_type in op_types:
            IMPORTERS[op_type] = fn
        return fn

    return register


def load_converters() -> None:
    """Import every converter module, filling the registries (idempotent)."""
    from cnnlab.onnx.converters import (  # noqa: F401
        activation,
        arithmetic,
        conv,
        linear,
        norm,
        pool,
        recurrent,
        resize,
        shape,
    )
