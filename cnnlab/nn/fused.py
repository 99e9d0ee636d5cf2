"""Fused layers, made by an explicit step: ``fast = nn.fuse(model)``.

Some runs of layers go faster as one module, with the same values and gradients:

- ``Conv2d, ReLU`` -> :class:`ConvReLU2d`: the ReLU works on each tile of the convolution's
  output while it is in cache, and no separate ReLU output is allocated.
- ``ReLU, MaxPool2d`` -> :class:`ReLUMaxPool2d`: the ReLU runs after the pooling, on a quarter
  of the data (ReLU and max pooling commute, values and gradients alike: ReLU keeps order,
  and where a window's maximum is not positive both give zero gradient).
- ``Conv2d, ReLU, MaxPool2d`` -> :class:`ConvReLUMaxPool2d`: in inference (no graph), one
  pass that pools each tile of the convolution while it is in cache; in training, the
  convolution, then the pooling, then the ReLU on the pooled map (measured: 2% faster CIFAR
  steps than fusing the ReLU into the convolution, because its mask is a quarter the size).

A fused module takes the first layer's place and holds that layer's own parameters (the
same objects), and :class:`~cnnlab.nn.Identity` takes the others' places, so a fused model
has the unfused model's state_dict keys, and training one trains the other. Layers with
forward hooks are never fused: hooks see each layer's own output.
"""

from __future__ import annotations

import copy

from cnnlab.autograd import is_grad_enabled
from cnnlab.nn.container import ModuleDict, ModuleList, Sequential
from cnnlab.nn.layers import Conv2d, Identity, MaxPool2d, ReLU, prefix_message
from cnnlab.nn.module import Module
from cnnlab.ops import activation, conv, pool
from cnnlab.tensor import Tensor

__all__ = ["ConvReLU2d", "ConvReLUMaxPool2d", "ReLUMaxPool2d", "fuse"]


def _adopt(fused: Module, layer: Module) -> None:
    """Make ``fused`` carry ``layer``'s settings and its very parameters."""
    Module.__init__(fused)
    vars(fused).update({k: v for k, v in vars(layer).items() if not k.startswith("_")})


class ConvReLU2d(Conv2d):
    """``relu(conv(x))`` as one op (see the module docstring). Built from a Conv2d and a
    ReLU, it holds the convolution's parameters (same names, same objects).

    Example:
        >>> import numpy as np, cnnlab
        >>> from cnnlab import nn
        >>> c = nn.Conv2d(1, 2, 3)
        >>> x = cnnlab.tensor(np.random.default_rng(0).random((2, 1, 5, 5), dtype=np.float32))
        >>> bool((nn.ConvReLU2d(c, nn.ReLU())(x) == nn.ReLU()(c(x))).all())
        True
    """

    def __init__(self, conv: Conv2d, relu: ReLU | None = None):
        _adopt(self, conv)

    def forward(self, x: Tensor) -> Tensor:
        return self._apply(conv.conv2d_relu, x)


class ReLUMaxPool2d(MaxPool2d):
    """``max_pool2d(relu(x))``, computed as ``relu(max_pool2d(x))``: the same values and
    gradients with the ReLU on the smaller map."""

    def __init__(self, relu: ReLU, maxpool: MaxPool2d):
        _adopt(self, maxpool)

    def forward(self, x: Tensor) -> Tensor:
        return activation.relu(MaxPool2d.forward(self, x))


class ConvReLUMaxPool2d(Conv2d):
    """``max_pool2d(relu(conv(x)))`` (see the module docstring): one pass in inference where
    the pooling is 2x2 with stride 2 and no padding, the convolution, the pooling and the
    ReLU on the pooled map otherwise. Holds the convolution's parameters."""

    def __init__(self, conv: Conv2d, relu: ReLU, maxpool: MaxPool2d):
        _adopt(self, conv)
        self.pool = (maxpool.kernel_size, maxpool.stride, maxpool.padding)

    def forward(self, x: Tensor) -> Tensor:
        k, s, p = self.pool
        grad = is_grad_enabled() and any(
            t is not None and t.requires_grad for t in (x, self.weight, self.bias))
        if not grad:
            if k == (2, 2) and s == (2, 2) and p == (0, 0):
                out = self._apply(conv.conv2d_relu_maxpool2, x)
                if out is not None:
                    return out
            return self._pool(self._apply(conv.conv2d_relu, x))
        return activation.relu(self._pool(self._apply(conv.conv2d, x)))

    def _pool(self, y: Tensor) -> Tensor:
        k, s, p = self.pool
        try:
            return pool.max_pool2d(y, k, s, p)
        except ValueError as exc:
            prefix_message(exc, repr(self))
            raise

    def extra_repr(self) -> str:
        k, s, p = self.pool
        extra = f", pool={k}" + (f" stride {s}" if s != k else "") + \
            (f" padding {p}" if p != (0, 0) else "")
        return super().extra_repr() + extra


