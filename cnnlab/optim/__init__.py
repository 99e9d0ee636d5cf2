"""Optimizers and learning-rate schedules, with PyTorch's names and update rules.

``SGD``, ``Adam``, ``AdamW``, ``RMSprop``, ``Adagrad`` and ``Adadelta`` update parameters
(objects with ``.data`` and ``.grad`` NumPy arrays, such as ``cnnlab.nn.Parameter``) in
place from their gradients; ``LBFGS`` re-evaluates the loss through a closure
(``optimizer.step(closure)``). ``StepLR``, ``MultiStepLR``, ``ExponentialLR``,
``CosineAnnealingLR`` and ``ReduceLROnPlateau`` (also reachable as
``cnnlab.optim.lr_scheduler``) set the groups' learning rates once per epoch. All of them
save and restore their state with ``state_dict()`` / ``load_state_dict()``.
"""

from cnnlab import _checkout  # noqa: F401  (a folder named cnnlab hiding the package)
from cnnlab.optim import lr_scheduler
from cnnlab.optim.adadelta import Adadelta
from cnnlab.optim.adagrad import Adagrad
from cnnlab.optim.adam import Adam, AdamW
from cnnlab.optim.lbfgs import LBFGS
from cnnlab.optim.lr_scheduler import (
    CosineAnnealingLR,
    ExponentialLR,
    LRScheduler,
    MultiStepLR,
    ReduceLROnPlateau,
    StepLR,
)
from cnnlab.optim.optimizer import Optimizer
from cnnlab.optim.rmsprop import RMSprop
from cnnlab.optim.sgd import SGD

__all__ = [
    "SGD",
    "Adam",
    "AdamW",
    "RMSprop",
    "Adagrad",
    "Adadelta",
    "LBFGS",
    "Optimizer",
    "lr_scheduler",
    "LRScheduler",
    "StepLR",
    "MultiStepLR",
    "ExponentialLR",
    "CosineAnnealingLR",
    "ReduceLROnPlateau",
]
