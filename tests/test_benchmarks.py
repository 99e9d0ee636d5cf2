"""Smoke tests of the benchmark harness (structure only; timings are never asserted)."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import cnnlab

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # benchmarks/ is a script package beside cnnlab/

from benchmarks import textbook, workloads  # noqa: E402
from benchmarks.run import build_parser, check_against_reference, merge_rounds  # noqa: E402


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "benchmarks.run", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_quick_json_run_has_the_documented_structure():
    proc = _run("--quick", "--json", "--threads", "1", "--frameworks", "cnnlab,textbook",
                "--workloads", "tiny-train-b4,tiny-infer-b1")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["threads"] == 1
    assert out["child_env"]["OPENBLAS_NUM_THREADS"] == "1"
    for key in ("cpu", "cores", "numpy", "env"):
        assert key in out["machine"]
    assert "OPENBLAS_CORETYPE" in out["machine"]["env"]
    assert [r["name"] for r in out["results"]] == ["tiny-train-b4", "tiny-infer-b1"]
    for row in out["results"]:
        for fw in ("cnnlab", "textbook"):
            r = row["frameworks"][fw]
            assert "error" not in r, r.get("traceback")
            assert r["reps"] == 2
            assert r["min_ms"] <= r["median_ms"] <= r["max_ms"]
            assert r["cpu_median_ms"] > 0
            assert r["peak_rss_mib"] > 0
        assert row["cnnlab_speedup_over_textbook"] > 0
        assert row["torch_over_cnnlab"] is None  # torch was not asked for
        # Both computed the same loss, gradients (train) or logits (infer).
        assert row["check"]["ok"], row["check"]
    assert out["results"][0]["check"]["frameworks"]["textbook"]["loss"] == pytest.approx(
        out["results"][0]["check"]["frameworks"]["cnnlab"]["loss"], rel=1e-5)


def test_table_output_and_profile_mode():
    proc = _run("--quick", "--threads", "1", "--frameworks", "textbook",
                "--workloads", "tiny-infer-b1")
    assert proc.returncode == 0, proc.stderr
    assert "| tiny-infer-b1" in proc.stdout
    assert "OPENBLAS_CORETYPE=" in proc.stdout
    if importlib.util.find_spec("torch") is not None:  # the check compares with torch
        proc = _run("--quick", "--threads", "1", "--frameworks", "cnnlab,textbook,torch_nchw",
                    "--workloads", "tiny-infer-b1")
        assert proc.returncode == 0, proc.stderr
        assert re.search(r"worst relative error per framework: cnnlab \d\.\de-\d\d "
                         r"\(tiny-infer-b1\), textbook ", proc.stdout), proc.stdout
    proc = _run("--quick", "--json", "--profile", "--threads", "1", "--workloads", "tiny-train-b4")
    assert proc.returncode == 0, proc.stderr
    (worker,) = json.loads(proc.stdout)["profile"]["workers"]
    assert "error" not in worker, worker.get("traceback")
    kinds = {o["op"].split()[0] for o in worker["ops"]}
    assert {"Conv2d", "ReLU", "MaxPool2d", "Linear"} <= kinds
    assert worker["ops"][0]["backward_ms"] >= 0


def test_unknown_workload_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown workload 'nope'; expected one of"):
        workloads.find_workloads(["nope"])
    assert build_parser().parse_args(["--quick"]).quick


def test_textbook_matches_torch_on_one_batch():
    torch = pytest.importorskip("torch")
    arch = workloads.ARCHS["lenet5"]
    w = workloads.make_weights(arch["layers"], seed=3)
    x, y = workloads.make_batch(arch["input"], 8, seed=3)
    net = textbook.TextbookNet(arch["layers"], w)
    loss = net.loss_and_grads(x, y)
    grads = dict(net.named_grads())
    assert all(g.dtype == np.float32 for g in grads.values())

    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 6, 5, padding=2), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(6, 16, 5), torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(),
        torch.nn.Linear(400, 120), torch.nn.ReLU(), torch.nn.Linear(120, 84), torch.nn.ReLU(),
        torch.nn.Linear(84, 10)).double()
    model.load_state_dict({k: torch.from_numpy(v.astype(np.float64)) for k, v in w.items()})
    ref = torch.nn.functional.cross_entropy(model(torch.from_numpy(x.astype(np.float64))),
                                            torch.from_numpy(y))
    ref.backward()
    assert loss == pytest.approx(ref.item(), rel=1e-5)
    for name, p in model.named_parameters():
        np.testing.assert_allclose(grads[name], p.grad.numpy(), rtol=1e-4, atol=1e-6,
                                   err_msg=name)

    # One SGD momentum step moves the weights exactly as torch's SGD does.
    opt = torch.optim.SGD(model.parameters(), lr=workloads.LR, momentum=workloads.MOMENTUM)
    opt.step()
    net.sgd_step()
    for (name, p), (_, q) in zip(model.named_parameters(), net.named_parameters(), strict=True):
        np.testing.assert_allclose(q, p.detach().numpy(), rtol=1e-5, atol=1e-7, err_msg=name)


def test_check_flags_a_framework_that_disagrees(tmp_path):
    good, bad = tmp_path / "good.npz", tmp_path / "bad.npz"
    np.savez(good, g=np.ones(4, np.float32))
    np.savez(bad, g=np.full(4, 2.0, np.float32))
    check = check_against_reference({
        "torch_nchw": {"check_file": str(good)}, "cnnlab": {"check_file": str(good)},
        "textbook": {"check_file": str(bad)}})
    assert check["reference"] == "torch_nchw"
    assert check["frameworks"]["cnnlab"]["ok"]
    assert not check["frameworks"]["textbook"]["ok"]
    assert not check["ok"]


def test_rounds_keep_the_fastest_undisturbed_one():
    def rnd(median, others):
        return {"median_ms": median, "min_ms": median - 1, "max_ms": median + 1, "reps": 5,
                "peak_rss_mib": 50.0, "step_rss_mib": 5.0, "other_cpu_cores": others}

    merged = merge_rounds([rnd(10.0, 0.0), rnd(8.0, 1.0), rnd(9.0, 0.05)])
    assert merged["median_ms"] == 9.0  # 8.0 ran while another process held a core
    assert (merged["min_ms"], merged["max_ms"], merged["reps"]) == (7.0, 11.0, 15)
    assert merged["round_medians_ms"] == [10.0, 8.0, 9.0]
    # With one of two cores left idle on purpose, a process using it disturbs nothing.
    assert merge_rounds([rnd(10.0, 0.0), rnd(8.0, 1.0)], spare_cores=1)["median_ms"] == 8.0
    assert "error" in merge_rounds([rnd(10.0, 0.0), {"error": "boom"}])


def test_only_the_load_before_a_run_flags_other_work():
    from benchmarks.report import header_lines

    proc = _run("--quick", "--json", "--threads", "1", "--frameworks", "textbook",
                "--workloads", "tiny-infer-b1")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    cores = out["machine"]["usable_cores"]

    def load_line(before, after):
        out["load_average_before"], out["load_average_after"] = [before], [after]
        return next(line for line in header_lines(out) if line.startswith("load:"))

    # The run's own threads raise the load after it: that alone is no sign of other work.
    assert "OTHER WORK" not in load_line(0.1, cores + 0.5)
    assert "OTHER WORK SHARED THE CPU" in load_line(cores, 0.1)


def test_sequence_workload_runs_beside_torch_and_skips_image_only_frameworks():
    frameworks = "cnnlab,textbook" + (",torch_nchw,torch_channels_last"
                                      if importlib.util.find_spec("torch") else "")
    proc = _run("--quick", "--json", "--threads", "1", "--frameworks", frameworks,
                "--workloads", "tiny-lstm-train-b4")
    assert proc.returncode == 0, proc.stderr
    (row,) = json.loads(proc.stdout)["results"]
    # The textbook CNN has no recurrent layers and channels_last is an image layout.
    assert set(row["frameworks"]) <= {"cnnlab", "torch_nchw"}
    assert "error" not in row["frameworks"]["cnnlab"], row["frameworks"]["cnnlab"]
    assert row["check"]["ok"], row["check"]
    if "torch_nchw" in row["frameworks"]:
        assert row["torch_over_cnnlab"] > 0
        assert row["check"]["frameworks"]["cnnlab"]["max_rel_err"] < 1e-4


def test_token_batches_are_word_like_integer_ids():
    x, y = workloads.make_batch((20,), 64, seed=0, tokens=1000)
    assert x.dtype == np.int64 and x.shape == (64, 20) and 0 <= x.min() and x.max() < 1000
    counts = np.bincount(x.ravel())
    assert counts[0] > 50 and counts.max() == counts[0]  # id 0 is the most frequent "word"
    weights = workloads.make_weights(workloads.ARCHS["lstm"]["layers"], seed=0)
    assert weights["0.weight_ih_l0"].shape == (1024, 256)
    assert np.abs(weights["0.weight_hh_l0"]).max() <= 1 / 16


def test_distributed_benchmark_bytes_cost_model_and_a_one_rank_run():
    from benchmarks import distributed

    digits = distributed.step_bytes("digits")
    assert digits["gradient_allreduce"] == 4 * digits["parameters"] == 4 * 38_378
    # Two BatchNorm layers (16 and 32 channels): running mean and variance, and a step count.
    assert digits["batchnorm_layers"] == 2
    assert digits["buffer_broadcast"] == (16 + 32) * 2 * 4 + 2 * 8
    # 2(N-1)/N x bytes / bandwidth + 2(N-1) x latency: 8 machines, 1 MB, 10 Gbit/s, 25 us.
    assert distributed.ring_allreduce_seconds(1e6, 8, 10) == pytest.approx(
        2 * 7 / 8 * 1e6 / 1.25e9 + 14 * 25e-6)
    proc = subprocess.run([sys.executable, "-m", "benchmarks.distributed", "--presets", "digits",
                           "--ranks", "1", "--rounds", "1", "--steps", "2", "--warmup", "2",
                           "--json"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    case = out["cases"][0]  # and, with more than one core, the same with a thread per core
    assert (case["preset"], case["ranks"], case["threads"], case["batch"]) == ("digits", 1, 1, 32)
    assert case["step_ms"]["median"] > 0 and case["images_per_s"]["median"] > 0
    assert [b["preset"] for b in out["bytes"]] == list(cnnlab.arch.PRESETS)
