"""Model files, checkpoints, the safetensors reader/writer and atomic writes."""

import json
import os
import pickle
import struct
import zipfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cnnlab
from cnnlab import arch, io
from cnnlab.io import ModelFileError, safetensors
from cnnlab.io.atomic import atomic_write
from cnnlab.io.checkpoint import _decode, _encode

LENET = arch.PRESETS["lenet5"]


def _raw_file(path, header, data=b"", length=None):
    """A safetensors file with a hand-made header (to build broken files)."""
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    size = len(text) if length is None else length
    path.write_bytes(struct.pack("<Q", size) + text + data)
    return path


def _entry(dtype, shape, begin, end):
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


# ----------------------------------------------------------------------------- safetensors

ALL_DTYPES = [
    "bool",
    "uint8",
    "int8",
    "uint16",
    "int16",
    "float16",
    "uint32",
    "int32",
    "float32",
    "uint64",
    "int64",
    "float64",
]


def _sample_arrays():
    rng = np.random.default_rng(0)
    arrays = {name: (rng.standard_normal((3, 4)) * 50).astype(name) for name in ALL_DTYPES}
    arrays["bool"] = rng.random((5,)) > 0.5
    arrays["scalar"] = np.array(3.5, dtype=np.float64)
    arrays["empty"] = np.zeros((0, 3), dtype=np.float32)
    arrays["strided"] = np.arange(24, dtype=np.float32).reshape(4, 6)[:, ::2]
    arrays["big_endian"] = np.arange(5, dtype=">i4")
    return arrays


def test_round_trip_every_dtype(tmp_path):
    arrays = _sample_arrays()
    path = tmp_path / "all.safetensors"
    safetensors.save_file(arrays, path, {"note": "hello", "ünï": "cödé"})
    loaded, meta = safetensors.load_file_with_metadata(path)
    assert meta == {"note": "hello", "ünï": "cödé"}
    assert list(loaded) == list(arrays)  # the caller's order is kept
    for name, array in arrays.items():
        assert loaded[name].shape == array.shape
        assert loaded[name].dtype == array.dtype.newbyteorder("=")
        np.testing.assert_array_equal(loaded[name], array)
        assert loaded[name].flags.writeable
    assert safetensors.load(safetensors.save(arrays)).keys() == arrays.keys()


def test_header_is_padded_and_tensors_are_aligned(tmp_path):
    path = tmp_path / "a.safetensors"
    safetensors.save_file(
        {"a": np.zeros(3, np.uint8), "b": np.zeros(2, np.float64), "c": np.zeros(1, np.int32)}, path
    )
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    assert length % 8 == 0
    header = json.loads(raw[8 : 8 + length])
    itemsize = {"U8": 1, "I32": 4, "F64": 8}
    for info in header.values():
        assert info["data_offsets"][0] % itemsize[info["dtype"]] == 0
    assert [header[n]["data_offsets"][0] for n in "bca"] == [0, 16, 20]


def test_writer_rejects_what_the_format_cannot_hold(tmp_path):
    path = tmp_path / "x.safetensors"
    with pytest.raises(ValueError, match=r"cannot store tensor 'z' of dtype complex128"):
        safetensors.save_file({"z": np.zeros(2, np.complex128)}, path)
    with pytest.raises(ValueError, match=r"'__metadata__' is reserved"):
        safetensors.save_file({"__metadata__": np.zeros(2)}, path)
    with pytest.raises(ValueError, match=r"metadata must map str to str, but 'n' -> int"):
        safetensors.save_file({"a": np.zeros(2)}, path, {"n": 1})
    with pytest.raises(ValueError, match=r"tensor names must be strings"):
        safetensors.save_file({1: np.zeros(2)}, path)
    assert not path.exists()


