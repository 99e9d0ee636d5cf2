"""A per-layer table of a network: shapes, parameters, multiply-adds, receptive fields.

For an architecture string, a preset, or a model built from one (``cnnlab.arch.build``,
``cnnlab.io.load_model``), everything comes from shape arithmetic (:func:`cnnlab.arch.plan`):
nothing is allocated, so a model too large to build can still be summarized, with a
warning that says how much memory it would need. Any other model is run once on a zero
input with a forward hook on every leaf layer, after checking that the input is of a
sane size. The input is per sample (``C, H, W``), without batch.

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
        fused: the runs of layers that ``nn.fuse`` (used by training, evaluation and
            prediction) runs as one fused layer: ``{"layers": [names], "as": type name}``.

    ``str(summary)`` is the table; :meth:`to_dict` the same as JSON-able data.
    """

    def __init__(self, input_shape, rows, total_params, trainable_params, warnings,
                 fused=()):
        self.fused = list(fused)
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
            "fused": [dict(f) for f in self.fused],
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
        if self.fused:
            runs = "; ".join(f"{f['layers'][0]}-{f['layers'][-1]} as {f['as']}"
                             for f in self.fused)
            out.append(textwrap.fill(f"fused (nn.fuse; the same values and gradients, run by "
                                     f"train, evaluate and predict): layers {runs}", 100,
                                     subsequent_indent="  "))
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


class _Layer:
    """What the table needs to know of one layer call, from a module or from a plan step."""

    def __init__(self, name: str, kind: str, in_shape, out_shape, **settings):
        self.name, self.kind = name, kind
        self.in_shape, self.out_shape = list(in_shape), list(out_shape)
        self.kernel_size = settings.get("kernel_size")
        self.stride = settings.get("stride")
        self.padding = settings.get("padding", 0)
        self.dilation = settings.get("dilation", 1)
        self.groups = settings.get("groups", 1)
        self.in_channels = settings.get("in_channels")
        self.out_channels = settings.get("out_channels")
        self.in_features = settings.get("in_features")
        self.out_features = settings.get("out_features")
        self.has_bias = settings.get("has_bias", False)
        self.p = settings.get("p")
        self.weights = settings.get("weights", 0)
        self.biases = settings.get("biases", 0)
        self.params = self.weights + self.biases


def _settings(layer: _Layer) -> tuple:
    """What makes two layers compute the same shapes and counts."""
    return (layer.kind, _pair(layer.kernel_size) if layer.kernel_size is not None else None,
            _pair(layer.stride) if layer.stride is not None else None, _pair(layer.padding),
            _pair(layer.dilation), layer.groups, layer.in_channels, layer.out_channels,
            layer.in_features, layer.out_features, layer.p, layer.weights, layer.biases)


def _from_module(name: str, module, in_shape, out_shape) -> _Layer:
    kind = type(module).__name__
    weights, biases, _ = _own_params(module)
    settings = {"weights": weights, "biases": biases}
    for attr in ("kernel_size", "stride", "padding", "dilation", "groups", "in_channels",
                 "out_channels", "in_features", "out_features", "p"):
        if hasattr(module, attr):
            settings[attr] = getattr(module, attr)
    settings["has_bias"] = getattr(module, "bias", None) is not None
    return _Layer(name, kind, in_shape, out_shape, **settings)


_KINDS = {"conv": "Conv2d", "maxpool": "MaxPool2d", "avgpool": "AvgPool2d", "gap":
          "AdaptiveAvgPool2d", "relu": "ReLU", "leakyrelu": "LeakyReLU", "sigmoid": "Sigmoid",
          "tanh": "Tanh", "bn": "BatchNorm2d", "dropout": "Dropout", "flatten": "Flatten",
          "fc": "Linear"}