# The runs of layers that fuse, longest first: (layer types, the fused module's name).
PATTERNS = (
    (("Conv2d", "ReLU", "MaxPool2d"), "ConvReLUMaxPool2d"),
    (("Conv2d", "ReLU"), "ConvReLU2d"),
    (("ReLU", "MaxPool2d"), "ReLUMaxPool2d"),
)


def fusion_plan(kinds: list[str | None]) -> list[tuple[int, int, str]]:
    """Where a chain of layers of these type names fuses: ``(start, length, fused name)``
    for each run, left to right (None: a layer that must not fuse, e.g. one with hooks).

    Example:
        >>> fusion_plan(["Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d", "Flatten"])
        [(2, 2, 'ReLUMaxPool2d')]
    """
    plan, i = [], 0
    while i < len(kinds):
        for pattern, name in PATTERNS:
            if tuple(kinds[i:i + len(pattern)]) == pattern:
                plan.append((i, len(pattern), name))
                i += len(pattern)
                break
        else:
            i += 1
    return plan


_FUSED = {"ConvReLUMaxPool2d": lambda a, b, c: ConvReLUMaxPool2d(a, b, c),
          "ConvReLU2d": lambda a, b: ConvReLU2d(a, b),
          "ReLUMaxPool2d": lambda a, b: ReLUMaxPool2d(a, b)}


def _kind(layer: Module) -> str | None:
    """The layer's type name where it may fuse: exactly that class, and no hooks."""
    if layer._forward_hooks or type(layer) not in (Conv2d, ReLU, MaxPool2d):
        return None
    return type(layer).__name__


def _fuse_layers(layers: list[Module]) -> list[Module]:
    out = [_fuse_module(layer) for layer in layers]
    for start, length, name in fusion_plan([_kind(layer) for layer in layers]):
        out[start] = _FUSED[name](*layers[start:start + length])
        out[start + 1:start + length] = [Identity() for _ in range(length - 1)]
    return out


def _fuse_module(module: Module) -> Module:
    if isinstance(module, Sequential):
        fused = copy.copy(module)
        fused._forward_hooks = dict(module._forward_hooks)
        fused.layers = _fuse_layers(module.layers)
        return fused
    kids = dict(module.named_children())
    if not kids:
        return module
    fused_kids = {name: _fuse_module(kid) for name, kid in kids.items()}
    if all(fused_kids[n] is kids[n] for n in kids):
        return module
    fused = copy.copy(module)
    fused._forward_hooks = dict(module._forward_hooks)
    for name, kid in fused_kids.items():
        if kid is not kids[name]:
            _replace_child(fused, name, kid)
    return fused


def _replace_child(parent: Module, name: str, kid: Module) -> None:
    """Set child ``name`` (an attribute, or ``attr.i`` / ``attr.key`` inside a container
    attribute, or an item of a ModuleList/ModuleDict) on a shallow copy of ``parent``,
    copying the container it lives in."""
    if isinstance(parent, (ModuleList, ModuleDict)):
        items = parent._items
        parent._items = dict(items) if isinstance(items, dict) else list(items)
        parent._items[name if isinstance(items, dict) else int(name)] = kid
        return
    attr, _, key = name.partition(".")
    if not key:
        vars(parent)[attr] = kid
        return
    holder = vars(parent)[attr]
    if isinstance(holder, dict):
        holder = dict(holder)
        holder[key] = kid
    else:
        items = list(holder)
        items[int(key)] = kid
        holder = type(holder)(items) if isinstance(holder, tuple) else items
    vars(parent)[attr] = holder


def fuse(model: Module, inplace: bool = False) -> Module:
    """Return ``model`` with runs of layers inside its Sequentials replaced by fused layers.

    The result shares the parameters, buffers and unfused layers of ``model`` (training it
    trains ``model``) and has the same state_dict keys; ``model`` itself is left unfused
    unless ``inplace``. Only Sequential containers are searched (a hand-written ``forward``
    calls its layers in an order only it knows), and layers with forward hooks are skipped.

    Example:
        >>> from cnnlab import nn
        >>> net = nn.Sequential(nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten())
        >>> [type(m).__name__ for m in nn.fuse(net)]
        ['ConvReLUMaxPool2d', 'Identity', 'Identity', 'Flatten']
        >>> list(nn.fuse(net).state_dict()) == list(net.state_dict())
        True
    """
    fused = _fuse_module(model)
    if inplace and fused is not model:
        vars(model).update(vars(fused))
        return model
    return fused