def test_official_package_reads_our_files_and_we_read_theirs(tmp_path):
    official = pytest.importorskip("safetensors.numpy")
    arrays = _sample_arrays()
    ours = tmp_path / "ours.safetensors"
    safetensors.save_file(arrays, ours, {"k": "v"})
    theirs = official.load_file(str(ours))
    assert theirs.keys() == arrays.keys()
    for name, array in arrays.items():
        np.testing.assert_array_equal(theirs[name], array)
        assert theirs[name].dtype == array.dtype.newbyteorder("=")

    native = {
        k: np.ascontiguousarray(v, dtype=v.dtype.newbyteorder("=")) for k, v in arrays.items()
    }
    other = tmp_path / "theirs.safetensors"
    official.save_file(native, str(other), metadata={"format": "pt", "x": "y"})
    loaded, meta = safetensors.load_file_with_metadata(other)
    assert meta == {"format": "pt", "x": "y"}
    for name, array in native.items():
        np.testing.assert_array_equal(loaded[name], array)
        assert loaded[name].dtype == array.dtype


def test_official_package_reads_our_model_file(tmp_path):
    official = pytest.importorskip("safetensors")
    model = arch.build("conv3x3x4-bn-relu-fc2", (1, 5, 5))
    path = io.save_model(model, tmp_path / "model.safetensors")
    with official.safe_open(str(path), framework="np") as f:
        assert json.loads(f.metadata()["spec"])["arch"] == "conv3x3x4-bn-relu-fc2"
        np.testing.assert_array_equal(f.get_tensor("0.weight"), model[0].weight.data)


def _valid_file(tmp_path):
    path = tmp_path / "good.safetensors"
    safetensors.save_file(
        {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.arange(2, dtype=np.float32)},
        path,
    )
    return path


@pytest.mark.parametrize("keep", [0, 5, 8, 20, -4, -1])
def test_truncated_files(tmp_path, keep):
    path = _valid_file(tmp_path)
    raw = path.read_bytes()
    path.write_bytes(raw[:keep] if keep >= 0 else raw[: len(raw) + keep])
    with pytest.raises(ModelFileError) as info:
        safetensors.load_file(path)
    message = str(info.value)
    assert message.startswith(str(path) + ": ")
    assert "truncated" in message
    assert "save or download it again" in message


def test_oversized_header(tmp_path):
    path = _raw_file(
        tmp_path / "big.safetensors", {"a": _entry("U8", [1], 0, 1)}, b"x", length=10**6
    )
    with pytest.raises(
        ModelFileError,
        match=r"oversized header: the header length field says "
        r"1000000 bytes, but only \d+ bytes follow it",
    ):
        safetensors.load_file(path)
    path.write_bytes(struct.pack("<Q", 2**63) + b"{}")
    with pytest.raises(
        ModelFileError,
        match=r"oversized header: .* more than the "
        r"104857600-byte limit",
    ):
        safetensors.load_file(path)


