"""Importing ONNX: models that PyTorch exports here load as cnnlab modules whose outputs
equal PyTorch's (relative error <= 1e-5) at several batch sizes, train, and work with the
model file, summary, predict and inspect; PyTorch weights load without pickle."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

import cnnlab
from cnnlab import Tensor, arch, nn, optim
from cnnlab.cli.main import main
from cnnlab.onnx import GraphModule, ONNXError, export, load

onnx = pytest.importorskip("onnx", reason="ONNX import needs the onnx package")
torch = pytest.importorskip("torch", reason="the imported models are exported by PyTorch")
tnn, TF = torch.nn, torch.nn.functional

TOL = 1e-5


def rel_error(ours: np.ndarray, theirs: np.ndarray) -> float:
    return float(np.abs(ours - theirs).max() / max(np.abs(theirs).max(), 1e-12))


def torch_export(model, shape, path, dynamic=True, opset=17):
    """The legacy (TorchScript) exporter, which works offline; batch dimension free unless
    ``dynamic`` is False."""
    model.eval()
    x = torch.randn(2, *shape)
    kwargs = {"dynamic_axes": {"x": {0: "batch"}, "y": {0: "batch"}}} if dynamic else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=opset,
                          input_names=["x"], output_names=["y"], **kwargs)
    return path


def assert_same_outputs(model, imported, shape, batches=(1, 3, 5), seed=0):
    rng = np.random.default_rng(seed)
    for n in batches:
        x = rng.standard_normal((n, *shape)).astype(np.float32)
        with torch.no_grad():
            theirs = model(torch.from_numpy(x)).numpy()
        with cnnlab.no_grad():
            ours = imported(Tensor(x)).data
        assert ours.shape == theirs.shape and ours.dtype == np.float32
        err = rel_error(ours, theirs)
        assert err <= TOL, f"batch {n}: relative error {err:.3g}"


def randomize(model):
    """Batch-norm statistics and affine parameters away from their initial values."""
    gen = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, tnn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=gen) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=gen) - 0.5)
    return model


def lenet():
    torch.manual_seed(0)
    return tnn.Sequential(tnn.Conv2d(1, 6, 5, padding=2), tnn.ReLU(), tnn.MaxPool2d(2),
                          tnn.Conv2d(6, 16, 5), tnn.Tanh(), tnn.AvgPool2d(2), tnn.Flatten(),
                          tnn.Linear(16 * 5 * 5, 32), tnn.Sigmoid(), tnn.Dropout(0.2),
                          tnn.Linear(32, 10))


class ResBlock(tnn.Module):
    """conv-bn-relu-conv-bn + identity, relu; a strided projection; global pool; a head."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.conv1 = tnn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn1 = tnn.BatchNorm2d(8)
        self.conv2 = tnn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn2 = tnn.BatchNorm2d(8)
        self.stem = tnn.Conv2d(3, 8, 3, padding=1)
        self.down = tnn.Conv2d(8, 16, 1, stride=2)
        self.fc = tnn.Linear(16, 7)

    def forward(self, x):
        x = TF.relu(self.stem(x))
        y = TF.relu(self.bn1(self.conv1(x)))
        y = TF.relu(self.bn2(self.conv2(y)) + x)
        y = self.down(y)
        y = TF.adaptive_avg_pool2d(y, 1)
        return self.fc(y.view(y.size(0), -1))


