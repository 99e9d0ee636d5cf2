"""Tensor functions at the top level, as PyTorch has them: ``cnnlab.max(x, 1)``,
``cnnlab.flatten(x, 1)``, ``cnnlab.zeros(2, 3)``, ``cnnlab.from_numpy(a)``...

Each is the Tensor method of the same name (and meaning) or makes a new tensor. New tensors
are float32 unless a dtype is given; random ones draw from cnnlab's seeded generator.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnlab import random as _random
from cnnlab.tensor import Tensor, _shape_args, as_dtype, check_device

__all__ = [
    "abs", "allclose", "amax", "amin", "arange", "argmax", "argmin", "as_tensor", "clamp",
    "clip", "empty", "equal", "exp", "eye", "flatten", "from_numpy", "full", "full_like",
    "is_tensor", "linspace", "log", "log_softmax", "matmul", "max", "maximum", "mean", "min",
    "minimum", "numel", "ones", "ones_like", "permute", "rand", "rand_like", "randint",
    "randn", "randn_like", "relu", "reshape", "sigmoid", "softmax", "sqrt", "squeeze", "sum",
    "tanh", "topk", "transpose", "unsqueeze", "where", "zeros", "zeros_like",
]


def _t(x: Any) -> Tensor:
    return x if isinstance(x, Tensor) else Tensor(x)


def _new(array: np.ndarray, dtype: Any, requires_grad: bool, device: Any) -> Tensor:
    if device is not None:
        check_device(device, "creating a tensor")
    if dtype is not None:
        array = array.astype(as_dtype(dtype), copy=False)
    return Tensor(array, requires_grad=requires_grad)


def _gen(generator: Any) -> np.random.Generator:
    if generator is None:
        return _random.get_generator()
    return getattr(generator, "numpy_generator", generator)


def _float(dtype: Any) -> np.dtype:
    return np.dtype(np.float32) if dtype is None else as_dtype(dtype)


# ----- making tensors ------------------------------------------------------------------------
def from_numpy(array: np.ndarray) -> Tensor:
    """A tensor sharing ``array``'s memory, keeping its dtype (float64 stays float64).

    Example:
        >>> import numpy as np, cnnlab
        >>> cnnlab.from_numpy(np.arange(3)).dtype
        dtype('int64')
    """
    if not isinstance(array, np.ndarray):
        raise TypeError(f"from_numpy expects a NumPy array, got {type(array).__name__}")
    return Tensor(array, dtype=array.dtype)


def as_tensor(data: Any, dtype: Any = None, device: Any = None) -> Tensor:
    """A tensor from ``data``, sharing memory where it can."""
    if device is not None:
        check_device(device, "as_tensor")
    if isinstance(data, Tensor):
        return data if dtype is None else data.to(dtype)
    if isinstance(data, np.ndarray) and dtype is None:
        return from_numpy(data)
    return Tensor(data, dtype=dtype)


def is_tensor(obj: Any) -> bool:
    return isinstance(obj, Tensor)


def zeros(*size: Any, dtype: Any = None, requires_grad: bool = False,
          device: Any = None) -> Tensor:
    return _new(np.zeros(_shape_args(size), _float(dtype)), None, requires_grad, device)


def ones(*size: Any, dtype: Any = None, requires_grad: bool = False,
         device: Any = None) -> Tensor:
    return _new(np.ones(_shape_args(size), _float(dtype)), None, requires_grad, device)


def empty(*size: Any, dtype: Any = None, requires_grad: bool = False,
          device: Any = None) -> Tensor:
    return _new(np.empty(_shape_args(size), _float(dtype)), None, requires_grad, device)


def full(size: Any, fill_value: Any, dtype: Any = None, requires_grad: bool = False,
         device: Any = None) -> Tensor:
    if dtype is None and isinstance(fill_value, (bool, int, np.integer)):
        dtype = np.bool_ if isinstance(fill_value, bool) else np.int64
    return _new(np.full(_shape_args((size,)), fill_value, _float(dtype)), None,
                requires_grad, device)


def zeros_like(x: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    return Tensor(np.zeros_like(_t(x).data, dtype=dtype and as_dtype(dtype)),
                  requires_grad=requires_grad)


def ones_like(x: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    return Tensor(np.ones_like(_t(x).data, dtype=dtype and as_dtype(dtype)),
                  requires_grad=requires_grad)


def full_like(x: Any, fill_value: Any, dtype: Any = None) -> Tensor:
    return Tensor(np.full_like(_t(x).data, fill_value, dtype=dtype and as_dtype(dtype)))


def arange(start: Any, end: Any = None, step: Any = 1, dtype: Any = None,
           device: Any = None) -> Tensor:
    """Integers (int64) from ``start`` up to, not including, ``end``; float32 if any argument
    is a float."""
    if end is None:
        start, end = 0, start
    floats = any(isinstance(v, float) for v in (start, end, step))
    default = np.float32 if floats else np.int64
    return _new(np.arange(start, end, step, dtype=default), dtype, False, device)


def linspace(start: float, end: float, steps: int, dtype: Any = None) -> Tensor:
    return Tensor(np.linspace(start, end, steps, dtype=_float(dtype)))


def eye(n: int, m: int | None = None, dtype: Any = None) -> Tensor:
    return Tensor(np.eye(n, m, dtype=_float(dtype)))


def rand(*size: Any, dtype: Any = None, requires_grad: bool = False,
         generator: Any = None, device: Any = None) -> Tensor:
    """Uniform on [0, 1), from cnnlab's seeded generator (``cnnlab.manual_seed``)."""
    gen = _gen(generator)
    return _new(gen.random(_shape_args(size), dtype=np.float64).astype(_float(dtype)), None,
                requires_grad, device)


