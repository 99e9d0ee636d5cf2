"""``export``: a cnnlab model to an ONNX file, from one traced forward pass.

The model runs twice on the sample input, at its batch size and at one more (the sample's
first rows repeated): dimensions that change between the two passes are the batch, so the
file's inputs, outputs and reshape targets keep the batch free (``N``; a reshape target
says -1 there) and one exported file runs at any batch size. Each recorded layer or op is
written by its exporter in :mod:`cnnlab.onnx.converters`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from cnnlab.nn.module import Module
from cnnlab.onnx._deps import ONNXError, require_onnx
from cnnlab.onnx.registry import FUNCTION_EXPORTERS, MODULE_EXPORTERS, load_converters
from cnnlab.onnx.trace import Call, flatten_tensors, trace
from cnnlab.tensor import Tensor

__all__ = ["MIN_OPSET", "MAX_OPSET", "export"]

MIN_OPSET, MAX_OPSET = 13, 21
BATCH = "N"
_ELEM = {"float32": 1, "uint8": 2, "int8": 3, "int32": 6, "int64": 7, "bool": 9,
         "float16": 10, "float64": 11}


class ExportContext:
    """What an exporter writes into: nodes, initializers and the names of traced tensors.

    Attributes:
        opset: the ONNX opset being written.
    """

    def __init__(self, onnx: Any, opset: int, params: dict[int, str]) -> None:
        self.onnx, self.opset = onnx, opset
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._names: dict[int, str] = {}  # id(tensor) -> value name
        self._keep: list[Any] = []  # the tensors named, kept alive so ids stay unique
        self._params = params  # id(parameter) -> its dotted name
        self._used: set[str] = set()
        self._node_names: set[str] = set()
        self._const_ids: set[int] = set()  # tensors written as initializers
        self._call: Call | None = None

    # ----- names ------------------------------------------------------------------------
    def unique(self, hint: str, used: set[str] | None = None) -> str:
        """A value name (or, given ``used``, a node name) not taken before, from ``hint``."""
        used = self._used if used is None else used
        hint = hint or "v"
        name, k = hint, 1
        while name in used:
            k += 1
            name = f"{hint}_{k}"
        used.add(name)
        return name

    def bind(self, t: Tensor, name: str) -> None:
        self._names[id(t)] = name
        self._keep.append(t)

    def name(self, t: Tensor) -> str:
        """The value name of a tensor: a traced value, a parameter (an initializer named
        after it) or a constant made outside the traced ops (an initializer)."""
        if id(t) in self._names:
            return self._names[id(t)]
        if id(t) in self._params:
            hint = self._params[id(t)]
        else:
            self._check_constant(t)
            hint = f"{self._call.name}.const" if self._call is not None else "const"
        name = self.const(t.data, hint, dtype=t.dtype)
        self.bind(t, name)
        self._const_ids.add(id(t))
        return name

    def is_traced(self, t: Tensor) -> bool:
        """Whether ``t`` is computed from the model's input (not a weight or constant)."""
        return id(t) in self._names and id(t) not in self._const_ids

    def _check_constant(self, t: Tensor) -> None:
        """A constant must be the same in both traces, or it was computed from the input
        outside cnnlab's ops, and the file would hold this one batch's numbers."""
        call = self._call
        if call is None or call.alt is None:
            return
        for mine, other in zip(call.inputs, call.alt.inputs, strict=False):
            if mine is t:
                if other.shape != t.shape or not np.array_equal(other.data, t.data,
                                                                  equal_nan=True):
                    raise ONNXError(
                        f"{call.name}: an input of shape {t.shape} is not computed by "
                        "cnnlab ops from the model's input, yet differs from one input to "
                        "the next; compute it with tensor operations (not on .data or "
                        "NumPy arrays) so that it can be exported")
                return

    def out(self, t: Tensor, hint: str | None = None) -> str:
        """Name an output of the current call (the call's name by default)."""
        name = self.unique(hint or (self._call.name if self._call else "v"))
        self.bind(t, name)
        return name

    def fresh(self, hint: str) -> str:
        """A name for an intermediate value inside one exporter's nodes."""
        return self.unique(hint)

    # ----- contents ---------------------------------------------------------------------
    def const(self, value: Any, hint: str = "const", dtype: Any = None) -> str:
        """Add an initializer and return its name."""
        array = np.asarray(value, dtype=dtype)
        if array.dtype == np.float64 and dtype is None and not isinstance(value, np.ndarray):
            array = array.astype(np.float32)
        name = self.unique(hint)
        self.initializers.append(self.onnx.numpy_helper.from_array(
            np.ascontiguousarray(array), name))
        return name

    def ints(self, values: Sequence[int], hint: str) -> str:
        """An int64 initializer (shapes, axes, pads)."""
        return self.const(np.asarray(list(values), dtype=np.int64), hint)

    def node(self, op_type: str, inputs: Sequence[str], outputs: Sequence[str],
             name: str | None = None, **attrs: Any) -> None:
        """Add one node; attributes left None are omitted."""
        attrs = {k: v for k, v in attrs.items() if v is not None}
        node_name = self.unique(name or (self._call.name if self._call else op_type),
                                self._node_names)
        self.nodes.append(self.onnx.helper.make_node(
            op_type, list(inputs), list(outputs), name=node_name, **attrs))

    # ----- the two traces ---------------------------------------------------------------
    @property
    def call(self) -> Call:
        return self._call

    def dynamic(self, t: Tensor, other: Tensor) -> list[bool]:
        """Which dimensions of ``t`` change with the batch (``other`` is the same tensor in
        the second trace)."""
        if len(t.shape) != len(other.shape):
            raise ONNXError(f"{self._call.name}: a tensor has {len(t.shape)} dimensions at "
                            f"one batch size and {len(other.shape)} at another")
        return [a != b for a, b in zip(t.shape, other.shape, strict=True)]

    def fail(self, problem: str) -> None:
        raise ONNXError(f"cannot export {self._call.name}: {problem}")


