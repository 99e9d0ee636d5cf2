"""cnnlab: convolutional neural networks from first principles, on NumPy."""

from cnnlab import nn, random
from cnnlab.kernels import memory
from cnnlab.kernels.parallel import get_num_threads, set_num_threads
from cnnlab.ops.loss import NonFiniteLossError
from cnnlab.random import manual_seed
from cnnlab.tensor import Tensor, is_grad_enabled, no_grad, tensor

__version__ = "0.1.0"

memory.keep_freed_memory()  # each step reuses the last step's memory (see kernels/memory.py)


def __getattr__(name: str):
    # Model files and optimizers load on first use, keeping `import cnnlab` light.
    if name in ("save", "load"):
        from cnnlab.io import model_file

        return getattr(model_file, name)
    if name in ("optim", "data", "arch", "io", "inspect", "train", "distributed"):
        import importlib

        return importlib.import_module(f"cnnlab.{name}")
    raise AttributeError(f"module 'cnnlab' has no attribute {name!r}")


__all__ = [
    "NonFiniteLossError", "Tensor", "__version__", "get_num_threads", "is_grad_enabled", "load",
    "manual_seed", "nn", "no_grad", "random", "save", "set_num_threads", "tensor",
]
