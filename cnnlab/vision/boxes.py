"""Boxes: formats, areas, intersection over union and non-maximum suppression.

A box is four numbers in one of three formats: 'xyxy' (corners x1, y1, x2, y2, with
x1 <= x2 and y1 <= y2), 'xywh' (top-left corner, width, height) and 'cxcywh' (centre,
width, height). The results are those of ``torchvision.ops`` (same formulas, same
precision, same order of kept boxes).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnlab.ops.join import stack
from cnnlab.tensor import Tensor

FORMATS = ("xyxy", "xywh", "cxcywh")


def _array(value: Any, name: str, who: str, ndim: int | None = None) -> np.ndarray:
    """An array of ``value``; Python floats become float32, as in a Tensor."""
    if isinstance(value, Tensor):
        arr = value.data
    elif isinstance(value, np.ndarray):
        arr = value
    else:
        arr = np.asarray(value)
        if arr.dtype.kind == "f":
            arr = arr.astype(np.float32)
    if arr.dtype.kind not in "iuf" or arr.dtype == np.float16:
        arr = arr.astype(np.float32)
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{who}: {name} must be {ndim}-D, got shape {arr.shape}")
    return arr


def _boxes(value: Any, name: str, who: str) -> np.ndarray:
    """(N, 4) boxes as an array; integer boxes become float32 (IoU is a ratio)."""
    arr = _array(value, name, who)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"{who}: {name} must have shape (N, 4), got {arr.shape}")
    return arr if arr.dtype.kind == "f" else arr.astype(np.float32)


def _tensor(value: Any, who: str) -> Tensor:
    t = value if isinstance(value, Tensor) else Tensor(_array(value, "boxes", who))
    if t.ndim < 1 or t.shape[-1] != 4:
        raise ValueError(f"{who}: boxes must have shape (..., 4), got {t.shape}")
    return t


def box_area(boxes: Any) -> Tensor:
    """Areas ``(x2 - x1) * (y2 - y1)`` of boxes in 'xyxy' format (differentiable).

    Args:
        boxes: (..., 4), 'xyxy'.

    Returns:
        (...,), of the boxes' dtype.

    Example:
        >>> from cnnlab import vision
        >>> vision.box_area([[0.0, 0.0, 2.0, 3.0], [1.0, 1.0, 2.0, 2.0]]).data
        array([6., 1.], dtype=float32)
    """
    b = _tensor(boxes, "box_area")
    return (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])


def box_convert(boxes: Any, in_fmt: str, out_fmt: str) -> Tensor:
    """Convert boxes between 'xyxy', 'xywh' and 'cxcywh' (differentiable).

    Args:
        boxes: (..., 4) in ``in_fmt``.
        in_fmt, out_fmt: one of 'xyxy', 'xywh', 'cxcywh'.

    Returns:
        (..., 4) in ``out_fmt``; integer boxes stay integer unless a centre is involved.

    Raises:
        ValueError: an unknown format or boxes whose last dimension is not 4.

    Example:
        >>> from cnnlab import vision
        >>> vision.box_convert([[10.0, 20.0, 4.0, 6.0]], "cxcywh", "xyxy").data
        array([[ 8., 17., 12., 23.]], dtype=float32)
    """
    for name, fmt in (("in_fmt", in_fmt), ("out_fmt", out_fmt)):
        if fmt not in FORMATS:
            raise ValueError(f"box_convert: {name} must be one of "
                             f"{', '.join(map(repr, FORMATS))}, got {fmt!r}")
    b = _tensor(boxes, "box_convert")
    if in_fmt == out_fmt:
        return b * 1 if b.dtype.kind == "f" else Tensor(b.data.copy())
    if "cxcywh" in (in_fmt, out_fmt) and b.dtype.kind != "f":
        b = Tensor(b.data.astype(np.float32))
    # As torchvision: through 'xyxy' unless one side is 'xyxy'.
    if in_fmt == "xywh":
        x, y, w, h = (b[..., i] for i in range(4))
        b = stack([x, y, x + w, y + h], dim=-1)
    elif in_fmt == "cxcywh":
        cx, cy, w, h = (b[..., i] for i in range(4))
        b = stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=-1)
    x1, y1, x2, y2 = (b[..., i] for i in range(4))
    if out_fmt == "xyxy":
        return b
    if out_fmt == "xywh":
        return stack([x1, y1, x2 - x1, y2 - y1], dim=-1)
    return stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], dim=-1)


def _iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.maximum(rb - lt, 0)
    inter = wh[..., 0] * wh[..., 1]
    with np.errstate(invalid="ignore", divide="ignore"):  # empty boxes: 0/0 = nan, as torch
        return inter / (area_a[:, None] + area_b[None, :] - inter)


def box_iou(boxes1: Any, boxes2: Any) -> Tensor:
    """Intersection over union of every pair of boxes ('xyxy'); not differentiable.

    Args:
        boxes1: (N, 4); boxes2: (M, 4).

    Returns:
        (N, M): ``area(a & b) / area(a | b)``, in [0, 1] (nan for two empty boxes).

    Example:
        >>> from cnnlab import vision
        >>> vision.box_iou([[0.0, 0.0, 2.0, 2.0]], [[1.0, 1.0, 3.0, 3.0], [0, 0, 2, 2]]).data
        array([[0.14285715, 1.        ]], dtype=float32)
    """
    a = _boxes(boxes1, "boxes1", "box_iou")
    b = _boxes(boxes2, "boxes2", "box_iou")
    dtype = np.result_type(a, b)
    return Tensor(_iou_matrix(a.astype(dtype, copy=False), b.astype(dtype, copy=False)))


def _nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy NMS on arrays: indices kept, by decreasing score (ties in input order)."""
    x1, y1, x2, y2 = boxes.T
    areas = (x2 - x1) * (y2 - y1)
    thr = np.float64(iou_threshold)  # the overlap is compared in double, as torchvision does
    candidates = np.argsort(-scores, kind="stable")
    keep = []
    with np.errstate(invalid="ignore", divide="ignore"):
        while candidates.size:  # one iteration per kept box
            i, rest = candidates[0], candidates[1:]
            keep.append(i)
            w = np.maximum(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0)
            h = np.maximum(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0)
            inter = w * h
            iou = inter / (areas[i] + areas[rest] - inter)
            candidates = rest[~(iou > thr)]  # a nan overlap suppresses nothing, as in torch
    return np.asarray(keep, dtype=np.int64)


