"""Elementwise arithmetic and reductions: ``+ - * /`` <-> ``Add Sub Mul Div`` (either
operand may be a constant or a broadcast tensor), ``-x``, ``x ** p``, ``exp``, ``log``,
``sqrt``; ``sum``, ``mean``, ``max`` over dimensions <-> ``ReduceSum``, ``ReduceMean``,
``ReduceMax``."""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnlab.onnx.registry import exports, imports
from cnnlab.ops import basic

_BINARY = {basic.Add: "Add", basic.Sub: "Sub", basic.Mul: "Mul", basic.Div: "Div"}
_UNARY = {basic.Neg: "Neg", basic.Exp: "Exp", basic.Log: "Log"}


@exports(*_BINARY)
def export_binary(ctx: Any, call: Any) -> None:
    a, b = call.inputs
    ctx.node(_BINARY[call.target], [ctx.name(a), ctx.name(b)], [ctx.out(call.output)])


@exports(*_UNARY)
def export_unary(ctx: Any, call: Any) -> None:
    ctx.node(_UNARY[call.target], [ctx.name(call.inputs[0])], [ctx.out(call.output)])


@exports(basic.Pow)
def export_pow(ctx: Any, call: Any) -> None:
    x = call.inputs[0]
    exponent = ctx.const(np.asarray(call.options["exponent"], dtype=x.dtype),
                         f"{call.name}.exponent")
    ctx.node("Pow", [ctx.name(x), exponent], [ctx.out(call.output)])


def emit_binary(b: Any, node: Any, kind: str) -> None:
    """Import a two-input op; a constant operand becomes the module's buffer."""
    first, second = node.input[0], node.input[1]
    const_first, const_second = b.is_const(first), b.is_const(second)
    if not const_first and not const_second:
        b.emit(kind, {}, [first, second])
        return
    value = b.const(first if const_first else second, "the constant operand")
    runtime = second if const_first else first
    if value.dtype.kind in "iub" or value.dtype == np.float64:
        x_dtype = b.values[runtime].a.dtype
        value = value.astype(x_dtype if x_dtype.kind == "f" else value.dtype)
    b.emit(kind, {"constant": list(value.shape), "constant_first": const_first,
                  "dtype": value.dtype.name}, [runtime], buffers={"value": value})


@imports("Add", "Sub", "Mul", "Div")
def import_binary(b: Any, node: Any) -> None:
    emit_binary(b, node, node.op_type)


@imports("Neg", "Exp", "Log")
def import_unary(b: Any, node: Any) -> None:
    b.emit(node.op_type, {}, [node.input[0]])


@imports("Sqrt", "Reciprocal")
def import_power(b: Any, node: Any) -> None:
    b.emit("Pow", {"exponent": 0.5 if node.op_type == "Sqrt" else -1.0}, [node.input[0]])


@imports("Pow")
def import_pow(b: Any, node: Any) -> None:
    exponent = b.const(node.input[1], "the exponent")
    if exponent.size != 1:
        b.fail(f"cnnlab imports Pow with one constant exponent, got shape {exponent.shape}")
    b.emit("Pow", {"exponent": float(exponent.reshape(()))}, [node.input[0]])


# ----------------------------------------------------------------------------- reductions


def _axes_of(options: dict[str, Any]) -> list[int] | None:
    axis = options["axis"]
    return None if axis is None else [int(a) for a in np.atleast_1d(axis)]


def _write_reduce(ctx: Any, call: Any, op_type: str, axes_in_input: bool) -> None:
    x = call.inputs[0]
    axes = _axes_of(call.options)
    keep = int(bool(call.options["keepdims"]))
    if axes is not None and not axes:
        ctx.node("Identity", [ctx.name(x)], [ctx.out(call.output)])
        return
    if axes_in_input:
        inputs = [ctx.name(x)] + ([ctx.ints(axes, f"{call.name}.axes")] if axes else [])
        ctx.node(op_type, inputs, [ctx.out(call.output)], keepdims=keep)
    else:
        ctx.node(op_type, [ctx.name(x)], [ctx.out(call.output)], axes=axes, keepdims=keep)


@exports(basic.Sum)
def export_sum(ctx: Any, call: Any) -> None:
    _write_reduce(ctx, call, "ReduceSum", True)  # axes are an input from opset 13


@exports("mean")
def export_mean(ctx: Any, call: Any) -> None:
    _write_reduce(ctx, call, "ReduceMean", ctx.opset >= 18)


@exports(basic.Max)
def export_max(ctx: Any, call: Any) -> None:
    _write_reduce(ctx, call, "ReduceMax", ctx.opset >= 18)


@imports("ReduceMean", "ReduceSum", "ReduceMax")
def import_reduce(b: Any, node: Any) -> None:
    attrs = b.attrs()
    axes = attrs.get("axes")
    if b.has(1):
        axes = [int(a) for a in np.atleast_1d(b.const(node.input[1], "the axes"))]
    keepdims = bool(attrs.get("keepdims", 1))
    if not axes:
        axes = None
        if attrs.get("noop_with_empty_axes", 0):
            b.alias(node.output[0], node.input[0])
            return
    b.emit(node.op_type, {"axes": axes, "keepdims": keepdims}, [node.input[0]])
