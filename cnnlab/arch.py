"""Architectures as short strings, the way papers and courses write them.

``conv5x5x6p2-relu-pool2-conv5x5x16-relu-pool2-fc120-relu-fc84-relu-fc10`` is LeNet-5:
tokens separated by ``-``, each one layer. :func:`parse` turns a string into a list of
JSON-able layer specs, :func:`to_string` turns specs back into the canonical string, and
:func:`build` makes an ``nn.Sequential``, working out every layer's input channels and
features by walking the shapes from ``input_shape`` with :func:`cnnlab.shape.conv_output_size`.

======================================  ==============================================
token                                   layer
======================================  ==============================================
``conv<KH>x<KW>x<F>[s<S>][p<P>]``       ``Conv2d(C, F, (KH, KW), stride=S, padding=P)``
``pool<K>[s<S>][p<P>]``, ``maxpool..``  ``MaxPool2d(K, stride=S or K, padding=P)``
``avgpool<K>[s<S>][p<P>]``              ``AvgPool2d(K, stride=S or K, padding=P)``
``gap``                                 ``AdaptiveAvgPool2d(1)`` (global average pool)
``relu``, ``sigmoid``, ``tanh``         the activation
``lrelu[<a>]``, ``leakyrelu[<a>]``      ``LeakyReLU(a)``, a = 0.01 by default
``bn``                                  ``BatchNorm2d(C)``
``dropout[<p>]``                        ``Dropout(p)``, p = 0.5 by default
``flatten``                             ``Flatten()`` (added before the first fc if absent)
``fc<N>``                               ``Linear(features, N)``
======================================  ==============================================

A spec is data, never code, so a model file can be rebuilt from it safely.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from cnnlab import _checkout  # noqa: F401  (a folder named cnnlab hiding the package)

__all__ = [
    "PRESETS",
    "PRESET_INPUT_SHAPES",
    "PRESET_NOTES",
    "build",
    "check_memory",
    "footprint",
    "parse",
    "plan",
    "resolve",
    "state_shapes",
    "to_string",
]

PRESETS: dict[str, str] = {
    "lenet5": "conv5x5x6p2-relu-pool2-conv5x5x16-relu-pool2-fc120-relu-fc84-relu-fc10",
    "digits": "conv3x3x16p1-bn-relu-conv3x3x32p1-bn-relu-pool2-fc64-relu-dropout0.3-fc10",
    "cifar-small": (
        "conv3x3x32p1-bn-relu-conv3x3x32p1-bn-relu-pool2-"
        "conv3x3x64p1-bn-relu-conv3x3x64p1-bn-relu-pool2-dropout0.25-fc10"
    ),
    "mnist": "conv3x3x32p1-bn-relu-pool2-conv3x3x64p1-bn-relu-pool2-fc128-relu-dropout-fc10",
    "mnist-large": (
        "conv3x3x32p1-bn-relu-conv3x3x32p1-bn-relu-pool2-"
        "conv3x3x64p1-bn-relu-conv3x3x64p1-bn-relu-pool2-fc256-relu-dropout0.4-fc10"
    ),
}
"""Named architectures; :func:`build` accepts the name wherever it accepts a string."""

PRESET_INPUT_SHAPES: dict[str, tuple[int, int, int]] = {
    "lenet5": (1, 28, 28),
    "digits": (1, 8, 8),
    "cifar-small": (3, 32, 32),
    "mnist": (1, 28, 28),
    "mnist-large": (1, 28, 28),
}
"""The (C, H, W) input each preset is meant for; :func:`build` uses it by default."""

PRESET_NOTES: dict[str, str] = {
    "lenet5": "LeNet-5 (LeCun et al., 1998) with ReLU and max pooling, for 1x28x28 images",
    "digits": "a small net for the 8x8 scikit-learn digits that ships with cnnlab",
    "cifar-small": "four 3x3 convolutions with batch norm, for 3x32x32 CIFAR-10 images",
    "mnist": "two conv + batch norm blocks and a hidden fc layer, for 1x28x28 MNIST",
    "mnist-large": "two double-conv blocks with batch norm (99.58% on MNIST with random crops)",
}

# Limits that keep a typo like "fc1000000000" from trying to allocate the machine away.
_MAX_INT = 1_000_000
_NUM = r"(\d+(?:\.\d*)?|\.\d+)"
_SUFFIX = r"(?:s(\d+))?(?:p(\d+))?"


def _rx(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.ASCII)  # \d means 0-9 only


# keyword -> (regex for the whole token, human-readable form, example)
_FORMS: dict[str, tuple[re.Pattern[str], str, str]] = {
    "conv": (
        _rx(r"conv(\d+)x(\d+)x(\d+)" + _SUFFIX),
        "conv<K>x<K>x<F>[s<S>][p<P>]",
        "conv3x3x32s1p1",
    ),
    "pool": (_rx(r"pool(\d+)" + _SUFFIX), "pool<K>[s<S>][p<P>]", "pool2"),
    "maxpool": (_rx(r"maxpool(\d+)" + _SUFFIX), "maxpool<K>[s<S>][p<P>]", "maxpool3s2"),
    "avgpool": (_rx(r"avgpool(\d+)" + _SUFFIX), "avgpool<K>[s<S>][p<P>]", "avgpool2"),
    "gap": (_rx(r"gap"), "gap", "gap"),
    "relu": (_rx(r"relu"), "relu", "relu"),
    "lrelu": (_rx(r"lrelu" + _NUM + "?"), "lrelu[<slope>]", "lrelu0.1"),
    "leakyrelu": (_rx(r"leakyrelu" + _NUM + "?"), "leakyrelu[<slope>]", "leakyrelu"),
    "sigmoid": (_rx(r"sigmoid"), "sigmoid", "sigmoid"),
    "tanh": (_rx(r"tanh"), "tanh", "tanh"),
    "bn": (_rx(r"bn"), "bn", "bn"),
    "dropout": (_rx(r"dropout" + _NUM + "?"), "dropout[<p>]", "dropout0.25"),
    "flatten": (_rx(r"flatten"), "flatten", "flatten"),
    "fc": (_rx(r"fc(\d+)"), "fc<N>", "fc10"),
}
_EXPECTED = ", ".join(form for _, form, _ in _FORMS.values())
# Longest first, so "maxpool3x" is blamed on maxpool, not pool.
_KEYWORDS = sorted(_FORMS, key=len, reverse=True)

# spec "type" -> its keys besides "type", with their defaults (None: required)
_FIELDS: dict[str, dict[str, Any]] = {
    "conv": {"kernel_size": None, "out_channels": None, "stride": 1, "padding": 0},
    "maxpool": {"kernel_size": None, "stride": None, "padding": 0},
    "avgpool": {"kernel_size": None, "stride": None, "padding": 0},
    "gap": {},
    "relu": {},
    "leakyrelu": {"negative_slope": 0.01},
    "sigmoid": {},
    "tanh": {},
    "bn": {},
    "dropout": {"p": 0.5},
    "flatten": {},
    "fc": {"out_features": None},
}
_NEEDS_MAPS = ("conv", "maxpool", "avgpool", "gap", "bn")
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


class _Token:
    """Where a layer came from, for error messages."""

    def __init__(self, text: str, index: int, start: int, source: str | None):
        self.text, self.index, self.start, self.source = text, index, start, source

    def where(self) -> str:
        if self.source is None:  # built from a list of specs
            return f"layer {self.index} ({self.text})"
        end = self.start + max(len(self.text), 1) - 1
        return f"{self.text!r} at position {self.index} (characters {self.start}-{end})"

    def caret(self) -> str:
        if self.source is None:
            return ""
        width = max(len(self.text), 1)
        return f"\n  {self.source}\n  {' ' * self.start}{'^' * width}"


# ----------------------------------------------------------------------------- checking


def _int(value: Any, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if value < low:
        raise ValueError(f"{name} must be at least {low}, got {value}")
    if value > _MAX_INT:
        raise ValueError(f"{name} must be at most {_MAX_INT}, got {value}")
    return value


def _float(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value


def _normalize(spec: Any) -> dict[str, Any]:
    """Check one layer spec and fill in its defaults. Raises ValueError naming the field."""
    if not isinstance(spec, dict):
        raise ValueError(f"a layer spec must be a dict with a 'type', got {spec!r}")
    kind = spec.get("type")
    if kind not in _FIELDS:
        raise ValueError(f"unknown layer type {kind!r}; expected one of {', '.join(_FIELDS)}")
    fields = _FIELDS[kind]
    unknown = sorted(set(spec) - set(fields) - {"type"}, key=str)
    if unknown:
        known = ", ".join(fields) or "none"
        raise ValueError(f"{kind} has no field {unknown[0]!r} (its fields: {known})")
    out: dict[str, Any] = {"type": kind}
    for key, default in fields.items():
        if (
            spec.get(key) is None
            and default is None
            and not (key == "stride" and kind in ("maxpool", "avgpool"))
        ):
            raise ValueError(f"{kind} needs {key!r}")
        out[key] = spec.get(key, default)

    if kind == "conv":
        kernel = out["kernel_size"]
        if isinstance(kernel, (int, np.integer)) and not isinstance(kernel, bool):
            kernel = [kernel, kernel]
        if not isinstance(kernel, (list, tuple)) or len(kernel) != 2:
            raise ValueError(f"conv kernel_size must be [height, width], got {kernel!r}")
        out["kernel_size"] = [_int(k, "conv kernel size", 1) for k in kernel]
        out["out_channels"] = _int(out["out_channels"], "conv filter count", 1)
        out["stride"] = _int(out["stride"], "conv stride", 1)
        out["padding"] = _int(out["padding"], "conv padding", 0)
    elif kind in ("maxpool", "avgpool"):
        out["kernel_size"] = _int(out["kernel_size"], "pool kernel size", 1)
        if out["stride"] is None:
            out["stride"] = out["kernel_size"]
        out["stride"] = _int(out["stride"], "pool stride", 1)
        out["padding"] = _int(out["padding"], "pool padding", 0)
        if 2 * out["padding"] > out["kernel_size"]:
            raise ValueError(
                f"pool padding must be at most half the kernel size, got padding "
                f"{out['padding']} for kernel {out['kernel_size']}"
            )
    elif kind == "leakyrelu":
        out["negative_slope"] = _float(out["negative_slope"], "leaky ReLU slope")
        if out["negative_slope"] < 0:
            raise ValueError(
                f"leaky ReLU slope must be >= 0 in this notation, got {out['negative_slope']}"
            )
    elif kind == "dropout":
        out["p"] = _float(out["p"], "dropout probability")
        if not 0 <= out["p"] < 1:
            raise ValueError(f"dropout probability must be in [0, 1), got {out['p']}")
    elif kind == "fc":
        out["out_features"] = _int(out["out_features"], "fc width", 1)
    return out


# ----------------------------------------------------------------------------- parsing


def _number(text: str | None, name: str) -> int | None:
    if text is None:
        return None
    if len(text) > len(str(_MAX_INT)):  # before int(): huge digit strings are slow
        raise ValueError(f"{name} must be at most {_MAX_INT}, got {text}")
    return int(text)


def _token_spec(text: str) -> dict[str, Any]:
    """One token -> raw spec; ValueError(problem) if it does not fit any form."""
    for keyword in _KEYWORDS:
        pattern, form, example = _FORMS[keyword]
        m = pattern.fullmatch(text)
        if m is None:
            continue
        g = m.groups()
        if keyword == "conv":
            return {
                "type": "conv",
                "kernel_size": [
                    _number(g[0], "conv kernel size"),
                    _number(g[1], "conv kernel size"),
                ],
                "out_channels": _number(g[2], "conv filter count"),
                "stride": _number(g[3], "conv stride") if g[3] else 1,
                "padding": _number(g[4], "conv padding") if g[4] else 0,
            }
        if keyword in ("pool", "maxpool", "avgpool"):
            return {
                "type": "avgpool" if keyword == "avgpool" else "maxpool",
                "kernel_size": _number(g[0], "pool kernel size"),
                "stride": _number(g[1], "pool stride"),
                "padding": _number(g[2], "pool padding") if g[2] else 0,
            }
        if keyword in ("lrelu", "leakyrelu"):
            return {"type": "leakyrelu", "negative_slope": float(g[0]) if g[0] else 0.01}
        if keyword == "dropout":
            return {"type": "dropout", "p": float(g[0]) if g[0] else 0.5}
        if keyword == "fc":
            return {"type": "fc", "out_features": _number(g[0], "fc width")}
        return {"type": keyword}
    raise LookupError(text)


def _unknown(text: str, where: str) -> str:
    """The message for a token that matches no form, with a suggestion where one fits."""
    for keyword in _KEYWORDS:
        _, form, example = _FORMS[keyword]
        rest = text[len(keyword) :]
        if text.startswith(keyword) and not rest[:1].isalpha():
            if form == example:  # a layer without arguments
                return f"malformed {keyword} layer {where}: expected just {form!r}"
            return f"malformed {keyword} layer {where}: expected {form}, e.g. {example}"
    message = f"unknown layer {where}: expected one of {_EXPECTED}"
    prefix = re.match(r"[a-z]*", text).group(0)
    close = difflib.get_close_matches(prefix, _KEYWORDS, n=1, cutoff=0.6) if prefix else []
    if close:
        guess = close[0] + text[len(prefix) :]
        try:
            _normalize(_token_spec(guess))
        except (LookupError, ValueError):
            guess = close[0]
        message += f"; did you mean {guess!r}?"
    return message


def _tokens(s: str) -> list[tuple[dict[str, Any], _Token]]:
    if not isinstance(s, str):
        raise ValueError(f"an architecture must be a string, got {type(s).__name__}")
    if not s.strip():
        raise ValueError(
            "empty architecture: expected layers separated by '-', "
            "e.g. 'conv3x3x16p1-relu-pool2-fc10'"
        )
    # ASCII-only lowering keeps every character at its place for the caret line.
    lowered = s.translate(_ASCII_LOWER)
    out, start = [], 0
    for index, piece in enumerate(lowered.split("-"), start=1):
        stripped = piece.strip()
        offset = start + (len(piece) - len(piece.lstrip())) if stripped else start
        token = _Token(s[offset : offset + len(stripped)], index, offset, s)
        start += len(piece) + 1
        if not stripped:
            raise ValueError(
                f"empty layer at position {index} (character {offset}): two '-' in a row, "
                f"or a '-' at the start or end{token.caret()}"
            )
        try:
            spec = _normalize(_token_spec(stripped))
        except LookupError:
            message = _unknown(stripped, token.where())
            if index == 1 and "-" not in s and message.startswith("unknown"):
                close = difflib.get_close_matches(stripped, PRESETS, n=1, cutoff=0.6)
                if close:
                    message += f"; or did you mean the preset {close[0]!r}?"
                else:
                    message += f" (or a preset: {', '.join(PRESETS)})"
            raise ValueError(message + token.caret()) from None
        except ValueError as exc:
            raise ValueError(f"bad value in {token.where()}: {exc}{token.caret()}") from None
        out.append((spec, token))
    return out


def parse(s: str) -> list[dict[str, Any]]:
    """Parse an architecture string into JSON-able layer specs (defaults filled in).

    Args:
        s: tokens separated by ``-`` (see the module docstring); case-insensitive.

    Returns:
        One dict per token, e.g. ``{"type": "conv", "kernel_size": [5, 5],
        "out_channels": 6, "stride": 1, "padding": 2}``. No flatten is added here.

    Raises:
        ValueError: naming the offending token, its position and characters, with a caret
            line under it.

    Example:
        >>> parse("conv3x3x8p1-relu-pool2-fc10")[2]
        {'type': 'maxpool', 'kernel_size': 2, 'stride': 2, 'padding': 0}
    """
    return [spec for spec, _ in _tokens(s)]


def _fmt_float(value: float) -> str:
    # Shortest digits that read back to the same float, and never an exponent (its '-'
    # would split the token).
    return np.format_float_positional(value, trim="-")


def _render(spec: dict[str, Any]) -> str:
    kind = spec["type"]
    if kind == "conv":
        kh, kw = spec["kernel_size"]
        text = f"conv{kh}x{kw}x{spec['out_channels']}"
        text += f"s{spec['stride']}" if spec["stride"] != 1 else ""
        return text + (f"p{spec['padding']}" if spec["padding"] else "")
    if kind in ("maxpool", "avgpool"):
        text = ("pool" if kind == "maxpool" else "avgpool") + str(spec["kernel_size"])
        text += f"s{spec['stride']}" if spec["stride"] != spec["kernel_size"] else ""
        return text + (f"p{spec['padding']}" if spec["padding"] else "")
    if kind == "leakyrelu":
        slope = spec["negative_slope"]
        return "lrelu" + (_fmt_float(slope) if slope != 0.01 else "")
    if kind == "dropout":
        return "dropout" + (_fmt_float(spec["p"]) if spec["p"] != 0.5 else "")
    if kind == "fc":
        return f"fc{spec['out_features']}"
    return kind


def _checked_specs(specs: Any) -> list[dict[str, Any]]:
    if isinstance(specs, (str, bytes)) or not isinstance(specs, Sequence):
        raise ValueError(f"expected a list of layer specs, got {type(specs).__name__}")
    if not specs:
        raise ValueError("empty architecture: the list of layer specs is empty")
    out = []
    for i, spec in enumerate(specs, start=1):
        try:
            out.append(_normalize(spec))
        except ValueError as exc:
            raise ValueError(f"layer {i}: {exc}") from None
    return out


def to_string(spec: str | Sequence[dict[str, Any]]) -> str:
    """The canonical architecture string for a list of specs (or for another string).

    Defaults are left out (``pool2`` rather than ``maxpool2s2p0``), so
    ``parse(to_string(specs)) == parse_result`` for every valid ``specs``.

    Raises:
        ValueError: for a malformed spec, naming the layer and field.

    Example:
        >>> conv = {"type": "conv", "kernel_size": [3, 3], "out_channels": 8}
        >>> to_string([conv, {"type": "relu"}])
        'conv3x3x8-relu'
    """
    specs = parse(spec) if isinstance(spec, str) else _checked_specs(spec)
    return "-".join(_render(s) for s in specs)


def resolve(arch: str) -> str:
    """A preset's string for a preset name; any other string unchanged (stripped)."""
    if not isinstance(arch, str):
        raise ValueError(f"an architecture must be a string, got {type(arch).__name__}")
    return PRESETS.get(arch.strip().lower(), arch)


