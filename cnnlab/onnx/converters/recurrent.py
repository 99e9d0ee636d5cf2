"""Sequences: ``nn.Embedding`` <-> ``Gather`` of a weight matrix's rows, and the recurrent
layers ``nn.LSTM`` <-> ``LSTM`` and ``nn.GRU`` <-> ``GRU``, with PyTorch's
parameter names and gate order (LSTM: input, forget, cell, output; GRU: reset, update,
new) mapped to ONNX's (LSTM: input, output, forget, cell; GRU: update, reset, hidden with
``linear_before_reset``). Each stacked layer becomes one ONNX node."""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnlab import nn
from cnnlab.onnx.registry import exports, imports

# PyTorch's gate blocks in the order ONNX wants them.
_ORDER = {"LSTM": (0, 3, 1, 2), "GRU": (1, 0, 2)}


def _gates(w: np.ndarray, kind: str) -> np.ndarray:
    blocks = np.split(np.asarray(w), len(_ORDER[kind]), axis=0)
    return np.concatenate([blocks[i] for i in _ORDER[kind]], axis=0)


def _ungates(w: np.ndarray, kind: str) -> np.ndarray:
    blocks = np.split(np.asarray(w), len(_ORDER[kind]), axis=0)
    inverse = np.argsort(_ORDER[kind])
    return np.concatenate([blocks[i] for i in inverse], axis=0)


def _export_rnn(ctx: Any, call: Any, kind: str) -> None:
    m = call.module
    hidden, layers = int(m.hidden_size), int(m.num_layers)
    directions = 2 if getattr(m, "bidirectional", False) else 1
    batch_first = bool(getattr(m, "batch_first", False))
    x = ctx.name(call.inputs[0])
    state = call.args[1] if len(call.args) > 1 else call.options.get("hx")
    if batch_first:
        seq = ctx.fresh(f"{call.name}.seq_first")
        ctx.node("Transpose", [x], [seq], name=f"{call.name}.to_seq_first", perm=[1, 0, 2])
        x = seq
    initial = []
    if state is not None:
        parts = state if kind == "LSTM" else (state,)
        initial = [ctx.name(p) for p in parts]
    finals: list[list[str]] = [[] for _ in range(2 if kind == "LSTM" else 1)]
    suffixes = ["", "_reverse"][:directions]
    for layer in range(layers):
        w = np.stack([_gates(getattr(m, f"weight_ih_l{layer}{s}").data, kind)
                      for s in suffixes])
        r = np.stack([_gates(getattr(m, f"weight_hh_l{layer}{s}").data, kind)
                      for s in suffixes])
        hint = f"{call.name}.l{layer}"
        inputs = [x, ctx.const(w, f"{hint}.W"), ctx.const(r, f"{hint}.R")]
        if getattr(m, "bias", True):
            bias = np.stack([np.concatenate([
                _gates(getattr(m, f"bias_ih_l{layer}{s}").data, kind),
                _gates(getattr(m, f"bias_hh_l{layer}{s}").data, kind)]) for s in suffixes])
            inputs.append(ctx.const(bias, f"{hint}.B"))
        else:
            inputs.append("")
        inputs.append("")  # sequence lengths: all full
        for k, name in enumerate(initial):
            start = layer * directions
            piece = ctx.fresh(f"{hint}.initial{k}")
            ctx.node("Slice", [name, ctx.ints([start], f"{hint}.s{k}"),
                               ctx.ints([start + directions], f"{hint}.e{k}"),
                               ctx.ints([0], f"{hint}.a{k}")], [piece], name=f"{hint}.h{k}")
            inputs.append(piece)
        outs = [ctx.fresh(f"{hint}.Y"), ctx.fresh(f"{hint}.Y_h")]
        if kind == "LSTM":
            outs.append(ctx.fresh(f"{hint}.Y_c"))
        attrs = {"hidden_size": hidden,
                 "direction": "bidirectional" if directions == 2 else "forward"}
        if kind == "GRU":
            attrs["linear_before_reset"] = 1
        ctx.node(kind, inputs, outs, name=hint, **attrs)
        for k, final in enumerate(outs[1:]):
            finals[k].append(final)
        # Y is (seq, directions, batch, hidden): the next layer wants (seq, batch, d*hidden).
        moved = ctx.fresh(f"{hint}.Y_t")
        ctx.node("Transpose", [outs[0]], [moved], name=f"{hint}.y_t", perm=[0, 2, 1, 3])
        y = ctx.fresh(f"{hint}.out")
        ctx.node("Reshape", [moved, ctx.ints([0, 0, -1], f"{hint}.shape")], [y],
                 name=f"{hint}.y")
        x = y
    output, *states = call.outputs
    if batch_first:
        ctx.node("Transpose", [x], [ctx.out(output)], name=f"{call.name}.to_batch_first",
                 perm=[1, 0, 2])
    else:
        ctx.node("Identity", [x], [ctx.out(output)], name=f"{call.name}.output")
    for k, (t, parts) in enumerate(zip(states, finals, strict=False)):
        ctx.node("Concat", parts, [ctx.out(t, f"{call.name}.state{k}")],
                 name=f"{call.name}.state{k}", axis=0)


