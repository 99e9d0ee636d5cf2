"""Freezing layers for transfer learning: ``nn.freeze(model, upto)``.

A frozen layer keeps what it learnt:

- its parameters get ``requires_grad=False``: backward computes no gradient for them, and
  optimizers skip parameters without a gradient (as in PyTorch), so they never change;
- it stays in eval mode: ``freeze`` sets the layer's ``frozen`` flag, and
  :meth:`Module.train` leaves flagged modules in eval mode. A frozen ``BatchNorm2d``
  therefore normalizes with its running statistics and stops updating them even while the
  rest of the model trains, and a frozen ``Dropout`` passes its input through. (In
  PyTorch the same needs ``bn.eval()`` after every ``model.train()``.)

:func:`unfreeze` undoes both.
"""

from __future__ import annotations

from cnnlab.nn.module import Module
from cnnlab.nn.select import select_layer

__all__ = ["freeze", "frozen_modules", "unfreeze"]


def _ancestors(name: str) -> set[str]:
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(len(parts))}


def _targets(model: Module, upto: int | str | None) -> list[tuple[str, Module]]:
    """The outermost modules to freeze, in order."""
    from cnnlab.nn.container import Sequential

    if upto is None:
        return [("", model)]
    if isinstance(upto, int) and not isinstance(upto, bool):
        if not isinstance(model, Sequential):
            raise ValueError(f"freeze: a number of layers counts the layers of a Sequential, "
                             f"but this model is a {type(model).__name__}; name the last layer "
                             "to freeze instead")
        n = len(model)
        if not -n <= upto <= n:
            raise ValueError(f"freeze: {upto} layers is out of range for a Sequential of {n} "
                             f"layers (expected {-n}..{n}; negative leaves the last -N "
                             "layers trainable)")
        return [(str(i), model[i]) for i in range(n)[:upto]]
    last, _ = select_layer(model, upto)
    ancestors = _ancestors(last)
    out: list[tuple[str, Module]] = []
    for name, module in model.named_modules():
        if name in ancestors:  # holds layers after `last` too: only its sub-modules freeze
            continue
        if any(name.startswith(done + ".") for done, _ in out):
            continue
        out.append((name, module))
        if name == last:
            break
    return out


def freeze(model: Module, upto: int | str | None = None) -> list[str]:
    """Freeze ``model``, or its layers up to ``upto`` (see the module docstring).

    Args:
        model: a module.
        upto: None: the whole model. An int N: the first N layers of a Sequential
            (``-1``: all but the last one, e.g. every layer but the classifier). A layer
            name or position (as for :func:`cnnlab.nn.select.select_layer`): every layer
            that comes before it in ``named_modules()`` order, and the layer itself.

    Returns:
        The names of the outermost frozen modules (``""`` for the whole model).

    Raises:
        ValueError: an unknown layer, or a count out of range (the message says the range).

    Example:
        >>> from cnnlab import nn
        >>> net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(),
        ...                     nn.Flatten(), nn.Linear(4, 2))
        >>> nn.freeze(net, -1)
        ['0', '1', '2', '3']
        >>> net.train()[1].training, net[4].training, net[0].weight.requires_grad
        (False, True, False)
    """
    targets = _targets(model, upto)
    for _, module in targets:
        module.requires_grad_(False)
        for sub in module.modules():
            sub.frozen = True
            sub.training = False
    return [name for name, _ in targets]


def unfreeze(model: Module) -> Module:
    """Make every layer of ``model`` trainable again: ``requires_grad=True`` and no
    ``frozen`` flag. Modes are left as they are: the next ``model.train()`` puts the
    formerly frozen layers in training mode too. Returns ``model``."""
    model.requires_grad_(True)
    for module in model.modules():
        module.frozen = False
    return model


def frozen_modules(model: Module) -> list[str]:
    """The names of the outermost frozen modules of ``model`` (what :func:`freeze` froze)."""
    out: list[str] = []
    for name, module in model.named_modules():
        if getattr(module, "frozen", False) and not any(
                name.startswith(done + ".") or done == "" for done in out):
            out.append(name)
    return out
