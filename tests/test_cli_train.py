"""`cnnlab train`, `evaluate` and `predict` end to end, as a user runs them (subprocesses)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import cnnlab

pytestmark = pytest.mark.slow

Image = pytest.importorskip("PIL.Image")

REPO = Path(cnnlab.__file__).resolve().parent.parent
# A second or two per run; drawing curves.png (matplotlib) would cost as much again.
QUICK = ["--limit", "150", "--arch", "conv3x3x8p1-relu-pool2-fc10", "--no-plot"]


def cnnlab_cmd(*args, cwd, check_rc=None, **kwargs):
    env = dict(os.environ, PYTHONPATH=str(REPO), CNNLAB_DATA=str(cwd / "cache"),
               PYTHONUNBUFFERED="1")
    proc = subprocess.run([sys.executable, "-m", "cnnlab", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120, **kwargs)
    if check_rc is not None:
        assert proc.returncode == check_rc, proc.stdout + proc.stderr
    return proc


def assert_clean_error(proc, rc, *phrases):
    assert proc.returncode == rc, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    if rc == 1:
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("cnnlab: error: "), proc.stderr
    for phrase in phrases:
        assert phrase in proc.stderr, proc.stderr


def weights_of(path):
    from cnnlab.io import safetensors

    tensors, _ = safetensors.load_file_with_metadata(str(path))
    return tensors


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """One short digits training run shared by the evaluate/predict tests."""
    cwd = tmp_path_factory.mktemp("digits")
    proc = cnnlab_cmd("train", "--epochs", "1", "--limit", "150", "--out", "run", cwd=cwd,
                      check_rc=0)
    return cwd, proc


def test_help_everywhere(tmp_path, capsys):
    assert "usage: cnnlab train" in cnnlab_cmd("train", "--help", cwd=tmp_path, check_rc=0).stdout
    for command in ("train", "evaluate", "predict"):
        rc, out, _ = in_process([command, "--help"], capsys)
        assert rc == 0 and f"usage: cnnlab {command}" in out
    assert "--resume DIR" in in_process(["train", "--help"], capsys)[1]


def test_train_on_digits_writes_the_run_folder(digits_run):
    cwd, proc = digits_run
    epoch_lines = [line for line in proc.stdout.splitlines() if line.startswith("epoch ")]
    assert len(epoch_lines) == 1 and epoch_lines[0].startswith("epoch 1/1  loss ")
    assert "test accuracy: " in proc.stdout
    assert "saved model to run/model.safetensors" in proc.stdout
    for name in ("model.safetensors", "checkpoint.safetensors", "history.json", "history.csv"):
        assert (cwd / "run" / name).is_file(), name
    try:
        import matplotlib  # noqa: F401

        from cnnlab.inspect.curves import plot_history  # noqa: F401
    except ImportError:
        pass
    else:
        assert (cwd / "run" / "curves.png").is_file()
    history = json.loads((cwd / "run" / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1]
    spec = cnnlab.io.read_spec(cwd / "run" / "model.safetensors")
    assert spec["classes"] == [str(d) for d in range(10)]
    assert spec["training"]["data"] == "digits"


def test_evaluate_json(digits_run):
    cwd, _ = digits_run
    proc = cnnlab_cmd("evaluate", "run/model.safetensors", "--json", cwd=cwd, check_rc=0)
    result = json.loads(proc.stdout)  # one JSON object, nothing else on stdout
    assert result["n"] == len(cnnlab.data.Digits(train=False))
    assert 0.0 <= result["accuracy"] <= 1.0 and result["loss"] > 0
    assert np.array(result["confusion"]).sum() == result["n"]
    assert set(result["per_class_accuracy"]) == {str(d) for d in range(10)}


def test_evaluate_text(digits_run):
    cwd, _ = digits_run
    proc = cnnlab_cmd("evaluate", "run", cwd=cwd, check_rc=0)
    assert "accuracy: " in proc.stdout and "per-class accuracy:" in proc.stdout
    assert "confusion matrix (rows: true class, columns: predicted class):" in proc.stdout


def test_predict_json_on_a_png(digits_run):
    cwd, _ = digits_run
    digit = cnnlab.data.Digits(train=False).images[0, 0]
    big = np.kron(digit, np.ones((4, 4), np.float32))  # 32x32, RGB: converted and resized
    Image.fromarray((big * 255).astype(np.uint8)).convert("RGB").save(cwd / "digit.png")
    proc = cnnlab_cmd("predict", "run/model.safetensors", "digit.png", "digit.png",
                      "--top-k", "4", "--json", "--out", "drawn", cwd=cwd, check_rc=0)
    lines = proc.stdout.splitlines()
    assert len(lines) == 2  # one JSON object per image, one per line
    pred = json.loads(lines[0])
    assert pred["task"] == "classify" and pred == json.loads(lines[1])
    assert pred["file"] == "digit.png" and pred["class"] in [str(d) for d in range(10)]
    assert len(pred["top_k"]) == 4 and pred["top_k"][0]["class"] == pred["class"]
    probs = [t["probability"] for t in pred["top_k"]]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-9
    assert "note: digit.png: converted RGB to grayscale and resized 32x32 to 8x8" in proc.stderr
    with Image.open(cwd / "drawn" / "digit.png") as drawn:  # the picture with its answer
        assert drawn.width >= 256 and drawn.height > 256


def write_folder(root: Path, n: int = 10) -> None:
    """Two classes of 12x12 images: a horizontal or a vertical bar, at random places."""
    rng = np.random.default_rng(0)
    for name in ("horizontal", "vertical"):
        (root / name).mkdir(parents=True)
        for i in range(n):
            img = (rng.random((12, 12)) * 60).astype(np.uint8)
            k = rng.integers(2, 10)
            if name == "horizontal":
                img[k : k + 2, 1:11] = 255
            else:
                img[1:11, k : k + 2] = 255
            Image.fromarray(img).save(root / name / f"{i}.png")


def test_train_on_an_image_folder_keeps_class_names(tmp_path):
    write_folder(tmp_path / "bars")
    proc = cnnlab_cmd("train", "--data", "bars", "--epochs", "3", "--no-plot", "--out", "run",
                      cwd=tmp_path, check_rc=0)
    header = "data: bars, 14 training, 2 validation, 4 test images (1x12x12, 2 classes)"
    assert header in proc.stdout
    assert "held out 4 of 20 images as the test set" in proc.stderr
    spec = cnnlab.io.read_spec(tmp_path / "run" / "model.safetensors")
    assert spec["classes"] == ["horizontal", "vertical"]
    proc = cnnlab_cmd("predict", "run", "bars/vertical/0.png", cwd=tmp_path, check_rc=0)
    assert proc.stdout.startswith("bars/vertical/0.png  ")
    assert "horizontal" in proc.stdout and "vertical" in proc.stdout
    result = json.loads(cnnlab_cmd("evaluate", "run", "--json", cwd=tmp_path, check_rc=0).stdout)
    assert result["n"] == 4 and result["classes"] == ["horizontal", "vertical"]


def test_resume_ends_with_the_same_weights(tmp_path):
    common = [*QUICK, "--schedule", "constant"]
    cnnlab_cmd("train", "--epochs", "2", *common, "--out", "full", cwd=tmp_path, check_rc=0)
    cnnlab_cmd("train", "--epochs", "1", *common, "--out", "part", cwd=tmp_path, check_rc=0)
    proc = cnnlab_cmd("train", "--resume", "part", "--epochs", "2", "--no-plot", cwd=tmp_path,
                      check_rc=0)
    assert "resuming from part/checkpoint.safetensors at the end of epoch 1" in proc.stdout
    assert [ln[:9] for ln in proc.stdout.splitlines() if ln.startswith("epoch")] == ["epoch 2/2"]
    full, part = weights_of(tmp_path / "full" / "model.safetensors"), weights_of(
        tmp_path / "part" / "model.safetensors")
    assert full.keys() == part.keys()
    assert all(np.array_equal(full[k], part[k]) for k in full)
    history = json.loads((tmp_path / "part" / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]


def test_ctrl_c_saves_a_checkpoint_and_resume_finishes_the_run(tmp_path):
    args = ["train", "--epochs", "3", *QUICK, "--limit", "300", "--schedule", "constant"]
    cnnlab_cmd(*args, "--out", "full", cwd=tmp_path, check_rc=0)
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    child = subprocess.Popen([sys.executable, "-m", "cnnlab", *args, "--out", "cut"],
                             cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    for line in child.stdout:
        if line.startswith("epoch 1/3"):
            child.send_signal(signal.SIGINT)
            break
    out, err = child.communicate(timeout=120)
    assert child.returncode == 130, out + err
    assert "Traceback" not in err
    assert "checkpoint saved to cut/checkpoint.safetensors" in err
    assert "continue with: cnnlab train --resume cut" in err
    cnnlab_cmd("train", "--resume", "cut", "--no-plot", cwd=tmp_path, check_rc=0)
    full, cut = weights_of(tmp_path / "full" / "model.safetensors"), weights_of(
        tmp_path / "cut" / "model.safetensors")
    assert all(np.array_equal(full[k], cut[k]) for k in full)


def in_process(args, capsys):
    """Run the command in this process (fast); returns (exit code, stdout, stderr)."""
    from cnnlab.cli.main import main

    try:
        rc = main([str(a) for a in args])
    except SystemExit as exc:  # argparse's usage errors
        rc = exc.code
    out, err = capsys.readouterr()
    return rc, out, err


def check_error(args, capsys, rc, *phrases):
    code, out, err = in_process(args, capsys)
    assert code == rc, out + err
    assert "Traceback" not in err
    if rc == 1:
        # One message (it may span lines, e.g. a caret under a bad token), never a traceback.
        assert err.endswith("\n") and err.count("cnnlab: error: ") == 1, err
        assert err.startswith("cnnlab: error: "), err
    for phrase in phrases:
        assert phrase in err, err


def test_usage_errors_exit_2(tmp_path, capsys):
    assert_clean_error(cnnlab_cmd("train", "--no-such-option", cwd=tmp_path), 2)
    check_error(["train", "--epochs", "0"], capsys, 2, "expected a whole number >= 1")
    check_error(["train", "--lr", "-1"], capsys, 2, "expected a number > 0")
    check_error(["train", "--optimizer", "rmsprop"], capsys, 2, "invalid choice")
    check_error(["predict", "model.safetensors"], capsys, 2, "required: IMAGE")
    check_error(["predict", "m", "x.png", "--top-k", "0"], capsys, 2)
    check_error(["evaluate"], capsys, 2, "required: MODEL")
    # An option value the parser cannot check by itself is a usage error too.
    check_error(["train", "--arch", "conv3x3x8-bogus"], capsys, 2,
                "usage: cnnlab train", "cnnlab train: error: --arch: unknown layer 'bogus'")


def test_runtime_errors_exit_1_with_one_line(tmp_path, digits_run, capsys, monkeypatch):
    assert_clean_error(cnnlab_cmd("evaluate", "missing.safetensors", cwd=tmp_path), 1,
                       "missing.safetensors: no model file there")
    cwd, _ = digits_run
    monkeypatch.chdir(cwd)
    check_error(["predict", "run", "missing.png"], capsys, 1, "missing.png: no such image file")
    (tmp_path / "junk.png").write_text("not an image")
    check_error(["predict", "run", tmp_path / "junk.png"], capsys, 1, "not an image")
    check_error(["train", "--data", "nowhere"], capsys, 1, "neither a dataset")
    (tmp_path / "empty").mkdir()
    check_error(["train", "--data", "mnist", "--data-dir", tmp_path / "empty"], capsys, 1,
                "not found in", "train-images-idx3-ubyte.gz, from one of:", "(--download)")
    check_error(["train", "--out", "run"], capsys, 1,
                "already holds a training run; continue it with --resume run")
    check_error(["train", "--resume", "run", "--lr", "0.5"], capsys, 1,
                "--lr 0.5 differs from the run being resumed")
    check_error(["train", "--resume", tmp_path / "nothing"], capsys, 1,
                "no checkpoint.safetensors there")
    check_error(["evaluate", "run", "--data", "cifar10", "--data-dir", tmp_path / "empty"],
                capsys, 1, "CIFAR")


def test_nan_loss_stops_with_a_clear_message(tmp_path):
    proc = cnnlab_cmd("train", "--lr", "1e30", "--optimizer", "sgd", "--epochs", "2",
                      *QUICK, "--out", "run", cwd=tmp_path)
    assert_clean_error(proc, 1, "loss became NaN or infinite", "training stopped",
                       "try a lower --lr")
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_debug_shows_the_traceback(tmp_path):
    proc = cnnlab_cmd("evaluate", "missing.safetensors", "--debug", cwd=tmp_path)
    assert proc.returncode == 1 and "Traceback" in proc.stderr