@pytest.mark.parametrize(
    "header, data, pattern",
    [
        (b"{not json}", b"", r"invalid JSON header: Expecting property name"),
        (b"{\xff}", b"", r"invalid JSON header: not UTF-8"),
        (b"[1, 2]", b"", r"the JSON header must start with '\{'"),
        ({"a": [1]}, b"", r"invalid header entry for tensor 'a'"),
        (
            {"a": _entry("Q7", [1], 0, 1)},
            b"x",
            r"unknown dtype 'Q7' for tensor 'a'.*cnnlab "
            r"reads BOOL, U8",
        ),
        ({"a": _entry("BF16", [1], 0, 2)}, b"xx", r"unknown dtype 'BF16'.*NumPy has no bfloat16"),
        ({"a": _entry("F32", [2, -1], 0, 0)}, b"", r"invalid shape \[2, -1\] for tensor 'a'"),
        ({"a": _entry("F32", [True], 0, 4)}, b"xxxx", r"invalid shape \[true\]|invalid shape"),
        (
            {"a": {"dtype": "F32", "shape": [1], "data_offsets": [0]}},
            b"xxxx",
            r"invalid data_offsets \[0\] for tensor 'a'",
        ),
        (
            {"a": _entry("F32", [2], 0, 4)},
            b"xxxx",
            r"size mismatch for tensor 'a': shape \[2\] of F32 needs 8 bytes, but data_offsets "
            r"\[0, 4\] span 4",
        ),
        ({"a": _entry("F32", [1], 4, 0)}, b"xxxx", r"end before they begin"),
        (
            {"a": _entry("F32", [1], 0, 4), "b": _entry("F32", [1], 4, 8)},
            b"xxxx",
            r"offsets out of range for tensor 'b': data_offsets \[4, 8\] reach past the 4-byte "
            r"data section \(the file is truncated",
        ),
        (
            {"a": _entry("F32", [2], 0, 8), "b": _entry("F32", [1], 4, 8)},
            b"x" * 8,
            r"overlapping offsets: tensor 'b' starts at byte 4, inside tensor 'a'",
        ),
        (
            {"a": _entry("F32", [1], 0, 4), "b": _entry("F32", [1], 8, 12)},
            b"x" * 12,
            r"offsets do not cover the buffer: bytes 4\.\.8 before tensor 'b' belong to no tensor",
        ),
        (
            {"a": _entry("F32", [1], 0, 4)},
            b"x" * 6,
            r"offsets do not cover the buffer: 2 bytes at the end belong to no tensor",
        ),
        (
            {"a": _entry("F32", [0, 2**61, 2**61], 0, 0)},
            b"",
            r"invalid shape \[0, 2305843009213693952, 2305843009213693952\] for tensor 'a'",
        ),
        ({"a": _entry("U8", [1] * 65, 0, 1)}, b"x", r"NumPy cannot make an array of it"),
        (b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}", b"", r"nested more than 127 levels"),
        ({"__metadata__": {"a": 1}}, b"", r"invalid __metadata__: it must map strings"),
    ],
)
def test_corrupt_headers(tmp_path, header, data, pattern):
    path = _raw_file(tmp_path / "bad.safetensors", header, data)
    with pytest.raises(ModelFileError, match=pattern) as info:
        safetensors.load_file(path)
    assert str(info.value).startswith(str(path))


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ModelFileError, match=r"nope\.safetensors: no such file"):
        safetensors.load_file(tmp_path / "nope.safetensors")
    with pytest.raises(ModelFileError, match=r"is a directory"):
        safetensors.load_file(tmp_path)


@given(st.binary(max_size=200))
@settings(max_examples=300)
def test_fuzz_random_bytes_give_model_file_error(data):
    try:
        safetensors.load(data)
    except ModelFileError:
        pass


_headers = st.dictionaries(
    st.sampled_from(["a", "b", "__metadata__"]),
    st.one_of(
        st.fixed_dictionaries(
            {
                "dtype": st.sampled_from(["F32", "U8", "BOOL", "I64", "F16", "X", 3, ["F32"]]),
                "shape": st.lists(st.integers(-1, 2**63), max_size=3),
                "data_offsets": st.lists(st.integers(-1, 40), max_size=3),
            }
        ),
        st.dictionaries(st.text(max_size=2), st.text(max_size=2), max_size=2),
        st.integers(),
    ),
    max_size=3,
)


@given(_headers, st.binary(max_size=40))
@settings(max_examples=300)
def test_fuzz_headers_give_model_file_error_or_arrays(header, data):
    text = json.dumps(header).encode()
    try:
        tensors = safetensors.load(struct.pack("<Q", len(text)) + text + data)
    except ModelFileError:
        return
    assert sum(t.nbytes for t in tensors.values()) == len(data)


_GOOD = safetensors.save({"w": np.arange(6, dtype=np.float32), "i": np.arange(3)}, {"k": "v"})


@given(
    st.lists(st.tuples(st.integers(0, len(_GOOD) - 1), st.integers(0, 255)), min_size=1, max_size=4)
)
@settings(max_examples=300)
def test_fuzz_corrupted_bytes_load_or_give_model_file_error(edits):
    data = bytearray(_GOOD)
    for position, value in edits:
        data[position] = value
    try:
        tensors = safetensors.load(bytes(data))
    except ModelFileError:
        return
    assert all(isinstance(t, np.ndarray) for t in tensors.values())


# ----------------------------------------------------------------------------- atomic


