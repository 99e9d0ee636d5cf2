"""MNIST / Fashion-MNIST from tiny IDX files written by the tests (no network)."""

import gzip

import numpy as np
import pytest

from cnnlab.data import MNIST, DataFormatError, DatasetNotFoundError, FashionMNIST, write_idx


def make_split(folder, split="train", n=6, compress=True, seed=0):
    """Write an images/labels pair; return the uint8 images and labels."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = (np.arange(n) % 10).astype(np.uint8)
    suffix = ".gz" if compress else ""
    folder.mkdir(parents=True, exist_ok=True)
    write_idx(folder / f"{split}-images-idx3-ubyte{suffix}", images)
    write_idx(folder / f"{split}-labels-idx1-ubyte{suffix}", labels)
    return images, labels


@pytest.mark.parametrize("compress", [True, False])
def test_loads_gzip_or_raw(tmp_path, compress):
    images, labels = make_split(tmp_path, compress=compress)
    ds = MNIST(root=tmp_path)
    assert len(ds) == 6
    assert ds.images.shape == (6, 1, 28, 28) and ds.images.dtype == np.float32
    assert ds.labels.dtype == np.int64
    np.testing.assert_allclose(ds.images[:, 0] * 255, images, atol=1e-4)
    np.testing.assert_array_equal(ds.labels, labels)
    assert 0.0 <= ds.images.min() and ds.images.max() <= 1.0
    x, y = ds[2]
    assert x.shape == (1, 28, 28) and int(y) == 2
    assert ds.classes == [str(d) for d in range(10)]


def test_recompressed_copy_is_accepted(tmp_path):
    # A user's re-compressed file has another .gz checksum but the same content.
    make_split(tmp_path, compress=False)
    for stem in ["train-images-idx3-ubyte", "train-labels-idx1-ubyte"]:
        raw = (tmp_path / stem).read_bytes()
        (tmp_path / stem).unlink()
        (tmp_path / f"{stem}.gz").write_bytes(gzip.compress(raw, compresslevel=1, mtime=123))
    assert len(MNIST(root=tmp_path)) == 6


def test_test_split_and_subfolder(tmp_path):
    make_split(tmp_path / "mnist", split="t10k", n=4)
    ds = MNIST(root=tmp_path, train=False)
    assert len(ds) == 4 and ds.root == tmp_path / "mnist"


def test_default_folder_from_environment(tmp_path, monkeypatch):
    make_split(tmp_path / "fashion-mnist", n=3)
    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path))
    ds = FashionMNIST()
    assert len(ds) == 3
    assert ds.classes[0] == "T-shirt/top" and ds.classes[9] == "Ankle boot"


def test_missing_files_message(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((1, 28, 28), np.uint8))
    with pytest.raises(DatasetNotFoundError) as info:
        MNIST(root=tmp_path)
    message = str(info.value)
    assert "train-labels-idx1-ubyte.gz not found" in message
    assert f"Put these files into {tmp_path}" in message
    assert "http://yann.lecun.com/exdb/mnist/train-labels-idx1-ubyte.gz" in message
    # Only the missing file is listed as something to put there.
    assert "  train-images-idx3-ubyte.gz" not in message
    assert "download=True" in message


def test_fashion_missing_lists_its_urls(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="fashion-mnist.s3-website"):
        FashionMNIST(root=tmp_path, train=False)


def test_count_mismatch(tmp_path):
    make_split(tmp_path, n=5)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(4, dtype=np.uint8))
    with pytest.raises(DataFormatError, match="holds 5 images but .* holds 4 labels"):
        MNIST(root=tmp_path)


def test_wrong_image_size(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((2, 32, 32), np.uint8))
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(2, np.uint8))
    with pytest.raises(DataFormatError, match="expected 28x28 images for MNIST, found 32x32"):
        MNIST(root=tmp_path)


def test_label_out_of_range(tmp_path):
    make_split(tmp_path, n=3)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.array([1, 12, 3], np.uint8))
    with pytest.raises(DataFormatError, match=r"expected labels 0\.\.9, found 12 at index 1"):
        MNIST(root=tmp_path)
