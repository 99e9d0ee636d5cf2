"""Tests for cnnlab.optim.LBFGS: PyTorch parity, convergence, the closure API, state, errors."""

from __future__ import annotations

import numpy as np
import pytest

import cnnlab
import cnnlab.nn.functional as F
from cnnlab import nn
from cnnlab.nn import Parameter
from cnnlab.optim import LBFGS, SGD, StepLR

LINE_SEARCHES = [None, "strong_wolfe"]


# ------------------------------------------------------------------- problems
# Each problem, given a library ("cnnlab" or "torch") and a dtype, returns its starting
# parameters (arrays) and its loss written with that library's tensors.
def _constant(lib, array, dtype):
    array = np.asarray(array, dtype=dtype)
    return cnnlab.tensor(array) if lib == "cnnlab" else _torch().from_numpy(array)


def _tanh(lib, x):
    return F.tanh(x) if lib == "cnnlab" else _torch().tanh(x)


def _conv2d(lib, x, w, b=None):
    return F.conv2d(x, w, b) if lib == "cnnlab" else _torch().nn.functional.conv2d(x, w, b)


def rosenbrock(lib, dtype):
    def loss(ps):
        (x,) = ps
        return (1 - x[0]) ** 2 + 100 * (x[1] - x[0] * x[0]) ** 2

    return [np.array([-1.2, 1.0], dtype=dtype)], loss


def rosenbrock_numpy(x: np.ndarray) -> tuple[float, np.ndarray]:
    a, b = x
    grad = np.array([-2 * (1 - a) - 400 * a * (b - a * a), 200 * (b - a * a)])
    return float((1 - a) ** 2 + 100 * (b - a * a) ** 2), grad


def least_squares(lib, dtype):
    """0.5 * |A w + b - y|^2 over a weight matrix and a bias: two parameters."""
    rng = np.random.default_rng(3)
    a, y = _constant(lib, rng.standard_normal((12, 4)), dtype), rng.standard_normal((12, 3))
    y = _constant(lib, y, dtype)

    def loss(ps):
        w, b = ps
        r = a @ w + b - y
        return 0.5 * (r * r).sum()

    return [rng.standard_normal((4, 3)).astype(dtype), np.zeros(3, dtype=dtype)], loss


def conv_net_weights(lib, dtype):
    """Cross-entropy of a conv-tanh-linear net on fixed data, over all four of its weights."""
    rng = np.random.default_rng(4)
    x = _constant(lib, rng.standard_normal((6, 2, 5, 5)), dtype)
    labels = np.array([0, 1, 2, 0, 1, 2])
    shapes = [(3, 2, 3, 3), (3,), (3, 27), (3,)]
    params = [(rng.standard_normal(s) * 0.3).astype(dtype) for s in shapes]

    def loss(ps):
        w1, b1, w2, b2 = ps
        h = _tanh(lib, _conv2d(lib, x, w1, b1))
        logits = h.reshape(6, 27) @ w2.T + b2
        if lib == "cnnlab":
            return F.cross_entropy(logits, labels)
        return _torch().nn.functional.cross_entropy(logits, _torch().from_numpy(labels))

    return params, loss


def conv_net_image(lib, dtype):
    """Style-transfer shaped: optimize one (1, 3, H, W) image so a fixed conv layer's
    features match a target, plus a small pull towards the start image."""
    rng = np.random.default_rng(5)
    weight = _constant(lib, rng.standard_normal((4, 3, 3, 3)) * 0.3, dtype)
    target = _constant(lib, rng.standard_normal((1, 4, 6, 6)), dtype)
    start = rng.standard_normal((1, 3, 8, 8)).astype(dtype)
    anchor = _constant(lib, start, dtype)

    def loss(ps):
        (image,) = ps
        diff = _tanh(lib, _conv2d(lib, image, weight)) - target
        pull = image - anchor
        return (diff * diff).sum() + 0.01 * (pull * pull).sum()

    return [start.copy()], loss


