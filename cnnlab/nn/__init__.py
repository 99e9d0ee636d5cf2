"""Layers and containers: ``cnnlab.nn.Conv2d(3, 6, 5)`` as in PyTorch."""

from cnnlab import _checkout  # noqa: F401  (a folder named cnnlab hiding the package)
from cnnlab.nn import functional, init
from cnnlab.nn.container import ModuleDict, ModuleList, Sequential
from cnnlab.nn.fused import ConvReLU2d, ConvReLUMaxPool2d, ReLUMaxPool2d, fuse
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
from cnnlab.nn.module import Module, Parameter
from cnnlab.nn.sync_batchnorm import SyncBatchNorm

__all__ = [
    "AdaptiveAvgPool2d", "AvgPool2d", "BatchNorm2d", "Conv2d", "ConvReLU2d", "ConvReLUMaxPool2d",
    "Dropout", "Flatten", "Identity", "LeakyReLU", "Linear", "LogSoftmax", "MaxPool2d",
    "Module", "ModuleDict", "ModuleList", "Parameter", "ReLU", "ReLUMaxPool2d", "Sequential",
    "Sigmoid", "Softmax", "SyncBatchNorm", "Tanh", "functional", "fuse", "init",
]
