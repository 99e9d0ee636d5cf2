"""Tensor: a NumPy array that remembers how it was made, with PyTorch's names and meanings.

``dim=`` and ``keepdim=`` as in PyTorch (NumPy's ``axis=``/``keepdims=`` are accepted too),
``size()`` is a method, ``transpose(d0, d1)`` swaps two dimensions, ``max(dim)`` returns
``(values, indices)``, comparisons return bool tensors. The graph and ``backward`` live in
:mod:`cnnlab.autograd`; the differentiable operations behind the methods in
:mod:`cnnlab.ops.basic` (and, for activations, :mod:`cnnlab.ops.activation`).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from cnnlab import autograd
from cnnlab.autograd import Function, enable_grad, is_grad_enabled, no_grad, set_grad_enabled
from cnnlab.ops import basic as _basic

__all__ = ["Function", "Size", "Tensor", "device", "enable_grad", "is_grad_enabled", "no_grad",
           "set_grad_enabled", "tensor"]

_DTYPE_NAMES = {"float": np.float32, "float32": np.float32, "double": np.float64,
                "float64": np.float64, "long": np.int64, "int64": np.int64, "int": np.int32,
                "int32": np.int32, "bool": np.bool_, "uint8": np.uint8, "int8": np.int8,
                "int16": np.int16, "short": np.int16, "float16": np.float16,
                "half": np.float16}


def as_dtype(dtype: Any) -> np.dtype:
    """A NumPy dtype from a NumPy dtype, a type (``cnnlab.float32``, ``np.int64``) or a name.

    Raises:
        TypeError: for anything that names no dtype (a device name, say).
    """
    if isinstance(dtype, str) and dtype in _DTYPE_NAMES:
        return np.dtype(_DTYPE_NAMES[dtype])
    try:
        return np.dtype(dtype)
    except TypeError:
        raise TypeError(f"expected a dtype such as cnnlab.float32 or np.float64, got "
                        f"{dtype!r}") from None


class device:
    """Where a tensor lives. cnnlab computes on the CPU only: ``device("cpu")`` is the one
    device that tensors and modules can be moved to; other names can be written (so that
    ``device("cuda" if cuda.is_available() else "cpu")`` works) but not used.

    Example:
        >>> import cnnlab
        >>> cnnlab.device("cpu") == "cpu", cnnlab.device("cpu").type
        (True, 'cpu')
    """

    def __init__(self, type: Any, index: int | None = None) -> None:
        if isinstance(type, device):
            type, index = type.type, type.index
        if not isinstance(type, str):
            raise TypeError(f"device() expects a name such as 'cpu', got {type!r}")
        name, _, num = type.partition(":")
        self.type = name
        self.index = int(num) if num.isdigit() else index

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):
            other = device(other)
        return isinstance(other, device) and (self.type, self.index) == (other.type, other.index)

    def __hash__(self) -> int:
        return hash((self.type, self.index))

    def __str__(self) -> str:
        return self.type if self.index is None else f"{self.type}:{self.index}"

    def __repr__(self) -> str:
        return f"device(type='{self.type}')" if self.index is None else \
            f"device(type='{self.type}', index={self.index})"


CPU = device("cpu")


def check_device(dev: Any, who: str) -> None:
    """Accept the CPU; refuse any other device with a message that says what to do."""
    name = str(dev) if isinstance(dev, device) else dev
    if isinstance(name, str) and device(name).type == "cpu":
        return
    raise RuntimeError(
        f"{who}: cnnlab runs on the CPU only, got device {name!r}; use 'cpu' (e.g. "
        f"device = cnnlab.device('cpu')), or leave .to(device) out"
    )


def _to_array(data: Any, dtype: Any = None) -> np.ndarray:
    """float32 unless the caller passed a float64 array or asked for a dtype."""
    if isinstance(data, Tensor):
        data = data.data
    if dtype is not None:
        return np.asarray(data, dtype=as_dtype(dtype))
    if isinstance(data, np.ndarray):
        if data.dtype in (np.float32, np.float64) or data.dtype.kind in "iub":
            return data
        return data.astype(np.float32)
    if isinstance(data, (list, tuple)) and any(isinstance(d, Tensor) for d in data):
        data = [d.data if isinstance(d, Tensor) else d for d in data]
    arr = np.asarray(data)
    if arr.dtype.kind in "fc" or arr.dtype == object:
        return arr.astype(np.float32)
    return arr


def _index(index: Any) -> Any:
    """Tensors inside an index become their arrays."""
    if isinstance(index, Tensor):
        return index.data
    if isinstance(index, tuple):
        return tuple(i.data if isinstance(i, Tensor) else i for i in index)
    return index


def _dims(dim: Any, axis: Any, ndim: int) -> tuple[int, ...] | None:
    """``dim`` (PyTorch) or ``axis`` (NumPy) as a tuple of non-negative dimensions."""
    if dim is None:
        dim = axis
    if dim is None:
        return None
    dims = (dim,) if isinstance(dim, (int, np.integer)) else tuple(dim)
    out = []
    for d in dims:
        if not -max(ndim, 1) <= d < max(ndim, 1):
            raise IndexError(f"dimension {d} is out of range for a tensor with {ndim} "
                             f"dimension(s) (expected {-max(ndim, 1)}..{max(ndim, 1) - 1})")
        out.append(int(d) % max(ndim, 1))
    return tuple(out)


def _shape_args(shape: tuple[Any, ...]) -> tuple[int, ...]:
    """``f(2, 3)`` and ``f((2, 3))`` alike."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    return tuple(int(s) for s in shape)


