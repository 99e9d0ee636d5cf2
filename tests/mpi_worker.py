"""What the ranks run in test_distributed_mpi.py: ``mpirun -np 2 python tests/mpi_worker.py
CHECK [ARGS]``. Each check asserts on every rank and prints "ok CHECK" from rank 0.

Tolerances. Data-parallel training adds the same numbers as one process does on the whole
batch, grouped differently (per rank first, then over the ranks), so in float64 the weights
agree to a few units of rounding of the sums: 1e-12 absolute on weights of size ~0.1-1 after
a few steps leaves a factor of ~1000 over float64's 1.1e-16 for the reordering and its
amplification through later steps, while a real error (a missing rank, a wrong divisor, a
shifted batch) is of the order of the weights' change per step, 1e-3 or more. In float32 the
same reasoning with float32's 6e-8 gives 3e-5 absolute: a few ulps of the weights.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import numpy as np

import cnnlab
import cnnlab.nn.functional as F
from cnnlab import distributed as dist
from cnnlab import nn

TOL64 = 1e-12
TOL32 = 3e-5
PER_RANK = 3


def build(arch: str, dtype=np.float64, seed: int = 0) -> nn.Module:
    cnnlab.manual_seed(seed)
    model = cnnlab.arch.build(arch, input_shape=(1, 6, 6))
    return model.to(dtype)


def data(n: int, dtype=np.float64, seed: int = 1):
    rng = np.random.default_rng(seed)
    return rng.random((n, 1, 6, 6)).astype(dtype), rng.integers(0, 10, n)


def weights(model) -> list[np.ndarray]:
    return [p.data.copy() for p in model.parameters()]


def assert_close(got, want, tol, what):
    worst = max(float(np.abs(a - b).max()) for a, b in zip(got, want, strict=True))
    assert worst <= tol, f"{what}: weights differ by {worst:.3g} > {tol:g}"
    return worst


def say(text: str) -> None:
    if dist.rank() == 0:
        print(text, flush=True)


# --------------------------------------------------------------------------- collectives


def check_collectives() -> None:
    r, n = dist.rank(), dist.world_size()
    x = np.array([r + 1.0, -r], dtype=np.float32)
    assert dist.all_reduce(x.copy(), "sum").tolist() == [n * (n + 1) / 2, -n * (n - 1) / 2]
    assert dist.all_reduce(x.copy(), "mean").tolist() == [(n + 1) / 2, -(n - 1) / 2]
    assert dist.all_reduce(x.copy(), "max").tolist() == [n, 0]
    assert dist.all_reduce(r, "min") == 0 and dist.all_reduce(r, "sum") == n * (n - 1) // 2
    t = cnnlab.Tensor(np.full(3, float(r)))
    dist.all_reduce(t, "max")
    assert t.data.tolist() == [n - 1] * 3
    strided = np.arange(8.0).reshape(2, 4)[:, ::2] * (r + 1)  # not contiguous: reduced too
    dist.all_reduce(strided)
    assert strided.tolist() == (np.arange(8.0).reshape(2, 4)[:, ::2] * n * (n + 1) / 2).tolist()
    assert dist.broadcast(np.full(2, float(r)), src=n - 1).tolist() == [n - 1, n - 1]
    assert dist.broadcast(10 * r, src=1) == 10
    assert dist.all_gather(np.array([r, 2 * r])).tolist() == [[k, 2 * k] for k in range(n)]
    rows = dist.all_gather_rows(np.full((r + 1, 2), r))
    assert rows.tolist() == [[k, k] for k in range(n) for _ in range(k + 1)]
    from cnnlab.distributed import comm

    gathered = comm.gather_json({"rank": r, "big": 2**100 + r})
    assert gathered == ([{"rank": k, "big": 2**100 + k} for k in range(n)] if r == 0 else None)
    assert comm.broadcast_json(["from", r], src=1) == ["from", 1]
    dist.barrier()
    say("ok collectives")


# ---------------------------------------------------------- the SyncBatchNorm op itself


def check_sync_batchnorm_op() -> None:
    """The op over two ranks against central differences of the loss summed over the ranks
    (float64), and against torch's BatchNorm2d on the ranks' batches put together."""
    from cnnlab.ops import norm

    r, n = dist.rank(), dist.world_size()
    rng = np.random.default_rng(5)
    xs = [rng.normal(1.0, 2.0, (2 + k, 3, 2, 2)) for k in range(n)]  # ranks' batches differ
    gs = [rng.normal(size=x.shape) for x in xs]  # the upstream gradient of each rank's loss
    w0, b0 = np.array([1.5, 0.5, -1.0]), np.array([0.1, -0.2, 0.3])

    def forward(x, w, b, grad=False):
        xt = cnnlab.Tensor(x, requires_grad=grad)
        wt, bt = cnnlab.Tensor(w, requires_grad=grad), cnnlab.Tensor(b, requires_grad=grad)
        y = norm.sync_batch_norm(xt, None, None, wt, bt, True, 0.1, 1e-5, dist.WORLD)
        return xt, wt, bt, y

    def total_loss(x, w, b):  # sum over the ranks of sum(g_r * y_r)
        return dist.all_reduce(float((forward(x, w, b)[3].data * gs[r]).sum()), "sum")

    xt, wt, bt, y = forward(xs[r], w0, b0, grad=True)
    (y * cnnlab.Tensor(gs[r])).sum().backward()
    dx, dw = xt.grad.data, dist.all_reduce(wt.grad.data.copy(), "sum")
    db = dist.all_reduce(bt.grad.data.copy(), "sum")
    eps, worst = 1e-6, 0.0
    for owner in range(n):  # perturb one rank's input at a time; every rank recomputes
        for i in range(xs[owner].size):
            x = xs[r].copy()
            if r == owner:
                x.flat[i] += eps
            up = total_loss(x, w0, b0)
            if r == owner:
                x.flat[i] -= 2 * eps
            down = total_loss(x, w0, b0)
            if r == owner:
                worst = max(worst, abs((up - down) / (2 * eps) - dx.flat[i]))
    for j in range(3):
        e = np.eye(3)[j] * eps
        for analytic, args in ((dw, lambda d: (xs[r], w0 + d, b0)),
                               (db, lambda d: (xs[r], w0, b0 + d))):
            numeric = (total_loss(*args(e)) - total_loss(*args(-e))) / (2 * eps)
            worst = max(worst, abs(numeric - analytic[j]))
    worst = dist.all_reduce(worst, "max")
    assert worst < 1e-6, f"SyncBatchNorm gradients differ from central differences by {worst}"

    try:
        import torch
    except ImportError:
        say(f"ok sync batch norm op: central differences {worst:.2g} (torch not installed)")
        return
    tx = torch.tensor(np.concatenate(xs), requires_grad=True)
    bn = torch.nn.BatchNorm2d(3, dtype=torch.float64)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor(w0))
        bn.bias.copy_(torch.tensor(b0))
    ty = bn(tx)
    ty.backward(torch.tensor(np.concatenate(gs)))
    start = sum(len(x) for x in xs[:r])
    np.testing.assert_allclose(y.data, ty.detach().numpy()[start:start + len(xs[r])],
                               rtol=0, atol=1e-12)
    np.testing.assert_allclose(dx, tx.grad.numpy()[start:start + len(xs[r])], rtol=0,
                               atol=1e-12)
    np.testing.assert_allclose(dw, bn.weight.grad.numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(db, bn.bias.grad.numpy(), rtol=0, atol=1e-12)
    say(f"ok sync batch norm op: central differences {worst:.2g}, torch 1e-12")


# ---------------------------------------------------------------- one step = one big step


def train_steps(model, opt, x, y, steps, batch, micro_batches=None, streams=None):
    """SGD steps on consecutive batches. ``micro_batches`` > 1: the one-process reference of
    per-rank statistics — the batch is split as the ranks split it and the gradients of the
    parts averaged; share r's dropout masks come from ``streams[r]``."""
    for step in range(steps):
        xb, yb = x[step * batch : (step + 1) * batch], y[step * batch : (step + 1) * batch]
        opt.zero_grad()
        if not micro_batches:
            F.cross_entropy(model(cnnlab.Tensor(xb)), yb).backward()
        else:
            for r in range(micro_batches):
                if streams is not None:
                    cnnlab.random.set_rng_state(streams[r])
                share = slice(r, None, micro_batches)
                (F.cross_entropy(model(cnnlab.Tensor(xb[share])), yb[share])
                 * (1.0 / micro_batches)).backward()
                if streams is not None:
                    streams[r] = cnnlab.random.get_rng_state()
        opt.step()


