"""Files in safe formats: state dicts, model files and checkpoints (safetensors + JSON).

Nothing here unpickles or executes code from a file. Every problem with a file is a
:class:`ModelFileError` (a ``ValueError``) whose message names the file, what is wrong and
what to do about it.

- :func:`save` / :func:`load` (also ``cnnlab.save`` / ``cnnlab.load``): a ``state_dict``, or
  nested dicts/lists of tensors and numbers, as PyTorch's ``torch.save``/``torch.load`` are
  used for weights.
- :func:`save_model` / :func:`load_model`: a whole model — its weights plus the description
  that rebuilds it (an architecture string, input shape, class names, normalization) — for
  ``cnnlab evaluate`` and ``cnnlab predict``.
- :func:`save_checkpoint` / :func:`load_checkpoint`: everything needed to resume training.
"""

from cnnlab import _checkout  # noqa: F401  (a folder named cnnlab hiding the package)
from cnnlab.io.atomic import atomic_write
from cnnlab.io.checkpoint import load_checkpoint, restore_checkpoint, save_checkpoint
from cnnlab.io.errors import ModelFileError
from cnnlab.io.model_file import load as load_model
from cnnlab.io.model_file import read_spec
from cnnlab.io.model_file import save as save_model
from cnnlab.io.state import load, save

__all__ = [
    "ModelFileError",
    "atomic_write",
    "load",
    "load_checkpoint",
    "load_model",
    "read_spec",
    "restore_checkpoint",
    "save",
    "save_checkpoint",
    "save_model",
]