def _from_step(index: int, step: dict) -> _Layer:
    """The layer :func:`cnnlab.arch.build` makes for a plan step, without making it."""
    spec, in_shape = step["spec"], step["input_shape"]
    kind = spec["type"]
    settings: dict = {}
    if kind == "conv":
        kh, kw = spec["kernel_size"]
        settings = {"kernel_size": (kh, kw), "stride": spec["stride"],
                    "padding": spec["padding"], "in_channels": in_shape[0],
                    "out_channels": spec["out_channels"], "has_bias": True,
                    "weights": spec["out_channels"] * in_shape[0] * kh * kw,
                    "biases": spec["out_channels"]}
    elif kind in ("maxpool", "avgpool"):
        settings = {"kernel_size": spec["kernel_size"], "stride": spec["stride"],
                    "padding": spec["padding"]}
    elif kind == "fc":
        settings = {"in_features": in_shape[0], "out_features": spec["out_features"],
                    "has_bias": True, "weights": in_shape[0] * spec["out_features"],
                    "biases": spec["out_features"]}
    elif kind == "bn":
        settings = {"weights": in_shape[0], "biases": in_shape[0], "has_bias": True}
    elif kind == "dropout":
        settings = {"p": spec["p"]}
    return _Layer(str(index), _KINDS[kind], in_shape, step["output_shape"], **settings)


def _describe(layer: _Layer) -> str:
    kind = layer.kind
    if kind == _CONV:
        kh, kw = _pair(layer.kernel_size)
        text = f"Conv2d {layer.out_channels}x{layer.in_channels // layer.groups}x{kh}x{kw}"
        extras = []
        for attr, default in (("stride", 1), ("padding", 0), ("dilation", 1)):
            v = _pair(getattr(layer, attr))
            if v != (default, default):
                extras.append(f"{attr} {v[0] if v[0] == v[1] else shape_str(v)}")
        if layer.groups != 1:
            extras.append(f"groups {layer.groups}")
        return text + (", " + ", ".join(extras) if extras else "")
    if kind in _POOLS:
        kh, kw = _pair(layer.kernel_size)
        s = _pair(layer.stride if layer.stride is not None else layer.kernel_size)
        p = _pair(layer.padding)
        text = f"{kind} {kh}x{kw}"
        if s != (kh, kw):
            text += f", stride {s[0] if s[0] == s[1] else shape_str(s)}"
        if p != (0, 0):
            text += f", padding {p[0] if p[0] == p[1] else shape_str(p)}"
        return text
    if kind == "Linear":
        return f"Linear {layer.in_features}->{layer.out_features}"
    if kind == "Dropout":
        return f"Dropout p={layer.p:g}"
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

    def update(self, layer: _Layer) -> None:
        kind = layer.kind
        if self.rf == "all":
            return
        if kind == _CONV or kind in _POOLS:
            k = _pair(layer.kernel_size)
            stride = layer.stride if layer.stride is not None else layer.kernel_size
            s = _pair(stride)
            d = _pair(layer.dilation)
            self.rf = [self.rf[i] + d[i] * (k[i] - 1) * self.jump[i] for i in range(2)]
            self.jump = [self.jump[i] * s[i] for i in range(2)]
        elif kind in _GLOBAL:
            self.rf, self.jump = "all", None


def _dropped_rows(layer: _Layer) -> list[str]:
    """Warnings for windows that do not tile the padded input exactly."""
    in_shape, out_shape, name = layer.in_shape, layer.out_shape, layer.name
    if len(in_shape) != 3:
        return []
    kind = layer.kind
    k = _pair(layer.kernel_size)
    s = _pair(layer.stride if layer.stride is not None else layer.kernel_size)
    p = _pair(layer.padding)
    d = _pair(layer.dilation)
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


