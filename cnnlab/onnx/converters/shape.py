"""Shapes and copies: ``reshape``/``view``/``flatten`` <-> ``Reshape`` and ``Flatten``,
``transpose``/``permute`` <-> ``Transpose``, indexing with slices, integers, ``None`` and
one list <-> ``Slice``, ``Squeeze``, ``Gather``, ``Unsqueeze``; concatenation <->
``Concat``; ``pad`` <-> ``Pad``. Exported reshapes leave the batch free (-1)."""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnlab import nn
from cnnlab.onnx import graph
from cnnlab.onnx.registry import exports, imports
from cnnlab.ops import basic
from cnnlab.ops import pad as pad_op

INT_MAX, INT_MIN = 2**63 - 1, -(2**63)
_BIG = 2**31  # a slice bound this large is "to the end"


# ----------------------------------------------------------------------------- reshape


def write_reshape(ctx: Any, call: Any, x: Any) -> None:
    """Reshape ``x`` to the call's output shape, with -1 where that follows the batch."""
    shape, other = call.output.shape, call.alt.output.shape
    dynamic = ctx.dynamic(call.output, call.alt.output)
    if sum(dynamic) > 1:
        ctx.fail(f"its output {shape} has {sum(dynamic)} dimensions that change with the "
                 "batch size; keep the batch in one dimension")
    target = [-1 if d else int(n) for n, d in zip(shape, dynamic, strict=True)]
    del other
    ctx.node("Reshape", [ctx.name(x), ctx.ints(target, f"{call.name}.shape")],
             [ctx.out(call.output)])


@exports(basic.Reshape)
def export_reshape(ctx: Any, call: Any) -> None:
    write_reshape(ctx, call, call.inputs[0])


@exports(nn.Flatten)
def export_flatten_layer(ctx: Any, call: Any) -> None:
    if call.module.start_dim == 1 and call.module.end_dim == -1:
        ctx.node("Flatten", [ctx.name(call.inputs[0])], [ctx.out(call.output)], axis=1)
    else:
        write_reshape(ctx, call, call.inputs[0])


@imports("Reshape")
def import_reshape(b: Any, node: Any) -> None:
    x = node.input[0]
    s1, s2 = (np.asarray(s, np.int64).reshape(-1).copy() for s in b.consts(node.input[1]))
    in1, in2 = b.shapes(x)
    allowzero = bool(b.attrs().get("allowzero", 0))
    if (np.array_equal(s1, s2) and in1 != in2 and b.declared_batch is not None
            and len(s1) and s1[0] == in1[0] == b.declared_batch):
        # A file made at one fixed batch size has that size in its reshape targets; where
        # a target keeps the input's first (batch) dimension, it keeps it at any size.
        s2[0] = in2[0]
    out1, out2 = (_reshaped(b, shape, target, allowzero)
                  for shape, target in ((in1, s1), (in2, s2)))
    varying = [i for i in range(len(out1)) if out1[i] != out2[i]]
    if len(varying) > 1:
        b.fail(f"the target shape {list(s1)} changes {len(varying)} dimensions with the batch "
               "size; cnnlab keeps the batch in one")
    target = list(out1)
    if varying:
        target[varying[0]] = -1
    b.emit("Reshape", {"shape": target}, [x])


def _reshaped(b: Any, shape: tuple[int, ...], target: np.ndarray, allowzero: bool
              ) -> tuple[int, ...]:
    t = [int(shape[i]) if d == 0 and not allowzero else int(d) for i, d in enumerate(target)]
    try:
        return np.empty(shape, dtype=np.bool_).reshape(t).shape
    except ValueError:
        b.fail(f"cannot reshape {shape} into {list(target)}")


@imports("Flatten")
def import_flatten(b: Any, node: Any) -> None:
    axis = int(b.attrs().get("axis", 1))
    if axis == 1:
        b.emit("Flatten", {"start_dim": 1}, [node.input[0]])
    else:
        b.emit("OnnxFlatten", {"axis": axis}, [node.input[0]])


# ----------------------------------------------------------------------------- transpose


@exports(basic.Transpose)
def export_transpose(ctx: Any, call: Any) -> None:
    x = call.inputs[0]
    axes = call.options["axes"]
    perm = list(range(x.ndim))[::-1] if axes is None else [int(a) % x.ndim for a in axes]
    ctx.node("Transpose", [ctx.name(x)], [ctx.out(call.output)], perm=perm)


