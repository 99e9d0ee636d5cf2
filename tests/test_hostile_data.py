"""Data files that lie about their size: gzip bombs, overflowing dimensions, archives that
unpack to too much, servers that never stop, images just under Pillow's bomb limit."""

from __future__ import annotations

import gzip
import http.server
import io
import os
import tarfile
import threading
import tracemalloc
import zlib

import numpy as np
import pytest

import cnnlab
from cnnlab import budget
from cnnlab.budget import TooLargeError
from cnnlab.data import (
    CIFAR10,
    ChecksumError,
    DataFormatError,
    ImageFolder,
    load_image,
    read_idx,
    safe_extract_tar,
    write_idx,
)
from cnnlab.data import download as dl
from cnnlab.data.idx import IMAGES_MAGIC, read_bytes


def _traced(fn):
    tracemalloc.start()
    try:
        fn()
        error = None
    except Exception as exc:  # noqa: BLE001 - returned for the test to check
        error = exc
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return error, peak


def _idx_header(dims):
    return bytes([0, 0, 8, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims)


def _gzip_stream(head: bytes, zeros: int) -> bytes:
    """gzip of ``head`` followed by ``zeros`` zero bytes, made without holding them."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: gzip container
    parts = [packer.compress(head)]
    block = bytes(1 << 20)
    for _ in range(zeros >> 20):
        parts.append(packer.compress(block))
    parts.append(packer.compress(bytes(zeros & ((1 << 20) - 1))))
    parts.append(packer.flush())
    return b"".join(parts)


# ----------------------------------------------------------------------------- IDX


def test_a_gzip_bomb_is_stopped_at_the_first_byte_past_the_declared_size(tmp_path):
    # 128 MB of zeros after a header that declares 60 bytes: about 130 KB on disk.
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(_gzip_stream(_idx_header((3, 4, 5)), 128 << 20))
    assert path.stat().st_size < 1 << 20
    error, peak = _traced(lambda: read_idx(path, IMAGES_MAGIC))
    assert isinstance(error, DataFormatError)
    assert "the data goes on past them: the file is longer than its header says" in str(error)
    assert peak < 8 << 20


def test_a_header_that_declares_more_than_gzip_can_hold_is_refused_before_reading(tmp_path):
    path = tmp_path / "images.gz"
    path.write_bytes(gzip.compress(_idx_header((60000, 28, 28)) + bytes(100)))
    error, peak = _traced(lambda: read_idx(path))
    assert isinstance(error, DataFormatError)
    assert "the header declares shape (60000, 28, 28), 47,040,016 bytes, but a gzip file of" \
        in str(error)
    assert peak < 1 << 20


@pytest.mark.parametrize("compress", [False, True])
def test_dimension_products_that_overflow_64_bits_are_reported_exactly(tmp_path, compress):
    dims = (2**32 - 1,) * 3
    raw = _idx_header(dims) + bytes(8)
    path = tmp_path / "huge"
    path.write_bytes(gzip.compress(raw) if compress else raw)
    with pytest.raises(DataFormatError) as info:
        read_idx(path)
    message = str(info.value)
    declared = 16 + (2**32 - 1) ** 3
    if compress:
        assert f"{declared:,} bytes, but a gzip file of" in message
    else:
        assert f"so expected {declared} bytes, found 24 bytes: the file is truncated" in message
    assert "-" not in message.split(":")[-1]  # no negative sizes from an overflow


def test_read_bytes_refuses_more_than_its_limit(tmp_path):
    path = tmp_path / "blob.gz"
    path.write_bytes(_gzip_stream(b"", 4 << 20))
    assert len(read_bytes(path, limit=8 << 20)) == 4 << 20
    with pytest.raises(DataFormatError, match=r"more than the 1,048,576-byte limit"):
        read_bytes(path, limit=1 << 20)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")
def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "train-images-idx3-ubyte"
    os.mkfifo(fifo)
    outcome = []
    worker = threading.Thread(target=lambda: outcome.append(_traced(lambda: read_idx(fifo))),
                              daemon=True)
    worker.start()
    worker.join(timeout=20)
    assert outcome and isinstance(outcome[0][0], DataFormatError)
    assert "not a regular file" in str(outcome[0][0])


def test_real_idx_files_still_load(tmp_path):
    x = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    for name in ("a", "b.gz"):
        write_idx(tmp_path / name, x)
        np.testing.assert_array_equal(read_idx(tmp_path / name), x)


# ----------------------------------------------------------------------------- archives


def _tar_gz(members) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_a_cifar_archive_with_a_file_and_a_folder_of_one_name(tmp_path):
    archive = tmp_path / "cifar-10-binary.tar.gz"
    archive.write_bytes(_tar_gz([("cifar-10-batches-bin", b"oops"),
                                 ("cifar-10-batches-bin/test_batch.bin", bytes(3073))]))
    with pytest.raises(DataFormatError, match=r"'cifar-10-batches-bin' is both a file \(member "
                                              r"'cifar-10-batches-bin'\) and a folder"):
        CIFAR10(root=tmp_path, train=False)
    assert sorted(os.listdir(tmp_path)) == ["cifar-10-binary.tar.gz"]  # nothing left behind


def test_an_archive_that_unpacks_to_too_much_is_refused_before_decompressing(tmp_path):
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(_tar_gz([("big.bin", bytes(16 << 20))]))
    out = tmp_path / "out"
    with pytest.raises(DataFormatError, match=r"unpack to more than 1,048,576 bytes"):
        safe_extract_tar(archive, out, max_bytes=1 << 20)
    assert list(out.iterdir()) == []
    # A header that claims 10 GB in a file of a few hundred bytes: refused by gzip's ratio.
    info = tarfile.TarInfo("claims-ten-gigabytes")
    info.size = 10 * 10**9
    header = info.tobuf(tarfile.GNU_FORMAT)  # the header alone: the data never follows
    liar = tmp_path / "liar.tar.gz"
    liar.write_bytes(gzip.compress(header + bytes(1024)))
    error, peak = _traced(lambda: safe_extract_tar(liar, out))
    assert isinstance(error, DataFormatError) and "unpack to more than" in str(error)
    assert peak < 4 << 20
    many = tmp_path / "many.tar.gz"
    many.write_bytes(_tar_gz([(f"f{i}", b"x") for i in range(5)]))
    with pytest.raises(DataFormatError, match=r"holds more than 3 members"):
        safe_extract_tar(many, out, max_members=3)


def test_cifar_batch_files_are_size_checked_before_reading(tmp_path):
    from cnnlab.data.cifar import read_cifar_bin

    path = tmp_path / "data_batch_1.bin"
    path.write_bytes(bytes(3073 * 2 + 5))
    with pytest.raises(DataFormatError, match=r"found 6151 bytes \(2 records and 5 bytes left"):
        read_cifar_bin(path)


# ----------------------------------------------------------------------------- downloads


class _Endless(http.server.BaseHTTPRequestHandler):
    announce: int | None = None

    def do_GET(self):  # noqa: N802 - the http.server name
        self.send_response(200)
        if self.announce is not None:
            self.send_header("Content-Length", str(self.announce))
        self.end_headers()
        block = bytes(64 << 10)
        try:
            for _ in range(100_000):  # 6.5 GB if nobody stops reading
                self.wfile.write(block)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, *args):
        pass


@pytest.fixture
def endless_server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Endless)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    yield httpd, f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


def test_a_server_that_never_stops_cannot_fill_the_disk(endless_server, tmp_path):
    httpd, url = endless_server
    resource = dl.Resource("x.gz", md5="0" * 32, size=100_000)
    with pytest.raises(ChecksumError, match=r"size: expected 100000 bytes, the server sent more "
                                            r"than 100000 bytes; stopped reading"):
        dl.download_file(resource, tmp_path, [url], log=None)
    assert os.listdir(tmp_path) == []
    _Endless.announce = 10**12
    try:
        with pytest.raises(ChecksumError, match=r"the server announces 1000000000000 bytes"):
            dl.download_file(resource, tmp_path, [url], log=None)
    finally:
        _Endless.announce = None


# ----------------------------------------------------------------------------- images


def _png(path, size, mode="L"):
    from PIL import Image

    Image.new(mode, size).save(path)
    return path


def test_images_above_the_bomb_warning_are_refused_before_decoding(tmp_path, monkeypatch):
    from PIL import Image

    folder = tmp_path / "data" / "a"
    folder.mkdir(parents=True)
    _png(folder / "big.png", (40, 40))  # 1600 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # warns above 1000, fails above 2000
    with pytest.raises(DataFormatError, match=r"big\.png: the image declares more pixels than "
                                              r"Pillow's safety limit of 1,000"):
        ImageFolder(tmp_path / "data")
    with pytest.raises(DataFormatError, match=r"decompression bomb"):
        load_image(folder / "big.png")


def test_a_folder_whose_pixels_cannot_fit_is_refused_with_the_figure(tmp_path, monkeypatch):
    folder = tmp_path / "data" / "a"
    folder.mkdir(parents=True)
    for i in range(4):
        _png(folder / f"{i}.png", (300, 200))
    monkeypatch.setattr(budget, "memory_limit", lambda: 1 << 20)
    error, peak = _traced(lambda: ImageFolder(tmp_path / "data"))
    assert isinstance(error, TooLargeError)
    assert "ImageFolder " in str(error) and "4 images of 1x200x300 would need 1.1 MiB, more " \
        "than the 1.0 MiB of memory" in str(error)
    assert "pass size=(height, width)" in str(error)
    assert peak < 512 << 10  # refused from the headers: no image was decoded
    small = ImageFolder(tmp_path / "data", size=(20, 30))
    assert small.images.shape == (4, 1, 20, 30)


def test_a_large_jpeg_resized_small_is_decoded_at_a_reduced_scale(tmp_path, monkeypatch):
    from PIL import Image

    folder = tmp_path / "data" / "a"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (800, 640, 3), dtype=np.uint8)).save(folder / "p.jpg")
    decoded = []
    resize = Image.Image.resize

    def spy(self, size, *args, **kwargs):
        decoded.append(self.size)
        return resize(self, size, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "resize", spy)
    data = ImageFolder(tmp_path / "data", size=(28, 28))
    assert data.images.shape == (1, 3, 28, 28)
    assert decoded == [(80, 100)]  # decoded at 1/8 scale, not 640x800


def test_folder_names_that_are_not_utf8_become_printable_class_names(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    odd = os.path.join(os.fsencode(root), b"caf\xe9")  # Latin-1, not UTF-8
    os.mkdir(odd)
    _png(os.fsdecode(os.path.join(odd, b"0.png")), (4, 4))
    (root / "tea").mkdir()
    _png(root / "tea" / "0.png", (4, 4))
    data = ImageFolder(root)
    assert data.classes == ["caf\\xe9", "tea"]
    model = cnnlab.arch.build("fc2", (1, 4, 4))
    cnnlab.io.save_model(model, tmp_path / "m.safetensors", meta={"classes": data.classes})
    assert cnnlab.io.load_model(tmp_path / "m.safetensors").spec["classes"] == ["caf\\xe9", "tea"]
    again = ImageFolder(root, classes=data.classes)  # the saved names find the folders
    assert len(again) == 2


# ----------------------------------------------------------------------------- model input


def test_integer_images_are_refused_at_the_first_layer(seeded):
    model = cnnlab.arch.build("digits")
    with pytest.raises(TypeError, match=r"layer 0: Conv2d\(1, 16.*conv2d expected floating-point "
                                        r"input \(float32\), got uint8 input of shape "
                                        r"\(2, 1, 8, 8\); convert it first"):
        model(cnnlab.Tensor(np.zeros((2, 1, 8, 8), np.uint8)))
    pooled = cnnlab.arch.build("pool2-fc3", (1, 4, 4))  # a layer without weights comes first
    with pytest.raises(TypeError, match=r"layer 0: MaxPool2d.*max_pool2d expected "
                                        r"floating-point input, got int64 input"):
        pooled(cnnlab.Tensor(np.zeros((2, 1, 4, 4), np.int64)))


@pytest.mark.parametrize("name", ["digits", "lenet5", "cifar-small"])
def test_an_empty_batch_gives_an_empty_output(name, seeded):
    model = cnnlab.arch.build(name).eval()
    c, h, w = model.spec["input_shape"]
    with cnnlab.no_grad():
        out = model(cnnlab.Tensor(np.zeros((0, c, h, w), np.float32)))
    assert out.shape == (0, 10)
    assert cnnlab.nn.functional.flatten(cnnlab.Tensor(np.zeros((0, 3, 2)))).shape == (0, 6)
