"""Containers: Sequential, ModuleList, ModuleDict. Their children are named "0", "1", ... (or
by key), so parameters get the same dotted names as in PyTorch (``features.0.weight``)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from cnnlab.nn.module import Module


def _check_module(item: Any, who: str, where: Any) -> Module:
    if not isinstance(item, Module):
        raise TypeError(f"{who}: item {where!r} is {type(item).__name__}, not a Module")
    return item


class Sequential(Module):
    """Layers applied one after another; indexable, iterable, children named "0", "1", ...

    ``forward`` is a plain loop over the layers. Faster fused layers (a convolution with its
    ReLU, say) are made by an explicit step, :func:`cnnlab.nn.fuse`.

    A ValueError or TypeError raised by a layer gets the layer's position in front of its
    message (``layer 2: ...``, ``layer 1.0: ...`` inside a nested Sequential), keeping its
    type.

    Example:
        >>> from cnnlab import nn
        >>> net = nn.Sequential(nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2))
        >>> len(net), type(net[0]).__name__
        (3, 'Conv2d')
    """

    def __init__(self, *layers: Module):
        super().__init__()
        if len(layers) == 1 and isinstance(layers[0], Mapping):  # Sequential(OrderedDict(...))
            raise TypeError("Sequential of a dict is not supported; pass the layers in order "
                            "(their names are their positions), or use ModuleDict")
        self.layers = [_check_module(layer, "Sequential", i) for i, layer in enumerate(layers)]

    def named_children(self) -> Iterator[tuple[str, Module]]:
        for i, layer in enumerate(self.layers):
            yield str(i), layer

    def _members(self) -> Iterator[tuple[str, Any]]:
        yield from self.named_children()

    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return Sequential(*self.layers[index])
        return self.layers[index]

    def __setitem__(self, index: int, layer: Module) -> None:
        self.layers[index] = _check_module(layer, "Sequential", index)

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self) -> Iterator[Module]:
        return iter(self.layers)

    def append(self, layer: Module) -> Sequential:
        self.layers.append(_check_module(layer, "Sequential", len(self.layers)))
        return self

    def forward(self, x: Any) -> Any:
        for i, layer in enumerate(self.layers):
            try:
                x = layer(x)
            except (ValueError, TypeError) as exc:
                _locate(exc, i)
                raise
        return x


def _locate(exc: Exception, i: int) -> None:
    """``layer i: `` before the message; a nested Sequential's ``layer j: `` becomes
    ``layer i.j: ``. In place, so the exception keeps its type."""
    if not exc.args or not isinstance(exc.args[0], str):
        return
    message = exc.args[0]
    if getattr(exc, "_cnnlab_located", False) and message.startswith("layer "):
        message = f"layer {i}.{message[len('layer '):]}"
    else:
        message = f"layer {i}: {message}"
    exc.args = (message, *exc.args[1:])
    exc._cnnlab_located = True  # type: ignore[attr-defined]


class ModuleList(Module):
    """A list of modules whose parameters the model sees (``layers.0.weight``, ...).

    Example:
        >>> from cnnlab import nn
        >>> blocks = nn.ModuleList([nn.Linear(4, 4) for _ in range(3)])
        >>> len(blocks), len(list(blocks.parameters()))
        (3, 6)
    """

    def __init__(self, modules: Iterable[Module] | None = None):
        super().__init__()
        self._items: list[Module] = []
        for module in modules or ():
            self.append(module)

    def named_children(self) -> Iterator[tuple[str, Module]]:
        for i, module in enumerate(self._items):
            yield str(i), module

    def _members(self) -> Iterator[tuple[str, Any]]:
        yield from self.named_children()

    def append(self, module: Module) -> ModuleList:
        self._items.append(_check_module(module, "ModuleList", len(self._items)))
        return self

    def extend(self, modules: Iterable[Module]) -> ModuleList:
        for module in modules:
            self.append(module)
        return self

    def insert(self, index: int, module: Module) -> None:
        self._items.insert(index, _check_module(module, "ModuleList", index))

    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return ModuleList(self._items[index])
        return self._items[index]

    def __setitem__(self, index: int, module: Module) -> None:
        self._items[index] = _check_module(module, "ModuleList", index)

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._items)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("a ModuleList has no forward of its own; iterate over it in "
                                  "your module's forward")


class ModuleDict(Module):
    """A dict of modules (insertion order) whose parameters the model sees (``heads.box.weight``).

    Example:
        >>> from cnnlab import nn
        >>> heads = nn.ModuleDict({"cls": nn.Linear(8, 10), "box": nn.Linear(8, 4)})
        >>> list(heads.keys()), heads["box"].out_features
        (['cls', 'box'], 4)
    """

    def __init__(self, modules: Mapping[str, Module] | None = None):
        super().__init__()
        self._items: dict[str, Module] = {}
        for key, module in (modules or {}).items():
            self[key] = module

    def named_children(self) -> Iterator[tuple[str, Module]]:
        yield from self._items.items()

    def _members(self) -> Iterator[tuple[str, Any]]:
        yield from self.named_children()

    def __getitem__(self, key: str) -> Module:
        return self._items[key]

    def __setitem__(self, key: str, module: Module) -> None:
        if not isinstance(key, str) or not key or "." in key:
            raise KeyError(f"ModuleDict keys must be non-empty strings without '.', got {key!r}")
        self._items[key] = _check_module(module, "ModuleDict", key)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def keys(self):
        return self._items.keys()

    def items(self):
        return self._items.items()

    def values(self):
        return self._items.values()

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("a ModuleDict has no forward of its own; pick its modules in "
                                  "your module's forward")