def ranks_steps(arch, dtype, steps, sync=False, cap=4.0, overlap=False):
    r, n = dist.rank(), dist.world_size()
    model = build(arch, dtype)
    if sync:
        nn.SyncBatchNorm.convert_sync_batchnorm(model)
    net = dist.DistributedDataParallel(model, bucket_cap_mb=cap)
    net._reducer.overlap = overlap
    opt = cnnlab.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    x, y = data(n * PER_RANK * steps, dtype)
    dist.split_random_streams()
    mine = slice(r, None, n)  # rank r's share of each batch (any split would do)
    for step in range(steps):
        sl = slice(step * n * PER_RANK, (step + 1) * n * PER_RANK)
        opt.zero_grad()
        F.cross_entropy(net(cnnlab.Tensor(x[sl][mine])), y[sl][mine]).backward()
        opt.step()
    return model, net


def check_exact() -> None:
    n, steps = dist.world_size(), 3
    cases = [
        ("no batch norm, float64", "conv3x3x4p1-relu-pool2-fc10", np.float64, False, TOL64),
        ("no batch norm, float32", "conv3x3x4p1-relu-pool2-fc10", np.float32, False, TOL32),
        ("SyncBatchNorm, float64", "conv3x3x4p1-bn-relu-pool2-fc10", np.float64, True, TOL64),
        ("SyncBatchNorm, float32", "conv3x3x4p1-bn-relu-pool2-fc10", np.float32, True, TOL32),
    ]
    for what, arch, dtype, sync, tol in cases:
        model, _ = ranks_steps(arch, dtype, steps, sync)
        ref = build(arch, dtype)
        opt = cnnlab.optim.SGD(ref.parameters(), lr=0.1, momentum=0.9)
        train_steps(ref, opt, *data(n * PER_RANK * steps, dtype), steps, n * PER_RANK)
        worst = assert_close(weights(model), weights(ref), tol, what)
        say(f"ok exact {what}: {worst:.2g}")
        if sync:  # running statistics of the whole batch, the same on every rank
            for got, want in zip(model.buffers(), ref.buffers(), strict=True):
                np.testing.assert_allclose(got, want, rtol=0,
                                           atol=1e-6 if dtype == np.float32 else 1e-12)

    # Small buckets: several Allreduce calls, the same sums.
    model, net = ranks_steps("conv3x3x4p1-relu-pool2-fc10", np.float64, steps, cap=0.0005)
    assert net.bucket_sizes() == [80, 2880, 320]  # fc bias, fc weight, the conv (reversed)
    big, _ = ranks_steps("conv3x3x4p1-relu-pool2-fc10", np.float64, steps)
    assert all(np.array_equal(a, b) for a, b in zip(weights(model), weights(big), strict=True))
    # Each bucket's Iallreduce started during backward: the same sums again.
    early, _ = ranks_steps("conv3x3x4p1-relu-pool2-fc10", np.float64, steps, cap=0.0005,
                           overlap=True)
    assert all(np.array_equal(a, b) for a, b in zip(weights(early), weights(big), strict=True))
    say("ok buckets")

    # Per-rank batch norm and dropout: the step of one process that averages the gradients of
    # the ranks' shares, each normalized with its own statistics, share r's dropout masks
    # drawn from rank r's stream.
    arch = "conv3x3x4p1-bn-relu-pool2-fc8-relu-dropout0.5-fc10"
    model, _ = ranks_steps(arch, np.float64, steps)
    ref = build(arch)  # the initial weights' draws come first, as on the ranks
    gen = cnnlab.random.get_generator()
    streams = [gen.bit_generator.jumped(r).state if r else cnnlab.random.get_rng_state()
               for r in range(n)]
    opt = cnnlab.optim.SGD(ref.parameters(), lr=0.1, momentum=0.9)
    train_steps(ref, opt, *data(n * PER_RANK * steps), steps, n * PER_RANK, n, streams)
    worst = assert_close(weights(model), weights(ref), TOL64, "per-rank batch norm + dropout")
    buffers = dist.all_gather(np.concatenate([b.ravel() for b in model.buffers()]))
    assert (buffers == buffers[0]).all()  # rank 0's running statistics on every rank
    say(f"ok exact per-rank batch norm and dropout: {worst:.2g}")


