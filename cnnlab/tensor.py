"""Tensor, the graph it builds, and reverse-mode autodiff over it.

Every differentiable op is a :class:`Function`: ``forward`` computes on plain arrays and saves
what ``backward`` needs; ``backward`` maps the output's gradient to one gradient per input.
``Tensor.backward`` walks the graph in reverse topological order (iteratively, so deep graphs
never hit Python's recursion limit) and accumulates gradients of reused nodes.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np

from cnnlab.kernels.parallel import single_threaded_blas

_grad_enabled = True
# The tracer recording a forward pass (cnnlab.onnx.trace), or None; Function.apply and
# Module.__call__ report to it. Nothing else reads or sets it.
_tracer: Any = None


class no_grad(contextlib.ContextDecorator):
    """Context manager (and decorator) that turns off graph building, e.g. for evaluation.

    Example:
        >>> import cnnlab
        >>> w = cnnlab.Tensor([1.0, 2.0], requires_grad=True)
        >>> with cnnlab.no_grad():
        ...     y = w * 2
        >>> y.requires_grad
        False
    """

    def __init__(self) -> None:
        # A stack, not one slot: a decorated function re-enters the same instance when it
        # recurses, and each exit must restore what its own enter saw.
        self._prev: list[bool] = []

    def __enter__(self) -> no_grad:
        global _grad_enabled
        self._prev.append(_grad_enabled)
        _grad_enabled = False
        return self

    def __exit__(self, *exc: object) -> None:
        global _grad_enabled
        _grad_enabled = self._prev.pop()


def is_grad_enabled() -> bool:
    """Whether ops currently record the graph."""
    return _grad_enabled


def _to_array(data: Any, dtype: Any = None) -> np.ndarray:
    """float32 unless the caller passed a float64 array or asked for a dtype."""
    if isinstance(data, Tensor):
        data = data.data
    if dtype is not None:
        return np.asarray(data, dtype=dtype)
    if isinstance(data, np.ndarray):
        if data.dtype in (np.float32, np.float64) or data.dtype.kind in "iub":
            return data
        return data.astype(np.float32)
    arr = np.asarray(data)
    if arr.dtype.kind in "fc" or arr.dtype == object:
        return arr.astype(np.float32)
    return arr


class Tensor:
    """An n-dimensional array that remembers how it was made, so gradients can flow back.

    Args:
        data: array-like. Python floats and lists of floats become float32; a NumPy float64
            array stays float64 (useful for gradient checks); integers (Python ints, lists of
            ints, integer arrays) stay integer, as in PyTorch.
        requires_grad: record operations on this tensor and fill ``.grad`` on ``backward()``.
        dtype: force a dtype.

    Example:
        >>> import cnnlab
        >>> x = cnnlab.Tensor([[1.0, -2.0]], requires_grad=True)
        >>> (x * x).sum().backward()
        >>> x.grad
        array([[ 2., -4.]], dtype=float32)
    """

    __array_priority__ = 100  # make ndarray + Tensor call Tensor.__radd__

    def __init__(self, data: Any, requires_grad: bool = False, dtype: Any = None) -> None:
        self.data: np.ndarray = _to_array(data, dtype)
        if requires_grad and self.data.dtype.kind != "f":
            raise ValueError(
                f"only floating-point tensors can require gradients, got dtype {self.data.dtype}"
            )
        self.requires_grad = bool(requires_grad)
        self.grad: np.ndarray | None = None
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
    def size(self) -> int:
        return self.data.size

    def __len__(self) -> int:
        return len(self.data)

    def numpy(self) -> np.ndarray:
        """The underlying array (shared, not copied)."""
        return self.data

    def item(self) -> float:
        return self.data.item()

    def detach(self) -> Tensor:
        """A tensor sharing the data but cut from the graph."""
        return Tensor(self.data)

    def __repr__(self) -> str:
        grad = ", requires_grad=True" if self.requires_grad else ""
        return f"Tensor({np.array2string(self.data, prefix='Tensor(')}{grad})"

    # ----- autodiff ---------------------------------------------------------------------
    def backward(self, grad: Any = None) -> None:
        """Backpropagate from this tensor, accumulating into ``.grad`` of the leaf tensors.

        Args:
            grad: gradient of the final objective with respect to this tensor; may be
                omitted for a single-element tensor (it is then 1).

        Raises:
            RuntimeError: if this tensor does not require gradients, or ``grad`` is omitted
                for a tensor with more than one element, or an op returns a gradient of the
                wrong shape or dtype.
        """
        if not self.requires_grad:
            raise RuntimeError(
                "backward() called on a tensor that does not require gradients: no input "
                "of the computation had requires_grad=True (or it ran under no_grad())"
            )
        if grad is None:
            if self.data.size != 1:
                raise RuntimeError(
                    f"backward() without a gradient needs a single-element tensor, got shape "
                    f"{self.shape}; reduce it first (e.g. .sum() or .mean()) or pass grad="
                )
            grad = np.ones_like(self.data)
        else:
            grad = _to_array(grad, self.data.dtype)
            if grad.shape != self.shape:
                raise RuntimeError(f"grad has shape {grad.shape}, expected {self.shape}")

        order = _topological_order(self)
        grads: dict[int, np.ndarray] = {id(self): grad}
        # Arrays already handed out (to a leaf, or the caller's own grad), so none is shared.
        given: set[int] = {id(grad)}
        with single_threaded_blas:  # once for the whole pass, not once per kernel
            for node in reversed(order):
                g = grads.pop(id(node), None)
                if g is None:
                    continue
                ctx = node._ctx
                if ctx is None:
                    if node.requires_grad:
                        if node.grad is None:
                            # A view (g.base set) may share memory with another leaf's gradient.
                            node.grad = g.copy() if id(g) in given or g.base is not None else g
                            given.add(id(node.grad))
                        else:
                            node.grad = node.grad + g
                    continue
                in_grads = ctx.backward(g)
                if not isinstance(in_grads, tuple):
                    in_grads = (in_grads,)
                if len(in_grads) != len(ctx.parents):
                    raise RuntimeError(
                        f"{type(ctx).__name__}.backward returned {len(in_grads)} gradients for "
                        f"{len(ctx.parents)} inputs"
                    )
                for parent, pg in zip(ctx.parents, in_grads, strict=True):
                    if pg is None or not parent.requires_grad:
                        continue
                    if pg.shape != parent.shape or pg.dtype != parent.dtype:
                        raise RuntimeError(
                            f"{type(ctx).__name__}.backward returned a gradient of shape "
                            f"{pg.shape} {pg.dtype} for an input of shape {parent.shape} "
                            f"{parent.dtype}"
                        )
                    key = id(parent)
                    grads[key] = pg if key not in grads else grads[key] + pg

    # ----- operators (implemented in cnnlab.ops.basic) ------------------------------------
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

    def __neg__(self) -> Tensor:
        return _basic.Neg.apply(self)

    def __pow__(self, exponent: float) -> Tensor:
        if isinstance(exponent, Tensor):
            raise TypeError("only a number is supported as an exponent")
        return _basic.Pow.apply(self, exponent=float(exponent))

    def __matmul__(self, other: Any) -> Tensor:
        return _basic.MatMul.apply(self, self._lift(other))

    def __rmatmul__(self, other: Any) -> Tensor:
        return _basic.MatMul.apply(self._lift(other), self)

    def __getitem__(self, index: Any) -> Tensor:
        if isinstance(index, Tensor):
            index = index.data
        return _basic.GetItem.apply(self, index=index)

    def reshape(self, *shape: Any) -> Tensor:
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return _basic.Reshape.apply(self, shape=shape)

    def view(self, *shape: Any) -> Tensor:
        return self.reshape(*shape)

    def flatten(self, start_dim: int = 0) -> Tensor:
        return self.reshape(*self.shape[:start_dim], -1)

    def transpose(self, *axes: int) -> Tensor:
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        return _basic.Transpose.apply(self, axes=axes or None)

    @property
    def T(self) -> Tensor:
        return self.transpose()

    def sum(self, axis: Any = None, keepdims: bool = False) -> Tensor:
        return _basic.Sum.apply(self, axis=axis, keepdims=keepdims)

    def mean(self, axis: Any = None, keepdims: bool = False) -> Tensor:
        if self.data.dtype.kind != "f":
            # The scale 1/count would be cast to the integer dtype (0) and give a wrong mean.
            raise TypeError(f"mean() needs a floating-point tensor, got dtype {self.dtype}; "
                            "convert it first, e.g. cnnlab.Tensor(x.data.astype(np.float32))")
        count = self.data.size if axis is None else int(
            np.prod([self.shape[a] for a in np.atleast_1d(axis)]))
        return self.sum(axis=axis, keepdims=keepdims) * (1.0 / count)

    def max(self, axis: Any = None, keepdims: bool = False) -> Tensor:
        return _basic.Max.apply(self, axis=axis, keepdims=keepdims)

    def argmax(self, axis: Any = None) -> np.ndarray:
        return self.data.argmax(axis=axis)

    def exp(self) -> Tensor:
        return _basic.Exp.apply(self)

    def log(self) -> Tensor:
        return _basic.Log.apply(self)

    def relu(self) -> Tensor:
        from cnnlab.ops.activation import relu

        return relu(self)


def tensor(data: Any, requires_grad: bool = False, dtype: Any = None) -> Tensor:
    """Make a :class:`Tensor` (float32 unless ``data`` is a float64 array or ``dtype`` says)."""
    return Tensor(data, requires_grad=requires_grad, dtype=dtype)


class Function:
    """Base of every differentiable op.

    Subclasses implement ``forward(self, *arrays, **options) -> ndarray`` (saving on ``self``
    what backward needs) and ``backward(self, grad) -> gradient or tuple of gradients`` (one
    per tensor input, ``None`` where no gradient is needed). ``self.needs_grad[i]`` tells
    whether input ``i`` wants a gradient, so backward can skip work.
    """

    parents: tuple[Tensor, ...] = ()
    needs_grad: tuple[bool, ...] = ()

    def forward(self, *args: Any, **kwargs: Any) -> np.ndarray:
        raise NotImplementedError

    def backward(self, grad: np.ndarray) -> Any:
        raise NotImplementedError

    @classmethod
    def apply(cls, *inputs: Tensor, **options: Any) -> Tensor:
        ctx = cls()
        ctx.needs_grad = tuple(t.requires_grad for t in inputs) if _grad_enabled else (
            (False,) * len(inputs))
        out = Tensor.__new__(Tensor)  # skip dtype coercion: ops keep their own dtypes
        out.data = ctx.forward(*[t.data for t in inputs], **options)
        out.grad = None
        out.requires_grad = any(ctx.needs_grad)
        out._ctx = None
        if out.requires_grad:
            ctx.parents = inputs
            out._ctx = ctx
        if _tracer is not None:
            _tracer.record_function(cls, inputs, options, out)
        return out


def _topological_order(root: Tensor) -> list[Tensor]:
    """Nodes reachable from ``root``, each after all of its inputs (iterative DFS)."""
    order: list[Tensor] = []
    visited: set[int] = set()
    stack: list[tuple[Tensor, bool]] = [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if id(node) in visited:
            continue
        visited.add(id(node))
        stack.append((node, True))
        if node._ctx is not None:
            for parent in node._ctx.parents:
                if id(parent) not in visited and parent.requires_grad:
                    stack.append((parent, False))
    return order


from cnnlab.ops import basic as _basic  # noqa: E402  (ops need Function defined first)
