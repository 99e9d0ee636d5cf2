"""cat and stack: joining tensors along a dimension, with the gradient split back."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from cnnlab.autograd import Function
from cnnlab.tensor import Tensor


class Cat(Function):
    def forward(self, *arrays, dim):
        self.dim = dim
        self.bounds = np.cumsum([0] + [a.shape[dim] for a in arrays])
        return np.concatenate(arrays, axis=dim)

    def backward(self, grad):
        lead = (slice(None),) * self.dim
        return tuple(grad[lead + (slice(a, z),)] if need else None
                     for a, z, need in zip(self.bounds[:-1], self.bounds[1:], self.needs_grad,
                                           strict=True))


class Stack(Function):
    def forward(self, *arrays, dim):
        self.dim = dim
        return np.stack(arrays, axis=dim)

    def backward(self, grad):
        lead = (slice(None),) * self.dim
        return tuple(grad[lead + (i,)] if need else None
                     for i, need in enumerate(self.needs_grad))


def _tensors(tensors: Any, who: str) -> list[Tensor]:
    if isinstance(tensors, (Tensor, np.ndarray)) or not isinstance(tensors, Sequence):
        raise TypeError(f"{who} expects a list or tuple of tensors, got "
                        f"{type(tensors).__name__}; wrap them: {who}([a, b])")
    if len(tensors) == 0:
        raise ValueError(f"{who} expects a non-empty list of tensors, got an empty one")
    out = [t if isinstance(t, Tensor) else Tensor(t) for t in tensors]
    dtypes = {t.dtype for t in out}
    if len(dtypes) > 1:
        found = ", ".join(f"{i}: {t.dtype}" for i, t in enumerate(out))
        raise ValueError(f"{who} expects tensors of one dtype, got {found}; convert them "
                         f"first, e.g. to float32")
    return out


def _dim(dim: Any, ndim: int, who: str) -> int:
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)):
        raise TypeError(f"{who}: dim must be an int, got {dim!r}")
    if not -ndim <= dim < ndim:
        raise ValueError(f"{who}: dim {dim} is out of range for {ndim} dimensions (expected "
                         f"{-ndim} to {ndim - 1})")
    return int(dim) % ndim


def cat(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    """Concatenate tensors along an existing dimension (``torch.cat``).

    Args:
        tensors: a non-empty list of tensors (or arrays) of one dtype and the same shape
            except along ``dim``.
        dim: the dimension to join along; negative counts from the end.

    Returns:
        A tensor whose size along ``dim`` is the sum of the inputs'; the gradient of each
        input is its slice of the output's gradient.

    Raises:
        ValueError: an empty list, different dtypes, numbers of dimensions or sizes away
            from ``dim``, or ``dim`` out of range.

    Example:
        >>> import numpy as np, cnnlab
        >>> a, b = cnnlab.Tensor(np.zeros((2, 3))), cnnlab.Tensor(np.ones((2, 1)))
        >>> cnnlab.cat([a, b], dim=1).shape
        (2, 4)
    """
    ts = _tensors(tensors, "cat")
    first = ts[0]
    if first.ndim == 0:
        raise ValueError("cat: zero-dimensional tensors cannot be concatenated; use stack")
    d = _dim(dim, first.ndim, "cat")
    for i, t in enumerate(ts):
        if t.ndim != first.ndim or t.shape[:d] + t.shape[d + 1:] != \
                first.shape[:d] + first.shape[d + 1:]:
            raise ValueError(
                f"cat: tensors must have the same shape except in dimension {d}, got "
                f"{first.shape} (tensor 0) and {t.shape} (tensor {i})"
            )
    return Cat.apply(*ts, dim=d)


def stack(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    """Stack tensors of the same shape along a new dimension (``torch.stack``).

    Args:
        tensors: a non-empty list of tensors (or arrays) of one shape and dtype.
        dim: where the new dimension goes, from ``-(ndim + 1)`` to ``ndim``.

    Returns:
        A tensor with one more dimension, of size ``len(tensors)`` at ``dim``.

    Raises:
        ValueError: an empty list, different shapes or dtypes, or ``dim`` out of range.

    Example:
        >>> import numpy as np, cnnlab
        >>> a, b = cnnlab.Tensor(np.zeros((2, 3))), cnnlab.Tensor(np.ones((2, 3)))
        >>> cnnlab.stack([a, b], dim=-1).shape
        (2, 3, 2)
    """
    ts = _tensors(tensors, "stack")
    first = ts[0]
    for i, t in enumerate(ts):
        if t.shape != first.shape:
            raise ValueError(f"stack: tensors must all have the same shape, got {first.shape} "
                             f"(tensor 0) and {t.shape} (tensor {i})")
    d = _dim(dim, first.ndim + 1, "stack")
    return Stack.apply(*ts, dim=d)
