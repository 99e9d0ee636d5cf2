"""interpolate: resizing NCHW maps by nearest-neighbour or bilinear interpolation.

Both modes are separable: the output is a 1-D interpolation along W followed by one along H
(or the other way round, whichever makes the intermediate map smaller). Along one axis,
output position ``o`` reads input positions ``i0[o]`` and ``i1[o]`` with weights ``w0[o]``
and ``w1[o]`` (one position, weight 1, for nearest), computed once per size pair with
PyTorch's exact formulas, in PyTorch's precision:

- nearest: ``i = min(floor(o * scale), in - 1)`` in float32, ``scale = 1/scale_factor`` when
  a scale factor is given, else ``in/out``; but ``i = o`` when the size is unchanged and
  ``i = o // 2`` when it doubles, whatever the scale factor. nearest-exact:
  ``i = min(floor((o + 0.5) * scale), in - 1)``.
- bilinear, ``align_corners=False``: half-pixel centres, ``src = scale*(o + 0.5) - 0.5``
  clamped at 0; ``align_corners=True``: ``src = o * (in - 1)/(out - 1)``. Then
  ``i0 = floor(src)``, ``i1 = min(i0 + 1, in - 1)``, ``w1 = src - i0``, ``w0 = 1 - w1``;
  an axis whose size is unchanged is copied, whatever the scale factor says.

Nearest is a gather along each axis. Bilinear is a product with each axis's (out, in)
interpolation matrix, which has two nonzeros per row: it is cut into blocks of rows that read
at most ``BAND_WINDOW`` neighbouring inputs, one small GEMM each, so the work per value stays
constant however large the map. The backward pass is the exact adjoint, the same blocked
product with the transposed matrices (no ``np.add.at``); for nearest at an integer factor, a
reshape and a sum. Work is done in the input's memory layout (channels-last memory stays
channels-last) and split over the batch.

One difference from PyTorch, on non-finite input only: a product multiplies every input of
its block, so an infinity or NaN in a bilinear input (or its gradient) makes NaN across its
block (at most ``BAND_WINDOW`` positions along the axis), where PyTorch's gather reaches only
the positions that read it.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from cnnlab.autograd import Function
from cnnlab.kernels.parallel import over_batch
from cnnlab.tensor import Tensor

MODES = ("nearest", "nearest-exact", "bilinear")


# Each block of a banded matrix product reads at most this many input positions: shorter
# windows waste fewer multiply-adds on zeros, longer ones make fewer, larger GEMMs. Measured
# on 32x32 and 64x64 maps doubled, forward and backward: best between 6 and 10, where
# whole-axis products were 1.5-1.7x slower at 32 pixels (2.5-3.5x at 128) and gathers with
# weights slower still.
BAND_WINDOW = 8


def banded_blocks(matrix: np.ndarray) -> list[tuple[int, int, int, int, np.ndarray]]:
    """Cut a banded (rows, cols) matrix into row blocks ``(r0, r1, c0, c1, dense block)``
    whose nonzero columns fit in ``BAND_WINDOW`` (or one row each, if a row's don't):
    ``matrix @ v`` is then ``block @ v[c0:c1]`` for every block, each into rows r0:r1."""
    rows, cols = matrix.shape
    nz = matrix != 0
    any_nz = nz.any(axis=1)
    first = np.where(any_nz, nz.argmax(axis=1), 0)
    last = np.where(any_nz, cols - nz[:, ::-1].argmax(axis=1), 1)
    blocks, r0 = [], 0
    while r0 < rows:
        lo, hi, r1 = first[r0], last[r0], r0 + 1
        while r1 < rows and max(hi, last[r1]) - min(lo, first[r1]) <= BAND_WINDOW:
            lo, hi, r1 = min(lo, first[r1]), max(hi, last[r1]), r1 + 1
        blocks.append((r0, r1, int(lo), int(hi), np.ascontiguousarray(matrix[r0:r1, lo:hi])))
        r0 = r1
    return blocks


class AxisPlan:
    """How one axis is resampled: the source of every output position (nearest) or the
    (out, in) interpolation matrix in banded blocks (bilinear), and its transpose's blocks
    for the backward pass."""

    def __init__(self, taps: list[tuple[np.ndarray, np.ndarray | None]], n_in: int,
                 dtype: np.dtype):
        self.n_in, self.n_out = n_in, len(taps[0][0])
        self.index = taps[0][0] if len(taps) == 1 else None  # nearest: a gather
        self.identity = self.n_in == self.n_out and self.index is not None and \
            bool(np.all(self.index == np.arange(self.n_in)))
        # Nearest with an integer factor (o // r): the adjoint is a reshape and a sum.
        r = self.n_out // self.n_in
        self.repeat = r if self.index is not None and r > 1 and \
            self.n_out == r * self.n_in and \
            bool(np.all(self.index == np.arange(self.n_out) // r)) else 0
        self.matrix = np.zeros((self.n_out, n_in), dtype=dtype)
        rows = np.arange(self.n_out)
        for idx, w in taps:  # one statement per tap: (row, idx[row]) never repeats in one
            self.matrix[rows, idx] += 1 if w is None else w
        self.blocks = banded_blocks(self.matrix)
        self.blocks_t = banded_blocks(self.matrix.T)


def _source_scale(n_in: int, n_out: int, scale: float | None, align_corners: bool,
                  dtype: type) -> Any:
    """PyTorch's ``area_pixel_compute_scale``, in ``dtype`` (its "opmath" type)."""
    if align_corners:
        return dtype((n_in - 1) / (n_out - 1)) if n_out > 1 else dtype(0)
    if scale is not None and scale > 0:
        return dtype(1.0 / scale)
    return dtype(n_in) / dtype(n_out)


