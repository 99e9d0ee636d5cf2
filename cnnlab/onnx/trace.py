"""Recording one forward pass: which layers and ops ran, on which tensors.

While a :class:`Tracer` is installed, ``Module.__call__`` asks it whether it *claims* the
module (a layer with an exporter); a claimed layer runs as usual with recording switched
off inside it and becomes one :class:`Call`. Every other op that
runs reports itself from ``Function.apply``, so a forward written as arbitrary Python —
a ``+`` for a residual connection, a slice, a reshape — is recorded op by op. Only ops
are seen: arithmetic done on ``.data`` outside cnnlab's ops is invisible, and its result
enters the graph as a constant.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from cnnlab import autograd
from cnnlab.nn.module import Module
from cnnlab.onnx.registry import MODULE_EXPORTERS
from cnnlab.tensor import Tensor


def flatten_tensors(value: Any) -> list[Tensor]:
    """The tensors in a (nested) tuple, list or dict, in order."""
    if isinstance(value, Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for item in value for t in flatten_tensors(item)]
    if isinstance(value, dict):
        return [t for item in value.values() for t in flatten_tensors(item)]
    return []


@dataclass
class Call:
    """One recorded layer or op.

    Attributes:
        target: the layer (a module instance) or the op (a ``Function`` subclass).
        name: the layer's dotted name in the model, or the op's class name.
        inputs: every tensor it was given, flattened, in order.
        args: the positional arguments as given (a layer's) or the input tensors (an op's).
        options: an op's keyword options, or a layer's keyword arguments.
        output: what it returned.
        alt: the same call in the second trace, made at another batch size.
    """

    target: Any
    name: str
    inputs: list[Tensor]
    args: tuple
    options: dict[str, Any]
    output: Any
    alt: Call | None = field(default=None, repr=False)

    @property
    def outputs(self) -> list[Tensor]:
        return flatten_tensors(self.output)

    @property
    def module(self) -> Module:
        return self.target


class Tracer:
    """Collects the calls of one forward pass of ``model`` (see the module docstring)."""

    def __init__(self, model: Module) -> None:
        self.names = {id(m): name for name, m in model.named_modules()}
        self.calls: list[Call] = []
        self.thread = threading.get_ident()  # another thread's forward is not recorded

    def claims(self, module: Module) -> bool:
        return type(module) in MODULE_EXPORTERS and threading.get_ident() == self.thread

    def call_module(self, module: Module, args: tuple, kwargs: dict[str, Any]) -> Any:
        saved, autograd._tracer = autograd._tracer, None
        try:
            out = module(*args, **kwargs)
        finally:
            autograd._tracer = saved
        name = self.names.get(id(module)) or type(module).__name__
        self.calls.append(Call(module, name, flatten_tensors((args, kwargs)), args,
                               dict(kwargs), out))
        return out

    def record_function(self, cls: type, inputs: tuple, options: dict[str, Any],
                        out: Tensor) -> None:
        if threading.get_ident() != self.thread:
            return
        self.calls.append(Call(cls, cls.__name__, list(inputs), inputs, dict(options), out))


def trace(model: Module, inputs: tuple[Tensor, ...]) -> tuple[list[Call], Any]:
    """Run ``model(*inputs)`` under no_grad with a tracer installed.

    Returns:
        ``(calls, output)``.

    Raises:
        RuntimeError: if a trace is already running.
    """
    from cnnlab import no_grad

    if autograd._tracer is not None:
        raise RuntimeError("a forward pass is already being traced (export is not reentrant)")
    tracer = Tracer(model)
    autograd._tracer = tracer
    try:
        with no_grad():
            out = model(*inputs)
    finally:
        autograd._tracer = None
    return tracer.calls, out
