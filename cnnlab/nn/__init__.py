"""Layers and containers: ``cnnlab.nn.Conv2d(3, 6, 5)`` as in PyTorch."""

from cnnlab import _checkout  # noqa: F401  (a folder named cnnlab hiding the package)
from cnnlab.nn import functional, init
from cnnlab.nn.container import ModuleDict, ModuleList, Sequential
from cnnlab.nn.freeze import freeze, unfreeze
from cnnlab.nn.fused import ConvReLU2d, ConvReLUMaxPool2d, ReLUMaxPool2d, fuse, unfuse
from cnnlab.nn.layers import (
    AdaptiveAvgPool2d,
    AvgPool2d,
    BatchNorm2d,
    Conv2d,
    Dropout,
    Flatten,
    Identity,
    LeakyReLU,
    Linear,
    LogSoftmax,
    MaxPool2d,
    ReLU,
    Sigmoid,
    Softmax,
    Tanh,
)
from cnnlab.nn.loss import (
    BCEWithLogitsLoss,
    CrossEntropyLoss,
    L1Loss,
    MSELoss,
    NLLLoss,
    SmoothL1Loss,
)
from cnnlab.nn.module import Module, Parameter
from cnnlab.nn.rnn import GRU, LSTM, Embedding, GRUCell, LSTMCell
from cnnlab.nn.sync_batchnorm import SyncBatchNorm
from cnnlab.nn.upsampling import (
    ConvTranspose2d,
    Upsample,
    UpsamplingBilinear2d,
    UpsamplingNearest2d,
)

__all__ = [
    "AdaptiveAvgPool2d", "AvgPool2d", "BCEWithLogitsLoss", "BatchNorm2d", "Conv2d",
    "ConvReLU2d", "ConvReLUMaxPool2d", "ConvTranspose2d", "CrossEntropyLoss", "Dropout",
    "Flatten", "Identity", "L1Loss", "LeakyReLU", "Linear", "LogSoftmax", "MSELoss",
    "MaxPool2d", "Module", "ModuleDict", "ModuleList", "NLLLoss", "Parameter", "ReLU",
    "ReLUMaxPool2d", "Sequential", "Sigmoid", "SmoothL1Loss", "Softmax", "SyncBatchNorm",
    "Tanh", "Upsample", "UpsamplingBilinear2d", "UpsamplingNearest2d", "freeze", "functional",
    "fuse", "init", "unfreeze", "unfuse",
    # sequences
    "Embedding", "GRU", "GRUCell", "LSTM", "LSTMCell",
]