def randn(*size: Any, dtype: Any = None, requires_grad: bool = False,
          generator: Any = None, device: Any = None) -> Tensor:
    """Standard normal, from cnnlab's seeded generator (``cnnlab.manual_seed``)."""
    gen = _gen(generator)
    return _new(gen.standard_normal(_shape_args(size)).astype(_float(dtype)), None,
                requires_grad, device)


def randint(low: int, high: int | None = None, size: Any = (), dtype: Any = None,
            generator: Any = None) -> Tensor:
    """Integers in [low, high) (int64), as ``torch.randint(low, high, size)``."""
    if high is None:
        low, high = 0, low
    gen = _gen(generator)
    out = gen.integers(low, high, size=_shape_args((size,)) if size != () else ())
    return Tensor(np.asarray(out, dtype=as_dtype(dtype) if dtype else np.int64))


def rand_like(x: Any, dtype: Any = None) -> Tensor:
    return rand(*_t(x).shape, dtype=dtype or _t(x).dtype)


def randn_like(x: Any, dtype: Any = None) -> Tensor:
    return randn(*_t(x).shape, dtype=dtype or _t(x).dtype)


# ----- the Tensor methods, as functions -------------------------------------------------------
def max(input: Any, dim: Any = None, keepdim: bool = False) -> Any:
    """``input.max(dim, keepdim)``: the largest element, ``(values, indices)`` along ``dim``,
    or, with a second tensor, the elementwise maximum.

    Example:
        >>> import cnnlab
        >>> values, indices = cnnlab.max(cnnlab.tensor([[1.0, 5.0], [7.0, 2.0]]), 1)
        >>> values.tolist(), indices.tolist()
        ([5.0, 7.0], [1, 0])
    """
    return _t(input).max(dim, keepdim)


def min(input: Any, dim: Any = None, keepdim: bool = False) -> Any:
    """``input.min(dim, keepdim)`` (see :func:`max`)."""
    return _t(input).min(dim, keepdim)


