"""Tests for cnnlab.optim.lr_scheduler: torch parity, state round trips, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cnnlab.nn import Parameter
from cnnlab.optim import (
    SGD,
    CosineAnnealingLR,
    ExponentialLR,
    MultiStepLR,
    ReduceLROnPlateau,
    StepLR,
    lr_scheduler,
)


def make_optimizer(lrs=(0.1, 0.02)) -> SGD:
    groups = [{"params": [Parameter(np.zeros(2))], "lr": lr} for lr in lrs]
    return SGD(groups, lr=lrs[0], momentum=0.9)


SCHEDULES = {
    "step": (StepLR, {"step_size": 3, "gamma": 0.5}),
    "step-default-gamma": (StepLR, {"step_size": 7}),
    "cosine": (CosineAnnealingLR, {"T_max": 10}),
    "cosine-eta-min": (CosineAnnealingLR, {"T_max": 8, "eta_min": 0.001}),
    "multistep": (MultiStepLR, {"milestones": [3, 10, 20], "gamma": 0.5}),
    "multistep-unsorted-repeated": (MultiStepLR, {"milestones": [12, 4, 4, 25]}),
    "exponential": (ExponentialLR, {"gamma": 0.9}),
}


def run_schedule(sched_cls, kwargs, epochs=30):
    opt = make_optimizer()
    sched = sched_cls(opt, **kwargs)
    seen = []
    for _ in range(epochs):
        seen.append(sched.get_last_lr())
        assert [g["lr"] for g in opt.param_groups] == seen[-1]
        opt.step()
        sched.step()
    return seen


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_matches_torch_for_30_epochs(name):
    torch = pytest.importorskip("torch")
    sched_cls, kwargs = SCHEDULES[name]
    ours = run_schedule(sched_cls, kwargs)

    params = [torch.zeros(2, requires_grad=True) for _ in range(2)]
    opt = torch.optim.SGD(
        [{"params": params[:1], "lr": 0.1}, {"params": params[1:], "lr": 0.02}],
        lr=0.1,
        momentum=0.9,
    )
    sched = getattr(torch.optim.lr_scheduler, sched_cls.__name__)(opt, **kwargs)
    theirs = []
    for _ in range(30):
        theirs.append(sched.get_last_lr())
        opt.step()
        sched.step()
    # torch's cosine and exponential are recurrences, ours closed forms: equal up to rounding.
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-15)


def test_values_by_formula():
    step = run_schedule(StepLR, {"step_size": 2, "gamma": 0.1}, epochs=6)
    np.testing.assert_allclose([lrs[0] for lrs in step], [0.1, 0.1, 0.01, 0.01, 0.001, 0.001])
    cos = run_schedule(CosineAnnealingLR, {"T_max": 4, "eta_min": 0.01}, epochs=9)
    first = [lrs[0] for lrs in cos]
    assert first[0] == 0.1
    np.testing.assert_allclose(first[2], 0.055)  # halfway between 0.1 and 0.01
    np.testing.assert_allclose(first[4], 0.01)  # the minimum at T_max
    np.testing.assert_allclose(first[8], 0.1)  # back up after 2 * T_max, as torch


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_state_dict_survives_json_and_continues_exactly(name):
    sched_cls, kwargs = SCHEDULES[name]
    straight = run_schedule(sched_cls, kwargs, epochs=20)

    opt = make_optimizer()
    sched = sched_cls(opt, **kwargs)
    for _ in range(7):
        opt.step()
        sched.step()
    saved = json.loads(json.dumps(sched.state_dict()))
    opt_saved = opt.state_dict()

    # A fresh optimizer and schedule (with other settings), restored from the saved state.
    fresh_opt = make_optimizer(lrs=(5.0, 5.0))
    fresh = sched_cls(fresh_opt, **{**kwargs, **({"T_max": 99} if "T_max" in kwargs else {})})
    fresh_opt.load_state_dict(opt_saved)
    fresh.load_state_dict(saved)
    assert fresh.last_epoch == 7
    assert fresh.state_dict() == saved
    resumed = [fresh.get_last_lr()]
    for _ in range(12):
        fresh_opt.step()
        fresh.step()
        resumed.append(fresh.get_last_lr())
    assert resumed == straight[7:]


def test_loading_the_schedule_alone_sets_the_group_lrs():
    opt = make_optimizer()
    sched = StepLR(opt, step_size=2)
    for _ in range(5):
        sched.step()
    fresh_opt = make_optimizer()
    StepLR(fresh_opt, step_size=2).load_state_dict(sched.state_dict())
    assert [g["lr"] for g in fresh_opt.param_groups] == sched.get_last_lr()


def test_construction_records_initial_lr_and_keeps_an_existing_one():
    opt = make_optimizer()
    sched = CosineAnnealingLR(opt, T_max=5)
    assert [g["initial_lr"] for g in opt.param_groups] == [0.1, 0.02]
    for _ in range(3):
        sched.step()
    again = CosineAnnealingLR(opt, T_max=5)  # a second schedule starts from initial_lr
    assert again.base_lrs == [0.1, 0.02]
    assert again.last_epoch == 0 and again.get_last_lr() == [0.1, 0.02]


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda o: StepLR(o, step_size=0), ValueError, r"StepLR: step_size must be >= 1, got 0"),
        (lambda o: StepLR(o, step_size=2, gamma=0), ValueError, r"gamma must be > 0, got 0.0"),
        (lambda o: StepLR(o, step_size=2, gamma=-0.5), ValueError, r"gamma must be > 0"),
        (lambda o: StepLR(o, step_size=2.5), TypeError, r"step_size must be an int, got float"),
        (
            lambda o: CosineAnnealingLR(o, T_max=0),
            ValueError,
            r"CosineAnnealingLR: T_max must be >= 1, got 0",
        ),
        (
            lambda o: CosineAnnealingLR(o, T_max=5, eta_min=-1e-3),
            ValueError,
            r"eta_min must be >= 0, got -0.001",
        ),
        (lambda o: StepLR(object(), step_size=1), TypeError, r"expected a cnnlab.optim optimizer"),
    ],
)
def test_bad_arguments_raise(make, error, match):
    with pytest.raises(error, match=match):
        make(make_optimizer())


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda sd: [1], r"expected a dict with keys \['base_lrs', 'gamma', 'last_epoch'"),
        (lambda sd: {**sd, "extra": 1}, r"expected a dict with keys .*got \['base_lrs', 'extra'"),
        (
            lambda sd: {**sd, "type": "CosineAnnealingLR"},
            r"the state_dict is from a CosineAnnealingLR; load it into a CosineAnnealingLR",
        ),
        (lambda sd: {**sd, "last_epoch": -3}, r"last_epoch must be an int >= 0, got -3"),
        (lambda sd: {**sd, "last_epoch": 2.0}, r"last_epoch must be an int >= 0, got 2.0"),
        (
            lambda sd: {**sd, "base_lrs": [0.1]},
            r"base_lrs must be a list of 2 learning rates \(one per parameter group\)",
        ),
        (lambda sd: {**sd, "base_lrs": [0.1, -1]}, r"base_lrs\[1\] must be >= 0, got -1.0"),
        (lambda sd: {**sd, "gamma": 0}, r"StepLR: gamma must be > 0, got 0.0"),
    ],
)
def test_load_state_dict_rejects_bad_dicts_and_changes_nothing(mutate, match):
    sched = StepLR(make_optimizer(), step_size=2, gamma=0.5)
    sched.step()
    before = sched.state_dict()
    with pytest.raises(ValueError, match=match):
        sched.load_state_dict(mutate(dict(before)))
    assert sched.state_dict() == before


def test_module_exposes_torch_names_and_a_readable_repr():
    assert lr_scheduler.StepLR is StepLR and lr_scheduler.CosineAnnealingLR is CosineAnnealingLR
    assert lr_scheduler.MultiStepLR is MultiStepLR and lr_scheduler.ExponentialLR is ExponentialLR
    assert lr_scheduler.ReduceLROnPlateau is ReduceLROnPlateau
    sched = StepLR(make_optimizer(), step_size=3)
    assert repr(sched) == "StepLR(step_size=3, gamma=0.1, last_epoch=0)"


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda o: MultiStepLR(o, milestones=[3, 0]), ValueError, r"each milestone must be >= 1"),
        (lambda o: MultiStepLR(o, milestones=[2.5]), TypeError, r"each milestone must be an int"),
        (lambda o: MultiStepLR(o, milestones=5), TypeError, r"milestones must be a list of"),
        (lambda o: MultiStepLR(o, [2], gamma=0), ValueError, r"MultiStepLR: gamma must be > 0"),
        (lambda o: ExponentialLR(o, gamma=-0.9), ValueError, r"ExponentialLR: gamma must be > 0"),
    ],
)
def test_bad_arguments_of_the_newer_schedules_raise(make, error, match):
    with pytest.raises(error, match=match):
        make(make_optimizer())


def test_multistep_milestones_are_kept_sorted_and_survive_json():
    sched = MultiStepLR(make_optimizer(), milestones=(9, 3, 3))
    assert sched.milestones == [3, 3, 9]
    saved = json.loads(json.dumps(sched.state_dict()))
    fresh = MultiStepLR(make_optimizer(), milestones=[1])
    fresh.load_state_dict(saved)
    assert fresh.milestones == [3, 3, 9] and fresh.state_dict() == sched.state_dict()


# ------------------------------------------------------------- ReduceLROnPlateau
# A metric that improves, stalls, wobbles within the threshold, improves again, then stalls.
METRICS = (
    [5.0, 4.0, 3.0, 3.0, 3.0, 2.9999, 3.1, 3.0, 2.0, 2.0, 1.9999]
    + [2.5] * 4
    + [1.0] * 7
    + [0.5] * 8
)

PLATEAUS = {
    "default-patience-2": {"patience": 2},
    "factor-cooldown-min-lr": {"factor": 0.5, "patience": 1, "cooldown": 2, "min_lr": 0.004},
    "abs-threshold": {"patience": 1, "threshold": 0.5, "threshold_mode": "abs", "factor": 0.3},
    "max-mode": {"mode": "max", "patience": 1, "factor": 0.5},
    "max-abs-per-group-min-lr": {
        "mode": "max",
        "threshold_mode": "abs",
        "threshold": 0.1,
        "patience": 0,
        "min_lr": [0.01, 0.001],
    },
    "eps-skips-small-changes": {"patience": 0, "factor": 0.5, "eps": 0.01},
}


def run_plateau(kwargs, metrics=METRICS):
    opt = make_optimizer()
    sched = ReduceLROnPlateau(opt, **kwargs)
    seen = []
    for metric in metrics:
        opt.step()
        sched.step(metric)
        seen.append(sched.get_last_lr())
        assert [g["lr"] for g in opt.param_groups] == seen[-1]
    return seen


@pytest.mark.parametrize("name", list(PLATEAUS))
def test_plateau_matches_torch(name):
    torch = pytest.importorskip("torch")
    ours = run_plateau(PLATEAUS[name])
    params = [torch.zeros(2, requires_grad=True) for _ in range(2)]
    opt = torch.optim.SGD(
        [{"params": params[:1], "lr": 0.1}, {"params": params[1:], "lr": 0.02}],
        lr=0.1,
        momentum=0.9,
    )
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, **PLATEAUS[name])
    theirs = []
    for metric in METRICS:
        opt.step()
        sched.step(metric)
        theirs.append(sched.get_last_lr())
    assert ours == theirs  # the same multiplications: equal exactly
    assert ours[-1] != ours[0]  # some reduction happened


def test_plateau_state_survives_json_and_continues_exactly():
    kwargs = PLATEAUS["factor-cooldown-min-lr"]
    straight = run_plateau(kwargs)
    opt = make_optimizer()
    sched = ReduceLROnPlateau(opt, **kwargs)
    for metric in METRICS[:11]:
        sched.step(metric)
    saved = json.loads(json.dumps(sched.state_dict()))
    groups = opt.state_dict()
    fresh_opt = make_optimizer(lrs=(5.0, 5.0))
    fresh = ReduceLROnPlateau(fresh_opt, patience=99)
    fresh_opt.load_state_dict(groups)
    fresh.load_state_dict(saved)
    assert fresh.state_dict() == saved
    resumed = []
    for metric in METRICS[11:]:
        fresh.step(metric)
        resumed.append(fresh.get_last_lr())
    assert resumed == straight[11:]


def test_plateau_state_before_any_metric_stores_no_best():
    sched = ReduceLROnPlateau(make_optimizer(), mode="max")
    assert sched.state_dict()["best"] is None
    fresh = ReduceLROnPlateau(make_optimizer(), mode="max")
    fresh.load_state_dict(json.loads(json.dumps(sched.state_dict())))
    assert fresh.best == float("-inf")


def test_plateau_takes_one_element_tensors_and_rejects_other_metrics():
    import cnnlab

    sched = ReduceLROnPlateau(make_optimizer())
    sched.step(cnnlab.tensor(np.array(2.5)))
    assert sched.best == 2.5
    with pytest.raises(TypeError, match=r"metrics must be a number .* got NoneType"):
        sched.step(None)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"mode": "lowest"}, ValueError, r"mode must be 'min' or 'max', got 'lowest'"),
        ({"factor": 1.0}, ValueError, r"factor must be in \[0, 1\), got 1.0"),
        ({"patience": -1}, ValueError, r"patience must be >= 0, got -1"),
        ({"patience": 1.5}, TypeError, r"patience must be an int, got float"),
        ({"threshold": -0.1}, ValueError, r"threshold must be >= 0"),
        ({"threshold_mode": "pct"}, ValueError, r"threshold_mode must be 'rel' or 'abs'"),
        ({"cooldown": -2}, ValueError, r"cooldown must be >= 0, got -2"),
        ({"min_lr": [0.1]}, ValueError, r"min_lr must be one number or a list of 2"),
        ({"min_lr": -1}, ValueError, r"min_lr\[0\] must be >= 0, got -1.0"),
        ({"eps": -1e-8}, ValueError, r"eps must be >= 0"),
    ],
)
def test_plateau_bad_arguments_raise(kwargs, error, match):
    with pytest.raises(error, match=match):
        ReduceLROnPlateau(make_optimizer(), **kwargs)
    with pytest.raises(TypeError, match=r"expected a cnnlab.optim optimizer"):
        ReduceLROnPlateau(object())


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda sd: {**sd, "type": "StepLR"}, r"the state_dict is from a StepLR"),
        (lambda sd: {**sd, "extra": 1}, r"expected a dict with keys"),
        (lambda sd: {**sd, "num_bad_epochs": -1}, r"num_bad_epochs must be >= 0"),
        (lambda sd: {**sd, "best": "low"}, r"best must be a number"),
        (lambda sd: {**sd, "factor": 2.0}, r"factor must be in \[0, 1\)"),
        (lambda sd: {**sd, "min_lrs": [0.0]}, r"min_lr must be one number or a list of 2"),
    ],
)
def test_plateau_load_state_dict_rejects_bad_dicts_and_changes_nothing(mutate, match):
    sched = ReduceLROnPlateau(make_optimizer(), patience=1)
    for metric in (3.0, 2.0, 2.5):
        sched.step(metric)
    before = sched.state_dict()
    with pytest.raises((TypeError, ValueError), match=match):
        sched.load_state_dict(mutate(dict(before)))
    assert sched.state_dict() == before


def test_plateau_needs_a_min_lr_per_group_when_groups_are_added_later():
    opt = make_optimizer()
    sched = ReduceLROnPlateau(opt, patience=0, min_lr=[0.0, 0.0])
    opt.add_param_group({"params": [Parameter(np.zeros(1))], "lr": 0.5})
    sched.step(1.0)
    with pytest.raises(ValueError, match=r"has 3 parameter groups but min_lr has 2 values"):
        sched.step(2.0)
