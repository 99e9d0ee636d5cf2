"""The layers of INPUT → CONV → RELU → POOL → FC. Each is thin: the constructor validates
and creates parameters, ``forward`` is one functional call. Containers are in
:mod:`cnnlab.nn.container`, fused layers in :mod:`cnnlab.nn.fused`."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from cnnlab.nn import init
from cnnlab.nn.module import Module, Parameter
from cnnlab.ops import activation, conv, dropout, linear, norm, pool
from cnnlab.shape import flat_size, pair
from cnnlab.tensor import Tensor


def prefix_message(exc: BaseException, prefix: str) -> None:
    """Put ``prefix: `` before an exception's message, in place, so that it keeps its type
    (a subclass of ValueError stays one) and its traceback."""
    if exc.args and isinstance(exc.args[0], str):
        exc.args = (f"{prefix}: {exc.args[0]}", *exc.args[1:])


def _positive_int(value: Any, name: str, layer: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{layer}: {name} must be a positive integer, got {value!r}")
    return int(value)


class Conv2d(Module):
    """2-D convolution layer: ``out_channels`` filters, each ``in_channels/groups`` deep.

    Args:
        in_channels: channels of the input (C).
        out_channels: number of filters (F), i.e. output feature maps.
        kernel_size: filter height and width (int or pair).
        stride, padding, dilation: int or pair.
        groups: independent channel groups; must divide both channel counts.
        bias: learn a bias per filter.

    Shape:
        (N, C, H, W) -> (N, F, OH, OW), ``OH = floor((H + 2P - D*(K-1) - 1)/S) + 1``.
        Parameters: ``F*C/groups*KH*KW`` weights + ``F`` biases.

    Example:
        >>> from cnnlab import nn
        >>> layer = nn.Conv2d(3, 10, 5)
        >>> sum(p.numel() for p in layer.parameters())  # 750 weights + 10 biases
        760
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, stride: Any = 1,
                 padding: Any = 0, dilation: Any = 1, groups: int = 1, bias: bool = True):
        super().__init__()
        self.in_channels = _positive_int(in_channels, "in_channels", "Conv2d")
        self.out_channels = _positive_int(out_channels, "out_channels", "Conv2d")
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.stride = pair(stride, "stride")
        self.padding = pair(padding, "padding")
        self.dilation = pair(dilation, "dilation")
        self.groups = _positive_int(groups, "groups", "Conv2d")
        if min(self.kernel_size) < 1 or min(self.stride) < 1 or min(self.dilation) < 1 or \
                min(self.padding) < 0:
            raise ValueError(f"Conv2d: kernel_size, stride and dilation must be >= 1 and "
                             f"padding >= 0, got {self.kernel_size}, {self.stride}, "
                             f"{self.dilation}, {self.padding}")
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"Conv2d: groups={groups} must divide both in_channels="
                             f"{in_channels} and out_channels={out_channels}")
        shape = (out_channels, in_channels // groups, *self.kernel_size)
        self.weight = Parameter(np.empty(shape, dtype=np.float32))
        self.bias = Parameter(np.empty(out_channels, dtype=np.float32)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        fan_in = self.weight.shape[1] * self.kernel_size[0] * self.kernel_size[1]
        self.weight.data[...] = init.kaiming_uniform(self.weight.shape, fan_in)
        if self.bias is not None:
            self.bias.data[...] = init.uniform(self.bias.shape, 1 / math.sqrt(fan_in))

    def forward(self, x: Tensor) -> Tensor:
        return self._apply(conv.conv2d, x)

    def _apply(self, op, x: Tensor) -> Tensor:
        try:
            return op(x, self.weight, self.bias, self.stride, self.padding, self.dilation,
                      self.groups)
        except (ValueError, TypeError) as exc:  # name this layer, not a generic op
            prefix_message(exc, repr(self))
            raise

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}"
        for name, default in (("stride", (1, 1)), ("padding", (0, 0)), ("dilation", (1, 1))):
            if getattr(self, name) != default:
                s += f", {name}={getattr(self, name)}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        return s


class Linear(Module):
    """Fully-connected layer ``y = x W^T + b``.

    Shape:
        (N, *, in_features) -> (N, *, out_features); weight (out_features, in_features).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.in_features = _positive_int(in_features, "in_features", "Linear")
        self.out_features = _positive_int(out_features, "out_features", "Linear")
        self.weight = Parameter(np.empty((out_features, in_features), dtype=np.float32))
        self.bias = Parameter(np.empty(out_features, dtype=np.float32)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.weight.data[...] = init.kaiming_uniform(self.weight.shape, self.in_features)
        if self.bias is not None:
            self.bias.data[...] = init.uniform(self.bias.shape, 1 / math.sqrt(self.in_features))

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim < 1 or x.shape[-1] != self.in_features:
            raise ValueError(
                f"{self!r} expected input with {self.in_features} features in its last "
                f"dimension, got input of shape {x.shape}; add a Flatten before it or set "
                f"in_features to the previous layer's output size"
            )
        try:
            return linear.linear(x, self.weight, self.bias)
        except TypeError as exc:  # a dtype mismatch: name this layer
            prefix_message(exc, repr(self))
            raise

    def extra_repr(self) -> str:
        s = f"in_features={self.in_features}, out_features={self.out_features}"
        return s + ("" if self.bias is not None else ", bias=False")


class _Pool2d(Module):
    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0):
        super().__init__()
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.stride = self.kernel_size if stride is None else pair(stride, "stride")
        self.padding = pair(padding, "padding")
        if min(self.kernel_size) < 1 or min(self.stride) < 1 or min(self.padding) < 0:
            raise ValueError(f"{type(self).__name__}: kernel_size and stride must be >= 1 and "
                             f"padding >= 0, got {self.kernel_size}, {self.stride}, "
                             f"{self.padding}")
        if self.padding[0] > self.kernel_size[0] // 2 or self.padding[1] > \
                self.kernel_size[1] // 2:
            raise ValueError(f"{type(self).__name__}: padding {self.padding} must be at most "
                             f"half the kernel size {self.kernel_size}")

    def extra_repr(self) -> str:
        s = f"kernel_size={self.kernel_size}"
        if self.stride != self.kernel_size:
            s += f", stride={self.stride}"
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        return s


class MaxPool2d(_Pool2d):
    """Max pooling over ``kernel_size`` windows (stride defaults to the kernel size).

    Shape:
        (N, C, H, W) -> (N, C, OH, OW), ``OH = floor((H + 2P - K)/S) + 1``.
    """

    def forward(self, x: Tensor) -> Tensor:
        try:
            return pool.max_pool2d(x, self.kernel_size, self.stride, self.padding)
        except (ValueError, TypeError) as exc:  # name this layer, not a generic op
            prefix_message(exc, repr(self))
            raise


class AvgPool2d(_Pool2d):
    """Average pooling (zero padding counts toward the average).

    Shape:
        (N, C, H, W) -> (N, C, OH, OW), ``OH = floor((H + 2P - K)/S) + 1``.
    """

    def forward(self, x: Tensor) -> Tensor:
        try:
            return pool.avg_pool2d(x, self.kernel_size, self.stride, self.padding)
        except (ValueError, TypeError) as exc:  # name this layer, not a generic op
            prefix_message(exc, repr(self))
            raise


class AdaptiveAvgPool2d(Module):
    """Average pooling to a fixed output size; ``AdaptiveAvgPool2d(1)`` is global average
    pooling. The output size must divide the input size."""

    def __init__(self, output_size: Any = 1):
        super().__init__()
        self.output_size = pair(output_size, "output_size")

    def forward(self, x: Tensor) -> Tensor:
        return pool.adaptive_avg_pool2d(x, self.output_size)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class Identity(Module):
    """Passes its input through unchanged (a placeholder, e.g. for a fused layer's partner)."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__()

    def forward(self, x: Any) -> Any:
        return x


class ReLU(Module):
    """``max(x, 0)`` elementwise."""

    def __init__(self, inplace: bool = False):
        super().__init__()  # inplace is accepted for PyTorch code; the output is new anyway

    def forward(self, x: Tensor) -> Tensor:
        return activation.relu(x)


class LeakyReLU(Module):
    """``x`` where positive, ``negative_slope * x`` elsewhere."""

    def __init__(self, negative_slope: float = 0.01):
        super().__init__()
        self.negative_slope = float(negative_slope)

    def forward(self, x: Tensor) -> Tensor:
        return activation.leaky_relu(x, self.negative_slope)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"


class Sigmoid(Module):
    """``1 / (1 + exp(-x))`` elementwise."""

    def forward(self, x: Tensor) -> Tensor:
        return activation.sigmoid(x)


class Tanh(Module):
    """Hyperbolic tangent elementwise."""

    def forward(self, x: Tensor) -> Tensor:
        return activation.tanh(x)


class Flatten(Module):
    """Flatten dimensions ``start_dim``..``end_dim``: (N, C, H, W) -> (N, C*H*W)."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x: Tensor) -> Tensor:
        return x.reshape(*flat_size(x.shape, self.start_dim, self.end_dim))

    def extra_repr(self) -> str:
        s = "" if self.start_dim == 1 else f"start_dim={self.start_dim}"
        if self.end_dim != -1:
            s += (", " if s else "") + f"end_dim={self.end_dim}"
        return s


class Softmax(Module):
    """``exp(x) / sum(exp(x))`` along ``dim``."""

    def __init__(self, dim: int = -1):
        super().__init__()
        self.dim = dim

    def forward(self, x: Tensor) -> Tensor:
        return activation.softmax(x, self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class LogSoftmax(Softmax):
    """``log(softmax(x))`` along ``dim``, computed stably."""

    def forward(self, x: Tensor) -> Tensor:
        return activation.log_softmax(x, self.dim)


class Dropout(Module):
    """Inverted dropout with probability ``p`` in training; identity in eval mode."""

    def __init__(self, p: float = 0.5, inplace: bool = False):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"Dropout: p must be in [0, 1], got {p}")
        self.p = float(p)

    def forward(self, x: Tensor) -> Tensor:
        return dropout.dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class BatchNorm2d(Module):
    """Batch normalization per channel of NCHW maps (statistics over N, H and W).

    Buffers ``running_mean``, ``running_var`` and ``num_batches_tracked`` are updated in
    training and used in eval mode.

    Shape:
        (N, C, H, W) -> (N, C, H, W).
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        self.num_features = _positive_int(num_features, "num_features", "BatchNorm2d")
        self.eps, self.momentum = float(eps), float(momentum)
        self.weight = Parameter(np.ones(num_features, dtype=np.float32))
        self.bias = Parameter(np.zeros(num_features, dtype=np.float32))
        self.register_buffer("running_mean", np.zeros(num_features, dtype=np.float32))
        self.register_buffer("running_var", np.ones(num_features, dtype=np.float32))
        self.register_buffer("num_batches_tracked", np.zeros((), dtype=np.int64))

    def reset_parameters(self) -> None:
        self.weight.data[...] = 1
        self.bias.data[...] = 0
        self.running_mean[...] = 0
        self.running_var[...] = 1
        self.num_batches_tracked[...] = 0

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != self.num_features:
            raise ValueError(f"{self!r} expected input (N, {self.num_features}, H, W), got "
                             f"shape {x.shape}")
        if self.training:
            self.num_batches_tracked += 1
        try:
            return norm.batch_norm(x, self.running_mean, self.running_var, self.weight,
                                   self.bias, self.training, self.momentum, self.eps)
        except TypeError as exc:  # a dtype mismatch: name this layer
            prefix_message(exc, repr(self))
            raise

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"
