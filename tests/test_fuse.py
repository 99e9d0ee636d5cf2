"""nn.fuse: the one place that fuses layers; fused layers give the unfused values and
gradients exactly, keep the state_dict keys and share the parameters."""

import numpy as np
import pytest

import cnnlab
from cnnlab import nn
from cnnlab.tensor import Tensor


def _kinds(model):
    return [type(m).__name__ for m in model]


def test_fuse_replaces_the_runs_it_knows_and_keeps_the_rest():
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),      # conv-relu-pool
        nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),  # relu-pool
        nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(),                       # conv-relu
        nn.Flatten(), nn.Linear(4, 2),
    )
    fused = nn.fuse(net)
    assert _kinds(fused) == [
        "ConvReLUMaxPool2d", "Identity", "Identity", "Conv2d", "BatchNorm2d", "ReLUMaxPool2d",
        "Identity", "ConvReLU2d", "Identity", "Flatten", "Linear"]
    assert _kinds(net)[:3] == ["Conv2d", "ReLU", "MaxPool2d"]  # the original is untouched
    assert list(fused.state_dict()) == list(net.state_dict())
    assert fused[0].weight is net[0].weight and fused[4] is net[4]  # shared, not copied
    assert nn.fuse(net, inplace=True) is net and _kinds(net)[0] == "ConvReLUMaxPool2d"


def test_fuse_searches_sequentials_inside_other_modules_and_lists():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU())
            self.blocks = nn.ModuleList([nn.Sequential(nn.ReLU(), nn.MaxPool2d(2))])
            self.head = nn.Linear(2, 2)

        def forward(self, x):
            return self.blocks[0](self.features(x))

    net = Net()
    fused = nn.fuse(net)
    assert _kinds(fused.features) == ["ConvReLU2d", "Identity"]
    assert _kinds(fused.blocks[0]) == ["ReLUMaxPool2d", "Identity"]
    assert _kinds(net.features) == ["Conv2d", "ReLU"] and fused.head is net.head
    x = cnnlab.randn(2, 1, 6, 6)
    np.testing.assert_array_equal(fused(x).data, net(x).data)


def test_layers_with_hooks_and_conv_subclasses_are_not_fused():
    class Doubled(nn.Conv2d):
        def forward(self, x):
            return super().forward(x) * 2

    hooked = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU())
    hooked[1].register_forward_hook(lambda module, inputs, out: None)
    assert _kinds(nn.fuse(hooked)) == ["Conv2d", "ReLU"]
    assert _kinds(nn.fuse(nn.Sequential(Doubled(1, 1, 1), nn.ReLU()))) == ["Doubled", "ReLU"]


def _integer_net(rng, *layers):
    """Integer weights and inputs: many exact zeros and ties, where orders could differ."""
    net = nn.Sequential(*layers).to(np.float64)
    for layer in net:
        if isinstance(layer, nn.Conv2d):
            layer.weight.data[...] = rng.integers(-1, 2, layer.weight.shape)
            layer.bias.data[...] = rng.integers(-1, 2, layer.bias.shape)
    return net


def _values_and_grads(net, x, g):
    X = Tensor(x, requires_grad=True)
    net.zero_grad()
    out = net(X)
    out.backward(g)
    grads = [p.grad.data.copy() for p in net.parameters()]
    return [out.data, X.grad.data, *grads]


@pytest.mark.parametrize("pool", [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1)])
@pytest.mark.parametrize("with_conv", [True, False])
def test_fused_layers_train_with_the_unfused_values_and_gradients(pool, with_conv):
    rng = np.random.default_rng(0)
    layers = [nn.Conv2d(2, 3, 3, padding=1)] if with_conv else []
    net = _integer_net(rng, *layers, nn.ReLU(), nn.MaxPool2d(**pool), nn.Flatten())
    x = rng.integers(-3, 4, (3, 2, 7, 6)).astype(np.float64)
    g = rng.standard_normal(net(Tensor(x)).shape)
    written = _values_and_grads(net, x, g)
    fused = nn.fuse(net)
    assert _kinds(fused)[0] == ("ConvReLUMaxPool2d" if with_conv else "ReLUMaxPool2d")
    for a, b in zip(_values_and_grads(fused, x, g), written, strict=True):
        np.testing.assert_array_equal(a, b)