# ----------------------------------------------------------------------------- building


def _layers(arch: Any) -> tuple[list[tuple[dict[str, Any], _Token]], str | None]:
    """Specs with their origin; and the preset name if ``arch`` is one."""
    if isinstance(arch, str):
        name = arch.strip().lower()
        if name in PRESETS:
            return _tokens(PRESETS[name]), name
        return _tokens(arch), None
    specs = _checked_specs(arch)
    return [(s, _Token(_render(s), i, 0, None)) for i, s in enumerate(specs, start=1)], None


def _input_shape(input_shape: Any, preset: str | None) -> tuple[int, int, int]:
    if input_shape is None:
        if preset is None:
            raise ValueError(
                "input_shape is required for an architecture string: pass (C, H, W), "
                "e.g. input_shape=(1, 28, 28)"
            )
        return PRESET_INPUT_SHAPES[preset]
    try:
        dims = tuple(input_shape)
    except TypeError:
        dims = ()
    if len(dims) != 3 or not all(
        isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 1 for d in dims
    ):
        raise ValueError(
            f"input_shape must be (C, H, W) with positive ints, e.g. (1, 28, 28); "
            f"got {input_shape!r}"
        )
    if max(dims) > _MAX_INT:
        raise ValueError(
            f"input_shape must be (C, H, W) with sizes of at most {_MAX_INT:,}; got "
            f"{tuple(int(d) for d in dims)}"
        )
    return tuple(int(d) for d in dims)  # type: ignore[return-value]