@imports("Transpose")
def import_transpose(b: Any, node: Any) -> None:
    perm = b.attrs().get("perm")
    b.emit("Transpose", {"perm": None if perm is None else [int(p) for p in perm]},
           [node.input[0]])


# ----------------------------------------------------------------------------- indexing


def _items(ctx: Any, index: Any, ndim: int) -> list[Any]:
    """The index as one item per input dimension (plus None for new ones)."""
    index = index if isinstance(index, tuple) else (index,)
    used = sum(1 for i in index if i is not None and i is not Ellipsis)
    if sum(1 for i in index if i is Ellipsis) > 1:
        ctx.fail("an index with more than one '...'")
    items: list[Any] = []
    for i in index:
        if i is Ellipsis:
            items += [slice(None)] * (ndim - used)
        else:
            items.append(i)
    items += [slice(None)] * (ndim - sum(1 for i in items if i is not None))
    return items


@exports(basic.GetItem)
def export_getitem(ctx: Any, call: Any) -> None:
    x = call.inputs[0]
    items = _items(ctx, call.options["index"], x.ndim)
    slices: list[tuple[int, int, int, int]] = []
    squeeze: list[int] = []
    gather: tuple[int, np.ndarray] | None = None
    new_axes: list[int] = []
    axis = out_pos = 0
    for item in items:
        if item is None:
            new_axes.append(out_pos)
            out_pos += 1
            continue
        if isinstance(item, slice):
            step = 1 if item.step is None else int(item.step)
            start = (0 if step > 0 else INT_MAX) if item.start is None else int(item.start)
            stop = (INT_MAX if step > 0 else INT_MIN) if item.stop is None else int(item.stop)
            if (start, stop, step) != (0, INT_MAX, 1):
                slices.append((axis, start, stop, step))
            out_pos += 1
        elif isinstance(item, (int, np.integer)):
            i = int(item)
            slices.append((axis, i, INT_MAX if i == -1 else i + 1, 1))
            squeeze.append(axis)
        else:
            array = np.asarray(item)
            if array.dtype.kind not in "iu" or gather is not None:
                ctx.fail("cnnlab exports indexing with slices, integers, None and at most one "
                         "list of integers")
            gather = (axis, array.astype(np.int64))
            out_pos += array.ndim
        axis += 1
    if gather is not None and (squeeze or new_axes):
        ctx.fail("an index that mixes a list of integers with integers or None")
    value = ctx.name(x)
    steps = [(slices, "Slice"), (squeeze, "Squeeze"), (gather, "Gather"),
             (new_axes, "Unsqueeze")]
    last = max(k for k, (part, _) in enumerate(steps) if part) if any(
        part for part, _ in steps) else -1
    if last < 0:
        ctx.node("Identity", [value], [ctx.out(call.output)])
        return
    for k, (part, op_type) in enumerate(steps):
        if not part:
            continue
        out = ctx.out(call.output) if k == last else ctx.fresh(f"{call.name}.{op_type}")
        hint = f"{call.name}.{op_type.lower()}"
        if op_type == "Slice":
            cols = list(zip(*part, strict=True))
            ctx.node("Slice", [value, ctx.ints(cols[1], f"{hint}.starts"),
                               ctx.ints(cols[2], f"{hint}.ends"),
                               ctx.ints(cols[0], f"{hint}.axes"),
                               ctx.ints(cols[3], f"{hint}.steps")], [out], name=hint)
        elif op_type == "Squeeze":
            ctx.node("Squeeze", [value, ctx.ints(part, f"{hint}.axes")], [out], name=hint)
        elif op_type == "Gather":
            ctx.node("Gather", [value, ctx.const(part[1], f"{hint}.indices")], [out],
                     name=hint, axis=part[0])
        else:
            ctx.node("Unsqueeze", [value, ctx.ints(part, f"{hint}.axes")], [out], name=hint)
        value = out


def _axes_input(b: Any, node: Any) -> list[int] | None:
    axes = b.attrs().get("axes")
    if b.has(1):
        axes = b.const(node.input[1], "the axes")
    return None if axes is None else [int(a) for a in np.atleast_1d(axes)]


