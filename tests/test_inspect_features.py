"""Activations via forward hooks, the inspection PNGs, and the training curves."""

import json

import numpy as np
import pytest

import cnnlab
from cnnlab import arch
from cnnlab.inspect.features import (
    capture_activations,
    feature_maps_image,
    filters_image,
    load_image,
    save_inspection,
    tile_scale,
)

Image = pytest.importorskip("PIL.Image")

# the layout constants of cnnlab.inspect.features
GAP, LABEL, TITLE, NOTE, LEGEND = 6, 16, 30, 18, 50


def small_net(channels=1):
    cnnlab.manual_seed(0)
    return arch.build("conv3x3x4p1-relu-pool2-conv3x3x6-relu-fc5", (channels, 12, 12))


def test_capture_activations_all_layers():
    model = small_net()
    x = np.random.default_rng(0).random((2, 1, 12, 12), dtype=np.float32)
    acts = capture_activations(model, x)
    assert list(acts) == [str(i) for i in range(len(model))]
    assert acts["0"].shape == (2, 4, 12, 12)
    assert acts["2"].shape == (2, 4, 6, 6)
    assert acts["3"].shape == (2, 6, 4, 4)
    with cnnlab.no_grad():
        expected = model(cnnlab.Tensor(x)).data
    np.testing.assert_array_equal(acts[str(len(model) - 1)], expected)
    # hooks are removed: capturing again gives the same keys, not duplicates
    assert list(capture_activations(model, x[0])) == list(acts)


def test_capture_chosen_layers_and_unknown_names():
    model = small_net()
    model.train()
    acts = capture_activations(model, np.zeros((1, 12, 12), np.float32), layers=["3", "0"])
    assert set(acts) == {"0", "3"} and acts["0"].shape == (1, 4, 12, 12)
    assert model.training  # restored
    with pytest.raises(KeyError, match=r"no layer named \['conv9'\]"):
        capture_activations(model, np.zeros((1, 12, 12), np.float32), layers=["conv9"])