@functools.lru_cache(maxsize=256)
def axis_plan(n_in: int, n_out: int, scale: float | None, mode: str, align_corners: bool,
              dtype: str) -> AxisPlan:
    """Indices and weights along one axis (cached: a layer sees the same sizes every step)."""
    o = np.arange(n_out)
    if mode in ("nearest", "nearest-exact"):
        # Always float32 in PyTorch, whatever the tensor's dtype.
        s = _source_scale(n_in, n_out, scale, False, np.float32)
        pos = o.astype(np.float32) + np.float32(0.5) if mode == "nearest-exact" else \
            o.astype(np.float32)
        idx = np.minimum(np.floor(pos * s).astype(np.intp), n_in - 1)
        if mode == "nearest" and n_out in (n_in, 2 * n_in):
            idx = o * n_in // n_out  # PyTorch's shortcuts, whatever the scale factor says
        return AxisPlan([(idx, None)], n_in, np.dtype(dtype))
    if n_out == n_in:  # PyTorch copies an axis whose size is unchanged, whatever the scale
        return AxisPlan([(o, None)], n_in, np.dtype(dtype))
    ftype = np.dtype(dtype).type  # float32 maths for float32 maps, float64 for float64
    s = _source_scale(n_in, n_out, scale, align_corners, ftype)
    if align_corners:
        src = s * o.astype(ftype)
    else:
        src = np.maximum(s * (o.astype(ftype) + ftype(0.5)) - ftype(0.5), ftype(0))
    i0 = np.minimum(np.floor(src).astype(np.intp), n_in - 1)
    w1 = np.clip(src - i0.astype(ftype), 0, 1).astype(ftype)
    i1 = i0 + (i0 < n_in - 1)
    return AxisPlan([(i0, (1 - w1).astype(ftype)), (i1, w1)], n_in, np.dtype(dtype))


def _banded_product(a: np.ndarray, blocks: list, axis: int, n: int,
                    out: np.ndarray | None = None) -> np.ndarray:
    """``matrix @ a`` along ``axis`` of the C-contiguous ``a``, block by block (one GEMM
    each, batched over the other axes), into ``out`` (C-contiguous) or a new array."""
    lead, trail = math.prod(a.shape[:axis]), math.prod(a.shape[axis + 1:])
    if out is None:
        out = np.empty((*a.shape[:axis], n, *a.shape[axis + 1:]), dtype=a.dtype)
    a3, o3 = a.reshape(lead, a.shape[axis], trail), out.reshape(lead, n, trail)
    for r0, r1, c0, c1, block in blocks:
        if trail == 1:  # the last axis: one GEMM over all the rows
            np.matmul(a3[:, c0:c1, 0], block.T, out=o3[:, r0:r1, 0])
        else:
            np.matmul(block, a3[:, c0:c1], out=o3[:, r0:r1])
    return out


