"""GraphModule: a network wired by a list of nodes, each a real cnnlab module.

A model imported from ONNX is not always a chain: a residual block adds a layer's input to
its output, a U-Net concatenates early maps with late ones. :class:`GraphModule` holds
every node's module as a named child, in a fixed order (so ``parameters()``,
``state_dict()``, forward hooks, ``summary`` and feature maps work as on any model), and a
JSON-able description of how the nodes are wired::

    {"inputs": [{"name": "input", "shape": [null, 1, 28, 28], "dtype": "float32"}],
     "outputs": ["logits"],
     "nodes": [{"name": "conv1", "type": "Conv2d",
                "args": {"in_channels": 1, "out_channels": 6, "kernel_size": [5, 5], ...},
                "inputs": ["input"], "outputs": ["conv1"]},
               {"name": "add1", "type": "Add", "args": {}, "inputs": ["conv1", "input"],
                "outputs": ["add1"]}, ...]}

The description names only module types from :data:`NODE_TYPES` with their constructor
arguments, so a model file rebuilds the graph without running any code from the file;
weights, buffers and constants (held as buffers named ``value``) come from the file's
tensors. This module needs NumPy only (the ``onnx`` package is needed to read or write
ONNX files, not to run an imported model).
"""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Callable
from typing import Any

import numpy as np

from cnnlab import nn
from cnnlab.autograd import Function
from cnnlab.nn.module import Module
from cnnlab.ops.pad import pad
from cnnlab.tensor import Tensor

__all__ = ["NODE_TYPES", "GraphModule", "check_config"]

_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:-]*")


# ----------------------------------------------------------------------------- small ops


class Concat(Function):
    # Until the library has its own concatenation op: inputs joined along one axis.
    def forward(self, *xs, axis):
        self.axis = axis
        self.bounds = np.cumsum([0] + [x.shape[axis] for x in xs])
        return np.concatenate(xs, axis=axis)

    def backward(self, grad):
        index = [slice(None)] * grad.ndim
        parts = []
        for a, z in zip(self.bounds[:-1], self.bounds[1:], strict=True):
            index[self.axis] = slice(int(a), int(z))
            parts.append(grad[tuple(index)])
        return tuple(parts)


def concat(tensors: list[Tensor], axis: int) -> Tensor:
    """Join tensors along ``axis``; every other dimension must agree.

    Raises:
        ValueError: naming the shapes that do not fit.
    """
    import cnnlab

    cat = getattr(cnnlab, "cat", None)
    if cat is not None:
        return cat(list(tensors), dim=axis)
    shapes = [t.shape for t in tensors]
    ndim = len(shapes[0])
    axis = axis + ndim if axis < 0 else axis
    if not 0 <= axis < ndim or any(len(s) != ndim or s[:axis] + s[axis + 1:] !=
                                   shapes[0][:axis] + shapes[0][axis + 1:] for s in shapes):
        raise ValueError(f"concat along dimension {axis} needs tensors whose other dimensions "
                         f"agree, got shapes {shapes}")
    return Concat.apply(*tensors, axis=axis)


# ----------------------------------------------------------------------------- node modules


def _float_like(value: np.ndarray, x: Tensor) -> np.ndarray:
    """A constant in the dtype of the floating tensor it meets (float32 by default)."""
    if x.dtype.kind == "f" and value.dtype != x.dtype:
        return value.astype(x.dtype)
    return value


class _Binary(Module):
    """An elementwise op of two tensors (NumPy broadcasting). One operand may be a constant,
    held as the buffer ``value`` of shape ``constant`` (first operand if ``constant_first``)."""

    op: Callable[[Any, Any], Tensor]

    def __init__(self, constant: list[int] | None = None, constant_first: bool = False,
                 dtype: str = "float32"):
        super().__init__()
        self.constant = None if constant is None else [int(d) for d in constant]
        self.constant_first = bool(constant_first)
        if self.constant is not None:
            self.register_buffer("value", np.zeros(self.constant, dtype=np.dtype(dtype)))

    def forward(self, *xs: Tensor) -> Tensor:
        if self.constant is None:
            a, b = xs
        else:
            c = Tensor(_float_like(self.value, xs[0]))
            a, b = (c, xs[0]) if self.constant_first else (xs[0], c)
        return type(self).op(a, b)

    def extra_repr(self) -> str:
        if self.constant is None:
            return ""
        side = "constant first" if self.constant_first else "constant"
        return f"{side} {tuple(self.constant)}"


