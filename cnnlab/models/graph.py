"""The ``graph`` model: a :class:`~cnnlab.onnx.graph.GraphModule` rebuilt from its node list
(the config), as a model imported from ONNX is saved."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cnnlab.models import register
from cnnlab.onnx.graph import GraphModule


@register("graph", "a network wired by a list of nodes (a model imported from ONNX)")
def build_graph(config: Mapping[str, Any]) -> GraphModule:
    """A GraphModule from ``{"inputs", "outputs", "nodes"}`` (checked before anything is
    built)."""
    return GraphModule(dict(config))