def test_atomic_write_replaces_the_file(tmp_path):
    path = tmp_path / "f.txt"
    path.write_text("old")
    with atomic_write(path, "w") as f:
        f.write("new")
        assert path.read_text() == "old"  # not visible until the block ends
    assert path.read_text() == "new"
    assert os.listdir(tmp_path) == ["f.txt"]


def test_atomic_write_leaves_the_old_file_when_the_block_fails(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"old contents")
    with pytest.raises(RuntimeError, match="disk on fire"):
        with atomic_write(path) as f:
            f.write(b"half of the new")
            raise RuntimeError("disk on fire")
    assert path.read_bytes() == b"old contents"
    assert os.listdir(tmp_path) == ["f.bin"]  # the temporary file is gone


@pytest.mark.skipif(os.name == "nt", reason="POSIX permission bits")
def test_atomic_write_uses_normal_permissions(tmp_path):
    path = tmp_path / "new.bin"
    with atomic_write(path) as f:
        f.write(b"x")
    umask = os.umask(0o022)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    os.chmod(path, 0o600)
    with atomic_write(path) as f:
        f.write(b"y")
    assert path.stat().st_mode & 0o777 == 0o600  # an existing file keeps its mode


def test_atomic_write_rejects_other_modes(tmp_path):
    with pytest.raises(ValueError, match=r"mode must be 'wb' or 'w', got 'a'"):
        with atomic_write(tmp_path / "x", "a"):
            pass