class Add(_Binary):
    """``a + b``."""
    op = staticmethod(lambda a, b: a + b)


class Sub(_Binary):
    """``a - b``."""
    op = staticmethod(lambda a, b: a - b)


class Mul(_Binary):
    """``a * b``."""
    op = staticmethod(lambda a, b: a * b)


class Div(_Binary):
    """``a / b``."""
    op = staticmethod(lambda a, b: a / b)


class MatMul(_Binary):
    """``a @ b`` (NumPy's matmul: batched over leading dimensions)."""
    op = staticmethod(lambda a, b: a @ b)


class Maximum(_Binary):
    """The elementwise maximum of ``a`` and ``b``."""
    op = staticmethod(lambda a, b: a.max(b))


class Minimum(_Binary):
    """The elementwise minimum of ``a`` and ``b``."""
    op = staticmethod(lambda a, b: a.min(b))


class Neg(Module):
    """``-x``."""

    def forward(self, x: Tensor) -> Tensor:
        return -x


class Abs(Module):
    """``|x|``."""

    def forward(self, x: Tensor) -> Tensor:
        return x.abs()


class Exp(Module):
    """``exp(x)``."""

    def forward(self, x: Tensor) -> Tensor:
        return x.exp()


class Log(Module):
    """``log(x)``."""

    def forward(self, x: Tensor) -> Tensor:
        return x.log()


class Pow(Module):
    """``x ** exponent`` for a constant exponent (``Sqrt`` is exponent 0.5)."""

    def __init__(self, exponent: float):
        super().__init__()
        self.exponent = float(exponent)

    def forward(self, x: Tensor) -> Tensor:
        return x ** self.exponent

    def extra_repr(self) -> str:
        return f"exponent={self.exponent:g}"


class Clip(Module):
    """Limit values to ``[min, max]`` (either may be None); ``Clip(0, 6)`` is ReLU6."""

    def __init__(self, min: float | None = None, max: float | None = None):
        super().__init__()
        self.min = None if min is None else float(min)
        self.max = None if max is None else float(max)
        if self.min is None and self.max is None or (
                self.min is not None and self.max is not None and self.min > self.max):
            raise ValueError(f"Clip needs min <= max (one may be None), got {min}, {max}")

    def forward(self, x: Tensor) -> Tensor:
        return x.clamp(self.min, self.max)

    def extra_repr(self) -> str:
        return f"min={self.min}, max={self.max}"


class Reshape(Module):
    """``x.reshape(shape)``; as in ONNX, a 0 copies the input's dimension at that place
    (unless ``allowzero``) and one -1 is inferred."""

    def __init__(self, shape: list[int], allowzero: bool = False):
        super().__init__()
        self.shape = [int(d) for d in shape]
        self.allowzero = bool(allowzero)

    def forward(self, x: Tensor) -> Tensor:
        shape = self.shape
        if not self.allowzero and 0 in shape:
            shape = [x.shape[i] if d == 0 else d for i, d in enumerate(shape)]
        return x.reshape(*shape)

    def extra_repr(self) -> str:
        return f"shape={tuple(self.shape)}"


class Flatten(Module):
    """ONNX's Flatten: a 2-D ``(prod(shape[:axis]), prod(shape[axis:]))`` result."""

    def __init__(self, axis: int = 1):
        super().__init__()
        self.axis = int(axis)

    def forward(self, x: Tensor) -> Tensor:
        axis = self.axis + x.ndim if self.axis < 0 else self.axis
        return x.reshape(math.prod(x.shape[:axis]), -1)

    def extra_repr(self) -> str:
        return f"axis={self.axis}"


class Transpose(Module):
    """Permute dimensions (``perm`` None reverses them)."""

    def __init__(self, perm: list[int] | None = None):
        super().__init__()
        self.perm = None if perm is None else [int(p) for p in perm]

    def forward(self, x: Tensor) -> Tensor:
        return x.permute(*self.perm) if self.perm is not None else x.transpose()

    def extra_repr(self) -> str:
        return f"perm={self.perm}"