PROBLEMS = {
    "rosenbrock": rosenbrock,
    "least-squares": least_squares,
    "conv-net-weights": conv_net_weights,
    "conv-net-image": conv_net_image,
}


def _torch():
    import torch

    return torch


def make_ours(problem, dtype=np.float64, **kwargs):
    starts, loss_fn = PROBLEMS[problem]("cnnlab", dtype)
    params = [Parameter(s) for s in starts]
    opt = LBFGS(params, **kwargs)

    def closure():
        opt.zero_grad()
        loss = loss_fn(params)
        loss.backward()
        return loss

    return params, opt, closure


def make_torch(torch, problem, dtype=np.float64, **kwargs):
    starts, loss_fn = PROBLEMS[problem]("torch", dtype)
    params = [torch.tensor(s, requires_grad=True) for s in starts]
    opt = torch.optim.LBFGS(params, **kwargs)

    def closure():
        opt.zero_grad()
        loss = loss_fn(params)
        loss.backward()
        return loss

    return params, opt, closure


def rel_error(ours: list[np.ndarray], theirs) -> float:
    ref = np.concatenate([t.detach().numpy().ravel() for t in theirs])
    got = np.concatenate([p.ravel() for p in ours])
    return float(np.max(np.abs(got - ref)) / np.max(np.abs(ref)))


# ---------------------------------------------------------------- torch parity
# (settings, steps): about 40 iterations each.
PARITY_SETTINGS = {
    "8-iterations-per-step": ({"max_iter": 8}, 5),
    # Every iterate compared; max_eval given, as with max_iter=1 it would default to 1.
    "1-iteration-per-step": ({"max_iter": 1, "max_eval": 10}, 40),
    # A short history, so old pairs are dropped (and their memory reused) along the way.
    "history-3": ({"history_size": 3, "max_iter": 8}, 5),
    "max-eval-6": ({"max_iter": 10, "max_eval": 6}, 6),
}
# A fixed step of 1 overshoots on these; 0.25 descends steadily.
FIXED_STEP_LR = {"rosenbrock": 0.25, "conv-net-image": 0.25}


def parity_settings(problem, line_search_fn, settings) -> tuple[dict, int]:
    kwargs, steps = PARITY_SETTINGS[settings]
    kwargs = {"line_search_fn": line_search_fn, **kwargs}
    if line_search_fn is None and problem in FIXED_STEP_LR:
        kwargs.setdefault("lr", FIXED_STEP_LR[problem])
    return kwargs, steps


def make_ours_with_torch_gradients(torch, problem, **kwargs):
    """Our optimizer, but the loss and gradients computed by torch: differences left are the
    optimizer's own."""
    starts, loss_fn = PROBLEMS[problem]("torch", np.float64)
    params = [Parameter(s) for s in starts]
    opt = LBFGS(params, **kwargs)

    def closure():
        opt.zero_grad()
        tensors = [torch.tensor(p.data, requires_grad=True) for p in params]
        loss = loss_fn(tensors)
        loss.backward()
        for p, t in zip(params, tensors, strict=True):
            p.grad = t.grad.numpy()
        return loss

    return params, opt, closure


# Rosenbrock's curved valley amplifies rounding differences most (a short history most of
# all): its iterates drift to ~1e-9 within 40 iterations where the others stay near 1e-12.
# The drift comes from rounding alone: torch rounds its vector updates with fused
# multiply-adds and sums its dot products in another order.
OPTIMIZER_TOL = {
    "rosenbrock": 1e-8,
    "least-squares": 1e-10,
    "conv-net-weights": 1e-10,
    "conv-net-image": 1e-10,
}