def test_conv_relu_trains_with_the_unfused_values_and_gradients():
    rng = np.random.default_rng(1)
    net = _integer_net(rng, nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 3))
    x = rng.integers(-2, 3, (2, 3, 6, 6)).astype(np.float64)
    g = np.ones((2, 2, 4, 4))
    fused = nn.fuse(net)
    assert _kinds(fused) == ["ConvReLU2d", "Identity", "Conv2d"]
    for a, b in zip(_values_and_grads(fused, x, g), _values_and_grads(net, x, g), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("hw", [8, 7], ids=["even map: one pass", "odd map: three ops"])
@pytest.mark.parametrize("pool", [nn.MaxPool2d(2), nn.MaxPool2d(2, stride=1),
                                  nn.MaxPool2d(3, stride=2, padding=1)])
def test_inference_gives_the_unfused_values(hw, pool):
    rng = np.random.default_rng(hw)
    net = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), pool, nn.Flatten())
    x = Tensor(rng.integers(-2, 3, (2, 2, hw, hw)).astype(np.float32))
    fused = nn.fuse(net).eval()
    with cnnlab.no_grad():
        np.testing.assert_array_equal(fused(x).data, net.eval()(x).data)
    # Eval mode with gradients wanted (saliency, say) takes the differentiable path.
    X = Tensor(x.data, requires_grad=True)
    fused(X).sum().backward()
    assert X.grad is not None


def test_an_error_in_a_fused_layer_names_its_position_and_keeps_the_type():
    net = nn.fuse(nn.Sequential(nn.Conv2d(3, 2, 3), nn.ReLU(), nn.MaxPool2d(2)))
    with pytest.raises(ValueError, match=r"^layer 0: ConvReLUMaxPool2d\(3, 2, .*expected input "
                                         r"with 3 channels"):
        net(Tensor(np.ones((1, 1, 4, 4), np.float32)))


def test_a_valueerror_subclass_raised_in_a_sequential_keeps_its_type():
    class Custom(ValueError):
        pass

    class Raises(nn.Module):
        def forward(self, x):
            raise Custom("this layer refuses")

    with pytest.raises(Custom, match=r"^layer 1\.0: this layer refuses"):
        nn.Sequential(nn.ReLU(), nn.Sequential(Raises()))(cnnlab.zeros(1))


def test_the_one_pass_op_refuses_tensors_that_need_gradients():
    from cnnlab.ops import conv as conv_ops

    w = Tensor(np.ones((1, 1, 3, 3), np.float32), requires_grad=True)
    with pytest.raises(RuntimeError, match="inference.*no_grad"):
        conv_ops.conv2d_relu_maxpool2(Tensor(np.ones((1, 1, 4, 4), np.float32)), w)
    with cnnlab.no_grad():
        out = conv_ops.conv2d_relu_maxpool2(Tensor(np.ones((1, 1, 4, 4), np.float32)), w,
                                            padding=1)
    assert out.shape == (1, 1, 2, 2) and not out.requires_grad


def test_summary_shows_what_runs_fused():
    from cnnlab.inspect.summary import summary

    s = summary("conv3x3x4p1-relu-pool2-conv3x3x4p1-bn-relu-pool2-conv3x3x4-relu-fc2",
                (1, 16, 16))
    assert s.fused == [{"layers": ["0", "1", "2"], "as": "ConvReLUMaxPool2d"},
                       {"layers": ["5", "6"], "as": "ReLUMaxPool2d"},
                       {"layers": ["7", "8"], "as": "ConvReLU2d"}]
    assert "layers 0-2 as ConvReLUMaxPool2d; 5-6 as ReLUMaxPool2d; 7-8 as" in \
        str(s).replace("\n  ", " ")

    class Net(nn.Module):  # a hand-written forward: only its Sequential fuses
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU())
            self.head = nn.Linear(4 * 6 * 6, 2)

        def forward(self, x):
            return self.head(cnnlab.flatten(self.features(x), 1))

    assert summary(Net(), (1, 8, 8)).to_dict()["fused"] == [
        {"layers": ["features.0", "features.1"], "as": "ConvReLU2d"}]