class Unsqueeze(Module):
    """Insert dimensions of size 1 at ``axes`` (positions in the output)."""

    def __init__(self, axes: list[int]):
        super().__init__()
        self.axes = [int(a) for a in axes]

    def forward(self, x: Tensor) -> Tensor:
        ndim = x.ndim + len(self.axes)
        axes = sorted(a + ndim if a < 0 else a for a in self.axes)
        shape = list(x.shape)
        for a in axes:
            shape.insert(a, 1)
        return x.reshape(*shape)

    def extra_repr(self) -> str:
        return f"axes={self.axes}"


class Squeeze(Module):
    """Remove dimensions of size 1 (those in ``axes``, or all of them)."""

    def __init__(self, axes: list[int] | None = None):
        super().__init__()
        self.axes = None if axes is None else [int(a) for a in axes]

    def forward(self, x: Tensor) -> Tensor:
        if self.axes is None:
            drop = {i for i, d in enumerate(x.shape) if d == 1}
        else:
            drop = {a + x.ndim if a < 0 else a for a in self.axes}
            if any(x.shape[a] != 1 for a in drop):
                raise ValueError(f"Squeeze(axes={self.axes}): dimensions of size 1 expected, "
                                 f"got input of shape {x.shape}")
        return x.reshape(*[d for i, d in enumerate(x.shape) if i not in drop])

    def extra_repr(self) -> str:
        return f"axes={self.axes}"


class Cast(Module):
    """A change of dtype (``float32``, ``float64``, ``int64``, ...)."""

    def __init__(self, dtype: str):
        super().__init__()
        self.dtype = np.dtype(dtype).name

    def forward(self, x: Tensor) -> Tensor:
        return x.to(self.dtype)

    def extra_repr(self) -> str:
        return f"dtype={self.dtype}"


class Expand(Module):
    """Broadcast to ``shape`` (PyTorch's ``expand``: -1 keeps a dimension as it is)."""

    def __init__(self, shape: list[int]):
        super().__init__()
        self.shape = [int(d) for d in shape]

    def forward(self, x: Tensor) -> Tensor:
        return x.expand(*self.shape)

    def extra_repr(self) -> str:
        return f"shape={tuple(self.shape)}"


class Tile(Module):
    """Repeat the whole tensor ``repeats[i]`` times along dimension ``i``."""

    def __init__(self, repeats: list[int]):
        super().__init__()
        self.repeats = [int(r) for r in repeats]

    def forward(self, x: Tensor) -> Tensor:
        return x.repeat(*self.repeats)

    def extra_repr(self) -> str:
        return f"repeats={tuple(self.repeats)}"


class Where(Module):
    """``x`` where the constant ``condition`` (a buffer of shape ``condition``) holds, ``y``
    elsewhere; either of ``x`` and ``y`` may be a constant too (buffers ``x_value``,
    ``y_value`` of the shapes given)."""

    def __init__(self, condition: list[int], x: list[int] | None = None,
                 y: list[int] | None = None, dtype: str = "float32"):
        super().__init__()
        self.shapes = {"x": x, "y": y}
        self.register_buffer("condition", np.zeros([int(d) for d in condition], dtype=bool))
        for key, shape in self.shapes.items():
            if shape is not None:
                self.register_buffer(f"{key}_value", np.zeros([int(d) for d in shape],
                                                               dtype=np.dtype(dtype)))

    def forward(self, *xs: Tensor) -> Tensor:
        from cnnlab.functions import where

        given = iter(xs)
        operands = [next(given) if self.shapes[k] is None else None for k in ("x", "y")]
        like = next(t for t in operands if t is not None)
        for i, key in enumerate(("x", "y")):
            if operands[i] is None:
                operands[i] = Tensor(_float_like(getattr(self, f"{key}_value"), like))
        return where(Tensor(self.condition), operands[0], operands[1])


class Slice(Module):
    """Basic slicing: ``items`` is a list of ``[axis, start, stop, step]`` (None for an open
    end), Python's semantics."""

    def __init__(self, items: list[list[Any]]):
        super().__init__()
        self.items = [[int(a), *(None if v is None else int(v) for v in rest)]
                      for a, *rest in items]

    def forward(self, x: Tensor) -> Tensor:
        index: list[Any] = [slice(None)] * x.ndim
        for axis, start, stop, step in self.items:
            index[axis] = slice(start, stop, step)
        return x[tuple(index)]

    def extra_repr(self) -> str:
        return ", ".join(f"dim {a}: {'' if s is None else s}:{'' if e is None else e}"
                         f"{'' if t in (None, 1) else f':{t}'}" for a, s, e, t in self.items)


