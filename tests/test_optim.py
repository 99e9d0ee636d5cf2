"""Tests for cnnlab.optim: convergence, PyTorch parity, dtypes, state round trips, errors."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

import cnnlab
import cnnlab.nn.functional as F
from cnnlab import nn
from cnnlab.nn import Parameter
from cnnlab.optim import (
    SGD,
    Adadelta,
    Adagrad,
    Adam,
    AdamW,
    CosineAnnealingLR,
    ExponentialLR,
    MultiStepLR,
    Optimizer,
    RMSprop,
    StepLR,
)


def param(values, dtype=np.float64) -> Parameter:
    return Parameter(np.array(values, dtype=dtype))


# Every optimizer configuration the parity, dtype and round-trip tests run through.
CONFIGS = {
    "sgd": (SGD, {"lr": 0.1}),
    "sgd-wd": (SGD, {"lr": 0.1, "weight_decay": 0.05}),
    "sgd-momentum": (SGD, {"lr": 0.05, "momentum": 0.9}),
    "sgd-momentum-dampening-wd": (
        SGD,
        {"lr": 0.05, "momentum": 0.9, "dampening": 0.3, "weight_decay": 0.01},
    ),
    "sgd-nesterov": (SGD, {"lr": 0.05, "momentum": 0.9, "nesterov": True}),
    "sgd-nesterov-wd": (
        SGD,
        {"lr": 0.05, "momentum": 0.8, "nesterov": True, "weight_decay": 0.02},
    ),
    "adam": (Adam, {"lr": 0.01}),
    "adam-wd": (Adam, {"lr": 0.01, "weight_decay": 0.1}),
    "adam-amsgrad": (Adam, {"lr": 0.01, "amsgrad": True}),
    "adam-low-beta1": (Adam, {"lr": 0.01, "betas": (0.3, 0.9), "eps": 1e-6}),
    "adamw": (AdamW, {"lr": 0.01}),
    "adamw-amsgrad-wd": (AdamW, {"lr": 0.01, "weight_decay": 0.1, "amsgrad": True}),
    "adadelta": (Adadelta, {"lr": 1.0}),
    "adadelta-rho-eps-wd": (Adadelta, {"lr": 0.5, "rho": 0.8, "eps": 1e-4, "weight_decay": 0.1}),
    "rmsprop": (RMSprop, {"lr": 0.01}),
    "rmsprop-wd": (RMSprop, {"lr": 0.01, "alpha": 0.9, "eps": 1e-6, "weight_decay": 0.05}),
    "rmsprop-momentum": (RMSprop, {"lr": 0.01, "momentum": 0.9}),
    "rmsprop-centered": (RMSprop, {"lr": 0.01, "centered": True}),
    "rmsprop-centered-momentum-wd": (
        RMSprop,
        {"lr": 0.01, "alpha": 0.9, "momentum": 0.5, "centered": True, "weight_decay": 0.05},
    ),
    "adagrad": (Adagrad, {"lr": 0.1}),
    "adagrad-decay-init-wd": (
        Adagrad,
        {
            "lr": 0.1,
            "lr_decay": 0.01,
            "weight_decay": 0.05,
            "initial_accumulator_value": 0.1,
            "eps": 1e-6,
        },
    ),
}


# ------------------------------------------------------------------ convergence
QUAD_A = np.array([1.0, 4.0, 10.0])
QUAD_MIN = np.array([1.0, -2.0, 0.5])


def quadratic_grad(x: np.ndarray) -> np.ndarray:
    """Gradient of 0.5 * sum(A * (x - x*)**2), minimum at x*."""
    return QUAD_A * (x - QUAD_MIN)


def rosenbrock_grad(v: np.ndarray) -> np.ndarray:
    """Gradient of (1 - x)**2 + 100 * (y - x**2)**2, minimum at (1, 1)."""
    x, y = v
    return np.array([-2 * (1 - x) - 400 * x * (y - x * x), 200 * (y - x * x)])


def minimize(make_opt, grad_fn, start, steps: int) -> np.ndarray:
    p = param(start)
    opt = make_opt([p])
    for _ in range(steps):
        p.grad = grad_fn(p.data)
        opt.step()
    return p.data


@pytest.mark.parametrize(
    "make_opt",
    [
        lambda ps: SGD(ps, lr=0.05),
        lambda ps: SGD(ps, lr=0.02, momentum=0.9),
        lambda ps: SGD(ps, lr=0.02, momentum=0.9, nesterov=True),
        lambda ps: Adam(ps, lr=0.05),
        lambda ps: Adam(ps, lr=0.05, amsgrad=True),
        lambda ps: AdamW(ps, lr=0.05, weight_decay=0.0),
        lambda ps: Adadelta(ps),
        lambda ps: RMSprop(ps, lr=0.01),
        lambda ps: RMSprop(ps, lr=1e-3, momentum=0.9),
        lambda ps: RMSprop(ps, lr=0.01, centered=True),
        lambda ps: Adagrad(ps, lr=0.5),
    ],
    ids=[
        "sgd",
        "momentum",
        "nesterov",
        "adam",
        "amsgrad",
        "adamw",
        "adadelta",
        "rmsprop",
        "rmsprop-momentum",
        "rmsprop-centered",
        "adagrad",
    ],
)
def test_reaches_the_minimum_of_a_quadratic(make_opt):
    x = minimize(make_opt, quadratic_grad, np.zeros(3), steps=1000)
    np.testing.assert_allclose(x, QUAD_MIN, atol=1e-6)


@pytest.mark.parametrize(
    ("make_opt", "steps"),
    [
        (lambda ps: SGD(ps, lr=1e-3), 20000),
        (lambda ps: SGD(ps, lr=5e-4, momentum=0.9), 5000),
        (lambda ps: SGD(ps, lr=5e-4, momentum=0.9, nesterov=True), 5000),
        (lambda ps: Adam(ps, lr=0.02), 5000),
        (lambda ps: AdamW(ps, lr=0.02, weight_decay=0.0), 5000),
        # Adadelta creeps along the curved valley: it needs long memories and many steps.
        (lambda ps: Adadelta(ps, lr=1.0, rho=0.9999, eps=1e-7), 40000),
        (lambda ps: RMSprop(ps, lr=3e-4, alpha=0.9), 20000),
        (lambda ps: RMSprop(ps, lr=1e-3, momentum=0.9), 5000),
        (lambda ps: RMSprop(ps, lr=3e-4, alpha=0.9, momentum=0.9, centered=True), 5000),
        (lambda ps: Adagrad(ps, lr=0.5), 15000),
    ],
    ids=[
        "sgd",
        "momentum",
        "nesterov",
        "adam",
        "adamw",
        "adadelta",
        "rmsprop",
        "rmsprop-momentum",
        "rmsprop-centered-momentum",
        "adagrad",
    ],
)
def test_reaches_the_minimum_of_rosenbrock(make_opt, steps):
    x = minimize(make_opt, rosenbrock_grad, [-1.2, 1.0], steps)
    np.testing.assert_allclose(x, [1.0, 1.0], atol=1e-3)


def test_adamw_decay_settles_near_the_minimum_and_shrinks_weights():
    # Decoupled decay pulls towards zero, so the end point sits a little inside x*.
    x = minimize(lambda ps: AdamW(ps, lr=0.05), quadratic_grad, np.zeros(3), steps=1000)
    np.testing.assert_allclose(x, QUAD_MIN, atol=1e-2)
    assert np.all(np.abs(x) < np.abs(QUAD_MIN))


def test_adamw_without_decay_is_adam_exactly():
    start = np.random.default_rng(0).standard_normal(5)
    a = minimize(lambda ps: Adam(ps, lr=0.05), quadratic_grad_5, start, steps=50)
    b = minimize(lambda ps: AdamW(ps, lr=0.05, weight_decay=0), quadratic_grad_5, start, 50)
    np.testing.assert_array_equal(a, b)


def quadratic_grad_5(x: np.ndarray) -> np.ndarray:
    return np.arange(1.0, 6.0) * (x - 1.0)


# ---------------------------------------------------------------- torch parity
def run_parity(torch, opt_cls, kwargs, dtype, steps=40, seed=0):
    """Step cnnlab and torch on the same gradients; return the worst error seen.

    The error of a parameter is max|ours - torch| / max|torch|, over all steps.
    """
    rng = np.random.default_rng(seed)
    shapes = [(4, 5), (7,)]
    starts = [rng.standard_normal(s).astype(dtype) for s in shapes]
    ours = [Parameter(s.copy()) for s in starts]
    theirs = [torch.tensor(s.copy(), requires_grad=True) for s in starts]
    torch_cls = getattr(torch.optim, opt_cls.__name__)
    # Two groups, the second with its own learning rate, to cover per-group settings.
    opt = opt_cls([{"params": ours[:1]}, {"params": ours[1:], "lr": kwargs["lr"] / 2}], **kwargs)
    ref = torch_cls(
        [{"params": theirs[:1]}, {"params": theirs[1:], "lr": kwargs["lr"] / 2}],
        foreach=False,
        **kwargs,
    )
    worst = 0.0
    for _ in range(steps):
        for p, t in zip(ours, theirs, strict=True):
            g = rng.standard_normal(p.data.shape).astype(dtype)
            p.grad = g
            t.grad = torch.tensor(g.copy())
        opt.step()
        ref.step()
        for p, t in zip(ours, theirs, strict=True):
            expected = t.detach().numpy()
            assert p.data.dtype == dtype
            worst = max(worst, float(np.max(np.abs(p.data - expected)) / np.max(np.abs(expected))))
    return worst


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize(("dtype", "tol"), [(np.float32, 1e-5), (np.float64, 1e-12)])
def test_matches_torch_step_for_step(name, dtype, tol):
    torch = pytest.importorskip("torch")
    opt_cls, kwargs = CONFIGS[name]
    worst = run_parity(torch, opt_cls, kwargs, dtype)
    assert worst < tol, f"{name} {np.dtype(dtype).name}: worst relative error {worst:.3g}"


# ---------------------------------------------------------------------- dtypes
@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_updates_in_place_and_keeps_dtype(name, dtype):
    opt_cls, kwargs = CONFIGS[name]
    p = Parameter(np.linspace(-1, 1, 6, dtype=dtype).reshape(2, 3))
    data = p.data
    opt = opt_cls([p], **kwargs)
    for _ in range(3):
        p.grad = np.full((2, 3), 0.5, dtype=dtype)
        opt.step()
    assert p.data is data
    assert p.data.dtype == dtype
    for value in opt.state.get(0, {}).values():
        if isinstance(value, np.ndarray):
            assert value.dtype == dtype


def test_hyperparameters_given_as_numpy_float64_do_not_promote_float32():
    p = param([1.0, 2.0], dtype=np.float32)
    opt = Adam([p], lr=np.float64(0.1), betas=(np.float64(0.9), 0.999))
    p.grad = np.ones(2, dtype=np.float32)
    opt.step()
    assert p.data.dtype == np.float32
    assert type(opt.param_groups[0]["lr"]) is float


# ------------------------------------------------------------ state round trip
def trajectory(opt_cls, kwargs, steps, grads, restore_at=None, json_keys=False):
    """Run `steps` steps; optionally save at `restore_at` and continue in a fresh optimizer."""
    params = [Parameter(np.linspace(-1, 1, 12).reshape(3, 4)), Parameter(np.array([0.5, -0.5]))]
    opt = opt_cls(params, **kwargs)
    for i in range(steps):
        if i == restore_at:
            saved = opt.state_dict()
            if json_keys:
                saved["state"] = {str(k): v for k, v in saved["state"].items()}
            params = [Parameter(p.data.copy()) for p in params]
            opt = opt_cls(params, **{**kwargs, "lr": 123.0})  # overwritten by the load
            opt.load_state_dict(saved)
        for p, g in zip(params, grads[i], strict=True):
            p.grad = g
        opt.step()
    return [p.data for p in params]


@pytest.mark.parametrize("name", list(CONFIGS))
def test_state_dict_round_trip_continues_bit_identically(name):
    opt_cls, kwargs = CONFIGS[name]
    rng = np.random.default_rng(1)
    grads = [[rng.standard_normal((3, 4)), rng.standard_normal(2)] for _ in range(12)]
    straight = trajectory(opt_cls, kwargs, 12, grads)
    resumed = trajectory(opt_cls, kwargs, 12, grads, restore_at=5, json_keys=True)
    for a, b in zip(straight, resumed, strict=True):
        np.testing.assert_array_equal(a, b)


def test_state_dict_layout_and_copies():
    w, b = param(np.ones((2, 2))), param([0.0])
    opt = Adam([{"params": [w]}, {"params": [b], "lr": 0.5}], lr=0.1)
    w.grad = np.ones((2, 2))
    opt.step()  # b has no gradient: no state for it
    sd = opt.state_dict()
    assert list(sd["state"]) == [0]
    assert sorted(sd["state"][0]) == ["exp_avg", "exp_avg_sq", "step"]
    assert sd["state"][0]["step"] == 1
    assert [g["params"] for g in sd["param_groups"]] == [[0], [1]]
    assert [g["lr"] for g in sd["param_groups"]] == [0.1, 0.5]
    assert sd["param_groups"][0]["betas"] == (0.9, 0.999)
    # The arrays are copies: later steps do not change the saved dict, and vice versa.
    saved = sd["state"][0]["exp_avg"].copy()
    opt.step()
    np.testing.assert_array_equal(sd["state"][0]["exp_avg"], saved)
    sd["state"][0]["exp_avg"][:] = 99
    assert not np.any(opt.state[0]["exp_avg"] == 99)


def test_load_state_dict_copies_and_casts_to_the_parameter_dtype():
    p = param(np.zeros(3), dtype=np.float32)
    opt = SGD([p], lr=0.1, momentum=0.9)
    buffer = np.arange(3.0)  # float64
    opt.load_state_dict(
        {
            "state": {0: {"momentum_buffer": buffer}},
            "param_groups": opt.state_dict()["param_groups"],
        }
    )
    loaded = opt.state[0]["momentum_buffer"]
    assert loaded.dtype == np.float32 and loaded is not buffer
    buffer[:] = -1
    np.testing.assert_array_equal(loaded, [0, 1, 2])


def test_load_state_dict_restores_hyperparameters_and_keeps_extra_keys():
    p = param([1.0])
    source = SGD([p], lr=0.3, momentum=0.5)
    source.param_groups[0]["initial_lr"] = 0.3
    target = SGD([param([1.0])], lr=0.1)
    target.load_state_dict(source.state_dict())
    group = target.param_groups[0]
    assert (group["lr"], group["momentum"], group["initial_lr"]) == (0.3, 0.5, 0.3)
    # betas stored as a list (as JSON gives them back) turn into a tuple again
    adam = Adam([param([1.0])])
    sd = adam.state_dict()
    sd["param_groups"][0]["betas"] = [0.8, 0.99]
    adam.load_state_dict(sd)
    assert adam.param_groups[0]["betas"] == (0.8, 0.99)


def make_sd(opt_cls=SGD, shapes=((2, 2),), steps=1, **kwargs):
    params = [param(np.ones(s)) for s in shapes]
    opt = opt_cls(params, **({"lr": 0.1, "momentum": 0.9} if opt_cls is SGD else {}), **kwargs)
    for _ in range(steps):
        for p in params:
            p.grad = np.ones_like(p.data)
        opt.step()
    return opt.state_dict()


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda sd: [], r"expected a dict with keys 'state' and 'param_groups'"),
        (lambda sd: {"state": {}}, r"expected a dict with keys 'state' and 'param_groups'"),
        (
            lambda sd: {**sd, "param_groups": tuple(sd["param_groups"])},
            r"'state' must be a dict and 'param_groups' a list of dicts",
        ),
        (
            lambda sd: {**sd, "param_groups": sd["param_groups"] * 2},
            r"has 2 parameter groups, but this optimizer has 1",
        ),
        (
            lambda sd: {**sd, "param_groups": [{**sd["param_groups"][0], "params": [0, 1]}]},
            r"group 0 of the state_dict has 2 parameters, but this optimizer's group 0 has 1",
        ),
        (
            lambda sd: {**sd, "state": {0: {"momentum_buffer": np.ones((3, 2))}}},
            r"'momentum_buffer' has shape \(3, 2\), but the parameter has shape \(2, 2\)",
        ),
        (
            lambda sd: {**sd, "state": {5: sd["state"][0]}},
            r"state for parameter 5, which none of its param_groups lists",
        ),
        (
            lambda sd: {**sd, "state": {0: {"exp_avg": np.ones((2, 2))}}},
            r"missing \['momentum_buffer'\], unexpected \['exp_avg'\]",
        ),
        (
            lambda sd: {**sd, "state": {-1: sd["state"][0]}},
            r"parameter ids must be integers >= 0, got -1",
        ),
        (
            lambda sd: {**sd, "state": {0: np.ones(3)}},
            r"state of parameter 0 must be a dict of arrays",
        ),
        (
            lambda sd: {**sd, "param_groups": [{**sd["param_groups"][0], "lr": -1.0}]},
            r"SGD: lr must be >= 0, got -1.0",
        ),
    ],
    ids=[
        "not-a-dict",
        "no-groups",
        "groups-not-a-list",
        "group-count",
        "params-per-group",
        "array-shape",
        "unknown-param",
        "other-optimizer",
        "bad-id",
        "entry-not-dict",
        "bad-hyperparameter",
    ],
)
def test_load_state_dict_rejects_mismatches(mutate, match):
    p = param(np.ones((2, 2)))
    opt = SGD([p], lr=0.1, momentum=0.9)
    before = opt.state_dict()
    with pytest.raises(ValueError, match=match):
        opt.load_state_dict(mutate(make_sd()))
    # Nothing changed.
    assert opt.state == {} and opt.param_groups[0]["lr"] == before["param_groups"][0]["lr"]


@pytest.mark.parametrize("step", [-1, 1.5, float("nan"), np.ones(2)])
def test_load_state_dict_rejects_bad_step_counts(step):
    sd = make_sd(Adam)
    sd["state"][0]["step"] = step
    with pytest.raises(ValueError, match=r"'step' must be a whole number >= 0"):
        Adam([param(np.ones((2, 2)))]).load_state_dict(sd)


def test_load_state_dict_accepts_amsgrad_state_only_when_complete():
    sd = make_sd(Adam, amsgrad=True)
    assert "max_exp_avg_sq" in sd["state"][0]
    del sd["state"][0]["max_exp_avg_sq"]
    with pytest.raises(ValueError, match=r"missing \['max_exp_avg_sq'\]"):
        Adam([param(np.ones((2, 2)))], amsgrad=True).load_state_dict(sd)


# ---------------------------------------------------------- construction errors
@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda ps: SGD(ps, lr=-0.1), r"SGD: lr must be >= 0, got -0.1"),
        (lambda ps: SGD(ps, lr=float("nan")), r"SGD: lr must be >= 0, got nan"),
        (lambda ps: SGD(ps, lr=0.1, momentum=-0.5), r"momentum must be in \[0, 1\), got -0.5"),
        (lambda ps: SGD(ps, lr=0.1, momentum=1.0), r"momentum must be in \[0, 1\), got 1.0"),
        (lambda ps: SGD(ps, lr=0.1, dampening=1.5), r"dampening must be in \[0, 1\], got 1.5"),
        (lambda ps: SGD(ps, lr=0.1, weight_decay=-1), r"weight_decay must be >= 0, got -1.0"),
        (
            lambda ps: SGD(ps, lr=0.1, nesterov=True),
            r"nesterov=True needs momentum > 0 and dampening = 0, got momentum=0.0",
        ),
        (
            lambda ps: SGD(ps, lr=0.1, momentum=0.9, dampening=0.1, nesterov=True),
            r"nesterov=True needs momentum > 0 and dampening = 0, .*dampening=0.1",
        ),
        (lambda ps: Adam(ps, lr=-1e-3), r"Adam: lr must be >= 0, got -0.001"),
        (lambda ps: Adam(ps, betas=(1.0, 0.999)), r"betas\[0\] must be in \[0, 1\), got 1.0"),
        (lambda ps: Adam(ps, betas=(0.9, -0.1)), r"betas\[1\] must be in \[0, 1\), got -0.1"),
        (lambda ps: Adam(ps, betas=(0.9,)), r"betas must be a pair \(beta1, beta2\)"),
        (lambda ps: Adam(ps, eps=-1e-8), r"Adam: eps must be >= 0, got -1e-08"),
        (lambda ps: Adam(ps, weight_decay=-0.1), r"Adam: weight_decay must be >= 0"),
        (lambda ps: AdamW(ps, weight_decay=-0.1), r"AdamW: weight_decay must be >= 0"),
        (lambda ps: AdamW(ps, lr=-1.0), r"AdamW: lr must be >= 0, got -1.0"),
        (
            lambda ps: SGD([{"params": ps}, {"params": [param([0.0])], "lr": -2}], lr=0.1),
            r"SGD: lr must be >= 0, got -2.0",
        ),
        (lambda ps: Adadelta(ps, lr=-1.0), r"Adadelta: lr must be >= 0, got -1.0"),
        (lambda ps: Adadelta(ps, rho=1.5), r"Adadelta: rho must be in \[0, 1\], got 1.5"),
        (lambda ps: Adadelta(ps, eps=-1e-6), r"Adadelta: eps must be >= 0, got -1e-06"),
        (lambda ps: Adadelta(ps, weight_decay=-1), r"Adadelta: weight_decay must be >= 0"),
        (lambda ps: RMSprop(ps, lr=-0.01), r"RMSprop: lr must be >= 0, got -0.01"),
        (lambda ps: RMSprop(ps, alpha=-0.1), r"RMSprop: alpha must be in \[0, 1\], got -0.1"),
        (lambda ps: RMSprop(ps, alpha=1.01), r"RMSprop: alpha must be in \[0, 1\], got 1.01"),
        (lambda ps: RMSprop(ps, eps=-1.0), r"RMSprop: eps must be >= 0, got -1.0"),
        (lambda ps: RMSprop(ps, momentum=1.0), r"RMSprop: momentum must be in \[0, 1\)"),
        (lambda ps: RMSprop(ps, weight_decay=-1), r"RMSprop: weight_decay must be >= 0"),
        (lambda ps: Adagrad(ps, lr=-0.1), r"Adagrad: lr must be >= 0, got -0.1"),
        (lambda ps: Adagrad(ps, lr_decay=-0.1), r"Adagrad: lr_decay must be >= 0, got -0.1"),
        (lambda ps: Adagrad(ps, weight_decay=-1), r"Adagrad: weight_decay must be >= 0"),
        (
            lambda ps: Adagrad(ps, initial_accumulator_value=-1),
            r"Adagrad: initial_accumulator_value must be >= 0, got -1.0",
        ),
        (lambda ps: Adagrad(ps, eps=-1e-10), r"Adagrad: eps must be >= 0, got -1e-10"),
    ],
)
def test_bad_hyperparameters_raise_value_error(make, match):
    with pytest.raises(ValueError, match=match):
        make([param([1.0])])


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda ps: SGD(ps, lr="0.1"), r"SGD: lr must be a number, got str '0.1'"),
        (lambda ps: SGD(ps, lr=0.1, nesterov="yes"), r"nesterov must be True or False"),
        (lambda ps: Adam(ps, amsgrad=1), r"amsgrad must be True or False, got int 1"),
        (lambda ps: RMSprop(ps, centered=None), r"centered must be True or False, got NoneType"),
        (lambda ps: Adadelta(ps, rho="0.9"), r"Adadelta: rho must be a number, got str"),
    ],
)
def test_hyperparameters_of_the_wrong_type_raise_type_error(make, match):
    with pytest.raises(TypeError, match=match):
        make([param([1.0])])


def test_parameter_list_errors():
    p = param([1.0])
    with pytest.raises(ValueError, match=r"SGD: got an empty parameter list"):
        SGD([], lr=0.1)
    with pytest.raises(ValueError, match=r"every parameter group is empty"):
        SGD([{"params": []}], lr=0.1)
    with pytest.raises(TypeError, match=r"got a single parameter; wrap it in a list"):
        SGD(p, lr=0.1)
    with pytest.raises(TypeError, match=r"parameter 1 of group 0 is a tuple, not a parameter"):
        SGD([p, ("w", p)], lr=0.1)
    with pytest.raises(TypeError, match=r"parameter group 1 must be a dict"):
        SGD([{"params": [p]}, param([2.0])], lr=0.1)
    with pytest.raises(ValueError, match=r"parameter group 0 has no 'params' entry"):
        SGD([{"lr": 0.1}], lr=0.1)
    with pytest.raises(ValueError, match=r"parameter 0 of group 1 appears more than once"):
        SGD([{"params": [p]}, {"params": [p]}], lr=0.1)
    with pytest.raises(ValueError, match=r"has dtype int64; only floating-point parameters"):
        SGD([SimpleNamespace(data=np.arange(3), grad=None)], lr=0.1)


def test_gradient_of_the_wrong_shape_raises():
    p = param(np.zeros((2, 3)))
    opt = SGD([p], lr=0.1)
    p.grad = np.zeros((3, 2))
    with pytest.raises(
        ValueError, match=r"gradient of parameter 0 has shape \(3, 2\), but the parameter has"
    ):
        opt.step()


# ----------------------------------------------------------------- behaviours
def test_zero_grad_sets_gradients_to_none_or_zero_in_place():
    a, b = param([1.0, 2.0]), param([3.0])
    opt = SGD([a, b], lr=0.1)
    a.grad, b.grad = np.array([1.0, 1.0]), np.array([2.0])
    opt.zero_grad()
    assert a.grad is None and b.grad is None
    a.grad = grad = np.array([1.0, 1.0])
    opt.zero_grad(set_to_none=False)
    assert a.grad.data is grad and np.all(grad == 0) and b.grad is None


@pytest.mark.parametrize("name", list(CONFIGS))
def test_parameters_without_gradient_are_left_alone(name):
    opt_cls, kwargs = CONFIGS[name]
    a, b = param([1.0, 2.0]), param([3.0, 4.0])
    opt = opt_cls([a, b], **kwargs)
    a.grad = np.array([0.5, 0.5])
    opt.step()
    np.testing.assert_array_equal(b.data, [3.0, 4.0])  # even with weight decay
    assert 1 not in opt.state


def test_each_group_uses_its_own_learning_rate_and_lr_is_settable():
    a, b = param([1.0]), param([1.0])
    opt = SGD([{"params": [a]}, {"params": [b], "lr": 0.5}], lr=0.1)
    a.grad, b.grad = np.array([1.0]), np.array([1.0])
    opt.step()
    np.testing.assert_allclose([a.data[0], b.data[0]], [0.9, 0.5])
    opt.param_groups[0]["lr"] = 0.2
    opt.step()
    np.testing.assert_allclose(a.data, [0.7])


def test_first_momentum_step_uses_the_gradient_as_buffer():
    p = param([0.0])
    opt = SGD([p], lr=1.0, momentum=0.9, dampening=0.5)
    p.grad = np.array([1.0])
    opt.step()  # buffer = g (dampening not applied on the first step)
    np.testing.assert_array_equal(p.data, [-1.0])
    opt.step()  # buffer = 0.9 * 1 + 0.5 * 1
    np.testing.assert_allclose(p.data, [-2.4])


def test_adam_bias_correction_makes_the_first_step_lr_sized():
    p = param([0.0, 0.0, 0.0])
    opt = Adam([p], lr=0.01)
    p.grad = np.array([1e-3, -5.0, 200.0])
    opt.step()
    np.testing.assert_allclose(p.data, [-0.01, 0.01, -0.01], rtol=1e-4)


def test_step_calls_the_closure_and_returns_its_loss():
    p = param([2.0])
    opt = SGD([p], lr=0.25)

    def closure():
        p.grad = 2 * p.data
        return float(p.data[0] ** 2)

    assert opt.step(closure) == 4.0
    np.testing.assert_allclose(p.data, [1.0])
    assert opt.step() is None


def test_add_param_group_and_state_indices_follow_group_order():
    a, b = param([1.0]), param([2.0])
    opt = SGD([a], lr=0.1, momentum=0.9)
    opt.add_param_group({"params": b, "lr": 0.01})
    assert opt.param_groups[1]["momentum"] == 0.9
    b.grad = np.array([1.0])
    opt.step()
    assert list(opt.state) == [1]


def test_repr_names_the_hyperparameters():
    opt = SGD([param([1.0])], lr=0.1, momentum=0.9)
    assert repr(opt) == (
        "SGD(lr=0.1, momentum=0.9, dampening=0.0, weight_decay=0.0, nesterov=False)"
    )
    assert isinstance(opt, Optimizer)


# ------------------------------------------------------------- with the engine
def test_sgd_fits_a_linear_layer_through_backward():
    import cnnlab
    import cnnlab.nn.functional as F
    from cnnlab import nn

    cnnlab.manual_seed(0)
    rng = np.random.default_rng(0)
    true_w = np.array([[2.0, -1.0, 0.5], [0.0, 1.5, -2.0]], dtype=np.float32)
    true_b = np.array([0.3, -0.7], dtype=np.float32)
    x = rng.standard_normal((64, 3)).astype(np.float32)
    y = x @ true_w.T + true_b
    model = nn.Linear(3, 2)
    opt = SGD(model.parameters(), lr=0.1, momentum=0.9)
    for _ in range(200):
        opt.zero_grad()
        loss = F.mse_loss(model(cnnlab.tensor(x)), cnnlab.tensor(y))
        loss.backward()
        opt.step()
    assert loss.item() < 1e-6
    np.testing.assert_allclose(model.weight.data, true_w, atol=1e-3)
    np.testing.assert_allclose(model.bias.data, true_b, atol=1e-3)
    assert model.weight.data.dtype == np.float32


@pytest.mark.parametrize(
    "opt_name",
    [
        "sgd-nesterov-wd",
        "adam-amsgrad",
        "adamw",
        "adadelta-rho-eps-wd",
        "rmsprop-centered-momentum-wd",
        "adagrad-decay-init-wd",
    ],
)
def test_training_a_small_network_matches_torch(opt_name):
    """Same weights, data and optimizer in cnnlab and torch: same weights after training."""
    torch = pytest.importorskip("torch")
    import cnnlab
    import cnnlab.nn.functional as F
    from cnnlab import nn

    opt_cls, kwargs = CONFIGS[opt_name]
    cnnlab.manual_seed(0)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((32, 4))
    labels = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2)).double()
    ref = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    ref = ref.double()
    with torch.no_grad():
        for p, t in zip(model.parameters(), ref.parameters(), strict=True):
            t.copy_(torch.from_numpy(p.data))
    opt = opt_cls(model.parameters(), **kwargs)
    ref_opt = getattr(torch.optim, opt_cls.__name__)(ref.parameters(), foreach=False, **kwargs)
    for _ in range(20):
        opt.zero_grad()
        F.cross_entropy(model(cnnlab.tensor(x)), labels).backward()
        opt.step()
        ref_opt.zero_grad()
        torch.nn.functional.cross_entropy(
            ref(torch.from_numpy(x)), torch.from_numpy(labels)
        ).backward()
        ref_opt.step()
    for p, t in zip(model.parameters(), ref.parameters(), strict=True):
        np.testing.assert_allclose(p.data, t.detach().numpy(), rtol=1e-9, atol=1e-12)


# -------------------------------------------- groups with their own settings
class FeaturesAndHead(nn.Module):
    """A model with the two parts people give different learning rates."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 3, 3), nn.Tanh())
        self.head = nn.Linear(3 * 4 * 4, 2)

    def forward(self, x):
        return self.head(F.flatten(self.features(x)))


