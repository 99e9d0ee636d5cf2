"""Helpers the converters share: ONNX padding and window arithmetic."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def spatial_pads(builder: Any, attrs: dict[str, Any], in_hw: Sequence[int],
                 kernel: Sequence[int], strides: Sequence[int],
                 dilations: Sequence[int]) -> list[tuple[int, int]]:
    """``(begin, end)`` padding per spatial axis from ONNX's ``pads`` or ``auto_pad``."""
    n = len(kernel)
    auto = attrs.get("auto_pad", "NOTSET")
    if auto in ("NOTSET", ""):
        pads = list(attrs.get("pads", [0] * 2 * n))
        if len(pads) != 2 * n:
            builder.fail(f"pads {pads} should have {2 * n} values")
        return [(int(pads[i]), int(pads[i + n])) for i in range(n)]
    if auto == "VALID":
        return [(0, 0)] * n
    if auto not in ("SAME_UPPER", "SAME_LOWER"):
        builder.fail(f"unknown auto_pad {auto!r}")
    out = []
    for size, k, s, d in zip(in_hw, kernel, strides, dilations, strict=True):
        total = max(0, (math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size)
        small, big = total // 2, total - total // 2
        out.append((small, big) if auto == "SAME_UPPER" else (big, small))
    return out


def pool_output(size: int, k: int, s: int, begin: int, end: int, ceil: bool) -> int:
    """Output length of a pooling window over ``size`` with padding ``begin``/``end``; with
    ``ceil``, PyTorch's rule (a last window must start inside the input or its left
    padding)."""
    span = size + begin + end - k
    if not ceil:
        return span // s + 1
    out = -(-span // s) + 1
    if (out - 1) * s >= size + begin:
        out -= 1
    return out


def onnx_pads(per_axis: Sequence[tuple[int, int]], leading: int = 2) -> list[int]:
    """ONNX's ``pads`` (all begins, then all ends) with ``leading`` unpadded axes first."""
    begins = [0] * leading + [b for b, _ in per_axis]
    ends = [0] * leading + [e for _, e in per_axis]
    return begins + ends
