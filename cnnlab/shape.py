"""Shape arithmetic in one place: used by ops, layers, summary and explain alike."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

from cnnlab import _checkout  # noqa: F401  (a folder named cnnlab hiding the package)


def checked_once(check: Callable[..., Any]) -> Callable[..., Any]:
    """Remember a shape check's result per argument set: a layer sees the same shapes every
    step, and at batch 1 the checks were ~2 us an op. The cache is typed, so ``True`` never
    passes for ``1``; unhashable arguments (a list) are checked every time."""
    cached = functools.lru_cache(maxsize=512, typed=True)(check)

    @functools.wraps(check)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return cached(*args, **kwargs)
        except TypeError:  # unhashable: check it uncached (a check's own TypeError recurs)
            return check(*args, **kwargs)

    return wrapper


def flat_size(shape: Sequence[int], start_dim: int, end_dim: int = -1) -> tuple[int, ...]:
    """The shape after merging dimensions ``start_dim``..``end_dim`` (inclusive), written
    out (never -1, so an empty batch flattens too).

    Example:
        >>> flat_size((0, 16, 4, 4), 1), flat_size((2, 3, 4, 5), 1, 2)
        ((0, 256), (2, 12, 5))
    """
    shape = tuple(shape)
    if not shape:
        return (1,)
    a, b = start_dim % len(shape), end_dim % len(shape)
    size = 1
    for d in shape[a:b + 1]:
        size *= d
    return (*shape[:a], size, *shape[b + 1:])


def pair(value: int | Sequence[int], name: str = "value") -> tuple[int, int]:
    """Normalize an int or a pair of ints to ``(h, w)``.

    Raises:
        ValueError: if ``value`` is neither an int nor a sequence of two ints.
    """
    if type(value) is tuple and len(value) == 2 and type(value[0]) is int and \
            type(value[1]) is int:
        return value  # the common case, already normalized by a layer
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
    if isinstance(value, int) or hasattr(value, "__index__"):
        v = int(value)
        return (v, v)
    try:
        items = tuple(int(v) for v in value)
    except (TypeError, ValueError):  # e.g. None, 2.5 or a string such as "same"
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}") from None
    if len(items) != 2:
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
    return items  # type: ignore[return-value]


def conv_output_size(size: int, kernel: int, stride: int = 1, padding: int = 0,
                     dilation: int = 1) -> int:
    """Output length of a convolution or pooling window along one axis.

    ``out = floor((size + 2*padding - dilation*(kernel - 1) - 1) / stride) + 1``, which for
    ``dilation = 1`` is the familiar ``(W - F + 2P)/S + 1``.

    Args:
        size: input length (W).
        kernel: window length (F).
        stride: step between windows (S), at least 1.
        padding: zeros added on each side (P), at least 0.
        dilation: spacing between window taps (D), at least 1.

    Returns:
        The output length, at least 1.

    Raises:
        ValueError: if an argument is out of range or the output would be empty.

    Example:
        >>> conv_output_size(32, 5)
        28
        >>> conv_output_size(7, 3, stride=2)
        3
    """
    if kernel < 1:
        raise ValueError(f"kernel size must be at least 1, got {kernel}")
    if stride < 1:
        raise ValueError(f"stride must be at least 1, got {stride}")
    if padding < 0:
        raise ValueError(f"padding must be at least 0, got {padding}")
    if dilation < 1:
        raise ValueError(f"dilation must be at least 1, got {dilation}")
    span = dilation * (kernel - 1) + 1
    padded = size + 2 * padding
    if span > padded:
        raise ValueError(
            f"kernel spans {span} (kernel {kernel}, dilation {dilation}) but the padded input "
            f"is only {padded} ({size} + 2*{padding}); use a smaller kernel or more padding"
        )
    return (padded - span) // stride + 1


def dropped(size: int, kernel: int, stride: int = 1, padding: int = 0,
            dilation: int = 1) -> int:
    """How many rows (or columns) at the end of the padded input no window reaches: the
    remainder when ``(W - F + 2P)/S`` is not a whole number."""
    span = dilation * (kernel - 1) + 1
    return (size + 2 * padding - span) % stride


def is_exact(size: int, kernel: int, stride: int = 1, padding: int = 0,
             dilation: int = 1) -> bool:
    """True when the windows cover the padded input exactly (no rows or columns dropped)."""
    return dropped(size, kernel, stride, padding, dilation) == 0
