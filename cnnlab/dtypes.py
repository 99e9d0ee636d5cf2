"""PyTorch's dtype names, as the NumPy types cnnlab's tensors use: ``x.to(cnnlab.float64)``,
``cnnlab.zeros(3, dtype=cnnlab.long)``, ``x.dtype == cnnlab.float32``."""

import numpy as np

float32 = float = np.float32
float64 = double = np.float64
float16 = half = np.float16
int64 = long = np.int64
int32 = int = np.int32
int16 = short = np.int16
int8 = np.int8
uint8 = np.uint8
bool = np.bool_

__all__ = ["bool", "double", "float", "float16", "float32", "float64", "half", "int", "int8",
           "int16", "int32", "int64", "long", "short", "uint8"]
