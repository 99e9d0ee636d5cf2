"""The losses: finite differences, PyTorch (forward and gradients), independent NumPy
formulas, the loss modules and their errors."""

from __future__ import annotations

import numpy as np
import pytest
from gradcheck import as_leaf, check_gradients, check_op, distinct_values
from torch_parity import DTYPES, assert_close, channels_last, compare, need_torch

import cnnlab
from cnnlab import Tensor, nn
from cnnlab.nn import functional as F

REDUCTIONS = ["mean", "sum", "none"]

# ----- cross_entropy and nll_loss -----------------------------------------------------------

CLASS_SHAPES = {
    # name: logits shape (class axis 1), target shape
    "NC": ((6, 5), (6,)),
    "NCHW": ((2, 4, 3, 3), (2, 3, 3)),
    "NCL": ((3, 4, 5), (3, 5)),
    "C_unbatched": ((5,), ()),
}
OPTIONS = {
    "plain": {},
    "weight": {"weight": True},
    "ignore": {"ignore_index": -100},
    "ignore_255_weight": {"ignore_index": 255, "weight": True},
    "smoothing": {"label_smoothing": 0.2},
    "smoothing_weight_ignore": {"label_smoothing": 0.3, "weight": True, "ignore_index": -1},
}


def _targets(shape, target_shape, rng, ignore_index=None):
    c = shape[0] if len(shape) == 1 else shape[1]
    t = rng.integers(0, c, target_shape)
    if ignore_index is not None and t.size > 1:
        flat = t.reshape(-1)
        flat[::3] = ignore_index  # a third of the targets ignored, never all
    return t


def _case(shapes, options, rng):
    shape, target_shape = CLASS_SHAPES[shapes]
    opts = dict(OPTIONS[options])
    c = shape[0] if len(shape) == 1 else shape[1]
    t = _targets(shape, target_shape, rng, opts.get("ignore_index"))
    if opts.pop("weight", False):
        opts["weight"] = rng.uniform(0.2, 2.0, c)
    if len(shape) == 1 and "ignore_index" in opts:
        opts.pop("ignore_index")  # one target: ignoring it would leave nothing
    return shape, t, opts


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("options", OPTIONS, ids=list(OPTIONS))
@pytest.mark.parametrize("shapes", CLASS_SHAPES, ids=list(CLASS_SHAPES))
def test_cross_entropy_gradients(shapes, options, reduction, rng):
    shape, t, opts = _case(shapes, options, rng)
    check_op(lambda z: F.cross_entropy(z, t, reduction=reduction, **opts),
             distinct_values(shape, rng, -3, 3))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("options", ["plain", "ignore_255_weight"])
@pytest.mark.parametrize("shapes", CLASS_SHAPES, ids=list(CLASS_SHAPES))
def test_nll_loss_gradients(shapes, options, reduction, rng):
    shape, t, opts = _case(shapes, options, rng)
    check_op(lambda z: F.nll_loss(z, t, reduction=reduction, **opts),
             distinct_values(shape, rng, -3, 0))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("options", OPTIONS, ids=list(OPTIONS))