def test_failing_model_save_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "model.safetensors"
    old = arch.build("conv3x3x4-fc2", (1, 5, 5))
    io.save_model(old, path)
    before = path.read_bytes()

    def full_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)  # fails after the bytes were written
    with pytest.raises(OSError, match="No space left"):
        io.save_model(arch.build("conv3x3x4-fc2", (1, 5, 5)), path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["model.safetensors"]
    np.testing.assert_array_equal(io.load_model(path)[0].weight.data, old[0].weight.data)


# ----------------------------------------------------------------------------- model files


def _lenet():
    cnnlab.manual_seed(0)
    return arch.build("lenet5")


def test_model_round_trip_is_bit_identical(tmp_path):
    model = _lenet()
    classes = [f"digit {i}" for i in range(10)]
    norm = {"mean": [0.1307], "std": [0.3081]}
    path = cnnlab.io.save_model(
        model,
        tmp_path / "model.safetensors",
        meta={"classes": classes, "normalization": norm, "accuracy": 0.99},
    )
    loaded = cnnlab.io.load_model(path)
    assert loaded.training is False
    assert loaded.spec == {
        "arch": LENET,
        "input_shape": [1, 28, 28],
        "classes": classes,
        "normalization": norm,
        "accuracy": 0.99,
        "cnnlab_version": cnnlab.__version__,
        "task": "classify",
    }
    want, got = model.state_dict(), loaded.state_dict()
    assert list(got) == list(want)
    for name in want:
        assert got[name].dtype == np.float32
        assert got[name].tobytes() == want[name].tobytes()
    x = cnnlab.tensor(np.random.default_rng(0).random((2, 1, 28, 28), dtype=np.float32))
    with cnnlab.no_grad():
        np.testing.assert_array_equal(loaded(x).data, model.eval()(x).data)


def test_numpy_values_in_the_spec_are_stored_as_plain_json(tmp_path):
    model = arch.build("conv3x3x4-fc2", (3, 5, 5))
    path = io.save_model(
        model,
        tmp_path / "m.safetensors",
        meta={
            "training": {"accuracy": np.float32(0.5), "n": np.int64(3)},
            "normalization": {"mean": np.array([0.5, 0.25, 0.0]), "std": (np.float32(0.5),)},
        },
    )
    spec = io.read_spec(path)
    assert spec["training"] == {"accuracy": 0.5, "n": 3}
    assert spec["normalization"] == {"mean": [0.5, 0.25, 0.0], "std": [0.5]}


def test_float64_and_batch_norm_buffers_are_preserved(tmp_path):
    model = arch.build("conv3x3x4-bn-relu-fc2", (1, 5, 5)).double()
    model(cnnlab.tensor(np.random.default_rng(0).random((3, 1, 5, 5))))  # moves the buffers
    path = io.save_model(model, tmp_path)  # a directory gets model.safetensors
    assert path == str(tmp_path / "model.safetensors")
    loaded = io.load_model(tmp_path)
    for name, value in model.state_dict().items():
        assert loaded.state_dict()[name].dtype == value.dtype
        np.testing.assert_array_equal(loaded.state_dict()[name], value)
    assert loaded.state_dict()["1.num_batches_tracked"] == 1
    assert loaded[0].weight.data.dtype == np.float64


def test_save_needs_a_spec(tmp_path):
    model = cnnlab.nn.Sequential(cnnlab.nn.Flatten(), cnnlab.nn.Linear(4, 2))
    with pytest.raises(
        ValueError,
        match=r"cannot save this Sequential: it has no spec.*"
        r"pass spec=\{'arch'",
    ):
        io.save_model(model, tmp_path / "m.safetensors")
    io.save_model(model, tmp_path / "m.safetensors", spec={"arch": "fc2", "input_shape": (1, 2, 2)})
    assert io.read_spec(tmp_path / "m.safetensors")["arch"] == "fc2"
    assert io.load_model(tmp_path / "m.safetensors")[1].in_features == 4


def test_save_checks_the_spec_against_the_model(tmp_path):
    model = arch.build("conv3x3x4-fc2", (1, 5, 5))
    path = tmp_path / "m.safetensors"
    with pytest.raises(
        ValueError,
        match=r"cannot save: the weights do not fit the architecture "
        r"'conv3x3x8-fc2': layer 0\.weight: expected "
        r"\(8, 1, 3, 3\), file has \(4, 1, 3, 3\)",
    ):
        io.save_model(model, path, spec={"arch": "conv3x3x8-fc2"})
    with pytest.raises(
        ValueError,
        match=r"spec\['classes'\] has 3 names, but the model outputs "
        r"2 scores",
    ):
        io.save_model(model, path, meta={"classes": ["a", "b", "c"]})
    with pytest.raises(ValueError, match=r"normalization'\]\['std'\] must have 1 or 1 values"):
        io.save_model(model, path, meta={"normalization": {"mean": [0.5], "std": [1.0, 2.0]}})
    with pytest.raises(ValueError, match=r"'std'\] must be finite and > 0"):
        io.save_model(model, path, meta={"normalization": {"mean": 0.5, "std": 0.0}})
    with pytest.raises(ValueError, match=r"model spec must be plain JSON data"):
        io.save_model(model, path, meta={"when": object()})
    with pytest.raises(ValueError, match=r"unknown layer 'fcc2'"):
        io.save_model(model, path, spec={"arch": "conv3x3x4-fcc2"})
    assert not path.exists()


def _rewrite(path, tensors=None, metadata=None):
    """Write the file again with some tensors or metadata changed."""
    old_tensors, old_meta = safetensors.load_file_with_metadata(path)
    safetensors.save_file(
        {**old_tensors, **(tensors or {})}, path, {**old_meta, **(metadata or {})}
    )


def test_wrong_shape_in_file_names_the_layer(tmp_path):
    path = io.save_model(_lenet(), tmp_path / "m.safetensors")
    _rewrite(path, {"3.weight": np.zeros((16, 3, 5, 5), np.float32)})
    with pytest.raises(ModelFileError) as info:
        io.load_model(path)
    assert str(info.value) == (
        f"{path}: the weights do not fit the architecture '{LENET}': layer 3.weight: expected "
        "(16, 6, 5, 5), file has (16, 3, 5, 5). The file was written for a different model, "
        "or edited; save the model again."
    )


def test_wrong_dtype_missing_and_extra_tensors(tmp_path):
    path = io.save_model(arch.build("conv3x3x4-bn-fc2", (1, 5, 5)), tmp_path / "m.safetensors")
    _rewrite(path, {"0.bias": np.zeros(4, np.int64), "9.weight": np.zeros(1, np.float32)})
    with pytest.raises(
        ModelFileError,
        match=r"layer 0\.bias: expected float32 values, file has "
        r"int64; unexpected tensors \['9\.weight'\]",
    ):
        io.load_model(path)
    tensors, meta = safetensors.load_file_with_metadata(path)
    del tensors["1.running_var"], tensors["9.weight"]
    safetensors.save_file(tensors, path, meta)
    with pytest.raises(
        ModelFileError,
        match=r"layer 1\.running_var: expected \(4,\), file has "
        r"none",
    ):
        io.load_model(path)


def test_files_that_are_not_model_files(tmp_path):
    plain = tmp_path / "plain.safetensors"
    safetensors.save_file({"w": np.zeros(2, np.float32)}, plain)
    with pytest.raises(
        ModelFileError,
        match=r"without a cnnlab model spec.*model\.load_state_"
        r"dict\(cnnlab\.io\.safetensors\.load_file\(path\)\)",
    ):
        io.load_model(plain)

    model = arch.build("fc2", (1, 2, 2))
    path = io.save_model(model, tmp_path / "m.safetensors")
    _rewrite(path, metadata={"format_version": "2"})
    with pytest.raises(
        ModelFileError,
        match=r"format version 2, but this cnnlab .* reads "
        r"version 1; upgrade cnnlab",
    ):
        io.load_model(path)
    _rewrite(path, metadata={"format_version": "1", "spec": "{oops"})
    with pytest.raises(ModelFileError, match=r"the model spec in the file is invalid"):
        io.load_model(path)
    _rewrite(path, metadata={"spec": json.dumps({"arch": "fc2x", "input_shape": [1, 2, 2]})})
    with pytest.raises(ModelFileError, match=r"invalid \(malformed fc layer 'fc2x'"):
        io.load_model(path)

    ckpt = io.save_checkpoint(tmp_path / "c.safetensors", model=model, epoch=1)
    with pytest.raises(ModelFileError, match=r"this is a training checkpoint, not a model file"):
        io.load_model(ckpt)
    with pytest.raises(ModelFileError, match=r"this is a model file, not a training checkpoint"):
        io.load_checkpoint(io.save_model(model, tmp_path / "m2.safetensors"))


_spec_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-2, 40), st.floats(), st.text(max_size=6)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)
_specs = st.fixed_dictionaries(
    {},
    optional={
        "arch": st.one_of(st.sampled_from(["fc2", "conv1x1x2-fc2", "lenet5", "fc0"]), _spec_values),
        "input_shape": st.one_of(st.just([1, 2, 2]), _spec_values),
        "classes": st.one_of(st.just(["a", "b"]), _spec_values),
        "normalization": st.one_of(
            st.fixed_dictionaries({"mean": _spec_values, "std": _spec_values}), _spec_values
        ),
    },
)


