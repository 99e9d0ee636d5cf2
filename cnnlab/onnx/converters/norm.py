"""Batch normalization in inference form: ``BatchNorm2d`` / ``batch_norm`` <->
``BatchNormalization``."""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnlab import nn
from cnnlab.onnx.registry import exports, imports
from cnnlab.ops import norm as norm_op


@exports(nn.BatchNorm2d)
def export_batch_norm_layer(ctx: Any, call: Any) -> None:
    m = call.module
    dtype = m.weight.dtype
    ctx.node("BatchNormalization", [
        ctx.name(call.inputs[0]), ctx.name(m.weight), ctx.name(m.bias),
        ctx.const(np.asarray(m.running_mean, dtype), f"{call.name}.running_mean"),
        ctx.const(np.asarray(m.running_var, dtype), f"{call.name}.running_var"),
    ], [ctx.out(call.output)], epsilon=float(m.eps), momentum=1.0 - float(m.momentum))


@exports(norm_op.BatchNorm)
def export_batch_norm(ctx: Any, call: Any) -> None:
    x, weight, bias = call.inputs
    o = call.options
    if o["training"]:
        ctx.fail("batch_norm with batch statistics (training=True) has no inference form; "
                 "pass running statistics and training=False, or call model.eval()")
    dtype = weight.dtype
    ctx.node("BatchNormalization", [
        ctx.name(x), ctx.name(weight), ctx.name(bias),
        ctx.const(np.asarray(o["mean"], dtype), f"{call.name}.mean"),
        ctx.const(np.asarray(o["var"], dtype), f"{call.name}.var"),
    ], [ctx.out(call.output)], epsilon=float(o["eps"]))


@imports("BatchNormalization")
def import_batch_norm(b: Any, node: Any) -> None:
    attrs = b.attrs()
    if attrs.get("training_mode", 0):
        b.fail("training_mode=1 (batch statistics) is not supported; export the model in "
               "eval mode")
    if len([o for o in node.output if o]) > 1:
        b.fail("the running-statistics outputs of training mode are not supported")
    scale, bias, mean, var = (b.const(node.input[i], what) for i, what in
                              enumerate(("the scale", "the bias", "the mean", "the variance"),
                                        start=1))
    ndim = len(b.shape(node.input[0]))
    args = {"num_features": int(scale.shape[0]), "eps": float(attrs.get("epsilon", 1e-5)),
            "momentum": 1.0 - float(attrs.get("momentum", 0.9))}
    b.emit("BatchNorm2d" if ndim == 4 else "BatchNorm", args, [node.input[0]],
           params={"weight": scale, "bias": bias},
           buffers={"running_mean": mean, "running_var": var})
