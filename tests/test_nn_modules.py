"""Module structure: parameter names and order, state dicts, modes, hooks, init, repr."""

from __future__ import annotations

import math

import numpy as np
import pytest

import cnnlab
from cnnlab import Tensor, nn
from cnnlab.nn import functional as F


class Custom(nn.Module):
    """Layers held directly, in a list, in a dict and in a tuple; a bare Parameter; a buffer."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 2, 3)
        self.blocks = [nn.Conv2d(2, 2, 3, padding=1), nn.ReLU(), nn.Conv2d(2, 2, 1)]
        self.heads = {"cls": nn.Linear(2, 3), "box": nn.Linear(2, 4, bias=False)}
        self.scale = nn.Parameter(np.ones(1, np.float32))
        self.pair = (nn.BatchNorm2d(2),)
        self.register_buffer("steps", np.zeros((), np.int64))
        self.note = "not a parameter"

    def forward(self, x):
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        x = self.pair[0](x)
        x = F.adaptive_avg_pool2d(x, 1).flatten(1) * self.scale
        return self.heads["cls"](x), self.heads["box"](x)


# A module's own parameters first, then each sub-module's in assignment order (as PyTorch).
EXPECTED_PARAMS = [
    "scale", "stem.weight", "stem.bias", "blocks.0.weight", "blocks.0.bias", "blocks.2.weight",
    "blocks.2.bias", "heads.cls.weight", "heads.cls.bias", "heads.box.weight", "pair.0.weight",
    "pair.0.bias",
]


def test_named_parameters_order_and_dotted_names(seeded):
    model = Custom()
    assert [n for n, _ in model.named_parameters()] == EXPECTED_PARAMS
    assert len(list(model.parameters())) == len(EXPECTED_PARAMS)
    assert all(isinstance(p, nn.Parameter) and p.requires_grad for p in model.parameters())


def test_every_parameter_gets_a_gradient(seeded):
    model = Custom()
    cls, box = model(Tensor(np.random.default_rng(0).random((2, 1, 6, 6), np.float32)))
    (cls.sum() + box.sum()).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert missing == []


def test_named_modules_children_and_buffers(seeded):
    model = Custom()
    assert [n for n, _ in model.named_children()] == [
        "stem", "blocks.0", "blocks.1", "blocks.2", "heads.cls", "heads.box", "pair.0"]
    names = [n for n, _ in model.named_modules()]
    assert names[0] == "" and names[1:] == [n for n, _ in model.named_children()]
    assert [n for n, _ in model.named_buffers()] == [
        "steps", "pair.0.running_mean", "pair.0.running_var", "pair.0.num_batches_tracked"]
    assert len(list(model.buffers())) == 4 and len(list(model.modules())) == 8


def test_sequential_names_and_container_behaviour(seeded):
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Sequential(nn.Flatten(),
                                                                      nn.Linear(8, 2)))
    assert [n for n, _ in net.named_parameters()] == [
        "0.weight", "0.bias", "2.1.weight", "2.1.bias"]
    assert len(net) == 3 and isinstance(net[1], nn.ReLU) and isinstance(net[-1], nn.Sequential)
    assert [type(m).__name__ for m in net] == ["Conv2d", "ReLU", "Sequential"]
    head = net[:2]
    assert isinstance(head, nn.Sequential) and len(head) == 2 and head[0] is net[0]
    net.append(nn.ReLU())
    assert len(net) == 4


def test_shared_parameter_listed_once(seeded):
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(3, 3)
            self.b = self.a

        def forward(self, x):
            return self.b(self.a(x))

    model = Tied()
    assert [n for n, _ in model.named_parameters()] == ["a.weight", "a.bias"]
    model.load_state_dict(model.state_dict())  # the round trip works for shared layers


def test_parameter_shared_between_layers_round_trips(seeded):
    class TiedWeight(nn.Module):
        def __init__(self):
            super().__init__()
            self.enc, self.dec = nn.Linear(3, 3), nn.Linear(3, 3)
            self.dec.weight = self.enc.weight

        def forward(self, x):
            return self.dec(self.enc(x))

    model = TiedWeight()
    sd = model.state_dict()
    assert list(sd) == ["enc.weight", "enc.bias", "dec.bias"]
    sd["enc.weight"] = np.eye(3, dtype=np.float32)
    model.load_state_dict(sd)
    assert model.dec.weight is model.enc.weight
    np.testing.assert_array_equal(model.dec.weight.data, np.eye(3))


# ----- state_dict ---------------------------------------------------------------------------


def test_state_dict_round_trip(seeded):
    a, b = Custom(), Custom()
    a.pair[0](Tensor(np.random.default_rng(1).random((3, 2, 2, 2), np.float32)))  # stats move
    a.steps[...] = 7
    sd = a.state_dict()
    assert list(sd) == EXPECTED_PARAMS + [
        "steps", "pair.0.running_mean", "pair.0.running_var", "pair.0.num_batches_tracked"]
    b.load_state_dict(sd)
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert x.dtype == y.dtype and np.array_equal(x, y), name
    assert int(b.pair[0].num_batches_tracked) == 1 and int(b.steps) == 7


def test_state_dict_holds_copies(seeded):
    model = nn.Linear(2, 2)
    sd = model.state_dict()
    sd["weight"][...] = 42
    assert not np.any(model.weight.data == 42)


def test_load_state_dict_copies_in_place(seeded):
    model = nn.Linear(2, 2)
    weight = model.weight.data
    source = {"weight": np.full((2, 2), 3.0), "bias": Tensor(np.zeros(2, np.float32))}
    model.load_state_dict(source)
    assert model.weight.data is weight  # optimizers holding the array still see it
    assert model.weight.dtype == np.float32 and np.all(weight == 3.0)
    source["weight"][...] = 5.0
    assert np.all(model.weight.data == 3.0)


def test_load_state_dict_missing_and_unexpected_keys(seeded):
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Linear(2, 2))
    sd = model.state_dict()
    sd.pop("2.bias")
    sd["3.weight"] = np.zeros(1)
    with pytest.raises(KeyError, match=r"load_state_dict for Sequential: missing keys "
                                       r"\['2.bias'\]; unexpected keys \['3.weight'\]; the saved "
                                       r"weights come from a different architecture"):
        model.load_state_dict(sd)
    with pytest.raises(KeyError, match=r"missing keys \['0.weight', '0.bias'"):
        model.load_state_dict({})


def test_load_state_dict_non_strict(seeded):
    model = nn.Linear(2, 2)
    before = model.bias.data.copy()
    model.load_state_dict({"weight": np.ones((2, 2)), "extra": np.zeros(3)}, strict=False)
    assert np.all(model.weight.data == 1) and np.array_equal(model.bias.data, before)


def test_load_state_dict_shape_mismatch(seeded):
    model = nn.Sequential(nn.Conv2d(3, 6, 5))
    sd = model.state_dict()
    sd["0.weight"] = np.zeros((6, 1, 5, 5), np.float32)
    with pytest.raises(ValueError, match=r"load_state_dict: '0.weight' expected shape "
                                         r"\(6, 3, 5, 5\), got \(6, 1, 5, 5\)"):
        model.load_state_dict(sd)


# ----- modes, grads, dtypes -----------------------------------------------------------------


def test_train_and_eval_propagate(seeded):
    model = Custom()
    assert all(m.training for m in model.modules())
    assert model.eval() is model
    assert not any(m.training for m in model.modules())
    model.train()
    assert all(m.training for m in model.modules())
    model.train(False)
    assert not model.blocks[1].training and not model.pair[0].training


def test_eval_changes_dropout_and_batchnorm(seeded):
    net = nn.Sequential(nn.BatchNorm2d(2), nn.Dropout(0.5))
    x = Tensor(np.random.default_rng(0).random((4, 2, 3, 3), np.float32) + 1)
    net(x)
    stats = net[0].running_mean.copy()
    net.eval()
    out1, out2 = net(x).data, net(x).data
    np.testing.assert_array_equal(out1, out2)  # no dropout, running statistics
    np.testing.assert_array_equal(net[0].running_mean, stats)  # not updated in eval
    assert int(net[0].num_batches_tracked) == 1


def test_zero_grad(seeded):
    model = nn.Linear(2, 2)
    model(Tensor(np.ones((1, 2), np.float32))).sum().backward()
    assert model.weight.grad is not None
    model.zero_grad()
    assert model.weight.grad is None and model.bias.grad is None


def test_double_and_float(seeded):
    model = Custom().double()
    assert all(p.dtype == np.float64 for p in model.parameters())
    assert model.pair[0].running_var.dtype == np.float64
    assert model.pair[0].num_batches_tracked.dtype == np.int64  # integers stay integers
    model.float()
    assert all(p.dtype == np.float32 for p in model.parameters())


# ----- hooks --------------------------------------------------------------------------------


def test_forward_hook_sees_inputs_and_output_and_can_be_removed(seeded):
    conv = nn.Conv2d(1, 2, 3)
    seen = []
    handle = conv.register_forward_hook(
        lambda module, inputs, output: seen.append((module, inputs, output.shape)))
    x = Tensor(np.zeros((1, 1, 5, 5), np.float32))
    conv(x)
    assert len(seen) == 1 and seen[0][0] is conv and seen[0][1][0] is x
    assert seen[0][2] == (1, 2, 3, 3)
    handle.remove()
    conv(x)
    assert len(seen) == 1
    handle.remove()  # removing twice is harmless


def test_forward_hook_can_replace_output_and_hooks_run_in_order(seeded):
    relu = nn.ReLU()
    order = []
    relu.register_forward_hook(lambda m, i, o: order.append("first"))
    relu.register_forward_hook(lambda m, i, o: o * 2.0)
    relu.register_forward_hook(lambda m, i, o: order.append(o.data.tolist()))
    out = relu(Tensor([1.0, -1.0]))
    assert out.data.tolist() == [2.0, 0.0]
    assert order == ["first", [2.0, 0.0]]


def test_hooks_on_layers_inside_sequential(seeded):
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2))
    shapes = {}
    handles = [m.register_forward_hook(lambda m, i, o, n=n: shapes.__setitem__(n, o.shape))
               for n, m in net.named_children()]
    net(Tensor(np.zeros((1, 1, 6, 6), np.float32)))
    assert shapes == {"0": (1, 2, 4, 4), "1": (1, 2, 4, 4), "2": (1, 2, 2, 2)}
    for h in handles:
        h.remove()


# ----- initialization -----------------------------------------------------------------------


@pytest.mark.parametrize("make, fan_in", [
    (lambda: nn.Conv2d(16, 32, 5), 16 * 25),
    (lambda: nn.Conv2d(8, 16, (3, 2), groups=4), 2 * 3 * 2),
    (lambda: nn.Linear(300, 200), 300),
])
def test_default_init_is_pytorchs_kaiming_uniform(make, fan_in, seeded):
    layer = make()
    bound = 1 / math.sqrt(fan_in)  # kaiming_uniform(a=sqrt(5)): gain*sqrt(3/fan_in)
    w, b = layer.weight.data, layer.bias.data
    assert w.dtype == b.dtype == np.float32
    assert np.all(np.abs(w) <= bound) and np.all(np.abs(b) <= bound)
    # Uniform on [-bound, bound]: the extremes are nearly reached, the mean is ~0,
    # the standard deviation is bound/sqrt(3) and the quartiles are at -+bound/2.
    # Tolerances are 5 standard errors for n samples.
    n = w.size
    assert np.max(w) > bound * (1 - 20 / n) and np.min(w) < -bound * (1 - 20 / n)
    assert abs(w.mean()) < 5 * bound / math.sqrt(3 * n)
    assert abs(w.std() - bound / math.sqrt(3)) < 5 * 0.26 * bound / math.sqrt(n)
    np.testing.assert_allclose(np.quantile(w, [0.25, 0.75]), [-bound / 2, bound / 2],
                               atol=5 * 0.87 * bound / math.sqrt(n))


def test_init_matches_torch_distribution(seeded):
    torch = pytest.importorskip("torch", reason="compares init with PyTorch's")
    ours = nn.Conv2d(6, 16, 5).weight.data.ravel()
    torch.manual_seed(0)
    theirs = torch.nn.Conv2d(6, 16, 5).weight.detach().numpy().ravel()
    # Two samples of the same distribution: the Kolmogorov-Smirnov distance is small.
    grid = np.sort(np.concatenate([ours, theirs]))
    cdf = [np.searchsorted(np.sort(s), grid, side="right") / s.size for s in (ours, theirs)]
    assert np.max(np.abs(cdf[0] - cdf[1])) < 1.95 * math.sqrt(2 / ours.size)
    assert abs(np.abs(ours).max() - np.abs(theirs).max()) < 0.01


def test_reset_parameters_redraws_from_the_generator(seeded):
    conv = nn.Conv2d(3, 4, 3)
    first = conv.weight.data.copy()
    weight = conv.weight.data
    conv.reset_parameters()
    assert conv.weight.data is weight  # in place
    assert not np.array_equal(first, conv.weight.data)
    cnnlab.manual_seed(0)
    again = nn.Conv2d(3, 4, 3)
    np.testing.assert_array_equal(again.weight.data, first)


def test_batchnorm_reset_parameters():
    bn = nn.BatchNorm2d(3)
    bn.weight.data[...] = 5
    bn(Tensor(np.random.default_rng(0).random((2, 3, 2, 2), np.float32)))
    bn.reset_parameters()
    assert np.all(bn.weight.data == 1) and np.all(bn.bias.data == 0)
    assert np.all(bn.running_mean == 0) and np.all(bn.running_var == 1)
    assert int(bn.num_batches_tracked) == 0


# ----- repr ---------------------------------------------------------------------------------


@pytest.mark.parametrize("layer, text", [
    (lambda: nn.Conv2d(3, 6, 5), "Conv2d(3, 6, kernel_size=(5, 5))"),
    (lambda: nn.Conv2d(3, 6, (5, 3), stride=2, padding=1, dilation=2, groups=3, bias=False),
     "Conv2d(3, 6, kernel_size=(5, 3), stride=(2, 2), padding=(1, 1), dilation=(2, 2), "
     "groups=3, bias=False)"),
    (lambda: nn.Linear(4, 2), "Linear(in_features=4, out_features=2)"),
    (lambda: nn.Linear(4, 2, bias=False), "Linear(in_features=4, out_features=2, bias=False)"),
    (lambda: nn.MaxPool2d(2), "MaxPool2d(kernel_size=(2, 2))"),
    (lambda: nn.AvgPool2d(3, 2, 1), "AvgPool2d(kernel_size=(3, 3), stride=(2, 2), "
                                    "padding=(1, 1))"),
    (lambda: nn.AdaptiveAvgPool2d(1), "AdaptiveAvgPool2d(output_size=(1, 1))"),
    (nn.ReLU, "ReLU()"),
    (lambda: nn.LeakyReLU(0.2), "LeakyReLU(negative_slope=0.2)"),
    (lambda: nn.Dropout(0.3), "Dropout(p=0.3)"),
    (lambda: nn.BatchNorm2d(8), "BatchNorm2d(8, eps=1e-05, momentum=0.1)"),
])
def test_repr_shows_non_default_arguments(layer, text, seeded):
    assert repr(layer()) == text


def test_nested_repr(seeded):
    net = nn.Sequential(nn.Conv2d(1, 6, 5), nn.ReLU(), nn.Sequential(nn.Flatten()))
    assert repr(net) == (
        "Sequential(\n"
        "  (0): Conv2d(1, 6, kernel_size=(5, 5))\n"
        "  (1): ReLU()\n"
        "  (2): Sequential(\n"
        "    (0): Flatten()\n"
        "  )\n"
        ")"
    )


def test_layer_attributes_mirror_pytorch(seeded):
    conv = nn.Conv2d(3, 6, 5, stride=2, padding=(1, 2))
    assert (conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
            conv.dilation, conv.groups) == (3, 6, (5, 5), (2, 2), (1, 2), (1, 1), 1)
    assert nn.Conv2d(3, 6, 5, bias=False).bias is None
    lin = nn.Linear(4, 2)
    assert (lin.in_features, lin.out_features, lin.weight.shape) == (4, 2, (2, 4))
    pool = nn.MaxPool2d(3, stride=2)
    assert (pool.kernel_size, pool.stride, pool.padding) == ((3, 3), (2, 2), (0, 0))
    assert nn.AvgPool2d(2).stride == (2, 2)


def test_a_hook_on_the_relu_sees_the_full_map_before_pooling():
    net = nn.Sequential(nn.ReLU(), nn.MaxPool2d(2))
    seen = []
    net[0].register_forward_hook(lambda module, inputs, out: seen.append(out.shape))
    assert net(Tensor(np.ones((1, 1, 4, 4)))).shape == (1, 1, 2, 2)
    assert seen == [(1, 1, 4, 4)]


def test_an_error_in_the_pool_after_a_relu_names_the_pooling_layer():
    net = nn.Sequential(nn.ReLU(), nn.MaxPool2d(5))
    with pytest.raises(ValueError, match="^layer 1: MaxPool2d"):
        net(Tensor(np.ones((1, 1, 4, 4))))


def test_an_error_in_a_conv_before_a_relu_names_the_conv():
    net = nn.Sequential(nn.Conv2d(3, 2, 3), nn.ReLU())
    with pytest.raises(ValueError, match="^layer 0: Conv2d.*expected input with 3 channels"):
        net(Tensor(np.ones((1, 1, 4, 4), np.float32)))
