"""The graph and reverse-mode autodiff over it: grad mode, ``Function``, ``backward``.

Every differentiable op is a :class:`Function`: ``forward`` computes on plain arrays and saves
what ``backward`` needs; ``backward`` maps the output's gradient to one gradient per input.
:func:`backward` walks the graph in reverse topological order (iteratively, so deep graphs
never hit Python's recursion limit) and accumulates gradients of reused nodes.

This module knows nothing of the Tensor class beyond the attributes it reads (``data``,
``requires_grad``, ``_ctx``, ``_grad``), so the ops can import it without importing the
tensor, and the tensor can import the ops.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from cnnlab.kernels import parallel


class _GradMode(threading.local):
    # Per thread, as in PyTorch: a server thread evaluating under no_grad() must not turn
    # off the graph of another thread that is training.
    enabled = True


_mode = _GradMode()
# The tracer recording a forward pass (cnnlab.onnx.trace), or None; Function.apply and
# Module.__call__ report to it. Nothing else reads or sets it.
_tracer: Any = None


class set_grad_enabled:
    """Turn graph building on or off: as a function call, or as a context manager that
    restores the previous mode on exit.

    Example:
        >>> import cnnlab
        >>> with cnnlab.set_grad_enabled(False):
        ...     cnnlab.is_grad_enabled()
        False
    """

    def __init__(self, mode: bool) -> None:
        self._prev = _mode.enabled
        _mode.enabled = bool(mode)

    def __enter__(self) -> set_grad_enabled:
        return self

    def __exit__(self, *exc: object) -> None:
        _mode.enabled = self._prev


class _GradModeBlock:
    """A context manager (and decorator, with or without parentheses) that sets the grad
    mode and restores it."""

    _target = True

    def __new__(cls, func: Any = None) -> Any:
        self = super().__new__(cls)
        if func is not None:  # used as a bare decorator: @no_grad
            self.__init__()
            return self(func)
        return self

    def __init__(self, func: Any = None) -> None:
        # A stack, not one slot: a decorated function re-enters the same instance when it
        # recurses, and each exit must restore what its own enter saw.
        self._prev: list[bool] = []

    def __enter__(self) -> _GradModeBlock:
        self._prev.append(_mode.enabled)
        _mode.enabled = self._target
        return self

    def __exit__(self, *exc: object) -> None:
        _mode.enabled = self._prev.pop()

    def __call__(self, fn: Any) -> Any:
        import functools

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with type(self)():
                return fn(*args, **kwargs)

        return wrapper


class no_grad(_GradModeBlock):
    """Context manager (and decorator) that turns off graph building, e.g. for evaluation.

    Example:
        >>> import cnnlab
        >>> w = cnnlab.tensor([1.0, 2.0], requires_grad=True)
        >>> with cnnlab.no_grad():
        ...     y = w * 2
        >>> y.requires_grad
        False
    """

    _target = False


class enable_grad(_GradModeBlock):
    """Context manager (and decorator) that turns graph building back on inside ``no_grad``."""

    _target = True


inference_mode = no_grad  # PyTorch's faster no_grad; here they are the same thing


def is_grad_enabled() -> bool:
    """Whether ops currently record the graph (in this thread)."""
    return _mode.enabled


class Function:
    """Base of every differentiable op.

    Subclasses implement ``forward(self, *arrays, **options) -> ndarray`` (saving on ``self``
    what backward needs) and ``backward(self, grad) -> gradient or tuple of gradients`` (one
    per tensor input, ``None`` where no gradient is needed). ``self.needs_grad[i]`` tells
    whether input ``i`` wants a gradient, so backward can skip work.
    """

    parents: tuple[Any, ...] = ()
    needs_grad: tuple[bool, ...] = ()

    def forward(self, *args: Any, **kwargs: Any) -> np.ndarray:
        raise NotImplementedError

    def backward(self, grad: np.ndarray) -> Any:
        raise NotImplementedError

    @classmethod
    def apply(cls, *inputs: Any, **options: Any) -> Any:
        ctx = cls()
        ctx.needs_grad = tuple(t.requires_grad for t in inputs) if _mode.enabled else (
            (False,) * len(inputs))
        # The output is a plain Tensor even when an input is a Parameter; made without
        # __init__ so that ops keep their own dtypes.
        out = object.__new__(inputs[0]._plain_class)
        out.data = ctx.forward(*[t.data for t in inputs], **options)
        out._grad = None
        out._grad_view = None
        out.requires_grad = any(ctx.needs_grad)
        out._ctx = None
        if out.requires_grad:
            ctx.parents = inputs
            out._ctx = ctx
        if _tracer is not None:
            _tracer.record_function(cls, inputs, options, out)
        return out


def backward(root: Any, grad: np.ndarray) -> None:
    """Backpropagate ``grad`` (the gradient of the objective with respect to ``root``) and
    accumulate into the ``.grad`` of every leaf that requires gradients.

    Raises:
        RuntimeError: if an op returns the wrong number of gradients, or one of the wrong
            shape or dtype (naming the op).
    """
    order = _topological_order(root)
    grads: dict[int, np.ndarray] = {id(root): grad}
    # Arrays already handed out (to a leaf, or the caller's own grad), so none is shared.
    given: set[int] = {id(grad)}
    with parallel.region(_batch_of(order)):  # once for the whole pass, not once per kernel
        for node in reversed(order):
            g = grads.pop(id(node), None)
            if g is None:
                continue
            ctx = node._ctx
            if ctx is None:
                if node.requires_grad:
                    _accumulate(node, g, given)
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
                if pg.shape != parent.data.shape or pg.dtype != parent.data.dtype:
                    raise RuntimeError(
                        f"{type(ctx).__name__}.backward returned a gradient of shape "
                        f"{pg.shape} {pg.dtype} for an input of shape {parent.data.shape} "
                        f"{parent.data.dtype}"
                    )
                key = id(parent)
                grads[key] = pg if key not in grads else grads[key] + pg


def _accumulate(leaf: Any, g: np.ndarray, given: set[int]) -> None:
    if leaf._grad is None:
        # A view (g.base set) may share memory with another leaf's gradient. The copy keeps
        # the view's memory order: a channels-last gradient copied in C order took 1.1 ms
        # per million values, in its own order 0.1 ms.
        leaf._set_grad(g.copy(order="K") if id(g) in given or g.base is not None else g)
        given.add(id(leaf._grad))
    else:
        leaf._set_grad(leaf._grad + g)


def _batch_of(order: list[Any]) -> int:
    """The batch the threads of the backward pass are decided for, as they were for the
    forward (see ``parallel.region``): the largest that a module's forward pass marked on
    its outputs, or the largest batch of image maps (4-D results of ops, not 4-D weights)
    in the graph."""
    return max((getattr(node, "_pass_batch", 0) or
                (len(node.data) if node._ctx is not None and node.data.ndim == 4 else 0)
                for node in order), default=0)


def _topological_order(root: Any) -> list[Any]:
    """Nodes reachable from ``root``, each after all of its inputs (iterative DFS)."""
    order: list[Any] = []
    visited: set[int] = set()
    stack: list[tuple[Any, bool]] = [(root, False)]
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