def _row(index: int, layer: _Layer, rf: _Tracker) -> tuple[dict, list[str]]:
    in_s, out_s = layer.in_shape, layer.out_shape
    mult_adds, dense, warnings = 0, None, []
    if layer.kind == _CONV:
        kh, kw = _pair(layer.kernel_size)
        per_output = (layer.in_channels // layer.groups) * kh * kw
        mult_adds = int(np.prod(out_s)) * per_output
        n_in, n_out = int(np.prod(in_s)), int(np.prod(out_s))
        bias_n = n_out if layer.has_bias else 0
        dense = {"in_features": n_in, "out_features": n_out, "weights": n_in * n_out,
                 "biases": bias_n, "params": n_in * n_out + bias_n}
    elif layer.kind == "Linear":
        mult_adds = layer.in_features * layer.out_features
    if layer.kind == _CONV or layer.kind in _POOLS:
        warnings = _dropped_rows(layer)
    rf.update(layer)
    row = {
        "index": index, "name": layer.name, "type": layer.kind,
        "description": _describe(layer), "input_shape": in_s, "output_shape": out_s,
        "weights": layer.weights, "biases": layer.biases, "params": layer.params,
        "mult_adds": mult_adds,
        "receptive_field": rf.rf if rf.rf == "all" else list(rf.rf),
        "jump": None if rf.jump is None else list(rf.jump),
        "dense": dense,
    }
    return row, warnings


def _planned(model, input_shape) -> tuple[list[_Layer], list[int]] | None:
    """The layers of a model described by an architecture, from shape arithmetic: for a
    string or preset, or for a module whose spec names an architecture it still matches."""
    from cnnlab import arch

    if isinstance(model, str):
        try:
            steps = arch.plan(model, input_shape)
        except ValueError as exc:
            raise ValueError(f"summary: {exc}") from None
        return [_from_step(i, st) for i, st in enumerate(steps)], list(steps[0]["input_shape"])
    spec = getattr(model, "spec", None) or {}
    text = spec.get("arch")
    if not isinstance(text, str) or not hasattr(model, "state_dict"):
        return None
    shape = input_shape if input_shape is not None else spec.get("input_shape")
    try:
        steps = arch.plan(text, shape)
        saved = arch.state_shapes(text, spec.get("input_shape"))
    except ValueError:
        return None
    children = list(model.children())
    built = arch.plan(text, spec.get("input_shape"))
    if len(children) != len(built) or any(
        _settings(_from_module("", m, [], [])) != _settings(_from_step(i, st))
        for i, (m, st) in enumerate(zip(children, built, strict=True))
    ):
        return None  # changed since it was built: run it instead
    if arch.state_shapes(text, shape) != saved:
        raise ValueError(
            f"an input of {shape_str(shape)} does not fit this model: it was built for "
            f"{shape_str(spec['input_shape'])}, and its layers' weights fix the input size "
            f"(e.g. the first fc layer's input features)"
        )
    return [_from_step(i, st) for i, st in enumerate(steps)], list(steps[0]["input_shape"])


def _memory_warnings(model, input_shape) -> list[str]:
    """Say so when the summarized architecture would not fit in this machine's memory."""
    from cnnlab import arch
    from cnnlab.budget import TooLargeError

    text = model if isinstance(model, str) else model.spec["arch"]
    try:
        arch.check_memory(text, input_shape)
    except TooLargeError as exc:
        return [f"{exc}. It can be summarized, but not built or run here."]
    return []


def _fused_runs(model, layers: list[_Layer], planned: bool) -> list[dict]:
    """The runs of layers that ``nn.fuse`` fuses, by the rows' names."""
    from cnnlab import nn
    from cnnlab.nn.fused import fusion_plan

    if planned:  # one flat Sequential, named 0, 1, ...
        kinds = [layer.kind for layer in layers]
        return [{"layers": [layers[i].name for i in range(a, a + n)], "as": name}
                for a, n, name in fusion_plan(kinds)]
    fused = dict(nn.fuse(model).named_modules())
    names = [layer.name for layer in layers]
    runs = []
    for module_name, module in fused.items():
        kind = type(module).__name__
        length = {"ConvReLUMaxPool2d": 3, "ConvReLU2d": 2, "ReLUMaxPool2d": 2}.get(kind)
        if length and module_name in names:
            i = names.index(module_name)
            runs.append({"layers": names[i:i + length], "as": kind})
    return runs


def _check_input_size(input_shape: Sequence[int]) -> None:
    """A model without an architecture string is run on one zero image: refuse an input that
    is not a sane size for that (its layers' activations are many times the input)."""
    from cnnlab.budget import check_fits, memory_limit

    check_fits(f"summary: one zero image of {shape_str(input_shape)} (and the activations "
               "of every layer for it)", 4 * int(np.prod(input_shape)) * 64,
               "give a smaller input shape", limit=memory_limit())


def _traced(model, input_shape) -> list[_Layer]:
    """Run the model once on a zero image; one _Layer per leaf-module call."""
    from cnnlab import no_grad
    from cnnlab.tensor import Tensor

    named = list(model.named_modules())
    leaves = [(n, m) for n, m in named if not list(m.children())]
    calls: list[tuple[str, object, tuple, tuple]] = []

    def hook_for(name):
        def hook(module, inputs, output):
            calls.append((name, module, tuple(inputs[0].shape), tuple(output.shape)))
        return hook

    _check_input_size(input_shape)
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
    return [_from_module(name, module, i[1:], o[1:]) for name, module, i, o in calls]


def summary(
    model,
    input_shape: Sequence[int] | str | None = None,
    *,
    print_fn: Callable[[str], object] | None = None,
) -> Summary:
    """Summarize a model layer by layer.

    Args:
        model: an architecture string or preset name, or a ``cnnlab.nn.Module``.
        input_shape: one sample's shape, ``(C, H, W)`` or ``"CxHxW"`` (``(features,)`` for
            a network of Linear layers). None: a preset's own, or the model's
            ``spec["input_shape"]`` (models built by ``cnnlab.arch.build`` or loaded with
            ``cnnlab.io.load_model`` have one).
        print_fn: when given, called with each line of the table (``print_fn=print``).

    Returns:
        A :class:`Summary`; ``str()`` of it is the table.

    Raises:
        ValueError: no input shape, or the input does not fit the model (the message
            names the layer where it stopped).
        cnnlab.budget.TooLargeError: a model without an architecture string, whose input
            is too large to run even one zero image through.

    Example:
        >>> s = summary("conv3x3x100000-conv3x3x100000-fc10", (1, 28, 28))  # nothing built
        >>> f"{s.total_params:,}", s.rows[1]["output_shape"]
        ('90,577,100,010', [100000, 24, 24])
        >>> print(s.warnings[0][:58])
        the model 'conv3x3x100000-conv3x3x100000-fc10' for 1x28x28
    """
    if isinstance(input_shape, str):
        input_shape = parse_shape(input_shape)
    if input_shape is not None:
        input_shape = [int(s) for s in input_shape]
    planned = _planned(model, input_shape)
    if planned is not None:
        layers, input_shape = planned
        warnings = _memory_warnings(model, input_shape)
    else:
        if input_shape is None:
            spec = getattr(model, "spec", None) or {}
            input_shape = spec.get("input_shape")
            if input_shape is None:
                raise ValueError(
                    "summary needs the input shape of one sample, e.g. (3, 32, 32); this model "
                    "does not record one"
                )
            input_shape = [int(s) for s in input_shape]
        layers, warnings = _traced(model, input_shape), []

    rows, dropped = [], []
    rf = _Tracker()
    for i, layer in enumerate(layers):
        row, found = _row(i, layer, rf)
        rows.append(row)
        dropped += found

    if planned is not None:
        total = trainable = sum(layer.params for layer in layers)
    else:
        seen, total, trainable = set(), 0, 0
        for p in model.parameters():
            if id(p) in seen:
                continue
            seen.add(id(p))
            n = int(np.prod(p.shape))
            total += n
            trainable += n if getattr(p, "requires_grad", True) else 0

    result = Summary(input_shape, rows, total, trainable, dropped + warnings,
                     _fused_runs(model, layers, planned is not None))
    if print_fn is not None:
        for line in str(result).splitlines():
            print_fn(line)
    return result