def _expected_grid_size(n, h, w, z, cols, note=False, legend=True):
    rows = -(-n // cols)
    top = TITLE + (NOTE if note else 0)
    return (GAP + cols * (w * z + GAP),
            top + rows * (LABEL + h * z + GAP) + (LEGEND if legend else 0))


def test_feature_maps_and_filters_images_have_the_layout_size():
    maps = np.random.default_rng(1).normal(size=(6, 10, 10)).astype(np.float32)
    img = feature_maps_image(maps, "x")
    z = tile_scale(10, 10)
    assert z == 10
    width, height = img.size
    grid_w, grid_h = _expected_grid_size(6, 10, 10, z, cols=3)
    assert height == grid_h and grid_w <= width  # the colour bar's caption may widen it
    constant = feature_maps_image(np.zeros((1, 3, 3), np.float32), "a constant map")
    assert constant.mode == "RGB"

    rgb = filters_image(np.random.default_rng(2).normal(size=(8, 3, 5, 5)), "rgb")
    width, height = rgb.size
    grid_w, grid_h = _expected_grid_size(8, 5, 5, tile_scale(5, 5, 48), cols=3)
    assert height == grid_h and grid_w <= width
    tile = np.asarray(rgb)[TITLE + LABEL:TITLE + LABEL + 50, GAP:GAP + 50]
    assert np.ptp(tile.astype(int), axis=2).max() > 0  # colour, not gray
    gray = filters_image(np.ones((2, 2, 3, 3)), "two channels")
    assert np.asarray(gray).shape[1] >= 2 * (3 * 16)  # one tile per filter and channel
    with pytest.raises(ValueError, match=r"expected \(F, C, K, K\)"):
        filters_image(np.ones((2, 3, 3)), "bad")


def test_save_inspection_writes_the_pictures(tmp_path):
    model = small_net(channels=3)
    image = np.random.default_rng(3).random((3, 12, 12), dtype=np.float32)
    result = save_inspection(model, image, tmp_path, classes=list("abcde"))
    names = sorted(p.name for p in result["files"])
    assert names == ["feature_maps_0.png", "feature_maps_3.png", "filters_0.png",
                     "input.png", "prediction.png"]
    z = tile_scale(12, 12, 256)
    width, height = Image.open(tmp_path / "input.png").size
    assert height == _expected_grid_size(1, 12, 12, z, 1, note=True, legend=False)[1]
    for name, n, side, cols in (("feature_maps_0.png", 5, 12, 3), ("feature_maps_3.png", 7, 4, 3)):
        width, height = Image.open(tmp_path / name).size  # the maps and the input beside them
        grid_w, grid_h = _expected_grid_size(n, side, side, tile_scale(side, side), cols,
                                             note=True)
        assert height == grid_h and grid_w <= width <= grid_w + 400  # a long title widens it
    pred = result["prediction"]
    assert pred["class"] in "abcde" and 0.0 < pred["probability"] <= 1.0
    with cnnlab.no_grad():
        logits = model(cnnlab.Tensor(image[None])).data[0]
    assert pred["index"] == int(np.argmax(logits))


def _tile(img, index, side, z, cols, top):
    """The pixels of tile ``index`` in a picture laid out by _grid_image."""
    r, c = divmod(index, cols)
    x, y = GAP + c * (side * z + GAP), top + r * (LABEL + side * z + GAP) + LABEL
    return np.asarray(img)[y:y + side * z, x:x + side * z].astype(int)


def test_feature_maps_share_one_colour_scale_with_a_colour_bar():
    strong = np.full((4, 4), 2.0, np.float32)
    maps = np.stack([strong, strong / 10, -strong])
    img = feature_maps_image(maps, "three maps", cols=3)
    z = tile_scale(4, 4)
    tiles = [_tile(img, i, 4, z, 3, TITLE) for i in range(3)]
    white = np.array([247, 247, 247])
    # One scale: the weak map is close to white (zero), not as saturated as the strong one.
    assert np.abs(tiles[1][0, 0] - white).sum() < np.abs(tiles[0][0, 0] - white).sum() / 4
    assert tiles[0][0, 0][0] > tiles[0][0, 0][2] and tiles[2][0, 0][2] > tiles[2][0, 0][0]
    bar = np.asarray(img)[-LEGEND + 4:-LEGEND + 14, GAP + 2:GAP + 200].astype(int)
    assert bar[5, 0][2] > bar[5, 0][0] and bar[5, -1][0] > bar[5, -1][2]  # blue .. red
    positive = feature_maps_image(np.abs(maps), "after ReLU")
    assert np.abs(np.asarray(positive)[-LEGEND + 8, GAP + 1].astype(int) - [68, 1, 84]).max() < 8


def test_maps_say_what_they_are_and_filters_have_a_legend(tmp_path):
    model = arch.build("conv3x3x4p1-bn-relu-fc3", (1, 6, 6))
    save_inspection(model, np.zeros((1, 6, 6), np.float32), tmp_path)
    from cnnlab.inspect.features import _what_maps_show

    assert _what_maps_show(model, "0") == ("the convolution's output, before the batch norm "
                                           "and ReLU after it; one colour scale for all maps")
    assert _what_maps_show(small_net(), "3").startswith("the convolution's output, before "
                                                        "the ReLU after it")
    filters = np.asarray(filters_image(np.array([[[[-1.0, 0.0, 2.0]]]]), "one filter"))
    assert filters.shape[0] == TITLE + LABEL + 48 + GAP + LEGEND


def test_load_image(tmp_path):
    rgb = (np.arange(20 * 30 * 3) % 256).astype(np.uint8).reshape(20, 30, 3)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    x = load_image(tmp_path / "a.png", (1, 8, 8))
    assert x.shape == (1, 8, 8) and x.dtype == np.float32 and 0 <= x.min() <= x.max() <= 1
    assert load_image(tmp_path / "a.png", (3, 20, 30)).shape == (3, 20, 30)
    np.save(tmp_path / "a.npy", np.zeros((8, 8), np.uint8))
    assert load_image(tmp_path / "a.npy", (1, 8, 8)).shape == (1, 8, 8)
    with pytest.raises(ValueError, match="expected an array of 3x8x8"):
        load_image(tmp_path / "a.npy", (3, 8, 8))


# --------------------------------------------------------------------------- curves

HISTORY = [
    {"epoch": 1, "train_loss": 1.2, "train_acc": 0.6, "val_loss": 1.0, "val_acc": 0.7, "lr": 0.1},
    {"epoch": 2, "train_loss": 0.7, "train_acc": 0.8, "val_loss": 0.8, "val_acc": 0.75, "lr": 0.05},
    {"epoch": 3, "train_loss": 0.5, "train_acc": 0.85, "val_loss": None, "val_acc": None, "lr": 0},
]


def test_plot_history_png(tmp_path):
    pytest.importorskip("matplotlib")
    from cnnlab.inspect.curves import load_history, plot_history

    path = plot_history(HISTORY, tmp_path / "sub" / "curves.png", title="a run")
    assert Image.open(path).size == (1200, 450)
    no_val = [{k: v for k, v in e.items() if not k.startswith("val")} for e in HISTORY]
    assert Image.open(plot_history(no_val, tmp_path / "b.png")).size == (1200, 450)

    (tmp_path / "history.json").write_text(json.dumps(HISTORY))
    assert load_history(tmp_path) == HISTORY
    with pytest.raises(FileNotFoundError, match="cnnlab train"):
        load_history(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="the history is empty"):
        plot_history([], tmp_path / "c.png")
    with pytest.raises(ValueError, match="expected a list of per-epoch objects"):
        plot_history({"epoch": 1}, tmp_path / "c.png")


def test_missing_optional_packages_say_what_to_install(monkeypatch, tmp_path):
    import sys

    from cnnlab.inspect.curves import plot_history

    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(ImportError, match=r"needs Pillow; install it with .*'cnnlab\[cli\]'"):
        feature_maps_image(np.zeros((1, 2, 2), np.float32), "x")
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"needs matplotlib; .*'cnnlab\[plot\]'"):
        plot_history(HISTORY, tmp_path / "c.png")