class Size(tuple):
    """A shape, as ``size()`` returns it: a tuple with ``numel()``."""

    def numel(self) -> int:
        return int(np.prod(self, dtype=np.int64))


class ValuesIndices(NamedTuple):
    """What ``max(dim)``, ``min(dim)`` and ``topk`` return, as in PyTorch."""

    values: Tensor
    indices: Tensor


class Tensor:
    """An n-dimensional array that remembers how it was made, so gradients can flow back.

    Args:
        data: array-like. Python floats and lists of floats become float32; a NumPy float64
            array stays float64 (useful for gradient checks); integers (Python ints, lists of
            ints, integer arrays) stay integer, as in PyTorch.
        requires_grad: record operations on this tensor and fill ``.grad`` on ``backward()``.
        dtype: force a dtype (``cnnlab.float64``, ``np.int64``, ``"float32"``...).

    ``.data`` is the NumPy array itself (in PyTorch it is a tensor); ``.grad`` is a tensor.

    Example:
        >>> import cnnlab
        >>> x = cnnlab.tensor([[1.0, -2.0]], requires_grad=True)
        >>> (x * x).sum().backward()
        >>> x.grad
        Tensor([[ 2., -4.]])
        >>> x.size(), x.size(1), x.numel(), x.dim()
        ((1, 2), 2, 2, 2)
    """

    __array_priority__ = 100  # make ndarray + Tensor call Tensor.__radd__
    __hash__ = object.__hash__  # == compares elementwise; identity stays the hash

    def __init__(self, data: Any, requires_grad: bool = False, dtype: Any = None) -> None:
        self.data: np.ndarray = _to_array(data, dtype)
        if requires_grad and self.data.dtype.kind != "f":
            raise ValueError(
                f"only floating-point tensors can require gradients, got dtype {self.data.dtype}"
            )
        self.requires_grad = bool(requires_grad)
        self._grad: np.ndarray | None = None
        self._grad_view: Tensor | None = None
        self._ctx: Function | None = None

    # ----- plain properties -------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def device(self) -> device:
        return CPU

    @property
    def is_leaf(self) -> bool:
        return self._ctx is None

    @property
    def grad_fn(self) -> Function | None:
        return self._ctx

    @property
    def is_cuda(self) -> bool:
        return False

    def size(self, dim: int | None = None) -> Any:
        """The shape, or the length of dimension ``dim``."""
        if dim is None:
            return Size(self.data.shape)
        return self.data.shape[_dims(dim, None, self.data.ndim)[0]]

    def dim(self) -> int:
        return self.data.ndim

    def numel(self) -> int:
        return int(self.data.size)

    def element_size(self) -> int:
        return self.data.itemsize

    def __len__(self) -> int:
        if self.data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return len(self.data)

    def __iter__(self):
        if self.data.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(len(self.data)))

    # ----- gradients ----------------------------------------------------------------------
    @property
    def grad(self) -> Tensor | None:
        """The accumulated gradient, a tensor of this tensor's shape (None before backward)."""
        if self._grad is None:
            return None
        if self._grad_view is None or self._grad_view.data is not self._grad:
            self._grad_view = Tensor(self._grad, dtype=self._grad.dtype)
        return self._grad_view

    @grad.setter
    def grad(self, value: Any) -> None:
        self._set_grad(None if value is None else _to_array(value, self.data.dtype))

    def _set_grad(self, array: np.ndarray | None) -> None:
        # A reduction over every axis can give a NumPy scalar: keep arrays only.
        self._grad = None if array is None else np.asarray(array)
        self._grad_view = None

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        """Set ``requires_grad`` in place (only on leaves) and return this tensor."""
        if not requires_grad and self._ctx is not None:
            raise RuntimeError("requires_grad_(False) on a tensor computed from others; use "
                               ".detach() to cut it from the graph")
        if requires_grad and self.data.dtype.kind != "f":
            raise RuntimeError(f"only floating-point tensors can require gradients, got "
                               f"dtype {self.data.dtype}")
        self.requires_grad = bool(requires_grad)
        return self

    def backward(self, gradient: Any = None) -> None:
        """Backpropagate from this tensor, accumulating into ``.grad`` of the leaf tensors.

        Args:
            gradient: gradient of the final objective with respect to this tensor; may be
                omitted for a single-element tensor (it is then 1).

        Raises:
            RuntimeError: if this tensor does not require gradients, or ``gradient`` is
                omitted for a tensor with more than one element, or an op returns a gradient
                of the wrong shape or dtype.
        """
        if not self.requires_grad:
            raise RuntimeError(
                "backward() called on a tensor that does not require gradients: no input "
                "of the computation had requires_grad=True (or it ran under no_grad())"
            )
        if gradient is None:
            if self.data.size != 1:
                raise RuntimeError(
                    f"backward() without a gradient needs a single-element tensor, got shape "
                    f"{self.shape}; reduce it first (e.g. .sum() or .mean()) or pass gradient="
                )
            gradient = np.ones_like(self.data)
        else:
            gradient = _to_array(gradient, self.data.dtype)
            if gradient.shape != self.shape:
                raise RuntimeError(f"gradient has shape {gradient.shape}, expected {self.shape}")
        autograd.backward(self, gradient)

    def detach(self) -> Tensor:
        """A tensor sharing the data but cut from the graph."""
        return Tensor(self.data)

    def clone(self) -> Tensor:
        """A copy of the data that stays in the graph (gradients flow back through it)."""
        return _basic.Clone.apply(self)

    # ----- conversion -----------------------------------------------------------------------
    def numpy(self) -> np.ndarray:
        """The underlying array (shared, not copied)."""
        return self.data

    def item(self) -> Any:
        """The value of a one-element tensor as a Python number."""
        if self.data.size != 1:
            raise ValueError(f"item() needs a tensor with one element, got shape {self.shape}")
        return self.data.item()

    def tolist(self) -> Any:
        return self.data.tolist()

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return self.data if dtype is None else self.data.astype(dtype)

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    def __index__(self) -> int:
        if self.data.dtype.kind not in "iub":
            raise TypeError(f"only integer tensors can be used as an index, got {self.dtype}")
        return int(self.item())

    def __bool__(self) -> bool:
        if self.data.size != 1:
            raise RuntimeError(f"the truth value of a tensor with {self.data.size} elements is "
                               "ambiguous; use .any() or .all()")
        return bool(self.data.item())

    def to(self, *args: Any, **kwargs: Any) -> Tensor:
        """``to(dtype)``, ``to(device)``, ``to(device, dtype)`` or ``to(other)``: a tensor of
        that dtype (this one if nothing changes). Only the CPU is a device here.

        Raises:
            RuntimeError: for a device other than the CPU.
        """
        dtype = kwargs.pop("dtype", None)
        copy = bool(kwargs.pop("copy", False))
        kwargs.pop("non_blocking", None)
        targets = list(args) + ([kwargs.pop("device")] if "device" in kwargs else [])
        if kwargs:
            raise TypeError(f"to() got unexpected arguments {sorted(kwargs)}")
        for target in targets:
            if isinstance(target, Tensor):
                dtype = target.dtype
            elif isinstance(target, device) or (isinstance(target, str)
                                                and target not in _DTYPE_NAMES):
                check_device(target, "Tensor.to")
            else:
                dtype = target
        if dtype is None or as_dtype(dtype) == self.data.dtype:
            return self.clone() if copy else self
        return _basic.Cast.apply(self, dtype=as_dtype(dtype))

    def cpu(self) -> Tensor:
        return self

    def cuda(self, *args: Any, **kwargs: Any) -> Tensor:
        check_device("cuda", "Tensor.cuda")
        return self

    def type(self, dtype: Any = None) -> Any:
        """The dtype's name without an argument; a converted tensor with one."""
        return str(self.data.dtype) if dtype is None else self.to(dtype)

    def type_as(self, other: Tensor) -> Tensor:
        return self.to(other.dtype)

    def float(self) -> Tensor:
        return self.to(np.float32)

    def double(self) -> Tensor:
        return self.to(np.float64)

    def long(self) -> Tensor:
        return self.to(np.int64)

    def int(self) -> Tensor:
        return self.to(np.int32)

    def bool(self) -> Tensor:
        return self.to(np.bool_)

    def contiguous(self) -> Tensor:
        return self

    def __repr__(self) -> str:
        grad = ", requires_grad=True" if self.requires_grad else ""
        dtype = "" if self.data.dtype in (np.float32, np.int64, np.bool_) else \
            f", dtype={self.data.dtype}"
        body = np.array2string(self.data, prefix="Tensor(", separator=", ")
        return f"Tensor({body}{dtype}{grad})"

    # ----- arithmetic -------------------------------------------------------------------
    def _lift(self, other: Any) -> Tensor:
        """Numbers and arrays become constants: of this tensor's dtype when it is floating
        (so ``x * 0.5`` stays float32), by the usual rules otherwise (``int * 0.5`` is float)."""
        if isinstance(other, Tensor):
            return other
        if self.data.dtype.kind == "f":
            return Tensor(np.asarray(other, dtype=self.data.dtype))
        return Tensor(other)

    def __add__(self, other: Any) -> Tensor:
        return _basic.Add.apply(self, self._lift(other))

    def __radd__(self, other: Any) -> Tensor:
        return _basic.Add.apply(self._lift(other), self)

    def __sub__(self, other: Any) -> Tensor:
        return _basic.Sub.apply(self, self._lift(other))

    def __rsub__(self, other: Any) -> Tensor:
        return _basic.Sub.apply(self._lift(other), self)

    def __mul__(self, other: Any) -> Tensor:
        return _basic.Mul.apply(self, self._lift(other))

    def __rmul__(self, other: Any) -> Tensor:
        return _basic.Mul.apply(self._lift(other), self)

    def __truediv__(self, other: Any) -> Tensor:
        return _basic.Div.apply(self, self._lift(other))

    def __rtruediv__(self, other: Any) -> Tensor:
        return _basic.Div.apply(self._lift(other), self)

    def __floordiv__(self, other: Any) -> Tensor:
        return Tensor(self.data // _array(other))

    def __mod__(self, other: Any) -> Tensor:
        return Tensor(self.data % _array(other))

    def __neg__(self) -> Tensor:
        return _basic.Neg.apply(self)

    def __pos__(self) -> Tensor:
        return self

    def __abs__(self) -> Tensor:
        return self.abs()

    def __pow__(self, exponent: Any) -> Tensor:
        if isinstance(exponent, Tensor):
            raise TypeError("only a number is supported as an exponent")
        return _basic.Pow.apply(self, exponent=float(exponent))

    def __rpow__(self, base: Any) -> Tensor:
        return (self * float(np.log(base))).exp()

    def __matmul__(self, other: Any) -> Tensor:
        return _basic.MatMul.apply(self, self._lift(other))

    def __rmatmul__(self, other: Any) -> Tensor:
        return _basic.MatMul.apply(self._lift(other), self)

    def _inplace(self, op: Any, other: Any) -> Tensor:
        """``x += y`` and friends: in place on the data when no graph is recorded (an update
        under ``no_grad()``, say); a new node when one is."""
        other_t = self._lift(other)
        if is_grad_enabled() and (self.requires_grad or other_t.requires_grad):
            if self.requires_grad and self._ctx is None:
                raise RuntimeError(
                    "a leaf tensor that requires grad is being used in an in-place operation; "
                    "update parameters under cnnlab.no_grad(), or use x = x + y"
                )
            return op(self, other_t)
        result = op(Tensor(self.data), Tensor(other_t.data)).data
        np.copyto(self.data, result, casting="same_kind")
        return self

    def __iadd__(self, other: Any) -> Tensor:
        return self._inplace(Tensor.__add__, other)

    def __isub__(self, other: Any) -> Tensor:
        return self._inplace(Tensor.__sub__, other)

    def __imul__(self, other: Any) -> Tensor:
        return self._inplace(Tensor.__mul__, other)

    def __itruediv__(self, other: Any) -> Tensor:
        return self._inplace(Tensor.__truediv__, other)

    def add_(self, other: Any, alpha: float = 1) -> Tensor:
        return self._inplace(Tensor.__add__, other if alpha == 1 else _array(other) * alpha)

    def sub_(self, other: Any, alpha: float = 1) -> Tensor:
        return self._inplace(Tensor.__sub__, other if alpha == 1 else _array(other) * alpha)

    def mul_(self, other: Any) -> Tensor:
        return self._inplace(Tensor.__mul__, other)

    def div_(self, other: Any) -> Tensor:
        return self._inplace(Tensor.__truediv__, other)

    def zero_(self) -> Tensor:
        return self.fill_(0)

    def fill_(self, value: Any) -> Tensor:
        self._check_inplace("fill_")
        self.data[...] = value
        return self

    def copy_(self, src: Any) -> Tensor:
        self._check_inplace("copy_")
        np.copyto(self.data, np.broadcast_to(_array(src), self.data.shape), casting="unsafe")
        return self

    def _check_inplace(self, what: str) -> None:
        if is_grad_enabled() and self.requires_grad:
            raise RuntimeError(f"{what}() on a tensor that requires grad; call it under "
                               "cnnlab.no_grad(), or on .detach()")

    def __setitem__(self, index: Any, value: Any) -> None:
        self._check_inplace("item assignment")
        self.data[_index(index)] = _array(value)

    # ----- comparisons (no gradient: they return bool tensors) ----------------------------
    def __eq__(self, other: Any) -> Tensor:  # type: ignore[override]
        return Tensor(self.data == _array(other))

    def __ne__(self, other: Any) -> Tensor:  # type: ignore[override]
        return Tensor(self.data != _array(other))

    def __lt__(self, other: Any) -> Tensor:
        return Tensor(self.data < _array(other))

    def __le__(self, other: Any) -> Tensor:
        return Tensor(self.data <= _array(other))

    def __gt__(self, other: Any) -> Tensor:
        return Tensor(self.data > _array(other))

    def __ge__(self, other: Any) -> Tensor:
        return Tensor(self.data >= _array(other))

    def __invert__(self) -> Tensor:
        return Tensor(~self.data)

    def __and__(self, other: Any) -> Tensor:
        return Tensor(self.data & _array(other))

    def __or__(self, other: Any) -> Tensor:
        return Tensor(self.data | _array(other))

    def __xor__(self, other: Any) -> Tensor:
        return Tensor(self.data ^ _array(other))

    eq, ne, lt, le, gt, ge = __eq__, __ne__, __lt__, __le__, __gt__, __ge__

    def equal(self, other: Any) -> bool:
        """Whether both have the same shape and elements."""
        other = _array(other)
        return self.data.shape == other.shape and bool((self.data == other).all())

    def allclose(self, other: Any, rtol: float = 1e-5, atol: float = 1e-8) -> bool:
        return bool(np.allclose(self.data, _array(other), rtol=rtol, atol=atol))

    def any(self, dim: Any = None, keepdim: bool = False) -> Tensor:
        return Tensor(np.asarray(self.data.any(axis=_dims(dim, None, self.ndim),
                                               keepdims=keepdim)))

    def all(self, dim: Any = None, keepdim: bool = False) -> Tensor:
        return Tensor(np.asarray(self.data.all(axis=_dims(dim, None, self.ndim),
                                               keepdims=keepdim)))

    # ----- indexing and shape -------------------------------------------------------------
    def __getitem__(self, index: Any) -> Tensor:
        return _basic.GetItem.apply(self, index=_index(index))

    def reshape(self, *shape: Any) -> Tensor:
        return _basic.Reshape.apply(self, shape=_shape_args(shape))

    def view(self, *shape: Any) -> Tensor:
        """The same data in another shape (``-1``: the size that fits)."""
        return self.reshape(*shape)

    def view_as(self, other: Tensor) -> Tensor:
        return self.reshape(other.shape)

    def reshape_as(self, other: Tensor) -> Tensor:
        return self.reshape(other.shape)

    def flatten(self, start_dim: int = 0, end_dim: int = -1) -> Tensor:
        """Merge dimensions ``start_dim``..``end_dim`` (inclusive) into one."""
        if self.data.ndim == 0:
            return self.reshape(1)
        a, b = _dims((start_dim, end_dim), None, self.data.ndim)
        shape = self.shape
        return self.reshape(*shape[:a], -1 if 0 not in shape[a:b + 1] else 0, *shape[b + 1:])

    def unflatten(self, dim: int, sizes: Any) -> Tensor:
        d = _dims(dim, None, self.data.ndim)[0]
        return self.reshape(*self.shape[:d], *sizes, *self.shape[d + 1:])

    def squeeze(self, dim: Any = None) -> Tensor:
        """Drop dimensions of size 1 (all of them, or those of ``dim`` that are 1)."""
        dims = _dims(dim, None, self.data.ndim)
        if dims is None:
            dims = tuple(i for i, n in enumerate(self.shape) if n == 1)
        return self.reshape(*[n for i, n in enumerate(self.shape)
                              if not (i in dims and n == 1)])

    def unsqueeze(self, dim: int) -> Tensor:
        """Insert a dimension of size 1 at ``dim`` (negative counts from the new end)."""
        nd = self.data.ndim + 1
        if not -nd <= dim < nd:
            raise IndexError(f"unsqueeze: dimension {dim} is out of range for a result with "
                             f"{nd} dimensions (expected {-nd}..{nd - 1})")
        d = dim % nd
        return self.reshape(*self.shape[:d], 1, *self.shape[d:])

    def permute(self, *dims: Any) -> Tensor:
        """Reorder the dimensions: ``x.permute(0, 2, 3, 1)`` makes NCHW into NHWC."""
        dims = _shape_args(dims)
        if sorted(d % max(self.data.ndim, 1) for d in dims) != list(range(self.data.ndim)):
            raise ValueError(f"permute: {dims} is not an ordering of the {self.data.ndim} "
                             f"dimensions of a tensor of shape {self.shape}")
        return _basic.Transpose.apply(self, axes=tuple(d % self.data.ndim for d in dims))

    def transpose(self, *dims: Any) -> Tensor:
        """``transpose(d0, d1)`` swaps two dimensions, as in PyTorch; NumPy's forms (no
        argument: reverse all; a full ordering) are accepted too."""
        if len(dims) == 2 and all(isinstance(d, (int, np.integer)) for d in dims):
            d0, d1 = _dims(dims, None, self.data.ndim)
            axes = list(range(self.data.ndim))
            axes[d0], axes[d1] = axes[d1], axes[d0]
            return _basic.Transpose.apply(self, axes=tuple(axes))
        if not dims:
            return _basic.Transpose.apply(self, axes=None)
        return self.permute(*dims)

    swapaxes = transpose

    def t(self) -> Tensor:
        if self.data.ndim > 2:
            raise ValueError(f"t() expects a tensor with at most 2 dimensions, got {self.shape}")
        return self.transpose()

    @property
    def T(self) -> Tensor:
        return self.transpose()

    @property
    def mT(self) -> Tensor:
        return self.transpose(-2, -1)

    def expand(self, *sizes: Any) -> Tensor:
        """Broadcast to ``sizes`` (``-1`` keeps a dimension); gradients are summed back."""
        sizes = _shape_args(sizes)
        lead = len(sizes) - self.data.ndim
        shape = tuple(self.shape[i - lead] if s == -1 else s for i, s in enumerate(sizes))
        return _basic.Expand.apply(self, shape=shape)

    def expand_as(self, other: Tensor) -> Tensor:
        return self.expand(*other.shape)

    def repeat(self, *sizes: Any) -> Tensor:
        """Tile the tensor ``sizes[i]`` times along each dimension."""
        return _basic.Repeat.apply(self, reps=_shape_args(sizes))

    def chunk(self, chunks: int, dim: int = 0) -> tuple[Tensor, ...]:
        d = _dims(dim, None, self.data.ndim)[0]
        step = -(-self.shape[d] // chunks)
        return self.split(step, d)

    def split(self, split_size: Any, dim: int = 0) -> tuple[Tensor, ...]:
        d = _dims(dim, None, self.data.ndim)[0]
        n = self.shape[d]
        sizes = [split_size] * (-(-n // split_size)) if isinstance(split_size, int) \
            else list(split_size)
        out, start = [], 0
        for s in sizes:
            stop = min(n, start + s)
            out.append(self[(slice(None),) * d + (slice(start, stop),)])
            start = stop
        return tuple(out)

    # ----- reductions ---------------------------------------------------------------------
    def sum(self, dim: Any = None, keepdim: bool = False, *, axis: Any = None,
            keepdims: bool | None = None, dtype: Any = None) -> Tensor:
        x = self if dtype is None else self.to(dtype)
        keep = keepdim if keepdims is None else keepdims
        if x.data.dtype.kind == "b":
            x = x.long()
        return _basic.Sum.apply(x, axis=_dims(dim, axis, self.data.ndim), keepdims=keep)

    def mean(self, dim: Any = None, keepdim: bool = False, *, axis: Any = None,
             keepdims: bool | None = None, dtype: Any = None) -> Tensor:
        x = self if dtype is None else self.to(dtype)
        if x.data.dtype.kind != "f":
            # The scale 1/count would be cast to the integer dtype (0) and give a wrong mean.
            raise TypeError(f"mean() needs a floating-point tensor, got dtype {x.dtype}; "
                            "convert it first with .float()")
        dims = _dims(dim, axis, self.data.ndim)
        count = self.data.size if dims is None else int(np.prod([self.shape[a] for a in dims]))
        return x.sum(dims, keepdim if keepdims is None else keepdims) * (1.0 / max(count, 1))

    def var(self, dim: Any = None, keepdim: bool = False, *, correction: int = 1,
            unbiased: bool | None = None) -> Tensor:
        """Variance with Bessel's correction by default (``correction=1``), as in PyTorch."""
        if unbiased is not None:
            correction = int(unbiased)
        dims = _dims(dim, None, self.data.ndim)
        count = self.data.size if dims is None else int(np.prod([self.shape[a] for a in dims]))
        centred = self - self.mean(dims, keepdim=True)
        return (centred * centred).sum(dims, keepdim) * (1.0 / max(count - correction, 1))

    def std(self, dim: Any = None, keepdim: bool = False, *, correction: int = 1,
            unbiased: bool | None = None) -> Tensor:
        return self.var(dim, keepdim, correction=correction, unbiased=unbiased).sqrt()

    def _extreme(self, fn: str, dim: Any, keepdim: bool, axis: Any, keepdims: Any) -> Any:
        if isinstance(dim, Tensor):  # max(a, b): elementwise
            return (_basic.Maximum if fn == "max" else _basic.Minimum).apply(self, dim)
        keep = keepdim if keepdims is None else keepdims
        if dim is None and axis is not None:  # NumPy style: the values only
            return _basic.Extreme.apply(self, fn=fn, axis=_dims(None, axis, self.ndim),
                                        keepdims=keep)
        if dim is None:
            return _basic.Extreme.apply(self, fn=fn, axis=None, keepdims=False)
        d = _dims(dim, None, self.data.ndim)[0]
        arg = (np.argmax if fn == "max" else np.argmin)(self.data, axis=d)
        idx = np.expand_dims(arg, d)
        values = _basic.TakeAlong.apply(self, indices=idx, dim=d)
        if not keep:
            values = values.squeeze(d)
        return ValuesIndices(values, Tensor(idx if keep else arg))

    def max(self, dim: Any = None, keepdim: bool = False, *, axis: Any = None,
            keepdims: bool | None = None) -> Any:
        """The largest element; with ``dim``, ``(values, indices)`` along it; with a tensor,
        the elementwise maximum. Gradients go to the element chosen (ties: shared when
        reducing everything, the first index with ``dim``, as in PyTorch)."""
        return self._extreme("max", dim, keepdim, axis, keepdims)

    def min(self, dim: Any = None, keepdim: bool = False, *, axis: Any = None,
            keepdims: bool | None = None) -> Any:
        """Like :meth:`max`, for the smallest."""
        return self._extreme("min", dim, keepdim, axis, keepdims)

    def amax(self, dim: Any = None, keepdim: bool = False) -> Tensor:
        return _basic.Extreme.apply(self, fn="max", axis=_dims(dim, None, self.ndim),
                                    keepdims=keepdim)

    def amin(self, dim: Any = None, keepdim: bool = False) -> Tensor:
        return _basic.Extreme.apply(self, fn="min", axis=_dims(dim, None, self.ndim),
                                    keepdims=keepdim)

    def argmax(self, dim: Any = None, keepdim: bool = False, *, axis: Any = None) -> Tensor:
        """Index of the largest element (of the flattened tensor without ``dim``)."""
        return self._arg(np.argmax, dim if dim is not None else axis, keepdim)

    def argmin(self, dim: Any = None, keepdim: bool = False, *, axis: Any = None) -> Tensor:
        return self._arg(np.argmin, dim if dim is not None else axis, keepdim)

    def _arg(self, fn: Any, dim: Any, keepdim: bool) -> Tensor:
        if dim is None:
            out = np.asarray(fn(self.data))
            return Tensor(out.reshape((1,) * self.data.ndim) if keepdim else out)
        d = _dims(dim, None, self.data.ndim)[0]
        return Tensor(np.asarray(fn(self.data, axis=d, keepdims=keepdim)).astype(np.int64))

    def topk(self, k: int, dim: int = -1, largest: bool = True,
             sorted: bool = True) -> ValuesIndices:
        """The ``k`` largest (or smallest) elements along ``dim`` and their indices."""
        d = _dims(dim, None, self.data.ndim)[0]
        key = -self.data if largest else self.data
        idx = np.argsort(key, axis=d, kind="stable")
        idx = np.take(idx, np.arange(k), axis=d)
        return ValuesIndices(_basic.TakeAlong.apply(self, indices=idx, dim=d),
                             Tensor(idx.astype(np.int64)))

    def sort(self, dim: int = -1, descending: bool = False) -> ValuesIndices:
        d = _dims(dim, None, self.data.ndim)[0]
        return self.topk(self.shape[d], d, largest=descending)

    def gather(self, dim: int, index: Any) -> Tensor:
        """``out[i][j] = self[i][index[i][j]]`` along ``dim`` (as ``torch.gather``)."""
        d = _dims(dim, None, self.data.ndim)[0]
        return _basic.TakeAlong.apply(self, indices=np.asarray(_array(index)), dim=d)

    # ----- elementwise math -----------------------------------------------------------------
    def exp(self) -> Tensor:
        return _basic.Exp.apply(self)

    def log(self) -> Tensor:
        return _basic.Log.apply(self)

    def sqrt(self) -> Tensor:
        return _basic.Pow.apply(self, exponent=0.5)

    def square(self) -> Tensor:
        return self * self

    def abs(self) -> Tensor:
        return _basic.Abs.apply(self)

    def sign(self) -> Tensor:
        return Tensor(np.sign(self.data))

    def round(self) -> Tensor:
        return Tensor(np.round(self.data))

    def floor(self) -> Tensor:
        return Tensor(np.floor(self.data))

    def ceil(self) -> Tensor:
        return Tensor(np.ceil(self.data))

    def clamp(self, min: Any = None, max: Any = None) -> Tensor:
        """Limit values to [min, max]; gradient 1 inside, 0 where clamped."""
        return _basic.Clamp.apply(self, low=min, high=max)

    clip = clamp

    def pow(self, exponent: Any) -> Tensor:
        return self ** exponent

    def matmul(self, other: Any) -> Tensor:
        return self @ other

    mm = matmul

    def add(self, other: Any, alpha: float = 1) -> Tensor:
        return self + (other if alpha == 1 else self._lift(other) * alpha)

    def sub(self, other: Any, alpha: float = 1) -> Tensor:
        return self - (other if alpha == 1 else self._lift(other) * alpha)

    def mul(self, other: Any) -> Tensor:
        return self * other

    def div(self, other: Any) -> Tensor:
        return self / other

    def neg(self) -> Tensor:
        return -self

    def relu(self) -> Tensor:
        from cnnlab.ops import activation

        return activation.relu(self)

    def sigmoid(self) -> Tensor:
        from cnnlab.ops import activation

        return activation.sigmoid(self)

    def tanh(self) -> Tensor:
        from cnnlab.ops import activation

        return activation.tanh(self)

    def softmax(self, dim: int) -> Tensor:
        from cnnlab.ops import activation

        return activation.softmax(self, dim)

    def log_softmax(self, dim: int) -> Tensor:
        from cnnlab.ops import activation

        return activation.log_softmax(self, dim)


Tensor._plain_class = Tensor  # what ops return, even for a Parameter input (see autograd)


def _array(value: Any) -> Any:
    return value.data if isinstance(value, Tensor) else value


def tensor(data: Any, requires_grad: bool = False, dtype: Any = None) -> Tensor:
    """Make a :class:`Tensor` (float32 unless ``data`` is a float64 array or ``dtype`` says).

    Example:
        >>> import cnnlab
        >>> cnnlab.tensor([1, 2]).dtype, cnnlab.tensor([1.0, 2.0]).dtype
        (dtype('int64'), dtype('float32'))
    """
    return Tensor(data, requires_grad=requires_grad, dtype=dtype)
