"""The optional ``onnx`` dependency, and the error every ONNX problem raises."""

from __future__ import annotations

from typing import Any


class ONNXError(ValueError):
    """A model that cannot be exported, or an ONNX file that cannot be imported; the
    message names the layer or node, what was expected and what was found."""


def require_onnx() -> Any:
    """The ``onnx`` package, or an ImportError that says how to install it."""
    try:
        import onnx
        import onnx.numpy_helper  # noqa: F401  (a submodule the converters use)
    except ImportError:
        raise ImportError('reading and writing ONNX files needs the onnx package: '
                          'pip install "cnnlab[onnx]"') from None
    return onnx