@given(_specs)
@settings(max_examples=80, deadline=None)
def test_fuzz_specs_in_files_load_or_give_model_file_error(tmp_path_factory, spec):
    path = tmp_path_factory.mktemp("spec") / "m.safetensors"
    model = arch.build("fc2", (1, 2, 2))
    metadata = {"format": "cnnlab-model", "format_version": "1", "spec": json.dumps(spec)}
    safetensors.save_file(model.state_dict(), path, metadata)
    try:
        loaded = io.load_model(path)
    except ModelFileError:
        return
    assert loaded.spec["arch"] == "fc2"


class _Trap:
    """Unpickling this creates a marker file: proof that code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("protocol", [0, 2, pickle.HIGHEST_PROTOCOL])
def test_pickle_disguised_as_safetensors_is_refused_without_running(tmp_path, protocol):
    # First show the trap works, so the real check below means something.
    proof = tmp_path / "proof"
    pickle.loads(pickle.dumps(_Trap(proof), protocol=protocol)).close()
    assert proof.exists()

    marker = tmp_path / "pwned"
    evil = tmp_path / "model.safetensors"
    evil.write_bytes(pickle.dumps({"state_dict": _Trap(marker)}, protocol=protocol))
    for load in (io.load_model, io.load_checkpoint, safetensors.load_file, io.read_spec):
        with pytest.raises(
            ModelFileError,
            match=r"this looks like a Python pickle file .*"
            r"cnnlab never unpickles files",
        ):
            load(evil)
    assert not marker.exists()


def test_torch_zip_files_are_refused(tmp_path):
    fake = tmp_path / "model.pt"
    with zipfile.ZipFile(fake, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps({"w": 1}))
    with pytest.raises(
        ModelFileError,
        match=r"model\.pt: this is a zip archive \(the format "
        r"torch\.save uses",
    ):
        io.load_model(fake)
    npy = tmp_path / "w.npy"
    np.save(npy, np.zeros(3))
    with pytest.raises(ModelFileError, match=r"NumPy \.npy file.*allow_pickle=False"):
        io.load_model(npy)


def test_real_torch_save_file_is_refused(tmp_path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "model.pth"
    torch.save({"w": torch.zeros(2)}, path)
    with pytest.raises(ModelFileError, match=r"zip archive"):
        io.load_model(path)
    torch.save({"w": torch.zeros(2)}, path, _use_new_zipfile_serialization=False)
    with pytest.raises(ModelFileError, match=r"pickle file"):
        io.load_model(path)


def test_save_and_load_leave_the_global_rng_alone(tmp_path):
    model = arch.build("conv3x3x4-fc2", (1, 5, 5))
    cnnlab.manual_seed(7)
    expected = cnnlab.random.get_generator().random(3)
    cnnlab.manual_seed(7)
    io.load_model(io.save_model(model, tmp_path / "m.safetensors"))
    np.testing.assert_array_equal(cnnlab.random.get_generator().random(3), expected)


# ----------------------------------------------------------------------------- checkpoints


def _train_step(model, optimizer, seed):
    x = np.random.default_rng(seed).random((4, 1, 6, 6), dtype=np.float32)
    optimizer.zero_grad()
    loss = (model(cnnlab.tensor(x)) ** 2).mean()
    loss.backward()
    optimizer.step()


@pytest.mark.parametrize("name", ["SGD", "Adam"])
def test_checkpoint_round_trip_resumes_exactly(tmp_path, name):
    optim = pytest.importorskip("cnnlab.optim", reason="cnnlab.optim is not available")
    text = "conv3x3x4-bn-relu-fc3"

    def fresh():
        cnnlab.manual_seed(1)
        model = arch.build(text, (1, 6, 6))
        kwargs = {"lr": 0.1, "momentum": 0.9} if name == "SGD" else {"lr": 0.01}
        opt = getattr(optim, name)(model.parameters(), **kwargs)
        return model, opt, optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)

    model, opt, sched = fresh()
    for seed in range(2):
        _train_step(model, opt, seed)
        sched.step()
    rng = cnnlab.random.get_rng_state()
    path = io.save_checkpoint(
        tmp_path / "ckpt.safetensors",
        model=model,
        optimizer=opt,
        scheduler=sched,
        epoch=2,
        rng_state=rng,
        extra={"history": {"loss": [1.5, 0.7]}, "best": (0.7, 1)},
    )
    stored = safetensors.load_file(path)
    assert "model.0.weight" in stored
    if name == "Adam":
        assert "optim.state.0.exp_avg" in stored and "optim.state.5.exp_avg_sq" in stored

    ckpt = io.load_checkpoint(path)
    assert ckpt["epoch"] == 2 and ckpt["optimizer_type"] == name
    assert ckpt["rng_state"] == rng
    assert ckpt["extra"] == {"history": {"loss": [1.5, 0.7]}, "best": (0.7, 1)}
    assert ckpt["spec"]["arch"] == text
    assert ckpt["scheduler"] == sched.state_dict()
    saved = opt.state_dict()
    assert ckpt["optimizer"]["param_groups"] == saved["param_groups"]
    assert ckpt["optimizer"]["state"].keys() == saved["state"].keys()
    for i, entry in saved["state"].items():
        for key, value in entry.items():
            np.testing.assert_array_equal(ckpt["optimizer"]["state"][i][key], value)

    model2, opt2, sched2 = fresh()
    assert io.restore_checkpoint(ckpt, model2, opt2, sched2) == 2
    for step in (model, opt, sched), (model2, opt2, sched2):
        _train_step(step[0], step[1], 99)
        step[2].step()
    for key, value in model.state_dict().items():
        assert model2.state_dict()[key].tobytes() == value.tobytes(), key
    assert sched2.get_last_lr() == sched.get_last_lr()


def test_rng_state_round_trip_with_big_ints(tmp_path):
    model = arch.build("fc2", (1, 2, 2))
    cnnlab.manual_seed(123)
    cnnlab.random.get_generator().random(5)
    state = cnnlab.random.get_rng_state()
    assert state["state"]["state"] > 2**64  # really needs big ints
    io.save_checkpoint(tmp_path / "c.safetensors", model=model, epoch=0, rng_state=state)
    expected = cnnlab.random.get_generator().random(4)
    cnnlab.manual_seed(0)
    cnnlab.random.set_rng_state(io.load_checkpoint(tmp_path / "c.safetensors")["rng_state"])
    np.testing.assert_array_equal(cnnlab.random.get_generator().random(4), expected)


def test_checkpoint_errors(tmp_path):
    model = arch.build("fc2", (1, 2, 2))
    path = tmp_path / "c.safetensors"
    with pytest.raises(ValueError, match=r"epoch must be an int >= 0, got -1"):
        io.save_checkpoint(path, model=model, epoch=-1)
    with pytest.raises(ValueError, match=r"cannot store extra\.f of type function"):
        io.save_checkpoint(path, model=model, epoch=1, extra={"f": lambda: 0})
    assert not path.exists()

    io.save_checkpoint(path, model=model, epoch=1)
    ckpt = io.load_checkpoint(path)
    assert ckpt["optimizer"] is None and ckpt["rng_state"] is None

    class NoState:
        def load_state_dict(self, sd):
            raise AssertionError("not called")

    with pytest.raises(ModelFileError, match=r"it has no optimizer state.*pass optimizer=None"):
        io.restore_checkpoint(ckpt, model, optimizer=NoState())
    other = arch.build("fc3", (1, 2, 2))
    with pytest.raises(
        ModelFileError,
        match=r"checkpoint: the weights do not fit the model: "
        r"layer 1\.weight: expected \(3, 4\), file has "
        r"\(2, 4\)",
    ):
        io.restore_checkpoint(ckpt, other)

    _rewrite(path, tensors={"stray": np.zeros(1)})
    with pytest.raises(ModelFileError, match=r"tensors \['stray'\] belong to nothing"):
        io.load_checkpoint(path)


def test_failing_checkpoint_write_keeps_the_previous_one(tmp_path):
    model = arch.build("fc2", (1, 2, 2))
    path = tmp_path / "c.safetensors"
    io.save_checkpoint(path, model=model, epoch=1)
    with pytest.raises(ValueError):
        io.save_checkpoint(path, model=model, epoch=2, extra={"bad": {1, 2}})
    assert io.load_checkpoint(path)["epoch"] == 1


_json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**130), 2**130),
    st.floats(allow_nan=False),
    st.text(max_size=5),
)
_nested = st.recursive(
    _json_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.lists(inner, max_size=3).map(tuple),
        st.dictionaries(
            st.one_of(
                st.text(max_size=8),
                st.integers(-5, 5),
                st.sampled_from(["__array__", "__tuple__", "__items__"]),
            ),
            inner,
            max_size=3,
        ),
    ),
    max_leaves=12,
)


@given(_nested)
@settings(max_examples=200)
def test_json_encoding_round_trips_nested_values(value):
    arrays = {}
    text = json.dumps(_encode(value, ["x"], arrays))
    assert _decode(json.loads(text), arrays, set()) == value


def test_json_encoding_moves_arrays_out():
    arrays = {}
    encoded = _encode({"a": [np.arange(3), (np.float32(1.5), np.int64(2))]}, ["extra"], arrays)
    assert list(arrays) == ["extra.a.0"]
    decoded = _decode(json.loads(json.dumps(encoded)), arrays, set())
    np.testing.assert_array_equal(decoded["a"][0], np.arange(3))
    assert decoded["a"][1] == (1.5, 2)