GROUP_OPTIMIZERS = [
    "sgd-momentum",
    "adam",
    "adamw",
    "rmsprop-centered-momentum-wd",
    "adagrad-decay-init-wd",
    "adadelta-rho-eps-wd",
]
GROUP_SCHEDULES = [
    (StepLR, {"step_size": 2, "gamma": 0.5}),
    (MultiStepLR, {"milestones": [1, 3], "gamma": 0.3}),
    (ExponentialLR, {"gamma": 0.8}),
    (CosineAnnealingLR, {"T_max": 4, "eta_min": 1e-4}),
]


@pytest.mark.parametrize("schedule", GROUP_SCHEDULES, ids=lambda s: s[0].__name__)
@pytest.mark.parametrize("opt_name", GROUP_OPTIMIZERS)
def test_groups_with_their_own_lr_under_a_schedule_match_torch(opt_name, schedule):
    """optim.X([{"params": features}, {"params": head, "lr": ..., "weight_decay": 0}], lr=...)
    with a schedule: each group's rate follows its own initial rate, as in torch."""
    torch = pytest.importorskip("torch")
    opt_cls, kwargs = CONFIGS[opt_name]
    sched_cls, sched_kwargs = schedule
    head_settings = {"lr": kwargs["lr"] / 10, "weight_decay": 0.0}

    cnnlab.manual_seed(0)
    model = FeaturesAndHead().double()
    ref = torch.nn.ModuleDict(
        {"features": torch.nn.Conv2d(1, 3, 3), "head": torch.nn.Linear(48, 2)}
    ).double()
    with torch.no_grad():
        for p, t in zip(model.parameters(), ref.parameters(), strict=True):
            t.copy_(torch.from_numpy(p.data))
    opt = opt_cls(
        [
            {"params": model.features.parameters()},
            {"params": model.head.parameters(), **head_settings},
        ],
        **kwargs,
    )
    ref_opt = getattr(torch.optim, opt_cls.__name__)(
        [
            {"params": ref["features"].parameters()},
            {"params": ref["head"].parameters(), **head_settings},
        ],
        foreach=False,
        **kwargs,
    )
    sched = sched_cls(opt, **sched_kwargs)
    ref_sched = getattr(torch.optim.lr_scheduler, sched_cls.__name__)(ref_opt, **sched_kwargs)

    rng = np.random.default_rng(3)
    x = rng.standard_normal((8, 1, 6, 6))
    labels = rng.integers(0, 2, size=8)
    for _ in range(5):  # epochs of two batches each
        for batch in (slice(0, 4), slice(4, 8)):
            opt.zero_grad()
            F.cross_entropy(model(cnnlab.tensor(x[batch])), labels[batch]).backward()
            opt.step()
            ref_opt.zero_grad()
            h = torch.tanh(ref["features"](torch.from_numpy(x[batch])))
            loss = torch.nn.functional.cross_entropy(
                ref["head"](h.flatten(1)), torch.from_numpy(labels[batch])
            )
            loss.backward()
            ref_opt.step()
        sched.step()
        ref_sched.step()
        np.testing.assert_allclose(sched.get_last_lr(), ref_sched.get_last_lr(), rtol=1e-12)
    assert [g["initial_lr"] for g in opt.param_groups] == [kwargs["lr"], kwargs["lr"] / 10]
    assert sched.get_last_lr()[0] != kwargs["lr"]  # the schedule moved the rates
    for p, t in zip(model.parameters(), ref.parameters(), strict=True):
        np.testing.assert_allclose(p.data, t.detach().numpy(), rtol=1e-9, atol=1e-12)
