"""cnnlab.vision: boxes, IoU and NMS against plain loop references and hand-made cases with
known answers (torchvision too, when it can be imported), and heat-map peaks."""

from __future__ import annotations

import numpy as np
import pytest
from gradcheck import check_op

from cnnlab import Tensor, vision


def random_boxes(rng, n, scale=100.0, clusters=5):
    """Boxes around a few centres, so that many overlap (and some don't)."""
    centres = rng.uniform(0, scale, (clusters, 2))
    c = centres[rng.integers(0, clusters, n)] + rng.normal(0, scale / 20, (n, 2))
    wh = rng.uniform(scale / 20, scale / 5, (n, 2))
    return np.concatenate([c - wh / 2, c + wh / 2], axis=1)


# ----- references: loops written from the definitions -------------------------------------


def iou_reference(a, b):
    out = np.zeros((len(a), len(b)))
    for i, (ax1, ay1, ax2, ay2) in enumerate(a):
        for j, (bx1, by1, bx2, by2) in enumerate(b):
            iw = max(0.0, min(ax2, bx2) - max(ax1, bx1))
            ih = max(0.0, min(ay2, by2) - max(ay1, by1))
            inter = iw * ih
            out[i, j] = inter / ((ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter)
    return out


def nms_reference(boxes, scores, threshold):
    """Greedy NMS over every pair: sort (stable), keep, suppress what overlaps too much."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])  # sorted() is stable
    suppressed, keep = set(), []
    for pos, i in enumerate(order):
        if i in suppressed:
            continue
        keep.append(i)
        for j in order[pos + 1:]:
            if iou_reference(boxes[[i]], boxes[[j]])[0, 0] > threshold:
                suppressed.add(j)
    return keep


def batched_nms_reference(boxes, scores, idxs, threshold):
    keep = []
    for c in sorted(set(idxs.tolist())):
        members = np.nonzero(idxs == c)[0]
        keep += [members[k] for k in nms_reference(boxes[members], scores[members], threshold)]
    return sorted(keep, key=lambda i: (-scores[i], i))


# ----- box formats and areas ----------------------------------------------------------------


def test_box_convert_by_hand():
    xyxy = np.array([[10.0, 20.0, 30.0, 60.0], [0.0, 0.0, 1.0, 1.0]], np.float32)
    xywh = np.array([[10.0, 20.0, 20.0, 40.0], [0.0, 0.0, 1.0, 1.0]], np.float32)
    cxcywh = np.array([[20.0, 40.0, 20.0, 40.0], [0.5, 0.5, 1.0, 1.0]], np.float32)
    forms = {"xyxy": xyxy, "xywh": xywh, "cxcywh": cxcywh}
    for src, a in forms.items():
        for dst, b in forms.items():
            out = vision.box_convert(a, src, dst)
            assert isinstance(out, Tensor) and out.dtype == np.float32
            np.testing.assert_allclose(out.data, b, err_msg=f"{src} -> {dst}")
    np.testing.assert_array_equal(vision.box_convert(np.array([[1, 2, 3, 4]]), "xywh",
                                                     "xyxy").data, [[1, 2, 4, 6]])


def test_box_convert_and_area_are_differentiable(rng):
    boxes = rng.uniform(0, 10, (5, 4))
    for src, dst in [("cxcywh", "xyxy"), ("xyxy", "cxcywh"), ("xywh", "cxcywh")]:
        check_op(lambda b, src=src, dst=dst: vision.box_convert(b, src, dst), boxes)
    xyxy = np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=1)
    check_op(vision.box_area, xyxy)
    np.testing.assert_allclose(vision.box_area(xyxy).data, boxes[:, 2] * boxes[:, 3])


def test_box_convert_errors():
    with pytest.raises(ValueError, match="box_convert: in_fmt must be one of 'xyxy', 'xywh', "
                                         "'cxcywh', got 'yxyx'"):
        vision.box_convert(np.zeros((1, 4)), "yxyx", "xyxy")
    with pytest.raises(ValueError, match=r"box_convert: boxes must have shape \(..., 4\), got "
                                         r"\(2, 3\)"):
        vision.box_convert(np.zeros((2, 3)), "xyxy", "xywh")


# ----- IoU ----------------------------------------------------------------------------------


def test_box_iou_known_answers():
    a = [[0, 0, 2, 2]]
    b = [[0, 0, 2, 2],  # identical: 1
         [2, 0, 4, 2],  # touching along an edge: 0
         [5, 5, 6, 6],  # apart: 0
         [1, 0, 3, 2],  # half overlapping: 2 / (4 + 4 - 2) = 1/3
         [0.5, 0.5, 1.5, 1.5],  # inside: 1 / 4
         [1, 1, 3, 3]]  # a quarter of each: 1 / 7
    iou = vision.box_iou(a, b)
    assert iou.dtype == np.float32 and iou.shape == (1, 6)
    np.testing.assert_allclose(iou.data[0], [1, 0, 0, 1 / 3, 1 / 4, 1 / 7], rtol=1e-6)


def test_box_iou_against_the_loop(rng):
    a, b = random_boxes(rng, 12), random_boxes(rng, 9)
    np.testing.assert_allclose(vision.box_iou(a, b).data, iou_reference(a, b), rtol=1e-12)
    np.testing.assert_allclose(vision.box_iou(Tensor(a), b).data, iou_reference(a, b),
                               rtol=1e-12)
    assert vision.box_iou(np.zeros((0, 4)), b).shape == (0, 9)


def test_box_iou_of_empty_boxes_is_nan_quietly():
    iou = vision.box_iou([[1, 1, 1, 1]], [[1, 1, 1, 1], [0, 0, 2, 2]]).data
    assert np.isnan(iou[0, 0]) and iou[0, 1] == 0


# ----- NMS ----------------------------------------------------------------------------------


@pytest.mark.parametrize("threshold", [0.0, 0.3, 0.5, 0.7, 1.0])
@pytest.mark.parametrize("seed", range(4))
def test_nms_against_the_loop(seed, threshold):
    rng = np.random.default_rng(seed)
    boxes, scores = random_boxes(rng, 40), rng.random(40)
    keep = vision.nms(boxes, scores, threshold)
    assert keep.dtype == np.int64
    assert keep.data.tolist() == nms_reference(boxes, scores, threshold)
    f32 = vision.nms(boxes.astype(np.float32), scores.astype(np.float32), threshold)
    assert f32.data.tolist() == nms_reference(boxes.astype(np.float32),
                                              scores.astype(np.float32), threshold)


def test_nms_by_hand():
    boxes = np.array([[0, 0, 10, 10],     # 0: best
                      [1, 1, 11, 11],     # 1: IoU 81/119 = 0.68 with 0
                      [0, 0, 10, 5],      # 2: IoU 0.5 with 0: exactly at 0.5, kept
                      [20, 20, 30, 30],   # 3: alone
                      [20, 20, 30, 30]], np.float64)  # 4: a copy of 3 with the same score
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.6])
    assert vision.nms(boxes, scores, 0.5).data.tolist() == [0, 2, 3]  # 4 ties 3, comes after
    assert vision.nms(boxes, scores, 0.7).data.tolist() == [0, 1, 2, 3]
    assert vision.nms(boxes, scores, 0.4).data.tolist() == [0, 3]
    # Equal scores keep their input order.
    assert vision.nms(boxes[[3, 0]], [0.5, 0.5], 0.5).data.tolist() == [0, 1]
    assert vision.nms(np.zeros((0, 4)), np.zeros(0), 0.5).data.tolist() == []


@pytest.mark.parametrize("seed", range(4))
def test_batched_nms_against_per_class_loops(seed):
    rng = np.random.default_rng(seed)
    boxes, scores = random_boxes(rng, 50), rng.random(50)
    idxs = rng.integers(0, 4, 50)
    keep = vision.batched_nms(boxes, scores, idxs, 0.4).data.tolist()
    assert keep == batched_nms_reference(boxes, scores, idxs, 0.4)
    # Negative coordinates and negative or sparse category numbers change nothing.
    shifted = vision.batched_nms(boxes - 70.0, scores, idxs * 7 - 9, 0.4).data.tolist()
    assert shifted == keep


def test_batched_nms_by_hand():
    boxes = [[0, 0, 10, 10], [1, 1, 11, 11], [0, 0, 10, 10], [1, 1, 11, 11]]
    assert vision.batched_nms(boxes, [0.9, 0.8, 0.7, 0.95], [0, 0, 1, 1], 0.5).data.tolist() \
        == [3, 0]
    assert vision.batched_nms(np.zeros((0, 4)), [], np.zeros(0, np.int64), 0.5).shape == (0,)


@pytest.mark.parametrize("call, match", [
    (lambda: vision.nms(np.zeros((3, 4)), np.zeros(2), 0.5),
     "nms: expected one score per box, got 2 scores for 3 boxes"),
    (lambda: vision.nms(np.zeros((3, 5)), np.zeros(3), 0.5),
     r"nms: boxes must have shape \(N, 4\), got \(3, 5\)"),
    (lambda: vision.batched_nms(np.zeros((2, 4)), np.zeros(2), [0.5, 1.0], 0.5),
     "batched_nms: idxs must be integers, got dtype float32"),
    (lambda: vision.batched_nms(np.zeros((2, 4)), np.zeros(2), [0], 0.5),
     "batched_nms: expected one category per box, got 1 idxs for 2 boxes"),
    (lambda: vision.box_iou(np.zeros(4), np.zeros((1, 4))),
     r"box_iou: boxes1 must have shape \(N, 4\), got \(4,\)"),
])
def test_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_same_results_as_torchvision(rng):
    torch = pytest.importorskip("torch")
    tv = pytest.importorskip("torchvision.ops", reason="torchvision is not installed")
    boxes, scores = random_boxes(rng, 60).astype(np.float32), rng.random(60).astype(np.float32)
    idxs = rng.integers(0, 3, 60)
    tb, ts = torch.from_numpy(boxes), torch.from_numpy(scores)
    np.testing.assert_allclose(vision.box_iou(boxes, boxes[:7]).data,
                               tv.box_iou(tb, tb[:7]).numpy(), rtol=1e-6)
    assert vision.nms(boxes, scores, 0.5).data.tolist() == tv.nms(tb, ts, 0.5).tolist()
    assert vision.batched_nms(boxes, scores, idxs, 0.5).data.tolist() == \
        tv.batched_nms(tb, ts, torch.from_numpy(idxs), 0.5).tolist()
    for fmt in ("xywh", "cxcywh"):
        np.testing.assert_allclose(vision.box_convert(boxes, "xyxy", fmt).data,
                                   tv.box_convert(tb, "xyxy", fmt).numpy(), rtol=1e-6)


# ----- heat-map peaks -----------------------------------------------------------------------


def peaks_reference(heat, k):
    """Loops: a position is kept when no neighbour in its 3x3 window is larger."""
    n, c, h, w = heat.shape
    out = []
    for b in range(n):
        found = []
        for ch in range(c):
            for y in range(h):
                for x in range(w):
                    window = heat[b, ch, max(y - 1, 0):y + 2, max(x - 1, 0):x + 2]
                    score = heat[b, ch, y, x] if heat[b, ch, y, x] == window.max() else 0.0
                    found.append((-score, ch, y, x))
        out.append(sorted(found)[:k])
    return out


def test_heatmap_peaks_against_the_loop(rng):
    heat = rng.permutation(2 * 3 * 6 * 7).reshape(2, 3, 6, 7) / (2 * 3 * 6 * 7)  # no ties
    for k in (1, 5, 20, 60, 3 * 6 * 7):  # more than the peaks: non-peaks (0) by position
        p = vision.heatmap_peaks(heat.astype(np.float32), k=k)
        assert p.scores.shape == p.classes.shape == p.ys.shape == p.xs.shape == (2, k)
        assert p.classes.dtype == p.ys.dtype == p.xs.dtype == np.int64
        for b, expected in enumerate(peaks_reference(heat.astype(np.float32), k)):
            got = list(zip(-p.scores.data[b], p.classes.data[b], p.ys.data[b], p.xs.data[b],
                           strict=True))
            assert got == [tuple(e) for e in expected]


def test_heatmap_peaks_by_hand():
    heat = np.zeros((1, 2, 5, 5), np.float32)
    heat[0, 0, 1, 1], heat[0, 0, 1, 2] = 0.9, 0.8  # 0.8 is next to 0.9: not a peak
    heat[0, 1, 4, 4] = 0.7  # a corner peak
    heat[0, 1, 0, 4] = 0.7  # same score: earlier position first
    p = vision.heatmap_peaks(Tensor(heat), k=3)
    np.testing.assert_allclose(p.scores.data, [[0.9, 0.7, 0.7]])
    assert p.classes.data.tolist() == [[0, 1, 1]]
    assert p.ys.data.tolist() == [[1, 0, 4]] and p.xs.data.tolist() == [[1, 4, 4]]


def test_heatmap_peaks_errors():
    with pytest.raises(ValueError, match=r"heatmap_peaks expects a 4-D heat map \(N, C, H, W\), "
                                         r"got shape \(2, 5, 5\)"):
        vision.heatmap_peaks(np.zeros((2, 5, 5)), k=3)
    with pytest.raises(ValueError, match=r"k must be between 1 and C\*H\*W = 50, got 51"):
        vision.heatmap_peaks(np.zeros((1, 2, 5, 5)), k=51)
    with pytest.raises(ValueError, match="kernel_size must be an odd positive integer, got 2"):
        vision.heatmap_peaks(np.zeros((1, 2, 5, 5)), k=3, kernel_size=2)
