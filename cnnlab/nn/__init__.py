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
from cnnlab.nn.loss import (
    BCEWithLogitsLoss,
    CrossEntropyLoss,
    L1Loss,
    MSELoss,
    NLLLoss,
    SmoothL1Loss,
)
from cnnlab.nn.module import Module, Parameter
from cnnlab.nn.upsampling import (
    ConvTranspose2d,
    Upsample,
    UpsamplingBilinear2d,
    UpsamplingNearest2d,
)

__all__ = [
    "AdaptiveAvgPool2d", "AvgPool2d", "BCEWithLogitsLoss", "BatchNorm2d", "Conv2d",
    "ConvTranspose2d", "CrossEntropyLoss", "Dropout", "Flatten", "L1Loss", "LeakyReLU", "Linear",
    "MSELoss", "MaxPool2d", "Module", "NLLLoss", "Parameter", "ReLU", "Sequential", "Sigmoid",
    "SmoothL1Loss", "Tanh", "Upsample", "UpsamplingBilinear2d", "UpsamplingNearest2d",
    "functional", "init",
]
