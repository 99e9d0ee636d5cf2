"""Naming one layer of a model: by its dotted name, or by its position in a Sequential.

``model.features(x, layer=...)``, :func:`cnnlab.nn.freeze` and the command line's
``--layer`` / ``--freeze`` all find layers this way, so a name means the same everywhere.
"""

from __future__ import annotations

from typing import Any

from cnnlab.nn.module import Module

__all__ = ["layer_names", "select_layer"]


def layer_names(model: Module) -> str:
    """``0 Conv2d, 1 ReLU, ...``: every named sub-module with its type, for error messages."""
    names = [f"{name} {type(m).__name__}" for name, m in model.named_modules() if name]
    return ", ".join(names) if names else "(none: the model has no sub-modules)"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def select_layer(model: Module, layer: int | str) -> tuple[str, Module]:
    """The sub-module ``layer`` names, with its dotted name.

    Args:
        model: any module.
        layer: a dotted name as in ``model.named_modules()`` (``"3"``, ``"features.2"``), or
            an int: a position in ``model`` when it is a Sequential (negative counts from
            the end: ``-1`` is the last layer). A string that is not a name but reads as an
            integer (``"-2"``, from a command line) is taken as a position.

    Returns:
        ``(name, module)``; the name of a position is its canonical non-negative form.

    Raises:
        ValueError: no such layer (the message lists the valid names), a position out of
            range, or a position in a model that is not a Sequential.

    Example:
        >>> from cnnlab import nn
        >>> net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2, 3))
        >>> select_layer(net, -3)[0], type(select_layer(net, "1")[1]).__name__
        ('1', 'ReLU')
    """
    from cnnlab.nn.container import Sequential

    if isinstance(layer, str):
        named = dict(model.named_modules())
        if layer in named and layer:
            return layer, named[layer]
        try:
            position = int(layer)
        except ValueError:
            raise ValueError(f"no layer named {layer!r} in this {type(model).__name__}; its "
                             f"layers are: {layer_names(model)}") from None
        return select_layer(model, position)
    if not _is_int(layer):
        raise ValueError(f"a layer is a name (str) or a position (int), got "
                         f"{type(layer).__name__} {layer!r}")
    if not isinstance(model, Sequential):
        raise ValueError(f"layer {layer}: a position counts the layers of a Sequential, but "
                         f"this model is a {type(model).__name__}; name the layer instead, one "
                         f"of: {layer_names(model)}")
    n = len(model)
    if not -n <= layer < n:
        raise ValueError(f"layer {layer} is out of range for a Sequential of {n} layers "
                         f"(positions {-n}..{n - 1}); its layers are: {layer_names(model)}")
    position = layer % n
    return str(position), model[position]
