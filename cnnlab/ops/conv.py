"""conv2d: the op users call, its validation, and its gradient."""

from __future__ import annotations

from typing import Any

from cnnlab.autograd import Function, is_grad_enabled
from cnnlab.kernels import conv as kernel
from cnnlab.ops.activation import relu_mask_grad
from cnnlab.ops.checks import check_float_input
from cnnlab.shape import checked_once, conv_output_size, pair
from cnnlab.tensor import Tensor


@checked_once
def conv2d_output_hw(x_shape: tuple[int, ...], w_shape: tuple[int, ...], stride: Any,
                     padding: Any, dilation: Any, groups: int, who: str = "conv2d"):
    """Check a convolution's shapes and return ``(stride, padding, dilation, (OH, OW))``.

    Raises:
        ValueError: naming ``who``, the expected value and the full input shape.
    """
    stride, padding, dilation = pair(stride, "stride"), pair(padding, "padding"), \
        pair(dilation, "dilation")
    if len(x_shape) != 4:
        hint = ""
        if len(x_shape) == 3:
            hint = f"; for a single image use x.reshape(1, {', '.join(map(str, x_shape))})"
        raise ValueError(
            f"{who} expects a 4-D input (N, C, H, W), got {len(x_shape)}-D input of shape "
            f"{tuple(x_shape)}{hint}"
        )
    if len(w_shape) != 4:
        raise ValueError(f"{who} expects 4-D weights (F, C/groups, KH, KW), got {w_shape}")
    if groups < 1 or x_shape[1] % groups or w_shape[0] % groups:
        raise ValueError(
            f"{who}: groups={groups} must divide both the input channels ({x_shape[1]}) and "
            f"the number of filters ({w_shape[0]})"
        )
    expected = w_shape[1] * groups
    if x_shape[1] != expected:
        raise ValueError(
            f"{who} expected input with {expected} channels (each filter is "
            f"{w_shape[2]}x{w_shape[3]}x{w_shape[1]}), got {x_shape[1]} channels in input of "
            f"shape {tuple(x_shape)}; a filter must be as deep as its input"
        )
    try:
        out_hw = tuple(
            conv_output_size(x_shape[2 + a], w_shape[2 + a], stride[a], padding[a], dilation[a])
            for a in range(2)
        )
    except ValueError as exc:
        raise ValueError(f"{who} cannot be applied to input of shape {tuple(x_shape)}: {exc}"
                         ) from None
    return stride, padding, dilation, out_hw


class Conv2d(Function):
    def forward(self, x, w, b=None, *, stride, padding, dilation, groups, out_hw, relu=False):
        # The input itself is all backward needs: the weight gradient rebuilds its windows.
        self.x, self.w = x, w
        self.opts = stride, padding, dilation, groups
        out = kernel.conv2d_forward(x, w, b, stride, padding, dilation, groups, out_hw, relu)
        self.out = out if relu else None  # where it is positive, the ReLU passed gradient
        return out

    def backward(self, grad):
        if self.out is not None:
            grad = relu_mask_grad(grad, self.out)
        need = self.needs_grad + (False,) * (3 - len(self.needs_grad))
        dx, dw, db = kernel.conv2d_backward(grad, self.x, self.w, *self.opts,
                                            need_x=need[0], need_w=need[1], need_b=need[2])
        return (dx, dw, db)[:len(self.needs_grad)]


def conv2d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride: Any = 1,
           padding: Any = 0, dilation: Any = 1, groups: int = 1) -> Tensor:
    """2-D convolution (cross-correlation, as in every deep-learning library) over NCHW input.

    Each output value is the inner product of one filter with one window of the zero-padded
    input, plus the filter's bias.

    Args:
        input: (N, C, H, W).
        weight: (F, C/groups, KH, KW) filters.
        bias: (F,) or None.
        stride, padding, dilation: int or (h, w) pair.
        groups: split channels into this many independent groups.

    Shape:
        Output (N, F, OH, OW) with ``OH = floor((H + 2P - D*(KH-1) - 1)/S) + 1`` (same for W).

    Raises:
        ValueError: wrong number of dimensions, channels that don't match the filters,
            groups that don't divide, or a kernel larger than the padded input.

    Example:
        >>> import numpy as np, cnnlab
        >>> from cnnlab.nn import functional as F
        >>> x = cnnlab.Tensor(np.ones((1, 3, 32, 32), np.float32))
        >>> F.conv2d(x, cnnlab.Tensor(np.ones((6, 3, 5, 5), np.float32))).shape
        (1, 6, 28, 28)
    """
    return _conv2d(input, weight, bias, stride, padding, dilation, groups, relu=False)


def conv2d_relu(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride: Any = 1,
                padding: Any = 0, dilation: Any = 1, groups: int = 1) -> Tensor:
    """``relu(conv2d(...))`` as one op: the ReLU runs on each tile of the output while it is
    still in cache, and no separate ReLU output is allocated. Same values and gradients."""
    return _conv2d(input, weight, bias, stride, padding, dilation, groups, relu=True)


def conv2d_relu_maxpool2(input: Tensor, weight: Tensor, bias: Tensor | None = None,
                         stride: Any = 1, padding: Any = 0, dilation: Any = 1,
                         groups: int = 1) -> Tensor | None:
    """``max_pool2d(relu(conv2d(...)), 2)`` in one pass, for inference: each tile of the
    convolution is pooled while it is in cache (its rows ordered so that the pooling is the
    maximum of four blocks). It records no graph, so it refuses inputs that need gradients.

    Returns None where the fused kernel does not apply (an odd output height or width, or a
    single image large enough to be cut into row bands): run the three ops instead.
    """
    if is_grad_enabled() and any(t is not None and t.requires_grad
                                 for t in (input, weight, bias)):
        raise RuntimeError("conv2d_relu_maxpool2 is for inference and has no backward; "
                           "call it under cnnlab.no_grad() or on tensors without gradients")
    stride, padding, dilation, out_hw = conv2d_output_hw(
        input.shape, weight.shape, stride, padding, dilation, groups)
    _check_bias(bias, weight)
    check_float_input("conv2d", input, weight)
    out = kernel.conv2d_relu_maxpool_forward(
        input.data, weight.data, None if bias is None else bias.data, stride, padding,
        dilation, groups, out_hw)
    return None if out is None else Tensor(out)


def _check_bias(bias, weight) -> None:
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ValueError(f"conv2d: bias must have shape ({weight.shape[0]},), got {bias.shape}")


def _conv2d(input, weight, bias, stride, padding, dilation, groups, relu):
    stride, padding, dilation, out_hw = conv2d_output_hw(
        input.shape, weight.shape, stride, padding, dilation, groups)
    _check_bias(bias, weight)
    check_float_input("conv2d", input, weight)
    args = (input, weight) if bias is None else (input, weight, bias)
    return Conv2d.apply(*args, stride=stride, padding=padding, dilation=dilation,
                        groups=groups, out_hw=out_hw, relu=relu)