def _resample(a: np.ndarray, plan: AxisPlan, axis: int,
              out: np.ndarray | None = None) -> np.ndarray:
    """Resample the C-contiguous ``a`` along ``axis`` (into ``out`` when given)."""
    if plan.identity:
        if out is None:
            return a
        out[...] = a
        return out
    if plan.repeat:  # nearest at an integer factor: each value copied r times
        if out is None:
            out = np.empty((*a.shape[:axis], plan.n_out, *a.shape[axis + 1:]), dtype=a.dtype)
        view = out.reshape(*a.shape[:axis], plan.n_in, plan.repeat, *a.shape[axis + 1:])
        view[...] = np.expand_dims(a, axis + 1)
        return out
    if plan.index is not None:  # nearest: a gather, exact whatever the values
        return np.take(a, plan.index, axis=axis, out=out)
    return _banded_product(a, plan.blocks, axis, plan.n_out, out)


def _resample_adjoint(g: np.ndarray, plan: AxisPlan, axis: int,
                      out: np.ndarray | None = None) -> np.ndarray:
    """The adjoint of :func:`_resample`: the gradient summed back onto the input positions,
    as a product with the transposed interpolation matrix (no ``np.add.at``)."""
    if plan.identity:
        if out is None:
            return g
        out[...] = g
        return out
    if plan.repeat:  # the r copies of each value summed: r - 1 adds (NumPy's sum over a
        # short inner axis was 1.5x slower)
        view = g.reshape(*g.shape[:axis], plan.n_in, plan.repeat, *g.shape[axis + 1:])
        lead = (slice(None),) * (axis + 1)
        out = np.add(view[lead + (0,)], view[lead + (1,)], out=out)
        for k in range(2, plan.repeat):
            out += view[lead + (k,)]
        return out
    return _banded_product(g, plan.blocks_t, axis, plan.n_in, out)


def _channels_last(x: np.ndarray) -> bool:
    """Whether ``x`` (N, C, H, W) is a view of NHWC memory, and not also plain NCHW."""
    return not x.flags.c_contiguous and x.transpose(0, 2, 3, 1).flags.c_contiguous


class Interpolate(Function):
    def forward(self, x, *, size, scales, mode, align_corners):
        n, c, h, w = x.shape
        dt = x.dtype.name
        self.plans = (axis_plan(h, size[0], scales[0], mode, align_corners, dt),
                      axis_plan(w, size[1], scales[1], mode, align_corners, dt))
        self.x_shape = x.shape
        # Channels-last memory is worked on as (N, H, W, C); otherwise as (N, C, H, W).
        self.nhwc = _channels_last(x)
        a = x.transpose(0, 2, 3, 1) if self.nhwc else np.ascontiguousarray(x)
        self.axes = (1, 2) if self.nhwc else (2, 3)
        # The axis whose resampling leaves the smaller map goes first.
        first = 0 if size[0] / h <= size[1] / w else 1
        self.order = (first, 1 - first)
        out = np.empty((n, *size, c) if self.nhwc else (n, c, *size), dtype=x.dtype)

        def work(lo: int, hi: int) -> None:
            k0, k1 = self.order
            t = _resample(a[lo:hi], self.plans[k0], self.axes[k0])
            _resample(t, self.plans[k1], self.axes[k1], out=out[lo:hi])

        over_batch(work, n, out.size * 4)
        return out.transpose(0, 3, 1, 2) if self.nhwc else out

    def backward(self, grad):
        n = grad.shape[0]
        g = np.ascontiguousarray(grad.transpose(0, 2, 3, 1) if self.nhwc else grad)
        dx_shape = (n, self.x_shape[2], self.x_shape[3], self.x_shape[1]) if self.nhwc \
            else self.x_shape
        dx = np.empty(dx_shape, dtype=grad.dtype)

        def work(lo: int, hi: int) -> None:
            k1, k0 = self.order  # the reverse order
            t = _resample_adjoint(g[lo:hi], self.plans[k0], self.axes[k0])
            _resample_adjoint(t, self.plans[k1], self.axes[k1], out=dx[lo:hi])

        over_batch(work, n, grad.size * 4)
        return dx.transpose(0, 3, 1, 2) if self.nhwc else dx


