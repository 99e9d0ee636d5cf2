"""Exporting to ONNX: every preset and models written as arbitrary Python run in
onnxruntime with the same outputs as in cnnlab (relative error <= 1e-5), at batch sizes 1
and 3 from one file, and the files pass onnx.checker's full check."""

from __future__ import annotations

import json

import numpy as np
import pytest

import cnnlab
import cnnlab.nn.functional as F
from cnnlab import Tensor, arch, autograd, nn
from cnnlab.autograd import Function
from cnnlab.onnx import ONNXError, export

onnx = pytest.importorskip("onnx", reason="ONNX export needs the onnx package")
ort = pytest.importorskip("onnxruntime", reason="the exported files are run in onnxruntime")

TOL = 1e-5


def rel_error(ours: np.ndarray, theirs: np.ndarray) -> float:
    return float(np.abs(ours - theirs).max() / max(np.abs(theirs).max(), 1e-12))


def digit_images(shape: tuple[int, int, int], n: int) -> np.ndarray:
    """``n`` real digits (the shipped 8x8 UCI set), resized to ``shape`` (nearest) and
    repeated over the channels."""
    from cnnlab.data import Digits

    images = Digits(train=False).images[:n]  # (n, 1, 8, 8) in [0, 1]
    c, h, w = shape
    rows, cols = np.arange(h) * 8 // h, np.arange(w) * 8 // w
    resized = images[:, :, rows][:, :, :, cols]
    tint = np.linspace(1.0, 0.6, c, dtype=np.float32).reshape(1, c, 1, 1)
    return np.ascontiguousarray(np.repeat(resized, c, axis=1) * tint, dtype=np.float32)


def randomize_batch_norms(model: nn.Module, rng: np.random.Generator) -> None:
    """Statistics and affine parameters away from 0 and 1, so inference form matters."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean[...] = rng.uniform(-0.5, 0.5, n)
            m.running_var[...] = rng.uniform(0.5, 2.0, n)
            m.weight.data[...] = rng.uniform(0.5, 1.5, n)
            m.bias.data[...] = rng.uniform(-0.3, 0.3, n)


def run_both(model: nn.Module, path, inputs: list[np.ndarray]) -> list[float]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    model.eval()
    errors = []
    for x in inputs:
        with cnnlab.no_grad():
            ours = model(Tensor(x)).data
        theirs = session.run(None, {name: x})[0]
        assert theirs.shape == ours.shape and theirs.dtype == ours.dtype
        errors.append(rel_error(theirs, ours))
    return errors


@pytest.mark.parametrize("preset", list(arch.PRESETS))
def test_every_preset_runs_in_onnxruntime_at_any_batch_size(preset, tmp_path, seeded, rng):
    shape = arch.PRESET_INPUT_SHAPES[preset]
    model = arch.build(preset)
    randomize_batch_norms(model, rng)
    model.spec.update(classes=[f"digit {i}" for i in range(10)],
                      normalization={"mean": [0.25] * shape[0], "std": [0.5] * shape[0]})
    images = (digit_images(shape, 4) - 0.25) / 0.5
    path = tmp_path / f"{preset}.onnx"
    info = export(model, images[:1], path)
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    assert info["nodes"] == len(proto.graph.node)
    errors = run_both(model, path, [images[:1], images[1:4]])
    assert max(errors) <= TOL, f"{preset}: relative errors {errors}"
    # One file for every batch size: the batch is a named dimension at both ends.
    for value in (proto.graph.input[0], proto.graph.output[0]):
        dims = value.type.tensor_type.shape.dim
        assert dims[0].dim_param == "N" and all(d.dim_value > 0 for d in dims[1:])
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["classes"]) == model.spec["classes"]
    assert json.loads(meta["normalization"]) == model.spec["normalization"]
    assert json.loads(meta["input_shape"]) == list(shape)
    assert meta["task"] == "classify" and meta["arch"] == model.spec["arch"]


class Residual(nn.Module):
    """A ResNet-style block and a head written as Python: +, mean over dimensions, view,
    transpose, matmul, slicing, scaling by constants."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.conv = nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=2, bias=False)
        self.down = nn.Conv2d(8, 12, 3, stride=2, padding=1)
        self.pool = nn.AvgPool2d(3, stride=1, padding=1)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(12, 5)
        self.proj = cnnlab.nn.Parameter(np.linspace(-1, 1, 5 * 4, dtype=np.float32)
                                        .reshape(5, 4))

    def forward(self, x):
        y = F.relu(self.bn(self.stem(x)))
        y = y + self.conv(y) * 0.5  # the skip connection
        y = F.leaky_relu(self.down(y), 0.1)
        z = self.pool(y)[:, :, 1:, ::2] - y.mean((2, 3), keepdims=True)
        g = self.gap(z).view(z.shape[0], -1) + F.sigmoid(z).mean((2, 3))
        h = self.head(g)
        t = h.reshape(h.shape[0], 5, 1).transpose(0, 2, 1)  # (N, 1, 5)
        return F.softmax((t @ self.proj).reshape(-1, 4) / 2, dim=1) + F.tanh(h[:, :4])


