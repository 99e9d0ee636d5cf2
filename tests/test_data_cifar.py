"""CIFAR-10 binary batches from tiny files written by the tests."""

import io
import tarfile

import numpy as np
import pytest

from cnnlab.data import CIFAR10, DataFormatError, DatasetNotFoundError
from cnnlab.data.cifar import RECORD, TRAIN_FILES, read_cifar_bin


def records(n, seed=0, labels=None):
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)
    labels = np.arange(n) % 10 if labels is None else np.asarray(labels)
    raw = np.concatenate([labels.astype(np.uint8)[:, None], pixels.reshape(n, -1)], axis=1)
    return raw.tobytes(), pixels, labels


def make_folder(base, n=3):
    folder = base / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    for i, name in enumerate([*TRAIN_FILES, "test_batch.bin"]):
        folder.joinpath(name).write_bytes(records(n, seed=i)[0])
    names = "airplane automobile bird cat deer dog frog horse ship truck".split()
    folder.joinpath("batches.meta.txt").write_text("\n".join(names) + "\n\n")
    return folder


def test_read_batch_layout(tmp_path):
    raw, pixels, labels = records(4)
    path = tmp_path / "b.bin"
    path.write_bytes(raw)
    images, got_labels = read_cifar_bin(path)
    np.testing.assert_array_equal(images, pixels)  # R, G, B planes -> (C, H, W)
    np.testing.assert_array_equal(got_labels, labels)


def test_dataset_from_folder(tmp_path):
    make_folder(tmp_path)
    train, test = CIFAR10(root=tmp_path), CIFAR10(root=tmp_path, train=False)
    assert train.images.shape == (15, 3, 32, 32) and train.images.dtype == np.float32
    assert len(test) == 3 and test.labels.dtype == np.int64
    assert train.classes[0] == "airplane" and train.classes[9] == "truck"
    expected = records(3, seed=5)[1].astype(np.float32) / 255
    np.testing.assert_allclose(test.images, expected, rtol=1e-6)


def test_dataset_from_tar_gz(tmp_path):
    make_folder(tmp_path / "src")
    with tarfile.open(tmp_path / "cifar-10-binary.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "src" / "cifar-10-batches-bin", arcname="cifar-10-batches-bin")
    ds = CIFAR10(root=tmp_path, train=False)
    assert len(ds) == 3
    assert (tmp_path / "cifar-10-batches-bin" / "test_batch.bin").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".cifar-extract")]


def test_root_may_be_the_extracted_folder(tmp_path):
    folder = make_folder(tmp_path)
    assert len(CIFAR10(root=folder, train=False)) == 3


def test_wrong_record_size(tmp_path):
    path = tmp_path / "b.bin"
    path.write_bytes(records(2)[0] + b"\x00" * 10)
    with pytest.raises(
        DataFormatError,
        match=rf"expected a whole number of {RECORD}-byte "
        r"records .* found 6156 bytes \(2 records and 10 bytes left over\)",
    ):
        read_cifar_bin(path)


def test_bad_label(tmp_path):
    folder = make_folder(tmp_path)
    folder.joinpath("test_batch.bin").write_bytes(records(3, labels=[1, 2, 10])[0])
    with pytest.raises(
        DataFormatError,
        match=r"test_batch\.bin: expected labels 0\.\.9, "
        r"found 10 in record 2",
    ):
        CIFAR10(root=tmp_path, train=False)


def test_missing(tmp_path):
    with pytest.raises(
        DatasetNotFoundError,
        match=r"(?s)neither cifar-10-batches-bin/ nor "
        r"cifar-10-binary\.tar\.gz.*https://www\.cs\.toronto\.edu/~kriz/"
        r"cifar-10-binary\.tar\.gz",
    ):
        CIFAR10(root=tmp_path)


def test_missing_batch_file(tmp_path):
    folder = make_folder(tmp_path)
    (folder / "data_batch_3.bin").unlink()
    with pytest.raises(DatasetNotFoundError, match=r"lacks data_batch_3\.bin"):
        CIFAR10(root=tmp_path)


def test_archive_without_expected_folder(tmp_path):
    with tarfile.open(tmp_path / "cifar-10-binary.tar.gz", "w:gz") as tar:
        info = tarfile.TarInfo("other/readme.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    with pytest.raises(DataFormatError, match=r"expected a folder cifar-10-batches-bin/"):
        CIFAR10(root=tmp_path)
