"""Smoke test of the single-op workloads of the benchmark (structure only, never timings)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # benchmarks/ is a script package beside cnnlab/

from benchmarks import workloads  # noqa: E402


def test_op_workloads_run_check_and_skip_the_textbook_network():
    frameworks = "cnnlab,textbook"
    if importlib.util.find_spec("torch") is not None:
        frameworks += ",torch_nchw"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--quick", "--json", "--threads", "1",
         "--frameworks", frameworks, "--workloads", "tiny-convT-op-b2,tiny-ce-seg-op-b2"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert "op" in out["definitions"]
    for row in out["results"]:
        assert row["task"] == "op"
        assert "textbook" not in row["frameworks"]  # it has no single-op mode
        for fw, r in row["frameworks"].items():
            assert "error" not in r, (fw, r.get("traceback"))
            assert r["reps"] == 2
            assert 0 < r["cpu_median_ms"] < 60_000  # this process's CPU time per call
        # Every framework computed the same input and parameter gradients.
        assert row["check"]["ok"], row["check"]
        if "torch_nchw" in row["frameworks"]:
            assert row["torch_over_cnnlab"] > 0 and row["torch_over_cnnlab_cpu"] > 0


def test_op_workload_inputs():
    arch = workloads.ARCHS["ce-seg"]
    x, y = workloads.make_batch(arch["input"], 2, seed=0, target=arch["target"])
    assert x.shape == (2, 11, 64, 64) and x.dtype == np.float32
    assert y.shape == (2, 64, 64) and y.dtype == np.int64 and 0 <= y.min() and y.max() < 11
    shapes = workloads.param_shapes(workloads.ARCHS["convT-k4s2p1"]["layers"])
    assert shapes == {"0.weight": (64, 32, 4, 4), "0.bias": (32,)}
    g = workloads.upstream_gradient((2, 3))
    np.testing.assert_array_equal(g, workloads.upstream_gradient((2, 3)))
