"""Fuzzing the readers of untrusted files, with fixed seeds.

1. cnnlab's safetensors reader against the reference ``safetensors`` package on headers
   built to probe the format's corners: both accept (with the same arrays) or both refuse.
2. The model-file loader, the IDX and CIFAR parsers, tar extraction and the image loader on
   mutated files, in a child process whose address space is limited (``RLIMIT_AS``): every
   outcome must be a result or a documented error; a ``MemoryError`` or any other exception
   is a failure.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnlab.io import ModelFileError
from cnnlab.io import safetensors as ours

official = pytest.importorskip("safetensors.numpy", reason="the reference reader to compare with")
from safetensors import safe_open  # noqa: E402  (after the skip)

SIZES = {"F32": 4, "U8": 1, "BOOL": 1, "C64": 8, "F64": 8, "I64": 8, "BF16": 2, "F16": 2}

_dtype_text = st.one_of(
    st.sampled_from([f'"{d}"' for d in SIZES] + ['"X"', '"f32"', "null", "3", '["F32"]']),
    st.sampled_from(['{"F32":null}', '{"F32":[]}', '{"F32":null,"U8":null}']),
)
_count = st.one_of(st.integers(0, 3), st.sampled_from(["-1", "-0", "1e0", "1.0", "true",
                                                       str(2**64), str(2**63)]))
_space = st.sampled_from(["", " ", "\n", "\t", "\r\n ", "\x0c", "\x00"])
_key = st.sampled_from(['"a"', '"b"', '"__metadata__"', '"\\udcff"', '"\\ud83d\\ude00"', '""'])
_metadata = st.sampled_from(['null', '0', '[]', '{}', '""', 'false', '{"k":"v"}', '{"k":1}',
                             '{"k":"v","k":"w"}', '{"k":NaN}', '{"k":"\\udcff"}',
                             '{"k":null}'])


@st.composite
def _headers(draw):
    """(header text, data bytes) with tensors laid out back to back, then perturbed."""
    entries, position = [], 0
    for _ in range(draw(st.integers(0, 3))):
        dtype = draw(_dtype_text)
        dims = draw(st.one_of(st.lists(_count, max_size=3),
                              st.sampled_from([[1] * 33, [1] * 64, [1] * 65, [0, 2**62]])))
        size = SIZES.get(dtype.strip('"'), 4)
        n = 1
        for d in dims:
            n *= d if isinstance(d, int) else 1
        begin, end = position, position + n * size
        if draw(st.integers(0, 9)) == 0:
            begin, end = draw(st.integers(0, 12)), draw(st.integers(0, 12))
        position = max(position, end)
        shape = "[" + ",".join(str(d) for d in dims) + "]"
        fields = [f'"dtype":{dtype}', f'"shape":{shape}', f'"data_offsets":[{begin},{end}]']
        form = draw(st.integers(0, 9))
        if form == 0:
            value = "[" + ",".join(f.split(":", 1)[1] for f in fields) + "]"
        elif form == 1:
            value = "[" + ",".join(f.split(":", 1)[1] for f in fields[:2]) + "]"
        else:
            extra = draw(st.sampled_from(["", ',"x":1', ',"x":-1', ',"shape":[1]', ',"x":NaN',
                                          ',"x":"\\udcff"', ',"x":[[[[]]]]']))
            value = "{" + ",".join(fields) + extra + "}"
        entries.append((draw(_key), value))
    if draw(st.booleans()):
        entries.insert(draw(st.integers(0, len(entries))), ('"__metadata__"', draw(_metadata)))
    if draw(st.integers(0, 19)) == 0:
        entries.append(('"deep"', "[" * 126 + "]" * 126))
    body = ",".join(f"{k}:{v}" for k, v in entries)
    text = draw(_space) + "{" + body + "}" + draw(st.sampled_from(["", "   ", "\n", " x"]))
    data = bytes(range(256)) * (position // 256 + 1)
    data = data[:position + draw(st.sampled_from([0, 0, 0, 1, -1]))] if position else b""
    return text, data


def _file(text: str, data: bytes) -> bytes:
    raw = text.encode("utf-8", "surrogatepass")
    return struct.pack("<Q", len(raw)) + raw + data


def _official(blob: bytes, tmp: Path):
    try:
        arrays = official.load(blob)
        tmp.write_bytes(blob)
        with safe_open(str(tmp), framework="np") as f:
            metadata = f.metadata() or {}
    except Exception:  # noqa: BLE001 - any refusal of the reference reader counts
        return None
    return arrays, metadata


@given(_headers())
@settings(max_examples=400, deadline=None, derandomize=True, database=None)
def test_safetensors_reader_agrees_with_the_reference_package(tmp_path_factory, case):
    blob = _file(*case)
    theirs = _official(blob, tmp_path_factory.mktemp("st") / "f.safetensors")
    try:
        mine = ours.load_file_with_metadata(_write(tmp_path_factory, blob))
    except ModelFileError:
        mine = None
    assert (theirs is None) == (mine is None), (case, theirs, mine)
    if theirs is None:
        return
    (their_arrays, their_meta), (my_arrays, my_meta) = theirs, mine
    assert my_meta == their_meta
    assert sorted(my_arrays) == sorted(their_arrays)
    for name, theirs_a in their_arrays.items():
        mine_a = my_arrays[name]
        assert mine_a.shape == theirs_a.shape
        if theirs_a.dtype == bool:  # the reference keeps the raw byte; cnnlab maps it to 0/1
            np.testing.assert_array_equal(mine_a, theirs_a.view(np.uint8) != 0)
        else:
            assert mine_a.dtype == theirs_a.dtype
            assert mine_a.tobytes() == theirs_a.tobytes()


def _write(factory, blob: bytes) -> Path:
    path = factory.mktemp("ours") / "f.safetensors"
    path.write_bytes(blob)
    return path


@pytest.mark.parametrize("text, accepted", [
    (' {"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', True),
    ('{"__metadata__":0}', False),
    ('{"__metadata__":[]}', False),
    ('{"__metadata__":null}', True),
    ('{"a":{"dtype":"F32","shape":[' + ",".join(["1"] * 33) + '],"data_offsets":[0,4]}}', True),
    ('{"a":{"dtype":"C64","shape":[1],"data_offsets":[0,8]}}', True),
    ('{"a":{"dtype":"F32","dtype":"F32","shape":[1],"data_offsets":[0,4]}}', False),
    ('{"__metadata__":{},"__metadata__":{}}', False),
])
def test_the_corners_where_the_readers_used_to_disagree(text, accepted, tmp_path):
    blob = _file(text, bytes(8 if "C64" in text else (4 if "F32" in text else 0)))
    assert (_official(blob, tmp_path / "r.safetensors") is not None) == accepted
    path = tmp_path / "f.safetensors"
    path.write_bytes(blob)
    if accepted:
        ours.load_file(path)
    else:
        with pytest.raises(ModelFileError):
            ours.load_file(path)


# ----------------------------------------------------------------------------- memory-limited

FUZZ = textwrap.dedent(r"""
    import gzip, io, json, os, random, resource, struct, sys, tarfile, tempfile, traceback
    LIMIT = int(sys.argv[1])
    resource.setrlimit(resource.RLIMIT_AS, (LIMIT, LIMIT))
    import numpy as np
    from PIL import Image
    import cnnlab
    from cnnlab import arch, io as cio
    from cnnlab.budget import TooLargeError
    from cnnlab.data import DataFormatError, load_image, read_idx, safe_extract_tar
    from cnnlab.data.cifar import read_cifar_bin
    from cnnlab.io import ModelFileError

    rng = random.Random(20261128)
    work = tempfile.mkdtemp()
    outcomes, failures = {}, []

    def attempt(kind, fn, allowed, case):
        try:
            fn()
            key = "ok"
        except allowed as exc:
            key = type(exc).__name__
        except BaseException as exc:  # MemoryError, a raw ValueError, anything else
            key = "FAIL " + type(exc).__name__
            failures.append({"kind": kind, "case": case, "error": repr(exc)[:300],
                             "where": traceback.format_exc().splitlines()[-3:]})
        outcomes[kind + " " + key] = outcomes.get(kind + " " + key, 0) + 1

    def mutate(data, n=3):
        data = bytearray(data)
        for _ in range(rng.randint(1, n)):
            op = rng.random()
            if op < 0.5 and data:
                data[rng.randrange(len(data))] = rng.randrange(256)
            elif op < 0.7:
                data = data[:rng.randrange(len(data) + 1)]
            elif op < 0.85:
                data += bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
            elif len(data) > 8:  # a big number somewhere
                i = rng.randrange(len(data) - 4)
                data[i:i + 4] = rng.choice([b"\xff\xff\xff\xff", b"\x7f\xff\xff\xff",
                                            b"\x00\x01\x00\x00", b"9999"])
        return bytes(data)

    def path_with(data, name):
        path = os.path.join(work, name)
        with open(path, "wb") as f:
            f.write(data)
        return path

    # model files: byte mutations, and specs that declare huge models and inputs
    cnnlab.manual_seed(0)
    model = arch.build("conv3x3x4p1-bn-relu-pool2-fc3", (1, 8, 8))
    good = cio.save_model(model, os.path.join(work, "good.safetensors"))
    base = open(good, "rb").read()
    tensors = model.state_dict()
    for i in range(int(sys.argv[2])):
        if i % 3:
            data = mutate(base, 6)
        else:
            spec = {"arch": rng.choice(["fc10", "conv3x3x4p1-bn-relu-pool2-fc3",
                                        "conv3x3x100000-fc10", "fc1000000", "conv1x1x1-gap-fc3",
                                        "conv3x3x4p1-bn-relu-pool2-fc3-fc1000000"]),
                    "input_shape": [rng.choice([1, 3, 1000]),
                                    rng.choice([8, 64, 8000, 10**6, 10**7]),
                                    rng.choice([8, 64, 8000, 10**6])]}
            meta = {"format": "cnnlab-model", "format_version": "1", "spec": json.dumps(spec)}
            from cnnlab.io import safetensors as st
            data = st.save(tensors if rng.random() < 0.5 else {}, meta)
        path = path_with(data, "m.safetensors")
        attempt("model", lambda: cnnlab.io.load_model(path), (ModelFileError,), i)

    # IDX files, raw and gzip, with lying dimensions and trailing data
    images = np.arange(5 * 6 * 7, dtype=np.uint8).reshape(5, 6, 7)
    raw = bytes([0, 0, 8, 3]) + np.asarray(images.shape, ">u4").tobytes() + images.tobytes()
    for i in range(int(sys.argv[3])):
        data = mutate(raw[:16], 2) + raw[16:] if i % 2 else mutate(raw, 3)
        if i % 5 == 0:  # a bomb: the declared images, then megabytes of zeros
            data = raw + bytes(rng.choice([1, 8, 32]) << 20)
        if i % 3 == 0:
            data = gzip.compress(data, 1)
            data = mutate(data, 1) if i % 7 == 0 else data
        path = path_with(data, "images-idx3-ubyte")
        attempt("idx", lambda: read_idx(path), (DataFormatError,), i)

    # CIFAR batches and archives
    record = bytes([3]) + bytes(3072)
    for i in range(int(sys.argv[4])):
        path = path_with(mutate(record * 2, 2), "data_batch_1.bin")
        attempt("cifar", lambda: read_cifar_bin(path), (DataFormatError,), i)
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            for j in range(rng.randint(1, 4)):
                info = tarfile.TarInfo(rng.choice(["a", "a/b", "b", "../x", "/abs", "c/d/e"]))
                body = bytes(rng.choice([0, 10, 3073]))
                info.size = len(body)
                if rng.random() < 0.2:
                    info.type = tarfile.DIRTYPE
                    info.size = 0
                    body = b""
                tar.addfile(info, io.BytesIO(body))
        data = buffer.getvalue() if i % 2 else mutate(buffer.getvalue(), 2)
        path = path_with(data, "cifar-10-binary.tar.gz")
        out = tempfile.mkdtemp(dir=work)
        attempt("tar", lambda: safe_extract_tar(path, out), (DataFormatError,), i)

    # images: byte mutations, and headers that declare enormous sizes
    pictures = []
    for fmt in ("PNG", "JPEG", "BMP", "GIF"):
        buffer = io.BytesIO()
        Image.new("L" if fmt != "JPEG" else "RGB", (12, 10), 128).save(buffer, format=fmt)
        pictures.append((fmt, buffer.getvalue()))
    for i in range(int(sys.argv[5])):
        fmt, data = pictures[i % len(pictures)]
        data = bytearray(mutate(data, 2))
        if fmt == "PNG" and i % 3 == 0 and len(data) > 24:  # IHDR width and height
            data[16:24] = struct.pack(">II", rng.choice([9000, 12000, 40000, 2**31 - 1]),
                                      rng.choice([9000, 12000, 40000]))
        path = path_with(bytes(data), "picture." + fmt.lower())
        attempt("image", lambda: load_image(path, channels=1, size=(8, 8)),
                (DataFormatError, TooLargeError), i)

    print(json.dumps({"outcomes": outcomes, "failures": failures[:10],
                      "failed": len(failures)}))
""")


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_AS as Linux counts it")
def test_hostile_files_under_a_memory_limit_give_documented_errors(tmp_path):
    pytest.importorskip("PIL")
    script = tmp_path / "fuzz.py"
    script.write_text(FUZZ)
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "CNNLAB_NUM_THREADS": "1",
           "OMP_NUM_THREADS": "1"}
    limit = 3 << 30
    result = subprocess.run([sys.executable, str(script), str(limit), "150", "150", "40", "120"],
                            capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["failed"] == 0, json.dumps(report, indent=1)
    counts = report["outcomes"]
    assert sum(counts.values()) == 150 + 150 + 80 + 120
    # Each reader saw both good files and refused ones.
    for kind in ("model", "idx", "cifar", "tar", "image"):
        seen = {k.split(" ", 1)[1] for k in counts if k.startswith(kind + " ")}
        assert len(seen) >= 2, (kind, counts)
