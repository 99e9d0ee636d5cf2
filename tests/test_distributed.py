"""cnnlab.distributed in one process: world of one, the sampler, the gradient buckets,
SyncBatchNorm's merge of statistics. The runs on two ranks are in test_distributed_mpi.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import cnnlab
import cnnlab.nn.functional as F
from cnnlab import distributed as dist
from cnnlab import nn
from cnnlab.distributed import comm, ddp
from cnnlab.ops import norm

REPO = Path(cnnlab.__file__).resolve().parent.parent


def test_importing_cnnlab_never_imports_mpi4py():
    code = ("import sys, cnnlab, cnnlab.distributed, cnnlab.nn, cnnlab.train, cnnlab.cli.main;"
            "cnnlab.nn.SyncBatchNorm(2); print('mpi4py' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO, timeout=120, env={"PYTHONPATH": str(REPO), "PATH": ""})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


# ------------------------------------------------------------------------ world of one


def test_a_single_process_is_rank_0_of_1():
    assert (dist.rank(), dist.world_size(), dist.is_main_process()) == (0, 1, True)
    assert not dist.is_initialized()


@pytest.mark.parametrize("op", ["sum", "mean", "max", "min"])
def test_collectives_of_one_rank_return_their_input_in_place(op):
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert dist.all_reduce(x, op) is x
    np.testing.assert_array_equal(x, np.arange(6).reshape(2, 3))
    t = cnnlab.Tensor(np.ones(3, np.float32))
    assert dist.all_reduce(t, op) is t
    assert dist.all_reduce(2.5, op) == 2.5 and dist.all_reduce(3, op) == 3
    assert isinstance(dist.all_reduce(3, op), float if op == "mean" else int)


def test_broadcast_and_gather_in_one_process():
    x = np.arange(4.0)
    assert dist.broadcast(x) is x and dist.broadcast(7) == 7
    assert dist.all_gather(x).shape == (1, 4)
    assert dist.all_gather_rows(np.ones((2, 3))).shape == (2, 3)
    assert comm.gather_json({"a": [1, 2**100]}) == [{"a": [1, 2**100]}]
    assert comm.broadcast_json([3, "x"]) == [3, "x"]
    dist.barrier()


def test_collective_arguments_are_checked():
    with pytest.raises(ValueError, match="op must be one of"):
        dist.all_reduce(np.ones(2), "avg")
    with pytest.raises(TypeError, match="op='mean' needs a floating-point array"):
        dist.all_reduce(np.ones(2, np.int64), "mean")
    with pytest.raises(TypeError, match="expects a NumPy array, a cnnlab Tensor or a number"):
        dist.all_reduce([1, 2])
    with pytest.raises(ValueError, match=r"src must be a rank in 0\.\.0, got 1"):
        dist.broadcast(np.ones(2), src=1)


def test_fail_in_one_process_prints_and_exits(capfd):
    with pytest.raises(SystemExit) as exc:
        dist.fail("cnnlab: error: no data", 3)
    assert exc.value.code == 3
    assert capfd.readouterr().err == "cnnlab: error: no data\n"


def test_failures_name_the_rank_when_it_fails_alone():
    assert comm._on_rank("cnnlab: error: bad file", 1, 4) == \
        "cnnlab: error on rank 1 of 4: bad file"
    assert comm._on_rank("Traceback ...", 2, 4) == "rank 2 of 4: Traceback ..."


def test_launcher_is_recognised_from_the_environment(monkeypatch):
    for var in ("OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE", "OMPI_COMM_WORLD_RANK",
                "PMI_RANK"):
        monkeypatch.delenv(var, raising=False)
    assert not dist.launched_by_mpi() and dist.launcher_rank() is None
    monkeypatch.setenv("PMI_SIZE", "4")
    monkeypatch.setenv("PMI_RANK", "3")
    assert dist.launched_by_mpi() and dist.launcher_rank() == 3


# ------------------------------------------------------------------------------ sampler


@pytest.mark.parametrize("n, replicas, drop_last", [(10, 3, False), (10, 3, True), (9, 3, False),
                                                    (2, 4, False), (7, 1, False), (0, 2, False)])
def test_sampler_deals_indices_out_as_pytorch_does(n, replicas, drop_last):
    torch_data = pytest.importorskip("torch.utils.data")
    for r in range(replicas):
        ours = dist.DistributedSampler(n, replicas, r, shuffle=False, drop_last=drop_last)
        theirs = torch_data.DistributedSampler(range(n), replicas, r, shuffle=False,
                                               drop_last=drop_last)
        assert list(ours) == list(theirs) and len(ours) == len(theirs)


def test_shuffled_shards_are_disjoint_cover_the_epoch_and_repeat_for_a_seed():
    n, size = 103, 4
    samplers = [dist.DistributedSampler(n, size, r, seed=5) for r in range(size)]
    for epoch in (0, 1):
        for s in samplers:
            s.set_epoch(epoch)
        shards = [s.indices() for s in samplers]
        assert {len(s) for s in shards} == {26}
        everything = np.concatenate(shards)
        assert set(everything.tolist()) == set(range(n))  # 104 = 103 + one repeated index
        assert len(set(np.concatenate(shards[:3]).tolist())) == 78  # disjoint before padding
        again = dist.DistributedSampler(n, size, 2, seed=5)
        again.set_epoch(epoch)
        np.testing.assert_array_equal(again.indices(), shards[2])
    a, b = dist.DistributedSampler(n, 1, 0, seed=5), dist.DistributedSampler(n, 1, 0, seed=5)
    b.set_epoch(1)
    assert a.indices().tolist() != b.indices().tolist()
    assert a.indices().tolist() != dist.DistributedSampler(n, 1, 0, seed=6).indices().tolist()


def test_a_global_step_reads_what_one_process_reads_with_the_whole_batch():
    n, size, per_rank = 40, 4, 3
    whole = dist.DistributedSampler(n, 1, 0, seed=2).indices()
    shards = [dist.DistributedSampler(n, size, r, seed=2).indices() for r in range(size)]
    for step in range(n // (size * per_rank)):
        ranks = np.concatenate([s[step * per_rank : (step + 1) * per_rank] for s in shards])
        chunk = whole[step * size * per_rank : (step + 1) * size * per_rank]
        assert sorted(ranks.tolist()) == sorted(chunk.tolist())


def test_sampler_arguments_are_checked():
    with pytest.raises(ValueError, match=r"rank must be in 0\.\.1 for num_replicas=2, got 2"):
        dist.DistributedSampler(10, 2, 2)
    with pytest.raises(ValueError, match="num_replicas must be an integer >= 1"):
        dist.DistributedSampler(10, 0, 0)
    s = dist.DistributedSampler(range(5))  # a sized object; this process's rank and world
    assert (s.n, s.num_replicas, s.rank) == (5, 1, 0)


def test_data_loader_reads_what_the_sampler_says():
    x = np.arange(10, dtype=np.float32).reshape(10, 1, 1, 1)
    y = np.arange(10)
    sampler = dist.DistributedSampler(10, 3, 1, shuffle=False)
    loader = cnnlab.data.DataLoader((x, y), batch_size=3, sampler=sampler)
    assert len(loader) == 2
    assert [b.tolist() for _, b in loader] == [[1, 4, 7], [0]]
    with pytest.raises(ValueError, match="give shuffle=True or a sampler, not both"):
        cnnlab.data.DataLoader((x, y), shuffle=True, sampler=sampler)
    bad = cnnlab.data.DataLoader((x, y), sampler=dist.DistributedSampler(12, 1, 0))
    with pytest.raises(ValueError, match=r"indices outside 0\.\.9 for a dataset of 10"):
        list(bad)


def test_torch_style_data_loader_takes_the_sampler_too():
    from cnnlab.utils.data import DataLoader, TensorDataset

    data = TensorDataset(cnnlab.tensor(np.arange(10.0)), cnnlab.tensor(np.arange(10)))
    loader = DataLoader(data, batch_size=2, sampler=dist.DistributedSampler(data, 3, 2,
                                                                            shuffle=False))
    assert [y.tolist() for _, y in loader] == [[2, 5], [8, 1]]


def test_fit_sets_the_samplers_epoch_and_counts_its_share():
    class Recording(dist.DistributedSampler):
        epochs: list = []

        def set_epoch(self, epoch):
            self.epochs.append(epoch)
            super().set_epoch(epoch)

    cnnlab.manual_seed(0)
    model = cnnlab.arch.build("fc4", input_shape=(1, 2, 2))
    x = np.random.default_rng(0).random((9, 1, 2, 2), dtype=np.float32)
    sampler = Recording(9, 1, 0)
    state = cnnlab.train.fit(model, cnnlab.optim.SGD(model.parameters(), lr=0.1),
                             (x, np.arange(9) % 4), epochs=3, batch_size=4, sampler=sampler)
    assert sampler.epochs == [0, 1, 2]
    assert (state.num_samples, state.num_batches) == (9, 3)


def test_shard_splits_into_contiguous_blocks_in_rank_order():
    blocks = [dist.shard(11, 4, r) for r in range(4)]
    assert [(b.start, b.stop) for b in blocks] == [(0, 3), (3, 6), (6, 9), (9, 11)]
    assert dist.shard(5) == slice(0, 5)


# ------------------------------------------------------------------- the wrapper, one rank


def _net(seed=0):
    cnnlab.manual_seed(seed)
    return cnnlab.arch.build("conv3x3x4p1-bn-relu-pool2-fc6-relu-fc3", input_shape=(1, 4, 4))


def _batch(n=6):
    rng = np.random.default_rng(1)
    return cnnlab.Tensor(rng.random((n, 1, 4, 4), dtype=np.float32)), np.arange(n) % 3


def test_wrapper_in_one_process_is_the_model_with_the_same_names():
    model = _net()
    wrapped = dist.DistributedDataParallel(model, bucket_cap_mb=1)
    assert wrapped.module is model and wrapped._reducer is None
    assert list(wrapped.state_dict()) == list(model.state_dict())
    assert [n for n, _ in wrapped.named_parameters()] == [n for n, _ in model.named_parameters()]
    assert wrapped.spec is model.spec and wrapped.bucket_sizes() == []
    x, y = _batch()
    reference = _net()
    np.testing.assert_array_equal(wrapped(x).data, reference(x).data)
    wrapped.eval()
    assert not model.training and not model[1].training
    wrapped.load_state_dict(reference.state_dict())
    with pytest.raises(TypeError, match="expects a cnnlab.nn.Module, got list"):
        dist.DistributedDataParallel([model])
    with pytest.raises(ValueError, match="bucket_cap_mb must be a number > 0, got 0"):
        dist.DistributedDataParallel(model, bucket_cap_mb=0)


def _gradients(model):
    return [p.grad.data.copy() for p in model.parameters()]


def test_buckets_collect_the_gradients_the_engine_computes():
    # The reducer's bookkeeping, run in one process (its "average" over one rank is the
    # gradient itself): every gradient lands in its bucket and comes back unchanged.
    x, y = _batch()
    plain = _net()
    F.cross_entropy(plain(x), y).backward()
    expected = _gradients(plain)

    model = _net()
    reducer = ddp._Reducer(model, cap=200)  # bytes: several buckets
    assert len(reducer.buckets) > 2
    assert all(type(p).__name__ == "Parameter" and isinstance(p, nn.Parameter)
               for p in model.parameters())
    for _ in range(2):  # twice: the buckets are reused
        reducer.prepare()
        for p in model.parameters():
            p.grad = None
        F.cross_entropy(model(x), y).backward()
        for got, want, p in zip(_gradients(model), expected, model.parameters(), strict=True):
            np.testing.assert_array_equal(got, want)
            assert np.shares_memory(p.grad.data, reducer.slots[id(p)][0].buffer)
    # Without zero_grad gradients add up, as they do without the wrapper.
    F.cross_entropy(model(x), y).backward()
    for got, want in zip(_gradients(model), expected, strict=True):
        np.testing.assert_allclose(got, 2 * want, rtol=1e-6)


def test_a_parameter_without_gradient_is_reported_at_the_next_forward():
    model = _net()
    reducer = ddp._Reducer(model, cap=2**20)
    x, y = _batch()
    (model[0](x).sum()).backward()  # only the first layer gets gradients
    with pytest.raises(RuntimeError, match=r"gave no gradient to 6 parameter\(s\) \(1.weight"):
        reducer.prepare()
    model[1].weight.requires_grad = False  # changes the set of parameters: new buckets
    reducer.prepare()
    assert id(model[1].weight) not in reducer.slots
    assert type(model[1].weight) is nn.Parameter  # no longer watched


def test_watching_ends_with_the_reducer():
    model = _net()
    reducer = ddp._Reducer(model, cap=2**20)
    del reducer
    x, y = _batch()
    F.cross_entropy(model(x), y).backward()  # nobody to report to: a plain backward
    assert all(p.grad is not None for p in model.parameters())
    ddp._Reducer(model, cap=2**20)  # a new wrapper may take the parameters over


def test_a_parameter_cannot_have_two_wrappers():
    model = _net()
    keep = ddp._Reducer(model, cap=2**20)
    with pytest.raises(TypeError, match="already managed by another DistributedDataParallel"):
        ddp._Reducer(model, cap=2**20)
    assert keep.buckets


def test_arrays_are_broadcast_in_groups_of_one_dtype():
    arrays = [np.zeros(3, np.float32), np.zeros((), np.int64), np.zeros(5, np.float32),
              np.zeros(2, np.float64)]
    groups = ddp._flat_groups(arrays, cap=16)
    assert [[a.size for a in g] for g in groups] == [[3], [5], [1], [2]]
    ddp._broadcast_arrays(arrays, cap=16)


# ------------------------------------------------------------------------- SyncBatchNorm


def test_merged_statistics_equal_those_of_the_whole(rng):
    x = rng.normal(3.0, 2.0, (50, 4))
    cuts = [0, 7, 8, 30, 50]
    rows = []
    for a, b in zip(cuts[:-1], cuts[1:], strict=True):
        part = x[a:b]
        rows.append([len(part), *part.mean(0), *((part - part.mean(0)) ** 2).sum(0)])
    n, mean, var = norm.combine_stats(np.array(rows))
    assert n == 50
    np.testing.assert_allclose(mean, x.mean(0), rtol=1e-13)
    np.testing.assert_allclose(var, x.var(0), rtol=1e-13)


def test_sync_batchnorm_in_one_process_is_batchnorm(rng):
    x = rng.random((5, 3, 4, 4), dtype=np.float32)
    plain, sync = nn.BatchNorm2d(3), nn.SyncBatchNorm(3)
    outs, grads = [], []
    for layer in (plain, sync):
        xt = cnnlab.Tensor(x, requires_grad=True)
        out = layer(xt)
        (out * cnnlab.Tensor(np.linspace(-1, 1, out.data.size, dtype=np.float32)
                             .reshape(out.shape))).sum().backward()
        outs.append(out.data)
        grads.append([xt.grad.data, layer.weight.grad.data, layer.bias.grad.data,
                      layer.running_var.copy()])
    np.testing.assert_array_equal(outs[0], outs[1])
    for a, b in zip(*grads, strict=True):
        np.testing.assert_array_equal(a, b)


class _TwoRanks:
    """A group whose other rank holds a fixed batch: forward merges its statistics."""

    size = 2

    def __init__(self, other: np.ndarray) -> None:
        rows = other.size // other.shape[1]
        mean, var, _ = norm.batch_stats(other) if rows else (np.zeros(2), np.zeros(2), None)
        self.row = np.concatenate([[rows], mean, var * rows])

    def all_gather(self, array):
        return np.stack([array, self.row])

    def all_reduce(self, array):
        return array * 2  # stands for the other rank's sums; only forward is checked here


def test_sync_batch_norm_normalizes_with_the_statistics_of_both_ranks(rng):
    mine = rng.random((3, 2, 3, 3))
    theirs = rng.random((5, 2, 3, 3)) + 1.0
    weight = cnnlab.Tensor(np.array([1.5, 0.5]))
    bias = cnnlab.Tensor(np.array([0.1, -0.2]))
    rm, rv = np.zeros(2), np.ones(2)
    out = norm.sync_batch_norm(cnnlab.Tensor(mine), rm, rv, weight, bias, True, 0.1, 1e-5,
                               _TwoRanks(theirs))
    both = np.concatenate([mine, theirs])
    whole = norm.batch_norm(cnnlab.Tensor(both), None, None, weight, bias, True)
    np.testing.assert_allclose(out.data, whole.data[:3], rtol=1e-12, atol=1e-12)
    count = both.size // 2
    np.testing.assert_allclose(rv, 0.9 + 0.1 * both.var(axis=(0, 2, 3)) * count / (count - 1),
                               rtol=1e-12)
    empty = norm.sync_batch_norm(cnnlab.Tensor(mine[:0]), None, None, weight, bias, True, 0.1,
                                 1e-5, _TwoRanks(theirs))  # a rank without images
    assert empty.shape == (0, 2, 3, 3)
    with pytest.raises(ValueError, match="more than one value per channel over all ranks"):
        norm.sync_batch_norm(cnnlab.Tensor(np.ones((1, 2, 1, 1))), None, None, weight, bias,
                             True, 0.1, 1e-5, _TwoRanks(np.zeros((0, 2, 1, 1))))


def test_convert_sync_batchnorm_keeps_parameters_buffers_and_mode():
    model = _net()
    model.eval()
    bn = model[1]
    opt = cnnlab.optim.SGD(model.parameters(), lr=0.1)
    out = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    assert out is model and type(model[1]) is nn.SyncBatchNorm
    assert model[1].weight is bn.weight and model[1].running_mean is bn.running_mean
    assert not model[1].training
    assert opt.param_groups[0]["params"][2] is model[1].weight
    assert list(model.state_dict()) == list(_net().state_dict())
    single = nn.SyncBatchNorm.convert_sync_batchnorm(nn.BatchNorm2d(3))
    assert type(single) is nn.SyncBatchNorm and single.num_features == 3

    class Holder(nn.Module):
        def __init__(self):
            super().__init__()
            self.norms = {"a": nn.BatchNorm2d(2)}
            self.pair = (nn.BatchNorm2d(2), nn.ReLU())

    held = nn.SyncBatchNorm.convert_sync_batchnorm(Holder())
    assert type(held.norms["a"]) is nn.SyncBatchNorm and type(held.pair[0]) is nn.SyncBatchNorm


def test_a_sync_batchnorm_model_saves_as_the_plain_architecture(tmp_path):
    model = nn.SyncBatchNorm.convert_sync_batchnorm(_net())
    cnnlab.io.save_model(model, tmp_path / "m.safetensors")
    loaded = cnnlab.io.load_model(tmp_path / "m.safetensors")
    assert type(loaded[1]) is nn.BatchNorm2d
    x, _ = _batch()
    model.eval()
    np.testing.assert_array_equal(loaded(x).data, model(x).data)


# ----------------------------------------------------------- training helpers, one rank


def _fit(callbacks=(), epochs=2):
    model = _net()
    x, y = _batch(20)
    return cnnlab.train.fit(model, cnnlab.optim.SGD(model.parameters(), lr=0.1),
                            (x.data, y), val_data=(x.data[:5], y[:5]), epochs=epochs,
                            batch_size=6, callbacks=list(callbacks),
                            generator=np.random.default_rng(0))


def test_distributed_training_callback_changes_nothing_in_one_process(tmp_path):
    plain = _fit()
    path = tmp_path / "ckpt.safetensors"
    synced = _fit([dist.DistributedTraining(val_count=5), cnnlab.train.Checkpoint(path)])
    assert synced.history == [dict(h, time=s["time"]) for h, s in
                              zip(plain.history, synced.history, strict=True)]
    ckpt = cnnlab.train.read_checkpoint(path)
    saved = ckpt["extra"]["callbacks"]["DistributedTraining"]
    assert saved["world_size"] == 1 and len(saved["ranks"]) == 1
    assert dist.checkpoint_world_size(ckpt) == 1
    assert dist.resume_checkpoint(ckpt) is ckpt


def test_resuming_on_another_number_of_ranks_is_refused_in_one_line(tmp_path):
    ckpt = {"extra": {"callbacks": {"DistributedTraining": {"world_size": 4, "ranks": []}}}}
    with pytest.raises(ValueError) as exc:
        dist.resume_checkpoint(ckpt)
    message = str(exc.value)
    assert "\n" not in message
    assert message.startswith("the checkpoint was written by a run on 4 ranks and this one "
                              "has 1; resume it with mpirun -np 4")
    assert dist.checkpoint_world_size({"extra": {}}) == 1


def test_evaluate_over_ranks_equals_evaluate_in_one_process():
    model = _net()
    x, y = _batch(9)
    here = cnnlab.train.evaluate(model, (x.data, y), batch_size=4)
    everywhere = dist.evaluate(model, (x.data, y), batch_size=4)
    assert (everywhere.loss, everywhere.correct, everywhere.n) == (here.loss, here.correct, here.n)
    np.testing.assert_array_equal(everywhere.confusion, here.confusion)
    np.testing.assert_array_equal(everywhere.predictions, here.predictions)
    with pytest.raises(ValueError, match="the set is empty"):
        dist.evaluate(model, (x.data[:0], y[:0]))


def test_rank_0_keeps_its_random_streams():
    cnnlab.manual_seed(3)
    gen = np.random.default_rng(4)
    before = (cnnlab.random.get_rng_state(), gen.bit_generator.state)
    dist.split_random_streams(gen)
    assert (cnnlab.random.get_rng_state(), gen.bit_generator.state) == before


def test_the_command_splits_the_batch_evenly_or_says_what_to_give():
    from cnnlab.cli.distributed import Ranks
    from cnnlab.cli.main import CLIError

    ranks = Ranks()
    assert (ranks.size, ranks.batch_per_rank(32), ranks.describe(32)) == (1, 32, "batch 32")
    ranks.size = 3
    assert ranks.batch_per_rank(33) == 11
    assert ranks.describe(33) == "batch 33 (11 on each of 3 ranks)"
    with pytest.raises(CLIError, match=r"--batch-size 32 is the batch of one step, split evenly "
                                       r"between the 3 ranks; give a multiple of 3 \(e\.g\. 30 "
                                       r"or 33\)"):
        ranks.batch_per_rank(32)
    with pytest.raises(CLIError, match=r"give a multiple of 3 \(e\.g\. 3\)"):
        ranks.batch_per_rank(2)


def test_a_share_keeps_the_form_of_its_set(monkeypatch):
    from cnnlab.data import ArrayDataset

    x, y = np.arange(10.0).reshape(10, 1, 1, 1), np.arange(10) % 3
    monkeypatch.setattr(comm, "world_size", lambda: 3)
    monkeypatch.setattr(comm, "rank", lambda: 1)
    pair = dist.share((x, y))
    assert pair[1].tolist() == [1, 2, 0] and dist.count(pair) == 3
    ds = dist.share(ArrayDataset(x, y, ["a", "b", "c"]))
    assert ds.labels.tolist() == [1, 2, 0] and ds.classes == ["a", "b", "c"]

    class Batches:
        images, classes = x, ["a"]

        def get_batch(self, idx):
            return self.images[idx], {"idx": np.asarray(idx)}

    own = dist.share(Batches())
    assert len(own) == 3 and own.get_batch([0, 2])[1]["idx"].tolist() == [4, 6]


def test_classify_merges_the_metrics_of_parts_into_those_of_the_whole():
    from cnnlab import tasks
    from cnnlab.data import ArrayDataset

    task = tasks.get("classify")
    assert task.merges_metrics
    model = _net()
    rng = np.random.default_rng(3)
    data = ArrayDataset(rng.random((23, 1, 4, 4), dtype=np.float32), rng.integers(0, 3, 23),
                        ["a", "b", "c"])
    whole = task.evaluate(model, data, batch_size=5)
    cuts = [0, 8, 9, 23]
    parts = [task.evaluate(model, ArrayDataset(data.images[a:b], data.labels[a:b],
                                               data.classes), batch_size=5)
             for a, b in zip(cuts[:-1], cuts[1:], strict=True)]
    merged = task.merge(parts)
    assert {k: merged[k] for k in ("task", "n", "correct", "accuracy", "classes", "confusion",
                                   "per_class_accuracy")} == \
        {k: whole[k] for k in ("task", "n", "correct", "accuracy", "classes", "confusion",
                               "per_class_accuracy")}
    assert merged["loss"] == pytest.approx(whole["loss"], rel=1e-6)