def test_residual_python_forward_exports(tmp_path, seeded, rng):
    model = Residual()
    randomize_batch_norms(model, rng)
    images = digit_images((3, 10, 12), 4)
    path = tmp_path / "residual.onnx"
    export(model, images[:2], path)
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    ops = [n.op_type for n in proto.graph.node]
    for op in ("Add", "Mul", "ReduceMean", "Slice", "MatMul", "Transpose", "Reshape",
               "GlobalAveragePool", "LeakyRelu", "Softmax", "Tanh", "Gemm"):
        assert op in ops, f"{op} missing from {ops}"
    assert max(run_both(model, path, [images[:1], images[1:4]])) <= TOL
    # Reshape targets leave the batch free: -1 there, never the traced size.
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in proto.graph.initializer}
    for node in proto.graph.node:
        if node.op_type == "Reshape":
            target = inits[node.input[1]]
            assert -1 in target and 2 not in target[:1], target
    from cnnlab.onnx import load  # and back, MatMul by a constant as a Linear layer

    back = load(path)
    assert {"Linear", "Slice", "ReduceMean", "Transpose"} <= {
        type(m).__name__ for m in back.children()}
    model.eval()
    with cnnlab.no_grad():
        for batch in (images[:1], images):
            assert rel_error(back(Tensor(batch)).data, model(Tensor(batch)).data) <= 1e-6


@pytest.mark.parametrize("opset", [13, 18, 21])
def test_other_opsets(opset, tmp_path, seeded, rng):
    model = Residual()
    images = digit_images((3, 10, 12), 3)
    path = tmp_path / "residual.onnx"
    assert export(model, images[:1], path, opset=opset)["opset"] == opset
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    assert max(run_both(model, path, [images[:1], images])) <= TOL


def test_sequential_is_exported_in_written_order(tmp_path, seeded):
    # Running, a conv+ReLU+pool run may be fused or reordered; the file shows the layers.
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Dropout(0.3),
                          nn.Flatten(), nn.Linear(36, 3))
    path = tmp_path / "seq.onnx"
    export(model, np.zeros((1, 1, 8, 8), np.float32), path)
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert ops == ["Conv", "Relu", "MaxPool", "Identity", "Flatten", "Gemm"]
    x = digit_images((1, 8, 8), 3)
    assert max(run_both(model, path, [x[:1], x])) <= TOL


