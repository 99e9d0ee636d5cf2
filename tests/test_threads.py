"""The thread policy: decided once per forward and once per backward pass, per Python thread.

A pass over at least as many images as threads splits its kernels over the batch and holds
BLAS at one thread; a smaller batch (one image) leaves BLAS its threads and splits nothing;
both directions of a pass decide alike; the caller's BLAS setting is back afterwards; and
two Python threads running models do not change each other's decision.
"""

import threading

import numpy as np
import pytest

import cnnlab
from cnnlab import nn
from cnnlab.autograd import Function
from cnnlab.kernels import parallel

threadpoolctl = pytest.importorskip("threadpoolctl", reason="the policy controls BLAS threads "
                                    "through threadpoolctl")


class _Record(Function):
    """Identity whose forward and backward record the policy in force."""

    seen: dict[str, parallel.Policy]

    def forward(self, x, *, log):
        self.log = log
        log["forward"] = parallel.current_policy()
        return x

    def backward(self, grad):
        self.log["backward"] = parallel.current_policy()
        return grad


class _Probe(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        self.log = {}

    def forward(self, x):
        return _Record.apply(self.conv(x), log=self.log)


@pytest.fixture
def two_threads():
    lib = parallel._blas
    if not lib.available:
        pytest.skip("no single BLAS library to control")
    previous = parallel.get_num_threads()
    parallel.set_num_threads(2)
    try:
        with threadpoolctl.threadpool_limits(2, user_api="blas"):
            yield
    finally:
        parallel.set_num_threads(previous)


def _blas_threads():
    return [i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]


@pytest.mark.parametrize("batch, split", [(1, False), (2, True), (8, True)])
def test_forward_and_backward_decide_alike_and_restore_blas(batch, split, two_threads):
    probe = _Probe()
    x = cnnlab.randn(batch, 1, 4, 4)
    probe(x).sum().backward()
    for direction in ("forward", "backward"):
        policy = probe.log[direction]
        assert policy.split is split, direction
        assert policy.blas_threads == (1 if split else 2), direction
        assert policy.threads == (2 if split else 1), direction
    assert _blas_threads() == [2]  # the caller's setting is back


def test_ops_outside_any_pass_split_nothing():
    assert not parallel.in_region()
    assert parallel.current_policy().split is False
    assert parallel.workers(1 << 40) == 1


def test_nested_modules_keep_the_outer_decision(two_threads):
    inner = _Probe()
    outer = nn.Sequential(inner)
    outer(cnnlab.randn(4, 1, 4, 4))
    assert inner.log["forward"].split is True


def test_two_python_threads_do_not_undo_each_others_policy(two_threads):
    # One thread trains on batches (split, BLAS single-threaded) while another serves single
    # images (no split): each sees its own decision on every pass, and the results equal a
    # serial run's.
    cnnlab.manual_seed(0)
    big, small = _Probe(), _Probe()
    xb, xs = cnnlab.randn(8, 1, 6, 6), cnnlab.randn(1, 1, 6, 6)
    expected_big = big(xb).data.copy()
    expected_small = small(xs).data.copy()
    errors = []

    def loop(model, x, expected, split):
        try:
            for _ in range(30):
                out = model(x)
                out.sum().backward()
                assert model.log["forward"].split is split
                assert model.log["backward"].split is split
                np.testing.assert_array_equal(out.data, expected)
        except Exception as exc:  # reported in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=loop, args=(big, xb, expected_big, True)),
               threading.Thread(target=loop, args=(small, xs, expected_small, False))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert _blas_threads() == [2]


def test_an_error_inside_a_pass_leaves_no_policy_behind(two_threads):
    net = nn.Sequential(nn.Conv2d(3, 2, 3))
    with pytest.raises(ValueError):
        net(cnnlab.randn(4, 1, 5, 5))  # wrong channel count
    assert not parallel.in_region() and _blas_threads() == [2]
