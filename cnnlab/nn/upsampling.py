"""Layers that make feature maps larger: the transposed convolution and interpolation.

Decoders of segmentation networks and heads of detectors bring a coarse map back to a finer
grid, either learned (:class:`ConvTranspose2d`) or fixed (:class:`Upsample`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from cnnlab.nn import init
from cnnlab.nn.layers import _positive_int, prefix_message
from cnnlab.nn.module import Module, Parameter
from cnnlab.ops import conv_transpose, interpolate
from cnnlab.shape import pair
from cnnlab.tensor import Tensor


class ConvTranspose2d(Module):
    """2-D transposed convolution: learned upsampling, the adjoint of :class:`Conv2d`.

    Each input value adds its filter, scaled by the value, into the output every ``stride``
    positions. Arguments in PyTorch's order (``groups`` before ``bias``, ``dilation``
    after); weights ``(in_channels, out_channels/groups, KH, KW)`` and PyTorch's default
    initialization (Kaiming uniform with ``a = sqrt(5)``, fan-in ``out_channels/groups *
    KH * KW``).

    Args:
        in_channels, out_channels: channels of the input and of the output.
        kernel_size: int or pair.
        stride, padding, dilation: int or pair, as for the convolution it transposes.
        output_padding: int or pair, extra rows and columns at the end of the output, each
            smaller than the stride or the dilation; or let ``forward(x, output_size=...)``
            pick it.
        groups: independent channel groups; must divide both channel counts.
        bias: learn a bias per output channel.
        padding_mode: only 'zeros', as in PyTorch.

    Shape:
        (N, C_in, H, W) -> (N, C_out, OH, OW) with
        ``OH = (H-1)*S - 2P + D*(KH-1) + output_padding + 1`` (same for W).
        Parameters: ``C_in * C_out/groups * KH * KW`` weights + ``C_out`` biases.

    Raises:
        ValueError: arguments out of range (naming the layer), or an input whose channels do
            not match.

    Example:
        >>> import numpy as np, cnnlab
        >>> from cnnlab import nn
        >>> up = nn.ConvTranspose2d(64, 32, kernel_size=2, stride=2)
        >>> up(cnnlab.Tensor(np.zeros((1, 64, 16, 16), np.float32))).shape
        (1, 32, 32, 32)
        >>> nn.ConvTranspose2d(8, 8, 3, stride=2, padding=1)(
        ...     cnnlab.Tensor(np.zeros((1, 8, 5, 5), np.float32)), output_size=(10, 10)).shape
        (1, 8, 10, 10)
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, stride: Any = 1,
                 padding: Any = 0, output_padding: Any = 0, groups: int = 1, bias: bool = True,
                 dilation: Any = 1, padding_mode: str = "zeros"):
        super().__init__()
        name = "ConvTranspose2d"
        self.in_channels = _positive_int(in_channels, "in_channels", name)
        self.out_channels = _positive_int(out_channels, "out_channels", name)
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.stride = pair(stride, "stride")
        self.padding = pair(padding, "padding")
        self.output_padding = pair(output_padding, "output_padding")
        self.dilation = pair(dilation, "dilation")
        self.groups = _positive_int(groups, "groups", name)
        if padding_mode != "zeros":
            raise ValueError(f"{name}: only padding_mode='zeros' is supported (as in "
                             f"PyTorch), got {padding_mode!r}")
        if min(self.kernel_size) < 1 or min(self.stride) < 1 or min(self.dilation) < 1 or \
                min(self.padding) < 0:
            raise ValueError(f"{name}: kernel_size, stride and dilation must be >= 1 and "
                             f"padding >= 0, got {self.kernel_size}, {self.stride}, "
                             f"{self.dilation}, {self.padding}")
        for a in range(2):
            if not 0 <= self.output_padding[a] < max(self.stride[a], self.dilation[a]):
                raise ValueError(
                    f"{name}: output_padding {self.output_padding} must be at least 0 and "
                    f"smaller than either the stride {self.stride} or the dilation "
                    f"{self.dilation}, on each axis")
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"{name}: groups={groups} must divide both in_channels="
                             f"{in_channels} and out_channels={out_channels}")
        shape = (in_channels, out_channels // groups, *self.kernel_size)
        self.weight = Parameter(np.empty(shape, dtype=np.float32))
        self.bias = Parameter(np.empty(out_channels, dtype=np.float32)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        fan_in = self.weight.shape[1] * self.kernel_size[0] * self.kernel_size[1]
        self.weight.data[...] = init.kaiming_uniform(self.weight.shape, fan_in)
        if self.bias is not None:
            self.bias.data[...] = init.uniform(self.bias.shape, 1 / math.sqrt(fan_in))

    def output_padding_for(self, input_hw: tuple[int, int], output_size: Any
                           ) -> tuple[int, int]:
        """The output padding that gives ``output_size`` ((OH, OW), or a whole shape whose
        last two entries are OH and OW), as PyTorch's ``forward(x, output_size)`` does.

        Raises:
            ValueError: if the size is not one of the ``stride`` sizes this layer can make.
        """
        size = [int(s) for s in output_size]
        if len(size) not in (2, 4):
            raise ValueError(f"{self!r}: output_size must hold 2 (OH, OW) or 4 (N, C, OH, OW) "
                             f"numbers, got {output_size!r}")
        size = size[-2:]
        lo = [(input_hw[a] - 1) * self.stride[a] - 2 * self.padding[a]
              + self.dilation[a] * (self.kernel_size[a] - 1) + 1 for a in range(2)]
        hi = [lo[a] + self.stride[a] - 1 for a in range(2)]
        if not all(lo[a] <= size[a] <= hi[a] for a in range(2)):
            raise ValueError(
                f"{self!r}: requested an output size of {tuple(size)}, but for an input of "
                f"{input_hw[0]}x{input_hw[1]} the valid sizes range from {tuple(lo)} to "
                f"{tuple(hi)}")
        return (size[0] - lo[0], size[1] - lo[1])

    def forward(self, x: Tensor, output_size: Any = None) -> Tensor:
        output_padding = self.output_padding
        if output_size is not None:
            if x.ndim != 4:
                raise ValueError(f"{self!r} expects a 4-D input (N, C_in, H, W), got shape "
                                 f"{x.shape}")
            output_padding = self.output_padding_for(x.shape[2:], output_size)
        try:
            return conv_transpose.conv_transpose2d(x, self.weight, self.bias, self.stride,
                                                   self.padding, output_padding, self.groups,
                                                   self.dilation)
        except (ValueError, TypeError) as exc:  # name this layer, not a generic op
            prefix_message(exc, repr(self))
            raise

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}"
        for name, default in (("stride", (1, 1)), ("padding", (0, 0)),
                              ("output_padding", (0, 0)), ("dilation", (1, 1))):
            if getattr(self, name) != default:
                s += f", {name}={getattr(self, name)}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        return s


class Upsample(Module):
    """Resize NCHW maps by nearest-neighbour or bilinear interpolation (see
    ``F.interpolate``, which it calls with its options).

    Args:
        size: output (OH, OW) or one int; or
        scale_factor: a number or a pair.
        mode: 'nearest' (default), 'nearest-exact' or 'bilinear'.
        align_corners: bilinear only (default False).
        recompute_scale_factor: sample with ``H/OH`` even when a scale factor is given.

    Shape:
        (N, C, H, W) -> (N, C, OH, OW), ``OH = size[0]`` or ``floor(H * scale_factor)``.

    Example:
        >>> import numpy as np, cnnlab
        >>> from cnnlab import nn
        >>> nn.Upsample(scale_factor=2, mode="bilinear")(
        ...     cnnlab.Tensor(np.zeros((1, 3, 8, 8)))).shape
        (1, 3, 16, 16)
    """

    def __init__(self, size: Any = None, scale_factor: Any = None, mode: str = "nearest",
                 align_corners: bool | None = None, recompute_scale_factor: bool | None = None):
        super().__init__()
        name = type(self).__name__
        if mode not in interpolate.MODES:
            raise ValueError(f"{name}: mode must be one of "
                             f"{', '.join(map(repr, interpolate.MODES))}, got {mode!r}")
        if (size is None) == (scale_factor is None):
            raise ValueError(f"{name}: give exactly one of size and scale_factor")
        if align_corners is not None and mode != "bilinear":
            raise ValueError(f"{name}: align_corners can only be set with mode='bilinear', "
                             f"got mode={mode!r}")
        self.size = size if size is None or isinstance(size, int) else tuple(size)
        self.scale_factor = scale_factor if scale_factor is None or \
            not isinstance(scale_factor, (list, tuple)) else tuple(scale_factor)
        self.mode, self.align_corners = mode, align_corners
        self.recompute_scale_factor = recompute_scale_factor

    def forward(self, x: Tensor) -> Tensor:
        try:
            return interpolate.interpolate(x, self.size, self.scale_factor, self.mode,
                                           self.align_corners, self.recompute_scale_factor)
        except ValueError as exc:  # name this layer, not a generic op
            prefix_message(exc, repr(self))
            raise

    def extra_repr(self) -> str:
        s = f"size={self.size}" if self.size is not None else \
            f"scale_factor={self.scale_factor}"
        s += f", mode={self.mode!r}"
        if self.align_corners is not None:
            s += f", align_corners={self.align_corners}"
        return s


class UpsamplingNearest2d(Upsample):
    """``Upsample(size, scale_factor, mode='nearest')``, as in PyTorch."""

    def __init__(self, size: Any = None, scale_factor: Any = None):
        super().__init__(size, scale_factor, mode="nearest")


class UpsamplingBilinear2d(Upsample):
    """``Upsample(size, scale_factor, mode='bilinear', align_corners=True)`` — note the
    aligned corners, as in PyTorch's class of this name."""

    def __init__(self, size: Any = None, scale_factor: Any = None):
        super().__init__(size, scale_factor, mode="bilinear", align_corners=True)
