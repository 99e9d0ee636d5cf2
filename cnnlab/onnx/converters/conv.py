"""Convolution: ``nn.Conv2d`` / ``conv2d`` <-> ``Conv``, ``nn.ConvTranspose2d`` <->
``ConvTranspose``."""

from __future__ import annotations

from typing import Any

from cnnlab import nn
from cnnlab.onnx.converters._common import onnx_pads, spatial_pads
from cnnlab.onnx.registry import exports, imports
from cnnlab.ops import conv as conv_op


def write_conv(ctx: Any, call: Any, x: str, out: str, weight: Any, bias: Any, stride: Any,
               padding: Any, dilation: Any, groups: int) -> None:
    """A ``Conv`` node from ``x`` to the value ``out``."""
    inputs = [x, ctx.name(weight)] + ([ctx.name(bias)] if bias is not None else [])
    ph, pw = padding
    ctx.node("Conv", inputs, [out], name=call.name, kernel_shape=list(weight.shape[2:]),
             strides=list(stride), pads=[ph, pw, ph, pw], dilations=list(dilation),
             group=int(groups))


@exports(nn.Conv2d)
def export_conv2d_layer(ctx: Any, call: Any) -> None:
    m = call.module
    write_conv(ctx, call, ctx.name(call.inputs[0]), ctx.out(call.output), m.weight, m.bias,
               m.stride, m.padding, m.dilation, m.groups)


@exports(conv_op.Conv2d)
def export_conv2d(ctx: Any, call: Any) -> None:
    x, weight, *rest = call.inputs
    o = call.options
    relu = bool(o.get("relu"))
    out = ctx.fresh(f"{call.name}.conv") if relu else ctx.out(call.output)
    write_conv(ctx, call, ctx.name(x), out, weight, rest[0] if rest else None, o["stride"],
               o["padding"], o["dilation"], o["groups"])
    if relu:
        ctx.node("Relu", [out], [ctx.out(call.output)], name=f"{call.name}.relu")


@imports("Conv")
def import_conv(b: Any, node: Any) -> None:
    attrs = b.attrs()
    weight = b.const(node.input[1], "the weights")
    if weight.ndim != 4:
        b.fail(f"cnnlab imports 2-D convolutions (4-D weights), got weights of shape "
               f"{weight.shape}")
    bias = b.const(node.input[2], "the bias") if b.has(2) else None
    kernel = list(attrs.get("kernel_shape", weight.shape[2:]))
    if kernel != list(weight.shape[2:]):
        b.fail(f"kernel_shape {kernel} differs from the weights' {list(weight.shape[2:])}")
    strides = list(attrs.get("strides", [1, 1]))
    dilations = list(attrs.get("dilations", [1, 1]))
    groups = int(attrs.get("group", 1))
    x = node.input[0]
    in_shape = b.shape(x)
    if len(in_shape) != 4:
        b.fail(f"expected a 4-D input (N, C, H, W), got shape {in_shape}")
    pads = spatial_pads(b, attrs, in_shape[2:], kernel, strides, dilations)
    name = b.reserve(owner=True)
    if any(lo != hi for lo, hi in pads):  # uneven padding: pad first, then convolve
        x = b.emit("Pad", {"pads": onnx_pads(pads)}, [x], [b.temp(f"{name}.pad")],
                   name=f"{name}.pad")[0]
        pads = [(0, 0), (0, 0)]
    b.emit("Conv2d", {"in_channels": int(weight.shape[1]) * groups,
                      "out_channels": int(weight.shape[0]), "kernel_size": kernel,
                      "stride": strides, "padding": [pads[0][0], pads[1][0]],
                      "dilation": dilations, "groups": groups, "bias": bias is not None},
           [x], name=name, params={"weight": weight, **({"bias": bias} if bias is not None
                                                        else {})})


# ----------------------------------------------------------------------------- transposed


