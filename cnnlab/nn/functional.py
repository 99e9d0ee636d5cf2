"""The functional form of every op (``import cnnlab.nn.functional as F``), as in PyTorch."""

from cnnlab.ops.activation import leaky_relu, log_softmax, relu, sigmoid, softmax, tanh
from cnnlab.ops.conv import conv2d
from cnnlab.ops.dropout import dropout
from cnnlab.ops.linear import linear
from cnnlab.ops.loss import cross_entropy, mse_loss
from cnnlab.ops.norm import batch_norm
from cnnlab.ops.pool import adaptive_avg_pool2d, avg_pool2d, max_pool2d
from cnnlab.shape import flat_size
from cnnlab.tensor import Tensor


def flatten(input: Tensor, start_dim: int = 1) -> Tensor:
    """Flatten dimensions ``start_dim`` onward: (N, C, H, W) -> (N, C*H*W)."""
    return input.reshape(*flat_size(input.shape, start_dim))


__all__ = [
    "adaptive_avg_pool2d", "avg_pool2d", "batch_norm", "conv2d", "cross_entropy", "dropout",
    "flatten", "leaky_relu", "linear", "log_softmax", "max_pool2d", "mse_loss", "relu",
    "sigmoid", "softmax", "tanh",
]
