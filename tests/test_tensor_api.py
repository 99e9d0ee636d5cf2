"""The PyTorch-shaped Tensor API: every differentiable method against central differences
in float64 and against torch (forward and gradients); the others against torch's values."""

import numpy as np
import pytest
from gradcheck import check_gradients, distinct_values

import cnnlab
from cnnlab import Tensor

try:
    import torch
except ImportError:  # the suite runs without torch: parity cases are skipped
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="parity with PyTorch needs torch")

# name -> (shape of the input, the same operation written for both libraries)
DIFFERENTIABLE = {
    "transpose(1, 2)": ((2, 3, 4, 5), lambda x: x.transpose(1, 2)),
    "transpose(-1, 0)": ((2, 3, 4), lambda x: x.transpose(-1, 0)),
    "permute(0, 2, 3, 1)": ((2, 3, 4, 5), lambda x: x.permute(0, 2, 3, 1)),
    "T": ((3, 4), lambda x: x.T),
    "mT": ((2, 3, 4), lambda x: x.mT),
    "squeeze()": ((2, 1, 3, 1), lambda x: x.squeeze()),
    "squeeze(1)": ((2, 1, 3, 1), lambda x: x.squeeze(1)),
    "squeeze(0) no-op": ((2, 1, 3), lambda x: x.squeeze(0)),
    "unsqueeze(-1)": ((2, 3), lambda x: x.unsqueeze(-1)),
    "unsqueeze(0)": ((2, 3), lambda x: x.unsqueeze(0)),
    "view(-1, 6)": ((2, 3, 2), lambda x: x.view(-1, 6)),
    "reshape((3, 4))": ((2, 6), lambda x: x.reshape((3, 4))),
    "flatten(1)": ((2, 3, 4, 5), lambda x: x.flatten(1)),
    "flatten(1, 2)": ((2, 3, 4, 5), lambda x: x.flatten(1, 2)),
    "unflatten": ((2, 12), lambda x: x.unflatten(1, (3, 4))),
    "expand": ((3, 1), lambda x: x.expand(2, 3, 4)),
    "expand -1": ((3, 1), lambda x: x.expand(-1, 5)),
    "repeat": ((2, 3), lambda x: x.repeat(2, 1, 3)),
    "clone": ((2, 3), lambda x: x.clone() * 2),
    "sum(dim=1)": ((2, 3, 4), lambda x: x.sum(dim=1)),
    "sum((0, 2), keepdim)": ((2, 3, 4), lambda x: x.sum((0, 2), keepdim=True)),
    "mean(-1)": ((2, 3, 4), lambda x: x.mean(-1)),
    "mean(dim=(1, 2), keepdim)": ((2, 3, 4), lambda x: x.mean(dim=(1, 2), keepdim=True)),
    "var(1)": ((3, 5), lambda x: x.var(1)),
    "std()": ((3, 5), lambda x: x.std()),
    "var(0, correction=0)": ((4, 3), lambda x: x.var(0, correction=0)),
    "max()": ((3, 4), lambda x: x.max()),
    "max(dim=1).values": ((3, 4), lambda x: x.max(dim=1).values),
    "max(0, keepdim)[0]": ((3, 4), lambda x: x.max(0, keepdim=True)[0]),
    "min(1).values": ((3, 4), lambda x: x.min(1).values),
    "amax(1)": ((3, 4), lambda x: x.amax(1)),
    "amin((0, 1))": ((3, 4), lambda x: x.amin((0, 1))),
    "topk(2)": ((3, 5), lambda x: x.topk(2).values),
    "topk(2, largest=False, dim=0)": ((4, 3), lambda x: x.topk(2, dim=0, largest=False)[0]),
    "sort(descending)": ((3, 4), lambda x: x.sort(dim=1, descending=True).values),
    "abs": ((3, 4), lambda x: x.abs()),
    "sqrt": ((3, 4), lambda x: (x * x + 1).sqrt()),
    "clamp(-0.3, 0.4)": ((3, 4), lambda x: x.clamp(-0.3, 0.4)),
    "clamp(min=0.1)": ((3, 4), lambda x: x.clamp(min=0.1)),
    "exp": ((3, 4), lambda x: x.exp()),
    "log": ((3, 4), lambda x: (x * x + 0.5).log()),
    "pow 3": ((3, 4), lambda x: x.pow(3)),
    "softmax(dim=1)": ((3, 4), lambda x: x.softmax(dim=1)),
    "log_softmax(0)": ((3, 4), lambda x: x.log_softmax(0)),
    "sigmoid": ((3, 4), lambda x: x.sigmoid()),
    "tanh": ((3, 4), lambda x: x.tanh()),
    "relu": ((3, 4), lambda x: x.relu()),
    "matmul": ((3, 4), lambda x: x @ x.T),
    "split": ((5, 4), lambda x: x.split(2)[2] * 3 + x.split(2)[0].sum()),
    "chunk": ((6, 2), lambda x: x.chunk(3, dim=0)[1]),
    "getitem fancy": ((4, 3), lambda x: x[[0, 2, 2]]),
    "iterate rows": ((3, 2), lambda x: sum(row * (i + 1) for i, row in enumerate(x))),
    "add alpha": ((3, 2), lambda x: x.add(x * x, alpha=2)),
    "rpow": ((3, 2), lambda x: 2 ** x),
}