def _nms_inputs(boxes: Any, scores: Any, who: str) -> tuple[np.ndarray, np.ndarray]:
    b = _boxes(boxes, "boxes", who)
    s = _array(scores, "scores", who, ndim=1)
    if len(s) != len(b):
        raise ValueError(f"{who}: expected one score per box, got {len(s)} scores for "
                         f"{len(b)} boxes")
    return b, s


def nms(boxes: Any, scores: Any, iou_threshold: float) -> Tensor:
    """Non-maximum suppression: keep the best-scoring box, drop every box that overlaps it
    by more than ``iou_threshold`` (IoU), repeat with the rest.

    Args:
        boxes: (N, 4), 'xyxy'.
        scores: (N,).
        iou_threshold: boxes with IoU above it are suppressed.

    Returns:
        int64 Tensor of the kept boxes' indices, by decreasing score; equal scores keep
        their input order (torchvision's stable sort).

    Example:
        >>> from cnnlab import vision
        >>> boxes = [[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]]
        >>> vision.nms(boxes, [0.9, 0.8, 0.7], iou_threshold=0.5).data
        array([0, 2])
    """
    b, s = _nms_inputs(boxes, scores, "nms")
    return Tensor(_nms(b, s, iou_threshold))


def batched_nms(boxes: Any, scores: Any, idxs: Any, iou_threshold: float) -> Tensor:
    """NMS within each category: boxes of different ``idxs`` never suppress each other.

    Done in one pass, as torchvision does, by moving each category's boxes to their own
    region of the plane (an offset of ``idx * (largest coordinate + 1)``; with negative
    coordinates, the coordinates' span plus 1).

    Args:
        boxes: (N, 4), 'xyxy'.
        scores: (N,).
        idxs: (N,) integer category of each box.
        iou_threshold: as for :func:`nms`.

    Returns:
        int64 Tensor of the kept indices, by decreasing score.

    Example:
        >>> from cnnlab import vision
        >>> boxes = [[0, 0, 10, 10], [1, 1, 11, 11], [0, 0, 10, 10]]
        >>> vision.batched_nms(boxes, [0.9, 0.8, 0.7], [0, 0, 1], 0.5).data
        array([0, 2])
    """
    b, s = _nms_inputs(boxes, scores, "batched_nms")
    ids = _array(idxs, "idxs", "batched_nms", ndim=1)
    if len(ids) != len(b):
        raise ValueError(f"batched_nms: expected one category per box, got {len(ids)} idxs "
                         f"for {len(b)} boxes")
    if ids.dtype.kind not in "iu":
        raise ValueError(f"batched_nms: idxs must be integers, got dtype {ids.dtype}")
    if len(b) == 0:
        return Tensor(np.zeros(0, dtype=np.int64))
    if ids.min() < 0:  # categories as ranks: the offsets below need them non-negative
        ids = np.unique(ids, return_inverse=True)[1]
    top, bottom = b.max(), b.min()
    span = top + 1 if bottom >= 0 else top - bottom + 1
    shifted = b + (ids.astype(b.dtype) * span)[:, None]
    return Tensor(_nms(shifted, s, iou_threshold))