@imports("Squeeze")
def import_squeeze(b: Any, node: Any) -> None:
    b.emit("Squeeze", {"axes": _axes_input(b, node)}, [node.input[0]])


@imports("Unsqueeze")
def import_unsqueeze(b: Any, node: Any) -> None:
    axes = _axes_input(b, node)
    if axes is None:
        b.fail("Unsqueeze without axes")
    b.emit("Unsqueeze", {"axes": axes}, [node.input[0]])


@imports("Gather")
def import_gather(b: Any, node: Any) -> None:
    if b.is_const(node.input[0]) and not b.is_const(node.input[1]):
        from cnnlab.onnx.converters.recurrent import import_embedding

        import_embedding(b, node, b.const(node.input[0], "the table"))
        return
    indices = b.const(node.input[1], "the indices")
    if indices.dtype.kind not in "iu":
        b.fail(f"indices must be integers, got {indices.dtype}")
    b.emit("Gather", {"axis": int(b.attrs().get("axis", 0)),
                      "indices": int(indices) if indices.ndim == 0 else indices.tolist()},
           [node.input[0]])


def _bound(value: int) -> int | None:
    return None if abs(int(value)) >= _BIG else int(value)


@imports("Slice")
def import_slice(b: Any, node: Any) -> None:
    attrs = b.attrs()
    if b.opset < 10:
        starts, ends = attrs["starts"], attrs["ends"]
        axes, steps = attrs.get("axes"), None
    else:
        starts = b.const(node.input[1], "starts").tolist()
        ends = b.const(node.input[2], "ends").tolist()
        axes = b.const(node.input[3], "axes").tolist() if b.has(3) else None
        steps = b.const(node.input[4], "steps").tolist() if b.has(4) else None
    ndim = len(b.shape(node.input[0]))
    axes = list(range(len(starts))) if axes is None else axes
    steps = [1] * len(starts) if steps is None else steps
    items = []
    for axis, start, stop, step in zip(axes, starts, ends, steps, strict=True):
        if step == 0:
            b.fail("a slice step of 0")
        items.append([int(axis) % ndim, _bound(start), _bound(stop), int(step)])
    b.emit("Slice", {"items": items}, [node.input[0]])


# ----------------------------------------------------------------------------- concat, pad


try:  # the ops of newer versions
    from cnnlab.ops import join as _join
except ImportError:  # pragma: no cover - depends on the version
    _join = None


@exports(graph.Concat, getattr(_join, "Cat", None))
def export_concat(ctx: Any, call: Any) -> None:
    axis = call.options.get("dim", call.options.get("axis"))
    ctx.node("Concat", [ctx.name(t) for t in call.inputs], [ctx.out(call.output)],
             axis=int(axis))


@exports(getattr(_join, "Stack", None))
def export_stack(ctx: Any, call: Any) -> None:
    dim = int(call.options["dim"])
    parts = []
    for k, t in enumerate(call.inputs):
        part = ctx.fresh(f"{call.name}.item{k}")
        ctx.node("Unsqueeze", [ctx.name(t), ctx.ints([dim], f"{call.name}.axes")], [part],
                 name=f"{call.name}.unsqueeze")
        parts.append(part)
    ctx.node("Concat", parts, [ctx.out(call.output)], axis=dim)


@imports("Concat")
def import_concat(b: Any, node: Any) -> None:
    inputs = [n for n in node.input if n]
    if any(b.is_const(n) for n in inputs):
        b.fail("cnnlab imports Concat of computed values only (a constant among them is "
               "not supported)")
    b.emit("Concatenate", {"axis": int(b.attrs().get("axis", 0))}, inputs)


@exports(pad_op.Pad)
def export_pad(ctx: Any, call: Any) -> None:
    x, o = call.inputs[0], call.options
    pads = [lo for lo, _ in o["widths"]] + [hi for _, hi in o["widths"]]
    inputs = [ctx.name(x), ctx.ints(pads, f"{call.name}.pads")]
    mode = {"constant": "constant", "reflect": "reflect", "replicate": "edge"}[o["mode"]]
    if mode == "constant" and o["value"] != 0:
        inputs.append(ctx.const(np.asarray(o["value"], x.dtype), f"{call.name}.value"))
    ctx.node("Pad", inputs, [ctx.out(call.output)], mode=mode)