def _plan(arch: Any, input_shape: Any, num_classes: Any) -> tuple[list[dict[str, Any]], tuple]:
    from cnnlab.shape import conv_output_size

    layers, preset = _layers(arch)
    shape = _input_shape(input_shape, preset)
    if num_classes is not None:
        num_classes = _int(num_classes, "num_classes", 1)
        last, token = layers[-1]
        if last["type"] == "fc":
            layers[-1] = ({**last, "out_features": num_classes}, token)

    steps: list[dict[str, Any]] = []
    for spec, token in layers:
        kind, in_shape = spec["type"], shape
        if kind in _NEEDS_MAPS and len(shape) != 3:
            raise ValueError(
                f"{token.where()} needs feature maps (C, H, W), but its input is already flat "
                f"with shape {shape}; put conv, pooling, bn and gap layers before the first "
                f"fc or flatten{token.caret()}"
            )
        if kind == "fc" and len(shape) == 3:
            flat = (math.prod(shape),)
            steps.append(
                {
                    "spec": {"type": "flatten"},
                    "token": "flatten",
                    "auto": True,
                    "input_shape": shape,
                    "output_shape": flat,
                }
            )
            shape = in_shape = flat
        try:
            if kind == "conv":
                (kh, kw), s, p = spec["kernel_size"], spec["stride"], spec["padding"]
                shape = (
                    spec["out_channels"],
                    conv_output_size(shape[1], kh, s, p),
                    conv_output_size(shape[2], kw, s, p),
                )
            elif kind in ("maxpool", "avgpool"):
                k, s, p = spec["kernel_size"], spec["stride"], spec["padding"]
                shape = (
                    shape[0],
                    conv_output_size(shape[1], k, s, p),
                    conv_output_size(shape[2], k, s, p),
                )
        except ValueError as exc:
            raise ValueError(
                f"{token.where()} would produce an empty output from input shape {shape}: "
                f"{exc}{token.caret()}"
            ) from None
        if kind == "gap":
            shape = (shape[0], 1, 1)
        elif kind == "flatten":
            shape = (math.prod(shape),)
        elif kind == "fc":
            shape = (spec["out_features"],)
        steps.append(
            {
                "spec": spec,
                "token": token.text,
                "auto": False,
                "input_shape": in_shape,
                "output_shape": shape,
            }
        )

    if num_classes is not None and shape != (num_classes,):
        raise ValueError(
            f"num_classes={num_classes}, but the architecture ends with output shape {shape}; "
            f"end it with an fc layer (its width is then set to num_classes)"
        )
    return steps, shape


