"""The functional form of every op (``import cnnlab.nn.functional as F``), as in PyTorch."""

from cnnlab.ops.activation import leaky_relu, log_softmax, relu, sigmoid, softmax, tanh
from cnnlab.ops.conv import conv2d
from cnnlab.ops.conv_transpose import conv_transpose2d
from cnnlab.ops.dropout import dropout
from cnnlab.ops.interpolate import interpolate
from cnnlab.ops.linear import linear
from cnnlab.ops.loss import (
    binary_cross_entropy,
    binary_cross_entropy_with_logits,
    cross_entropy,
    focal_loss_heatmap,
    l1_loss,
    mse_loss,
    nll_loss,
    smooth_l1_loss,
)
from cnnlab.ops.norm import batch_norm
from cnnlab.ops.pool import adaptive_avg_pool2d, avg_pool2d, max_pool2d
from cnnlab.ops.rnn import embedding
from cnnlab.shape import flat_size
from cnnlab.tensor import Tensor


def flatten(input: Tensor, start_dim: int = 1) -> Tensor:
    """Flatten dimensions ``start_dim`` onward: (N, C, H, W) -> (N, C*H*W)."""
    return input.reshape(*flat_size(input.shape, start_dim))


__all__ = [
    "adaptive_avg_pool2d", "avg_pool2d", "batch_norm", "binary_cross_entropy",
    "binary_cross_entropy_with_logits", "conv2d", "conv_transpose2d", "cross_entropy",
    "dropout", "flatten", "focal_loss_heatmap", "interpolate", "l1_loss", "leaky_relu",
    "linear", "log_softmax", "max_pool2d", "mse_loss", "nll_loss", "relu", "sigmoid",
    "smooth_l1_loss", "softmax", "tanh",
    # sequences
    "embedding",
]
