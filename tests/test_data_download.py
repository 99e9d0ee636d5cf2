"""Downloads through a real HTTP server on 127.0.0.1, and safe tar extraction."""

import functools
import gzip
import hashlib
import http.server
import io
import socket
import tarfile
import threading

import numpy as np
import pytest

from cnnlab.data import (
    CIFAR10,
    MNIST,
    ChecksumError,
    DownloadError,
    UnsafeArchiveError,
    safe_extract_tar,
    write_idx,
)
from cnnlab.data import download as dl


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep test output clean
        pass


@pytest.fixture
def server(tmp_path):
    """Serve tmp_path/'served' on 127.0.0.1; yield (folder, base URL)."""
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(QuietHandler, directory=str(served))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    yield served, f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


@pytest.fixture
def refused_url():
    """A URL on a local port where nothing listens."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def resource_for(path, **overrides):
    data = path.read_bytes()
    fields = dict(
        filename=path.name,
        md5=hashlib.md5(data).hexdigest(),
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
    )
    fields.update(overrides)
    return dl.Resource(**fields)


def test_download_success(server, tmp_path):
    served, url = server
    (served / "a.bin").write_bytes(b"x" * 3_000_000)  # several chunks
    dest = tmp_path / "dest"
    lines = []
    path = dl.download_file(resource_for(served / "a.bin"), dest, [url], log=lines.append)
    assert path == dest / "a.bin" and path.read_bytes() == b"x" * 3_000_000
    assert sorted(p.name for p in dest.iterdir()) == ["a.bin"]  # no temporary file left
    assert lines[0] == f"downloading {url}a.bin" and "verified" in lines[-1]


def test_falls_back_to_next_mirror(server, tmp_path):
    served, url = server
    (served / "mirror2").mkdir()
    (served / "mirror2" / "a.bin").write_bytes(b"payload")
    res = resource_for(served / "mirror2" / "a.bin")
    path = dl.download_file(res, tmp_path / "d", [url + "mirror1", url + "mirror2/"], log=None)
    assert path.read_bytes() == b"payload"


def test_checksum_mismatch_leaves_nothing(server, tmp_path):
    served, url = server
    (served / "a.bin").write_bytes(b"tampered")
    res = resource_for(served / "a.bin", md5="0" * 32, sha256="1" * 64, size=None)
    dest = tmp_path / "dest"
    with pytest.raises(ChecksumError) as info:
        dl.download_file(res, dest, [url], log=None)
    message = str(info.value)
    assert f"{url}a.bin: checksum mismatch" in message
    assert "MD5: expected " + "0" * 32 + ", got " + hashlib.md5(b"tampered").hexdigest() in message
    assert "SHA-256: expected " + "1" * 64 in message
    assert list(dest.iterdir()) == []


def test_decompressed_checksum_checked(server, tmp_path):
    served, url = server
    (served / "f.gz").write_bytes(gzip.compress(b"content"))
    res = resource_for(served / "f.gz", payload_sha256="2" * 64)
    with pytest.raises(ChecksumError, match="decompressed content: expected 2222"):
        dl.download_file(res, tmp_path / "d", [url], log=None)
    assert list((tmp_path / "d").iterdir()) == []


def test_connection_refused_lists_urls_and_files(refused_url, tmp_path):
    bases = [refused_url + "one/", refused_url + "two/"]
    dest = tmp_path / "dest"
    with pytest.raises(DownloadError) as info:
        dl.fetch(
            "mnist",
            ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"],
            dest,
            base_urls=bases,
            log=None,
            timeout=5,
        )
    message = str(info.value)
    assert not isinstance(info.value, ChecksumError)
    for base in bases:
        assert f"{base}t10k-images-idx3-ubyte.gz: " in message  # each URL tried, with reason
    assert f"Put these files into {dest}" in message
    assert "  t10k-images-idx3-ubyte.gz, from one of:" in message
    assert f"\n      {bases[1]}t10k-labels-idx1-ubyte.gz" in message
    assert "--data-dir" in message
    assert [p for p in dest.iterdir()] == []


def test_mnist_download_end_to_end(server, tmp_path, monkeypatch):
    served, url = server
    rng = np.random.default_rng(0)
    write_idx(served / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (4, 28, 28)))
    write_idx(served / "t10k-labels-idx1-ubyte.gz", np.array([3, 1, 4, 1]))
    table = {}
    for name in ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]:
        payload = gzip.decompress((served / name).read_bytes())
        table[name] = resource_for(
            served / name, payload_sha256=hashlib.sha256(payload).hexdigest()
        )
    monkeypatch.setitem(dl.RESOURCES, "mnist", table)
    monkeypatch.setitem(dl.MIRRORS, "mnist", [url])
    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path / "cache"))
    ds = MNIST(train=False, download=True)
    assert ds.labels.tolist() == [3, 1, 4, 1]
    assert ds.root == tmp_path / "cache" / "mnist"
    # Second time: found on disk, nothing is fetched (the server is no longer needed).
    monkeypatch.setitem(dl.MIRRORS, "mnist", [])
    assert len(MNIST(train=False, download=True)) == 4


def test_cifar_download_end_to_end(server, tmp_path, monkeypatch):
    served, url = server
    n = 2
    rec = np.zeros((n, 3073), np.uint8)
    rec[:, 0] = [7, 2]
    with tarfile.open(served / "cifar-10-binary.tar.gz", "w:gz") as tar:
        for name in ["test_batch.bin", "batches.meta.txt"]:
            data = rec.tobytes() if name.endswith(".bin") else b"a\nb\n"
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    res = resource_for(served / "cifar-10-binary.tar.gz")
    monkeypatch.setitem(dl.RESOURCES, "cifar10", {res.filename: res})
    monkeypatch.setitem(dl.MIRRORS, "cifar10", [url])
    ds = CIFAR10(root=tmp_path / "c", train=False, download=True)
    assert ds.labels.tolist() == [7, 2] and ds.images.shape == (2, 3, 32, 32)
    assert ds.notes and "lists 2 class names" in ds.notes[0]
    assert ds.classes[7] == "horse"


def make_tar(path, member, data=b"evil"):
    with tarfile.open(path, "w") as tar:
        good = tarfile.TarInfo("ok/file.txt")
        good.size = 2
        tar.addfile(good, io.BytesIO(b"ok"))
        if member.isreg():
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
        else:
            tar.addfile(member)


def _member(name, kind=tarfile.REGTYPE, linkname=""):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info


@pytest.mark.parametrize(
    ("member", "match"),
    [
        (_member("../escape.txt"), r"'\.\./escape\.txt' points outside"),
        (_member("ok/../../escape.txt"), "points outside"),
        (_member("/tmp/abs.txt"), "has an absolute path"),
        (_member("link", tarfile.SYMTYPE, "/etc/passwd"), r"is a link to '/etc/passwd'"),
        (_member("hard", tarfile.LNKTYPE, "ok/file.txt"), "is a link to"),
        (_member("dev", tarfile.CHRTYPE), "is a device, FIFO or other special file"),
        (_member("fifo", tarfile.FIFOTYPE), "is a device, FIFO"),
    ],
)
def test_unsafe_tar_refused(tmp_path, member, match):
    archive = tmp_path / "bad.tar"
    make_tar(archive, member)
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(UnsafeArchiveError, match=match):
        safe_extract_tar(archive, dest)
    assert list(dest.iterdir()) == []  # checked before anything is written
    assert not (tmp_path / "escape.txt").exists()


def test_safe_tar_extracts_regular_files(tmp_path):
    archive = tmp_path / "good.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.addfile(_member("folder", tarfile.DIRTYPE))
        info = tarfile.TarInfo("folder/a.txt")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"hello"))
    written = safe_extract_tar(archive, tmp_path / "out")
    assert written == [tmp_path / "out" / "folder" / "a.txt"]
    assert written[0].read_bytes() == b"hello"