def plan(
    arch: str | Sequence[dict[str, Any]],
    input_shape: Sequence[int] | None = None,
    num_classes: int | None = None,
) -> list[dict[str, Any]]:
    """The layers :func:`build` would make, with their input and output shapes.

    Args:
        arch, input_shape, num_classes: as for :func:`build`.

    Returns:
        One dict per layer: ``spec``, ``token`` (its text), ``auto`` (True for a flatten
        added before the first fc), ``input_shape`` and ``output_shape`` (per sample).

    Raises:
        ValueError: as for :func:`build`.
    """
    return _plan(arch, input_shape, num_classes)[0]


def _state_of(spec: dict[str, Any], in_shape: tuple[int, ...]):
    """One layer's parameters and buffers as ``(name, shape, kind)``, kind "f" or "i"."""
    kind = spec["type"]
    if kind == "conv":
        kh, kw = spec["kernel_size"]
        f = spec["out_channels"]
        return [("weight", (f, in_shape[0], kh, kw), "f"), ("bias", (f,), "f")], []
    if kind == "fc":
        n = spec["out_features"]
        return [("weight", (n, in_shape[0]), "f"), ("bias", (n,), "f")], []
    if kind == "bn":
        c = (in_shape[0],)
        params = [("weight", c, "f"), ("bias", c, "f")]
        buffers = [("running_mean", c, "f"), ("running_var", c, "f"),
                   ("num_batches_tracked", (), "i")]
        return params, buffers
    return [], []


