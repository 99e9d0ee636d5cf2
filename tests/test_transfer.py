"""Freezing layers, copying weights between networks, and `cnnlab train --init-from`."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import cnnlab
from cnnlab import nn, optim
from cnnlab.nn.freeze import frozen_modules
from cnnlab.train import fit
from cnnlab.train.transfer import copy_matching, head_layer, param_groups

ARCH = "conv3x3x4p1-bn-relu-pool2-conv3x3x6p1-bn-relu-fc12-relu-dropout-fc3"  # for 1x8x8


def net(seed=0, arch=ARCH, classes=3):
    cnnlab.manual_seed(seed)
    return cnnlab.arch.build(arch, (1, 8, 8), num_classes=classes)


def data(n=48, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 1, 8, 8), dtype=np.float32), rng.integers(0, 3, n)


def snapshot(model):
    return {k: v.copy() for k, v in model.state_dict().items()}


# ----------------------------------------------------------------------- nn.freeze


def test_freeze_counts_names_and_negative_counts():
    model = net()
    assert nn.freeze(model, 2) == ["0", "1"]
    assert [p.requires_grad for p in model.parameters()][:4] == [False] * 4
    assert model[4].weight.requires_grad
    nn.unfreeze(model)
    assert all(p.requires_grad for p in model.parameters()) and frozen_modules(model) == []
    assert nn.freeze(model, -1) == [str(i) for i in range(len(model) - 1)]
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["11.weight",
                                                                         "11.bias"]
    nn.unfreeze(model)
    assert nn.freeze(model, "5") == ["0", "1", "2", "3", "4", "5"]  # a name: up to and with it
    nn.unfreeze(model)
    assert nn.freeze(model) == [""] and not any(p.requires_grad for p in model.parameters())


def test_freeze_by_dotted_name_leaves_the_rest_of_the_container():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(),
                                      nn.Conv2d(2, 2, 3))
            self.head = nn.Linear(8, 2)

    model = Net()
    assert nn.freeze(model, "body.1") == ["body.0", "body.1"]
    assert not model.body[1].weight.requires_grad and model.body[3].weight.requires_grad
    assert model.head.weight.requires_grad
    assert not getattr(model.body, "frozen", False)  # it holds unfrozen layers too


def test_freeze_errors_say_what_is_valid():
    model = net()
    with pytest.raises(ValueError, match=r"no layer named 'conv'.*0 Conv2d"):
        nn.freeze(model, "conv")
    with pytest.raises(ValueError, match=r"13 layers is out of range .* \(expected -12\.\.12"):
        nn.freeze(model, 13)
    with pytest.raises(ValueError, match="counts the layers of a Sequential"):
        nn.freeze(nn.ModuleList([nn.ReLU()]), 1)


def test_frozen_layers_stay_in_eval_mode_across_train():
    model = net()
    nn.freeze(model, 3)
    model.train()
    assert [m.training for m in model][:4] == [False, False, False, True]
    model.eval().train()
    assert not model[1].training and model[4].training
    nn.unfreeze(model)
    assert model.train()[1].training


@pytest.mark.parametrize("make_opt", [
    lambda p: optim.Adam(p, lr=0.01),
    lambda p: optim.AdamW(p, lr=0.01, weight_decay=0.1),
    lambda p: optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=0.01),
])
def test_training_leaves_frozen_weights_and_batch_norm_statistics_alone(make_opt):
    model = net()
    model[1].running_mean[...] = 0.25  # not the initial values, so a reset would show
    nn.freeze(model, 6)  # conv, bn, relu, pool, conv, bn
    before = snapshot(model)
    x, y = data()
    fit(model, make_opt(model.parameters()), (x, y), epochs=2, batch_size=16,
        generator=np.random.default_rng(0))
    after = model.state_dict()
    for key in before:
        layer = int(key.split(".")[0])
        same = np.array_equal(before[key], after[key])
        assert same == (layer < 6), key  # frozen: unchanged; trainable: trained
    assert int(after["1.num_batches_tracked"]) == 0 and int(after["5.num_batches_tracked"]) == 0


def test_unfrozen_batch_norm_does_update_its_statistics():
    model = net()
    x, y = data()
    fit(model, optim.Adam(model.parameters(), lr=0.01), (x, y), epochs=1, batch_size=16)
    assert int(model[1].num_batches_tracked) == 3
    assert not np.array_equal(model[1].running_mean, np.zeros(4, dtype=np.float32))


# ----------------------------------------------------------------------- copying weights


def test_copy_matching_copies_same_names_and_shapes():
    source = net(seed=1, classes=10)
    target = net(seed=2, classes=3)
    report = copy_matching(target, source.state_dict())
    assert report.copied == [str(i) for i in (0, 1, 4, 5, 8)]
    assert report.new == {"11": "shape (3, 12) here, (10, 12) in the source"}
    for key, value in source.state_dict().items():
        if not key.startswith("11."):
            np.testing.assert_array_equal(target.state_dict()[key], value)
    assert report.tensors == 16  # 5 layers' weights and biases, 2 BN's 3 buffers each


def test_copy_matching_can_skip_the_head_and_reports_missing_layers():
    source = net(seed=1, arch="conv3x3x4p1-bn-relu-pool2-fc3")
    target = net(seed=2)
    head = target[11].weight.data.copy()
    report = copy_matching(target, source.state_dict(), skip=["11"])
    assert report.copied == ["0", "1"]
    assert report.new["4"] == "no 4.weight in the source" and report.new["11"] == "replaced"
    np.testing.assert_array_equal(target[11].weight.data, head)
    assert head_layer(target) == "11"


def test_param_groups_give_the_head_its_own_learning_rate():
    model = net()
    groups = param_groups(model, 0.5)
    assert len(groups) == 2 and groups[1]["lr"] == 0.5
    assert [id(p) for p in groups[1]["params"]] == [id(model[11].weight), id(model[11].bias)]
    opt = optim.Adam(groups, lr=1e-3)
    sched = optim.CosineAnnealingLR(opt, T_max=4)
    sched.step()
    assert [g["lr"] for g in opt.param_groups] == pytest.approx(
        [1e-3 * (1 + np.cos(np.pi / 4)) / 2, 0.5 * (1 + np.cos(np.pi / 4)) / 2])
    assert param_groups(model, None) == list(model.parameters())


# ----------------------------------------------------------------------- cnnlab train


def in_process(args, capsys):
    from cnnlab.cli.main import main

    try:
        rc = main([str(a) for a in args])
    except SystemExit as exc:
        rc = exc.code
    out, err = capsys.readouterr()
    return rc, out, err


SMALL = ["--arch", "conv3x3x8p1-bn-relu-pool2-fc16-relu-fc10", "--no-plot", "--limit", "150"]


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A digits model, and a folder of 8x8 images of three classes named differently."""
    from PIL import Image

    from cnnlab.cli.main import main

    root = tmp_path_factory.mktemp("transfer")
    assert main(["train", "--epochs", "1", *SMALL, "--out", str(root / "src")]) == 0
    digits = cnnlab.data.Digits(train=True)
    for label, name in enumerate(["zero", "one", "two"]):
        (root / "three" / name).mkdir(parents=True)
        for i in np.flatnonzero(digits.labels == label)[:25]:
            pixels = (digits.images[i, 0] * 255).round().astype(np.uint8)
            Image.fromarray(pixels).save(root / "three" / name / f"{i}.png")
    return root


