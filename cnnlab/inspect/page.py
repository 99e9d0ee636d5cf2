"""The self-contained HTML page that animates a convolution.

The page is one file: the template, stylesheet and script from ``cnnlab/inspect/assets``
are inlined, and the numbers cnnlab computed are embedded as JSON, so it opens from disk
with no network and no build step.
"""

from __future__ import annotations

import html
import json
from importlib import resources
from pathlib import Path

import numpy as np

from cnnlab.inspect._format import shape_str
from cnnlab.inspect.explain import ConvExplanation

__all__ = ["explain_page", "write_explain_page"]


def _asset(name: str) -> str:
    return (resources.files("cnnlab.inspect") / "assets" / name).read_text(encoding="utf-8")


def explain_page(explanation: ConvExplanation, at: tuple[int, int, int] = (0, 0, 0)) -> str:
    """Render the convolution page.

    Args:
        explanation: what :func:`cnnlab.inspect.explain.explain_conv` returned.
        at: the output position ``(filter, row, col)`` shown first.

    Returns:
        The page as one HTML string.
    """
    data = explanation.to_dict(at=at)
    del data["padded"]  # the page pads for itself
    values = np.concatenate(
        [explanation.input.ravel(), explanation.weight.ravel(), explanation.bias.ravel()]
    )
    data["integers"] = bool(np.all(values == np.round(values)))
    # "<" escaped so no value can close the <script> element early.
    blob = json.dumps(data, separators=(",", ":")).replace("<", "\\u003c")
    title = (
        f"cnnlab: convolution of {shape_str(explanation.input.shape)} with "
        f"{explanation.weight.shape[0]} filter(s) of {explanation.size}x{explanation.size}"
    )
    page = _asset("explain.html")
    # The CSS and JS go in last so nothing inside them is ever taken for a placeholder.
    page = page.replace("{{TITLE}}", html.escape(title)).replace("{{DATA}}", blob)
    page = page.replace("/*{{CSS}}*/", _asset("explain.css"))
    return page.replace("/*{{JS}}*/", _asset("explain.js"))


def write_explain_page(
    explanation: ConvExplanation, path: str | Path, at: tuple[int, int, int] = (0, 0, 0)
) -> Path:
    """Write :func:`explain_page` to ``path`` (UTF-8) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(explain_page(explanation, at), encoding="utf-8")
    return path
