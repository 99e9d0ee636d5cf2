"""The ops and modules behind imported graphs: pad and concatenation against central
differences (float64) and PyTorch, and GraphModule's wiring and validation."""

from __future__ import annotations

import numpy as np
import pytest
from gradcheck import check_gradients, distinct_values

import cnnlab
from cnnlab import Tensor, nn
from cnnlab.onnx import graph
from cnnlab.ops.pad import pad

PADS = [
    ((1, 2), "constant", 0.0),
    ((0, 1, 2, 0), "constant", -1.5),
    ((1, 1, 1, 1), "reflect", 0.0),
    ((2, 0, 0, 1), "reflect", 0.0),
    ((1, 2, 2, 1), "replicate", 0.0),
    ((0, 0, 1, 2, 1, 0), "replicate", 0.0),
]


@pytest.mark.parametrize("widths,mode,value", PADS)
def test_pad_gradient(widths, mode, value, rng):
    x = Tensor(distinct_values((2, 2, 4, 5), rng), requires_grad=True)
    check_gradients(lambda: pad(x, widths, mode, value), [x], ["x"])


def test_concat_gradient(rng):
    a = Tensor(distinct_values((2, 3, 4), rng), requires_grad=True)
    b = Tensor(distinct_values((2, 1, 4), rng), requires_grad=True)
    check_gradients(lambda: graph.concat([a, b, a], 1), [a, b], ["a", "b"])


def test_private_concat_op_gradient(rng):
    a = Tensor(distinct_values((2, 3), rng), requires_grad=True)
    b = Tensor(distinct_values((2, 2), rng), requires_grad=True)
    check_gradients(lambda: graph.Concat.apply(a, b, axis=1), [a, b], ["a", "b"])