def _input(shape, seed=0):
    # Distinct values away from 0: no ties in max/sort, no kinks in abs/clamp/relu.
    return distinct_values(shape, np.random.default_rng(seed), -1.0, 1.0)


@pytest.mark.parametrize("name", list(DIFFERENTIABLE))
def test_method_gradients_match_central_differences(name):
    shape, op = DIFFERENTIABLE[name]
    x = Tensor(_input(shape), requires_grad=True)
    check_gradients(lambda: op(x), [x], names=[name])


@needs_torch
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", list(DIFFERENTIABLE))
def test_method_matches_torch(name, dtype):
    shape, op = DIFFERENTIABLE[name]
    a = _input(shape).astype(dtype)
    ours = Tensor(a.copy(), requires_grad=True)
    theirs = torch.tensor(a.copy(), requires_grad=True)
    out, ref = op(ours), op(theirs)
    assert out.shape == tuple(ref.shape) and out.dtype == dtype
    tol = 1e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out.data, ref.detach().numpy(), rtol=tol, atol=tol)
    g = np.random.default_rng(1).standard_normal(out.shape).astype(dtype)
    out.backward(g)
    ref.backward(torch.from_numpy(g))
    np.testing.assert_allclose(ours.grad.data, theirs.grad.numpy(), rtol=tol * 10,
                               atol=tol * 10)


def test_max_with_dim_returns_values_and_indices_like_torch():
    x = cnnlab.tensor([[1.0, 5.0, 3.0], [7.0, 2.0, 7.0]])
    values, indices = x.max(dim=1)
    assert values.tolist() == [5.0, 7.0] and indices.tolist() == [1, 0]
    assert indices.dtype == np.int64 and x.max(1, keepdim=True).indices.shape == (2, 1)
    assert cnnlab.max(x.data, 1).values.tolist() == [5.0, 7.0]  # an array works too
    assert x.max().item() == 7.0 and x.min(0).indices.tolist() == [0, 1, 0]
    assert cnnlab.maximum(x, cnnlab.full((2, 3), 4.0)).tolist() == [[4, 5, 4], [7, 4, 7]]


def test_ties_send_the_gradient_where_torch_sends_it():
    # Full reduction: shared among ties; with dim: to the first index.
    x = Tensor(np.array([[2.0, 2.0, 1.0]]), requires_grad=True)
    x.max().backward()
    assert x.grad.tolist() == [[0.5, 0.5, 0.0]]
    y = Tensor(np.array([[2.0, 2.0, 1.0]]), requires_grad=True)
    y.max(dim=1).values.sum().backward()
    assert y.grad.tolist() == [[1.0, 0.0, 0.0]]