def weights(path):
    return cnnlab.io.load_model(path).state_dict()


def test_init_from_replaces_the_head_and_freezes(source, tmp_path, capsys):
    rc, out, err = in_process(["train", "--data", source / "three", "--init-from",
                               source / "src", "--freeze", "-1", "--epochs", "2", "--out",
                               tmp_path / "run", "--no-plot"], capsys)
    assert rc == 0, out + err
    assert f"init from {source / 'src' / 'model.safetensors'}: copied layers 0, 1, 5" in err
    assert "new layer 7 (Linear): a new classifier for 3 classes (one, two, zero) instead of " \
           "10 (0, 1, 2, ... 9)" in err
    assert "frozen: layers 0-6 (" in err and "batch norm 1 keeps its running statistics" in err
    assert "model: conv3x3x8p1-bn-relu-pool2-fc16-relu-fc3 " in out  # the source's arch
    src, new = weights(source / "src"), weights(tmp_path / "run")
    for key in src:  # frozen: exactly the source's, running statistics included
        if not key.startswith("7."):
            np.testing.assert_array_equal(new[key], src[key], err_msg=key)
    assert new["7.weight"].shape == (3, 16)
    spec = cnnlab.io.read_spec(tmp_path / "run")
    assert spec["classes"] == ["one", "two", "zero"] and spec["training"]["freeze"] == -1


