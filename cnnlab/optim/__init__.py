"""Optimizers and learning-rate schedules, with PyTorch's names and update rules.

``SGD``, ``Adam`` and ``AdamW`` update parameters (objects with ``.data`` and ``.grad``
NumPy arrays, such as ``cnnlab.nn.Parameter``) in place; ``StepLR`` and
``CosineAnnealingLR`` (also reachable as ``cnnlab.optim.lr_scheduler``) set their learning
rates per epoch. All of them save and restore their state with ``state_dict()`` /
``load_state_dict()``.
"""

from cnnlab import _checkout  # noqa: F401  (a folder named cnnlab hiding the package)
from cnnlab.optim import lr_scheduler
from cnnlab.optim.adam import Adam, AdamW
from cnnlab.optim.lr_scheduler import CosineAnnealingLR, LRScheduler, StepLR
from cnnlab.optim.optimizer import Optimizer
from cnnlab.optim.sgd import SGD

__all__ = [
    "SGD",
    "Adam",
    "AdamW",
    "Optimizer",
    "lr_scheduler",
    "LRScheduler",
    "StepLR",
    "CosineAnnealingLR",
]