def test_argmax_and_comparisons_return_tensors():
    x = cnnlab.tensor([[0.1, 0.9], [0.8, 0.2]])
    pred = x.argmax(dim=1, keepdim=True)
    assert isinstance(pred, Tensor) and pred.tolist() == [[1], [0]] and pred.dtype == np.int64
    target = cnnlab.tensor([1, 1])
    assert pred.eq(target.view_as(pred)).sum().item() == 1
    assert (x.argmax(1) == target).tolist() == [True, False]
    assert (x > 0.5).dtype == np.bool_ and (x <= 0.2).sum().item() == 2
    assert x.argmax().item() == 1 and x.argmin(dim=0).tolist() == [0, 1]
    assert ((x > 0.5) & (x < 0.85)).tolist() == [[False, False], [True, False]]


def test_sizes_and_conversions():
    x = cnnlab.zeros(2, 3, 4)
    assert x.size() == (2, 3, 4) and x.size(0) == 2 and x.size(-1) == 4
    assert x.size().numel() == 24 and x.numel() == 24 and x.dim() == 3
    assert x.long().dtype == np.int64 and x.double().dtype == np.float64
    assert x.to(cnnlab.float64).dtype == np.float64 and x.to("cpu") is x
    assert x.to("cpu", cnnlab.int32).dtype == np.int32 and x.to(x) is x
    assert cnnlab.tensor([3.5]).item() == 3.5 and cnnlab.tensor([[1, 2]]).tolist() == [[1, 2]]
    assert x.device == "cpu" and x.is_leaf and x.contiguous() is x


@pytest.mark.parametrize("device", ["cuda", "cuda:0", "mps", cnnlab.device("cuda")])
def test_other_devices_are_refused_with_what_to_do(device):
    with pytest.raises(RuntimeError, match=r"cnnlab runs on the CPU only.*use 'cpu'"):
        cnnlab.zeros(2).to(device)
    with pytest.raises(RuntimeError, match="CPU only"):
        cnnlab.nn.Linear(2, 2).to(device)
    assert cnnlab.device("cuda" if cnnlab.cuda.is_available() else "cpu") == "cpu"


def test_a_cast_keeps_the_gradient_in_the_inputs_dtype():
    x = Tensor(np.array([1.0, 2.0], np.float32), requires_grad=True)
    (x.double() * 3).sum().backward()
    assert x.grad.dtype == np.float32 and x.grad.tolist() == [3.0, 3.0]


def test_where_and_gather_give_gradients_to_what_they_picked():
    a = Tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    b = Tensor(np.array([10.0, 20.0, 30.0]), requires_grad=True)
    out = cnnlab.where(a > 1.5, a, b)
    out.sum().backward()
    assert out.tolist() == [10.0, 2.0, 3.0]
    assert a.grad.tolist() == [0, 1, 1] and b.grad.tolist() == [1, 0, 0]
    x = Tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    picked = x.gather(1, cnnlab.tensor([[2, 2], [0, 1]]))
    picked.sum().backward()
    assert picked.tolist() == [[2, 2], [3, 4]] and x.grad.tolist() == [[0, 0, 2], [1, 1, 0]]