def check_unused_parameter() -> None:
    model = build("fc4-relu-fc10")
    net = dist.DistributedDataParallel(model)
    x, _ = data(4)
    net(cnnlab.Tensor(x[:2])).sum()  # forward only: nothing started, nothing to report
    out = model[1](cnnlab.Tensor(x[:2].reshape(2, -1)))  # Flatten, [Linear], ReLU, Linear
    out.sum().backward()  # the last layer gets no gradient
    try:
        net(cnnlab.Tensor(x[:2]))
    except RuntimeError as exc:
        assert "gave no gradient to 2 parameter(s) (3.weight, 3.bias)" in str(exc), exc
    else:
        raise AssertionError("an unused parameter went unnoticed")
    say("ok unused parameter")


# -------------------------------------------------------------------- fit over the ranks


def fit_run(model, n_images, *, sampler, callbacks=(), epochs=3, val=None, batch=PER_RANK,
            resume=None, transform=None, generator=None):
    x, y = data(n_images)
    opt = cnnlab.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    sched = cnnlab.optim.CosineAnnealingLR(opt, T_max=epochs)
    return cnnlab.train.fit(model, opt, (x, y), epochs=epochs, batch_size=batch,
                            val_data=val, scheduler=sched, callbacks=list(callbacks),
                            sampler=sampler,
                            generator=generator or np.random.default_rng([4, 1]),
                            resume=resume, transform=transform)


