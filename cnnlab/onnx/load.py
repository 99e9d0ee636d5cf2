"""``load``: an ONNX file as a cnnlab :class:`~cnnlab.onnx.graph.GraphModule`.

The nodes are visited in the file's (topological) order. A node whose inputs are all
known at load time — initializers, ``Constant`` nodes, and the shape arithmetic that
exporters emit around a ``Reshape`` (``Shape``, ``Gather``, ``Unsqueeze``, ``Concat``...)
— is computed once, here, by ONNX's reference implementation and never becomes a module.
Every other node is turned into cnnlab modules by its importer in
:mod:`cnnlab.onnx.converters`.

To know which of those load-time numbers depend on the batch size, every module is run as
it is made on two probe batches (random inputs at two batch sizes): a ``Shape`` gives the
two probes' shapes, and a reshape target that differs between them is the batch, which
the imported ``Reshape`` leaves free (-1). The probes also check every module on real
shapes as the graph is built.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from cnnlab.nn.module import Module
from cnnlab.onnx._deps import ONNXError, require_onnx
from cnnlab.onnx.graph import NODE_TYPES, GraphModule
from cnnlab.onnx.registry import IMPORTERS, load_converters
from cnnlab.onnx.trace import flatten_tensors
from cnnlab.tensor import Tensor

__all__ = ["load", "supported_ops"]

# Ops computed at load time when all their inputs are known. Random ops never are.
_NEVER_FOLD = {"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike",
               "Multinomial", "Bernoulli"}
_DTYPES = {1: "float32", 11: "float64", 7: "int64", 6: "int32"}


@contextlib.contextmanager
def _keep_rng() -> Iterator[None]:
    from cnnlab import random

    state = random.get_rng_state()
    try:
        yield
    finally:
        random.set_rng_state(state)


class _Value:
    """A value at load time: ``const`` (NumPy arrays, one per probe) or ``runtime``
    (the probes' tensors)."""

    __slots__ = ("kind", "a", "b")

    def __init__(self, kind: str, a: Any, b: Any) -> None:
        self.kind, self.a, self.b = kind, a, b


class Builder:
    """What an importer works with: the values known so far and the graph being built.

    Attributes:
        opset: the file's opset for the default domain.
        node: the ONNX node being imported.
    """

    def __init__(self, onnx: Any, source: str, opset: int, batches: tuple[int, int],
                 declared_batch: int | None) -> None:
        self.onnx, self.source, self.opset = onnx, source, opset
        self.batches, self.declared_batch = batches, declared_batch
        self.values: dict[str, _Value] = {}
        self.nodes: list[dict[str, Any]] = []
        self.modules: dict[str, Module] = {}
        self.node: Any = None
        self._names: set[str] = set()
        self._reserved: set[str] = set()
        self._value_names: set[str] = set()
        self._aliases: dict[str, str] = {}
        self.consumed: set[str] = set()  # every value a node or the graph's outputs use

    # ----- reading the node -------------------------------------------------------------
    def attrs(self, node: Any = None) -> dict[str, Any]:
        """The node's attributes as Python values (bytes become str)."""
        node = node or self.node
        out = {}
        for attr in node.attribute:
            value = self.onnx.helper.get_attribute_value(attr)
            if isinstance(value, bytes):
                value = value.decode()
            elif isinstance(value, list) and value and isinstance(value[0], bytes):
                value = [v.decode() for v in value]
            elif isinstance(value, self.onnx.TensorProto):
                value = self.onnx.numpy_helper.to_array(value)
            out[attr.name] = value
        return out

    def where(self) -> str:
        node = self.node
        label = node.name or (node.output[0] if node.output else "?")
        return f"{self.source}: node {label!r} ({node.op_type})"

    def fail(self, problem: str) -> None:
        raise ONNXError(f"{self.where()}: {problem}")

    def has(self, index: int) -> bool:
        """Whether the node has its input ``index`` (optional inputs may be absent)."""
        return index < len(self.node.input) and self.node.input[index] != ""

    def is_const(self, name: str) -> bool:
        return self.values[name].kind == "const"

    def const(self, name: str, what: str = "this input") -> np.ndarray:
        """A value known at load time that does not depend on the batch size."""
        value = self._value(name)
        if value.kind != "const":
            self.fail(f"{what} ({name!r}) must be a constant, but it is computed from the "
                      "model's input; cnnlab imports this op only with a constant there")
        if not _same(value.a, value.b):
            self.fail(f"{what} ({name!r}) depends on the batch size; cnnlab cannot import "
                      "it in this form")
        return value.a

    def consts(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """A load-time value at both probe batch sizes (equal unless it is batch-shaped)."""
        value = self._value(name)
        if value.kind != "const":
            self.fail(f"{name!r} must be known at load time (a constant or a shape), but it "
                      "is computed from the model's input")
        return value.a, value.b

    def shapes(self, name: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """The shapes of a computed value at the two probe batch sizes."""
        value = self._value(name)
        if value.kind != "runtime":
            return np.shape(value.a), np.shape(value.b)
        return value.a.shape, value.b.shape

    def shape(self, name: str) -> tuple[int, ...]:
        return self.shapes(name)[0]

    def _value(self, name: str) -> _Value:
        if name not in self.values:
            self.fail(f"input {name!r} is not defined before this node")
        return self.values[name]

    # ----- writing the graph --------------------------------------------------------------
    def module_name(self, hint: str | None = None, owner: bool = False) -> str:
        """A child name for a module made from the current node: the PyTorch module name
        where the file tells it — from the weights' names (``layer1.0.conv1.weight``) or
        PyTorch's node names (``/layer1/layer1.0/conv1/Conv``) for a module that ``owner``s
        parameters — else the node's name (``layer1.0.Relu``)."""
        node = self.node
        if hint is None:
            for name in node.input:
                if name.endswith(".weight") and name in self.values and \
                        self.values[name].kind == "const":
                    hint = name[: -len(".weight")]
                    break
        if hint is None and node.name.startswith("/"):
            path, op = _torch_scope(node.name)
            hint = path if owner and path else ".".join(p for p in (path, op) if p)
        if hint is None:
            hint = node.name.strip("/").replace("/", ".") or node.op_type
        hint = re.sub(r"[^A-Za-z0-9_.:-]+", "_", hint).strip(".") or node.op_type
        if not re.match(r"[A-Za-z0-9_]", hint):
            hint = "n" + hint
        name, k = hint[:180], 1
        while name in self._names:
            k += 1
            name = f"{hint[:180]}_{k}"
        self._names.add(name)
        return name

    def reserve(self, hint: str | None = None, owner: bool = False) -> str:
        """Reserve the child name of a module made later by :meth:`emit` (``name=``), so
        that helper modules made before it can be named after it."""
        name = self.module_name(hint, owner)
        self._reserved.add(name)
        return name

    def temp(self, hint: str) -> str:
        """A name for a value between two modules made from one node."""
        base = re.sub(r"[^A-Za-z0-9_.:-]+", "_", hint) or "t"
        name, k = base, 1
        while name in self.values or name in self._value_names:
            k += 1
            name = f"{base}_{k}"
        self._value_names.add(name)
        return name

    def emit(self, kind: str, args: dict[str, Any], inputs: Sequence[str],
             outputs: Sequence[str] | None = None, *, name: str | None = None,
             params: dict[str, np.ndarray] | None = None,
             buffers: dict[str, np.ndarray] | None = None) -> list[str]:
        """Add a module of type ``kind`` (from :data:`NODE_TYPES`) with ``args``, fed by the
        computed values ``inputs``; run it on the probes. Returns its output names."""
        outputs = list(self.node.output if outputs is None else outputs)
        for value in inputs:
            if self._value(value).kind != "runtime":
                self.fail(f"input {value!r} is a constant where cnnlab expects a computed "
                          "value")
        args = json.loads(json.dumps(args, allow_nan=False))
        try:
            with _keep_rng():
                module = NODE_TYPES[kind](dict(args))
        except (TypeError, ValueError) as exc:
            self.fail(f"cannot make {kind}({args}): {exc}")
        for key, array in (params or {}).items():
            param = getattr(module, key)
            array = np.asarray(array)
            if param is None or param.shape != array.shape:
                self.fail(f"{kind}.{key}: expected shape "
                          f"{None if param is None else param.shape}, got {array.shape}")
            param.data = array.astype(param.dtype, copy=True)
        for key, array in (buffers or {}).items():
            current = getattr(module, key)
            module.register_buffer(key, np.asarray(array).astype(current.dtype, copy=True))
        module.eval()
        if name is None:
            name = self.module_name(owner=bool(params))
        elif name in self._reserved:
            self._reserved.discard(name)
        else:
            name = self.module_name(name)
        probes = []
        for side in ("a", "b"):
            args_in = [getattr(self.values[v], side) for v in inputs]
            try:
                from cnnlab import no_grad

                with no_grad():
                    out = module(*args_in)
            except (ValueError, RuntimeError, TypeError) as exc:
                self.fail(f"{type(module).__name__} does not run on inputs of shape "
                          f"{[tuple(t.shape) for t in args_in]}: {exc}")
            probes.append(flatten_tensors(out))
        for k, value in enumerate(outputs):
            if value == "":
                continue
            if k >= len(probes[0]):
                self.fail(f"output {k} ({value!r}) is not supported by cnnlab's "
                          f"{type(module).__name__}")
            self.values[value] = _Value("runtime", probes[0][k], probes[1][k])
            self._value_names.add(value)
        self.nodes.append({"name": name, "type": kind, "args": args, "inputs": list(inputs),
                           "outputs": [v for v in outputs if v != ""]})
        self.modules[name] = module
        return outputs

    def alias(self, output: str, source: str) -> None:
        """``output`` is the same value as ``source`` (Identity, an inference Dropout)."""
        self.values[output] = self._value(source)
        self._aliases[output] = source

    def fold(self, output: str, a: np.ndarray, b: np.ndarray | None = None) -> None:
        """``output`` is known at load time: ``a`` at the first probe, ``b`` at the second."""
        a = np.asarray(a)
        self.values[output] = _Value("const", a, a if b is None else np.asarray(b))


def _torch_scope(node_name: str) -> tuple[str, str]:
    """PyTorch's node name ``/layer1/layer1.0/conv1/Conv`` as the module path
    ``layer1.0.conv1`` and the op ``Conv``."""
    *scopes, op = node_name.strip("/").split("/")
    path = ""
    for scope in scopes:
        path = scope if not path or scope.startswith(path + ".") else f"{path}.{scope}"
    return path, op


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a is b or (np.shape(a) == np.shape(b) and np.array_equal(a, b))


def _opset(model: Any) -> int:
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    return 1


def supported_ops() -> list[str]:
    """The ONNX op types :func:`load` can import (plus any op it can compute at load time)."""
    load_converters()
    return sorted(set(IMPORTERS) | {"Constant", "Shape", "Identity"})


def _fold(onnx: Any, builder: Builder, node: Any) -> None:
    """Compute a node whose inputs are all known, at both probe batch sizes."""
    from onnx.reference import ReferenceEvaluator

    helper = onnx.helper
    names = [n for n in node.input if n]
    graph = helper.make_graph(
        [node], "fold", [helper.make_tensor_value_info(n, 0, None) for n in names],
        [helper.make_tensor_value_info(o, 0, None) for o in node.output if o])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", builder.opset)])
    results = []
    for side in ("a", "b"):
        feeds = {n: getattr(builder.values[n], side) for n in names}
        if side == "b" and all(_same(builder.values[n].a, builder.values[n].b)
                               for n in names):
            results.append(results[0])
            break
        try:
            results.append(ReferenceEvaluator(proto).run(None, feeds))
        except Exception as exc:  # the reference implementation raises many kinds
            builder.fail(f"cannot compute it from its constant inputs: {exc}")
    outs = [o for o in node.output if o]
    for k, out in enumerate(outs):
        builder.fold(out, results[0][k], results[-1][k])


def _input_specs(onnx: Any, graph: Any, initializers: set[str], source: str,
                 input_shape: Sequence[int] | None) -> list[dict[str, Any]]:
    specs = []
    inputs = [i for i in graph.input if i.name not in initializers]
    if not inputs:
        raise ONNXError(f"{source}: the graph has no inputs")
    for k, item in enumerate(inputs):
        tensor_type = item.type.tensor_type
        dtype = _DTYPES.get(tensor_type.elem_type)
        if dtype is None:
            raise ONNXError(f"{source}: input {item.name!r} has element type "
                            f"{tensor_type.elem_type}; cnnlab imports float32, float64, int64 "
                            "and int32 inputs")
        dims: list[int | None] = []
        for d in tensor_type.shape.dim:
            dims.append(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None)
        if k == 0 and input_shape is not None:
            given = [int(d) for d in input_shape]
            if dims and len(given) != len(dims) - 1:
                raise ONNXError(f"{source}: input_shape {tuple(given)} has {len(given)} "
                                f"dimensions, the graph's input {item.name!r} has "
                                f"{len(dims) - 1} besides the batch")
            dims = [dims[0] if dims else None, *given]
        if not dims:
            raise ONNXError(f"{source}: input {item.name!r} has no shape; pass input_shape")
        if any(d is None for d in dims[1:]):
            raise ONNXError(
                f"{source}: input {item.name!r} has shape "
                f"{['?' if d is None else d for d in dims]}: cnnlab needs every dimension but "
                "the batch to be fixed; pass input_shape=(C, H, W)")
        specs.append({"name": item.name, "shape": dims, "dtype": dtype})
    return specs


def load(path: str | os.PathLike, input_shape: Sequence[int] | None = None) -> GraphModule:
    """Import an ONNX model as a cnnlab module.

    Args:
        path: the ``.onnx`` file.
        input_shape: one sample's shape, e.g. ``(3, 224, 224)``, for a file whose input
            leaves dimensions besides the batch open.

    Returns:
        A :class:`~cnnlab.onnx.graph.GraphModule` in eval mode whose nodes are cnnlab
        layers (``Conv2d``, ``BatchNorm2d``, ``Linear``, ...) and small modules for the
        other ops, with ``spec`` set (input shape; class names, normalization and task
        when the file's metadata has them, as files written by :func:`cnnlab.onnx.export`
        do). It runs at any batch size, trains (``loss.backward()``, optimizers), and
        works with ``summary``, feature maps and ``cnnlab.save``.

    Raises:
        ONNXError: an op cnnlab cannot import (one line naming the op type and the node,
            and listing the supported ops), a missing or damaged file, or a node whose
            inputs do not fit (naming the node).
        ImportError: without the ``onnx`` package (``pip install "cnnlab[onnx]"``).

    Example:
        >>> import os, tempfile, numpy as np, cnnlab
        >>> from cnnlab.onnx import export
        >>> path = os.path.join(tempfile.mkdtemp(), "model.onnx")
        >>> _ = export(cnnlab.arch.build("conv3x3x4-relu-pool2-fc10", input_shape=(1, 8, 8)),
        ...            np.zeros((1, 1, 8, 8), np.float32), path)
        >>> model = load(path)
        >>> [type(m).__name__ for m in model.children()]
        ['Conv2d', 'ReLU', 'MaxPool2d', 'Flatten', 'Linear']
        >>> model(cnnlab.Tensor(np.zeros((5, 1, 8, 8), np.float32))).shape
        (5, 10)
    """
    onnx = require_onnx()
    load_converters()
    source = os.fspath(path)
    if not os.path.isfile(source):
        raise ONNXError(f"{source}: no such file")
    try:
        model = onnx.load(source)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise ONNXError(f"{source}: not an ONNX model ({type(exc).__name__}: {exc})") from None
    if not model.graph.node:
        raise ONNXError(f"{source}: not an ONNX model (no graph nodes)")
    graph = model.graph
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in graph.initializer}
    inputs = _input_specs(onnx, graph, set(inits), source, input_shape)
    declared = inputs[0]["shape"][0]
    batches = (declared, declared + 1) if declared else (1, 2)

    builder = Builder(onnx, source, _opset(model), batches, declared)
    builder.consumed = {n for node in graph.node for n in node.input if n} | {
        o.name for o in graph.output}
    for name, array in inits.items():
        builder.fold(name, array)
    rng = np.random.default_rng(0)
    for spec in inputs:
        dims = spec["shape"][1:]
        probes = []
        for b in batches:
            if spec["dtype"].startswith("float"):
                data = rng.standard_normal((b, *dims)).astype(spec["dtype"])
            else:
                data = np.zeros((b, *dims), dtype=spec["dtype"])
            probes.append(Tensor(data))
        builder.values[spec["name"]] = _Value("runtime", *probes)
        builder._value_names.add(spec["name"])
        spec["shape"] = [None, *dims]

    for node in graph.node:
        builder.node = node
        if node.domain not in ("", "ai.onnx"):
            raise ONNXError(_unsupported(node, f"an op of the domain {node.domain!r}", source))
        inputs_known = [n for n in node.input if n]
        if node.op_type == "Constant":
            builder.fold(node.output[0], _constant(builder.attrs(node)))
        elif node.op_type in ("Shape", "Size") and not builder.is_const(node.input[0]):
            _shape_of(builder, node)
        elif node.op_type not in _NEVER_FOLD and all(builder._value(n).kind == "const"
                                                      for n in inputs_known):
            _fold(onnx, builder, node)
        elif node.op_type in IMPORTERS:
            IMPORTERS[node.op_type](builder, node)
        else:
            raise ONNXError(_unsupported(node, source=source))

    outputs = []
    for item in graph.output:
        value = builder.values.get(item.name)
        if value is None:
            raise ONNXError(f"{source}: the graph output {item.name!r} is not computed")
        if value.kind != "runtime":
            raise ONNXError(f"{source}: the graph output {item.name!r} is a constant; cnnlab "
                            "imports outputs computed from the input")
        outputs.append(_resolve(builder, item.name))
    config = {"inputs": inputs, "outputs": outputs, "nodes": builder.nodes}
    for node in config["nodes"]:
        node["inputs"] = [_resolve(builder, v) for v in node["inputs"]]
    module = _finish(config, builder, outputs)
    module.spec = _spec(model, inputs[0], builder.values[outputs[0]], config)
    return module


def _constant(attrs: dict[str, Any]) -> np.ndarray:
    """The value of a ``Constant`` node, in the dtype its attribute's kind says."""
    (kind, value), = attrs.items()
    if kind in ("value_float", "value_floats"):
        return np.asarray(value, dtype=np.float32)
    if kind in ("value_int", "value_ints"):
        return np.asarray(value, dtype=np.int64)
    return np.asarray(value)


def _resolve(builder: Builder, name: str) -> str:
    while name in builder._aliases:
        name = builder._aliases[name]
    return name


def _finish(config: dict[str, Any], builder: Builder, outputs: list[str]) -> GraphModule:
    # An output that is an input, or two outputs that are the same value, go through an
    # Identity so every output is computed by a node of its own.
    seen: set[str] = {i["name"] for i in config["inputs"]}
    for k, value in enumerate(outputs):
        if value in seen:
            name = builder.module_name(f"output{k}")
            out = builder.temp(f"{value}.copy")
            config["nodes"].append({"name": name, "type": "Identity", "args": {},
                                    "inputs": [value], "outputs": [out]})
            builder.modules[name] = NODE_TYPES["Identity"]({})
            outputs[k] = out
        seen.add(outputs[k])
    module = GraphModule(config, _modules=builder.modules)
    module.eval()
    return module


def _spec(model: Any, first_input: dict[str, Any], output: _Value, config: dict[str, Any]
          ) -> dict[str, Any]:
    meta = {p.key: p.value for p in model.metadata_props}
    spec: dict[str, Any] = {"input_shape": list(first_input["shape"][1:]), "classes": None,
                            "normalization": None, "task": meta.get("task", "classify")}
    for key in ("classes", "normalization"):
        if key in meta:
            try:
                spec[key] = json.loads(meta[key])
            except ValueError:
                spec[key] = None
    n_out = output.a.shape[-1] if output.a.ndim == 2 else None
    if spec["classes"] is not None and (not isinstance(spec["classes"], list)
                                        or len(spec["classes"]) != n_out):
        spec["classes"] = None
    last = config["nodes"][-1]["type"] if config["nodes"] else None
    if last == "Softmax" and n_out is not None:
        spec["output"] = "probabilities"  # so that predict does not apply a second softmax
    spec["model"] = {"name": "graph", "config": config}
    return spec


def _shape_of(builder: Builder, node: Any) -> None:
    a, b = builder.shapes(node.input[0])
    if node.op_type == "Size":
        builder.fold(node.output[0], np.int64(np.prod(a)), np.int64(np.prod(b)))
        return
    attrs = builder.attrs(node)
    start, end = attrs.get("start", 0), attrs.get("end")
    builder.fold(node.output[0], np.asarray(a[start:end], np.int64),
                 np.asarray(b[start:end], np.int64))


def _unsupported(node: Any, what: str | None = None, source: str = "") -> str:
    label = node.name or (node.output[0] if node.output else "?")
    what = what or f"the op {node.op_type}"
    prefix = f"{source}: " if source else ""
    return (f"{prefix}node {label!r} uses {what}, which cnnlab cannot import; supported ops: "
            f"{', '.join(supported_ops())}")