@pytest.mark.parametrize("shapes", CLASS_SHAPES, ids=list(CLASS_SHAPES))
def test_cross_entropy_and_nll_match_torch(shapes, options, reduction, dtype, rng):
    torch = need_torch()
    TF = torch.nn.functional
    shape, t, opts = _case(shapes, options, rng)
    tt = torch.from_numpy(np.asarray(t))
    topts = {k: (torch.tensor(v, dtype=torch.float64 if dtype == np.float64 else
                              torch.float32) if k == "weight" else v) for k, v in opts.items()}
    x = rng.standard_normal(shape) * 3
    layouts = [channels_last] if len(shape) == 4 else None
    compare(lambda z: F.cross_entropy(z, t, reduction=reduction, **opts),
            lambda z: TF.cross_entropy(z, tt, reduction=reduction, **topts), [x], dtype,
            layouts=layouts)
    if "label_smoothing" in opts:
        return
    compare(lambda z: F.nll_loss(F.log_softmax(z, 1 if len(shape) > 1 else 0), t,
                                 reduction=reduction, **opts),
            lambda z: TF.nll_loss(TF.log_softmax(z, 1 if len(shape) > 1 else 0), tt,
                                  reduction=reduction, **topts), [x], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_huge_logits_stay_finite_per_pixel(dtype):
    torch = need_torch()
    logits = np.array([[1e4, -1e4, 0.0], [5e3, 5e3 + 1, -3e3]]).T.reshape(1, 3, 2, 1)
    target = np.array([[[1], [0]]])
    loss = F.cross_entropy(Tensor(logits.astype(dtype)), target, reduction="none")
    expected = torch.nn.functional.cross_entropy(torch.tensor(logits.astype(dtype)),
                                                 torch.from_numpy(target), reduction="none")
    assert np.all(np.isfinite(loss.data))
    assert_close(loss.data, expected, dtype, "loss")


def test_temporal_softmax_loss_with_a_mask(rng):
    """Captioning's loss: (N, T, V) scores, padded caption ends ignored, averaged over the
    real words only; (N*T, V) and (N, V, T) give the same loss and gradient."""
    n, t_len, v, pad = 3, 5, 7, -100
    scores = rng.standard_normal((n, t_len, v))
    words = rng.integers(0, v, (n, t_len))
    lengths = np.array([5, 3, 1])
    mask = np.arange(t_len)[None, :] < lengths[:, None]
    targets = np.where(mask, words, pad)

    # Straightforward NumPy: -log softmax of each real word, averaged over the real words.
    shifted = scores - scores.max(axis=2, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=2, keepdims=True))
    picked = np.take_along_axis(log_p, words[..., None], axis=2)[..., 0]
    expected = -(picked * mask).sum() / mask.sum()
    probs = np.exp(log_p)
    expected_grad = (probs - np.eye(v)[words]) * mask[..., None] / mask.sum()

    flat = Tensor(scores.copy(), requires_grad=True)
    loss = F.cross_entropy(flat.reshape(n * t_len, v), targets.reshape(-1), ignore_index=pad)
    loss.backward()
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    np.testing.assert_allclose(flat.grad, expected_grad, rtol=1e-12, atol=1e-15)

    moved = Tensor(scores.copy(), requires_grad=True)
    loss2 = F.cross_entropy(moved.transpose(0, 2, 1), targets)  # (N, V, T)
    loss2.backward()
    assert loss2.item() == pytest.approx(expected, rel=1e-12)
    np.testing.assert_allclose(moved.grad, expected_grad, rtol=1e-12, atol=1e-15)
    check_gradients(lambda: F.cross_entropy(flat.reshape(n * t_len, v), targets.reshape(-1)),
                    [as_leaf(flat)])


def test_cross_entropy_weighted_mean_divides_by_the_weights_of_the_targets(rng):
    x = rng.standard_normal((4, 3))
    t = np.array([0, 2, 2, 1])
    w = np.array([0.5, 2.0, 3.0])
    per = F.cross_entropy(Tensor(x), t, weight=w, reduction="none").data
    mean = F.cross_entropy(Tensor(x), t, weight=w).item()
    assert mean == pytest.approx(per.sum() / w[t].sum(), rel=1e-12)
    t_ignored = np.array([0, -100, 2, 1])
    mean = F.cross_entropy(Tensor(x), t_ignored, weight=w).item()
    per = F.cross_entropy(Tensor(x), t_ignored, weight=w, reduction="none").data
    assert per[1] == 0
    assert mean == pytest.approx(per.sum() / (0.5 + 3.0 + 2.0), rel=1e-12)


