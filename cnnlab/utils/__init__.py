"""Utilities with PyTorch's names: ``cnnlab.utils.data`` (Dataset, TensorDataset, DataLoader)."""

from cnnlab.utils import data

__all__ = ["data"]