@exports(getattr(nn, "LSTM", None))
def export_lstm(ctx: Any, call: Any) -> None:
    _export_rnn(ctx, call, "LSTM")


@exports(getattr(nn, "GRU", None))
def export_gru(ctx: Any, call: Any) -> None:
    _export_rnn(ctx, call, "GRU")


@imports("LSTM", "GRU")
def import_rnn(b: Any, node: Any) -> None:
    from cnnlab.onnx.graph import NODE_TYPES

    kind = node.op_type
    if kind not in NODE_TYPES:
        b.fail(f"this version of cnnlab has no {kind} layer")
    attrs = b.attrs()
    direction = attrs.get("direction", "forward")
    if direction == "reverse" or attrs.get("layout", 0) or attrs.get("clip") is not None \
            or attrs.get("activations") or attrs.get("input_forget", 0):
        b.fail("only forward or bidirectional layers with the default activations, layout "
               "and no clipping are supported")
    if kind == "GRU" and not attrs.get("linear_before_reset", 0):
        b.fail("a GRU with linear_before_reset=0 differs from cnnlab's (PyTorch's) GRU")
    if b.has(4):
        b.fail("sequence lengths are not supported")
    if kind == "LSTM" and b.has(7):
        b.fail("peephole weights are not supported")
    # Initial states: zeros (what PyTorch writes when none is given) are the layer's own.
    for index in (5, 6) if kind == "LSTM" else (5,):
        if b.has(index) and any(np.any(v) for v in b.consts(node.input[index])):
            b.fail("initial states other than zeros are not supported")
    w, r = b.const(node.input[1], "W"), b.const(node.input[2], "R")
    directions, hidden = w.shape[0], int(attrs["hidden_size"])
    suffixes = ["", "_reverse"][:directions]
    params = {}
    for d, s in enumerate(suffixes):
        params[f"weight_ih_l0{s}"] = _ungates(w[d], kind)
        params[f"weight_hh_l0{s}"] = _ungates(r[d], kind)
        if b.has(3):
            bias = b.const(node.input[3], "B")[d]
            half = len(bias) // 2
            params[f"bias_ih_l0{s}"] = _ungates(bias[:half], kind)
            params[f"bias_hh_l0{s}"] = _ungates(bias[half:], kind)
    args = {"input_size": int(w.shape[2]), "hidden_size": hidden, "num_layers": 1,
            "bias": b.has(3), "bidirectional": directions == 2}
    # cnnlab's layer returns (seq, batch, directions*hidden) and the final states
    # (directions, batch, hidden), which are ONNX's Y_h and Y_c; ONNX's Y is
    # (seq, directions, batch, hidden): reshaped from the first.
    name = b.reserve(owner=True)
    n_states = 2 if kind == "LSTM" else 1
    states = list(node.output[1:1 + n_states]) + [""] * (1 + n_states - len(node.output))
    outputs = [b.temp(f"{name}.y")] + [o if o and o in b.consumed else
                                       b.temp(f"{name}.state{k}")
                                       for k, o in enumerate(states[:n_states])]
    y = b.emit(kind, args, [node.input[0]], outputs, name=name, params=params)[0]
    if node.output[0] and node.output[0] in b.consumed:
        shape = b.shape(y)
        y = b.emit("Reshape", {"shape": [shape[0], -1, directions, hidden]}, [y],
                   [b.temp(f"{name}.split")], name=f"{name}.split")[0]
        b.emit("Transpose", {"perm": [0, 2, 1, 3]}, [y], node.output[:1], name=f"{name}.y")


# ----------------------------------------------------------------------------- embedding


@exports(getattr(nn, "Embedding", None))
def export_embedding(ctx: Any, call: Any) -> None:
    indices = call.inputs[0]
    name = ctx.name(indices)
    if indices.dtype != np.int64:
        cast = ctx.fresh(f"{call.name}.indices")
        ctx.node("Cast", [name], [cast], name=f"{call.name}.cast", to=7)
        name = cast
    ctx.node("Gather", [ctx.name(call.module.weight), name], [ctx.out(call.output)], axis=0)


def import_embedding(b: Any, node: Any, weight: np.ndarray) -> None:
    """A ``Gather`` of rows of a constant matrix by computed indices: an embedding."""
    from cnnlab.onnx.graph import NODE_TYPES

    if "Embedding" not in NODE_TYPES or weight.ndim != 2 or \
            int(b.attrs().get("axis", 0)) != 0:
        b.fail("a Gather from a constant by computed indices is supported as an embedding "
               "(rows of a 2-D matrix), which this version of cnnlab lacks" if
               "Embedding" not in NODE_TYPES else "a Gather from a constant by computed "
               "indices is supported for rows of a 2-D matrix (axis 0) only")
    b.emit("Embedding", {"num_embeddings": int(weight.shape[0]),
                         "embedding_dim": int(weight.shape[1])}, [node.input[1]],
           params={"weight": weight})