def write_conv_transpose(ctx: Any, call: Any, x: Any, weight: Any, bias: Any, stride: Any,
                         padding: Any, dilation: Any, groups: int) -> None:
    """A ``ConvTranspose`` node; the output padding is what the traced output's size needs
    (so a layer called with ``output_size`` exports right too)."""
    inputs = [ctx.name(x), ctx.name(weight)] + ([ctx.name(bias)] if bias is not None else [])
    stride, padding, dilation = _pair(stride), _pair(padding), _pair(dilation)
    extra = []
    for a in range(2):
        full = ((x.shape[2 + a] - 1) * stride[a] - 2 * padding[a]
                + dilation[a] * (weight.shape[2 + a] - 1) + 1)
        extra.append(int(call.output.shape[2 + a] - full))
    ph, pw = padding
    ctx.node("ConvTranspose", inputs, [ctx.out(call.output)],
             kernel_shape=list(weight.shape[2:]), strides=list(stride),
             pads=[ph, pw, ph, pw], output_padding=extra, dilations=list(dilation),
             group=int(groups))


@exports(getattr(nn, "ConvTranspose2d", None))
def export_conv_transpose2d_layer(ctx: Any, call: Any) -> None:
    m = call.module
    write_conv_transpose(ctx, call, call.inputs[0], m.weight, m.bias, m.stride, m.padding,
                         m.dilation, m.groups)


try:  # the op of newer versions
    from cnnlab.ops import conv_transpose as _conv_transpose_op
except ImportError:  # pragma: no cover - depends on the version
    _conv_transpose_op = None


@exports(getattr(_conv_transpose_op, "ConvTranspose2d", None))
def export_conv_transpose2d(ctx: Any, call: Any) -> None:
    x, weight, *rest = call.inputs
    o = call.options
    write_conv_transpose(ctx, call, x, weight, rest[0] if rest else None, o["stride"],
                         o["padding"], o["dilation"], o["groups"])


def _pair(v: Any) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


@imports("ConvTranspose")
def import_conv_transpose(b: Any, node: Any) -> None:
    from cnnlab.onnx.graph import NODE_TYPES

    if "ConvTranspose2d" not in NODE_TYPES:
        b.fail("this version of cnnlab has no ConvTranspose2d layer")
    attrs = b.attrs()
    weight = b.const(node.input[1], "the weights")
    if weight.ndim != 4:
        b.fail(f"cnnlab imports 2-D transposed convolutions (4-D weights), got weights of "
               f"shape {weight.shape}")
    bias = b.const(node.input[2], "the bias") if b.has(2) else None
    groups = int(attrs.get("group", 1))
    strides = list(attrs.get("strides", [1, 1]))
    dilations = list(attrs.get("dilations", [1, 1]))
    kernel = list(weight.shape[2:])
    output_padding = list(attrs.get("output_padding", [0, 0]))
    in_hw = b.shape(node.input[0])[2:]
    if "output_shape" in attrs:
        pads = []
        for i in range(2):
            full = (strides[i] * (in_hw[i] - 1) + output_padding[i]
                    + (kernel[i] - 1) * dilations[i] + 1)
            total = full - int(attrs["output_shape"][-2 + i])
            if total < 0 or total % 2:
                b.fail(f"output_shape {attrs['output_shape']} needs padding cnnlab cannot "
                       "express")
            pads.append((total // 2, total // 2))
    elif attrs.get("auto_pad", "NOTSET") not in ("NOTSET", "", "VALID"):
        b.fail(f"auto_pad {attrs['auto_pad']} is not supported for ConvTranspose")
    else:
        p = list(attrs.get("pads", [0, 0, 0, 0]))
        pads = [(p[0], p[2]), (p[1], p[3])]
    if any(lo != hi for lo, hi in pads):
        b.fail(f"uneven pads {pads} are not supported for ConvTranspose")
    b.emit("ConvTranspose2d", {
        "in_channels": int(weight.shape[0]), "out_channels": int(weight.shape[1]) * groups,
        "kernel_size": kernel, "stride": strides, "padding": [pads[0][0], pads[1][0]],
        "output_padding": output_padding, "groups": groups, "bias": bias is not None,
        "dilation": dilations},
        [node.input[0]], params={"weight": weight,
                                 **({"bias": bias} if bias is not None else {})})
