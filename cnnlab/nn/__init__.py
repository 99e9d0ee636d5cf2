"""Layers and containers: ``cnnlab.nn.Conv2d(3, 6, 5)`` as in PyTorch."""

from cnnlab.nn import functional, init
from cnnlab.nn.layers import (
    AdaptiveAvgPool2d,
    AvgPool2d,
    BatchNorm2d,
    Conv2d,
    Dropout,
    Flatten,
    LeakyReLU,
    Linear,
    MaxPool2d,
    ReLU,
    Sequential,
    Sigmoid,
    Tanh,
)
from cnnlab.nn.module import Module, Parameter
from cnnlab.nn.sync_batchnorm import SyncBatchNorm

__all__ = [
    "AdaptiveAvgPool2d", "AvgPool2d", "BatchNorm2d", "Conv2d", "Dropout", "Flatten", "LeakyReLU",
    "Linear", "MaxPool2d", "Module", "Parameter", "ReLU", "Sequential", "Sigmoid", "SyncBatchNorm",
    "Tanh",
    "functional", "init",
]