def test_in_place_updates_follow_torch_rules():
    w = Tensor(np.ones(2, np.float32), requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf tensor that requires grad.*in-place"):
        w -= 0.1
    with cnnlab.no_grad():
        w -= 0.5  # a manual SGD step
    assert w.tolist() == [0.5, 0.5] and w.requires_grad
    x = cnnlab.zeros(3)
    x[1] = 4
    x.add_(1).mul_(2)
    assert x.tolist() == [2, 10, 2]
    y = (w * 2)
    y += 1  # inside a graph: a new node, the gradient still flows
    y.sum().backward()
    assert w.grad.tolist() == [2, 2]


def test_grad_is_a_tensor_and_can_be_set_and_zeroed():
    w = Tensor(np.ones(3, np.float32), requires_grad=True)
    (w * w).sum().backward()
    assert isinstance(w.grad, Tensor) and w.grad.tolist() == [2, 2, 2]
    w.grad.zero_()
    assert w.grad.tolist() == [0, 0, 0]
    w.grad = np.full(3, 5.0)
    assert w.grad.dtype == np.float32 and w.grad.tolist() == [5, 5, 5]


def test_top_level_functions_match_the_methods():
    cnnlab.manual_seed(0)
    x = cnnlab.randn(2, 3, 4)
    assert cnnlab.flatten(x, 1).shape == (2, 12)
    assert cnnlab.sum(x, dim=2).shape == (2, 3) and cnnlab.mean(x).shape == ()
    assert cnnlab.argmax(x, dim=1).shape == (2, 4)
    assert cnnlab.from_numpy(np.zeros(3, np.float64)).dtype == np.float64
    assert cnnlab.arange(5).dtype == np.int64 and cnnlab.arange(0, 1, 0.25).shape == (4,)
    assert cnnlab.zeros(2, 3).shape == cnnlab.ones((2, 3)).shape == (2, 3)
    assert cnnlab.randint(0, 10, (5,)).dtype == np.int64
    g = cnnlab.Generator().manual_seed(3)
    first = cnnlab.randn(4, generator=g)
    assert cnnlab.randn(4, generator=cnnlab.Generator().manual_seed(3)).equal(first)


@needs_torch
def test_functions_agree_with_torch_on_the_same_values():
    a = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    ours, theirs = cnnlab.from_numpy(a), torch.from_numpy(a)
    for fn in ("argmax", "argmin"):
        assert getattr(cnnlab, fn)(ours, dim=1).tolist() == getattr(torch, fn)(theirs,
                                                                                dim=1).tolist()
    v, i = cnnlab.max(ours, 0)
    tv, ti = torch.max(theirs, 0)
    np.testing.assert_array_equal(v.data, tv.numpy())
    assert i.tolist() == ti.tolist()
    assert cnnlab.topk(ours, 2).indices.tolist() == torch.topk(theirs, 2).indices.tolist()


def test_float64_input_to_a_float32_model_is_refused_at_the_first_op():
    # A hand-written loop fed float64 data to float32 weights: refused with the fix, at the
    # layer, instead of failing later in backward with a shape-and-dtype message.
    net = cnnlab.nn.Sequential(cnnlab.nn.Flatten(), cnnlab.nn.Linear(256, 10))
    x = Tensor(np.ones((10, 1, 16, 16)))  # float64
    with pytest.raises(TypeError, match=r"^layer 1: Linear\(in_features=256, out_features=10\)"
                                        r": linear: the input is float64 but the weights are "
                                        r"float32; convert the input with x.float\(\)"):
        net(x)
    out = net(x.float())
    cnnlab.nn.functional.cross_entropy(out, np.zeros(10, np.int64)).backward()
    assert net[1].weight.grad.dtype == np.float32
    conv = cnnlab.nn.Conv2d(1, 2, 3)
    with pytest.raises(TypeError, match=r"Conv2d\(1, 2.*conv2d expected floating-point input "
                                        r"\(float32\), got uint8 .*x.float\(\) / 255"):
        conv(Tensor(np.zeros((1, 1, 5, 5), np.uint8)))
    bn = cnnlab.nn.BatchNorm2d(2).double()
    with pytest.raises(TypeError, match=r"BatchNorm2d.*float32 but the weights are float64"):
        bn(cnnlab.zeros(2, 2, 3, 3))
    # Elementwise arithmetic promotes, as in PyTorch; each gradient keeps its input's dtype.
    a = Tensor(np.ones(2, np.float32), requires_grad=True)
    b = Tensor(np.ones(2, np.float64), requires_grad=True)
    (a * b).sum().backward()
    assert (a * b).dtype == np.float64 and a.grad.dtype == np.float32
