"""Model files and checkpoints in safe formats: safetensors weights plus a JSON spec.

Nothing here unpickles or executes code from a file. Every problem with a file is a
:class:`ModelFileError` (a ``ValueError``) whose message names the file, what is wrong and
what to do about it.
"""

from cnnlab import _checkout  # noqa: F401  (a folder named cnnlab hiding the package)
from cnnlab.io.atomic import atomic_write
from cnnlab.io.checkpoint import load_checkpoint, restore_checkpoint, save_checkpoint
from cnnlab.io.errors import ModelFileError
from cnnlab.io.model_file import load, read_spec, save

__all__ = [
    "ModelFileError",
    "atomic_write",
    "load",
    "load_checkpoint",
    "read_spec",
    "restore_checkpoint",
    "save",
    "save_checkpoint",
]
