"""ImageFolder and load_image on small PNG/JPEG files written by the tests."""

import numpy as np
import pytest

Image = pytest.importorskip("PIL.Image")

from cnnlab.data import DataFormatError, ImageFolder, load_image  # noqa: E402


def save(path, array, mode=None, **kwargs):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, dtype=np.uint8), mode).save(path, **kwargs)


def gray(h, w, value):
    return np.full((h, w), value, dtype=np.uint8)


def test_classes_sorted_and_labels(tmp_path):
    save(tmp_path / "zebra" / "1.png", gray(6, 6, 10))
    save(tmp_path / "apple" / "b.png", gray(6, 6, 20))
    save(tmp_path / "apple" / "a.png", gray(6, 6, 30))
    ds = ImageFolder(tmp_path)
    assert ds.classes == ["apple", "zebra"]
    assert ds.labels.tolist() == [0, 0, 1]
    assert [p.name for p in ds.files] == ["a.png", "b.png", "1.png"]
    assert ds.images.shape == (3, 1, 6, 6) and ds.images.dtype == np.float32
    np.testing.assert_allclose(ds.images[:, 0, 0, 0], np.array([30, 20, 10]) / 255, rtol=1e-6)
    assert ds.notes == []


def test_mixed_sizes_and_modes(tmp_path):
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[..., 0] = 255
    save(tmp_path / "a" / "1.png", rgb)
    save(tmp_path / "a" / "2.jpg", rgb, quality=95)
    save(tmp_path / "b" / "3.png", gray(8, 8, 128))  # grayscale -> converted
    save(tmp_path / "b" / "4.png", np.zeros((16, 12, 3), np.uint8))  # other size -> resized
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 3] = 255
    save(tmp_path / "b" / "5.png", rgba, "RGBA")
    ds = ImageFolder(tmp_path)
    assert ds.images.shape == (5, 3, 8, 8)  # most common: RGB, 8x8
    assert "converted 1 of 5 images to RGB" in ds.notes
    assert "resized 1 of 5 images to 8x8 (bilinear)" in ds.notes
    assert "dropped the transparency of 1 of 5 images" in ds.notes
    np.testing.assert_allclose(ds.images[2], 128 / 255, rtol=1e-6)  # gray copied to R, G, B
    np.testing.assert_allclose(ds.images[1, 0], 1.0, atol=0.02)  # JPEG of pure red
    np.testing.assert_allclose(ds.images[1, 1:], 0.0, atol=0.02)


def test_requested_channels_and_size(tmp_path):
    save(tmp_path / "a" / "1.png", np.full((10, 10, 3), 200, np.uint8))
    ds = ImageFolder(tmp_path, channels=1, size=(5, 4))
    assert ds.images.shape == (1, 1, 5, 4)
    np.testing.assert_allclose(ds.images, 200 / 255, atol=1 / 255)
    assert ds.notes == [
        "converted 1 of 1 images to grayscale",
        "resized 1 of 1 images to 5x4 (bilinear)",
    ]


def test_hidden_and_non_image_files_skipped(tmp_path):
    save(tmp_path / "a" / "1.png", gray(4, 4, 0))
    (tmp_path / "a" / ".DS_Store").write_bytes(b"junk")
    (tmp_path / "a" / "notes.txt").write_text("hello")
    (tmp_path / ".hidden").mkdir()
    save(tmp_path / ".hidden" / "x.png", gray(4, 4, 0))
    ds = ImageFolder(tmp_path)
    assert ds.classes == ["a"] and len(ds) == 1
    assert ds.notes == ["skipped 1 files that are not images: a/notes.txt"]


def test_corrupt_image_named(tmp_path):
    save(tmp_path / "a" / "good.png", gray(4, 4, 0))
    (tmp_path / "a" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(DataFormatError, match=r"bad\.png: not an image cnnlab can read"):
        ImageFolder(tmp_path)


def test_truncated_image_named(tmp_path):
    save(tmp_path / "a" / "cut.png", np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) % 251)
    data = (tmp_path / "a" / "cut.png").read_bytes()
    (tmp_path / "a" / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataFormatError, match=r"cut\.png: not an image cnnlab can read"):
        ImageFolder(tmp_path)


def test_classes_argument(tmp_path):
    save(tmp_path / "cat" / "1.png", gray(4, 4, 0))
    save(tmp_path / "dog" / "1.png", gray(4, 4, 0))
    ds = ImageFolder(tmp_path, classes=["dog"])
    assert ds.classes == ["dog"] and ds.labels.tolist() == [0]
    assert ds.notes == ["ignored folders not in classes: cat"]
    with pytest.raises(FileNotFoundError, match=r"class folders \['cow'\] not found"):
        ImageFolder(tmp_path, classes=["cow"])


def test_empty_and_missing_root(tmp_path):
    (tmp_path / "a").mkdir()
    with pytest.raises(DataFormatError, match="no images found"):
        ImageFolder(tmp_path)
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        ImageFolder(tmp_path / "nope")


def test_load_image(tmp_path):
    rgb = np.zeros((4, 6, 3), np.uint8)
    rgb[:, :3] = 255
    save(tmp_path / "x.png", rgb)
    x = load_image(tmp_path / "x.png")
    assert x.shape == (3, 4, 6) and x.dtype == np.float32
    assert x[:, :, :3].min() == 1.0 and x[:, :, 3:].max() == 0.0
    assert load_image(tmp_path / "x.png", channels=1, size=2).shape == (1, 2, 2)
    with pytest.raises(ValueError, match="expected channels 1 .* or 3"):
        load_image(tmp_path / "x.png", channels=2)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_image(tmp_path / "missing.png")


def test_missing_pillow_message(tmp_path, monkeypatch):
    save(tmp_path / "x.png", gray(2, 2, 0))
    monkeypatch.setitem(__import__("sys").modules, "PIL", None)
    with pytest.raises(ImportError, match=r'pip install "cnnlab\[cli\]"'):
        load_image(tmp_path / "x.png")