@pytest.mark.parametrize("settings", list(PARITY_SETTINGS))
@pytest.mark.parametrize("line_search_fn", LINE_SEARCHES)
@pytest.mark.parametrize("problem", list(PROBLEMS))
def test_matches_torch_iterate_for_iterate_on_the_same_gradients(problem, line_search_fn, settings):
    torch = pytest.importorskip("torch")
    kwargs, steps = parity_settings(problem, line_search_fn, settings)
    ours, opt, closure = make_ours_with_torch_gradients(torch, problem, **kwargs)
    theirs, ref, ref_closure = make_torch(torch, problem, **kwargs)
    check_run(opt, closure, ours, ref, ref_closure, theirs, steps, OPTIMIZER_TOL[problem], problem)


@pytest.mark.parametrize("settings", ["8-iterations-per-step", "history-3"])
@pytest.mark.parametrize("line_search_fn", LINE_SEARCHES)
@pytest.mark.parametrize("problem", list(PROBLEMS))
def test_a_run_on_cnnlabs_engine_stays_with_torch(problem, line_search_fn, settings):
    """The loss and gradients from cnnlab's own ops (which round differently from torch's)."""
    torch = pytest.importorskip("torch")
    kwargs, steps = parity_settings(problem, line_search_fn, settings)
    ours, opt, closure = make_ours(problem, **kwargs)
    theirs, ref, ref_closure = make_torch(torch, problem, **kwargs)
    tol = 10 * OPTIMIZER_TOL[problem]
    check_run(opt, closure, ours, ref, ref_closure, theirs, steps, tol, problem)


def check_run(opt, closure, ours, ref, ref_closure, theirs, steps, tol, problem) -> None:
    """Step both; after each step compare parameters, loss and the evaluation counts."""
    ref_state = ref.state[theirs[0]]
    scale = 1.0
    for step in range(steps):
        loss = opt.step(closure)
        ref_loss = ref.step(ref_closure)
        where = f"{problem}, step {step}"
        err = rel_error([p.data for p in ours], theirs)
        assert err < tol, f"{where}: parameters differ by {err:.3g} (relative), over {tol:g}"
        # Losses are compared on the scale of the first one: near the minimum they are
        # differences of nearly equal numbers.
        scale = scale if step else abs(ref_loss.item())
        assert abs(loss.item() - ref_loss.item()) <= tol * scale, where
        state = opt.state[0]
        counts = (state["func_evals"], state["n_iter"], len(state["old_dirs"]))
        assert counts == (
            ref_state["func_evals"],
            ref_state["n_iter"],
            len(ref_state["old_dirs"]),
        ), where
    assert ref_state["n_iter"] >= 10  # the run went somewhere
    assert all(p.data.dtype == np.float64 for p in ours)


def test_stopping_rules_match_torch_when_converged():
    """Near the minimum a step stops at once (small gradient, small move, flat loss)."""
    torch = pytest.importorskip("torch")
    ours, opt, closure = make_ours("least-squares", line_search_fn="strong_wolfe")
    theirs, ref, ref_closure = make_torch(torch, "least-squares", line_search_fn="strong_wolfe")
    for _ in range(6):
        opt.step(closure)
        ref.step(ref_closure)
    assert opt.state[0]["func_evals"] == ref.state[theirs[0]]["func_evals"]
    assert rel_error([p.data for p in ours], theirs) < 1e-10


# ---------------------------------------------------------------- convergence
def rosenbrock_closure(x: Parameter, opt: LBFGS):
    def closure():
        opt.zero_grad()
        loss, x.grad = rosenbrock_numpy(x.data)
        return loss

    return closure


@pytest.mark.parametrize(
    ("line_search_fn", "lr", "steps"), [(None, 0.25, 10), ("strong_wolfe", 1, 3)]
)
def test_reaches_the_minimum_of_rosenbrock(line_search_fn, lr, steps):
    x = Parameter(np.array([-1.2, 1.0]))
    opt = LBFGS([x], lr=lr, line_search_fn=line_search_fn, tolerance_change=0)
    closure = rosenbrock_closure(x, opt)
    for _ in range(steps):
        opt.step(closure)
    np.testing.assert_allclose(x.data, [1.0, 1.0], atol=1e-6)


