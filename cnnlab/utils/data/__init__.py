"""``torch.utils.data``'s names and meanings: Dataset, TensorDataset, Subset, random_split,
DataLoader (see :mod:`cnnlab.utils.data.dataloader`)."""

from cnnlab.utils.data.dataloader import (
    DataLoader,
    Dataset,
    RandomSampler,
    SequentialSampler,
    Subset,
    TensorDataset,
    default_collate,
    random_split,
)

__all__ = ["DataLoader", "Dataset", "RandomSampler", "SequentialSampler", "Subset",
           "TensorDataset", "default_collate", "random_split"]
