"""The ``cnnlab`` command line: thin commands over the library."""

from cnnlab import _checkout  # noqa: F401  (a folder named cnnlab hiding the package)