@pytest.mark.parametrize("line_search_fn", LINE_SEARCHES)
def test_reaches_the_minimum_of_a_quadratic_in_a_few_iterations(line_search_fn):
    a = np.array([1.0, 4.0, 10.0])
    target = np.array([1.0, -2.0, 0.5])
    x = Parameter(np.zeros(3))
    opt = LBFGS([x], line_search_fn=line_search_fn, tolerance_grad=1e-12, tolerance_change=0)

    def closure():
        opt.zero_grad()
        x.grad = a * (x.data - target)
        return 0.5 * float(np.sum(a * (x.data - target) ** 2))

    opt.step(closure)
    np.testing.assert_allclose(x.data, target, atol=1e-10)
    assert opt.state[0]["n_iter"] < 20  # a quasi-Newton method, not gradient descent


def test_fits_a_network_by_full_batch_optimization():
    cnnlab.manual_seed(0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 3))
    y = np.sin(x @ np.array([[1.0], [-2.0], [0.5]]))
    model = nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 1)).double()
    opt = LBFGS(model.parameters(), line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.mse_loss(model(cnnlab.tensor(x)), cnnlab.tensor(y))
        loss.backward()
        return loss

    first = opt.step(closure).item()
    for _ in range(10):
        last = opt.step(closure).item()
    assert last < first / 100


# --------------------------------------------------------- image optimization
def test_optimizes_an_image_in_place_in_float32():
    """The style-transfer case: one (1, 3, H, W) float32 parameter, updated in place."""
    cnnlab.manual_seed(0)
    rng = np.random.default_rng(1)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Tanh())
    for p in net.parameters():
        p.requires_grad = False
    target = net(cnnlab.tensor(rng.standard_normal((1, 3, 16, 16)).astype(np.float32))).data
    image = Parameter(np.zeros((1, 3, 16, 16), dtype=np.float32))
    data = image.data
    opt = LBFGS([image], history_size=10, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.mse_loss(net(image), cnnlab.tensor(target))
        loss.backward()
        return loss

    first = opt.step(closure).item()
    for _ in range(4):
        last = opt.step(closure).item()
    assert last < first / 50
    assert image.data is data and data.dtype == np.float32
    state = opt.state[0]
    assert state["d"].dtype == np.float32 and state["d"].shape == (3 * 16 * 16,)
    assert all(y.dtype == np.float32 for y in state["old_dirs"])
    assert len(state["old_dirs"]) <= 10


@pytest.mark.parametrize("problem", ["least-squares", "conv-net-image"])
def test_float32_stays_float32_and_close_to_torch(problem):
    torch = pytest.importorskip("torch")
    kwargs = {"line_search_fn": "strong_wolfe", "max_iter": 5}
    ours, opt, closure = make_ours(problem, np.float32, **kwargs)
    theirs, ref, ref_closure = make_torch(torch, problem, np.float32, **kwargs)
    for _ in range(2):
        opt.step(closure)
        ref.step(ref_closure)
    assert all(p.data.dtype == np.float32 for p in ours)
    assert opt.state[0]["d"].dtype == np.float32
    assert rel_error([p.data for p in ours], theirs) < 1e-3


# ----------------------------------------------------------------- behaviours
def test_step_returns_the_first_loss_of_the_step():
    x = Parameter(np.array([-1.2, 1.0]))
    opt = LBFGS([x], max_iter=5)
    closure = rosenbrock_closure(x, opt)
    assert opt.step(closure) == pytest.approx(24.2)  # the loss at the start
    assert opt.step(closure) < 24.2


def test_a_parameter_without_gradient_is_left_alone():
    x, frozen = Parameter(np.array([-1.2, 1.0])), Parameter(np.array([5.0, 6.0]))
    opt = LBFGS([x, frozen], line_search_fn="strong_wolfe")
    closure = rosenbrock_closure(x, opt)
    for _ in range(2):
        opt.step(closure)
    np.testing.assert_array_equal(frozen.data, [5.0, 6.0])
    assert np.abs(x.data - 1).max() < 1e-3


def test_the_closure_runs_with_gradients_on_even_inside_no_grad():
    ours, opt, closure = make_ours("least-squares", max_iter=3)
    with cnnlab.no_grad():
        first = opt.step(closure).item()  # backward() needs the graph: it would raise
        assert not cnnlab.is_grad_enabled()
    assert opt.step(closure).item() < first


def test_stops_at_once_when_the_gradient_is_already_small():
    x = Parameter(np.array([1.0, 1.0]))
    opt = LBFGS([x])
    opt.step(rosenbrock_closure(x, opt))
    assert opt.state[0] == {"func_evals": 1, "n_iter": 0}
    np.testing.assert_array_equal(x.data, [1.0, 1.0])
    assert opt.state_dict()["state"] == {0: {"func_evals": 1, "n_iter": 0}}


def test_max_eval_bounds_the_closure_calls():
    x = Parameter(np.array([-1.2, 1.0]))
    opt = LBFGS([x], max_iter=100, max_eval=7, line_search_fn="strong_wolfe")
    calls = []
    closure = rosenbrock_closure(x, opt)
    opt.step(lambda: calls.append(1) or closure())
    # The line search may finish its last evaluation past the bound, as in PyTorch.
    assert 7 <= len(calls) <= 8 and opt.state[0]["func_evals"] == len(calls)
    assert LBFGS([Parameter(np.zeros(1))], max_iter=8).param_groups[0]["max_eval"] == 10


def test_learning_rate_schedules_drive_lbfgs():
    x = Parameter(np.array([-1.2, 1.0]))
    opt = LBFGS([x], lr=0.2, max_iter=1)
    sched = StepLR(opt, step_size=2, gamma=0.5)
    closure = rosenbrock_closure(x, opt)
    seen = []
    for _ in range(5):
        opt.step(closure)
        seen.append(opt.state[0]["t"])
        sched.step()
    assert seen[1:] == [0.2, 0.1, 0.1, 0.05]  # after the first, scaled, iteration t = lr


def test_a_closure_that_raises_in_the_line_search_leaves_the_parameters_where_they_were():
    x = Parameter(np.array([-1.2, 1.0]))
    opt = LBFGS([x], line_search_fn="strong_wolfe")
    closure = rosenbrock_closure(x, opt)
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) == 2:  # the line search's first trial point
            raise RuntimeError("data loader failed")
        return closure()

    with pytest.raises(RuntimeError, match="data loader failed"):
        opt.step(flaky)
    np.testing.assert_array_equal(x.data, [-1.2, 1.0])