class Mixed(tnn.Module):
    """ReLU6, mean((2, 3)), pad, cat, a batch norm that is not folded into a convolution,
    constants and broadcast tensors, ceil-mode and padded pooling, a maximum over the map."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(2)
        self.conv = tnn.Conv2d(3, 6, 3, stride=2, padding=1)
        self.bn = tnn.BatchNorm2d(12)
        self.dw = tnn.Conv2d(12, 12, 3, padding=1, groups=12)
        self.fc = tnn.Linear(24, 5)
        self.register_buffer("shift", torch.linspace(-1, 1, 12).reshape(1, 12, 1, 1))

    def forward(self, x):
        a = TF.relu6(self.conv(x) * 3)
        b = TF.pad(a, (1, 0, 2, 1))[:, :, 1:-2, :-1]
        y = self.bn(torch.cat([a, TF.leaky_relu(b, 0.2)], dim=1))
        y = self.dw(y) / 2 - self.shift
        y = TF.max_pool2d(y, 3, 2, ceil_mode=True)
        y = TF.avg_pool2d(y, 2, 1, padding=1, count_include_pad=False)
        pooled = torch.cat([y.mean((2, 3)), torch.amax(y, (2, 3))], 1)
        return torch.log_softmax(self.fc(pooled), dim=1)


@pytest.mark.parametrize("dynamic", [True, False], ids=["free batch", "fixed batch 2"])
@pytest.mark.parametrize("make,shape", [(lenet, (1, 28, 28)), (ResBlock, (3, 9, 9)),
                                        (Mixed, (3, 11, 13))], ids=["lenet", "resnet", "mixed"])
def test_pytorch_models_load_with_the_same_outputs(make, shape, dynamic, tmp_path):
    model = randomize(make())
    path = torch_export(model, shape, tmp_path / "m.onnx", dynamic=dynamic)
    imported = load(path)
    assert isinstance(imported, GraphModule) and imported.spec["input_shape"] == list(shape)
    assert_same_outputs(model, imported, shape)


def test_the_imported_graph_holds_real_layers_named_as_in_pytorch(tmp_path):
    model = randomize(Mixed())
    imported = load(torch_export(model, (3, 11, 13), tmp_path / "m.onnx"))
    kinds = {type(m).__name__ for m in imported.children()}
    assert {"Conv2d", "BatchNorm2d", "Linear", "Clip", "Pad", "Concatenate", "ReduceMean",
            "ReduceMax", "MaxPool2d", "AvgPool2d", "LeakyReLU", "Sub", "Div",
            "LogSoftmax"} <= kinds
    names = dict(imported.named_parameters())
    assert "bn.weight" in names and "fc.weight" in names and "dw.bias" in names
    np.testing.assert_array_equal(imported["bn"].running_var, model.bn.running_var.numpy())


@pytest.mark.parametrize("opset", [11, 13])
def test_older_opsets(opset, tmp_path):
    # Squeeze/Unsqueeze axes as attributes (11), Clip and Pad bounds as inputs.
    model = randomize(ResBlock())
    imported = load(torch_export(model, (3, 9, 9), tmp_path / "m.onnx", opset=opset))
    assert_same_outputs(model, imported, (3, 9, 9), batches=(1, 4))
    model = randomize(Mixed())
    imported = load(torch_export(model, (3, 11, 13), tmp_path / "m.onnx", opset=opset))
    assert_same_outputs(model, imported, (3, 11, 13), batches=(1, 4))


def test_round_trip_cnnlab_onnx_cnnlab(tmp_path, seeded, rng):
    model = arch.build("cifar-small")
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean[...] = rng.uniform(-0.5, 0.5, m.num_features)
            m.running_var[...] = rng.uniform(0.5, 2.0, m.num_features)
    model.spec["classes"] = [f"c{i}" for i in range(10)]
    path = tmp_path / "m.onnx"
    export(model, rng.random((1, 3, 32, 32), dtype=np.float32), path)
    back = load(path)
    assert back.spec["classes"] == model.spec["classes"]
    assert back.spec["input_shape"] == [3, 32, 32]
    x = Tensor(rng.random((3, 3, 32, 32), dtype=np.float32))
    model.eval()
    with cnnlab.no_grad():
        assert rel_error(back(x).data, model(x).data) <= 1e-6
    # The same layers, the same parameter names.
    assert list(back.state_dict()) == list(model.state_dict())


def test_an_imported_model_fine_tunes(tmp_path, rng):
    model = randomize(Mixed())
    imported = load(torch_export(model, (3, 11, 13), tmp_path / "m.onnx"))
    x = rng.standard_normal((16, 3, 11, 13)).astype(np.float32)
    y = rng.integers(0, 5, 16)
    imported.train()
    opt = optim.Adam(imported.parameters(), lr=0.01)
    losses = []
    for _ in range(10):
        # The model ends in log_softmax: the loss is the mean of -log p(label).
        loss = -(imported(Tensor(x))[np.arange(16), y]).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses
    # Batch norm trained on batch statistics: its running mean moved.
    assert not np.allclose(imported["bn"].running_mean, model.bn.running_mean.numpy())


def test_an_imported_model_saves_as_a_model_file(tmp_path, rng):
    model = randomize(Mixed())
    imported = load(torch_export(model, (3, 11, 13), tmp_path / "m.onnx"))
    path = cnnlab.io.save_model(imported, tmp_path / "model.safetensors",
                       meta={"classes": list("abcde")})
    spec = cnnlab.io.read_spec(path)
    assert spec["model"]["name"] == "graph" and "arch" not in spec
    back = cnnlab.io.load_model(path)
    assert isinstance(back, GraphModule) and back.spec["classes"] == list("abcde")
    assert_same_outputs(model, back, (3, 11, 13), batches=(2,))


def _graph(nodes, inputs, outputs, initializers=(), opset=17):
    helper = onnx.helper
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def test_an_unsupported_op_is_one_line_naming_op_and_node(tmp_path):
    helper, T = onnx.helper, onnx.TensorProto
    proto = _graph([helper.make_node("Relu", ["x"], ["r"], name="first"),
                    helper.make_node("HardSwish", ["r"], ["y"], name="act7")],
                   [helper.make_tensor_value_info("x", T.FLOAT, ["N", 4])],
                   [helper.make_tensor_value_info("y", T.FLOAT, ["N", 4])])
    onnx.save(proto, str(tmp_path / "m.onnx"))
    with pytest.raises(ONNXError) as info:
        load(tmp_path / "m.onnx")
    message = str(info.value)
    assert "\n" not in message
    assert "node 'act7' uses the op HardSwish, which cnnlab cannot import; supported ops: " \
        in message
    assert "Conv, ConvTranspose," in message and "Reshape" in message


def test_gemm_with_transposes_and_scales_and_a_computed_operand(tmp_path, rng):
    helper, T, nh = onnx.helper, onnx.TensorProto, onnx.numpy_helper
    b = rng.standard_normal((3, 5)).astype(np.float32)
    c = rng.standard_normal((1, 5)).astype(np.float32)
    proto = _graph(
        [helper.make_node("Transpose", ["x"], ["xt"], perm=[1, 0]),
         helper.make_node("Gemm", ["xt", "B", "C"], ["g"], alpha=0.5, beta=2.0, transA=1),
         helper.make_node("Gemm", ["g", "g"], ["y"], transB=1, alpha=0.25)],
        [helper.make_tensor_value_info("x", T.FLOAT, ["N", 3])],
        [helper.make_tensor_value_info("y", T.FLOAT, ["N", "N"])],
        [nh.from_array(b, "B"), nh.from_array(c, "C")])
    onnx.save(proto, str(tmp_path / "m.onnx"))
    imported = load(tmp_path / "m.onnx")
    x = rng.standard_normal((4, 3)).astype(np.float32)
    g = 0.5 * x @ b + 2 * c
    with cnnlab.no_grad():
        np.testing.assert_allclose(imported(Tensor(x)).data, 0.25 * g @ g.T, rtol=1e-5)
    assert {type(m).__name__ for m in imported.children()} >= {"Linear", "Gemm"}


def test_constants_of_every_kind_keep_float32(tmp_path):
    helper, T = onnx.helper, onnx.TensorProto
    proto = _graph([helper.make_node("Constant", [], ["c"], value_float=2.0),
                    helper.make_node("Constant", [], ["s"], value_ints=[0, -1]),
                    helper.make_node("Mul", ["x", "c"], ["m"]),
                    helper.make_node("Reshape", ["m", "s"], ["y"])],
                   [helper.make_tensor_value_info("x", T.FLOAT, ["N", 2, 3])],
                   [helper.make_tensor_value_info("y", T.FLOAT, ["N", 6])])
    onnx.save(proto, str(tmp_path / "m.onnx"))
    imported = load(tmp_path / "m.onnx")
    with cnnlab.no_grad():
        y = imported(Tensor(np.ones((4, 2, 3), np.float32)))
    assert y.shape == (4, 6) and y.dtype == np.float32 and float(y.data.max()) == 2.0


def test_open_spatial_dimensions_need_an_input_shape(tmp_path, rng):
    helper, T = onnx.helper, onnx.TensorProto
    proto = _graph([helper.make_node("GlobalAveragePool", ["x"], ["a"]),
                    helper.make_node("GlobalMaxPool", ["x"], ["m"]),
                    helper.make_node("Sub", ["m", "a"], ["y"])],
                   [helper.make_tensor_value_info("x", T.FLOAT, ["N", 3, "H", "W"])],
                   [helper.make_tensor_value_info("y", T.FLOAT, ["N", 3, 1, 1])])
    onnx.save(proto, str(tmp_path / "m.onnx"))
    with pytest.raises(ONNXError, match=r"shape \['\?', 3, '\?', '\?'\].*pass "
                                        r"input_shape=\(C, H, W\)"):
        load(tmp_path / "m.onnx")
    imported = load(tmp_path / "m.onnx", input_shape=(3, 5, 6))
    assert imported.spec["input_shape"] == [3, 5, 6]
    x = rng.standard_normal((2, 3, 5, 6)).astype(np.float32)
    expected = x.max((2, 3), keepdims=True) - x.mean((2, 3), keepdims=True)
    with cnnlab.no_grad():
        np.testing.assert_allclose(imported(Tensor(x)).data, expected, rtol=1e-6)


def test_damaged_files(tmp_path):
    (tmp_path / "bad.onnx").write_bytes(b"\x00garbage\xff" * 10)
    with pytest.raises(ONNXError, match="not an ONNX model"):
        load(tmp_path / "bad.onnx")
    with pytest.raises(ONNXError, match="no such file"):
        load(tmp_path / "missing.onnx")


# ----------------------------------------------------------------------------- PyTorch weights


def test_a_pytorch_state_dict_in_safetensors_loads_without_pickle(tmp_path, rng):
    safetensors_torch = pytest.importorskip("safetensors.torch")
    from cnnlab.io import safetensors

    torch.manual_seed(3)
    theirs = randomize(tnn.Sequential(
        tnn.Conv2d(1, 4, 3, padding=1), tnn.BatchNorm2d(4), tnn.ReLU(), tnn.MaxPool2d(2),
        tnn.Conv2d(4, 8, 3, stride=2, padding=1, groups=2), tnn.ReLU(), tnn.Flatten(),
        tnn.Linear(8 * 2 * 2, 10)))
    theirs.train()
    theirs(torch.randn(8, 1, 8, 8))  # num_batches_tracked becomes 1, the statistics move
    theirs.eval()
    safetensors_torch.save_file(theirs.state_dict(), str(tmp_path / "weights.safetensors"))

    ours = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 8, 3, stride=2, padding=1, groups=2), nn.ReLU(), nn.Flatten(),
        nn.Linear(8 * 2 * 2, 10))
    state = cnnlab.load(tmp_path / "weights.safetensors", weights_only=True)
    assert "1.num_batches_tracked" in state and "1.running_var" in state
    raw = safetensors.load_file(tmp_path / "weights.safetensors")  # the same arrays
    assert all(np.array_equal(state[k].numpy(), raw[k]) for k in raw)
    ours.load_state_dict(state)
    ours.eval()
    assert int(ours[1].num_batches_tracked) == 1
    x = rng.standard_normal((5, 1, 8, 8)).astype(np.float32)
    with torch.no_grad():
        expected = theirs(torch.from_numpy(x)).numpy()
    with cnnlab.no_grad():
        assert rel_error(ours(Tensor(x)).data, expected) <= TOL


# ----------------------------------------------------------------------------- command line


def test_import_then_summary_predict_inspect_and_export(tmp_path, capsys, rng):
    pytest.importorskip("PIL", reason="predict and inspect read image files")
    from PIL import Image

    model = randomize(ResBlock())
    onnx_path = torch_export(model, (3, 9, 9), tmp_path / "res.onnx")
    out = tmp_path / "res.safetensors"
    classes = ",".join(f"k{i}" for i in range(7))
    assert main(["import", str(onnx_path), "--out", str(out), "--classes", classes,
                 "--mean", "0.5", "--std", "0.25"]) == 0
    text = capsys.readouterr().out
    assert "Conv2d x4" in text and f"wrote {out}" in text

    assert main(["summary", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["output_shape"] == [7]
    # PyTorch folds each batch norm (8 weights, 8 biases) into the convolution before it,
    # which gains 8 biases.
    assert summary["totals"]["params"] == sum(p.numel() for p in model.parameters()) - 2 * 8

    image = tmp_path / "img.png"
    Image.fromarray((rng.random((9, 9, 3)) * 255).astype(np.uint8)).save(image)
    assert main(["predict", str(out), str(image), "--json"]) == 0
    pred = json.loads(capsys.readouterr().out.splitlines()[0])
    x = np.asarray(Image.open(image), np.float32).transpose(2, 0, 1)[None] / 255
    with torch.no_grad():
        logits = model(torch.from_numpy((x - 0.5) / 0.25))
    probs = torch.softmax(logits, 1)[0].numpy()
    assert pred["class"] == f"k{int(probs.argmax())}"
    assert abs(pred["probability"] - float(probs.max())) < 1e-5

    assert main(["inspect", str(out), str(image), "--out", str(tmp_path / "pics")]) == 0
    assert (tmp_path / "pics" / "feature_maps_conv1.png").is_file()
    capsys.readouterr()

    # explain works on numbers: a layer's weights and an input, saved from the model.
    conv = cnnlab.io.load_model(out)["conv1"]
    np.savez(tmp_path / "conv1.npz", input=rng.random((8, 5, 5)).astype(np.float32),
             weight=conv.weight.data, bias=conv.bias.data)
    assert main(["explain", "conv", "--values", str(tmp_path / "conv1.npz"), "--stride", "1",
                 "--padding", "1", "--json"]) == 0
    explained = json.loads(capsys.readouterr().out)
    image = np.load(tmp_path / "conv1.npz")["input"][None]
    with cnnlab.no_grad():
        expected = conv(Tensor(image)).data[0]
    np.testing.assert_allclose(explained["output"], expected, rtol=1e-4, atol=1e-5)

    assert main(["export", str(out), "--out", str(tmp_path / "again.onnx")]) == 0
    assert "Nx3x9x9" in capsys.readouterr().out
    again = load(tmp_path / "again.onnx")
    assert again.spec["classes"] == classes.split(",")
    assert again.spec["normalization"] == {"mean": [0.5], "std": [0.25]}


def test_cli_errors(tmp_path, capsys):
    assert main(["import", str(tmp_path / "none.onnx"), "--out", "x"]) == 1
    assert "no such file" in capsys.readouterr().err
    (tmp_path / "m.onnx").write_bytes(b"junk")
    assert main(["import", str(tmp_path / "m.onnx"), "--out", "x", "--mean", "1"]) == 2
    assert "--mean and --std go together" in capsys.readouterr().err
    assert main(["import", str(tmp_path / "m.onnx"), "--out", "x"]) == 1
    assert "not an ONNX model" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["export", "lenet5", "--format", "tflite", "--out", "x"])
    assert exit_info.value.code == 2


class Decoder(tnn.Module):
    """Transposed convolutions (with output padding, groups, dilation) and upsampling."""

    def __init__(self, mode):
        super().__init__()
        torch.manual_seed(4)
        self.mode = mode
        self.up1 = tnn.ConvTranspose2d(3, 6, 3, stride=2, padding=1, output_padding=1)
        self.up2 = tnn.ConvTranspose2d(6, 4, 4, stride=2, padding=1, groups=2)
        self.up3 = tnn.ConvTranspose2d(4, 2, 3, dilation=2)

    def forward(self, x):
        y = self.up2(TF.relu(self.up1(x)))
        kwargs = {"align_corners": False} if self.mode == "bilinear" else {}
        y = TF.interpolate(y, scale_factor=2, mode=self.mode, **kwargs)
        return self.up3(TF.interpolate(y, size=(21, 30), mode=self.mode, **kwargs))


@pytest.mark.skipif(not all(hasattr(nn, n) for n in ("ConvTranspose2d", "Upsample")),
                    reason="needs nn.ConvTranspose2d and interpolate")
@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
def test_pytorch_decoders_load_with_the_same_outputs(mode, tmp_path):
    model = Decoder(mode)
    imported = load(torch_export(model, (3, 5, 6), tmp_path / "m.onnx"))
    assert {"ConvTranspose2d", "Resize"} <= {type(m).__name__ for m in imported.children()}
    assert_same_outputs(model, imported, (3, 5, 6))


@pytest.mark.skipif(not all(hasattr(nn, n) for n in ("LSTM", "GRU", "Embedding")),
                    reason="needs nn.Embedding, nn.LSTM and nn.GRU")
@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
@pytest.mark.parametrize("use_state", [False, True], ids=["last output", "final state"])
def test_pytorch_recurrent_models_load(kind, use_state, tmp_path, rng):
    class Reader(tnn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(5)
            self.emb = tnn.Embedding(12, 5)
            self.rnn = getattr(tnn, kind)(5, 6, batch_first=True)
            self.fc = tnn.Linear(6, 3)

        def forward(self, tokens):
            y, state = self.rnn(self.emb(tokens))
            h = (state[0] if kind == "LSTM" else state)[0]
            return self.fc(h if use_state else y[:, -1])

    model = Reader().eval()
    tokens = rng.integers(0, 12, (4, 7)).astype(np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.from_numpy(tokens[:2]),), str(tmp_path / "m.onnx"),
                          dynamo=False, input_names=["x"], dynamic_axes={"x": {0: "batch"}})
    imported = load(tmp_path / "m.onnx")
    assert {kind, "Embedding", "Linear"} <= {type(m).__name__ for m in imported.children()}
    for n in (1, 4):
        with torch.no_grad():
            expected = model(torch.from_numpy(tokens[:n])).numpy()
        with cnnlab.no_grad():
            assert rel_error(imported(Tensor(tokens[:n])).data, expected) <= TOL
