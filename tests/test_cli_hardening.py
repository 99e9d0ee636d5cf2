"""The command line against the mistakes and accidents a user meets: two trainings into one
folder, a read-only folder, swapped arguments, NaN scores, odd names, bad option values."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

import cnnlab
from cnnlab import arch
from cnnlab.cli.text import printable

pytestmark = pytest.mark.slow
Image = pytest.importorskip("PIL.Image")

QUICK = ["--limit", "120", "--epochs", "1", "--arch", "conv3x3x4p1-relu-pool2-fc10",
         "--no-plot"]


def run_cli(args, capsys):
    """The command in this process: (exit code, stdout, stderr)."""
    from cnnlab.cli.main import main

    try:
        rc = main([str(a) for a in args])
    except SystemExit as exc:  # argparse's own usage errors
        rc = exc.code
    out, err = capsys.readouterr()
    return rc, out, err


def _digit_png(path, value=200, size=(8, 8), mode="L"):
    Image.new(mode, size, value).save(path)
    return path


@pytest.fixture
def model_file(tmp_path):
    cnnlab.manual_seed(0)
    model = arch.build("conv3x3x4p1-relu-pool2-fc3", (1, 8, 8))
    model.spec["classes"] = ["cat", "dog", "owl"]
    return cnnlab.io.save_model(model, tmp_path / "model.safetensors")


# ----------------------------------------------------------------------------- run folders


def test_a_second_training_into_the_same_folder_is_refused(tmp_path, capsys, monkeypatch):
    from cnnlab.io.runlock import RunLock

    monkeypatch.chdir(tmp_path)
    with RunLock(tmp_path / "run"):  # as a first training holds it while it runs
        rc, out, err = run_cli(["train", "--out", "run", *QUICK], capsys)
    assert rc == 1
    assert err.startswith("cnnlab: error: another cnnlab process is writing to --out run "
                          f"(process {os.getpid()}, started ")
    assert "epoch" not in out and not (tmp_path / "run" / "model.safetensors").exists()


def test_a_finished_run_is_replaced_only_with_overwrite(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run_cli(["train", "--out", "run", *QUICK], capsys)[0] == 0
    first = (tmp_path / "run" / "model.safetensors").read_bytes()
    (tmp_path / "run" / "checkpoint.safetensors").unlink()  # a finished model alone counts too
    rc, _, err = run_cli(["train", "--out", "run", *QUICK, "--seed", "1"], capsys)
    assert rc == 1 and "run already holds a training run" in err and "--overwrite" in err
    assert (tmp_path / "run" / "model.safetensors").read_bytes() == first
    rc, out, err = run_cli(["train", "--out", "run", *QUICK, "--seed", "1", "--overwrite"],
                           capsys)
    assert rc == 0, err
    assert (tmp_path / "run" / "model.safetensors").read_bytes() != first
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert len(history) == 1  # the new run's history, not the old one's


def test_an_unwritable_out_folder_is_found_before_training(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "file").write_text("a file, not a folder")
    rc, out, err = run_cli(["train", "--out", "file/run", *QUICK], capsys)
    assert rc == 1 and err.startswith("cnnlab: error: cannot write to --out file/run: ")
    assert "data:" not in out  # refused before the data was even loaded

    from cnnlab.io import runlock

    real_open = os.open

    def read_only(path, flags, *args):
        if str(path).endswith(runlock.LOCK_FILE):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(runlock.os, "open", read_only)
    rc, out, err = run_cli(["train", "--out", "ro", *QUICK], capsys)
    assert rc == 1 and "cannot write to --out ro: Read-only file system" in err
    assert "epoch" not in out


def test_train_curves_have_the_run_name_as_title(tmp_path, capsys, monkeypatch):
    from cnnlab.inspect import curves

    titles = []
    monkeypatch.setattr(curves, "plot_history",
                        lambda history, path, title=None: titles.append(title))
    monkeypatch.chdir(tmp_path)
    args = [a for a in QUICK if a != "--no-plot"]
    assert run_cli(["train", "--out", "myrun", *args], capsys)[0] == 0
    assert titles == ["myrun"]  # as `cnnlab plot myrun` titles it


# ----------------------------------------------------------------------------- options


@pytest.mark.parametrize("args, phrase", [
    (["train", "--seed", "-1"], "argument --seed: expected a whole number >= 0, got '-1'"),
    (["train", "--epochs", "0"], "argument --epochs: expected a whole number >= 1"),
    (["explain", "conv", "--stride", "0"], "argument --stride: expected a whole number >= 1"),
    (["explain", "conv", "--input", "0x7x7"], "argument --input: expected CxHxW"),
    (["explain", "conv", "--input", "3x7"], "argument --input: expected CxHxW"),
    (["explain", "pool", "--padding", "-1"], "argument --padding: expected a whole number >= 0"),
    (["explain", "conv", "--at", "1,2"], "argument --at: expected three whole numbers"),
    (["explain", "conv", "--size", "9"], "a window of 9 does not fit"),
    (["summary", "fc10", "--input", "1x99999999999999999999x1"],
     "argument --input: expected CxHxW (channels x height x width: three whole numbers from 1 "
     "to 1,000,000"),
    (["summary", "conv3x3x8-bogus", "--input", "1x8x8"], "unknown layer 'bogus'"),
])
def test_bad_option_values_are_usage_errors_everywhere(args, phrase, capsys):
    rc, _, err = run_cli(args, capsys)
    assert rc == 2, err
    assert err.startswith("usage: cnnlab ") and phrase in err and "Traceback" not in err


def test_train_help_gives_every_default(capsys):
    rc, out, _ = run_cli(["train", "--help"], capsys)
    text = " ".join(out.split())
    assert rc == 0
    for option, default in (("--epochs", "digits 20, mnist 6"), ("--batch-size", "digits 32"),
                            ("--weight-decay", "cifar10 0.0005"), ("--seed", "default 0")):
        assert option in text and default in text, option
    assert "--overwrite" in text


def test_explain_html_writes_the_page_without_the_walkthrough(tmp_path, capsys):
    rc, out, _ = run_cli(["explain", "conv", "--html", tmp_path / "p.html"], capsys)
    assert rc == 0 and out == f"wrote {tmp_path / 'p.html'} (open it in a browser)\n"
    rc, out, _ = run_cli(["explain", "pool"], capsys)
    assert rc == 0 and "Input 1x4x4 (no padding)" in out and "(-inf)" not in out


# ----------------------------------------------------------------------------- predict


def test_swapped_arguments_say_which_is_not_a_model(tmp_path, model_file, capsys):
    image = _digit_png(tmp_path / "seven.png")
    rc, _, err = run_cli(["predict", image, model_file], capsys)
    assert rc == 2 and err.startswith("usage: cnnlab predict")
    assert f"MODEL: {image} is not a cnnlab model file (a PNG image); the model comes first: " \
           "cnnlab predict MODEL IMAGE..." in err
    assert "header length" not in err
    notes = tmp_path / "notes.txt"
    notes.write_text("some text\n")
    rc, _, err = run_cli(["predict", notes, image], capsys)
    assert rc == 2 and "is not a cnnlab model file (not a safetensors file)" in err


def test_predict_takes_folders_recursively_in_sorted_order(tmp_path, model_file, capsys):
    folder = tmp_path / "pictures"
    (folder / "b").mkdir(parents=True)
    (folder / ".hidden").mkdir()
    _digit_png(folder / "z.png")
    _digit_png(folder / "b" / "a.png", mode="RGB", size=(10, 12))
    _digit_png(folder / ".hidden" / "x.png")
    (folder / "readme.txt").write_text("not an image")
    rc, out, err = run_cli(["predict", model_file, folder], capsys)
    assert rc == 0, err
    files = [line.split()[0] for line in out.splitlines()]
    assert files == [str(folder / "b" / "a.png"), str(folder / "z.png")]
    assert "converted RGB to grayscale and resized 12x10 to 8x8 (height x width)" in err
    (tmp_path / "empty").mkdir()
    rc, _, err = run_cli(["predict", model_file, tmp_path / "empty"], capsys)
    assert rc == 1 and "a folder without image files" in err


def _overflowing_model(tmp_path):
    model = arch.build("fc2", (1, 2, 2))
    model[1].weight.data[...] = 3e38  # finite, but four of them sum past float32's range
    model.spec["classes"] = ["a", "b"]
    return cnnlab.io.save_model(model, tmp_path / "overflow.safetensors")


def test_scores_that_overflow_are_an_error_not_nan_percent(tmp_path, capsys):
    path = _overflowing_model(tmp_path)
    image = _digit_png(tmp_path / "x.png", size=(2, 2))
    for extra in ([], ["--json"]):
        rc, out, err = run_cli(["predict", path, image, *extra], capsys)
        assert rc == 1 and out == "", out
        assert "scores for image 1 (of 1) are NaN or infinite" in err and "nan%" not in err


def test_evaluate_says_the_outputs_overflow_without_blaming_the_learning_rate(tmp_path,
                                                                              capsys):
    path = _overflowing_model(tmp_path)
    for cls in ("a", "b"):
        (tmp_path / "data" / "test" / cls).mkdir(parents=True)
        (tmp_path / "data" / "train" / cls).mkdir(parents=True)
        _digit_png(tmp_path / "data" / "test" / cls / "0.png", size=(2, 2))
    rc, out, err = run_cli(["evaluate", path, "--data", tmp_path / "data", "--json"], capsys)
    assert rc == 1 and out == ""
    assert "the model's outputs on the test images are NaN or infinite" in err
    assert "learning rate" not in err


# ----------------------------------------------------------------------------- names


def test_class_and_file_names_are_printed_safely(tmp_path, capsys, monkeypatch):
    data = tmp_path / "data"
    names = [os.fsencode("cat\x1b[31m"), b"caf\xe9"]  # an ANSI escape, Latin-1 bytes
    for name in names:
        folder = os.path.join(os.fsencode(data), name)
        os.makedirs(folder)
        for i in range(10):
            _digit_png(os.fsdecode(os.path.join(folder, b"%d.png" % i)), value=20 * i)
    monkeypatch.chdir(tmp_path)
    rc, out, err = run_cli(["train", "--data", data, "--out", "run", *QUICK], capsys)
    assert rc == 0, err
    odd = os.fsdecode(os.path.join(os.fsencode(tmp_path), b"\xff.png"))
    _digit_png(odd)
    rc, out, err = run_cli(["predict", "run", odd], capsys)
    assert rc == 0, err
    assert "\x1b" not in out and "\udcff" not in out
    assert out.startswith(printable(odd)) and printable(odd).endswith("\\udcff.png")
    assert "cat\\x1b[31m" in out or "caf\\xe9" in out
    rc, out, err = run_cli(["predict", "run", odd, "--json"], capsys)
    record = json.loads(out)
    assert record["file"].endswith("\\xff.png") and record["class"] in ("cat\x1b[31m",
                                                                        "caf\\xe9")
    rc, out, err = run_cli(["evaluate", "run"], capsys)
    assert rc == 0, err
    assert "\x1b" not in out and "cat\\x1b[31m" in out and "caf\\xe9" in out


# ----------------------------------------------------------------------------- inspect, plot


def test_inspect_notes_conversions_and_names_a_non_image(tmp_path, model_file, capsys):
    rgb = _digit_png(tmp_path / "rgb.png", mode="RGB", size=(16, 8))
    rc, out, err = run_cli(["inspect", model_file, rgb, "--out", tmp_path / "o"], capsys)
    assert rc == 0, err
    assert "note: " in err and "converted RGB to grayscale and resized 8x16 to 8x8" in err
    junk = tmp_path / "junk.png"
    junk.write_text("not an image")
    rc, _, err = run_cli(["inspect", model_file, junk], capsys)
    assert rc == 1 and "junk.png: not an image cnnlab can read" in err


def test_plot_prints_accuracies_as_percentages(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    (tmp_path / "history.json").write_text(json.dumps([
        {"epoch": 1, "train_loss": 0.51234, "train_acc": 0.8765, "val_loss": 0.6,
         "val_acc": 0.85, "lr": 0.1}]))
    rc, out, _ = run_cli(["plot", tmp_path], capsys)
    assert rc == 0
    assert "train_loss 0.5123, val_loss 0.6000, train_acc 87.65%, val_acc 85.00%" in out


def test_saved_models_keep_their_own_name_in_messages(tmp_path, model_file, capsys):
    assert Path(model_file).is_file()
    rc, out, _ = run_cli(["summary", model_file], capsys)
    assert rc == 0 and "1x8x8" in out
    rc, _, err = run_cli(["summary", model_file, "--input", "1x12x12"], capsys)
    assert rc == 2 and "does not fit this model: it was built for 1x8x8" in err


def test_a_training_step_that_cannot_fit_is_refused_with_the_figure(tmp_path, capsys,
                                                                      monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc, out, err = run_cli(["train", "--out", "big", "--arch",
                            "conv3x3x100000-conv3x3x100000-fc10", "--epochs", "1"], capsys)
    assert rc == 1 and "epoch" not in out
    assert "would need 3" in err and "GiB, more than the" in err and "of memory" in err
    monkeypatch.setattr("cnnlab.budget.memory_limit", lambda: 64 << 20)
    rc, out, err = run_cli(["train", "--out", "batch", *QUICK, "--batch-size", "100000"],
                           capsys)
    assert rc == 1 and "training the model 'conv3x3x4p1-relu-pool2-fc10' on 1x8x8 images at " \
        "batch 100000" in err and "a smaller batch size" in err