# ------------------------------------------------------------ state round trip
def run_steps(settings: dict, steps: int, restore_at: int | None = None) -> np.ndarray:
    x = Parameter(np.array([-1.2, 1.0]))
    opt = LBFGS([x], **settings)
    for i in range(steps):
        if i == restore_at:
            saved = opt.state_dict()
            x = Parameter(x.data.copy())
            opt = LBFGS([x], **{**settings, "lr": 99.0})  # overwritten by the load
            opt.load_state_dict(saved)
        opt.step(rosenbrock_closure(x, opt))
    return x.data


@pytest.mark.parametrize(
    "settings",
    [
        {"max_iter": 2, "lr": 0.25},
        {"max_iter": 2, "history_size": 2, "line_search_fn": "strong_wolfe"},
        {"max_iter": 1, "history_size": 3, "line_search_fn": "strong_wolfe"},
    ],
)
@pytest.mark.parametrize("restore_at", [1, 4])
def test_state_dict_round_trip_continues_bit_identically(settings, restore_at):
    straight = run_steps(settings, 8)
    resumed = run_steps(settings, 8, restore_at=restore_at)
    np.testing.assert_array_equal(straight, resumed)


def test_state_dict_layout_is_plain_arrays_and_copies():
    x = Parameter(np.array([-1.2, 1.0]))
    opt = LBFGS([x], max_iter=4, history_size=2, line_search_fn="strong_wolfe")
    opt.step(rosenbrock_closure(x, opt))
    sd = opt.state_dict()
    state = sd["state"][0]
    assert sorted(state) == sorted(
        [
            "func_evals",
            "n_iter",
            "d",
            "t",
            "old_dirs",
            "old_stps",
            "ro",
            "H_diag",
            "prev_flat_grad",
            "prev_loss",
        ]
    )
    assert state["old_dirs"].shape == state["old_stps"].shape == (2, 2)
    assert state["ro"].shape == (2,) and isinstance(state["t"], float)
    state["d"][:] = 123.0
    state["old_dirs"][:] = 123.0
    assert not np.any(opt.state[0]["d"] == 123.0)
    assert not np.any(opt.state[0]["old_dirs"][0] == 123.0)
    assert sd["param_groups"][0]["max_eval"] == 5 and sd["param_groups"][0]["params"] == [0]