def check_fit() -> None:
    # fit feeds float32 batches (the loader's datasets are float32): float32 tolerances.
    n = dist.world_size()
    arch = "conv3x3x4p1-bn-relu-pool2-fc10"
    images = 26 * n  # per rank: 26 images, batches of 3: the last one is 2
    vx, vy = data(11, np.float32, seed=3)
    model = nn.SyncBatchNorm.convert_sync_batchnorm(build(arch, np.float32))
    net = dist.DistributedDataParallel(model)
    part = dist.shard(len(vy))
    state = fit_run(net, images, sampler=dist.DistributedSampler(images, seed=7),
                    val=(vx[part], vy[part]),
                    callbacks=[dist.DistributedTraining(val_count=part.stop - part.start)])
    ref = build(arch, np.float32)
    ref_state = fit_run(ref, images, sampler=dist.DistributedSampler(images, 1, 0, seed=7),
                        val=(vx, vy), batch=n * PER_RANK)
    worst = assert_close(weights(model), weights(ref), TOL32, "fit over 3 shuffled epochs")
    assert state.num_samples == images and state.num_batches == 9
    for got, want in zip(state.history, ref_state.history, strict=True):
        for key in ("train_loss", "val_loss", "lr"):
            assert abs(got[key] - want[key]) <= 1e-5, (key, got, want)
        for key in ("train_acc", "val_acc"):  # counts: equal unless a logit is at a tie
            assert abs(got[key] - want[key]) <= 1.01 / images, (key, got, want)
    everyone = dist.all_gather(np.array([h[k] for h in state.history
                                         for k in ("train_loss", "val_acc")]))
    assert (everyone == everyone[0]).all()  # every rank has the same history
    model64, ref64 = build(arch), build(arch)  # evaluation: the same weights, float64
    vx64 = vx.astype(np.float64)
    result = dist.evaluate(dist.DistributedDataParallel(model64), (vx64, vy), batch_size=4)
    alone = cnnlab.train.evaluate(ref64, (vx64, vy), batch_size=4)
    assert result.n == 11 and result.correct == alone.correct
    assert abs(result.loss - alone.loss) <= TOL64
    np.testing.assert_array_equal(result.predictions, alone.predictions)
    np.testing.assert_array_equal(result.confusion, alone.confusion)
    say(f"ok fit over ranks: {worst:.2g}")


class CtrlC(cnnlab.train.Callback):
    """Sends this process SIGINT (as srun forwards Ctrl-C) after a given step, on one rank."""

    order = -200  # before DistributedTraining: the stop is voted on in the same step

    def __init__(self, rank, epoch, batch):
        self.rank, self.epoch, self.batch = rank, epoch, batch

    def on_batch_end(self, state):
        if (dist.rank(), state.epoch, state.batch) == (self.rank, self.epoch, self.batch):
            os.kill(os.getpid(), signal.SIGINT)


