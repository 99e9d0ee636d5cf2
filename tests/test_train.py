"""The fit loop and its callbacks: events, exact resume, NaN stop, progress, history, early stop."""

from __future__ import annotations

import csv
import io
import json
import re
import signal

import numpy as np
import pytest

import cnnlab
from cnnlab import nn, optim
from cnnlab.train import (
    Callback,
    Checkpoint,
    EarlyStopping,
    HistoryFile,
    ProgressBar,
    evaluate,
    fit,
    read_checkpoint,
)

ARCH = "conv3x3x4p1-bn-relu-pool2-dropout0.25-fc3"  # batch norm buffers and dropout RNG too


def tiny_data(n=48, seed=0):
    """Three classes of 1x6x6 images: a bright row at the top, middle or bottom, plus noise."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    images = rng.random((n, 1, 6, 6), dtype=np.float32) * 0.3
    for i, y in enumerate(labels):
        images[i, 0, 2 * y : 2 * y + 2, :] += 0.7
    return images, labels.astype(np.int64)


def setup(seed=0, lr=0.01, epochs=2):
    cnnlab.manual_seed(seed)
    model = cnnlab.arch.build(ARCH, (1, 6, 6))
    optimizer = optim.Adam(model.parameters(), lr=lr)
    scheduler = optim.CosineAnnealingLR(optimizer, T_max=epochs)
    return model, optimizer, scheduler


def run_fit(model, optimizer, scheduler, epochs, callbacks=(), resume=None, val=True, seed=0,
            transform=None):
    train = tiny_data()
    val_data = tiny_data(12, seed=1) if val else None
    return fit(model, optimizer, train, val_data=val_data, epochs=epochs, batch_size=8,
               scheduler=scheduler, callbacks=list(callbacks), transform=transform,
               generator=np.random.default_rng([seed, 1]), resume=resume)


def weights(model):
    return {k: v.copy() for k, v in model.state_dict().items()}


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert np.array_equal(a[key], b[key]), f"{key} differs"


class Recorder(Callback):
    def __init__(self):
        self.events = []

    def on_train_begin(self, state):
        self.events.append("train_begin")

    def on_epoch_begin(self, state):
        self.events.append(f"epoch_begin {state.epoch}")

    def on_batch_end(self, state):
        self.events.append(f"batch_end {state.epoch}.{state.batch}")

    def on_epoch_end(self, state):
        self.events.append(f"epoch_end {state.epoch}")

    def on_train_end(self, state):
        self.events.append(f"train_end {state.stop_reason}")


class SendCtrlC(Callback):
    """Press Ctrl-C (a real SIGINT) after a given step."""

    def __init__(self, epoch, batch):
        self.at = (epoch, batch)

    def on_batch_end(self, state):
        if (state.epoch, state.batch) == self.at:
            signal.raise_signal(signal.SIGINT)


class Corrupt(Callback):
    """Put a NaN into the first weight after a given step."""

    def __init__(self, epoch, batch):
        self.at = (epoch, batch)

    def on_batch_end(self, state):
        if (state.epoch, state.batch) == self.at:
            next(iter(state.model.parameters())).data[...] = np.nan


def test_events_come_in_order():
    rec = Recorder()
    model, opt, sched = setup()
    train = tiny_data(n=16)
    fit(model, opt, train, epochs=2, batch_size=8, callbacks=[rec],
        generator=np.random.default_rng(0))
    assert rec.events == [
        "train_begin",
        "epoch_begin 0", "batch_end 0.1", "batch_end 0.2", "epoch_end 1",
        "epoch_begin 1", "batch_end 1.1", "batch_end 1.2", "epoch_end 2",
        "train_end completed",
    ]


def test_fit_learns_the_tiny_task():
    model, opt, _ = setup(lr=0.05)
    state = fit(model, opt, tiny_data(96), epochs=6, batch_size=16,
                generator=np.random.default_rng(0))
    assert state.stop_reason == "completed"
    assert len(state.history) == 6
    assert state.history[-1]["train_loss"] < state.history[0]["train_loss"]
    assert evaluate(model, tiny_data(30, seed=5)).accuracy >= 0.9


def test_fit_rejects_bad_arguments():
    model, opt, _ = setup()
    with pytest.raises(ValueError, match="epochs must be an integer >= 1, got 0"):
        fit(model, opt, tiny_data(), epochs=0)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        fit(model, opt, tiny_data(), epochs=1, batch_size=0)
    with pytest.raises(TypeError, match="callbacks must be cnnlab.train.Callback instances"):
        fit(model, opt, tiny_data(), epochs=1, callbacks=[print])
    with pytest.raises(TypeError, match="expected a dataset with .images and .labels"):
        fit(model, opt, np.zeros((4, 1, 6, 6)), epochs=1)


def test_resume_at_epoch_boundary_gives_identical_weights(tmp_path):
    model, opt, sched = setup()
    full = run_fit(model, opt, sched, epochs=2, callbacks=[Checkpoint(tmp_path / "a.st")])
    expected = weights(model)

    model, opt, sched = setup()
    run_fit(model, opt, sched, epochs=1, callbacks=[Checkpoint(tmp_path / "b.st")])
    assert read_checkpoint(tmp_path / "b.st")["epoch"] == 1

    model, opt, sched = setup(seed=123)  # different init: everything must come from the file
    resumed = run_fit(model, opt, sched, epochs=2, resume=tmp_path / "b.st",
                      callbacks=[Checkpoint(tmp_path / "b.st")])
    assert_same_weights(weights(model), expected)
    drop_time = [{k: v for k, v in h.items() if k != "time"} for h in full.history]
    assert [{k: v for k, v in h.items() if k != "time"} for h in resumed.history] == drop_time
    assert opt.param_groups[0]["lr"] == full.optimizer.param_groups[0]["lr"]


def test_ctrl_c_saves_mid_epoch_and_resume_is_exact(tmp_path):
    model, opt, sched = setup()
    full = run_fit(model, opt, sched, epochs=2)
    expected = weights(model)

    model, opt, sched = setup()
    path = tmp_path / "ckpt.safetensors"
    rec = Recorder()
    state = run_fit(model, opt, sched, epochs=2, callbacks=[Checkpoint(path), SendCtrlC(1, 2), rec])
    assert state.stop_reason == "interrupted"
    assert rec.events[-1] == "train_end interrupted"
    ckpt = read_checkpoint(path)
    assert (ckpt["epoch"], ckpt["extra"]["batch"]) == (1, 2)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored

    model, opt, sched = setup(seed=7)
    resumed = run_fit(model, opt, sched, epochs=2, resume=path)
    assert resumed.stop_reason == "completed"
    assert_same_weights(weights(model), expected)
    assert resumed.history[-1]["train_loss"] == full.history[-1]["train_loss"]
    assert resumed.history[-1]["train_acc"] == full.history[-1]["train_acc"]


def test_resume_is_exact_with_random_augmentation(tmp_path):
    # Random crops draw from the shuffling generator batch by batch: a resumed epoch must
    # replay the draws of the batches it skips.
    from cnnlab.data import Compose, Normalize, RandomCrop

    augment = Compose([RandomCrop(6, padding=1), Normalize(0.3, 0.3)])
    model, opt, sched = setup()
    run_fit(model, opt, sched, epochs=2, transform=augment)
    expected = weights(model)

    path = tmp_path / "ckpt.safetensors"
    model, opt, sched = setup()
    run_fit(model, opt, sched, epochs=2, transform=augment,
            callbacks=[Checkpoint(path), SendCtrlC(0, 3)])
    model, opt, sched = setup(seed=9)
    run_fit(model, opt, sched, epochs=2, transform=augment, resume=path)
    assert_same_weights(weights(model), expected)


def test_nan_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    path = tmp_path / "ckpt.safetensors"
    model, opt, sched = setup()
    rec = Recorder()
    message = r"loss became NaN or infinite at epoch 2, batch 3; training stopped"
    with pytest.raises(cnnlab.NonFiniteLossError, match=message):
        run_fit(model, opt, sched, epochs=3, callbacks=[Checkpoint(path), Corrupt(1, 2), rec])
    assert rec.events[-1] == "train_end nonfinite"
    ckpt = read_checkpoint(path)
    assert ckpt["epoch"] == 1 and ckpt["extra"]["batch"] == 0
    assert all(np.isfinite(v).all() for v in ckpt["model"].values())


def test_checkpoint_never_saves_nan_weights(tmp_path):
    # NaN written by the last step of epoch 2: there is no validation set to notice, so the
    # checkpoint itself must refuse to replace the good one from epoch 1.
    path = tmp_path / "ckpt.safetensors"
    model, opt, sched = setup()
    message = r"holds NaN or Inf; not saving.*\(after epoch 2\); training stopped"
    with pytest.raises(cnnlab.NonFiniteLossError, match=message):
        run_fit(model, opt, sched, epochs=3, val=False,
                callbacks=[Checkpoint(path), Corrupt(1, 6)])
    assert read_checkpoint(path)["epoch"] == 1


def test_huge_learning_rate_stops_with_a_clear_message():
    cnnlab.manual_seed(0)
    model = cnnlab.arch.build("fc16-relu-fc3", (1, 6, 6))
    opt = optim.SGD(model.parameters(), lr=1e30)
    message = "training loss became NaN or infinite at epoch .*; training stopped"
    with pytest.raises(cnnlab.NonFiniteLossError, match=message):
        fit(model, opt, tiny_data(), epochs=5, batch_size=8, generator=np.random.default_rng(0))


def test_progress_writes_one_line_per_epoch_when_not_a_terminal():
    out = io.StringIO()
    model, opt, sched = setup()
    run_fit(model, opt, sched, epochs=3, callbacks=[ProgressBar(file=out)])
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    pattern = (r"epoch [123]/3  loss \d\.\d{4}  acc \d+\.\d\d%  val_loss \d\.\d{4}  "
               r"val_acc \d+\.\d\d%  lr \S+  \d+\.\ds  [\d,]+ img/s")
    for line in lines:
        assert re.fullmatch(pattern, line), line


def test_progress_bar_on_a_terminal_shows_speed_and_metrics():
    pytest.importorskip("tqdm")
    out = io.StringIO()
    model, opt, sched = setup()
    run_fit(model, opt, sched, epochs=1, callbacks=[ProgressBar(file=out, tty=True)])
    text = out.getvalue()
    assert "epoch 1/1" in text and "img/s" in text and "val_acc" in text


def test_history_files(tmp_path):
    model, opt, sched = setup()
    state = run_fit(model, opt, sched, epochs=2,
                    callbacks=[HistoryFile(tmp_path / "h.json", tmp_path / "h.csv")])
    records = json.loads((tmp_path / "h.json").read_text())
    assert [r["epoch"] for r in records] == [1, 2]
    assert set(records[0]) == {"epoch", "train_loss", "train_acc", "val_loss", "val_acc",
                               "lr", "time"}
    assert records == state.history
    assert records[0]["lr"] == 0.01 and records[1]["lr"] == pytest.approx(0.005)
    rows = list(csv.DictReader((tmp_path / "h.csv").open()))
    assert len(rows) == 2
    assert float(rows[1]["val_loss"]) == records[1]["val_loss"]
    assert int(rows[1]["epoch"]) == 2


def test_history_without_validation_writes_null_and_empty(tmp_path):
    model, opt, sched = setup()
    run_fit(model, opt, sched, epochs=1, val=False,
            callbacks=[HistoryFile(tmp_path / "h.json", tmp_path / "h.csv")])
    assert json.loads((tmp_path / "h.json").read_text())[0]["val_loss"] is None
    assert next(csv.DictReader((tmp_path / "h.csv").open()))["val_acc"] == ""


def test_early_stopping_stops_when_validation_stalls():
    cnnlab.manual_seed(0)
    model = cnnlab.arch.build("fc3", (1, 6, 6))
    opt = optim.SGD(model.parameters(), lr=1e-9)  # so small that nothing improves
    early = EarlyStopping(patience=2, min_delta=1e-3)
    rec = Recorder()
    state = fit(model, opt, tiny_data(), val_data=tiny_data(12, seed=1), epochs=10,
                batch_size=16, callbacks=[early, rec], generator=np.random.default_rng(0))
    assert state.stop_reason == "early_stopping"
    assert len(state.history) == 3
    assert rec.events[-1] == "train_end early_stopping"
    assert "has not improved for 2 epochs (best" in early.message


def test_early_stopping_counts_from_the_best_value():
    class FakeState:
        def __init__(self):
            self.stop, self.stop_reason, self.logs = False, None, {}

    early = EarlyStopping(monitor="val_acc", patience=2)
    state = FakeState()
    for epoch, acc in enumerate([0.5, 0.6, 0.55, 0.7, 0.65, 0.69], start=1):
        state.logs = {"epoch": epoch, "val_acc": acc}
        early.on_epoch_end(state)
        assert state.stop == (epoch == 6)
    assert early.state_dict() == {"best": 0.7, "best_epoch": 4, "wait": 2}


def test_early_stopping_needs_the_metric():
    with pytest.raises(ValueError, match="monitor must be one of"):
        EarlyStopping(monitor="accuracy")
    model, opt, sched = setup()
    with pytest.raises(ValueError, match="monitors 'val_loss'.*give fit a val_data"):
        run_fit(model, opt, sched, epochs=1, val=False, callbacks=[EarlyStopping()])


def test_evaluate_confusion_and_per_class_accuracy():
    model = nn.Sequential(nn.Flatten(), nn.Linear(2, 2))
    model[1].weight.data[...] = np.eye(2, dtype=np.float32)
    model[1].bias.data[...] = 0
    x = np.array([[1, 0], [0, 1], [1, 0], [0, 1], [1, 0]], np.float32).reshape(5, 1, 1, 2)
    y = np.array([0, 1, 1, 1, 0])
    result = evaluate(model, (x, y), batch_size=2)
    assert (result.n, result.correct) == (5, 4)
    assert result.accuracy == pytest.approx(0.8)
    assert result.confusion.tolist() == [[2, 0], [1, 2]]
    assert result.per_class_accuracy.tolist() == pytest.approx([1.0, 2 / 3])
    assert model.training  # mode restored


def test_fit_steps_reduce_on_plateau_with_the_validation_loss(tmp_path):
    # mode="max" on a loss that falls: no epoch after the first is better, so with
    # patience 0 the rate halves at the end of every later epoch.
    model, opt, _ = setup(lr=0.01)
    sched = optim.ReduceLROnPlateau(opt, mode="max", factor=0.5, patience=0)
    result = run_fit(model, opt, sched, epochs=3, callbacks=[Checkpoint(tmp_path / "a.st")])
    assert [h["lr"] for h in result.history] == [0.01, 0.01, 0.005]
    assert opt.param_groups[0]["lr"] == 0.0025
    assert sched.best == result.history[0]["val_loss"]
    expected = weights(model)

    # Resumed from the checkpoint after two epochs, the plateau state comes back too.
    model, opt, _ = setup(lr=0.01)
    sched = optim.ReduceLROnPlateau(opt, mode="max", factor=0.5, patience=0)
    run_fit(model, opt, sched, epochs=2, callbacks=[Checkpoint(tmp_path / "b.st")])
    model, opt, _ = setup(seed=5, lr=0.01)
    sched = optim.ReduceLROnPlateau(opt, mode="max", factor=0.5, patience=0)
    run_fit(model, opt, sched, epochs=3, resume=tmp_path / "b.st")
    assert_same_weights(weights(model), expected)
    assert opt.param_groups[0]["lr"] == 0.0025


def test_fit_steps_reduce_on_plateau_with_the_training_loss_without_validation():
    model, opt, _ = setup(lr=0.01)
    sched = optim.ReduceLROnPlateau(opt, patience=0)
    result = run_fit(model, opt, sched, epochs=2, val=False)
    assert sched.best == result.history[-1]["train_loss"]  # the training loss fell