def _as_inputs(sample: Any) -> tuple[Tensor, ...]:
    items = sample if isinstance(sample, (tuple, list)) else (sample,)
    out = []
    for i, item in enumerate(items):
        data = item.data if isinstance(item, Tensor) else np.asarray(item)
        if data.dtype == np.float64 and not isinstance(item, (Tensor, np.ndarray)):
            data = data.astype(np.float32)
        if data.ndim < 1 or len(data) < 1:
            raise ONNXError(f"sample input {i}: expected a batch (N, ...) with N >= 1, got "
                            f"shape {data.shape}")
        out.append(Tensor(data))
    return tuple(out)


def _grown(t: Tensor) -> Tensor:
    """The same batch with its first sample repeated once more at the end."""
    return Tensor(np.concatenate([t.data, t.data[:1]], axis=0))


def _align(calls: list[Call], alt: list[Call]) -> None:
    same = len(calls) == len(alt) and all(
        a.target is b.target for a, b in zip(calls, alt, strict=False))
    if not same:
        where = next((i for i, (a, b) in enumerate(zip(calls, alt, strict=False))
                      if a.target is not b.target), min(len(calls), len(alt)))
        what = calls[where].name if where < len(calls) else "the end of the pass"
        raise ONNXError(f"the model runs different layers at different batch sizes (from "
                        f"call {where}, {what}); the forward pass must not depend on the "
                        "batch size to be exported")
    for a, b in zip(calls, alt, strict=True):
        a.alt = b


def _fuse_means(calls: list[Call]) -> list[Call]:
    """``x.mean(axes)`` is traced as a sum times 1/count: write it as one ReduceMean."""
    from cnnlab.ops.basic import Mul, Sum

    uses: dict[int, int] = {}
    for call in calls:
        for t in call.inputs:
            uses[id(t)] = uses.get(id(t), 0) + 1
    out: list[Call] = []
    skip = False
    for i, call in enumerate(calls):
        if skip:
            skip = False
            continue
        nxt = calls[i + 1] if i + 1 < len(calls) else None
        if (call.target is Sum and nxt is not None and nxt.target is Mul
                and nxt.inputs[0] is call.output and uses.get(id(call.output)) == 1
                and nxt.inputs[1].data.size == 1):
            x = call.inputs[0]
            axis = call.options["axis"]
            count = x.data.size if axis is None else int(np.prod(
                [x.shape[a] for a in np.atleast_1d(axis)]))
            scale = nxt.inputs[1].data.reshape(())
            if scale == scale.dtype.type(1.0 / count):
                fused = Call("mean", "ReduceMean", [x], (x,), dict(call.options), nxt.output)
                fused.alt = Call("mean", "ReduceMean", [call.alt.inputs[0]],
                                 (call.alt.inputs[0],), dict(call.alt.options),
                                 nxt.alt.output)
                out.append(fused)
                skip = True
                continue
        out.append(call)
    return out


