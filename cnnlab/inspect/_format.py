"""Small text helpers shared by summary, explain and the inspect commands."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np


def parse_shape(text: str) -> tuple[int, ...]:
    """Parse a shape written as ``CxHxW`` (or any number of ``x``-separated sizes).

    Args:
        text: for example ``"3x32x32"`` or ``"784"``.

    Returns:
        The sizes as a tuple of positive ints.

    Raises:
        ValueError: if a part is not a positive integer.
    """
    parts = re.split(r"\s*[x×,]\s*", text.strip().lower())
    try:
        sizes = tuple(int(p) for p in parts)
    except ValueError:
        sizes = ()
    if not sizes or any(s < 1 for s in sizes):
        raise ValueError(
            f"expected a shape like 3x32x32 (channels x height x width, positive integers), "
            f"got {text!r}"
        )
    return sizes


def shape_str(shape: Sequence[int]) -> str:
    """``(3, 32, 32)`` -> ``"3x32x32"``."""
    return "x".join(str(int(s)) for s in shape)


def num(value: float) -> str:
    """Write a number as short as it stays readable: ``2``, ``-1``, ``0.37``, ``1.234e-05``."""
    v = float(value)
    if v.is_integer():
        return str(int(v))
    return f"{v:.4g}"


def sum_text(values) -> str:
    """A sum written as people write it: ``1 + 4 - 1``, never ``1 + 4 + -1``.

    Example:
        >>> sum_text([1, 4, -1]), sum_text([-2.5, 0.5]), sum_text([])
        ('1 + 4 - 1', '-2.5 + 0.5', '0')
    """
    parts = []
    for i, v in enumerate(values):
        text = num(v) if np.isfinite(float(v)) else ("-inf" if float(v) < 0 else "inf")
        if i == 0:
            parts.append(text)
        elif text.startswith("-"):
            parts.append(f"- {text[1:]}")
        else:
            parts.append(f"+ {text}")
    return " ".join(parts) or "0"


def jsonable(array: np.ndarray) -> list:
    """Nested lists of the array's values; whole numbers become ints.

    Each float is written with the fewest digits that read back to the same float32, so
    ``np.asarray(jsonable(a), dtype=np.float32)`` gives ``a`` back exactly.
    """
    a = np.asarray(array)
    if a.ndim == 0:
        return _json_number(a.item())
    return [jsonable(sub) for sub in a]


def _json_number(v: float) -> int | float | None:
    f = float(v)
    if f.is_integer():
        return int(f)
    if not np.isfinite(f):
        return None  # JSON has no inf/nan; max-pool padding is the only source of -inf
    return float(np.format_float_positional(np.float32(f), unique=True, trim="-"))


def grid(matrix: np.ndarray, indent: str = "  ", marks: tuple[slice, slice] | None = None) -> str:
    """Right-aligned text grid of a 2-D array; cells inside ``marks`` get square brackets."""
    m = np.asarray(matrix)
    cells = [[num(v) if np.isfinite(v) else ("-inf" if v < 0 else "inf") for v in row]
             for row in m]
    width = max((len(c) for row in cells for c in row), default=1)
    lines = []
    for i, row in enumerate(cells):
        parts = []
        for j, c in enumerate(row):
            inside = (
                marks is not None
                and marks[0].start <= i < marks[0].stop
                and marks[1].start <= j < marks[1].stop
            )
            parts.append(f"[{c:>{width}}]" if inside else f" {c:>{width}} ")
        lines.append(indent + "".join(parts).rstrip())
    return "\n".join(lines)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[bool]) -> str:
    """A plain text table: header, rule, rows; ``right[i]`` right-aligns column ``i``."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]

    def line(cells: Sequence[str]) -> str:
        cols = zip(cells, widths, right, strict=True)
        out = [c.rjust(w) if r else c.ljust(w) for c, w, r in cols]
        return "  ".join(out).rstrip()

    rule = "-" * len(line(["-" * w for w in widths]))
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])
