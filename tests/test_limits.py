"""Sizes are checked from shapes before memory is committed: architectures, model files,
weights that hold NaN, and the writes that must survive a full disk or a kill."""

from __future__ import annotations

import errno
import json
import math
import os
import re
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cnnlab
from cnnlab import arch, budget, io
from cnnlab.budget import TooLargeError
from cnnlab.io import ModelFileError, atomic_write, safetensors

HUGE = "conv3x3x100000-conv3x3x100000-fc10"


def _peak_bytes(fn):
    """Run ``fn``; return (its exception or None, the peak of traced allocations)."""
    tracemalloc.start()
    try:
        fn()
        error = None
    except Exception as exc:  # noqa: BLE001 - returned for the test to check
        error = exc
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return error, peak


def _model_file(path, spec, tensors=None):
    metadata = {"format": "cnnlab-model", "format_version": "1", "spec": json.dumps(spec)}
    safetensors.save_file(tensors or {}, path, metadata)
    return path


# ----------------------------------------------------------------------------- the budget


def test_memory_limit_is_physical_memory_or_the_address_space_limit():
    physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert budget.memory_limit() <= physical
    code = ("import resource; resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30));"
            "from cnnlab import budget; print(budget.memory_limit())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "OPENBLAS_NUM_THREADS": "1"}, check=True)
    assert int(out.stdout) == min(3 << 30, physical)


def test_check_fits_gives_both_figures():
    with pytest.raises(TooLargeError, match=r"a thing would need 4\.0 GiB, more than the "
                                             r"1\.0 GiB of memory this machine has; shrink it"):
        budget.check_fits("a thing", 4 << 30, "shrink it", limit=1 << 30)
    assert issubclass(TooLargeError, ValueError)


# ----------------------------------------------------------------------------- architectures


_TOKENS = st.sampled_from(["conv3x3x4p1", "conv1x1x2", "conv2x3x3s2", "bn", "relu", "pool2",
                           "avgpool2s1", "lrelu", "dropout", "tanh"])


@given(st.lists(_TOKENS, max_size=5), st.sampled_from(["fc3", "gap-fc2", "flatten-fc4-fc2"]),
       st.sampled_from([(1, 6, 6), (3, 8, 7), (2, 9, 9)]))
@settings(max_examples=60, deadline=None, derandomize=True)
def test_state_shapes_and_footprint_match_what_build_makes(body, head, shape):
    text = "-".join([*body, head])
    try:
        steps = arch.plan(text, shape)
    except ValueError:
        return  # an architecture that does not fit the input: build refuses it too
    model = arch.build(text, shape)
    state = model.state_dict()
    expected = arch.state_shapes(text, shape)
    assert list(expected) == list(state)
    for name, (dims, kind) in expected.items():
        assert state[name].shape == dims
        assert (state[name].dtype.kind == "f") == (kind == "f")
    sizes = arch.footprint(text, shape)
    assert sizes["params"] == sum(p.data.size for p in model.parameters())
    assert sizes["state"] == sum(v.size for v in state.values())
    outputs = []
    for module in model:
        module.register_forward_hook(lambda m, i, o: outputs.append(o.data.size))
    with cnnlab.no_grad():
        model.eval()(cnnlab.Tensor(np.zeros((1, *shape), np.float32)))
    assert sizes["activations"] == math.prod(shape) + sum(outputs)
    assert len(steps) == len(model)


def test_build_refuses_a_model_that_cannot_fit_before_allocating():
    error, peak = _peak_bytes(lambda: arch.build(HUGE, (1, 28, 28)))
    assert isinstance(error, TooLargeError)
    assert "90,577,100,010 parameters" in str(error)
    assert re.search(r"would need 3\d\d\.\d GiB, more than the", str(error))
    assert peak < 5 << 20


def test_check_memory_for_training_counts_optimizer_state_and_the_batch():
    one = arch.check_memory("conv3x3x8p1-relu-fc10", (1, 28, 28))
    sizes = arch.footprint("conv3x3x8p1-relu-fc10", (1, 28, 28))
    assert one == 4 * (sizes["state"] + sizes["activations"])
    trained = arch.check_memory("conv3x3x8p1-relu-fc10", (1, 28, 28), batch_size=64,
                                training=True)
    assert trained == 4 * (4 * sizes["state"] + 2 * 64 * sizes["activations"])
    with pytest.raises(TooLargeError, match=r"training the model .* at batch 64 .*smaller "
                                             r"batch size"):
        arch.check_memory("conv3x3x8p1-relu-fc10", (1, 28, 28), batch_size=64,
                          training=True, limit=trained - 1)


def test_input_sizes_beyond_a_million_are_refused_with_their_name():
    with pytest.raises(ValueError, match=r"input_shape must be \(C, H, W\) with sizes of at "
                                         r"most 1,000,000; got \(1, 99999999999999999999, 1\)"):
        arch.plan("fc10", (1, 10**20 - 1, 1))


# ----------------------------------------------------------------------------- model files


def test_a_tiny_model_file_cannot_make_the_loader_allocate(tmp_path):
    # 184 bytes that once made the loader build a 2.5 GB layer before looking at the weights.
    path = _model_file(tmp_path / "tiny.safetensors",
                       {"arch": "fc10", "input_shape": [1, 8000, 8000]})
    assert path.stat().st_size < 200
    error, peak = _peak_bytes(lambda: io.load_model(path))
    assert isinstance(error, ModelFileError)
    assert "layer 1.weight: expected (10, 64000000), file has none" in str(error)
    assert peak < 5 << 20
    with pytest.raises(ModelFileError, match="expected \\(10, 64000000\\)"):
        io.read_spec(path)


def test_a_file_whose_weights_fit_but_whose_activations_cannot_is_refused(tmp_path):
    # Four parameters, but a 1,000,000 x 1,000,000 input: terabytes per image.
    spec = {"arch": "conv1x1x1-gap-fc2", "input_shape": [1, 1_000_000, 1_000_000]}
    model = arch.build("conv1x1x1-gap-fc2", (1, 4, 4))
    path = _model_file(tmp_path / "wide.safetensors", spec, model.state_dict())
    error, peak = _peak_bytes(lambda: io.load_model(path))
    assert isinstance(error, ModelFileError)
    assert re.search(r"wide\.safetensors: the model 'conv1x1x1-gap-fc2' for 1x1000000x1000000 "
                     r"images .* would need \d+\.\d TiB", str(error))
    assert peak < 5 << 20


def test_nan_weights_are_never_saved_and_never_loaded(tmp_path):
    model = arch.build("conv3x3x4-bn-relu-fc2", (1, 5, 5))
    model[0].weight.data[1, 0, 0, 0] = np.nan
    model[4].bias.data[0] = np.inf
    with pytest.raises(ValueError, match=r"cannot save: tensor '0\.weight' holds 1 NaN or "
                                         r"infinite values \(of 36\)"):
        io.save_model(model, tmp_path / "m.safetensors")
    assert not (tmp_path / "m.safetensors").exists()
    with pytest.raises(ValueError, match=r"not saving .*c\.safetensors: tensor '0\.weight' "
                                         r"holds 1 NaN"):
        io.save_checkpoint(tmp_path / "c.safetensors", model=model, epoch=1)

    # A file written some other way is refused on load, naming the tensor.
    good = arch.build("conv3x3x4-bn-relu-fc2", (1, 5, 5))
    path = io.save_model(good, tmp_path / "good.safetensors")
    tensors, meta = safetensors.load_file_with_metadata(path)
    tensors["4.bias"][0] = np.inf
    safetensors.save_file(tensors, path, meta)
    with pytest.raises(ModelFileError, match=r"good\.safetensors: tensor '4\.bias' holds 1 NaN "
                                             r"or infinite values \(of 2\); .* train again"):
        io.load_model(path)


def test_negative_batch_norm_variance_is_refused(tmp_path):
    model = arch.build("conv3x3x4-bn-relu-fc2", (1, 5, 5))
    model[1].running_var[2] = -0.5
    with pytest.raises(ValueError, match=r"'1\.running_var' hold 1 negative variances \(the "
                                         r"smallest is -0\.5\)"):
        io.save_model(model, tmp_path / "m.safetensors")
    model[1].running_var[2] = 1.0
    path = io.save_model(model, tmp_path / "m.safetensors")
    tensors, meta = safetensors.load_file_with_metadata(path)
    tensors["1.running_var"][:] = -1
    safetensors.save_file(tensors, path, meta)
    with pytest.raises(ModelFileError, match=r"batch-norm statistics '1\.running_var' hold 4 "
                                             r"negative variances"):
        io.load_model(path)
    ckpt = tmp_path / "c.safetensors"
    io.save_checkpoint(ckpt, model=model, epoch=1)
    tensors, meta = safetensors.load_file_with_metadata(ckpt)
    tensors["model.1.running_var"][:] = -1
    safetensors.save_file(tensors, ckpt, meta)
    with pytest.raises(ModelFileError, match=r"c\.safetensors: batch-norm statistics"):
        io.load_checkpoint(ckpt)


def test_class_names_that_are_not_unicode_are_refused_on_save(tmp_path):
    model = arch.build("fc2", (1, 2, 2))
    with pytest.raises(ValueError, match=r"the model spec holds 'b\\udcff', which is not valid "
                                         r"Unicode text"):
        io.save_model(model, tmp_path / "m.safetensors", meta={"classes": ["a", "b\udcff"]})


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")
def test_loading_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "model.safetensors"
    os.mkfifo(fifo)
    outcome = []

    def load():
        try:
            io.load_model(fifo)
        except ModelFileError as exc:
            outcome.append(str(exc))

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    worker.join(timeout=20)
    assert outcome and "not a regular file (a FIFO, device or socket)" in outcome[0]


# ----------------------------------------------------------------------------- writes


def test_a_full_disk_names_the_file(tmp_path, monkeypatch):
    path = tmp_path / "model.safetensors"
    with pytest.raises(OSError, match=r"could not write .*model\.safetensors: No space left"):
        with atomic_write(path) as f:
            f.write(b"x")
            raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(
        OSError(errno.ENOSPC, "No space left on device")))
    with pytest.raises(OSError) as info:
        io.save_model(arch.build("fc2", (1, 2, 2)), path)
    assert info.value.errno == errno.ENOSPC
    assert str(path) in str(info.value)
    assert os.listdir(tmp_path) == []


