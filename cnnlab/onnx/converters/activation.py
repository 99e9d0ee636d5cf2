"""Activations: ``ReLU``, ``LeakyReLU``, ``Sigmoid``, ``Tanh``, ``softmax``,
``log_softmax``, ``clamp`` (ReLU6) and ``Dropout`` (the identity in inference) <-> the ONNX
ops of the same names (``Clip`` for clamp)."""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnlab import nn
from cnnlab.onnx.registry import exports, imports
from cnnlab.ops import activation as act
from cnnlab.ops import dropout as dropout_op
from cnnlab.ops import pad as pad_op

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


for _name in ("Softmax", "LogSoftmax"):  # layers of newer versions
    if hasattr(nn, _name):
        exports(getattr(nn, _name))(lambda ctx, call, _op=_name: ctx.node(
            _op, [ctx.name(call.inputs[0])], [ctx.out(call.output)],
            axis=int(call.module.dim if call.module.dim is not None else -1)))


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


@exports(pad_op.Clamp)
def export_clamp(ctx: Any, call: Any) -> None:
    x, o = call.inputs[0], call.options
    bounds = ["" if o[k] is None else ctx.const(np.asarray(o[k], x.dtype), f"{call.name}.{k}")
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
    if low == 0 and high is None:
        b.emit("ReLU", {}, [node.input[0]])
    elif low is None and high is None:
        b.alias(node.output[0], node.input[0])
    else:
        b.emit("Clip", {"min": low, "max": high}, [node.input[0]])


# ----------------------------------------------------------------------------- dropout


@exports(nn.Dropout, dropout_op.Dropout)
def export_dropout(ctx: Any, call: Any) -> None:
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