class Gather(Module):
    """``x[..., indices, ...]`` on ``axis``: an int drops the dimension, a (nested) list
    of ints replaces it with the list's shape."""

    def __init__(self, axis: int, indices: int | list[Any]):
        super().__init__()
        self.axis = int(axis)
        self.indices = indices if isinstance(indices, int) else np.asarray(indices, np.int64)
        if not isinstance(indices, int) and self.indices.dtype.kind != "i":
            raise ValueError(f"Gather indices must be integers, got {indices!r}")

    def forward(self, x: Tensor) -> Tensor:
        axis = self.axis + x.ndim if self.axis < 0 else self.axis
        return x[(slice(None),) * axis + (self.indices,)]

    def extra_repr(self) -> str:
        return f"axis={self.axis}"


class Concatenate(Module):
    """Join the inputs along ``axis``."""

    def __init__(self, axis: int):
        super().__init__()
        self.axis = int(axis)

    def forward(self, *xs: Tensor) -> Tensor:
        return concat(list(xs), self.axis)

    def extra_repr(self) -> str:
        return f"axis={self.axis}"


class Pad(Module):
    """Pad with ONNX's ``pads`` (all the starts, then all the ends, one per dimension);
    ``value`` may be ``"-inf"`` or ``"inf"``, as JSON has no infinities."""

    def __init__(self, pads: list[int], mode: str = "constant", value: float | str = 0.0):
        super().__init__()
        self.pads = [int(p) for p in pads]
        self.mode = str(mode)
        self.value = value if isinstance(value, str) else float(value)
        if len(self.pads) % 2 or any(p < 0 for p in self.pads):
            raise ValueError(f"Pad: pads must be non-negative (starts, then ends), got {pads}")
        if isinstance(self.value, str) and self.value not in ("inf", "-inf"):
            raise ValueError(f"Pad: value must be a number, 'inf' or '-inf', got {value!r}")
        half = len(self.pads) // 2
        widths = []
        for axis in reversed(range(half)):  # torch's order: last dimension first
            widths += [self.pads[axis], self.pads[axis + half]]
        while widths[-2:] == [0, 0] and len(widths) > 2:
            widths = widths[:-2]
        self._widths = widths

    def forward(self, x: Tensor) -> Tensor:
        return pad(x, self._widths, self.mode, float(self.value))

    def extra_repr(self) -> str:
        extra = "" if self.mode == "constant" and self.value == 0 else \
            f", mode={self.mode}, value={self.value}"
        return f"pads={self.pads}{extra}"


class _Reduce(Module):
    def __init__(self, axes: list[int] | None = None, keepdims: bool = True):
        super().__init__()
        self.axes = None if axes is None else [int(a) for a in axes]
        self.keepdims = bool(keepdims)

    def _axes(self, x: Tensor):
        return None if self.axes is None else tuple(a + x.ndim if a < 0 else a
                                                    for a in self.axes)

    def extra_repr(self) -> str:
        return f"axes={self.axes}, keepdims={self.keepdims}"


class ReduceMean(_Reduce):
    """Mean over ``axes`` (all when None), e.g. PyTorch's ``x.mean((2, 3))``."""

    def forward(self, x: Tensor) -> Tensor:
        return x.mean(axis=self._axes(x), keepdims=self.keepdims)


class ReduceSum(_Reduce):
    """Sum over ``axes`` (all when None)."""

    def forward(self, x: Tensor) -> Tensor:
        return x.sum(axis=self._axes(x), keepdims=self.keepdims)


class ReduceMax(_Reduce):
    """Maximum over ``axes`` (all when None)."""

    def forward(self, x: Tensor) -> Tensor:
        return x.amax(self._axes(x), keepdim=self.keepdims)


class ReduceMin(_Reduce):
    """Minimum over ``axes`` (all when None)."""

    def forward(self, x: Tensor) -> Tensor:
        return x.amin(self._axes(x), keepdim=self.keepdims)


class GlobalMaxPool(Module):
    """The maximum of each feature map: (N, C, H, W) -> (N, C, 1, 1)."""

    def forward(self, x: Tensor) -> Tensor:
        return x.amax(tuple(range(2, x.ndim)), keepdim=True)