def maximum(input: Any, other: Any) -> Tensor:
    return _t(input).max(_t(other))


def minimum(input: Any, other: Any) -> Tensor:
    return _t(input).min(_t(other))


def amax(input: Any, dim: Any = None, keepdim: bool = False) -> Tensor:
    return _t(input).amax(dim, keepdim)


def amin(input: Any, dim: Any = None, keepdim: bool = False) -> Tensor:
    return _t(input).amin(dim, keepdim)


def argmax(input: Any, dim: Any = None, keepdim: bool = False) -> Tensor:
    return _t(input).argmax(dim, keepdim)


def argmin(input: Any, dim: Any = None, keepdim: bool = False) -> Tensor:
    return _t(input).argmin(dim, keepdim)


def topk(input: Any, k: int, dim: int = -1, largest: bool = True, sorted: bool = True) -> Any:
    return _t(input).topk(k, dim, largest, sorted)


def sum(input: Any, dim: Any = None, keepdim: bool = False, dtype: Any = None) -> Tensor:
    return _t(input).sum(dim, keepdim, dtype=dtype)


def mean(input: Any, dim: Any = None, keepdim: bool = False, dtype: Any = None) -> Tensor:
    return _t(input).mean(dim, keepdim, dtype=dtype)


def flatten(input: Any, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    """``input.flatten(start_dim, end_dim)``; ``cnnlab.flatten(x, 1)`` keeps the batch."""
    return _t(input).flatten(start_dim, end_dim)


def reshape(input: Any, shape: Any) -> Tensor:
    return _t(input).reshape(shape)


def squeeze(input: Any, dim: Any = None) -> Tensor:
    return _t(input).squeeze(dim)


def unsqueeze(input: Any, dim: int) -> Tensor:
    return _t(input).unsqueeze(dim)


def transpose(input: Any, dim0: int, dim1: int) -> Tensor:
    return _t(input).transpose(dim0, dim1)


def permute(input: Any, dims: Any) -> Tensor:
    return _t(input).permute(dims)


def matmul(input: Any, other: Any) -> Tensor:
    return _t(input) @ other


def exp(input: Any) -> Tensor:
    return _t(input).exp()


def log(input: Any) -> Tensor:
    return _t(input).log()


def sqrt(input: Any) -> Tensor:
    return _t(input).sqrt()


def abs(input: Any) -> Tensor:
    return _t(input).abs()


def clamp(input: Any, min: Any = None, max: Any = None) -> Tensor:
    return _t(input).clamp(min, max)


clip = clamp


def relu(input: Any) -> Tensor:
    return _t(input).relu()


def sigmoid(input: Any) -> Tensor:
    return _t(input).sigmoid()


def tanh(input: Any) -> Tensor:
    return _t(input).tanh()


def softmax(input: Any, dim: int) -> Tensor:
    return _t(input).softmax(dim)


def log_softmax(input: Any, dim: int) -> Tensor:
    return _t(input).log_softmax(dim)


def where(condition: Any, input: Any, other: Any) -> Tensor:
    """``input`` where ``condition`` holds, ``other`` elsewhere (differentiable in both)."""
    from cnnlab.ops.basic import Where

    cond = np.asarray(condition.data if isinstance(condition, Tensor) else condition, bool)
    a, b = _t(input), _t(other)
    if not isinstance(other, Tensor) and a.dtype.kind == "f":
        b = Tensor(np.asarray(other, dtype=a.dtype))
    if not isinstance(input, Tensor) and b.dtype.kind == "f":
        a = Tensor(np.asarray(input, dtype=b.dtype))
    return Where.apply(a, b, condition=cond)


def numel(input: Any) -> int:
    return _t(input).numel()


def equal(input: Any, other: Any) -> bool:
    return _t(input).equal(other)


def allclose(input: Any, other: Any, rtol: float = 1e-5, atol: float = 1e-8) -> bool:
    return _t(input).allclose(other, rtol, atol)