def test_init_from_fine_tunes_everything_and_keeps_a_matching_head(source, tmp_path, capsys):
    rc, out, err = in_process(["train", *SMALL, "--epochs", "1", "--init-from", source / "src",
                               "--lr-head", "0.01", "--out", tmp_path / "run"], capsys)
    assert rc == 0, err
    assert "copied layers 0, 1, 5, 7 (" in err and "new layer" not in err
    assert "frozen" not in err
    src, new = weights(source / "src"), weights(tmp_path / "run")
    assert not np.array_equal(src["0.weight"], new["0.weight"])  # trained further
    assert not np.array_equal(src["1.running_mean"], new["1.running_mean"])


def test_resume_keeps_init_from_and_freeze(source, tmp_path, capsys):
    src = tmp_path / "src"
    shutil.copytree(source / "src", src)
    common = ["--data", source / "three", "--init-from", src, "--freeze", "4",
              "--schedule", "constant", "--no-plot"]  # (a cosine schedule's length is fixed)
    assert in_process(["train", *common, "--epochs", "2", "--out", tmp_path / "whole"],
                      capsys)[0] == 0
    assert in_process(["train", *common, "--epochs", "1", "--out", tmp_path / "part"],
                      capsys)[0] == 0
    shutil.rmtree(src)  # a resumed run takes its weights from the checkpoint
    rc, out, err = in_process(["train", "--resume", tmp_path / "part", "--epochs", "2"],
                              capsys)
    assert rc == 0, err
    assert "frozen: layers 0-3 (" in err and "init from" not in err
    whole, part = weights(tmp_path / "whole"), weights(tmp_path / "part")
    for key in whole:
        np.testing.assert_array_equal(part[key], whole[key], err_msg=key)
    rc, _, err = in_process(["train", "--resume", tmp_path / "part", "--freeze", "2"], capsys)
    assert rc == 1 and "--freeze 2 differs from the run being resumed (4)" in err


def test_transfer_bad_input(source, tmp_path, capsys):
    def check(args, rc, phrase):
        code, out, err = in_process(["train", *SMALL, "--epochs", "1", "--out",
                                     tmp_path / "x", *args], capsys)
        assert code == rc, out + err
        assert "Traceback" not in err and phrase in err, err
        if rc == 1:
            assert err.strip().splitlines()[-1].startswith("cnnlab: error: ")

    check(["--init-from", tmp_path / "nothing"], 1, "--init-from")
    check(["--init-from", tmp_path / "nothing"], 1, "no model file there")
    check(["--init-from", source / "src", "--freeze", "conv1"], 2,
          "--freeze conv1: no layer named 'conv1'")
    check(["--init-from", source / "src", "--freeze", "12"], 2,
          "--freeze 12: 12 layers is out of range for a Sequential of 8 layers")
    check(["--freeze", " "], 2, "expected a number of layers or a layer name")
    check(["--lr-head", "-1"], 2, "expected a number > 0")
