"""Looking inside a network without changing it.

- :func:`summary`: a per-layer table of shapes, parameters, multiply-adds and receptive
  fields (also ``Module.summary`` and ``cnnlab summary``).
- :func:`explain_conv`, :func:`explain_pool`: one convolution or pooling written out number
  by number (``cnnlab explain``); :func:`write_explain_page` animates it in a browser.
- :func:`capture_activations`: every layer's output for an input, via forward hooks;
  :func:`save_inspection` draws feature maps and filters (``cnnlab inspect``).
- :func:`plot_history`: loss and accuracy curves of a training run (``cnnlab plot``).

Pictures need Pillow (``pip install cnnlab[cli]``); curves need matplotlib
(``pip install cnnlab[plot]``). Both are imported only when used.
"""

from cnnlab import _checkout  # noqa: F401  (a folder named cnnlab hiding the package)
from cnnlab.inspect.curves import plot_history
from cnnlab.inspect.explain import explain_conv, explain_pool
from cnnlab.inspect.features import capture_activations, save_inspection
from cnnlab.inspect.page import write_explain_page
from cnnlab.inspect.summary import Summary, summary

__all__ = [
    "Summary",
    "capture_activations",
    "explain_conv",
    "explain_pool",
    "plot_history",
    "save_inspection",
    "summary",
    "write_explain_page",
]
