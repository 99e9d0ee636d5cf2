"""Smoke test of the optimizer benchmark (structure only; timings are never asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_quick_run_measures_both_frameworks_from_the_same_start():
    pytest.importorskip("torch")
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.optimizers", "--quick", "--json", "--threads", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["threads"] == 1 and "cpu" in out["machine"]
    assert [row["case"] for row in out["results"]] == ["step-adam", "lbfgs-image-32-wolfe"]
    for row in out["results"]:
        assert row["same_start"], row
        assert row["torch_over_cnnlab"] > 0
        for result in row["frameworks"].values():
            ms = result["ms"]
            assert 0 < ms["min"] <= ms["median"] <= ms["max"]
    lbfgs = out["results"][1]["frameworks"]
    assert all(r["evals_per_iteration"] >= 1 for r in lbfgs.values())