def check_resume(folder: str) -> None:
    """Dropout and random crops draw from each rank's own streams; a run stopped by Ctrl-C on
    one rank in the middle of an epoch and resumed ends with the weights of a run never
    stopped."""
    from cnnlab.data import RandomCrop

    n = dist.world_size()
    arch = "conv3x3x4p1-bn-relu-pool2-fc8-relu-dropout0.3-fc10"
    images = 20 * n
    path = Path(folder) / "ckpt.safetensors"

    def run(callbacks, resume=None):
        model = build(arch, np.float32)
        net = dist.DistributedDataParallel(model)
        crops = np.random.default_rng([4, 1])
        cbs = [dist.DistributedTraining(), *callbacks]
        if dist.rank() == 0:
            cbs.append(cnnlab.train.Checkpoint(path))
        ckpt = None
        if resume is None:
            dist.split_random_streams(crops)
        else:
            ckpt = dist.resume_checkpoint(cnnlab.train.read_checkpoint(resume))
        state = fit_run(net, images, sampler=dist.DistributedSampler(images, seed=2),
                        callbacks=cbs, resume=ckpt, transform=RandomCrop(6, padding=1),
                        generator=crops)
        return model, state

    whole, _ = run([])
    dist.barrier()
    stopped, state = run([CtrlC(rank=n - 1, epoch=1, batch=2)])
    assert state.stop_reason == "interrupted" and (state.epoch, state.batch) == (1, 2), \
        (state.stop_reason, state.epoch, state.batch)
    dist.barrier()  # rank 0 has written the checkpoint
    resumed, state = run([], resume=path)
    assert state.stop_reason == "completed"
    for a, b in zip(weights(whole), weights(resumed), strict=True):
        np.testing.assert_array_equal(a, b)
    try:  # the file as it is would give every rank rank 0's random states
        fit_run(dist.DistributedDataParallel(build(arch, np.float32)), images,
                sampler=dist.DistributedSampler(images, seed=2),
                callbacks=[dist.DistributedTraining()], resume=cnnlab.train.read_checkpoint(path))
    except ValueError as exc:
        assert "needs each rank's own random states: pass resume=cnnlab.distributed." \
            "resume_checkpoint" in str(exc), exc
    else:
        raise AssertionError("resuming without resume_checkpoint went unnoticed")
    say("ok resume after Ctrl-C on one rank")


# ----------------------------------------------------------------------------- failures


def fault_raise() -> None:
    """Rank 1 raises in its third step; rank 0 is then waiting for it in a collective."""
    model = build("fc10")
    net = dist.DistributedDataParallel(model)
    opt = cnnlab.optim.SGD(net.parameters(), lr=0.1)
    x, y = data(8)
    for step in range(100):
        if step == 2 and dist.rank() == 1:
            raise RuntimeError("rank 1 cannot go on")
        opt.zero_grad()
        F.cross_entropy(net(cnnlab.Tensor(x)), y).backward()
        opt.step()


def fault_kill(folder: str) -> None:
    """Rank 1 dies (SIGKILL) in epoch 3, after rank 0 checkpointed epoch 2."""

    class Die(cnnlab.train.Callback):
        def on_batch_end(self, state):
            if dist.rank() == 1 and state.epoch == 2 and state.batch == 2:
                os.kill(os.getpid(), signal.SIGKILL)

    model = build("conv3x3x4p1-relu-pool2-fc10", np.float32)
    net = dist.DistributedDataParallel(model)
    cbs = [dist.DistributedTraining(), Die()]
    if dist.rank() == 0:
        cbs.append(cnnlab.train.Checkpoint(Path(folder) / "ckpt.safetensors"))
    fit_run(net, 40, sampler=dist.DistributedSampler(40), callbacks=cbs, epochs=50)


def fault_fail_alone() -> None:
    """Rank 1 finds bad input that rank 0 does not see; rank 0 waits in a barrier."""
    if dist.rank() == 1:
        dist.fail("cnnlab: error: bad input on this rank only", 1)
    dist.barrier()
    print("rank 0 passed the barrier", flush=True)


if __name__ == "__main__":
    dist.init()
    check, args = sys.argv[1], sys.argv[2:]
    if check == "checks":
        check_collectives()
        check_sync_batchnorm_op()
        check_exact()
        check_unused_parameter()
        check_fit()
        check_resume(*args)
    else:
        {"raise": fault_raise, "kill": fault_kill, "fail-alone": fault_fail_alone}[check](*args)