def test_cross_entropy_with_every_target_ignored():
    x = Tensor(np.zeros((2, 3)))
    with pytest.raises(cnnlab.NonFiniteLossError, match=r"cross_entropy: every target is "
                                                        r"ignore_index .* the mean over no "
                                                        r"targets is undefined"):
        F.cross_entropy(x, [-100, -100])
    assert F.cross_entropy(x, [-100, -100], reduction="sum").item() == 0


@pytest.mark.parametrize("call, match", [
    (lambda x: F.cross_entropy(x, np.zeros((2, 3, 4))), r"class-probability targets \(of the "
                                                        r"input's shape \(2, 3, 4\)\) are not "
                                                        r"supported"),
    (lambda x: F.cross_entropy(x, [0, 1]), r"expects 8 integer labels of shape \(2, 4\) for "
                                           r"logits of shape \(2, 3, 4\), got target of shape "
                                           r"\(2,\); targets are \(N, d1, ...\)"),
    (lambda x: F.cross_entropy(x, np.full((2, 4), 3)), r"target labels must be in \[0, 2\] "
                                                       r"for 3 classes, found 3"),
    (lambda x: F.cross_entropy(x, np.full((2, 4), 1), weight=[1.0, 2.0]),
     r"weight must hold one value per class, shape \(3,\), got shape \(2,\)"),
    (lambda x: F.cross_entropy(x, np.full((2, 4), 1), label_smoothing=1.5),
     "label_smoothing must be between 0.0 and 1.0, got 1.5"),
    (lambda x: F.nll_loss(x, np.full((2, 4), 1), reduction="avg"),
     "nll_loss: reduction must be 'mean', 'sum' or 'none', got 'avg'"),
    (lambda x: F.cross_entropy(Tensor(np.float64(1.0)), 0), r"expects logits of shape \(N, C\) "
                                                            r"or \(N, C, d1, ...\), got a 0-D"),
])
def test_class_loss_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call(Tensor(np.zeros((2, 3, 4))))


def test_ignore_index_may_be_outside_the_classes_only():
    x = Tensor(np.zeros((2, 3)))
    assert F.cross_entropy(x, [255, 1], ignore_index=255).item() == pytest.approx(np.log(3))
    with pytest.raises(ValueError, match=r"found 255 \(1 out of range\)"):
        F.cross_entropy(x, [255, 1])


# ----- regression losses --------------------------------------------------------------------


def _away_from(a, b, kinks, gap=0.05):
    """Move ``a`` so that |a - b| stays ``gap`` away from every kink (0, beta)."""
    d = a - b
    for k in kinks:
        near = np.abs(np.abs(d) - k) < gap
        d[near] = np.sign(d[near] + 1e-12) * (k + 2 * gap)
    return b + d


REGRESSION = {
    "mse": (F.mse_loss, {}, [0.0]),
    "l1": (F.l1_loss, {}, [0.0]),
    "smooth_l1": (F.smooth_l1_loss, {}, [0.0, 1.0]),
    "smooth_l1_beta0.5": (F.smooth_l1_loss, {"beta": 0.5}, [0.0, 0.5]),
    "smooth_l1_beta0": (F.smooth_l1_loss, {"beta": 0.0}, [0.0]),
}


def _regression_inputs(name, rng):
    kinks = REGRESSION[name][2]
    b = distinct_values((3, 4), rng, -2, 2)
    a = _away_from(distinct_values((3, 4), rng, -2, 2), b, kinks)
    return a, b


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", REGRESSION, ids=list(REGRESSION))
def test_regression_gradients(name, reduction, rng):
    fn, opts, _ = REGRESSION[name]
    check_op(lambda a, b: fn(a, b, reduction=reduction, **opts), *_regression_inputs(name, rng),
             names=["input", "target"])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", REGRESSION, ids=list(REGRESSION))