def test_fused_layers_export_as_their_layers(tmp_path, seeded, rng):
    model = arch.build("lenet5")
    fused = nn.fuse(model)
    assert any(isinstance(m, nn.ConvReLUMaxPool2d) for m in fused.modules())
    path = tmp_path / "fused.onnx"
    export(fused, np.zeros((1, 1, 28, 28), np.float32), path)
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert ops[:3] == ["Conv", "MaxPool", "Relu"] and "Identity" not in ops[:3]
    x = digit_images((1, 28, 28), 3)
    assert max(run_both(model, path, [x[:1], x])) <= TOL


class Elementwise(nn.Module):
    """Tensor methods beyond arithmetic: maximum, abs, clamp, expand, repeat, where, casts,
    amax/amin, and the Softmax and Identity layers."""

    def __init__(self):
        super().__init__()
        self.soft, self.same = nn.Softmax(dim=1), nn.Identity()
        self.mask = np.arange(6).reshape(1, 6) % 2 == 0

    def forward(self, x):
        y = x.max(x * 0.5).abs().clamp(0.1, 0.8) + x.clamp(max=0.2)
        z = y[:, :1].expand(-1, 6) + y.repeat(1, 2)[:, 3:9]
        w = cnnlab.where(cnnlab.tensor(self.mask), z, -z).double().float()
        m = w.amax(1, keepdim=True) - w.amin(1, keepdim=True)
        return self.same(self.soft(w * m))


def test_tensor_methods_export(tmp_path, rng):
    model = Elementwise()
    x = rng.standard_normal((3, 6)).astype(np.float32)
    path = tmp_path / "ew.onnx"
    export(model, x[:1], path)
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    assert max(run_both(model, path, [x[:1], x])) <= TOL
    from cnnlab.onnx import load  # and back: Max, Abs, Clip, Expand, Tile, Where, ReduceMin...

    back = load(path)
    assert {"Expand", "Tile", "Where", "Maximum", "Clip", "ReduceMin"} <= {
        type(m).__name__ for m in back.children()}
    with cnnlab.no_grad():
        assert rel_error(back(Tensor(x)).data, model(Tensor(x)).data) <= 1e-6


def test_export_restores_modes_and_leaves_no_tracer(tmp_path, seeded):
    model = arch.build("digits")
    model.train()
    export(model, np.zeros((2, 1, 8, 8), np.float32), tmp_path / "m.onnx")
    assert all(m.training for m in model.modules())
    assert autograd._tracer is None
    assert int(model[1].num_batches_tracked) == 0  # traced in eval mode: nothing updated


class Double(Function):
    def forward(self, x):
        return x * 2

    def backward(self, grad):
        return grad * 2


class Custom(nn.Module):
    def forward(self, x):
        return Double.apply(x)


def test_an_op_without_exporter_is_named_with_the_supported_list(tmp_path):
    with pytest.raises(ONNXError, match=r"cannot export Double: the op Double has no ONNX "
                                        r"exporter; supported: .*Conv2d.*Linear"):
        export(Custom(), np.zeros((1, 3), np.float32), tmp_path / "m.onnx")
    assert autograd._tracer is None
    assert not (tmp_path / "m.onnx").exists()