def _torch_parity(ours, theirs, shape, rng, dtype):
    torch = pytest.importorskip("torch", reason="parity with PyTorch needs torch")
    data = (rng.standard_normal(shape) * 4).astype(dtype)
    x, tx = Tensor(data.copy(), requires_grad=True), torch.tensor(data, requires_grad=True)
    out, tout = ours(x), theirs(tx)
    assert out.dtype == dtype
    np.testing.assert_allclose(out.data, tout.detach().numpy(), rtol=1e-6, atol=1e-6)
    g = rng.standard_normal(out.shape).astype(dtype)
    out.backward(g)
    tout.backward(torch.from_numpy(g))
    np.testing.assert_allclose(x.grad, tx.grad.numpy(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("widths,mode,value", PADS)
def test_pad_matches_torch(widths, mode, value, dtype, rng):
    torch = pytest.importorskip("torch", reason="parity with PyTorch needs torch")
    _torch_parity(lambda x: pad(x, widths, mode, value),
                  lambda x: torch.nn.functional.pad(x, widths, mode, value),
                  (2, 3, 4, 5), rng, dtype)


def test_pad_with_minus_infinity_keeps_float32():
    out = pad(Tensor(np.ones((1, 1, 2, 2), np.float32)), (0, 1, 0, 1), value=float("-inf"))
    assert out.dtype == np.float32 and out.shape == (1, 1, 3, 3)
    assert np.isneginf(out.data[0, 0, 2]).all()


@pytest.mark.parametrize("args,match", [
    (((1,), "constant"), "even number"),
    (((1, 1, 1, 1, 1, 1, 1, 1, 1, 1), "constant"), "even number"),
    (((-1, 0), "constant"), ">= 0"),
    (((1, 1), "wrap"), "mode must be one of constant, reflect, replicate"),
    (((4, 0), "reflect"), "longer than both widths"),
])
def test_pad_rejects_bad_arguments(args, match):
    with pytest.raises(ValueError, match=match):
        pad(Tensor(np.zeros((1, 2, 3, 4), np.float32)), *args)


def test_clip_rejects_bad_bounds():
    with pytest.raises(ValueError, match="Clip needs min <= max"):
        graph.Clip(2, 1)
    with pytest.raises(ValueError, match="Clip needs min <= max"):
        graph.Clip()


# ----------------------------------------------------------------------------- GraphModule


def _residual_config():
    return {
        "inputs": [{"name": "x", "shape": [None, 2, 5, 5], "dtype": "float32"}],
        "outputs": ["y"],
        "nodes": [
            {"name": "conv", "type": "Conv2d", "args": {"in_channels": 2, "out_channels": 2,
                                                       "kernel_size": 3, "padding": 1},
             "inputs": ["x"], "outputs": ["c"]},
            {"name": "add", "type": "Add", "args": {}, "inputs": ["c", "x"],
             "outputs": ["s"]},
            {"name": "scale", "type": "Mul", "args": {"constant": [1, 2, 1, 1]},
             "inputs": ["s"], "outputs": ["y"]},
        ],
    }


def test_graph_module_runs_a_skip_connection_and_trains(seeded, rng):
    g = graph.GraphModule(_residual_config())
    g["scale"].value[...] = np.array([2.0, -1.0], np.float32).reshape(1, 2, 1, 1)
    x = rng.standard_normal((3, 2, 5, 5)).astype(np.float32)
    conv = g["conv"]
    expected = (conv(Tensor(x)).data + x) * g["scale"].value
    np.testing.assert_allclose(g(Tensor(x)).data, expected, rtol=1e-6)
    assert list(g.state_dict()) == ["conv.weight", "conv.bias", "scale.value"]
    g(Tensor(x)).sum().backward()
    assert conv.weight.grad is not None and conv.weight.grad.shape == (2, 2, 3, 3)


def test_graph_module_gradients_flow_through_every_node_kind(rng):
    config = {
        "inputs": [{"name": "x", "shape": [None, 2, 4, 4], "dtype": "float32"}],
        "outputs": ["out"],
        "nodes": [
            {"name": "pad", "type": "Pad", "args": {"pads": [0, 0, 1, 0, 0, 0, 0, 1],
                                                     "mode": "reflect"},
             "inputs": ["x"], "outputs": ["p"]},
            {"name": "clip", "type": "Clip", "args": {"min": -0.5, "max": 0.5},
             "inputs": ["p"], "outputs": ["c"]},
            {"name": "cat", "type": "Concatenate", "args": {"axis": 1}, "inputs": ["c", "p"],
             "outputs": ["k"]},
            {"name": "mean", "type": "ReduceMean", "args": {"axes": [2, 3], "keepdims": False},
             "inputs": ["k"], "outputs": ["m"]},
            {"name": "gmax", "type": "GlobalMaxPool", "args": {}, "inputs": ["k"],
             "outputs": ["g"]},
            {"name": "flat", "type": "OnnxFlatten", "args": {"axis": 1}, "inputs": ["g"],
             "outputs": ["f"]},
            {"name": "sum", "type": "Add", "args": {}, "inputs": ["m", "f"], "outputs": ["s"]},
            {"name": "sl", "type": "Slice", "args": {"items": [[1, 0, 3, 1]]},
             "inputs": ["s"], "outputs": ["t"]},
            {"name": "gather", "type": "Gather", "args": {"axis": 1, "indices": [2, 0]},
             "inputs": ["t"], "outputs": ["u"]},
            {"name": "unsq", "type": "Unsqueeze", "args": {"axes": [1]}, "inputs": ["u"],
             "outputs": ["v"]},
            {"name": "tr", "type": "Transpose", "args": {"perm": [0, 2, 1]},
             "inputs": ["v"], "outputs": ["w"]},
            {"name": "resh", "type": "Reshape", "args": {"shape": [0, -1]}, "inputs": ["w"],
             "outputs": ["r"]},
            {"name": "pow", "type": "Pow", "args": {"exponent": 2.0}, "inputs": ["r"],
             "outputs": ["q"]},
            {"name": "smax", "type": "Softmax", "args": {"dim": -1}, "inputs": ["q"],
             "outputs": ["out"]},
        ],
    }
    g = graph.GraphModule(config).double()
    x = Tensor(distinct_values((2, 2, 4, 4), rng), requires_grad=True)
    check_gradients(lambda: g(x), [x], ["x"])


@pytest.mark.parametrize("change,match", [
    (lambda c: c["nodes"][1].update(type="Evil"), "unknown type 'Evil'"),
    (lambda c: c["nodes"][1].update(inputs=["c", "nowhere"]), "'nowhere' is not defined"),
    (lambda c: c["nodes"][2].update(name="conv"), "used twice"),
    (lambda c: c["nodes"][0].update(name="../x"), "bad name"),
    (lambda c: c.update(outputs=["zz"]), "output 'zz' is not computed"),
    (lambda c: c["nodes"][0]["args"].update(kernel_size=0), "node 'conv' \\(Conv2d\\)"),
    (lambda c: c["nodes"][0]["args"].update(evil=1), "node 'conv' \\(Conv2d\\)"),
    (lambda c: c.update(extra=1), "unknown field 'extra'"),
])
def test_graph_config_errors_name_the_node(change, match):
    config = _residual_config()
    change(config)
    with pytest.raises(ValueError, match=match):
        graph.GraphModule(config)


def test_graph_module_rebuilds_by_name_from_the_model_registry():
    from cnnlab import models

    g = models.build("graph", _residual_config())
    assert isinstance(g, graph.GraphModule) and "graph" in models.names()
    with pytest.raises(ValueError, match="unknown model 'nope'.*; known models: .*graph"):
        models.build("nope", {})


def test_graph_module_errors_name_the_node():
    g = graph.GraphModule(_residual_config())
    with pytest.raises(ValueError, match="node conv \\(Conv2d\\): .*expected input with 2 "
                                         "channels"):
        g(Tensor(np.zeros((1, 3, 5, 5), np.float32)))


def test_every_node_type_builds_from_json_arguments():
    for name, build in graph.NODE_TYPES.items():
        assert callable(build), name
    assert graph.NODE_TYPES["Conv2d"]({"in_channels": 1, "out_channels": 2,
                                       "kernel_size": [3, 3]}).__class__ is nn.Conv2d
    assert cnnlab.nn.Module in type(graph.NODE_TYPES["Clip"]({"min": 0, "max": 6})).__mro__
