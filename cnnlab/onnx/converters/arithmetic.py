"""Elementwise arithmetic and reductions: ``+ - * /`` <-> ``Add Sub Mul Div`` (either
operand may be a constant or a broadcast tensor), ``-x``, ``x ** p``, ``exp``, ``log``,
``sqrt``; ``sum``, ``mean``, ``max`` over dimensions <-> ``ReduceSum``, ``ReduceMean``,
``ReduceMax``."""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnlab.onnx.registry import exports, imports
from cnnlab.ops import basic

_BINARY = {basic.Add: "Add", basic.Sub: "Sub", basic.Mul: "Mul", basic.Div: "Div",
           basic.Maximum: "Max", basic.Minimum: "Min"}
_UNARY = {basic.Neg: "Neg", basic.Exp: "Exp", basic.Log: "Log", basic.Abs: "Abs"}


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


@imports("Max", "Min")
def import_extreme(b: Any, node: Any) -> None:
    inputs = [n for n in node.input if n]
    if len(inputs) != 2:
        b.fail(f"cnnlab imports {node.op_type} of two inputs, got {len(inputs)}")
    emit_binary(b, node, "Maximum" if node.op_type == "Max" else "Minimum")


@imports("Neg", "Exp", "Log", "Abs")
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


@exports(basic.Extreme)
def export_extreme(ctx: Any, call: Any) -> None:
    op_type = "ReduceMax" if call.options["fn"] == "max" else "ReduceMin"
    _write_reduce(ctx, call, op_type, ctx.opset >= 18)


@imports("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin")
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


# ----------------------------------------------------------------------------- copies


_ONNX_TYPES = {"float32": 1, "uint8": 2, "int8": 3, "int16": 5, "int32": 6, "int64": 7,
               "bool": 9, "float16": 10, "float64": 11}


@exports(basic.Cast)
def export_cast(ctx: Any, call: Any) -> None:
    to = _ONNX_TYPES.get(np.dtype(call.options["dtype"]).name)
    if to is None:
        ctx.fail(f"a cast to {call.options['dtype']} has no ONNX type")
    ctx.node("Cast", [ctx.name(call.inputs[0])], [ctx.out(call.output)], to=to)


@exports(basic.Expand)
def export_expand(ctx: Any, call: Any) -> None:
    x = call.inputs[0]
    lead = call.output.ndim - x.ndim
    dynamic = ctx.dynamic(call.output, call.alt.output)
    x_dynamic = ctx.dynamic(x, call.alt.inputs[0])
    shape = []
    for i, (n, d) in enumerate(zip(call.output.shape, dynamic, strict=True)):
        if d:  # the batch: kept from the input, where ONNX's 1 means "as it is"
            if i < lead or not x_dynamic[i - lead]:
                ctx.fail("expanding a dimension to the batch size has no exporter")
            n = 1
        shape.append(int(n))
    ctx.node("Expand", [ctx.name(x), ctx.ints(shape, f"{call.name}.shape")],
             [ctx.out(call.output)])


@exports(basic.Repeat)
def export_repeat(ctx: Any, call: Any) -> None:
    x, reps = call.inputs[0], list(call.options["reps"])
    name = ctx.name(x)
    if len(reps) > x.ndim:  # new leading dimensions first, as PyTorch's repeat does
        shaped = ctx.fresh(f"{call.name}.unsqueeze")
        ctx.node("Unsqueeze", [name, ctx.ints(list(range(len(reps) - x.ndim)),
                                              f"{call.name}.axes")], [shaped],
                 name=f"{call.name}.unsqueeze")
        name = shaped
    ctx.node("Tile", [name, ctx.ints(reps, f"{call.name}.reps")], [ctx.out(call.output)])


@exports(basic.Where)
def export_where(ctx: Any, call: Any) -> None:
    condition = np.asarray(call.options["condition"])
    other = np.asarray(call.alt.options["condition"])
    if condition.shape != other.shape or (
            condition.shape == other.shape and not np.array_equal(condition, other)):
        ctx.fail("where() with a condition computed from the input has no exporter (the "
                 "condition must be a constant)")
    a, b = call.inputs
    ctx.node("Where", [ctx.const(condition.astype(bool), f"{call.name}.condition"),
                       ctx.name(a), ctx.name(b)], [ctx.out(call.output)])