def test_regression_matches_torch(name, reduction, dtype, rng):
    torch = need_torch()
    fn, opts, _ = REGRESSION[name]
    theirs = getattr(torch.nn.functional, fn.__name__)
    compare(lambda a, b: fn(a, b, reduction=reduction, **opts),
            lambda a, b: theirs(a, b, reduction=reduction, **opts),
            list(_regression_inputs(name, rng)), dtype, ["input", "target"])


def test_smooth_l1_values_by_hand():
    d = np.array([0.2, -0.5, 2.0, -3.0])
    out = F.smooth_l1_loss(Tensor(d), np.zeros(4), reduction="none", beta=1.0).data
    np.testing.assert_allclose(out, [0.02, 0.125, 1.5, 2.5])
    np.testing.assert_allclose(F.l1_loss(Tensor(d), np.zeros(4), reduction="none").data,
                               np.abs(d))


# ----- binary cross-entropy -----------------------------------------------------------------

BCE_OPTIONS = {
    "plain": {},
    "weight": {"weight": "per_element"},
    "pos_weight": {"pos_weight": "per_class"},
    "both": {"weight": "per_class", "pos_weight": "per_class"},
}


def _bce_case(options, rng):
    x = distinct_values((4, 3), rng, -4, 4)
    y = rng.uniform(0, 1, (4, 3))
    y[0] = [0, 1, 1]  # hard labels too
    opts = {}
    for k, kind in BCE_OPTIONS[options].items():
        opts[k] = rng.uniform(0.5, 2.0, (4, 3) if kind == "per_element" else (3,))
    return x, y, opts


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("options", BCE_OPTIONS, ids=list(BCE_OPTIONS))
def test_bce_with_logits_gradients(options, reduction, rng):
    x, y, opts = _bce_case(options, rng)
    check_op(lambda a, b: F.binary_cross_entropy_with_logits(a, b, reduction=reduction, **opts),
             x, y, names=["input", "target"])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("options", BCE_OPTIONS, ids=list(BCE_OPTIONS))
def test_bce_with_logits_matches_torch(options, reduction, dtype, rng):
    torch = need_torch()
    x, y, opts = _bce_case(options, rng)
    topts = {k: torch.tensor(v.astype(dtype)) for k, v in opts.items()}
    compare(lambda a, b: F.binary_cross_entropy_with_logits(a, b, reduction=reduction, **opts),
            lambda a, b: torch.nn.functional.binary_cross_entropy_with_logits(
                a, b, reduction=reduction, **topts),
            [x, y], dtype, ["input", "target"])


@pytest.mark.parametrize("dtype", DTYPES)
def test_bce_with_logits_is_stable_at_huge_logits(dtype):
    torch = need_torch()
    x = np.array([-1e4, -50.0, 0.0, 50.0, 1e4])
    y = np.array([1.0, 0.0, 1.0, 1.0, 0.0])
    compare(lambda a: F.binary_cross_entropy_with_logits(a, y, reduction="none"),
            lambda a: torch.nn.functional.binary_cross_entropy_with_logits(
                a, torch.tensor(y.astype(dtype)), reduction="none"), [x], dtype)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_bce_on_probabilities(reduction, rng):
    p = distinct_values((3, 4), rng, 0.05, 0.95)
    y = rng.uniform(0, 1, (3, 4))
    w = rng.uniform(0.5, 2, 4)
    check_op(lambda a, b: F.binary_cross_entropy(a, b, weight=w, reduction=reduction), p, y,
             names=["input", "target"])
    torch = need_torch()
    for dtype in DTYPES:
        compare(lambda a, b: F.binary_cross_entropy(a, b, weight=w, reduction=reduction),
                lambda a, b, dtype=dtype: torch.nn.functional.binary_cross_entropy(
                    a, b, weight=torch.tensor(w.astype(dtype)), reduction=reduction),
                [p, y], dtype, ["input", "target"])