class Gemm(Module):
    """``alpha * A' @ B' + beta * C`` with ``A' = A.T`` if ``trans_a`` (likewise B), for
    operands computed in the graph (a constant B is imported as a Linear layer)."""

    def __init__(self, alpha: float = 1.0, beta: float = 1.0, trans_a: bool = False,
                 trans_b: bool = False):
        super().__init__()
        self.alpha, self.beta = float(alpha), float(beta)
        self.trans_a, self.trans_b = bool(trans_a), bool(trans_b)

    def forward(self, a: Tensor, b: Tensor, c: Tensor | None = None) -> Tensor:
        a = a.t() if self.trans_a else a
        b = b.t() if self.trans_b else b
        y = a @ b
        if self.alpha != 1:
            y = y * self.alpha
        if c is not None:
            y = y + (c * self.beta if self.beta != 1 else c)
        return y


class BatchNorm(nn.BatchNorm2d):
    """Batch normalization over dimension 1 of an input of any rank >= 2, (N, C, ...)."""

    def forward(self, x: Tensor) -> Tensor:
        from cnnlab.ops import norm

        if x.ndim < 2 or x.shape[1] != self.num_features:
            raise ValueError(f"{self!r} expected input (N, {self.num_features}, ...), got "
                             f"shape {x.shape}")
        if self.training:
            self.num_batches_tracked += 1
        return norm.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                               self.training, self.momentum, self.eps)


class Resize(Module):
    """Upsampling (or downsampling) of the spatial dimensions with ``interpolate``: to
    ``size`` or by ``scale_factor``, ``mode`` nearest or bilinear."""

    def __init__(self, size: list[int] | None = None, scale_factor: list[float] | None = None,
                 mode: str = "nearest", align_corners: bool | None = None):
        super().__init__()
        if (size is None) == (scale_factor is None):
            raise ValueError("Resize needs exactly one of size and scale_factor")
        self.size = None if size is None else [int(s) for s in size]
        self.scale_factor = None if scale_factor is None else [float(s) for s in scale_factor]
        self.mode, self.align_corners = str(mode), align_corners

    def forward(self, x: Tensor) -> Tensor:
        from cnnlab.nn import functional as F

        interpolate = getattr(F, "interpolate", None)
        if interpolate is None:
            raise RuntimeError("Resize needs cnnlab.nn.functional.interpolate, which this "
                               "version of cnnlab does not have; upgrade cnnlab")
        size = None if self.size is None else tuple(self.size)
        scale = None if self.scale_factor is None else tuple(self.scale_factor)
        return interpolate(x, size=size, scale_factor=scale, mode=self.mode,
                           align_corners=self.align_corners)

    def extra_repr(self) -> str:
        what = f"size={self.size}" if self.size is not None else \
            f"scale_factor={self.scale_factor}"
        return f"{what}, mode={self.mode}"


# ----------------------------------------------------------------------------- the registry


def _layer(cls: type) -> Callable[[dict[str, Any]], Module]:
    def build(args: dict[str, Any]) -> Module:
        return cls(**args)

    build.__name__ = f"build_{cls.__name__}"
    return build


NODE_TYPES: dict[str, Callable[[dict[str, Any]], Module]] = {}
"""Module types a graph may name, each built from its JSON ``args``."""

for _cls in (nn.Conv2d, nn.Linear, nn.BatchNorm2d, nn.MaxPool2d, nn.AvgPool2d,
             nn.AdaptiveAvgPool2d, nn.ReLU, nn.LeakyReLU, nn.Sigmoid, nn.Tanh, nn.Flatten,
             nn.Dropout, nn.Identity, nn.Softmax, nn.LogSoftmax, Add, Sub, Mul, Div, MatMul,
             Maximum, Minimum, Neg, Abs, Exp, Log, Pow, Clip, Reshape, Flatten, Transpose,
             Unsqueeze, Squeeze, Cast, Expand, Tile, Where, Slice, Gather, Concatenate, Pad,
             ReduceMean, ReduceSum, ReduceMax, ReduceMin, GlobalMaxPool, Gemm, BatchNorm,
             Resize):
    # The graph's own Flatten (ONNX's) is kept apart from nn.Flatten (PyTorch's).
    NODE_TYPES["OnnxFlatten" if _cls is Flatten else _cls.__name__] = _layer(_cls)