def state_shapes(
    arch: str | Sequence[dict[str, Any]],
    input_shape: Sequence[int] | None = None,
    num_classes: int | None = None,
) -> dict[str, tuple[tuple[int, ...], str]]:
    """The ``state_dict`` :func:`build` would make, as shapes: nothing is allocated.

    Args:
        arch, input_shape, num_classes: as for :func:`build`.

    Returns:
        ``{name: (shape, kind)}`` in ``state_dict`` order (every parameter, then every
        buffer); ``kind`` is ``"f"`` for floating-point values, ``"i"`` for integers.

    Raises:
        ValueError: as for :func:`build`.

    Example:
        >>> state_shapes("conv3x3x8-relu-fc10", (1, 6, 6))["3.weight"]
        ((10, 128), 'f')
    """
    params, buffers = {}, {}
    for i, step in enumerate(plan(arch, input_shape, num_classes)):
        own, kept = _state_of(step["spec"], step["input_shape"])
        params.update({f"{i}.{name}": (shape, kind) for name, shape, kind in own})
        buffers.update({f"{i}.{name}": (shape, kind) for name, shape, kind in kept})
    return {**params, **buffers}


def footprint(
    arch: str | Sequence[dict[str, Any]],
    input_shape: Sequence[int] | None = None,
    num_classes: int | None = None,
) -> dict[str, int]:
    """How many numbers a model holds and computes, from shape arithmetic alone.

    Returns:
        ``{"params": learnable values, "state": every value in the state_dict (buffers
        too), "activations": the values one image produces on its way through (its own
        pixels and every layer's output)}``.

    Raises:
        ValueError: as for :func:`build`.

    Example:
        >>> footprint("conv3x3x8-relu-fc10", (1, 6, 6))
        {'params': 1370, 'state': 1370, 'activations': 430}
    """
    steps = plan(arch, input_shape, num_classes)
    params = state = 0
    for step in steps:
        own, kept = _state_of(step["spec"], step["input_shape"])
        params += sum(math.prod(shape) for _, shape, _ in own)
        state += sum(math.prod(shape) for _, shape, _ in own + kept)
    activations = math.prod(steps[0]["input_shape"]) + sum(
        math.prod(step["output_shape"]) for step in steps
    )
    return {"params": params, "state": state, "activations": activations}


