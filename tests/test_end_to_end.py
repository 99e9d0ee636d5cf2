"""Whole networks: a fresh net starts at chance, a small one can memorize a small set."""

from __future__ import annotations

import math

import numpy as np
import pytest

import cnnlab
from cnnlab import Tensor, nn, optim
from cnnlab.nn import functional as F


def small_net(classes: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16 * 2 * 2, classes),
    )


def lenet(classes: int = 10) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, classes),
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fresh_10_class_net_starts_near_ln10(seed):
    cnnlab.manual_seed(seed)
    rng = np.random.default_rng(seed)
    x = Tensor(rng.random((64, 1, 28, 28), dtype=np.float32))
    y = rng.integers(0, 10, 64)
    with cnnlab.no_grad():
        loss = F.cross_entropy(lenet()(x), y).item()
    # Default init keeps the logits small: the softmax is nearly uniform over 10 classes.
    assert abs(loss - math.log(10)) < 0.1, loss


def _memorize(net, opt, x, y, steps):
    for _ in range(steps):
        opt.zero_grad()
        loss = F.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
    with cnnlab.no_grad():
        logits = net(x)
    return (logits.argmax(dim=1) == y).float().mean().item(), F.cross_entropy(logits, y).item()


@pytest.mark.slow
@pytest.mark.parametrize("make_opt", [
    lambda p: optim.SGD(p, lr=0.05, momentum=0.9),
    lambda p: optim.Adam(p, lr=0.01),
], ids=["sgd_momentum", "adam"])
def test_small_conv_net_overfits_32_samples(make_opt):
    cnnlab.manual_seed(0)
    rng = np.random.default_rng(0)
    # Random images with random labels: only memorization can fit them.
    x = Tensor(rng.standard_normal((32, 1, 8, 8)).astype(np.float32))
    y = rng.integers(0, 4, 32)
    net = small_net(4)
    with cnnlab.no_grad():
        first = F.cross_entropy(net(x), y).item()
    accuracy, loss = _memorize(net, make_opt(net.parameters()), x, y, steps=80)
    assert accuracy == 1.0, (accuracy, loss)
    assert loss < 0.1 * first


@pytest.mark.slow
def test_training_with_batchnorm_and_dropout_then_eval():
    cnnlab.manual_seed(1)
    rng = np.random.default_rng(1)
    # Class = which quadrant holds a bright square: learnable, so eval accuracy must follow.
    n = 48
    y = rng.integers(0, 4, n)
    images = rng.normal(0, 0.1, (n, 1, 8, 8)).astype(np.float32)
    for i, label in enumerate(y):
        r, c = divmod(int(label), 2)
        images[i, 0, 4 * r:4 * r + 4, 4 * c:4 * c + 4] += 1
    x = Tensor(images)
    net = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Dropout(0.2), nn.Linear(8 * 4 * 4, 4),
    )
    opt = optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    for _ in range(60):
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
    net.eval()
    with cnnlab.no_grad():
        accuracy = (net(x).argmax(dim=1) == y).float().mean().item()
    assert accuracy == 1.0
    assert int(net[1].num_batches_tracked) == 60


def test_inline_sgd_step_matches_the_optimizer():
    """The optimizer's update is the textbook one (checked against a hand-written step)."""
    cnnlab.manual_seed(0)
    net_a = small_net(3)
    cnnlab.manual_seed(0)
    net_b = small_net(3)
    x = Tensor(np.random.default_rng(0).standard_normal((4, 1, 8, 8)).astype(np.float32))
    y = np.array([0, 1, 2, 1])
    opt = optim.SGD(net_a.parameters(), lr=0.1, momentum=0.9)
    velocity = {}
    for _ in range(3):
        for net in (net_a, net_b):
            net.zero_grad()
            F.cross_entropy(net(x), y).backward()
        opt.step()
        for name, p in net_b.named_parameters():  # v = mu * v + g; p -= lr * v
            velocity[name] = 0.9 * velocity.get(name, 0) + p.grad.data
            p.data -= 0.1 * velocity[name]
    for (name, a), b in zip(net_a.named_parameters(), net_b.parameters(), strict=True):
        np.testing.assert_allclose(a.data, b.data, rtol=1e-5, atol=1e-6, err_msg=name)
