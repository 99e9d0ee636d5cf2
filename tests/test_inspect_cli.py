"""The summary, explain, inspect and plot commands, run as a user runs them."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import cnnlab
from cnnlab import Tensor, arch
from cnnlab.nn import functional as F

ROOT = Path(__file__).resolve().parents[1]


def cli(*args, cwd=None):
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path}
    return subprocess.run([sys.executable, "-m", "cnnlab", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_summary_arch_string_and_json():
    r = cli("summary", "conv5x5x6-relu-conv5x5x10", "--input", "3x32x32")
    assert r.returncode == 0, r.stderr
    assert "6x28x28" in r.stdout and "10x24x24" in r.stdout
    assert "parameters: 1,966" in r.stdout
    r = cli("summary", "conv5x5x10", "--input", "3x32x32", "--json")
    d = json.loads(r.stdout)
    assert d["totals"]["params"] == 760 and d["layers"][0]["output_shape"] == [10, 28, 28]


def test_summary_preset_warning_and_errors():
    r = cli("summary", "lenet5")
    assert r.returncode == 0 and "parameters: 61,706" in r.stdout
    r = cli("summary", "conv5x5x10s2", "--input", "3x32x32")
    assert r.returncode == 0 and "warning: layer 0" in r.stdout and "14.5" in r.stdout
    r = cli("summary", "conv5x5x10")
    assert r.returncode == 2 and "give the input shape with --input" in r.stderr
    r = cli("summary", "conv5x5x10", "--input", "3by32")
    assert r.returncode == 2 and "argument --input: expected CxHxW" in r.stderr


def test_summary_of_a_saved_model(tmp_path):
    model = arch.build("conv3x3x4-relu-pool2-fc3", (1, 8, 8))
    path = tmp_path / "m.safetensors"
    cnnlab.io.save_model(model, path)
    r = cli("summary", path)
    assert r.returncode == 0, r.stderr
    assert "1x8x8" in r.stdout and "4x6x6" in r.stdout


def test_explain_conv_json_equals_conv2d():
    r = cli("explain", "conv", "--input", "3x7x7", "--filters", "2", "--size", "3",
            "--stride", "2", "--padding", "1", "--seed", "5", "--at", "1,2,3", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    x, w, b = (np.asarray(d[k], dtype=np.float32) for k in ("input", "weight", "bias"))
    assert x.shape == (3, 7, 7) and w.shape == (2, 3, 3, 3) and b.shape == (2,)
    out = F.conv2d(Tensor(x[None]), Tensor(w), Tensor(b), stride=2, padding=1).data[0]
    np.testing.assert_array_equal(np.asarray(d["output"], dtype=np.float32), out)
    cell = d["cell"]
    assert (cell["filter"], cell["row"], cell["col"]) == (1, 2, 3)
    assert cell["value"] == out[1, 2, 3] == sum(c["sum"] for c in cell["channels"]) + cell["bias"]


def test_explain_conv_text_values_file_and_html(tmp_path):
    values = {"input": [[[1, 2], [3, 4]]], "weight": [[[[1, 0], [0, 1]]]], "bias": [10]}
    (tmp_path / "v.json").write_text(json.dumps(values))
    r = cli("explain", "conv", "--values", tmp_path / "v.json", "--stride", "1",
            "--padding", "0")
    assert r.returncode == 0, r.stderr
    assert "channel 0: 1x1 + 2x0 + 3x0 + 4x1 = 5" in r.stdout
    assert "plus bias 10 = 15" in r.stdout
    r = cli("explain", "conv", "--values", tmp_path / "v.json", "--stride", "1",
            "--padding", "0", "--html", tmp_path / "page.html")
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"wrote {tmp_path / 'page.html'} (open it in a browser)\n"  # the page only
    page = (tmp_path / "page.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "http://" not in page and "https://" not in page


def test_explain_errors_and_usage():
    r = cli("explain", "conv", "--at", "9,0,0")
    assert r.returncode == 2 and "outside the output 2x3x3" in r.stderr
    r = cli("explain", "conv", "--size", "9")
    assert r.returncode == 2 and "does not fit" in r.stderr
    r = cli("explain", "conv", "--stride", "two")
    assert r.returncode == 2 and "expected a whole number >= 1, got 'two'" in r.stderr
    r = cli("explain", "pool", "--mode", "avg", "--size", "2", "--input", "1x4x4", "--all")
    assert r.returncode == 0 and r.stdout.count(")/4 = ") == 4


@pytest.mark.slow
def test_inspect_and_plot(tmp_path):
    pytest.importorskip("PIL")
    pytest.importorskip("matplotlib")
    from PIL import Image

    cnnlab.manual_seed(0)
    model = arch.build("conv3x3x4p1-relu-pool2-fc3", (1, 10, 10))
    model.spec["classes"] = ["cat", "dog", "owl"]
    cnnlab.io.save_model(model, tmp_path / "m.safetensors")
    Image.fromarray(np.full((20, 20), 200, np.uint8)).save(tmp_path / "img.png")
    r = cli("inspect", tmp_path / "m.safetensors", tmp_path / "img.png", "--out", tmp_path / "o")
    assert r.returncode == 0, r.stderr
    assert "predicted: " in r.stdout
    for name in ("input.png", "feature_maps_0.png", "filters_0.png", "prediction.png"):
        assert (tmp_path / "o" / name).is_file()
    r = cli("inspect", tmp_path / "missing.safetensors", tmp_path / "img.png")
    assert r.returncode == 1 and "no model file" in r.stderr

    run = tmp_path / "run"
    run.mkdir()
    (run / "history.json").write_text(json.dumps([
        {"epoch": 1, "train_loss": 1.0, "train_acc": 0.5, "val_loss": 1.1, "val_acc": 0.4,
         "lr": 0.1},
        {"epoch": 2, "train_loss": 0.5, "train_acc": 0.8, "val_loss": 0.7, "val_acc": 0.7,
         "lr": 0.1},
    ]))
    r = cli("plot", run)
    assert r.returncode == 0, r.stderr
    assert Image.open(run / "curves.png").size == (1200, 450)
    r = cli("plot", tmp_path)
    assert r.returncode == 1 and "no training history" in r.stderr
