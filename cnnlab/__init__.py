"""cnnlab: convolutional neural networks from first principles, on NumPy.

The names a PyTorch program uses are here with PyTorch's meanings (``import cnnlab as torch``
runs ordinary CNN code): tensors and their functions, ``nn``, ``optim``, ``utils.data``,
``save``/``load``, ``no_grad``, ``manual_seed``, ``device``. Importing cnnlab changes nothing
outside it; :func:`keep_freed_memory` is an explicit, opt-in call.
"""

from cnnlab import cuda, nn, random
from cnnlab.autograd import enable_grad, inference_mode, is_grad_enabled, no_grad, set_grad_enabled
from cnnlab.dtypes import (  # noqa: A004 (PyTorch's names: cnnlab.float, cnnlab.int, ...)
    bool,
    double,
    float,
    float16,
    float32,
    float64,
    half,
    int,
    int8,
    int16,
    int32,
    int64,
    long,
    short,
    uint8,
)
from cnnlab.functions import *  # noqa: F403 (the list is functions.__all__)
from cnnlab.functions import __all__ as _functions
from cnnlab.io.state import load, save
from cnnlab.kernels.memory import keep_freed_memory
from cnnlab.kernels.parallel import get_num_threads, set_num_threads
from cnnlab.ops.loss import NonFiniteLossError
from cnnlab.random import Generator, manual_seed
from cnnlab.tensor import Size, Tensor, device, tensor

__version__ = "0.1.0"


def __getattr__(name: str):
    # Optimizers, data and the rest load on first use, keeping `import cnnlab` light.
    if name in ("optim", "data", "arch", "io", "inspect", "train", "utils", "vision",
                "distributed", "onnx", "models", "tasks"):
        import importlib

        return importlib.import_module(f"cnnlab.{name}")
    raise AttributeError(f"module 'cnnlab' has no attribute {name!r}")


__all__ = [
    "Generator", "NonFiniteLossError", "Size", "Tensor", "__version__", "bool", "cuda",
    "device", "double", "enable_grad", "float", "float16", "float32", "float64",
    "get_num_threads", "half", "inference_mode", "int", "int8", "int16", "int32", "int64",
    "is_grad_enabled", "keep_freed_memory", "load", "long", "manual_seed", "nn", "no_grad",
    "random", "save", "set_grad_enabled", "set_num_threads", "short", "tensor", "uint8",
    *_functions,
]