@imports("Pad")
def import_pad(b: Any, node: Any) -> None:
    attrs = b.attrs()
    mode = attrs.get("mode", "constant")
    if mode not in ("constant", "reflect", "edge"):
        b.fail(f"pad mode {mode!r} is not supported (constant, reflect and edge are)")
    ndim = len(b.shape(node.input[0]))
    if b.opset < 11:
        pads, value = list(attrs["pads"]), float(attrs.get("value", 0.0))
    else:
        pads = [int(p) for p in b.const(node.input[1], "the pads")]
        value = float(b.const(node.input[2], "the value").reshape(())) if b.has(2) else 0.0
        if b.has(3):  # opset 18: pads for these axes only
            axes = [int(a) % ndim for a in b.const(node.input[3], "the axes")]
            full = [0] * (2 * ndim)
            for k, a in enumerate(axes):
                full[a], full[a + ndim] = pads[k], pads[k + len(axes)]
            pads = full
    if any(p < 0 for p in pads):
        b.fail(f"negative pads {pads} (cropping) are not supported")
    if not any(pads):
        b.alias(node.output[0], node.input[0])
        return
    text = value if np.isfinite(value) else ("inf" if value > 0 else "-inf")
    b.emit("Pad", {"pads": pads, "mode": "replicate" if mode == "edge" else mode,
                   "value": text}, [node.input[0]])


@imports("Cast")
def import_cast(b: Any, node: Any) -> None:
    to = int(b.attrs()["to"])
    dtype = b.values[node.input[0]].a.dtype
    names = {1: "float32", 11: "float64", 7: "int64", 6: "int32", 9: "bool"}
    if to not in names:
        b.fail(f"a Cast to the ONNX type {to} is not supported (float32, float64, int32, "
               "int64 and bool are)")
    if names[to] == dtype.name:
        b.alias(node.output[0], node.input[0])
    else:
        b.emit("Cast", {"dtype": names[to]}, [node.input[0]])


# ----------------------------------------------------------------------------- broadcasting


@imports("Expand")
def import_expand(b: Any, node: Any) -> None:
    x = node.input[0]
    s1, s2 = (np.asarray(v, np.int64).reshape(-1) for v in b.consts(node.input[1]))
    in1, in2 = b.shapes(x)
    try:
        out1 = np.broadcast_shapes(tuple(in1), tuple(int(d) for d in s1))
        out2 = np.broadcast_shapes(tuple(in2), tuple(int(d) for d in s2))
    except ValueError:
        b.fail(f"cannot expand {tuple(in1)} to {list(s1)}")
    lead = len(out1) - len(in1)
    target = []
    for i, (a, c) in enumerate(zip(out1, out2, strict=True)):
        keep = i >= lead and in1[i - lead] == a and in2[i - lead] == c
        if a != c and not keep:
            b.fail("expanding a dimension to the batch size is not supported")
        target.append(-1 if keep else int(a))
    b.emit("Expand", {"shape": target}, [x])


@imports("Tile")
def import_tile(b: Any, node: Any) -> None:
    repeats = [int(r) for r in b.const(node.input[1], "the repeats")]
    b.emit("Tile", {"repeats": repeats}, [node.input[0]])


@imports("Where")
def import_where(b: Any, node: Any) -> None:
    condition = b.const(node.input[0], "the condition").astype(bool)
    args: dict[str, Any] = {"condition": list(condition.shape)}
    buffers = {"condition": condition}
    inputs = []
    dtype = None
    for key, name in (("x", node.input[1]), ("y", node.input[2])):
        if b.is_const(name):
            value = b.const(name, key)
            args[key] = list(value.shape)
            buffers[f"{key}_value"] = value
        else:
            inputs.append(name)
            dtype = b.values[name].a.dtype
    if not inputs:
        b.fail("a Where of constants only")  # folded before: not reached
    for key in ("x", "y"):
        if f"{key}_value" in buffers:
            buffers[f"{key}_value"] = buffers[f"{key}_value"].astype(dtype)
    args["dtype"] = dtype.name
    b.emit("Where", args, inputs, buffers=buffers)
