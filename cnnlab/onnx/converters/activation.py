"""Activations: ``ReLU``, ``LeakyReLU``, ``Sigmoid``, ``Tanh``, ``softmax``,
``log_softmax``, ``clamp`` (ReLU6), ``Dropout`` (the identity in inference) and
``Identity`` <-> the ONNX ops of the same names (``Clip`` for clamp); the fused layers of
``nn.fuse`` <-> their layers' ops."""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnlab import nn
from cnnlab.onnx.registry import exports, imports
from cnnlab.ops import activation as act
from cnnlab.ops import basic
from cnnlab.ops import dropout as dropout_op

_LAYERS = {nn.ReLU: "Relu", nn.Sigmoid: "Sigmoid", nn.Tanh: "Tanh"}
_OPS = {act.ReLU: "Relu", act.Sigmoid: "Sigmoid", act.Tanh: "Tanh"}


@exports(*_LAYERS)
def export_activation_layer(ctx: Any, call: Any) -> None:
    ctx.node(_LAYERS[type(call.module)], [ctx.name(call.inputs[0])], [ctx.out(call.output)])


@exports(*_OPS)
def export_activation(ctx: Any, call: Any) -> None:
    ctx.node(_OPS[call.target], [ctx.name(call.inputs[0])], [ctx.out(call.output)])


@exports(nn.LeakyReLU)
def export_leaky_relu_layer(ctx: Any, call: Any) -> None:
    ctx.node("LeakyRelu", [ctx.name(call.inputs[0])], [ctx.out(call.output)],
             alpha=float(call.module.negative_slope))


@exports(act.LeakyReLU)
def export_leaky_relu(ctx: Any, call: Any) -> None:
    ctx.node("LeakyRelu", [ctx.name(call.inputs[0])], [ctx.out(call.output)],
             alpha=float(call.options["negative_slope"]))


@imports("Relu", "Sigmoid", "Tanh")
def import_activation(b: Any, node: Any) -> None:
    kind = {"Relu": "ReLU", "Sigmoid": "Sigmoid", "Tanh": "Tanh"}[node.op_type]
    b.emit(kind, {}, [node.input[0]])


@imports("LeakyRelu")
def import_leaky_relu(b: Any, node: Any) -> None:
    b.emit("LeakyReLU", {"negative_slope": float(b.attrs().get("alpha", 0.01))},
           [node.input[0]])


# ----------------------------------------------------------------------------- softmax


@exports(act.Softmax, act.LogSoftmax)
def export_softmax(ctx: Any, call: Any) -> None:
    op_type = "Softmax" if call.target is act.Softmax else "LogSoftmax"
    ctx.node(op_type, [ctx.name(call.inputs[0])], [ctx.out(call.output)],
             axis=int(call.options["dim"]))


@exports(nn.Softmax, nn.LogSoftmax)
def export_softmax_layer(ctx: Any, call: Any) -> None:
    op_type = "LogSoftmax" if isinstance(call.module, nn.LogSoftmax) else "Softmax"
    ctx.node(op_type, [ctx.name(call.inputs[0])], [ctx.out(call.output)],
             axis=int(call.module.dim))


@imports("Softmax", "LogSoftmax")
def import_softmax(b: Any, node: Any) -> None:
    ndim = len(b.shape(node.input[0]))
    axis = int(b.attrs().get("axis", -1 if b.opset >= 13 else 1))
    if b.opset < 13 and axis % ndim != ndim - 1:
        # Before opset 13 the op flattened the dimensions from axis on into one.
        b.fail(f"opset {b.opset} {node.op_type} over dimensions {axis}.. of a {ndim}-D "
               "input is not supported; re-export with opset 13 or later")
    b.emit(node.op_type, {"dim": axis}, [node.input[0]])


# ----------------------------------------------------------------------------- clip


@exports(basic.Clamp)
def export_clamp(ctx: Any, call: Any) -> None:
    x, o = call.inputs[0], call.options
    for k in ("low", "high"):
        if o[k] is not None and np.size(getattr(o[k], "data", o[k])) != 1:
            ctx.fail("clamp with tensor bounds has no exporter (number bounds do)")
    bounds = ["" if o[k] is None else ctx.const(
        np.asarray(getattr(o[k], "data", o[k]), x.dtype).reshape(()), f"{call.name}.{k}")
        for k in ("low", "high")]
    while bounds and bounds[-1] == "":
        bounds.pop()
    ctx.node("Clip", [ctx.name(x), *bounds], [ctx.out(call.output)])


@imports("Clip")
def import_clip(b: Any, node: Any) -> None:
    attrs = b.attrs()
    low, high = attrs.get("min"), attrs.get("max")  # before opset 11, attributes
    if b.has(1):
        low = float(b.const(node.input[1], "min").reshape(()))
    if b.has(2):
        high = float(b.const(node.input[2], "max").reshape(()))
    if low is not None and np.isinf(low) and low < 0:
        low = None
    if high is not None and np.isinf(high) and high > 0:
        high = None
    if low == 0 and high is None:
        b.emit("ReLU", {}, [node.input[0]])
    elif low is None and high is None:
        b.alias(node.output[0], node.input[0])
    else:
        b.emit("Clip", {"min": low, "max": high}, [node.input[0]])


# ----------------------------------------------------------------------------- dropout


@exports(nn.Dropout, dropout_op.Dropout, nn.Identity, basic.Clone)
def export_identity(ctx: Any, call: Any) -> None:
    ctx.node("Identity", [ctx.name(call.inputs[0])], [ctx.out(call.output)])


@imports("Dropout")
def import_dropout(b: Any, node: Any) -> None:
    if len(node.output) > 1 and node.output[1]:
        b.fail("the mask output is not supported")
    ratio = float(b.attrs().get("ratio", 0.5))
    if b.has(1):
        ratio = float(b.const(node.input[1], "the ratio").reshape(()))
    b.emit("Dropout", {"p": ratio}, [node.input[0]], node.output[:1])


@imports("Identity")
def import_identity(b: Any, node: Any) -> None:
    b.alias(node.output[0], node.input[0])


# ----------------------------------------------------------------------------- fused layers


@exports(nn.ConvReLU2d, nn.ConvReLUMaxPool2d)
def export_fused_conv(ctx: Any, call: Any) -> None:
    from cnnlab.onnx.converters.conv import write_conv
    from cnnlab.onnx.converters.pool import write_pool

    m = call.module
    conv = ctx.fresh(f"{call.name}.conv")
    write_conv(ctx, call, ctx.name(call.inputs[0]), conv, m.weight, m.bias, m.stride,
               m.padding, m.dilation, m.groups)
    if isinstance(m, nn.ConvReLUMaxPool2d):
        pooled = ctx.fresh(f"{call.name}.pool")
        write_pool(ctx, f"{call.name}.pool", "MaxPool", conv, pooled, *m.pool)
        ctx.node("Relu", [pooled], [ctx.out(call.output)], name=f"{call.name}.relu")
    else:
        ctx.node("Relu", [conv], [ctx.out(call.output)], name=f"{call.name}.relu")


@exports(nn.ReLUMaxPool2d)
def export_relu_max_pool(ctx: Any, call: Any) -> None:
    from cnnlab.onnx.converters.pool import write_pool

    m = call.module
    pooled = ctx.fresh(f"{call.name}.pool")
    write_pool(ctx, f"{call.name}.pool", "MaxPool", ctx.name(call.inputs[0]), pooled,
               m.kernel_size, m.stride, m.padding)
    ctx.node("Relu", [pooled], [ctx.out(call.output)], name=f"{call.name}.relu")