def check_memory(
    arch: str | Sequence[dict[str, Any]],
    input_shape: Sequence[int] | None = None,
    num_classes: int | None = None,
    *,
    batch_size: int = 1,
    training: bool = False,
    limit: int | None = None,
) -> int:
    """Refuse a model that cannot fit in memory, before anything is allocated.

    The estimate counts float32 values: for inference the parameters plus ``batch_size``
    images' activations; for training four copies of the parameters (weights, gradients
    and two optimizer moments) plus the activations twice (kept for backward, and their
    gradients).

    Args:
        arch, input_shape, num_classes: as for :func:`build`.
        batch_size: images per step.
        training: estimate a training step instead of a forward pass.
        limit: bytes available; default :func:`cnnlab.budget.memory_limit`.

    Returns:
        The estimate in bytes.

    Raises:
        cnnlab.budget.TooLargeError: the estimate exceeds the limit (the message gives
            both figures and the parameter and activation counts).
        ValueError: as for :func:`build`.

    Example:
        >>> check_memory("conv3x3x8-relu-fc10", (1, 6, 6))
        7200
        >>> check_memory("conv3x3x100000-conv3x3x100000-fc10", (1, 28, 28))
        Traceback (most recent call last):
        ...
        cnnlab.budget.TooLargeError: the model 'conv3x3x100000-conv3x3x100000-fc10' ...
    """
    from cnnlab.budget import check_fits, format_bytes

    sizes = footprint(arch, input_shape, num_classes)
    steps = plan(arch, input_shape, num_classes)
    text = to_string([step["spec"] for step in steps if not step["auto"]])
    shape = "x".join(str(d) for d in steps[0]["input_shape"])
    params, acts = sizes["state"], sizes["activations"]
    if training:
        need = 4 * (4 * params + 2 * batch_size * acts)
        what = (f"training the model {text!r} on {shape} images at batch {batch_size} "
                f"({params:,} parameters, {format_bytes(4 * params)} each for weights, "
                f"gradients and two optimizer moments; {acts:,} activation values per image, "
                f"kept for backward with their gradients)")
        hint = "use fewer or narrower layers, a smaller batch size or smaller images"
    else:
        need = 4 * (params + batch_size * acts)
        what = (f"the model {text!r} for {shape} images ({params:,} parameters, "
                f"{acts:,} activation values per image)")
        hint = "use fewer or narrower layers, or smaller images"
    check_fits(what, need, hint, limit)
    return need


