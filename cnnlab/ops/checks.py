"""Checks shared by the ops with weights: what dtypes their inputs may have.

As in PyTorch, an op that multiplies an input by weights (linear, conv2d, batch_norm)
needs both in the same floating-point dtype: mixing float64 data with float32 weights is
refused at the first such op, with the conversion to make, rather than computed in float64
and failing later in backward. Elementwise arithmetic promotes instead (float32 + float64 is
float64, and each input's gradient keeps its own dtype).
"""

from __future__ import annotations

from typing import Any


def check_floating_point(who: str, input: Any) -> None:
    """Raise TypeError unless ``input`` is floating point (for ops without weights that
    may come first in a model, such as pooling).

    Raises:
        TypeError: naming the op, the dtype and the conversion that fixes it.
    """
    got = input.data.dtype
    if got.kind != "f":
        hint = ("x.float() / 255 for 8-bit images" if got.kind == "u" else "x.float()")
        raise TypeError(f"{who} expected floating-point input, got {got} input of shape "
                        f"{tuple(input.shape)}; convert it first, e.g. {hint}")


def check_float_input(who: str, input: Any, weight: Any) -> None:
    """Raise TypeError unless ``input`` is floating point with ``weight``'s dtype.

    Raises:
        TypeError: naming the op, both dtypes and the conversion that fixes it.
    """
    got, want = input.data.dtype, weight.data.dtype
    if got == want:
        return
    if got.kind != "f":
        hint = ("x.float() / 255 for 8-bit images" if got.kind == "u" else "x.float()")
        raise TypeError(f"{who} expected floating-point input ({want}), got {got} input of "
                        f"shape {tuple(input.shape)}; convert it first, e.g. {hint}")
    raise TypeError(
        f"{who}: the input is {got} but the weights are {want}; convert the input with "
        f"{'x.float()' if want.name == 'float32' else 'x.double()'} (or the model with "
        f"{'model.double()' if got.name == 'float64' else 'model.float()'}) so they match"
    )
