"""conv_transpose2d: the adjoint of conv2d, computed by conv2d's own kernels.

A transposed convolution maps each input value to a KHxKW patch of the output (scaled by a
filter), the patches of neighbouring inputs ``stride`` apart and overlapping where the
kernel is larger than the stride. It is exactly the input gradient of a convolution, so:

- its forward pass is conv2d's input-gradient computation (:func:`conv2d_input_grad`);
- its input gradient is conv2d's forward pass on the output gradient;
- its weight gradient is conv2d's weight gradient with the roles of input and output
  gradient swapped.

No second engine: every speed-up of the convolution kernels applies here too.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnlab.autograd import Function
from cnnlab.kernels import conv as kernel
from cnnlab.kernels.window import to_nhwc
from cnnlab.ops.checks import check_float_input
from cnnlab.shape import checked_once, conv_transpose_output_size, pair
from cnnlab.tensor import Tensor


@checked_once
def conv_transpose2d_output_hw(x_shape: tuple[int, ...], w_shape: tuple[int, ...],
                               stride: Any, padding: Any, output_padding: Any, dilation: Any,
                               groups: int, who: str = "conv_transpose2d"):
    """Check a transposed convolution's shapes; return ``(stride, padding, dilation,
    (OH, OW))``.

    Raises:
        ValueError: naming ``who``, the expected value and the full input shape.
    """
    stride, padding = pair(stride, "stride"), pair(padding, "padding")
    output_padding, dilation = pair(output_padding, "output_padding"), pair(dilation, "dilation")
    if len(x_shape) != 4:
        hint = ""
        if len(x_shape) == 3:
            hint = f"; for a single image use x.reshape(1, {', '.join(map(str, x_shape))})"
        raise ValueError(
            f"{who} expects a 4-D input (N, C_in, H, W), got {len(x_shape)}-D input of shape "
            f"{tuple(x_shape)}{hint}"
        )
    if len(w_shape) != 4:
        raise ValueError(f"{who} expects 4-D weights (C_in, C_out/groups, KH, KW), got "
                         f"{tuple(w_shape)}")
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1 or \
            w_shape[0] % groups:
        raise ValueError(f"{who}: groups={groups!r} must be a positive integer dividing the "
                         f"input channels ({w_shape[0]})")
    if x_shape[1] != w_shape[0]:
        raise ValueError(
            f"{who} expected input with {w_shape[0]} channels (weights of shape "
            f"{tuple(w_shape)} are (C_in, C_out/groups, KH, KW)), got {x_shape[1]} channels "
            f"in input of shape {tuple(x_shape)}"
        )
    try:
        out_hw = tuple(
            conv_transpose_output_size(x_shape[2 + a], w_shape[2 + a], stride[a], padding[a],
                                       output_padding[a], dilation[a])
            for a in range(2)
        )
    except ValueError as exc:
        raise ValueError(f"{who} cannot be applied to input of shape {tuple(x_shape)}: {exc}"
                         ) from None
    return stride, padding, dilation, out_hw


class ConvTranspose2d(Function):
    def forward(self, x, w, b=None, *, stride, padding, dilation, groups, out_hw):
        # Channels-last input, kept for the weight gradient (free if x is channels-last).
        self.xh, self.w = to_nhwc(x), w
        self.opts = stride, padding, dilation, groups
        # The bias is added while the output is written, not in a pass of its own.
        return kernel.conv2d_input_grad(self.xh, w, out_hw, stride, padding, dilation,
                                        groups, b)

    def backward(self, grad):
        xh, w = self.xh, self.w
        stride, padding, dilation, groups = self.opts
        need = self.needs_grad + (False,) * (3 - len(self.needs_grad))
        gh = to_nhwc(grad)  # once, for all three gradients
        g = gh.transpose(0, 3, 1, 2)  # NCHW view of channels-last memory: free for kernels
        dx = dw = db = None
        if need[0]:
            dx = kernel.conv2d_forward(g, w, None, stride, padding, dilation, groups,
                                       xh.shape[1:3])
        if need[1]:
            dw = kernel.conv2d_weight_grad(g, xh.reshape(-1, xh.shape[3]), w.shape, stride,
                                           padding, dilation, groups, xh.shape[1:3])
        if need[2]:
            rows = gh.reshape(-1, gh.shape[3])
            db = np.ones(len(rows), dtype=grad.dtype) @ rows  # a GEMV beats a strided sum
        return (dx, dw, db)[:len(self.needs_grad)]


def conv_transpose2d(input: Tensor, weight: Tensor, bias: Tensor | None = None,
                     stride: Any = 1, padding: Any = 0, output_padding: Any = 0,
                     groups: int = 1, dilation: Any = 1) -> Tensor:
    """2-D transposed convolution ("deconvolution"), the adjoint of :func:`conv2d`.

    Each input value adds a copy of its filter, scaled by the value, into the output at
    ``stride`` steps; overlapping copies add up. It upsamples a feature map by the stride
    (decoders of segmentation networks, heads of detectors). Arguments in PyTorch's order.

    Args:
        input: (N, C_in, H, W).
        weight: (C_in, C_out/groups, KH, KW) — the layout of the convolution it transposes.
        bias: (C_out,) or None.
        stride, padding, dilation: int or (h, w) pair, as for the convolution it transposes
            (``padding`` removes rows and columns from the output's borders).
        output_padding: int or pair, rows and columns added at the end of the output, each
            smaller than the stride or the dilation.
        groups: split channels into this many independent groups.

    Shape:
        Output (N, C_out, OH, OW) with
        ``OH = (H-1)*S - 2P + D*(KH-1) + output_padding + 1`` (same for W).

    Raises:
        ValueError: wrong number of dimensions, channels that don't match the weights,
            groups that don't divide, an output padding too large, or an empty output.

    Example:
        >>> import numpy as np, cnnlab
        >>> from cnnlab.nn import functional as F
        >>> x = cnnlab.Tensor(np.ones((1, 1, 2, 2), np.float32))
        >>> F.conv_transpose2d(x, cnnlab.Tensor(np.ones((1, 1, 3, 3), np.float32)),
        ...                    stride=2).data[0, 0]
        array([[1., 1., 2., 1., 1.],
               [1., 1., 2., 1., 1.],
               [2., 2., 4., 2., 2.],
               [1., 1., 2., 1., 1.],
               [1., 1., 2., 1., 1.]], dtype=float32)
    """
    stride, padding, dilation, out_hw = conv_transpose2d_output_hw(
        input.shape, weight.shape, stride, padding, output_padding, dilation, groups)
    c_out = weight.shape[1] * groups
    if bias is not None and bias.shape != (c_out,):
        raise ValueError(f"conv_transpose2d: bias must have shape ({c_out},) (C_out), got "
                         f"{bias.shape}")
    check_float_input("conv_transpose2d", input, weight)
    args = (input, weight) if bias is None else (input, weight, bias)
    return ConvTranspose2d.apply(*args, stride=stride, padding=padding, dilation=dilation,
                                 groups=groups, out_hw=out_hw)
