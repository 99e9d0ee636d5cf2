"""Fully-connected layers and matrix products: ``Linear`` / ``linear`` <-> ``Gemm``
(``MatMul`` + ``Add`` for inputs of more than two dimensions), ``@`` <-> ``MatMul``."""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnlab import nn
from cnnlab.onnx.registry import exports, imports
from cnnlab.ops import basic
from cnnlab.ops import linear as linear_op


def _write_linear(ctx: Any, call: Any, x: Any, weight: Any, bias: Any) -> None:
    if x.ndim == 2:
        inputs = [ctx.name(x), ctx.name(weight)] + ([ctx.name(bias)] if bias is not None
                                                    else [])
        ctx.node("Gemm", inputs, [ctx.out(call.output)], transB=1)
        return
    # MatMul broadcasts over leading dimensions, where Gemm takes matrices only.
    if ctx.is_traced(weight):
        w_t = ctx.fresh(f"{call.name}.weight_t")
        ctx.node("Transpose", [ctx.name(weight)], [w_t], name=f"{call.name}.transpose",
                 perm=[1, 0])
    else:
        w_t = ctx.const(weight.data.T, f"{call.name}.weight_t")
    product = ctx.fresh(f"{call.name}.matmul") if bias is not None else ctx.out(call.output)
    ctx.node("MatMul", [ctx.name(x), w_t], [product], name=f"{call.name}.matmul")
    if bias is not None:
        ctx.node("Add", [product, ctx.name(bias)], [ctx.out(call.output)],
                 name=f"{call.name}.bias")


@exports(nn.Linear)
def export_linear_layer(ctx: Any, call: Any) -> None:
    m = call.module
    _write_linear(ctx, call, call.inputs[0], m.weight, m.bias)


@exports(linear_op.Linear)
def export_linear(ctx: Any, call: Any) -> None:
    x, weight, *rest = call.inputs
    _write_linear(ctx, call, x, weight, rest[0] if rest else None)


@exports(basic.MatMul)
def export_matmul(ctx: Any, call: Any) -> None:
    a, b = call.inputs
    ctx.node("MatMul", [ctx.name(a), ctx.name(b)], [ctx.out(call.output)])


@imports("Gemm")
def import_gemm(b: Any, node: Any) -> None:
    attrs = b.attrs()
    alpha, beta = float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0))
    trans_a, trans_b = bool(attrs.get("transA", 0)), bool(attrs.get("transB", 0))
    a = node.input[0]
    if not b.is_const(node.input[1]) or (b.has(2) and not b.is_const(node.input[2])):
        inputs = [a, node.input[1]] + ([node.input[2]] if b.has(2) else [])
        for i in inputs:
            if b.is_const(i):
                b.fail("a Gemm that mixes constant and computed B and C is not supported")
        b.emit("Gemm", {"alpha": alpha, "beta": beta, "trans_a": trans_a,
                        "trans_b": trans_b}, inputs)
        return
    # A constant B is a Linear layer: y = A' (alpha B') + beta C = A' W^T + bias.
    weight = b.const(node.input[1], "B")
    weight = alpha * (weight if trans_b else weight.T)
    out_features, in_features = weight.shape
    bias = None
    if b.has(2):
        c = np.asarray(b.const(node.input[2], "C"), dtype=np.float32) * beta
        if c.size not in (1, out_features) or (c.ndim == 2 and c.shape[0] != 1):
            b.fail(f"C of shape {c.shape} is not a bias of {out_features} values")
        bias = np.broadcast_to(c.reshape(-1), (out_features,)).copy()
    name = b.reserve(owner=True)
    if trans_a:
        a = b.emit("Transpose", {"perm": [1, 0]}, [a], [b.temp(f"{name}.transpose")],
                   name=f"{name}.transpose")[0]
    b.emit("Linear", {"in_features": int(in_features), "out_features": int(out_features),
                      "bias": bias is not None}, [a], name=name,
           params={"weight": weight, **({"bias": bias} if bias is not None else {})})


@imports("MatMul")
def import_matmul(b: Any, node: Any) -> None:
    x, w = node.input[0], node.input[1]
    if b.is_const(w) and not b.is_const(x) and b.const(w).ndim == 2:
        weight = b.const(w).T
        b.emit("Linear", {"in_features": int(weight.shape[1]),
                          "out_features": int(weight.shape[0]), "bias": False}, [x],
               params={"weight": weight})
        return
    from cnnlab.onnx.converters.arithmetic import emit_binary

    emit_binary(b, node, "MatMul")