def _module(spec: dict[str, Any], in_shape: tuple[int, ...]):
    from cnnlab import nn

    kind = spec["type"]
    if kind == "conv":
        return nn.Conv2d(
            in_shape[0],
            spec["out_channels"],
            tuple(spec["kernel_size"]),
            stride=spec["stride"],
            padding=spec["padding"],
        )
    if kind == "maxpool":
        return nn.MaxPool2d(spec["kernel_size"], stride=spec["stride"], padding=spec["padding"])
    if kind == "avgpool":
        return nn.AvgPool2d(spec["kernel_size"], stride=spec["stride"], padding=spec["padding"])
    if kind == "gap":
        return nn.AdaptiveAvgPool2d(1)
    if kind == "bn":
        return nn.BatchNorm2d(in_shape[0])
    if kind == "leakyrelu":
        return nn.LeakyReLU(spec["negative_slope"])
    if kind == "dropout":
        return nn.Dropout(spec["p"])
    if kind == "fc":
        return nn.Linear(in_shape[0], spec["out_features"])
    simple = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "flatten": nn.Flatten}
    return simple[kind]()


def build(
    arch: str | Sequence[dict[str, Any]],
    input_shape: Sequence[int] | None = None,
    num_classes: int | None = None,
):
    """Build an ``nn.Sequential`` from an architecture string, preset name or spec list.

    Every layer's input channels / features come from walking the shapes from
    ``input_shape``; a ``Flatten`` is inserted before the first fc when the input is
    still (C, H, W). Weights are initialized from cnnlab's seeded generator.

    Args:
        arch: e.g. ``"conv3x3x16p1-relu-pool2-fc10"``, a key of :data:`PRESETS`, or the
            list :func:`parse` returns.
        input_shape: (C, H, W) of one sample; defaults to the preset's shape for a preset.
        num_classes: if given, the width of the final fc layer (replaced); if the
            architecture does not end with fc, its output must already have this size.

    Shape:
        conv and pooling: ``out = floor((in + 2*P - K) / S) + 1`` per spatial axis.

    Returns:
        The model, with ``model.spec = {"arch": canonical string, "input_shape": [C, H, W],
        "classes": None, "normalization": None}`` so :func:`cnnlab.io.save_model` can store it.

    Raises:
        ValueError: for a bad token or spec, a missing or bad input_shape, a layer that
            needs (C, H, W) after flattening, a layer whose output would be empty (naming
            the token and the shape it gets), or a num_classes mismatch.
        cnnlab.budget.TooLargeError: (a ValueError) the parameters and one image's
            activations would not fit in memory (see :func:`check_memory`); checked
            before anything is allocated.

    Example:
        >>> model = build("conv5x5x6p2-relu-pool2-fc10", input_shape=(1, 28, 28))
        >>> model.spec["arch"], model[4].in_features
        ('conv5x5x6p2-relu-pool2-fc10', 1176)
    """
    from cnnlab import nn

    steps, _ = _plan(arch, input_shape, num_classes)
    check_memory(arch, input_shape, num_classes)
    model = nn.Sequential(*[_module(step["spec"], step["input_shape"]) for step in steps])
    first_shape = steps[0]["input_shape"]
    model.spec = {
        "arch": to_string([step["spec"] for step in steps if not step["auto"]]),
        "input_shape": list(first_shape),
        "classes": None,
        "normalization": None,
    }
    return model
