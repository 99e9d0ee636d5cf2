"""Pooling ops: max, average, and global (adaptive) average."""

from __future__ import annotations

from typing import Any

from cnnlab.autograd import Function
from cnnlab.kernels import pool as kernel
from cnnlab.ops.checks import check_floating_point
from cnnlab.shape import checked_once, conv_output_size, pair
from cnnlab.tensor import Tensor


@checked_once
def pool2d_output_hw(x_shape: tuple[int, ...], kernel_size: Any, stride: Any, padding: Any,
                     who: str):
    """Check a pooling op's arguments; return ``(kernel, stride, padding, (OH, OW))``."""
    k = pair(kernel_size, "kernel_size")
    s = k if stride is None else pair(stride, "stride")
    p = pair(padding, "padding")
    if len(x_shape) != 4:
        raise ValueError(
            f"{who} expects a 4-D input (N, C, H, W), got {len(x_shape)}-D input of shape "
            f"{tuple(x_shape)}"
        )
    if p[0] > k[0] // 2 or p[1] > k[1] // 2:
        raise ValueError(f"{who}: padding {p} must be at most half the kernel size {k}")
    try:
        out_hw = tuple(conv_output_size(x_shape[2 + a], k[a], s[a], p[a]) for a in range(2))
    except ValueError as exc:
        raise ValueError(f"{who} cannot be applied to input of shape {tuple(x_shape)}: {exc}"
                         ) from None
    return k, s, p, out_hw


class MaxPool2d(Function):
    def forward(self, x, *, kernel_size, stride, padding, out_hw):
        self.x_shape, self.opts = x.shape, (kernel_size, stride, padding)
        out, self.arg = kernel.max_pool2d_forward(x, kernel_size, stride, padding, out_hw,
                                                  need_argmax=self.needs_grad[0])
        return out

    def backward(self, grad):
        return kernel.max_pool2d_backward(grad, self.arg, self.x_shape, *self.opts)


class AvgPool2d(Function):
    def forward(self, x, *, kernel_size, stride, padding, out_hw):
        self.x_shape, self.opts = x.shape, (kernel_size, stride, padding)
        return kernel.avg_pool2d_forward(x, kernel_size, stride, padding, out_hw)

    def backward(self, grad):
        return kernel.avg_pool2d_backward(grad, self.x_shape, *self.opts)


def max_pool2d(input: Tensor, kernel_size: Any, stride: Any = None, padding: Any = 0) -> Tensor:
    """Max pooling: each output is the largest value in its window (padding never wins).

    Shape:
        (N, C, H, W) -> (N, C, OH, OW), ``OH = floor((H + 2P - K)/S) + 1``; stride defaults
        to the kernel size.

    Example:
        >>> import numpy as np, cnnlab
        >>> from cnnlab.nn import functional as F
        >>> F.max_pool2d(cnnlab.Tensor(np.zeros((1, 6, 28, 28))), 2).shape
        (1, 6, 14, 14)
    """
    k, s, p, out_hw = pool2d_output_hw(input.shape, kernel_size, stride, padding, "max_pool2d")
    check_floating_point("max_pool2d", input)
    return MaxPool2d.apply(input, kernel_size=k, stride=s, padding=p, out_hw=out_hw)


def avg_pool2d(input: Tensor, kernel_size: Any, stride: Any = None, padding: Any = 0) -> Tensor:
    """Average pooling; zero padding counts toward the average, as PyTorch's default does.

    Shape:
        (N, C, H, W) -> (N, C, OH, OW), ``OH = floor((H + 2P - K)/S) + 1``.
    """
    k, s, p, out_hw = pool2d_output_hw(input.shape, kernel_size, stride, padding, "avg_pool2d")
    check_floating_point("avg_pool2d", input)
    return AvgPool2d.apply(input, kernel_size=k, stride=s, padding=p, out_hw=out_hw)


def adaptive_avg_pool2d(input: Tensor, output_size: Any) -> Tensor:
    """Average pooling to a fixed output size; ``output_size=1`` is global average pooling.

    Supported when the output size divides the input size (always true for 1).

    Raises:
        ValueError: if ``output_size`` does not divide the input's height and width.
    """
    if input.ndim != 4:
        raise ValueError(f"adaptive_avg_pool2d expects a 4-D input (N, C, H, W), got shape "
                         f"{input.shape}")
    oh, ow = pair(output_size, "output_size")
    h, w = input.shape[2:]
    if oh < 1 or ow < 1 or h % oh or w % ow:
        raise ValueError(
            f"adaptive_avg_pool2d: output size {(oh, ow)} must divide the input size {(h, w)}"
        )
    return avg_pool2d(input, (h // oh, w // ow))