def test_bce_on_probabilities_clamps_its_logs_as_torch():
    torch = need_torch()
    p, y = np.array([0.0, 1.0, 0.5]), np.array([1.0, 0.0, 1.0])
    ours = F.binary_cross_entropy(Tensor(p), y, reduction="none").data
    theirs = torch.nn.functional.binary_cross_entropy(torch.tensor(p), torch.tensor(y),
                                                      reduction="none")
    assert_close(ours, theirs, np.float64, "clamped loss")
    with pytest.raises(ValueError, match=r"binary_cross_entropy: all input values must be "
                                         r"probabilities in \[0, 1\], found 1.5; apply a "
                                         r"sigmoid first"):
        F.binary_cross_entropy(Tensor([0.5, 1.5]), [0.0, 1.0])


# ----- the heat-map focal loss --------------------------------------------------------------


def focal_reference(logits, gt, alpha=2.0, beta=4.0, eps=1e-4):
    """CenterNet's formula written out plainly in NumPy, element by element."""
    total, num_pos = 0.0, 0
    for x, y in zip(logits.ravel(), gt.ravel(), strict=True):
        p = min(max(1 / (1 + np.exp(-x)), eps), 1 - eps)
        if y == 1:
            total += np.log(p) * (1 - p) ** alpha
            num_pos += 1
        else:
            total += np.log(1 - p) * p ** alpha * (1 - y) ** beta
    return -total / num_pos if num_pos else -total


def _heat_case(rng, positives=True):
    gt = np.zeros((2, 3, 5, 5))
    if positives:
        yy, xx = np.mgrid[:5, :5]
        for n, c, cy, cx in [(0, 0, 1, 1), (0, 2, 3, 2), (1, 1, 2, 4)]:
            gt[n, c] = np.maximum(gt[n, c], np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 2.0))
        assert (gt == 1).sum() == 3
    logits = distinct_values(gt.shape, rng, -4, 4)
    return logits, gt


@pytest.mark.parametrize("positives", [True, False], ids=["peaks", "no_peaks"])
def test_focal_loss_against_a_plain_formula(positives, rng):
    logits, gt = _heat_case(rng, positives)
    ours = F.focal_loss_heatmap(Tensor(logits), gt).item()
    assert ours == pytest.approx(focal_reference(logits, gt), rel=1e-12)
    ours = F.focal_loss_heatmap(Tensor(logits), gt, alpha=1.5, beta=3.0, eps=1e-3).item()
    assert ours == pytest.approx(focal_reference(logits, gt, 1.5, 3.0, 1e-3), rel=1e-12)
    per = F.focal_loss_heatmap(Tensor(logits), gt, reduction="none").data
    total = F.focal_loss_heatmap(Tensor(logits), gt, reduction="sum").item()
    assert per.shape == gt.shape and total == pytest.approx(per.sum(), rel=1e-12)
    count = max((gt == 1).sum(), 1)
    assert total / count == pytest.approx(focal_reference(logits, gt), rel=1e-12)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_focal_loss_gradients(reduction, rng):
    logits, gt = _heat_case(rng)
    check_op(lambda z: F.focal_loss_heatmap(z, gt, reduction=reduction), logits)


def test_focal_loss_gradient_is_zero_where_clamped(rng):
    _, gt = _heat_case(rng)
    logits = np.full(gt.shape, -20.0)  # sigmoid below eps everywhere: clamped
    x = Tensor(logits, requires_grad=True)
    F.focal_loss_heatmap(x, gt).backward()
    np.testing.assert_array_equal(x.grad, 0)


def test_focal_loss_errors():
    with pytest.raises(ValueError, match=r"focal_loss_heatmap expects input and target of the "
                                         r"same shape, got \(1, 2\) and \(2,\)"):
        F.focal_loss_heatmap(Tensor(np.zeros((1, 2))), np.zeros(2))
    with pytest.raises(ValueError, match=r"eps must be in \(0, 0.5\), got 0.7"):
        F.focal_loss_heatmap(Tensor(np.zeros(2)), np.zeros(2), eps=0.7)