@pytest.mark.skipif(os.name == "nt", reason="signals and flock are POSIX")
def test_a_killed_writer_leaves_a_temporary_file_that_the_next_write_removes(tmp_path):
    target = tmp_path / "checkpoint.safetensors"
    code = textwrap.dedent(f"""
        import os, signal
        from cnnlab.io import atomic_write
        with atomic_write({str(target)!r}) as f:
            f.write(b"half a checkpoint")
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    subprocess.run([sys.executable, "-c", code], check=False)
    leftovers = [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
    assert len(leftovers) == 1 and not target.exists()
    stale = tmp_path / leftovers[0]

    # Fresh leftovers may belong to a writer that is still starting: kept for a minute.
    with atomic_write(target) as f:
        f.write(b"one")
    assert stale.exists()
    old = time.time() - 3600
    os.utime(stale, (old, old))
    # A writer that is alive holds a lock on its temporary file: never removed.
    live = tmp_path / ".checkpoint.safetensors.live.tmp"
    live.write_bytes(b"being written")
    os.utime(live, (old, old))
    import fcntl

    with open(live, "rb") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        with atomic_write(target) as f:
            f.write(b"two")
    assert not stale.exists()
    assert live.exists()
    assert target.read_bytes() == b"two"



# ----------------------------------------------------------------------------- summary


@given(st.lists(_TOKENS, max_size=5), st.sampled_from(["fc3", "gap-fc2", "flatten-fc4-fc2", ""]),
       st.sampled_from([(1, 6, 6), (3, 8, 7), (2, 9, 9)]))
@settings(max_examples=60, deadline=None, derandomize=True)
def test_summary_from_shape_arithmetic_equals_running_the_model(body, head, shape):
    from cnnlab.inspect.summary import summary

    text = "-".join([*body, head]) if head else "-".join(body)
    if not text:
        return
    try:
        model = arch.build(text, shape)
    except ValueError:
        return
    planned = summary(text, shape)
    model.spec = None  # nothing to plan from: the model is run on a zero image
    traced = summary(model, shape)
    assert planned.to_dict() == traced.to_dict()
    assert str(planned) == str(traced)


def test_summary_of_a_huge_model_allocates_nothing_and_says_what_it_would_need():
    from cnnlab.inspect.summary import summary

    result = []
    error, peak = _peak_bytes(lambda: result.append(summary("fc10", "1x8000x8000")))
    assert error is None and peak < 5 << 20
    assert result[0].total_params == 640_000_010
    error, peak = _peak_bytes(lambda: result.append(summary(HUGE, (1, 64, 64))))
    assert error is None and peak < 5 << 20
    (warning,) = result[1].warnings
    assert re.search(r"would need \d+\.\d (GiB|TiB), more than the .* of memory this machine "
                     r"has; .*It can be summarized, but not built or run here", warning)
    assert "warning: the model 'conv3x3x100000" in str(result[1])


def test_summary_of_a_built_model_uses_its_architecture_unless_it_changed():
    from cnnlab import nn
    from cnnlab.inspect.summary import summary

    model = arch.build("conv3x3x4-relu-fc2", (1, 6, 6))
    assert summary(model).to_dict() == summary("conv3x3x4-relu-fc2", (1, 6, 6)).to_dict()
    with pytest.raises(ValueError, match=r"an input of 1x9x9 does not fit this model: it was "
                                         r"built for 1x6x6"):
        summary(model, (1, 9, 9))
    model.layers[1] = nn.Tanh()  # edited after it was built: the spec no longer describes it
    assert summary(model).rows[1]["type"] == "Tanh"
    model[0].stride = (2, 2)  # the fc layer no longer fits: found by running it
    with pytest.raises(ValueError, match=r"does not fit this model; it stopped after layer 2"):
        summary(model)


def test_summary_refuses_to_run_a_model_on_an_absurd_input():
    from cnnlab import nn
    from cnnlab.inspect.summary import summary

    model = nn.Sequential(nn.Conv2d(1, 2, 3))
    error, peak = _peak_bytes(lambda: summary(model, (1, 200_000, 200_000)))
    assert isinstance(error, TooLargeError)
    assert "summary: one zero image of 1x200000x200000" in str(error)
    assert peak < 5 << 20