def test_checkpoint_file_round_trip(tmp_path):
    from cnnlab.io.checkpoint import load_checkpoint, restore_checkpoint, save_checkpoint

    model = nn.Linear(2, 1).double()
    opt = LBFGS(model.parameters(), max_iter=1, line_search_fn="strong_wolfe")
    x = np.array([[1.0, 2.0], [3.0, -1.0], [0.5, 0.5]])
    y = np.array([[1.0], [0.0], [2.0]])

    def closure():
        opt.zero_grad()
        loss = F.mse_loss(model(cnnlab.tensor(x)), cnnlab.tensor(y))
        loss.backward()
        return loss

    opt.step(closure)  # one iteration: an empty history, stored as a (0, n) array
    save_checkpoint(tmp_path / "c.safetensors", epoch=1, model=model, optimizer=opt)
    other = nn.Linear(2, 1).double()
    fresh = LBFGS(other.parameters(), max_iter=1, line_search_fn="strong_wolfe")
    restore_checkpoint(load_checkpoint(tmp_path / "c.safetensors"), other, fresh)
    saved, loaded = opt.state_dict()["state"][0], fresh.state_dict()["state"][0]
    assert saved.keys() == loaded.keys()
    for key in saved:
        np.testing.assert_array_equal(saved[key], loaded[key])


def test_cnnlab_save_and_load_carry_the_state_and_the_run_continues_exactly(tmp_path):
    settings = {"max_iter": 4, "history_size": 3, "line_search_fn": "strong_wolfe"}
    x = Parameter(np.array([-1.2, 1.0]))
    opt = LBFGS([x], **settings)
    opt.step(rosenbrock_closure(x, opt))
    cnnlab.save(opt.state_dict(), tmp_path / "lbfgs.pt")
    y = Parameter(x.data.copy())
    fresh = LBFGS([y], **settings)
    fresh.load_state_dict(cnnlab.load(tmp_path / "lbfgs.pt"))
    for _ in range(2):
        opt.step(rosenbrock_closure(x, opt))
        fresh.step(rosenbrock_closure(y, fresh))
    np.testing.assert_array_equal(x.data, y.data)


def lbfgs_sd(**settings) -> dict:
    """A state_dict with three (s, y) pairs in its history."""
    x = Parameter(np.array([-1.2, 1.0]))
    opt = LBFGS([x], max_iter=4, lr=0.25, **settings)
    opt.step(rosenbrock_closure(x, opt))
    return opt.state_dict()


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda s: s.update(d=np.zeros(3)), r"'d' has shape \(3,\), but the flattened"),
        (
            lambda s: s.update(old_dirs=np.zeros((2, 2))),
            r"'old_dirs' has shape \(2, 2\), but 3 pairs of the flattened parameters",
        ),
        (lambda s: s.update(ro=np.array([1.0, -1.0])), r"'ro' must be a 1-D array of positive"),
        (lambda s: s.update(t=float("nan")), r"'t' must be a finite number >= 0, got nan"),
        (lambda s: s.update(n_iter=-1), r"'n_iter' must be a whole number >= 0"),
        (lambda s: s.pop("prev_loss"), r"lacks \['prev_loss'\]"),
        (lambda s: s.update(exp_avg=np.zeros(2)), r"unexpected \['exp_avg'\]"),
    ],
)
def test_load_state_dict_rejects_mismatches_and_changes_nothing(mutate, match):
    sd = lbfgs_sd()
    mutate(sd["state"][0])
    opt = LBFGS([Parameter(np.zeros(2))], max_iter=3, lr=0.25)
    with pytest.raises(ValueError, match=match):
        opt.load_state_dict(sd)
    assert opt.state == {}