def _pair_of(value: Any, name: str, cast: type) -> tuple[Any, Any]:
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise ValueError(f"interpolate: {name} must be a number or a pair for a 4-D "
                             f"input (N, C, H, W), got {value!r}")
        return cast(value[0]), cast(value[1])
    return cast(value), cast(value)


def interpolate(input: Tensor, size: Any = None, scale_factor: Any = None,
                mode: str = "nearest", align_corners: bool | None = None,
                recompute_scale_factor: bool | None = None, antialias: bool = False
                ) -> Tensor:
    """Resize (N, C, H, W) maps to ``size``, or by ``scale_factor``, as PyTorch does.

    Args:
        input: (N, C, H, W).
        size: output (OH, OW), or one int for both. Give ``size`` or ``scale_factor``.
        scale_factor: multiplier of H and W (a number or a pair); the output size is
            ``floor(H * scale_factor)``, and the sampling positions use ``1/scale_factor``
            (not ``H/OH``) unless ``recompute_scale_factor=True``, as in PyTorch.
        mode: 'nearest' (PyTorch's, which picks ``floor(o * H/OH)``), 'nearest-exact'
            (pixel centres: ``floor((o + 0.5) * H/OH)``) or 'bilinear'.
        align_corners: bilinear only. False (default): pixels are unit squares and their
            centres are sampled (half-pixel offsets, edges clamped). True: the corner pixels
            of input and output are aligned and the values between them interpolated.
        recompute_scale_factor: sample with ``H/OH`` even when a scale factor is given.
        antialias: not supported (it only matters when shrinking).

    Shape:
        (N, C, H, W) -> (N, C, OH, OW), ``OH = size[0]`` or ``floor(H * scale_factor)``.

    Raises:
        ValueError: a mode other than the three, both or neither of ``size`` and
            ``scale_factor``, ``align_corners`` with a nearest mode, a non-positive size,
            or an input that is not 4-D.

    Example:
        >>> import numpy as np, cnnlab
        >>> from cnnlab.nn import functional as F
        >>> x = cnnlab.Tensor(np.array([[[[0.0, 1.0], [2.0, 3.0]]]], np.float32))
        >>> F.interpolate(x, scale_factor=2, mode="bilinear").data[0, 0]
        array([[0.  , 0.25, 0.75, 1.  ],
               [0.5 , 0.75, 1.25, 1.5 ],
               [1.5 , 1.75, 2.25, 2.5 ],
               [2.  , 2.25, 2.75, 3.  ]], dtype=float32)
        >>> F.interpolate(x, size=(3, 3), mode="nearest").data[0, 0]
        array([[0., 0., 1.],
               [0., 0., 1.],
               [2., 2., 3.]], dtype=float32)
    """
    if mode not in MODES:
        raise ValueError(f"interpolate: mode must be one of {', '.join(map(repr, MODES))}, "
                         f"got {mode!r}")
    if align_corners is not None and mode != "bilinear":
        raise ValueError(f"interpolate: align_corners can only be set with mode='bilinear', "
                         f"got mode={mode!r} with align_corners={align_corners!r}; leave it "
                         f"None")
    if antialias:
        raise ValueError("interpolate: antialias=True is not supported; resize with "
                         "antialias=False")
    if input.ndim != 4:
        raise ValueError(f"interpolate expects a 4-D input (N, C, H, W), got {input.ndim}-D "
                         f"input of shape {input.shape}")
    if (size is None) == (scale_factor is None):
        raise ValueError("interpolate: give exactly one of size and scale_factor, got "
                         + ("both" if size is not None else "neither"))
    h, w = input.shape[2:]
    if size is not None:
        out_hw = _pair_of(size, "size", int)
        scales: tuple[float | None, float | None] = (None, None)
    else:
        scales = _pair_of(scale_factor, "scale_factor", float)
        if not all(math.isfinite(s) and s > 0 for s in scales):
            raise ValueError(f"interpolate: scale_factor must be positive, got "
                             f"{scale_factor!r}")
        out_hw = (math.floor(h * scales[0]), math.floor(w * scales[1]))
        if recompute_scale_factor:
            scales = (None, None)
    if min(out_hw) < 1 or h < 1 or w < 1:
        raise ValueError(f"interpolate: input and output sizes must be positive, got input "
                         f"of shape {input.shape} and output size {out_hw}")
    return Interpolate.apply(input, size=out_hw, scales=scales, mode=mode,
                             align_corners=bool(align_corners))
