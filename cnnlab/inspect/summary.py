"""A per-layer table of a network: shapes, parameters, multiply-adds, receptive fields.

The shapes come from running the model once on a zero input with a forward hook on every
leaf layer, so any model that runs can be summarized; the counts and receptive fields come
from each layer's own settings. The input is per sample (``C, H, W``), without batch.

Example:
    >>> from cnnlab import nn
    >>> from cnnlab.inspect.summary import summary
    >>> s = summary(nn.Sequential(nn.Conv2d(3, 6, 5), nn.ReLU()), (3, 32, 32))
    >>> s.total_params
    456
    >>> s.rows[0]["output_shape"]
    [6, 28, 28]
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Sequence

import numpy as np

from cnnlab.inspect._format import parse_shape, shape_str, table
from cnnlab.inspect.explain import output_size_formula

__all__ = ["Summary", "summary"]

_CONV = "Conv2d"
_POOLS = ("MaxPool2d", "AvgPool2d")
_GLOBAL = ("Linear", "Flatten", "AdaptiveAvgPool2d", "AdaptiveMaxPool2d")


def _pair(v) -> tuple[int, int]:
    if isinstance(v, int | np.integer):
        return int(v), int(v)
    a, b = v
    return int(a), int(b)


def _count(n: int) -> str:
    return f"{n:,}"


class Summary:
    """What :func:`summary` found.

    Attributes:
        input_shape: the per-sample input shape.
        rows: one dict per layer call (see :meth:`to_dict` for the keys).
        total_params: parameters of the model, each shared parameter counted once.
        trainable_params: those with ``requires_grad``.
        total_mult_adds: multiply-adds of one forward pass over one sample.
        warnings: non-whole output-size divisions that silently drop input rows/columns.

    ``str(summary)`` is the table; :meth:`to_dict` the same as JSON-able data.
    """

    def __init__(self, input_shape, rows, total_params, trainable_params, warnings):
        self.input_shape = list(input_shape)
        self.rows = rows
        self.total_params = total_params
        self.trainable_params = trainable_params
        self.total_mult_adds = sum(r["mult_adds"] for r in rows)
        self.warnings = warnings

    @property
    def output_shape(self) -> list[int]:
        return self.rows[-1]["output_shape"] if self.rows else self.input_shape

    def to_dict(self) -> dict:
        """The summary as plain data.

        Returns:
            ``{"input_shape", "output_shape", "layers": [...], "totals": {...},
            "warnings": [...]}``. Each layer has ``index``, ``name``, ``type``,
            ``description``, ``input_shape``, ``output_shape``, ``weights``, ``biases``,
            ``params``, ``mult_adds``, ``receptive_field`` (``[h, w]`` or ``"all"``),
            ``jump`` (``[h, w]`` or null) and, for conv layers, ``dense`` (what a
            fully-connected layer between the same sizes would need).
        """
        return {
            "input_shape": self.input_shape,
            "output_shape": self.output_shape,
            "layers": [dict(r) for r in self.rows],
            "totals": {
                "params": self.total_params,
                "trainable_params": self.trainable_params,
                "non_trainable_params": self.total_params - self.trainable_params,
                "mult_adds": self.total_mult_adds,
                "param_bytes_float32": 4 * self.total_params,
            },
            "warnings": list(self.warnings),
        }

    def __str__(self) -> str:
        headers = ["layer", "type", "output", "weights", "biases", "params", "mult-adds",
                   "RF", "jump"]
        right = [False, False, False, True, True, True, True, True, True]
        body = [["input", "", shape_str(self.input_shape), "", "", "", "", "1", "1"]]
        for r in self.rows:
            body.append([
                r["name"], r["description"], shape_str(r["output_shape"]),
                _count(r["weights"]) if r["weights"] else "",
                _count(r["biases"]) if r["biases"] else "",
                _count(r["params"]), _count(r["mult_adds"]),
                _hw(r["receptive_field"]), _hw(r["jump"]),
            ])
        out = [table(headers, body, right)]
        rule = "-" * max(len(line) for line in out[0].splitlines())
        out += [
            rule,
            f"parameters: {_count(self.total_params)} ({_count(self.trainable_params)} "
            f"trainable), {_bytes(4 * self.total_params)} as float32",
            f"multiply-adds per sample: {_count(self.total_mult_adds)}",
            f"output: {shape_str(self.output_shape)}",
            "RF: receptive field, the input pixels one output value sees (height x width when "
            "they differ);",
            "jump: input pixels between neighbouring outputs (the product of the strides so far).",
        ]
        convs = [r for r in self.rows if r.get("dense")]
        if convs:
            out += ["", "Parameter sharing: each conv layer against a fully-connected layer "
                        "between the same input and output sizes"]
            rows = []
            for r in convs:
                d = r["dense"]
                ratio = d["params"] / r["params"] if r["params"] else float("inf")
                rows.append([
                    r["name"], _count(r["params"]),
                    f"{_count(d['in_features'])} ({shape_str(r['input_shape'])})",
                    f"{_count(d['out_features'])} ({shape_str(r['output_shape'])})",
                    _count(d["params"]), f"{ratio:,.0f}x",
                ])
            out.append(table(["layer", "conv params", "dense in", "dense out",
                              "dense params (in x out + out)", "ratio"], rows,
                             [False, True, True, True, True, True]))
        if self.warnings:
            out.append("")
            out += [textwrap.fill(f"warning: {w}", 100, subsequent_indent="  ")
                    for w in self.warnings]
        return "\n".join(out)

    def __repr__(self) -> str:
        return str(self)


def _bytes(n: int) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} bytes"


def _hw(v) -> str:
    if v is None:
        return "-"
    if v == "all":
        return "all"
    h, w = v
    return str(h) if h == w else f"{h}x{w}"


def _describe(module) -> str:
    kind = type(module).__name__
    if kind == _CONV:
        kh, kw = _pair(module.kernel_size)
        text = f"Conv2d {module.out_channels}x{module.in_channels // module.groups}x{kh}x{kw}"
        extras = []
        for attr, default in (("stride", 1), ("padding", 0), ("dilation", 1)):
            v = _pair(getattr(module, attr, default))
            if v != (default, default):
                extras.append(f"{attr} {v[0] if v[0] == v[1] else shape_str(v)}")
        if getattr(module, "groups", 1) != 1:
            extras.append(f"groups {module.groups}")
        return text + (", " + ", ".join(extras) if extras else "")
    if kind in _POOLS:
        kh, kw = _pair(module.kernel_size)
        s = _pair(module.stride if module.stride is not None else module.kernel_size)
        p = _pair(getattr(module, "padding", 0))
        text = f"{kind} {kh}x{kw}"
        if s != (kh, kw):
            text += f", stride {s[0] if s[0] == s[1] else shape_str(s)}"
        if p != (0, 0):
            text += f", padding {p[0] if p[0] == p[1] else shape_str(p)}"
        return text
    if kind == "Linear":
        return f"Linear {module.in_features}->{module.out_features}"
    if kind == "Dropout":
        return f"Dropout p={module.p:g}"
    return kind


def _own_params(module) -> tuple[int, int, int]:
    weights = biases = total = 0
    for name, p in module.named_parameters():
        n = int(np.prod(p.shape))
        total += n
        if name.rsplit(".", 1)[-1] == "bias":
            biases += n
        else:
            weights += n
    return weights, biases, total


class _Tracker:
    """Receptive field (``rf``) and jump per axis along the chain of layers.

    For a layer with window ``k``, stride ``s`` and dilation ``d``:
    ``rf_out = rf_in + d*(k - 1) * jump_in`` and ``jump_out = jump_in * s``.
    Once a layer mixes every position (Linear, Flatten, global pooling) the field is
    the whole input.
    """

    def __init__(self):
        self.rf: list[int] | str = [1, 1]
        self.jump: list[int] | None = [1, 1]

    def update(self, module) -> None:
        kind = type(module).__name__
        if self.rf == "all":
            return
        if kind == _CONV or kind in _POOLS:
            k = _pair(module.kernel_size)
            stride = module.stride if module.stride is not None else module.kernel_size
            s = _pair(stride)
            d = _pair(getattr(module, "dilation", 1))
            self.rf = [self.rf[i] + d[i] * (k[i] - 1) * self.jump[i] for i in range(2)]
            self.jump = [self.jump[i] * s[i] for i in range(2)]
        elif kind in _GLOBAL:
            self.rf, self.jump = "all", None


def _dropped_rows(module, name: str, in_shape: Sequence[int],
                  out_shape: Sequence[int]) -> list[str]:
    """Warnings for windows that do not tile the padded input exactly."""
    if len(in_shape) != 3:
        return []
    kind = type(module).__name__
    k = _pair(module.kernel_size)
    s = _pair(module.stride if module.stride is not None else module.kernel_size)
    p = _pair(getattr(module, "padding", 0))
    d = _pair(getattr(module, "dilation", 1))
    found = []
    for i, letter in enumerate("HW"):
        keff = d[i] * (k[i] - 1) + 1
        text, _, dropped = output_size_formula(in_shape[1 + i], keff, s[i], p[i], letter)
        if dropped:
            found.append((i, text.split(", rounded")[0], dropped))
    if len(found) == 2 and found[0][1].replace("H", "W", 1) == found[1][1]:
        found = [(2, found[1][1], found[1][2])]  # the same numbers on both axes: say it once
    axis = ["height", "width", "height and width"]
    what = ["row(s)", "column(s)", "row(s) and column(s)"]
    return [
        f"layer {name} ({kind}, input {shape_str(in_shape)}), {axis[i]}: {text} is not a whole "
        f"number, so the output has {out_shape[1 + min(i, 1)]} and the last {dropped} "
        f"{what[i]} of the padded input fit no window and are silently dropped. Change the "
        f"padding, stride or input size to make it whole."
        for i, text, dropped in found
    ]


def summary(
    model,
    input_shape: Sequence[int] | str | None = None,
    *,
    print_fn: Callable[[str], object] | None = None,
) -> Summary:
    """Summarize a model layer by layer.

    Args:
        model: a ``cnnlab.nn.Module``.
        input_shape: one sample's shape, ``(C, H, W)`` or ``"CxHxW"`` (``(features,)`` for
            a network of Linear layers). None: the model's ``spec["input_shape"]`` (models
            loaded with ``cnnlab.io.load_model`` have one).
        print_fn: when given, called with each line of the table (``print_fn=print``).

    Returns:
        A :class:`Summary`; ``str()`` of it is the table.

    Raises:
        ValueError: no input shape, or the input does not fit the model (the message
            names the layer where it stopped).
    """
    from cnnlab import no_grad
    from cnnlab.tensor import Tensor

    if input_shape is None:
        spec = getattr(model, "spec", None) or {}
        input_shape = spec.get("input_shape")
        if input_shape is None:
            raise ValueError(
                "summary needs the input shape of one sample, e.g. (3, 32, 32); this model "
                "does not record one"
            )
    if isinstance(input_shape, str):
        input_shape = parse_shape(input_shape)
    input_shape = [int(s) for s in input_shape]

    named = list(model.named_modules())
    leaves = [(n, m) for n, m in named if not list(m.children())]
    calls: list[tuple[str, object, tuple, tuple]] = []

    def hook_for(name):
        def hook(module, inputs, output):
            calls.append((name, module, tuple(inputs[0].shape), tuple(output.shape)))
        return hook

    modes = [(m, m.training) for _, m in named]
    handles = [m.register_forward_hook(hook_for(n or type(m).__name__)) for n, m in leaves]
    try:
        model.eval()  # batch norm must not update its running statistics here
        x = Tensor(np.zeros((1, *input_shape), dtype=np.float32))
        with no_grad():
            try:
                model(x)
            except Exception as exc:
                where = (f"after layer {calls[-1][0]} (output {shape_str(calls[-1][3][1:])})"
                         if calls else "at the first layer")
                raise ValueError(
                    f"an input of {shape_str(input_shape)} does not fit this model; it stopped "
                    f"{where}: {exc}"
                ) from exc
    finally:
        for h in handles:
            h.remove()
        for m, mode in modes:
            m.training = mode

    rows, warnings = [], []
    rf = _Tracker()
    for i, (name, module, in_shape, out_shape) in enumerate(calls):
        kind = type(module).__name__
        in_s, out_s = list(in_shape[1:]), list(out_shape[1:])
        weights, biases, params = _own_params(module)
        mult_adds = 0
        dense = None
        if kind == _CONV:
            kh, kw = _pair(module.kernel_size)
            per_output = (module.in_channels // module.groups) * kh * kw
            mult_adds = int(np.prod(out_s)) * per_output
            n_in, n_out = int(np.prod(in_s)), int(np.prod(out_s))
            bias_n = n_out if module.bias is not None else 0
            dense = {"in_features": n_in, "out_features": n_out, "weights": n_in * n_out,
                     "biases": bias_n, "params": n_in * n_out + bias_n}
        elif kind == "Linear":
            mult_adds = module.in_features * module.out_features
        if kind == _CONV or kind in _POOLS:
            warnings += _dropped_rows(module, name, in_s, out_s)
        rf.update(module)
        rows.append({
            "index": i, "name": name, "type": kind, "description": _describe(module),
            "input_shape": in_s, "output_shape": out_s,
            "weights": weights, "biases": biases, "params": params, "mult_adds": mult_adds,
            "receptive_field": rf.rf if rf.rf == "all" else list(rf.rf),
            "jump": None if rf.jump is None else list(rf.jump),
            "dense": dense,
        })

    seen, total, trainable = set(), 0, 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        n = int(np.prod(p.shape))
        total += n
        trainable += n if getattr(p, "requires_grad", True) else 0

    result = Summary(input_shape, rows, total, trainable, warnings)
    if print_fn is not None:
        for line in str(result).splitlines():
            print_fn(line)
    return result
