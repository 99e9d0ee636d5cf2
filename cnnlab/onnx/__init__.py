"""ONNX both ways: :func:`export` writes a cnnlab model as an ONNX file that runs at any
batch size (onnxruntime, TensorRT, a browser...); :func:`load` imports an ONNX file, e.g.
one exported from PyTorch, as a cnnlab module that runs, trains and can be inspected.

Both need the ``onnx`` package (``pip install "cnnlab[onnx]"``, which also installs
onnxruntime), imported only when they are called; an imported model, once saved with
``cnnlab.save``, runs without it.
"""

from __future__ import annotations

from cnnlab.onnx._deps import ONNXError
from cnnlab.onnx.export import export
from cnnlab.onnx.graph import GraphModule
from cnnlab.onnx.load import load, supported_ops

__all__ = ["GraphModule", "ONNXError", "export", "load", "supported_ops"]
