"""Module and Parameter: the containers layers are made of.

Parameters are found structurally — in attributes, and inside lists, tuples and dicts held
by attributes — in assignment order, so a layer kept in a list is never silently untrained
and a saved file maps dotted names to arrays deterministically.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from cnnlab import autograd
from cnnlab.kernels import parallel
from cnnlab.tensor import Tensor, as_dtype, check_device, device


class Parameter(Tensor):
    """A tensor that is a learnable part of a module (``requires_grad=True`` by default)."""

    def __init__(self, data: Any, requires_grad: bool = True) -> None:
        super().__init__(data, requires_grad=requires_grad)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()


class _HookHandle:
    def __init__(self, hooks: dict[int, Callable], key: int) -> None:
        self._hooks, self._key = hooks, key

    def remove(self) -> None:
        self._hooks.pop(self._key, None)


class Module:
    """Base class of every layer and network.

    Subclasses set parameters and sub-modules as attributes in ``__init__`` and implement
    ``forward``. Calling the module runs ``forward`` and then any forward hooks.

    Example:
        >>> import cnnlab.nn as nn
        >>> class Net(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.conv = nn.Conv2d(3, 10, 5)
        ...     def forward(self, x):
        ...         return self.conv(x)
        >>> [name for name, _ in Net().named_parameters()]
        ['conv.weight', 'conv.bias']
    """

    def __init__(self) -> None:
        self.training = True
        self._buffer_names: list[str] = []
        self._forward_hooks: dict[int, Callable] = {}
        self._next_hook = 0

    def _ensure_init(self) -> None:
        if "_forward_hooks" not in vars(self):
            raise RuntimeError(
                f"{type(self).__name__}.__init__ must call super().__init__() before "
                "assigning parameters or sub-modules"
            )

    # ----- calling ----------------------------------------------------------------------
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must implement forward()")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if "_forward_hooks" not in self.__dict__:
            self._ensure_init()  # raises
        if autograd._tracer is not None and autograd._tracer.claims(self):
            return autograd._tracer.call_module(self, args, kwargs)
        # The thread policy is decided once, at the root of the forward pass (see
        # cnnlab.kernels.parallel.region); sub-modules find it decided.
        if parallel.in_region():
            out = self.forward(*args, **kwargs)
        else:
            batch = len(args[0]) if args and getattr(args[0], "ndim", 0) == 4 else 0
            with parallel.region(batch):
                out = self.forward(*args, **kwargs)
        if self._forward_hooks:
            for hook in list(self._forward_hooks.values()):
                result = hook(self, args, out)
                if result is not None:
                    out = result
        return out

    def register_forward_hook(self, hook: Callable[[Module, tuple, Any], Any]) -> _HookHandle:
        """Call ``hook(module, inputs, output)`` after every forward; a non-None return value
        replaces the output. Returns a handle whose ``remove()`` unregisters it."""
        self._ensure_init()
        key = self._next_hook
        self._next_hook += 1
        self._forward_hooks[key] = hook
        return _HookHandle(self._forward_hooks, key)

    # ----- structure --------------------------------------------------------------------
    def _members(self) -> Iterator[tuple[str, Any]]:
        """Public attributes, with containers opened up, in assignment order."""
        for name, value in vars(self).items():
            if name.startswith("_"):
                continue
            if isinstance(value, (Module, Parameter)):
                yield name, value
            elif isinstance(value, (list, tuple)):
                for i, item in enumerate(value):
                    if isinstance(item, (Module, Parameter)):
                        yield f"{name}.{i}", item
            elif isinstance(value, dict):
                for key, item in value.items():
                    if isinstance(item, (Module, Parameter)):
                        yield f"{name}.{key}", item

    def named_children(self) -> Iterator[tuple[str, Module]]:
        for name, value in self._members():
            if isinstance(value, Module):
                yield name, value

    def children(self) -> Iterator[Module]:
        for _, module in self.named_children():
            yield module

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        """This module (name ``prefix``) and every sub-module, depth first, each once."""
        seen: set[int] = set()
        stack: list[tuple[str, Module]] = [(prefix, self)]
        while stack:
            name, module = stack.pop()
            if id(module) in seen:
                continue
            seen.add(id(module))
            yield name, module
            kids = [(f"{name}.{n}" if name else n, m) for n, m in module.named_children()]
            stack.extend(reversed(kids))

    def modules(self) -> Iterator[Module]:
        for _, module in self.named_modules():
            yield module

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        """Every parameter with its dotted name (``features.0.weight``), each once."""
        seen: set[int] = set()
        for mod_name, module in self.named_modules(prefix):
            for name, value in module._members():
                if isinstance(value, Parameter) and id(value) not in seen:
                    seen.add(id(value))
                    yield (f"{mod_name}.{name}" if mod_name else name), value

    def parameters(self) -> Iterator[Parameter]:
        for _, p in self.named_parameters():
            yield p

    def register_buffer(self, name: str, value: np.ndarray) -> None:
        """Keep a non-learnable array (e.g. running statistics) in ``state_dict``."""
        self._ensure_init()
        if name not in self._buffer_names:
            self._buffer_names.append(name)
        setattr(self, name, value)

    def named_buffers(self) -> Iterator[tuple[str, np.ndarray]]:
        for mod_name, module in self.named_modules():
            for name in module._buffer_names:
                yield (f"{mod_name}.{name}" if mod_name else name), getattr(module, name)

    def buffers(self) -> Iterator[np.ndarray]:
        for _, b in self.named_buffers():
            yield b

    # ----- state ------------------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of every parameter and buffer, by dotted name, in a fixed order."""
        state = {name: p.data.copy() for name, p in self.named_parameters()}
        state.update({name: np.array(b, copy=True) for name, b in self.named_buffers()})
        return state

    def load_state_dict(self, state_dict: dict[str, Any], strict: bool = True) -> None:
        """Copy arrays into this module's parameters and buffers (in place).

        Raises:
            KeyError: with ``strict``, if keys are missing or unexpected (all are listed).
            ValueError: if an array's shape differs from the parameter's.
        """
        # The names state_dict() writes: a parameter shared by two modules appears once.
        targets: dict[str, tuple[Any, str]] = {
            name: (p, "") for name, p in self.named_parameters()}
        for mod_name, module in self.named_modules():
            for name in module._buffer_names:
                targets[f"{mod_name}.{name}" if mod_name else name] = (module, name)
        missing = [k for k in targets if k not in state_dict]
        unexpected = [k for k in state_dict if k not in targets]
        if strict and (missing or unexpected):
            parts = []
            if missing:
                parts.append(f"missing keys {missing}")
            if unexpected:
                parts.append(f"unexpected keys {unexpected}")
            raise KeyError(
                f"load_state_dict for {type(self).__name__}: {'; '.join(parts)}; the saved "
                "weights come from a different architecture"
            )
        for key, (owner, attr) in targets.items():
            if key not in state_dict:
                continue
            value = np.asarray(state_dict[key].data if isinstance(state_dict[key], Tensor)
                               else state_dict[key])
            current = owner.data if not attr else getattr(owner, attr)
            if value.shape != current.shape:
                raise ValueError(
                    f"load_state_dict: '{key}' expected shape {current.shape}, got "
                    f"{value.shape}"
                )
            if attr:
                setattr(owner, attr, value.astype(current.dtype, copy=True))
            else:
                np.copyto(owner.data, value, casting="same_kind")

    # ----- modes and dtypes ---------------------------------------------------------------
    def train(self, mode: bool = True) -> Module:
        for module in self.modules():
            module.training = mode
        return self

    def eval(self) -> Module:
        return self.train(False)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear every parameter's gradient (or fill it with zeros)."""
        for p in self.parameters():
            if set_to_none or p._grad is None:
                p.grad = None
            else:
                p._grad.fill(0)

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        """Set ``requires_grad`` of every parameter (``False`` freezes the module)."""
        for p in self.parameters():
            p.requires_grad = bool(requires_grad)
        return self

    def apply(self, fn: Callable[[Module], Any]) -> Module:
        """Call ``fn`` on every sub-module (children first) and on this module; e.g. a
        custom weight initialization. Returns this module."""
        for module in list(self.modules())[::-1]:
            fn(module)
        return self

    def to(self, *args: Any, **kwargs: Any) -> Module:
        """``to(dtype)``, ``to(device)`` or ``to(device, dtype)``: convert every floating
        parameter and buffer to ``dtype`` (e.g. ``cnnlab.float64``), in place. The only
        device is the CPU.

        Raises:
            RuntimeError: for a device other than the CPU.
        """
        dtype = kwargs.pop("dtype", None)
        kwargs.pop("non_blocking", None)
        targets = list(args) + ([kwargs.pop("device")] if "device" in kwargs else [])
        if kwargs:
            raise TypeError(f"to() got unexpected arguments {sorted(kwargs)}")
        for target in targets:
            if isinstance(target, Tensor):
                dtype = target.dtype
            elif isinstance(target, (str, device)):
                try:
                    dtype = as_dtype(target)
                except TypeError:
                    check_device(target, f"{type(self).__name__}.to")
            else:
                dtype = target
        if dtype is None:
            return self
        dtype = as_dtype(dtype)
        if dtype.kind != "f":
            raise TypeError(f"{type(self).__name__}.to: only floating-point dtypes apply to "
                            f"parameters, got {dtype}")
        for p in self.parameters():
            if p.data.dtype != dtype:
                p.data = p.data.astype(dtype)
                p.grad = None
        for module in self.modules():
            for name in module._buffer_names:
                value = getattr(module, name)
                if value.dtype.kind == "f":
                    setattr(module, name, value.astype(dtype))
        return self

    def cpu(self) -> Module:
        return self

    def cuda(self, *args: Any, **kwargs: Any) -> Module:
        check_device("cuda", f"{type(self).__name__}.cuda")
        return self

    def double(self) -> Module:
        return self.to(np.float64)

    def float(self) -> Module:
        return self.to(np.float32)

    def summary(self, input_shape: tuple[int, ...], **kwargs: Any) -> Any:
        """Per-layer table of shapes, parameters, multiply-adds and receptive fields.

        ``input_shape`` is (C, H, W). See :func:`cnnlab.inspect.summary.summary`.
        """
        from cnnlab.inspect.summary import summary

        return summary(self, input_shape, **kwargs)

    # ----- printing ---------------------------------------------------------------------
    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        kids = list(self.named_children())
        if not kids:
            return f"{type(self).__name__}({self.extra_repr()})"
        lines = [f"{type(self).__name__}("]
        for name, kid in kids:
            body = repr(kid).replace("\n", "\n  ")
            lines.append(f"  ({name}): {body}")
        lines.append(")")
        return "\n".join(lines)
