"""Transfer learning: start a network from another one's weights, freeze what should stay.

``cnnlab train --init-from MODEL [--freeze N|LAYER] [--lr-head X]`` uses these steps:

1. :func:`copy_matching` copies every tensor (weights and BatchNorm running statistics) whose
   name and shape are the same in both networks; the rest keep their fresh initialization.
   When the classes differ (their number or their names) the classifier head, the last
   Linear layer, is not copied even if its shape matches: its rows belonged to the old
   classes.
2. :func:`cnnlab.nn.freeze` freezes the first layers: no gradients, and eval mode kept
   across ``model.train()`` (frozen BatchNorm layers use their running statistics).
3. :func:`param_groups` gives the head its own learning rate, as a parameter group.

The run's settings record all three, so ``--resume`` rebuilds the same frozen network (the
weights then come from the checkpoint, not from the source model).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Transfer", "copy_matching", "freeze", "head_layer", "initialize", "param_groups"]


@dataclass
class Transfer:
    """What :func:`copy_matching` did, by layer (module name).

    Attributes:
        copied: layers whose tensors all came from the source.
        new: ``{layer: why}`` for layers (partly) left at their initialization.
        tensors: the number of tensors copied.
    """

    copied: list[str] = field(default_factory=list)
    new: dict[str, str] = field(default_factory=dict)
    tensors: int = 0


def _layer_of(key: str) -> str:
    return key.rpartition(".")[0] or key


def head_layer(model) -> str | None:
    """The name of the last Linear layer of ``model`` (a classifier's head), or None."""
    from cnnlab import nn

    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    return names[-1] if names else None


def copy_matching(model, source: Mapping[str, Any], *, skip: Iterable[str] = ()) -> Transfer:
    """Copy the tensors of ``source`` (a state dict) into ``model`` where name and shape
    agree, in place.

    Args:
        model: the network to initialize.
        source: a ``state_dict()`` of another network (arrays or tensors).
        skip: layers (module names) not to copy even where they match.

    Returns:
        A :class:`Transfer` report.

    Example:
        >>> import cnnlab
        >>> a = cnnlab.arch.build("conv3x3x4-relu-fc10", (1, 6, 6))
        >>> b = cnnlab.arch.build("conv3x3x4-relu-fc5", (1, 6, 6))
        >>> report = copy_matching(b, a.state_dict())
        >>> report.copied, report.new
        (['0'], {'3': 'shape (5, 64) here, (10, 64) in the source'})
    """
    skip = set(skip)
    state = model.state_dict()
    report = Transfer()
    copy: dict[str, np.ndarray] = {}
    for key, mine in state.items():
        layer = _layer_of(key)
        theirs = source.get(key)
        if theirs is not None:
            theirs = np.asarray(getattr(theirs, "data", theirs))
        if layer in skip:
            report.new.setdefault(layer, "replaced")
        elif theirs is None:
            report.new.setdefault(layer, f"no {key} in the source")
        elif theirs.shape != mine.shape:
            report.new.setdefault(layer, f"shape {tuple(mine.shape)} here, "
                                         f"{tuple(theirs.shape)} in the source")
        else:
            copy[key] = theirs
    model.load_state_dict(copy, strict=False)
    report.tensors = len(copy)
    for layer in dict.fromkeys(_layer_of(k) for k in state):
        if layer not in report.new:
            report.copied.append(layer)
    return report


def param_groups(model, lr_head: float | None) -> list[Any]:
    """``model``'s parameters for an optimizer: one list, or with ``lr_head`` two groups,
    the head (last Linear layer) with that learning rate."""
    params = list(model.named_parameters())
    head = head_layer(model)
    if lr_head is None or head is None:
        return [p for _, p in params]
    in_head = [p for n, p in params if n.startswith(head + ".")]
    rest = [p for n, p in params if not n.startswith(head + ".")]
    groups: list[dict[str, Any]] = [{"params": rest}] if rest else []
    return [*groups, {"params": in_head, "lr": float(lr_head)}]


def _layers(names: list[str]) -> str:
    """``0-11`` for consecutive top-level positions, else the names."""
    if names and all(n.isdigit() for n in names):
        nums = [int(n) for n in names]
        if nums == list(range(nums[0], nums[0] + len(nums))) and len(nums) > 2:
            return f"{nums[0]}-{nums[-1]}"
    return ", ".join(names) if names else "none"


def initialize(model, path: str, say: Callable[[str], None] = print) -> Transfer:
    """Copy the matching layers of the model file at ``path`` into ``model`` (see the
    module docstring), telling ``say`` which layers were copied and which are new, and why.

    Raises:
        ValueError: (``cnnlab.io.ModelFileError``) the file cannot be read.
    """
    from cnnlab import io

    source = io.load_model(path)
    mine, theirs = model.spec.get("classes"), source.spec.get("classes")
    head = head_layer(model)
    replace = head is not None and mine is not None and theirs is not None and \
        list(mine) != list(theirs)
    report = copy_matching(model, source.state_dict(), skip=[head] if replace else [])
    say(f"init from {path}: copied layers {_layers(report.copied)} ({report.tensors} tensors)")
    for layer, why in report.new.items():
        if why == "replaced":
            why = (f"a new classifier for {len(mine)} classes ({_classes(mine)}) instead of "
                   f"{len(theirs)} ({_classes(theirs)})")
        say(f"  new layer {layer} ({_module_text(model, layer)}): {why}")
    if not report.copied:
        say("  nothing matched: the two networks share no layer names and shapes")
    return report


def freeze(model, upto: int | str, say: Callable[[str], None] = print) -> list[str]:
    """:func:`cnnlab.nn.freeze` ``model`` up to ``upto``, telling ``say`` which layers and
    how many parameters are now fixed.

    Raises:
        ValueError: a layer that does not exist, or a count out of range.
    """
    from cnnlab import nn

    frozen = nn.freeze(model, upto)
    fixed = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    bn = [n for n, m in model.named_modules()
          if isinstance(m, nn.BatchNorm2d) and getattr(m, "frozen", False)]
    line = f"frozen: layers {_layers(frozen)} ({fixed:,} parameters fixed"
    if bn:
        line += (f"; batch norm {_layers(bn)} keeps its" if len(bn) == 1 else
                 f"; batch norm layers {_layers(bn)} keep their") + " running statistics"
    say(line + ")")
    return frozen


def _classes(names) -> str:
    names = [str(n) for n in names]
    return ", ".join(names) if len(names) <= 4 else ", ".join(names[:3]) + f", ... {names[-1]}"


def _module_text(model, layer: str) -> str:
    module = dict(model.named_modules()).get(layer)
    return type(module).__name__ if module is not None else "?"