for _name in ("ConvTranspose2d", "LSTM", "GRU", "Embedding"):  # layers of newer versions
    if hasattr(nn, _name):
        NODE_TYPES[_name] = _layer(getattr(nn, _name))


def type_name(module: Module) -> str:
    """The :data:`NODE_TYPES` name of a node's module."""
    return "OnnxFlatten" if type(module) is Flatten else type(module).__name__


# ----------------------------------------------------------------------------- config


def _fail(problem: str) -> None:
    raise ValueError(f"graph config: {problem}")


def check_config(config: Any) -> dict[str, Any]:
    """Check a graph description (see the module docstring) and return a deep copy.

    Every value is defined once, before it is used; every node names a known type; node
    names (the children's names) are plain: letters, digits and ``_ . : -``. The node
    arguments are checked by the modules' own constructors when the graph is built.

    Raises:
        ValueError: naming the node or field that is wrong.
    """
    if not isinstance(config, dict):
        _fail(f"expected a dict with inputs, outputs and nodes, got {type(config).__name__}")
    try:
        config = json.loads(json.dumps(config, allow_nan=False))
    except (TypeError, ValueError) as exc:
        _fail(f"not plain JSON data ({exc})")
    unknown = sorted(set(config) - {"inputs", "outputs", "nodes"})
    if unknown:
        _fail(f"unknown field {unknown[0]!r} (expected inputs, outputs, nodes)")
    inputs, outputs, nodes = config.get("inputs"), config.get("outputs"), config.get("nodes")
    if not isinstance(inputs, list) or not inputs:
        _fail("'inputs' must be a non-empty list of {name, shape, dtype}")
    if not isinstance(outputs, list) or not outputs:
        _fail("'outputs' must be a non-empty list of value names")
    if not isinstance(nodes, list):
        _fail("'nodes' must be a list")
    defined: set[str] = set()
    for i, item in enumerate(inputs):
        if not isinstance(item, dict) or set(item) != {"name", "shape", "dtype"}:
            _fail(f"input {i} must be {{'name', 'shape', 'dtype'}}, got {item!r}")
        _check_value(item["name"], f"input {i}")
        shape = item["shape"]
        if not isinstance(shape, list) or not all(
                d is None or (isinstance(d, int) and not isinstance(d, bool) and d >= 1)
                for d in shape):
            _fail(f"input {item['name']!r}: shape must be a list of positive ints or null "
                  f"(the batch), got {shape!r}")
        if item["dtype"] not in ("float32", "float64", "int64", "int32"):
            _fail(f"input {item['name']!r}: dtype must be float32, float64, int64 or int32, "
                  f"got {item['dtype']!r}")
        defined.add(item["name"])
    names: set[str] = set()
    for i, node in enumerate(nodes):
        if not isinstance(node, dict) or set(node) != {"name", "type", "args", "inputs",
                                                         "outputs"}:
            _fail(f"node {i} must have exactly name, type, args, inputs, outputs; got "
                  f"{sorted(node) if isinstance(node, dict) else node!r}")
        where = f"node {i} ({node['name']!r})"
        _check_name(node["name"], f"node {i}")
        if node["name"] in names:
            _fail(f"{where}: the name is used twice")
        names.add(node["name"])
        if node["type"] not in NODE_TYPES:
            _fail(f"{where}: unknown type {node['type']!r}; known types: "
                  f"{', '.join(sorted(NODE_TYPES))}")
        if not isinstance(node["args"], dict):
            _fail(f"{where}: args must be a dict")
        for key in ("inputs", "outputs"):
            if not isinstance(node[key], list) or not all(isinstance(v, str) for v in node[key]):
                _fail(f"{where}: {key} must be a list of value names")
        if not node["outputs"]:
            _fail(f"{where}: no outputs")
        for value in node["inputs"]:
            if value not in defined:
                _fail(f"{where}: input {value!r} is not defined before it")
        for value in node["outputs"]:
            _check_value(value, where)
            if value in defined:
                _fail(f"{where}: value {value!r} is defined twice")
            defined.add(value)
    for value in outputs:
        if value not in defined:
            _fail(f"output {value!r} is not computed by any node")
    return config


def _check_value(name: Any, where: str) -> None:
    if not isinstance(name, str) or not name or len(name) > 500:
        _fail(f"{where}: bad value name {name!r} (a non-empty string)")


