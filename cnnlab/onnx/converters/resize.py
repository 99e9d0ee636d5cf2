"""Upsampling: ``nn.Upsample`` / ``interpolate`` (nearest, nearest-exact, bilinear with or
without align_corners, PyTorch's semantics) <-> ``Resize``."""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnlab import nn
from cnnlab.onnx.registry import exports, imports


def _pair(v: Any) -> list[Any]:
    return list(v) if isinstance(v, (tuple, list)) else [v, v]


def write_resize(ctx: Any, call: Any, x: Any, size: Any, scale_factor: Any, mode: str,
                 align_corners: bool | None) -> None:
    """A ``Resize`` node with PyTorch's coordinate mapping for ``mode``: ``scales`` when the
    sampling follows ``scale_factor``, ``sizes`` (the batch and channels taken from the input
    at run time) when it follows the output size."""
    if mode == "nearest":
        attrs = {"mode": "nearest", "coordinate_transformation_mode": "asymmetric",
                 "nearest_mode": "floor"}
    elif mode == "nearest-exact":  # floor((o + 0.5) * in/out): half-pixel, ties rounded up
        attrs = {"mode": "nearest", "coordinate_transformation_mode": "half_pixel",
                 "nearest_mode": "round_prefer_ceil"}
    elif mode in ("bilinear", "linear"):
        attrs = {"mode": "linear", "coordinate_transformation_mode":
                 "align_corners" if align_corners else "pytorch_half_pixel"}
    else:
        ctx.fail(f"interpolation mode {mode!r} has no exporter (nearest and bilinear do)")
    name = ctx.name(x)
    if size is None:
        scales = np.asarray([1.0, 1.0, *[float(s) for s in _pair(scale_factor)]], np.float32)
        inputs = [name, "", ctx.const(scales, f"{call.name}.scales")]
    else:
        # The batch and channels from the input at run time, the spatial size fixed.
        shape = ctx.fresh(f"{call.name}.shape")
        ctx.node("Shape", [name], [shape], name=f"{call.name}.shape", start=0, end=2)
        sizes = ctx.fresh(f"{call.name}.sizes")
        ctx.node("Concat", [shape, ctx.ints([int(s) for s in _pair(size)],
                                            f"{call.name}.size")],
                 [sizes], name=f"{call.name}.sizes", axis=0)
        inputs = [name, "", "", sizes]
    ctx.node("Resize", inputs, [ctx.out(call.output)], **attrs)


@exports(getattr(nn, "Upsample", None))
def export_upsample(ctx: Any, call: Any) -> None:
    m = call.module
    size, scale = getattr(m, "size", None), getattr(m, "scale_factor", None)
    if getattr(m, "recompute_scale_factor", None) and scale is not None:
        size, scale = tuple(call.output.shape[2:]), None  # sampled by in/out, as for a size
    write_resize(ctx, call, call.inputs[0], size, scale, getattr(m, "mode", "nearest"),
                 getattr(m, "align_corners", None))


try:  # the op of newer versions
    from cnnlab.ops import interpolate as _interpolate_op
except ImportError:  # pragma: no cover - depends on the version
    _interpolate_op = None


@exports(getattr(_interpolate_op, "Interpolate", None))
def export_interpolate(ctx: Any, call: Any) -> None:
    o = call.options
    scales = o.get("scales")
    if scales is None or any(s is None for s in scales):
        write_resize(ctx, call, call.inputs[0], tuple(o["size"]), None, o["mode"],
                     o.get("align_corners"))
    else:
        write_resize(ctx, call, call.inputs[0], None, tuple(scales), o["mode"],
                     o.get("align_corners"))


@imports("Resize")
def import_resize(b: Any, node: Any) -> None:
    attrs = b.attrs()
    mode = attrs.get("mode", "nearest")
    transform = attrs.get("coordinate_transformation_mode", "half_pixel")
    x = node.input[0]
    shape = b.shape(x)
    if len(shape) != 4:
        b.fail(f"cnnlab imports Resize of 4-D (N, C, H, W) inputs, got shape {shape}")
    rounding = attrs.get("nearest_mode", "round_prefer_floor")
    if mode == "nearest":
        if (transform, rounding) == ("asymmetric", "floor"):
            args: dict[str, Any] = {"mode": "nearest"}
        elif (transform, rounding) == ("half_pixel", "round_prefer_ceil"):
            args = {"mode": "nearest-exact"}
        else:
            b.fail(f"nearest resizing with {transform} coordinates and {rounding} rounding "
                   "is not supported (PyTorch's nearest, asymmetric + floor, and "
                   "nearest-exact, half_pixel + round_prefer_ceil, are)")
    elif mode == "linear":
        if transform not in ("pytorch_half_pixel", "half_pixel", "align_corners"):
            b.fail(f"linear resizing with {transform} coordinates is not supported")
        args = {"mode": "bilinear", "align_corners": transform == "align_corners"}
    else:
        b.fail(f"resize mode {mode!r} is not supported (nearest and linear are)")
    if b.has(3):
        sizes = b.consts(node.input[3])[0].tolist()
        args["size"] = [int(s) for s in sizes[2:]]
    elif b.has(2):
        scales = b.const(node.input[2], "the scales").tolist()
        if len(scales) != 4 or scales[:2] != [1.0, 1.0]:
            b.fail(f"scales {scales} resize the batch or channels")
        args["scale_factor"] = [float(s) for s in scales[2:]]
    else:
        b.fail("Resize without scales or sizes")
    b.emit("Resize", args, [x])
