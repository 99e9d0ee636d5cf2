"""IDX reading: raw and gzip files, and every way a file can be wrong."""

import gzip

import numpy as np
import pytest

from cnnlab.data import DataFormatError, read_idx, write_idx
from cnnlab.data.idx import IMAGES_MAGIC, LABELS_MAGIC, is_gzip, read_idx_pair


def _images(n=3, h=4, w=5):
    return (np.arange(n * h * w) % 256).astype(np.uint8).reshape(n, h, w)


@pytest.mark.parametrize("compress", [False, True])
def test_round_trip_raw_and_gzip(tmp_path, compress):
    x = _images()
    path = tmp_path / "images"
    write_idx(path, x, compress=compress)
    assert is_gzip(path) == compress
    got = read_idx(path, IMAGES_MAGIC)
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, x)


def test_header_bytes_are_big_endian(tmp_path):
    path = tmp_path / "labels"
    write_idx(path, np.array([7, 8], dtype=np.uint8))
    raw = path.read_bytes()
    assert raw[:4] == b"\x00\x00\x08\x01"
    assert raw[4:8] == b"\x00\x00\x00\x02"
    assert raw[8:] == b"\x07\x08"


def test_gzip_detected_by_content_not_name(tmp_path):
    # A gzip file without .gz and a raw file named .gz both load.
    x = _images()
    disguised = tmp_path / "images-no-suffix"
    disguised.write_bytes(gzip.compress(_raw_idx(x)))
    raw_named_gz = tmp_path / "images.gz"
    raw_named_gz.write_bytes(_raw_idx(x))
    np.testing.assert_array_equal(read_idx(disguised), x)
    np.testing.assert_array_equal(read_idx(raw_named_gz), x)


def _raw_idx(x):
    header = bytes([0, 0, 8, x.ndim]) + np.asarray(x.shape, dtype=">u4").tobytes()
    return header + x.tobytes()


def test_wrong_magic(tmp_path):
    path = tmp_path / "page.html"
    path.write_bytes(b"<html>not found</html>")
    with pytest.raises(DataFormatError, match=r"page\.html: expected magic number 0x00000803"):
        read_idx(path, IMAGES_MAGIC)


def test_labels_file_given_as_images(tmp_path):
    path = tmp_path / "labels"
    write_idx(path, np.zeros(3, dtype=np.uint8))
    with pytest.raises(DataFormatError, match=r"found 0x00000801 .*swapped"):
        read_idx(path, IMAGES_MAGIC)


def test_non_ubyte_dtype(tmp_path):
    path = tmp_path / "floats"
    path.write_bytes(bytes([0, 0, 0x0D, 1]) + (1).to_bytes(4, "big") + b"\x00" * 4)
    with pytest.raises(DataFormatError, match=r"expected data type 0x08.*found 0x0D"):
        read_idx(path)


@pytest.mark.parametrize("compress", [False, True])
def test_truncated(tmp_path, compress):
    data = _raw_idx(_images())[:-7]
    path = tmp_path / "short"
    path.write_bytes(gzip.compress(data) if compress else data)
    with pytest.raises(
        DataFormatError,
        match=r"short: header says shape \(3, 4, 5\), so "
        r"expected 76 bytes, found 69 bytes: the file is truncated",
    ):
        read_idx(path)


def test_extra_bytes(tmp_path):
    path = tmp_path / "long"
    path.write_bytes(_raw_idx(_images()) + b"junk")
    with pytest.raises(
        DataFormatError,
        match=r"expected 76 bytes, found 80 bytes: the file is "
        r"longer than its header says",
    ):
        read_idx(path)


def test_cut_gzip_stream(tmp_path):
    path = tmp_path / "cut.gz"
    path.write_bytes(gzip.compress(_raw_idx(_images()))[:-12])
    with pytest.raises(
        DataFormatError,
        match=r"cut\.gz: starts like a gzip file but cannot be "
        r"decompressed",
    ):
        read_idx(path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty"
    path.write_bytes(b"")
    with pytest.raises(DataFormatError, match="found only 0 bytes"):
        read_idx(path)


def test_count_mismatch(tmp_path):
    write_idx(tmp_path / "img", _images(n=3))
    write_idx(tmp_path / "lab", np.zeros(4, dtype=np.uint8))
    with pytest.raises(DataFormatError, match=r"img holds 3 images but .*lab holds 4 labels"):
        read_idx_pair(tmp_path / "img", tmp_path / "lab")


def test_pair_ok(tmp_path):
    write_idx(tmp_path / "img.gz", _images(n=2))
    write_idx(tmp_path / "lab", np.array([1, 2], dtype=np.uint8))
    images, labels = read_idx_pair(tmp_path / "img.gz", tmp_path / "lab")
    assert images.shape == (2, 4, 5) and labels.tolist() == [1, 2]
    assert read_idx(tmp_path / "lab", LABELS_MAGIC).tolist() == [1, 2]


def test_write_rejects_out_of_range(tmp_path):
    with pytest.raises(ValueError, match=r"expected values in 0\.\.255, found 0\.\.300"):
        write_idx(tmp_path / "x", np.array([0, 300]))