def _check_name(name: Any, where: str) -> None:
    if not isinstance(name, str) or not _NAME.fullmatch(name) or len(name) > 200:
        _fail(f"{where}: bad name {name!r} (letters, digits and _ . : - only)")


# ----------------------------------------------------------------------------- the module


class GraphModule(Module):
    """A network given as nodes wired by name (see the module docstring).

    Args:
        config: the graph description (``inputs``, ``outputs``, ``nodes``).

    Calling it with one tensor per graph input runs the nodes in order and returns the
    output (a tuple when the graph has several). The children are named after the nodes,
    so ``state_dict()`` keys read ``conv1.weight``; a node's constant operand is its
    buffer ``value``.

    Raises:
        ValueError: a malformed description, or node arguments a module rejects.

    Example:
        >>> import numpy as np, cnnlab
        >>> g = GraphModule({"inputs": [{"name": "x", "shape": [None, 3], "dtype": "float32"}],
        ...                  "outputs": ["y"],
        ...                  "nodes": [{"name": "fc", "type": "Linear",
        ...                             "args": {"in_features": 3, "out_features": 2},
        ...                             "inputs": ["x"], "outputs": ["h"]},
        ...                            {"name": "skip", "type": "Add", "args": {},
        ...                             "inputs": ["h", "h"], "outputs": ["y"]}]})
        >>> g(cnnlab.Tensor(np.ones((4, 3), np.float32))).shape
        (4, 2)
        >>> [name for name, _ in g.named_parameters()]
        ['fc.weight', 'fc.bias']
    """

    def __init__(self, config: dict[str, Any], *, _modules: dict[str, Module] | None = None):
        super().__init__()
        self.config = check_config(config)
        self._input_names = [i["name"] for i in self.config["inputs"]]
        self._output_names = list(self.config["outputs"])
        self._nodes: dict[str, Module] = {}
        for node in self.config["nodes"]:
            if _modules is not None:
                module = _modules[node["name"]]
            else:
                try:
                    module = NODE_TYPES[node["type"]](copy.deepcopy(node["args"]))
                except (TypeError, ValueError) as exc:
                    raise ValueError(f"graph config: node {node['name']!r} ({node['type']}): "
                                     f"{exc}") from None
            self._nodes[node["name"]] = module
        # Free each value after its last use, so a long graph keeps few maps alive.
        last: dict[str, int] = {}
        for k, node in enumerate(self.config["nodes"]):
            for value in node["inputs"]:
                last[value] = k
        keep = set(self._output_names)
        self._release = [[v for v in node["inputs"] if last.get(v) == k and v not in keep]
                         for k, node in enumerate(self.config["nodes"])]

    def named_children(self):
        yield from self._nodes.items()

    def _members(self):
        yield from self._nodes.items()

    def __getitem__(self, name: str) -> Module:
        return self._nodes[name]

    def __len__(self) -> int:
        return len(self._nodes)

    def forward(self, *inputs: Tensor) -> Any:
        if len(inputs) != len(self._input_names):
            raise ValueError(f"GraphModule takes {len(self._input_names)} input(s) "
                             f"({', '.join(self._input_names)}), got {len(inputs)}")
        env: dict[str, Any] = dict(zip(self._input_names, inputs, strict=True))
        for node, release in zip(self.config["nodes"], self._release, strict=True):
            module = self._nodes[node["name"]]
            try:
                out = module(*[env[v] for v in node["inputs"]])
            except ValueError as exc:
                raise ValueError(f"node {node['name']} ({node['type']}): {exc}") from exc
            outs = node["outputs"]
            if len(outs) == 1:
                env[outs[0]] = out
            else:
                flat = _flatten(out)
                if len(flat) < len(outs):
                    raise ValueError(f"node {node['name']} ({node['type']}) returned "
                                     f"{len(flat)} values, the graph expects {len(outs)}")
                env.update(zip(outs, flat[:len(outs)], strict=True))
            for value in release:
                env.pop(value, None)
        result = tuple(env[v] for v in self._output_names)
        return result[0] if len(result) == 1 else result

    def extra_repr(self) -> str:
        return f"{len(self._nodes)} nodes"


def _flatten(out: Any) -> list[Any]:
    if isinstance(out, (tuple, list)):
        return [leaf for item in out for leaf in _flatten(item)]
    return [out]