def _value_info(onnx: Any, name: str, t: Tensor, other: Tensor) -> Any:
    dtype = _ELEM.get(t.dtype.name)
    if dtype is None:
        raise ONNXError(f"cannot export a {t.dtype} tensor ({name})")
    dims = [BATCH if a != b else int(a) for a, b in zip(t.shape, other.shape, strict=True)]
    return onnx.helper.make_tensor_value_info(name, dtype, dims)


def _prune(onnx_nodes: list[Any], outputs: list[str]) -> list[Any]:
    """Drop nodes whose results no output needs (e.g. a value computed and not used)."""
    needed = set(outputs)
    kept = []
    for node in reversed(onnx_nodes):
        if any(o in needed for o in node.output):
            kept.append(node)
            needed.update(i for i in node.input if i)
    return kept[::-1]


def _metadata(model: Module, input_shape: Sequence[int]) -> dict[str, str]:
    from cnnlab import __version__

    spec = dict(getattr(model, "spec", None) or {})
    meta = {
        "input_shape": json.dumps([int(d) for d in input_shape]),
        "task": str(spec.get("task") or "classify"),
        "cnnlab_version": __version__,
    }
    for key in ("classes", "normalization", "arch"):
        if spec.get(key) is not None:
            value = spec[key]
            meta[key] = value if isinstance(value, str) else json.dumps(value)
    return meta


def export(model: Module, sample_input: Any, path: str | os.PathLike, opset: int = 17, *,
           input_names: Sequence[str] | None = None,
           output_names: Sequence[str] | None = None, check: bool = True) -> dict[str, Any]:
    """Write ``model`` as an ONNX file that runs at any batch size.

    The model is traced in eval mode (batch norm uses its running statistics, dropout is
    off) on ``sample_input`` and on the same batch one sample longer; its train/eval flags
    are restored afterwards. The model's spec (``model.spec``: class names, input
    normalization, input shape, task) goes into the file's metadata.

    Args:
        model: any ``nn.Module`` whose forward uses cnnlab's layers and ops.
        sample_input: a batch (array or Tensor, (N, ...)), or a tuple of them for a model
            with several inputs.
        path: the ``.onnx`` file to write (atomically).
        opset: ONNX opset, 13 to 21.
        input_names, output_names: value names in the file (default ``input`` and
            ``output``, numbered when there are several).
        check: run ``onnx.checker.check_model(full_check=True)`` on the result.

    Returns:
        ``{"path", "nodes", "opset", "seconds"}``.

    Raises:
        ONNXError: a layer or op without an exporter (naming it and listing the supported
            ones), a forward pass that depends on the batch size, or a model the checker
            rejects.
        ImportError: without the ``onnx`` package (``pip install "cnnlab[onnx]"``).

    Example:
        >>> import os, tempfile, numpy as np, cnnlab
        >>> model = cnnlab.arch.build("conv3x3x4-relu-pool2-fc10", input_shape=(1, 8, 8))
        >>> path = os.path.join(tempfile.mkdtemp(), "model.onnx")
        >>> export(model, np.zeros((1, 1, 8, 8), np.float32), path)["nodes"]
        5
    """
    onnx = require_onnx()
    from cnnlab.io.atomic import write_bytes

    start = time.perf_counter()
    if not isinstance(opset, int) or not MIN_OPSET <= opset <= MAX_OPSET:
        raise ONNXError(f"opset must be an integer from {MIN_OPSET} to {MAX_OPSET}, got "
                        f"{opset!r}")
    if not isinstance(model, Module):
        raise ONNXError(f"export expects a cnnlab nn.Module, got {type(model).__name__}")
    load_converters()
    inputs = _as_inputs(sample_input)
    grown = tuple(_grown(t) for t in inputs)

    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        calls, output = trace(model, inputs)
        alt_calls, alt_output = trace(model, grown)
    finally:
        for m, mode in modes:
            m.training = mode
    _align(calls, alt_calls)
    calls = _fuse_means(calls)

    params = {id(p): name for name, p in model.named_parameters()}
    ctx = ExportContext(onnx, opset, params)
    in_names = list(input_names or (["input"] if len(inputs) == 1 else
                                    [f"input{i}" for i in range(len(inputs))]))
    if len(in_names) != len(inputs):
        raise ONNXError(f"{len(in_names)} input names for {len(inputs)} inputs")
    for t, name in zip(inputs, in_names, strict=True):
        ctx._used.add(name)
        ctx.bind(t, name)

    for call in calls:
        ctx._call = call
        if isinstance(call.target, Module):
            exporter = MODULE_EXPORTERS.get(type(call.target))
        else:
            exporter = FUNCTION_EXPORTERS.get(call.target)
        if exporter is None:
            raise ONNXError(unsupported_message(call))
        exporter(ctx, call)
    ctx._call = None

    outs, alt_outs = flatten_tensors(output), flatten_tensors(alt_output)
    out_names = list(output_names or (["output"] if len(outs) == 1 else
                                      [f"output{i}" for i in range(len(outs))]))
    if len(out_names) != len(outs):
        raise ONNXError(f"{len(out_names)} output names for {len(outs)} outputs")
    for t, name in zip(outs, out_names, strict=True):
        ctx._used.add(name)
        ctx.node("Identity", [ctx.name(t)], [name], name=f"{name}.identity")
    nodes = _prune(ctx.nodes, out_names)
    # An output computed directly by a node needs no Identity: rename the value instead.
    nodes = _skip_identities(nodes, out_names)
    used = {i for n in nodes for i in n.input}
    graph = onnx.helper.make_graph(
        nodes, type(model).__name__,
        [_value_info(onnx, n, t, g) for n, t, g in zip(in_names, inputs, grown, strict=True)],
        [_value_info(onnx, n, t, g) for n, t, g in zip(out_names, outs, alt_outs,
                                                       strict=True)],
        [init for init in ctx.initializers if init.name in used])
    proto = onnx.helper.make_model(
        graph, opset_imports=[onnx.helper.make_opsetid("", opset)],
        producer_name="cnnlab", producer_version=_version())
    proto.ir_version = min(proto.ir_version, _max_ir_version(onnx, opset))
    onnx.helper.set_model_props(proto, _metadata(model, inputs[0].shape[1:]))
    if check:
        try:
            onnx.checker.check_model(proto, full_check=True)
        except Exception as exc:  # the checker's own error types vary between versions
            raise ONNXError(f"the exported graph does not pass onnx.checker: {exc}") from exc
    path = os.fspath(path)
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    write_bytes(path, proto.SerializeToString())
    return {"path": path, "nodes": len(nodes), "opset": opset,
            "seconds": time.perf_counter() - start}


