"""Digit scenes: placement, masks, boxes, key points, batching (tiny IDX files, no network)."""

import json

import numpy as np
import pytest

from cnnlab.data import (
    DataLoader,
    Digits,
    DigitScenes,
    Ragged,
    load_dataset,
    train_val_split,
    write_idx,
)
from cnnlab.data.captions import reading_order
from cnnlab.data.scenes import KEYPOINT_NAMES


def fake_digits(n, seed, size=28):
    """uint8 'digits': a random blob of ink (values 128..255) inside a random box of at most
    20x20 pixels, with faint pixels (1..127) around it, somewhere in a size x size image."""
    rng = np.random.default_rng(seed)
    images = np.zeros((n, size, size), np.uint8)
    for i in range(n):
        h, w = rng.integers(1, 21, size=2)
        y, x = rng.integers(0, size - h + 1), rng.integers(0, size - w + 1)
        block = rng.integers(1, 256, size=(h, w)).astype(np.uint8)
        block[rng.random((h, w)) < 0.4] = 0
        block[rng.integers(h), rng.integers(w)] = 255  # at least one ink pixel
        images[i, y : y + h, x : x + w] = block
    images[0] = 0
    images[0, 0, 0] = 200  # a one-pixel digit in the corner
    images[1] = 0
    images[1, 27, 5:9] = [90, 130, 255, 140]  # a digit of one row, at the bottom edge
    return images, (np.arange(n) * 7 + seed) % 10


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mnist")
    files = {}
    for split, n, seed in (("train", 60, 1), ("t10k", 40, 2)):
        images, labels = fake_digits(n, seed)
        write_idx(folder / f"{split}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"{split}-labels-idx1-ubyte.gz", labels.astype(np.uint8))
        files[split] = (images.astype(np.float32) / 255, labels)
    return folder, files


@pytest.fixture(scope="module")
def scenes(mnist_dir):
    return DigitScenes("mnist", root=mnist_dir[0])


def per_scene(scenes):
    for i in range(len(scenes)):
        image, target = scenes[i]
        yield i, image[0], target


def test_shapes_dtypes_and_repr(scenes):
    n = len(scenes)
    assert n == 60 and scenes.images.shape == (n, 1, 64, 64)
    assert scenes.images.dtype == np.float32 and scenes.masks.dtype == np.uint8
    assert 0 <= scenes.images.min() and scenes.images.max() <= 1
    assert scenes.masks.shape == (n, 64, 64) and scenes.masks.max() <= 10
    m = int(scenes.num_digits.sum())
    assert scenes.num_digits.min() >= 1 and scenes.num_digits.max() <= 4
    assert set(scenes.num_digits.tolist()) == {1, 2, 3, 4}
    assert scenes.boxes.data.shape == (m, 4) and scenes.boxes.dtype == np.float32
    assert scenes.labels.data.shape == (m,) and scenes.labels.dtype == np.int64
    assert scenes.keypoints.data.shape == (m, 3, 2) and scenes.keypoints.dtype == np.float32
    assert scenes.sources.data.shape == (m,)
    np.testing.assert_array_equal(scenes.boxes.lengths, scenes.num_digits)
    assert scenes.classes == [str(d) for d in range(10)]
    assert scenes.keypoint_names == list(KEYPOINT_NAMES) == ["center", "top", "bottom"]
    assert scenes.input_shape == (1, 64, 64)
    assert repr(scenes) == ("DigitScenes(source='mnist', split='train', n=60, canvas=(64, 64), "
                            "digits=1..4, seed=0)")
    image, target = scenes[-1]
    assert image.shape == (1, 64, 64) and target["mask"].dtype == np.int64
    k = int(scenes.num_digits[-1])
    assert target["boxes"].shape == (k, 4) and target["keypoints"].shape == (k, 3, 2)
    assert "caption_ids" not in target
    with pytest.raises(IndexError, match="index 60 out of range for 60 scenes"):
        scenes[60]


def test_same_seed_same_scenes_other_seed_or_split_differs(mnist_dir, scenes):
    again = DigitScenes("mnist", root=mnist_dir[0])
    for name in ("images", "masks", "num_digits"):
        np.testing.assert_array_equal(getattr(again, name), getattr(scenes, name))
    for name in ("boxes", "labels", "keypoints", "sources"):
        np.testing.assert_array_equal(getattr(again, name).data, getattr(scenes, name).data)
        np.testing.assert_array_equal(getattr(again, name).offsets, getattr(scenes, name).offsets)
    other = DigitScenes("mnist", root=mnist_dir[0], seed=1)
    assert not np.array_equal(other.images, scenes.images)
    test = DigitScenes("mnist", train=False, root=mnist_dir[0])
    assert len(test) == 40 and not test.train
    # The test scenes paste the test file's digits, the train scenes the train file's.
    _, test_labels = mnist_dir[1]["t10k"]
    _, train_labels = mnist_dir[1]["train"]
    np.testing.assert_array_equal(test.labels.data, test_labels[test.sources.data])
    np.testing.assert_array_equal(scenes.labels.data, train_labels[scenes.sources.data])


def test_boxes_never_overlap_and_keep_the_gap(mnist_dir):
    for gap in (0, 1, 3):
        scenes = DigitScenes("mnist", root=mnist_dir[0], gap=gap, num_scenes=200, seed=gap)
        for i in range(len(scenes)):
            b = scenes.boxes[i]
            for j in range(len(b)):
                for k in range(j + 1, len(b)):
                    apart_x = max(b[k, 0] - b[j, 2], b[j, 0] - b[k, 2])
                    apart_y = max(b[k, 1] - b[j, 3], b[j, 1] - b[k, 3])
                    assert max(apart_x, apart_y) >= gap, (i, b[j], b[k])


def test_masks_agree_with_boxes_and_ink(scenes):
    for i, image, target in per_scene(scenes):
        mask = target["mask"]
        # Mask pixels are exactly the ink (at or above the threshold).
        np.testing.assert_array_equal(mask > 0, image >= scenes.threshold)
        covered = np.zeros(mask.shape, bool)
        for (x0, y0, x1, y1), label in zip(target["boxes"].astype(int), target["labels"],
                                           strict=True):
            inside = mask[y0:y1, x0:x1]
            assert set(np.unique(inside)) <= {0, label + 1}
            digit = inside == label + 1
            # Tight: every edge row and column of the box holds ink of this digit.
            assert digit[0].any() and digit[-1].any() and digit[:, 0].any() and digit[:, -1].any()
            covered[y0:y1, x0:x1] = True
        assert not mask[~covered].any(), f"scene {i}: mask pixels outside every box"


def test_pasted_pixels_are_the_source_digits(mnist_dir, scenes):
    images, labels = mnist_dir[1]["train"]
    for i in range(len(scenes)):
        for box, label, src in zip(scenes.boxes[i].astype(int), scenes.labels[i],
                                   scenes.sources[i], strict=True):
            assert label == labels[src]
            ink = np.argwhere(images[src] >= 0.5)
            (sy0, sx0), (sy1, sx1) = ink.min(0), ink.max(0) + 1
            x0, y0, x1, y1 = box
            assert (y1 - y0, x1 - x0) == (sy1 - sy0, sx1 - sx0)
            np.testing.assert_array_equal(scenes.images[i, 0, y0:y1, x0:x1],
                                          images[src, sy0:sy1, sx0:sx1])


def test_every_nonzero_pixel_comes_from_a_pasted_digit(mnist_dir, scenes):
    images, _ = mnist_dir[1]["train"]
    total_ink = sum(float(images[s].sum()) for s in scenes.sources.data)
    assert np.isclose(float(scenes.images.sum(dtype=np.float64)), total_ink, rtol=1e-6)


def test_keypoints(scenes):
    for _, image, target in per_scene(scenes):
        mask = target["mask"]
        for (x0, y0, x1, y1), label, points in zip(
            target["boxes"].astype(int), target["labels"], target["keypoints"], strict=True
        ):
            # Inside the box (pixel centres lie half a pixel in from the edges).
            low, high = [x0 + 0.5, y0 + 0.5], [x1 - 0.5, y1 - 0.5]
            assert np.all(points >= np.float32(low) - 1e-5), (points, low)
            assert np.all(points <= np.float32(high) + 1e-5), (points, high)
            ink = mask[y0:y1, x0:x1] == label + 1
            weight = np.where(ink, image[y0:y1, x0:x1], 0).astype(np.float64)
            ys, xs = np.mgrid[y0:y1, x0:x1] + 0.5
            centre = [(weight * xs).sum() / weight.sum(), (weight * ys).sum() / weight.sum()]
            np.testing.assert_allclose(points[0], centre, rtol=1e-5)
            top_cols = np.flatnonzero(ink[0]) + x0 + 0.5
            bottom_cols = np.flatnonzero(ink[-1]) + x0 + 0.5
            np.testing.assert_allclose(points[1], [top_cols.mean(), y0 + 0.5], rtol=1e-6)
            np.testing.assert_allclose(points[2], [bottom_cols.mean(), y1 - 0.5], rtol=1e-6)


def test_digits_are_stored_in_reading_order(scenes):
    for i in range(len(scenes)):
        np.testing.assert_array_equal(reading_order(scenes.boxes[i]),
                                      np.arange(scenes.num_digits[i]))


def test_uci_digit_scenes_use_the_digits_split():
    train, test = DigitScenes("digits"), DigitScenes("digits", train=False)
    assert train.canvas_size == test.canvas_size == (32, 32) and train.digit_size == (8, 8)
    assert (len(train), len(test)) == (1438, 359)
    for scenes, digits in ((train, Digits(train=True)), (test, Digits(train=False))):
        np.testing.assert_array_equal(scenes.labels.data, digits.labels[scenes.sources.data])
        # A scene's pixels are its source digits' pixels (supports pasted whole).
        for i in range(0, len(scenes), 37):
            total = sum(float(digits.images[s].sum()) for s in scenes.sources[i])
            assert np.isclose(float(scenes.images[i].sum(dtype=np.float64)), total, rtol=1e-6)
        # Every source digit is used before any is used a third time.
        uses = np.bincount(scenes.sources.data, minlength=len(digits))
        assert uses.max() - uses.min() <= 1


def test_digit_counts_scene_count_and_canvas(mnist_dir):
    one = DigitScenes("mnist", root=mnist_dir[0], min_digits=1, max_digits=1, num_scenes=25,
                      canvas_size=(28, 40))
    assert len(one) == 25 and one.images.shape == (25, 1, 28, 40)
    assert np.all(one.num_digits == 1)
    many = DigitScenes("mnist", root=mnist_dir[0], min_digits=3, max_digits=6,
                       canvas_size=96, num_scenes=50)
    assert many.num_digits.min() >= 3 and many.num_digits.max() <= 6


def test_threshold_and_digits_without_ink():
    images = np.zeros((4, 8, 8), np.float32)
    images[:, 2:5, 3:6] = 0.5
    images[0, 3, 4] = 1.0
    images[2, 2, 3] = 1.0
    scenes = DigitScenes.from_digits(images, [1, 2, 3, 4], canvas_size=24, threshold=1.0,
                                     num_scenes=30, max_digits=2)
    assert set(scenes.labels.data.tolist()) == {1, 3}
    assert "left out 2 of 4 source digits" in scenes.notes[0]
    # Fainter pasted pixels are in the image but not in the mask.
    assert scenes.masks.astype(bool).sum() == int(scenes.num_digits.sum())
    assert np.all(scenes.boxes.data[:, 2:] - scenes.boxes.data[:, :2] == 1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"source": "cifar"}, "expected source 'mnist' or 'digits', found 'cifar'"),
        ({"min_digits": 3, "max_digits": 2}, "expected min_digits <= max_digits, found 3 > 2"),
        ({"max_digits": 0}, "expected max_digits to be an integer >= 1, found 0"),
        ({"min_digits": 1.5}, "expected min_digits to be an integer >= 1, found 1.5"),
        ({"gap": -1}, "expected gap to be an integer >= 0, found -1"),
        ({"threshold": 0}, r"expected threshold in \(0, 1\], found 0"),
        ({"threshold": 1.5}, r"expected threshold in \(0, 1\], found 1.5"),
        ({"num_scenes": 0}, "expected num_scenes to be an integer >= 1, found 0"),
        ({"seed": -1}, "expected seed to be an integer >= 0, found -1"),
        ({"canvas_size": 6}, "expected a canvas at least as large as one digit \\(8x8\\), "
                             "found canvas_size 6x6"),
        ({"canvas_size": (32, "a")}, "expected canvas_size as an integer or \\(H, W\\)"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DigitScenes(**{"source": "digits", **kwargs})


def test_impossible_placement_is_reported():
    images = np.ones((5, 8, 8), np.float32)  # every support is the whole 8x8
    with pytest.raises(ValueError, match=r"could not place the digits of \d+ of 10 scenes "
                                         r"without overlap.*use a larger canvas_size"):
        DigitScenes.from_digits(images, np.arange(5), canvas_size=15, min_digits=2,
                                max_digits=2, gap=0, num_scenes=10)
    # The same digits fit side by side on a wider canvas, touching when gap is 0.
    ok = DigitScenes.from_digits(images, np.arange(5), canvas_size=(8, 16), min_digits=2,
                                 max_digits=2, gap=0, num_scenes=10)
    np.testing.assert_array_equal(ok.images, 1.0)


@pytest.mark.parametrize(
    ("images", "labels", "message"),
    [
        (np.zeros((3, 8)), [1, 2, 3], r"expected images of shape \(n, h, w\)"),
        (np.ones((3, 8, 8)), [1, 2], r"expected integer labels of shape \(3,\)"),
        (np.ones((3, 8, 8)), [1, 2, 10], "expected labels 0..9, found 1..10"),
        (np.full((3, 8, 8), 255.0), [1, 2, 3], "expected pixel values in \\[0, 1\\]"),
    ],
)
def test_from_digits_checks_its_input(images, labels, message):
    with pytest.raises(ValueError, match=message):
        DigitScenes.from_digits(images, np.asarray(labels), canvas_size=32)


def test_get_batch_and_dataloader(scenes):
    idx = np.array([5, 0, 17])
    x, t = scenes.get_batch(idx)
    assert x.shape == (3, 1, 64, 64) and t["masks"].shape == (3, 64, 64)
    assert t["masks"].dtype == np.int64
    np.testing.assert_array_equal(t["num_digits"], scenes.num_digits[idx])
    for j, i in enumerate(idx):
        np.testing.assert_array_equal(t["boxes"][j], scenes.boxes[i])
        np.testing.assert_array_equal(t["keypoints"][j], scenes.keypoints[i])
    np.testing.assert_array_equal(
        t["labels"].item_index, np.repeat(np.arange(3), scenes.num_digits[idx]))
    xs, ts = scenes[idx]  # indexing with an array is a batch
    np.testing.assert_array_equal(xs, x)
    loader = DataLoader(scenes, batch_size=16, shuffle=True, generator=np.random.default_rng(0))
    seen, digits = 0, 0
    for xb, tb in loader:
        assert xb.shape[1:] == (1, 64, 64) and tb["masks"].shape == (len(xb), 64, 64)
        seen += len(xb)
        digits += len(tb["labels"].data)
    assert (len(loader), seen, digits) == (4, 60, int(scenes.num_digits.sum()))
    assert repr(loader).startswith("DataLoader(n=60, batch_size=16")


def test_subset_keeps_the_settings(scenes):
    part = scenes.subset(np.arange(10, 20))
    assert len(part) == 10 and part.canvas_size == scenes.canvas_size
    np.testing.assert_array_equal(part.images, scenes.images[10:20])
    np.testing.assert_array_equal(part.boxes.data, scenes.boxes[10:20].data)
    assert part.captions == scenes.captions[10:20]
    assert len(scenes) == 60


def test_scenes_are_no_classification_dataset(scenes):
    with pytest.raises(TypeError, match="several digits per image"):
        train_val_split(scenes)


def test_captions_in_samples_and_batches(mnist_dir):
    scenes = DigitScenes("mnist", root=mnist_dir[0], captions=True)
    assert scenes.caption_ids.shape == (60, scenes.caption_max_len) == (60, 29)
    assert scenes.caption_ids.dtype == np.int64
    for i in range(len(scenes)):
        assert scenes.vocabulary.decode(scenes.caption_ids[i]) == scenes.captions[i]
    _, target = scenes[3]
    np.testing.assert_array_equal(target["caption_ids"], scenes.caption_ids[3])
    _, batch = scenes.get_batch([1, 2])
    assert batch["caption_ids"].shape == (2, 29)
    np.testing.assert_array_equal(scenes.encode_captions(), scenes.caption_ids)
    assert scenes.encode_captions(max_len=40).shape == (60, 40)


def test_load_by_name(mnist_dir):
    from cnnlab.train.recipes import DATASETS, open_data

    assert {"digits-scenes", "mnist-scenes"} <= set(DATASETS)
    ds = load_dataset("digits-scenes", train=False)
    assert isinstance(ds, DigitScenes) and ds.source == "digits" and len(ds) == 359
    ds = load_dataset("mnist_scenes", root=mnist_dir[0])
    assert ds.source == "mnist" and len(ds) == 60
    ds = open_data("mnist-scenes", "test", data_dir=mnist_dir[0])
    assert isinstance(ds, DigitScenes) and not ds.train and len(ds) == 40


def test_plot_scenes(scenes, tmp_path):
    pytest.importorskip("matplotlib")
    from PIL import Image

    from cnnlab.data.draw import draw_scene_grid

    path = scenes.plot(tmp_path / "pics" / "scenes.png", indices=[0, 1, 2], cols=2,
                       title="three scenes")
    with Image.open(path) as picture:
        assert picture.format == "PNG" and picture.size[0] > 200
    path = draw_scene_grid(scenes.images[:2], tmp_path / "bare.png")
    assert path.stat().st_size > 0
    with pytest.raises(ValueError, match="expected boxes for each of the 2 images, found 1"):
        draw_scene_grid(scenes.images[:2], tmp_path / "x.png", boxes=[scenes.boxes[0]])
    with pytest.raises(ValueError, match="expected show to list some of"):
        scenes.plot(tmp_path / "x.png", show=["masks"])


# ----------------------------------------------------------------------------- Ragged


def test_ragged_indexing_and_padding():
    r = Ragged.from_lengths(np.arange(12).reshape(6, 2), [2, 0, 3, 1])
    assert len(r) == 4 and r[0].tolist() == [[0, 1], [2, 3]] and r[1].shape == (0, 2)
    assert r[-1].tolist() == [[10, 11]]
    with pytest.raises(IndexError, match="index 4 out of range for 4 items"):
        r[4]
    sub = r[1:3]
    assert sub.lengths.tolist() == [0, 3] and sub.data.tolist() == [[4, 5], [6, 7], [8, 9]]
    picked = r[np.array([True, False, False, True])]
    assert picked.tolist() == [[[0, 1], [2, 3]], [[10, 11]]]
    twice = r[[3, 3, 0]]
    assert twice.item_index.tolist() == [0, 1, 2, 2]
    values, valid = r.padded(fill=-1, length=4)
    assert values.shape == (4, 4, 2) and valid.sum() == 6
    assert values[2, :3].tolist() == r[2].tolist() and np.all(values[1] == -1)
    with pytest.raises(ValueError, match="expected length >= 3"):
        r.padded(length=2)
    assert repr(r) == "Ragged(items=4, rows=6, row_shape=(2,), dtype=int64)"
    empty = Ragged.from_list([], np.float32, (4,))
    assert len(empty) == 0 and empty.data.shape == (0, 4) and empty.padded()[0].shape == (0, 0, 4)
    assert json.dumps(r.tolist())


@pytest.mark.parametrize(
    ("offsets", "message"),
    [
        ([1, 3], "expected offsets rising from 0 to len\\(data\\) = 3"),
        ([0, 2, 1, 3], "expected offsets rising"),
        ([0, 2], "expected offsets rising from 0 to len\\(data\\) = 3"),
        ([[0, 3]], "expected offsets as a 1-D integer array"),
        ([0.0, 3.0], "expected offsets as a 1-D integer array"),
    ],
)
def test_ragged_rejects_bad_offsets(offsets, message):
    with pytest.raises(ValueError, match=message):
        Ragged(np.arange(3), offsets)