class ByBatch(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.ReLU(), nn.Sigmoid()

    def forward(self, x):
        return self.a(x) if x.shape[0] == 1 else self.b(x)


def test_a_forward_that_depends_on_the_batch_size_is_refused(tmp_path):
    with pytest.raises(ONNXError, match="runs different layers at different batch sizes"):
        export(ByBatch(), np.zeros((1, 3), np.float32), tmp_path / "m.onnx")


class OutsideOps(nn.Module):
    def forward(self, x):
        return x + Tensor(x.data.sum(axis=1, keepdims=True))  # computed outside the ops


def test_values_computed_outside_the_ops_are_refused(tmp_path):
    with pytest.raises(ONNXError, match="not computed by cnnlab ops"):
        export(OutsideOps(), np.ones((1, 3), np.float32), tmp_path / "m.onnx")


def test_bad_opset_and_sample(tmp_path):
    model = nn.Sequential(nn.ReLU())
    with pytest.raises(ONNXError, match="opset must be an integer from 13 to 21, got 9"):
        export(model, np.zeros((1, 3), np.float32), tmp_path / "m.onnx", opset=9)
    with pytest.raises(ONNXError, match=r"expected a batch \(N, ...\) with N >= 1"):
        export(model, np.zeros((0, 3), np.float32), tmp_path / "m.onnx")


# ----------------------------------------------------------------------------- PyTorch's layers
# The exporters of ConvTranspose2d, Upsample, LSTM and GRU follow PyTorch's semantics. Stand-in
# layers with PyTorch's attributes and parameter names (their own forward only gives the
# output's shape) are exported with them, and onnxruntime's results are compared with
# PyTorch's layers holding the same weights.


class _StandIn(nn.Module):
    def __init__(self, torch_layer, out_shape):
        super().__init__()
        self._out_shape = out_shape
        for name, value in vars(torch_layer).items():
            if not name.startswith("_") and name != "training":
                setattr(self, name, value)
        for name, p in torch_layer.named_parameters():
            setattr(self, name, cnnlab.nn.Parameter(p.detach().numpy().copy()))

    def forward(self, x, *state):
        shapes = self._out_shape(x.shape)
        outs = [Tensor(np.zeros(s, np.float32)) for s in shapes]
        return outs[0] if len(outs) == 1 else (outs[0], tuple(outs[1:]))


def _export_stand_in(torch_layer, out_shape, sample, path, kind):
    from cnnlab.onnx.converters import conv, recurrent, resize
    from cnnlab.onnx.registry import MODULE_EXPORTERS

    cls = type(f"{kind}StandIn", (_StandIn,), {})
    fn = {"ConvTranspose2d": conv.export_conv_transpose2d_layer,
          "Upsample": resize.export_upsample, "LSTM": recurrent.export_lstm,
          "GRU": recurrent.export_gru, "Embedding": recurrent.export_embedding}[kind]
    MODULE_EXPORTERS[cls] = fn
    try:
        model = cls(torch_layer, out_shape)
        export(model, sample, path)
    finally:
        del MODULE_EXPORTERS[cls]
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("cfg", [
    dict(k=3, stride=2, padding=1, output_padding=1, groups=1, dilation=1),
    dict(k=4, stride=2, padding=1, output_padding=0, groups=2, dilation=1),
    dict(k=3, stride=1, padding=0, output_padding=0, groups=1, dilation=2),
])
def test_conv_transpose_exporter_matches_pytorch(cfg, tmp_path, rng):
    torch = pytest.importorskip("torch", reason="compared with PyTorch's layer")
    layer = torch.nn.ConvTranspose2d(4, 6, cfg["k"], stride=cfg["stride"],
                                     padding=cfg["padding"], output_padding=cfg["output_padding"],
                                     groups=cfg["groups"], dilation=cfg["dilation"])
    x = rng.standard_normal((3, 4, 5, 7)).astype(np.float32)
    with torch.no_grad():
        expected = layer(torch.from_numpy(x)).numpy()
    session = _export_stand_in(layer, lambda s: [(s[0], *expected.shape[1:])], x[:1],
                               tmp_path / "ct.onnx", "ConvTranspose2d")
    assert rel_error(session.run(None, {"input": x})[0], expected) <= TOL


@pytest.mark.parametrize("kwargs", [
    dict(scale_factor=2, mode="nearest"), dict(size=(7, 9), mode="nearest"),
    dict(scale_factor=2, mode="bilinear", align_corners=False),
    dict(size=(9, 5), mode="bilinear", align_corners=True),
    dict(scale_factor=3, mode="bilinear", align_corners=False),
    dict(scale_factor=2, mode="nearest-exact"), dict(size=(7, 9), mode="nearest-exact"),
    dict(scale_factor=1.5, mode="nearest", recompute_scale_factor=True),
])
def test_upsample_exporter_matches_pytorch(kwargs, tmp_path, rng):
    torch = pytest.importorskip("torch", reason="compared with PyTorch's layer")
    layer = torch.nn.Upsample(**kwargs)
    x = rng.standard_normal((2, 3, 4, 6)).astype(np.float32)
    with torch.no_grad():
        expected = layer(torch.from_numpy(x)).numpy()
    session = _export_stand_in(layer, lambda s: [(s[0], *expected.shape[1:])], x[:1],
                               tmp_path / "up.onnx", "Upsample")
    assert rel_error(session.run(None, {"input": x})[0], expected) <= TOL


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
@pytest.mark.parametrize("layers,bidirectional,batch_first", [
    (1, False, False), (2, False, True), (2, True, False)])
def test_recurrent_exporters_match_pytorch(kind, layers, bidirectional, batch_first, tmp_path,
                                           rng):
    torch = pytest.importorskip("torch", reason="compared with PyTorch's layer")
    torch.manual_seed(0)
    layer = getattr(torch.nn, kind)(5, 4, num_layers=layers, bidirectional=bidirectional,
                                    batch_first=batch_first)
    x = rng.standard_normal((3, 6, 5)).astype(np.float32)  # (batch, seq) or (seq, batch)
    d = 2 if bidirectional else 1
    n_states = 2 if kind == "LSTM" else 1

    def shapes(s):
        batch = s[0] if batch_first else s[1]
        seq = s[1] if batch_first else s[0]
        out_shape = (batch, seq, d * 4) if batch_first else (seq, batch, d * 4)
        return [out_shape] + [(layers * d, batch, 4)] * n_states

    # The first dimension is the one left free: the batch with batch_first, else the
    # sequence length (the batch is then fixed).
    session = _export_stand_in(layer, shapes, x[:1], tmp_path / "rnn.onnx", kind)
    for n in (3, 1):
        with torch.no_grad():
            out, state = layer(torch.from_numpy(x[:n]))
        states = [s.numpy() for s in (state if kind == "LSTM" else (state,))]
        results = session.run(None, {"input": x[:n]})
        np.testing.assert_allclose(results[0], out.numpy(), rtol=1e-4, atol=1e-5)
        for got, want in zip(results[1:], states, strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def _cat(tensors, dim):
    """cnnlab.cat where this version has it, else the graph's own concatenation."""
    from cnnlab.onnx import graph

    cat = getattr(cnnlab, "cat", None)
    return cat(tensors, dim=dim) if cat is not None else graph.concat(tensors, dim)


class TinyUNet(nn.Module):
    """Down, up (nearest, by broadcasting), and a concatenated skip connection."""

    def __init__(self):
        super().__init__()
        self.enc = nn.Conv2d(1, 4, 3, padding=1)
        self.mid = nn.Conv2d(4, 8, 3, padding=1)
        self.dec = nn.Conv2d(12, 4, 3, padding=1)
        self.head = nn.Conv2d(4, 2, 1)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x):
        skip = F.relu(self.enc(x))
        y = F.relu(self.mid(self.pool(skip)))
        n, c, h, w = y.shape
        up = y[:, :, :, None, :, None].expand(n, c, h, 2, w, 2).reshape(n, c, 2 * h, 2 * w)
        return self.head(F.relu(self.dec(_cat([up, skip], 1))))


def test_unet_with_skip_concatenation_exports_and_imports(tmp_path, seeded, rng):
    from cnnlab.onnx import load

    model = TinyUNet()
    x = digit_images((1, 8, 12), 3)
    path = tmp_path / "unet.onnx"
    export(model, x[:1], path)
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert "Concat" in ops and "Expand" in ops
    assert max(run_both(model, path, [x[:1], x])) <= TOL
    back = load(path)
    model.eval()
    with cnnlab.no_grad():
        assert rel_error(back(Tensor(x)).data, model(Tensor(x)).data) <= 1e-6


def test_embedding_exporter_matches_pytorch(tmp_path, rng):
    torch = pytest.importorskip("torch", reason="compared with PyTorch's layer")
    layer = torch.nn.Embedding(11, 4)
    tokens = rng.integers(0, 11, (3, 5)).astype(np.int64)
    with torch.no_grad():
        expected = layer(torch.from_numpy(tokens)).numpy()
    session = _export_stand_in(layer, lambda s: [(*s, 4)], tokens[:1], tmp_path / "emb.onnx",
                               "Embedding")
    np.testing.assert_array_equal(session.run(None, {"input": tokens})[0], expected)


@pytest.mark.skipif(not all(hasattr(nn, n) for n in ("ConvTranspose2d", "Upsample"))
                    or not hasattr(cnnlab, "cat"),
                    reason="needs nn.ConvTranspose2d, nn.Upsample and cnnlab.cat")
@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
def test_unet_with_transposed_convolution_upsampling_and_cat(mode, tmp_path, seeded, rng):
    from cnnlab.onnx import load

    class UNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.enc1, self.enc2 = nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(4, 8, 3, padding=1)
            self.pool = nn.MaxPool2d(2)
            self.bottom = nn.Conv2d(8, 8, 3, padding=1)
            self.up1 = nn.ConvTranspose2d(8, 8, 2, stride=2)
            self.dec1 = nn.Conv2d(16, 4, 3, padding=1)
            self.up2 = nn.Upsample(scale_factor=2, mode=mode,
                                   align_corners=False if mode == "bilinear" else None)
            self.dec2 = nn.Conv2d(8, 3, 1)

        def forward(self, x):
            s1 = F.relu(self.enc1(x))
            s2 = F.relu(self.enc2(self.pool(s1)))
            b = F.relu(self.bottom(self.pool(s2)))
            d1 = F.relu(self.dec1(cnnlab.cat([self.up1(b), s2], dim=1)))
            return self.dec2(cnnlab.cat([self.up2(d1), s1], dim=1))

    model = UNet()
    x = digit_images((1, 12, 16), 3)
    path = tmp_path / "unet.onnx"
    export(model, x[:1], path)
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert {"ConvTranspose", "Resize", "Concat"} <= set(ops)
    assert max(run_both(model, path, [x[:1], x])) <= TOL
    back = load(path)
    assert {"ConvTranspose2d", "Resize", "Concatenate"} <= {
        type(m).__name__ for m in back.children()}
    model.eval()
    with cnnlab.no_grad():
        assert rel_error(back(Tensor(x)).data, model(Tensor(x)).data) <= 1e-6


@pytest.mark.skipif(not all(hasattr(nn, n) for n in ("LSTM", "GRU", "Embedding")),
                    reason="needs nn.Embedding, nn.LSTM and nn.GRU")
@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_embedding_and_recurrent_layers_export_and_import(kind, tmp_path, seeded, rng):
    from cnnlab.onnx import load

    class Tagger(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(12, 5)
            self.rnn = getattr(nn, kind)(5, 6, num_layers=2, batch_first=True,
                                         bidirectional=True)
            self.fc = nn.Linear(12 + 6, 4)

        def forward(self, tokens):
            y, state = self.rnn(self.emb(tokens))
            h = state[0] if kind == "LSTM" else state
            last = h[-1][:, None, :].expand(-1, y.shape[1], -1)
            return self.fc(_cat([y, last], 2))

    model = Tagger().eval()
    tokens = rng.integers(0, 12, (3, 7)).astype(np.int64)
    path = tmp_path / "tagger.onnx"
    export(model, tokens[:1], path)
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with cnnlab.no_grad():
        expected = model(Tensor(tokens)).data
    assert rel_error(session.run(None, {"input": tokens})[0], expected) <= TOL
    back = load(path)
    with cnnlab.no_grad():
        assert rel_error(back(Tensor(tokens)).data, expected) <= 1e-6
