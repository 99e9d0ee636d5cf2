"""Smoke test of the ONNX benchmark (structure only; timings are never asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime", reason="the ONNX benchmark runs onnxruntime")

ROOT = Path(__file__).resolve().parent.parent


def test_quick_run_reports_export_time_both_frameworks_and_agreement():
    proc = subprocess.run([sys.executable, "-m", "benchmarks.onnx_speed", "--quick", "--json",
                           "--threads", "1", "--presets", "digits", "--batches", "1,3"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["threads"] == 1 and out["onnxruntime"]
    assert [(r["preset"], r["batch"]) for r in out["results"]] == [("digits", 1), ("digits", 3)]
    for row in out["results"]:
        assert row["export_ms"] > 0 and row["nodes"] > 0
        for framework in ("cnnlab", "onnxruntime"):
            assert row[framework]["median_ms"] > 0, row[framework]
        assert row["max_relative_error"] <= 1e-5