# ----- modules ------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_loss_modules_match_torch_modules(dtype, rng):
    torch = need_torch()
    tdt = torch.float64 if dtype == np.float64 else torch.float32
    w = rng.uniform(0.5, 2, 4)
    seg_t = rng.integers(0, 4, (2, 3, 3))
    seg_t[0, 0, 0] = 255
    cases = [
        (nn.CrossEntropyLoss(weight=w, ignore_index=255, label_smoothing=0.1),
         torch.nn.CrossEntropyLoss(weight=torch.tensor(w, dtype=tdt), ignore_index=255,
                                   label_smoothing=0.1), (2, 4, 3, 3), seg_t),
        (nn.NLLLoss(reduction="sum"), torch.nn.NLLLoss(reduction="sum"), (5, 4),
         rng.integers(0, 4, 5)),
        (nn.MSELoss(), torch.nn.MSELoss(), (3, 4), rng.standard_normal((3, 4))),
        (nn.L1Loss(reduction="none"), torch.nn.L1Loss(reduction="none"), (3, 4),
         rng.standard_normal((3, 4))),
        (nn.SmoothL1Loss(beta=0.5), torch.nn.SmoothL1Loss(beta=0.5), (3, 4),
         rng.standard_normal((3, 4))),
        (nn.BCEWithLogitsLoss(pos_weight=w), torch.nn.BCEWithLogitsLoss(
            pos_weight=torch.tensor(w, dtype=tdt)), (3, 4), rng.uniform(0, 1, (3, 4))),
    ]
    for ours, theirs, shape, target in cases:
        t_ours = target if target.dtype.kind == "i" else target.astype(dtype)
        t_theirs = torch.from_numpy(t_ours)
        compare(lambda x, ours=ours, t=t_ours: ours(x, t),
                lambda x, theirs=theirs, t=t_theirs: theirs(x, t),
                [rng.standard_normal(shape)], dtype, [type(ours).__name__])


def test_loss_modules_state_repr_and_errors():
    loss = nn.CrossEntropyLoss(weight=[1, 2, 3], ignore_index=255)
    assert loss.state_dict()["weight"].dtype == np.float32
    assert repr(loss) == "CrossEntropyLoss(ignore_index=255)"
    assert repr(nn.SmoothL1Loss(reduction="sum", beta=0.5)) == \
        "SmoothL1Loss(reduction='sum', beta=0.5)"
    assert list(nn.MSELoss().parameters()) == []
    assert "pos_weight" in nn.BCEWithLogitsLoss(pos_weight=np.ones(3)).state_dict()
    with pytest.raises(ValueError, match="CrossEntropyLoss: size_average and reduce are "
                                         "deprecated"):
        nn.CrossEntropyLoss(None, True)
    with pytest.raises(ValueError, match="MSELoss: reduction must be 'mean', 'sum' or 'none', "
                                         "got 'avg'"):
        nn.MSELoss(reduction="avg")
    with pytest.raises(ValueError, match="SmoothL1Loss: beta must be at least 0, got -1"):
        nn.SmoothL1Loss(beta=-1)


def test_loss_modules_train_a_segmentation_head(rng, seeded):
    """A 1x1 conv trained with CrossEntropyLoss on a per-pixel task learns it."""
    x = rng.standard_normal((8, 2, 6, 6)).astype(np.float32)
    y = (x[:, 0] > x[:, 1]).astype(np.int64)  # class 1 where channel 0 is larger
    head = nn.Conv2d(2, 2, 1)
    loss_fn = nn.CrossEntropyLoss()
    opt = cnnlab.optim.SGD(head.parameters(), lr=1.0)
    first = None
    for _ in range(60):
        opt.zero_grad()
        loss = loss_fn(head(Tensor(x)), y)
        loss.backward()
        opt.step()
        first = first if first is not None else loss.item()
    assert loss.item() < 0.3 * first
    assert np.mean(head(Tensor(x)).data.argmax(axis=1) == y) > 0.95
