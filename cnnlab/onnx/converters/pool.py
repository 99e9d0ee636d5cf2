"""Pooling: ``MaxPool2d`` <-> ``MaxPool``, ``AvgPool2d`` <-> ``AveragePool``,
``AdaptiveAvgPool2d(1)`` <-> ``GlobalAveragePool``, and ``GlobalMaxPool``."""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnlab import nn
from cnnlab.onnx.converters._common import onnx_pads, pool_output, spatial_pads
from cnnlab.onnx.registry import exports, imports
from cnnlab.ops import pool as pool_op


def write_pool(ctx: Any, name: str, op_type: str, x: str, out: str, kernel: Any, stride: Any,
               padding: Any) -> None:
    """A ``MaxPool`` or ``AveragePool`` node (padding counted in averages, as cnnlab's)."""
    ph, pw = padding
    extra = {"count_include_pad": 1} if op_type == "AveragePool" else {}
    ctx.node(op_type, [x], [out], name=name, kernel_shape=list(kernel), strides=list(stride),
             pads=[ph, pw, ph, pw], **extra)


@exports(nn.MaxPool2d, nn.AvgPool2d)
def export_pool_layer(ctx: Any, call: Any) -> None:
    m = call.module
    op_type = "MaxPool" if isinstance(m, nn.MaxPool2d) else "AveragePool"
    write_pool(ctx, call.name, op_type, ctx.name(call.inputs[0]), ctx.out(call.output),
               m.kernel_size, m.stride, m.padding)


@exports(pool_op.MaxPool2d, pool_op.AvgPool2d)
def export_pool(ctx: Any, call: Any) -> None:
    o = call.options
    op_type = "MaxPool" if call.target is pool_op.MaxPool2d else "AveragePool"
    write_pool(ctx, call.name, op_type, ctx.name(call.inputs[0]), ctx.out(call.output),
               o["kernel_size"], o["stride"], o["padding"])


@exports(nn.AdaptiveAvgPool2d)
def export_adaptive_avg_pool(ctx: Any, call: Any) -> None:
    x = call.inputs[0]
    oh, ow = call.module.output_size
    if (oh, ow) == (1, 1):
        ctx.node("GlobalAveragePool", [ctx.name(x)], [ctx.out(call.output)])
        return
    kh, kw = x.shape[2] // oh, x.shape[3] // ow
    ctx.node("AveragePool", [ctx.name(x)], [ctx.out(call.output)], kernel_shape=[kh, kw],
             strides=[kh, kw])


def _window(b: Any, node: Any) -> tuple[list[int], list[int], list[tuple[int, int]], bool]:
    attrs = b.attrs()
    kernel = [int(k) for k in attrs["kernel_shape"]]
    if len(kernel) != 2:
        b.fail(f"cnnlab imports 2-D pooling, got kernel_shape {kernel}")
    strides = [int(s) for s in attrs.get("strides", [1, 1])]
    dilations = [int(d) for d in attrs.get("dilations", [1, 1])]
    if dilations != [1, 1]:
        b.fail(f"dilated pooling (dilations {dilations}) is not supported")
    in_shape = b.shape(node.input[0])
    if len(in_shape) != 4:
        b.fail(f"expected a 4-D input (N, C, H, W), got shape {in_shape}")
    pads = spatial_pads(b, attrs, in_shape[2:], kernel, strides, dilations)
    ceil = bool(attrs.get("ceil_mode", 0))
    # ceil_mode adds windows past the end: padding there that no window sees as a value.
    full = []
    for (lo, hi), size, k, s in zip(pads, in_shape[2:], kernel, strides, strict=True):
        out = pool_output(size, k, s, lo, hi, ceil)
        full.append((lo, hi, max(0, (out - 1) * s + k - (size + lo + hi))))
    return kernel, strides, full, attrs.get("count_include_pad", 0)


def _direct(kernel: list[int], full: list[tuple[int, int, int]]) -> bool:
    """Whether the layer's own symmetric padding (at most half the window) is enough."""
    return all(lo == hi and extra == 0 and lo <= k // 2
               for (lo, hi, extra), k in zip(full, kernel, strict=True))


@imports("MaxPool")
def import_max_pool(b: Any, node: Any) -> None:
    if len(node.output) > 1 and node.output[1]:
        b.fail("the second output (indices) is not supported")
    kernel, strides, full, _ = _window(b, node)
    x, padding = node.input[0], [full[0][0], full[1][0]]
    name = b.reserve()
    if not _direct(kernel, full):  # pad with -inf: padding never wins a maximum
        pads = [(lo, hi + extra) for lo, hi, extra in full]
        x = b.emit("Pad", {"pads": onnx_pads(pads), "value": "-inf"}, [x],
                   [b.temp(f"{name}.pad")], name=f"{name}.pad")[0]
        padding = [0, 0]
    b.emit("MaxPool2d", {"kernel_size": kernel, "stride": strides, "padding": padding}, [x],
           node.output[:1], name=name)


@imports("AveragePool")
def import_average_pool(b: Any, node: Any) -> None:
    kernel, strides, full, include_pad = _window(b, node)
    x, padding = node.input[0], [full[0][0], full[1][0]]
    no_pads = all(lo == hi == extra == 0 for lo, hi, extra in full)
    name = b.reserve()
    if no_pads or (_direct(kernel, full) and include_pad):
        b.emit("AvgPool2d", {"kernel_size": kernel, "stride": strides, "padding": padding},
               [x], name=name)
        return
    # Pad with zeros, average over whole windows, then rescale each output by
    # window size / the count ONNX divides by (the input elements, plus the padding when
    # count_include_pad; never the ceil_mode overhang).
    in_hw = b.shape(x)[2:]
    pads = [(lo, hi + extra) for lo, hi, extra in full]
    x = b.emit("Pad", {"pads": onnx_pads(pads)}, [x], [b.temp(f"{name}.pad")],
               name=f"{name}.pad")[0]
    pooled = b.emit("AvgPool2d", {"kernel_size": kernel, "stride": strides}, [x],
                    [b.temp(f"{name}.sum")], name=name)[0]
    counts = []
    for (lo, hi, _), size, k, s, n_out in zip(full, in_hw, kernel, strides,
                                             b.shape(pooled)[2:], strict=True):
        starts = np.arange(n_out) * s - lo
        low, high = (-lo, size + hi) if include_pad else (0, size)
        counts.append(np.minimum(starts + k, high) - np.maximum(starts, low))
    scale = (kernel[0] * kernel[1] / np.outer(*counts)).astype(np.float32)
    b.emit("Mul", {"constant": [1, 1, *scale.shape]}, [pooled], name=f"{name}.rescale",
           buffers={"value": scale[None, None]})


@imports("GlobalAveragePool")
def import_global_average_pool(b: Any, node: Any) -> None:
    if len(b.shape(node.input[0])) != 4:
        b.fail(f"expected a 4-D input, got shape {b.shape(node.input[0])}")
    b.emit("AdaptiveAvgPool2d", {"output_size": 1}, [node.input[0]])


@imports("GlobalMaxPool")
def import_global_max_pool(b: Any, node: Any) -> None:
    b.emit("GlobalMaxPool", {}, [node.input[0]])