def _skip_identities(nodes: list[Any], outputs: list[str]) -> list[Any]:
    produced_by = {o: n for n in nodes for o in n.output}
    consumers: dict[str, int] = {}
    for n in nodes:
        for i in n.input:
            consumers[i] = consumers.get(i, 0) + 1
    drop = set()
    for n in nodes:
        if n.op_type != "Identity" or n.output[0] not in outputs or not n.name.endswith(
                ".identity"):
            continue
        src = n.input[0]
        producer = produced_by.get(src)
        if producer is None or consumers.get(src, 0) != 1 or src in outputs:
            continue  # an input, a constant, or a value used elsewhere: keep the Identity
        for k, o in enumerate(producer.output):
            if o == src:
                producer.output[k] = n.output[0]
        drop.add(id(n))
    return [n for n in nodes if id(n) not in drop]


def _version() -> str:
    from cnnlab import __version__

    return __version__


def _max_ir_version(onnx: Any, opset: int) -> int:
    """The IR version that goes with ``opset`` (so older runtimes accept the file)."""
    for ir, op in [(7, 14), (8, 18), (9, 20), (10, 21)]:
        if opset <= op:
            return ir
    return onnx.IR_VERSION


def supported_layers() -> list[str]:
    """The names of the layers and ops that have an exporter."""
    load_converters()
    names = {cls.__name__ for cls in MODULE_EXPORTERS}
    names |= {k.__name__ if isinstance(k, type) else str(k) for k in FUNCTION_EXPORTERS}
    return sorted(names)


def unsupported_message(call: Call) -> str:
    kind = type(call.target).__name__ if isinstance(call.target, Module) else \
        getattr(call.target, "__name__", str(call.target))
    what = "layer" if isinstance(call.target, Module) else "op"
    return (f"cannot export {call.name}: the {what} {kind} has no ONNX exporter; supported: "
            f"{', '.join(supported_layers())}")
