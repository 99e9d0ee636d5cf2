"""Differentiable ops: each a :class:`~cnnlab.tensor.Function` with a hand-written backward."""

from cnnlab import _checkout  # noqa: F401  (a folder named cnnlab hiding the package)