def test_load_state_dict_rejects_more_pairs_than_the_history_holds():
    sd = lbfgs_sd(history_size=5)
    sd["param_groups"][0]["history_size"] = 1
    with pytest.raises(ValueError, match=r"holds 3 \(s, y\) pairs, but history_size is 1"):
        LBFGS([Parameter(np.zeros(2))]).load_state_dict(sd)


# -------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"lr": -1}, ValueError, r"LBFGS: lr must be >= 0, got -1.0"),
        ({"max_iter": 0}, ValueError, r"LBFGS: max_iter must be >= 1, got 0"),
        ({"max_iter": 2.5}, TypeError, r"LBFGS: max_iter must be an int, got float 2.5"),
        ({"max_eval": 0}, ValueError, r"LBFGS: max_eval must be >= 1, got 0"),
        ({"history_size": 0}, ValueError, r"LBFGS: history_size must be >= 1, got 0"),
        ({"tolerance_grad": -1e-7}, ValueError, r"LBFGS: tolerance_grad must be >= 0"),
        ({"tolerance_change": -1.0}, ValueError, r"LBFGS: tolerance_change must be >= 0"),
        (
            {"line_search_fn": "armijo"},
            ValueError,
            r"LBFGS: line_search_fn must be None or 'strong_wolfe', got 'armijo'",
        ),
    ],
)
def test_bad_hyperparameters_raise(kwargs, error, match):
    with pytest.raises(error, match=match):
        LBFGS([Parameter(np.zeros(2))], **kwargs)


def test_takes_one_parameter_group_only():
    a, b = Parameter(np.zeros(2)), Parameter(np.zeros(3))
    with pytest.raises(ValueError, match=r"LBFGS: takes one parameter group .* got a second"):
        LBFGS([{"params": [a]}, {"params": [b], "lr": 0.1}])
    opt = LBFGS([{"params": [a, b], "lr": 0.5}])
    assert opt.param_groups[0]["lr"] == 0.5
    with pytest.raises(ValueError, match=r"put every parameter in one list"):
        opt.add_param_group({"params": [Parameter(np.zeros(1))]})


def test_step_needs_a_closure_that_returns_the_loss():
    x = Parameter(np.array([1.0, 2.0]))
    opt = LBFGS([x])
    with pytest.raises(TypeError, match=r"LBFGS.step needs a closure: a function that zeroes"):
        opt.step()

    def forgets_to_return():
        x.grad = np.ones(2)

    with pytest.raises(TypeError, match=r"closure must return the loss.*got NoneType None"):
        opt.step(forgets_to_return)
    with pytest.raises(TypeError, match=r"closure must return the loss.*got Tensor"):
        opt.step(lambda: cnnlab.tensor(np.ones(3)))


def test_gradient_of_the_wrong_shape_raises():
    x = Parameter(np.zeros((2, 2)))
    opt = LBFGS([x])

    def closure():
        x.grad = np.ones(4)
        return 1.0

    with pytest.raises(ValueError, match=r"gradient of parameter 0 has shape \(4,\), but"):
        opt.step(closure)


def test_other_optimizers_still_take_groups_after_lbfgs_refuses_them():
    a, b = Parameter(np.zeros(1)), Parameter(np.zeros(1))
    assert len(SGD([{"params": [a]}, {"params": [b]}], lr=0.1).param_groups) == 2
