"""Convolution and pooling written out number by number.

``explain_conv`` takes one input volume, a bank of filters and a bias, runs
``cnnlab.nn.functional.conv2d`` on them and, next to that result, rebuilds any output cell
the textbook way: the window of the zero-padded input, the products with the filter channel
by channel, their sums, plus the bias. ``explain_pool`` does the same for max and average
pooling. The objects print as text, turn into JSON-able dicts, and feed the HTML page in
:mod:`cnnlab.inspect.page`.

Example:
    >>> import numpy as np
    >>> from cnnlab.inspect.explain import explain_conv
    >>> x = np.ones((1, 3, 3), dtype=np.float32)
    >>> w = np.ones((1, 1, 2, 2), dtype=np.float32)
    >>> e = explain_conv(x, w, np.zeros(1, dtype=np.float32))
    >>> e.output.tolist()
    [[[4.0, 4.0], [4.0, 4.0]]]
    >>> e.cell(0, 0, 0)["channels"][0]["terms"]
    '1x1 + 1x1 + 1x1 + 1x1'
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnlab.inspect._format import grid, jsonable, num, shape_str, sum_text

__all__ = [
    "ConvExplanation",
    "PoolExplanation",
    "explain_conv",
    "explain_pool",
    "load_values",
    "output_size_formula",
    "random_values",
]


def output_size_formula(
    size: int, kernel: int, stride: int, padding: int, letter: str = "W"
) -> tuple[str, int, int]:
    """The output-size formula with the numbers put in.

    Args:
        size: input height or width (before padding).
        kernel: filter (or pooling window) size.
        stride: step between windows.
        padding: zeros added on each side.
        letter: the symbol for ``size`` in the formula (``"W"`` or ``"H"``).

    Shape:
        ``out = floor((size - kernel + 2*padding) / stride) + 1``

    Returns:
        ``(text, out, dropped)``: the formula written out, the output size and how many
        rows/columns at the end of the padded input no window reaches (0 when the
        division is exact).

    Raises:
        ValueError: if the window does not fit into the padded input.
    """
    from cnnlab.shape import conv_output_size, dropped

    span = size - kernel + 2 * padding
    if span < 0:
        raise ValueError(
            f"a window of {kernel} does not fit into an input of {size} padded by {padding} "
            f"on each side ({size + 2 * padding}); use a smaller size or more padding"
        )
    out = conv_output_size(size, kernel, stride, padding)
    left_over = dropped(size, kernel, stride, padding)
    text = (
        f"({letter} - F + 2P)/S + 1 = ({size} - {kernel} + 2*{padding})/{stride} + 1 = "
        f"{num(span / stride + 1)}"
    )
    if left_over:
        text += f", rounded down to {out}"
    return text, out, left_over


# --------------------------------------------------------------------------- values


def random_values(
    input_shape: tuple[int, int, int],
    filters: int,
    size: int,
    seed: int | None = 0,
    integers: bool = True,
) -> dict[str, np.ndarray]:
    """Readable random values for an explanation.

    Args:
        input_shape: ``(C, H, W)``.
        filters: number of filters ``F``.
        size: filter size ``K``.
        seed: seed of the generator (``None``: fresh entropy).
        integers: small whole numbers (input 0..2, weights -1..1, bias 0..1) when True,
            otherwise reals with two decimals.

    Returns:
        ``{"input": (C, H, W), "weight": (F, C, K, K), "bias": (F,)}``, all float32.
    """
    c, h, w = input_shape
    rng = np.random.default_rng(seed)
    if integers:
        x = rng.integers(0, 3, size=(c, h, w))
        wt = rng.integers(-1, 2, size=(filters, c, size, size))
        b = rng.integers(0, 2, size=filters)
    else:
        x = np.round(rng.uniform(0.0, 1.0, size=(c, h, w)), 2)
        wt = np.round(rng.normal(0.0, 0.5, size=(filters, c, size, size)), 2)
        b = np.round(rng.normal(0.0, 0.5, size=filters), 2)
    return {
        "input": x.astype(np.float32),
        "weight": wt.astype(np.float32),
        "bias": b.astype(np.float32),
    }


def load_values(path: str | Path) -> dict[str, np.ndarray]:
    """Read explanation values from a file.

    Args:
        path: ``.npy`` (one array: the input, ``(C, H, W)`` or ``(H, W)``), ``.npz`` or
            ``.json`` (keys ``input`` and optionally ``weight`` ``(F, C, K, K)`` and
            ``bias`` ``(F,)``).

    Returns:
        A dict with ``input`` (always 3-D) and whichever of ``weight``/``bias`` the file
        holds, as float32 arrays.

    Raises:
        ValueError: unknown file type, unknown keys, or no ``input``.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        data = {"input": np.load(path, allow_pickle=False)}
    elif suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    elif suffix == ".json":
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a JSON object with input/weight/bias")
    else:
        raise ValueError(f"{path}: expected a .npy, .npz or .json file, got {suffix or 'none'}")
    unknown = sorted(set(data) - {"input", "weight", "bias"})
    if unknown:
        raise ValueError(f"{path}: unknown keys {unknown}; expected input, weight, bias")
    if "input" not in data:
        raise ValueError(f"{path}: no 'input' array; it is the one value that must be given")
    out = {}
    for key, value in data.items():
        try:
            out[key] = np.asarray(value, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path}: '{key}' is not a numeric array ({exc})") from None
    if out["input"].ndim == 2:
        out["input"] = out["input"][None]
    return out


# --------------------------------------------------------------------------- convolution


def _terms(a: np.ndarray, b: np.ndarray) -> str:
    return " + ".join(f"{num(x)}x{num(y)}" for x, y in zip(a.ravel(), b.ravel(), strict=True))


class _SlidingWindow:
    """What convolution and pooling explanations share: the output-size formula and the
    output positions. Subclasses have ``input``, ``size``, ``stride``, ``padding`` and
    ``output``, and name the output's first axis in ``_first_axis``."""

    _first_axis = "filter"

    def formulas(self) -> list[dict]:
        """The output-size formula for height and width, with numbers put in."""
        _, h, w = self.input.shape
        rows = []
        for axis, letter, n in (("height", "H", h), ("width", "W", w)):
            text, out, dropped = output_size_formula(n, self.size, self.stride, self.padding,
                                                     letter)
            rows.append({"axis": axis, "text": text, "value": out, "dropped": dropped})
        return rows

    def check_position(self, first: int, row: int, col: int) -> None:
        """Raise ValueError unless ``(first, row, col)`` indexes the output."""
        n, oh, ow = self.output.shape
        if not (0 <= first < n and 0 <= row < oh and 0 <= col < ow):
            raise ValueError(
                f"output position {first},{row},{col} is outside the output {n}x{oh}x{ow}; "
                f"{self._first_axis} must be 0..{n - 1}, row 0..{oh - 1}, column 0..{ow - 1}"
            )

    def positions(self) -> list[tuple[int, int, int]]:
        """Every output position, in order."""
        n, oh, ow = self.output.shape
        return [(a, r, c) for a in range(n) for r in range(oh) for c in range(ow)]


@dataclass
class ConvExplanation(_SlidingWindow):
    """One convolution, with every output cell explainable.

    Attributes:
        input: ``(C, H, W)`` before padding.
        weight: ``(F, C, K, K)``.
        bias: ``(F,)``.
        stride: step ``S`` (same along height and width).
        padding: zeros ``P`` on each side.
        output: ``(F, OH, OW)`` as computed by ``cnnlab.nn.functional.conv2d``.
    """

    input: np.ndarray
    weight: np.ndarray
    bias: np.ndarray
    stride: int
    padding: int
    output: np.ndarray

    @property
    def size(self) -> int:
        return int(self.weight.shape[2])

    @property
    def padded(self) -> np.ndarray:
        """The input with ``padding`` zeros on every side, ``(C, H + 2P, W + 2P)``."""
        p = self.padding
        return np.pad(self.input, ((0, 0), (p, p), (p, p)))

    def cell(self, f: int, row: int, col: int) -> dict:
        """Rebuild ``output[f, row, col]`` term by term.

        Returns:
            A dict: ``filter``, ``row``, ``col``, ``top``/``left`` (window corner in the
            padded input), ``size``, ``channels`` (per input channel: ``window``,
            ``weights``, ``terms`` text, ``sum``), ``channel_sum``, ``bias``, ``value``
            (the sum plus bias) and ``conv2d`` (the value conv2d computed).
        """
        self.check_position(f, row, col)
        k, top, left = self.size, row * self.stride, col * self.stride
        window = self.padded[:, top:top + k, left:left + k]
        channels = []
        total = 0.0
        for c in range(window.shape[0]):
            products = window[c].astype(np.float64) * self.weight[f, c]
            s = float(np.float32(products.sum()))
            total += s
            channels.append({
                "channel": c,
                "window": jsonable(window[c]),
                "weights": jsonable(self.weight[f, c]),
                "terms": _terms(window[c], self.weight[f, c]),
                "sum": jsonable(np.float32(s)),
            })
        bias = float(self.bias[f])
        return {
            "filter": f, "row": row, "col": col, "top": top, "left": left, "size": k,
            "channels": channels,
            "channel_sum": jsonable(np.float32(total)),
            "bias": jsonable(np.float32(bias)),
            "value": jsonable(np.float32(total + bias)),
            "conv2d": jsonable(self.output[f, row, col]),
        }

    def to_dict(self, at: tuple[int, int, int] = (0, 0, 0), all_cells: bool = False) -> dict:
        """All numbers as JSON-able data (nested lists, ints where values are whole)."""
        c, h, w = self.input.shape
        d = {
            "kind": "conv",
            "config": {
                "channels": c, "height": h, "width": w, "filters": int(self.weight.shape[0]),
                "size": self.size, "stride": self.stride, "padding": self.padding,
            },
            "input": jsonable(self.input),
            "padded": jsonable(self.padded),
            "weight": jsonable(self.weight),
            "bias": jsonable(self.bias),
            "output": jsonable(self.output),
            "output_size": self.formulas(),
            "cell": self.cell(*at),
        }
        if all_cells:
            d["cells"] = [self.cell(*p) for p in self.positions()]
        return d

    def render(self, at: tuple[int, int, int] = (0, 0, 0), all_cells: bool = False) -> str:
        """The explanation as text: input, filters, formula, the cell(s), the output."""
        self.check_position(*at)
        c, h, w = self.input.shape
        nf, k, p = self.weight.shape[0], self.size, self.padding
        padded = (f"Input, zero-padded by {p} -> {shape_str(self.padded.shape)}" if p
                  else f"Input {shape_str(self.input.shape)} (no padding)")
        out = [
            f"Convolution: input {shape_str(self.input.shape)}, {nf} filter(s) of "
            f"{c}x{k}x{k}, stride {self.stride}, padding {p}",
            "",
            padded + (" ([ ] marks the window of the explained cell)" if not all_cells else ""),
        ]
        first = self.cell(*at)
        marks = None if all_cells else (slice(first["top"], first["top"] + k),
                                         slice(first["left"], first["left"] + k))
        for ch in range(c):
            out += [f" channel {ch}:", grid(self.padded[ch], "   ", marks)]
        out.append("")
        for f in range(nf):
            out.append(f"Filter {f} ({c}x{k}x{k}), bias {num(self.bias[f])}")
            for ch in range(c):
                out += [f" channel {ch}:", grid(self.weight[f, ch], "   ")]
        out += ["", "Output size", *_formula_lines(self.formulas())]
        out += [f"  output: {shape_str(self.output.shape)}", ""]
        cells = [self.cell(*q) for q in self.positions()] if all_cells else [first]
        for cell in cells:
            out += _render_conv_cell(cell)
        out.append("Output (conv2d)")
        for f in range(nf):
            out += [f" filter {f}:", grid(self.output[f], "   ")]
        return "\n".join(out)


def _formula_lines(formulas: list[dict]) -> list[str]:
    height, width = formulas
    if height["text"].replace("H", "W", 1) == width["text"]:
        rows = [("height and width", width)]
    else:
        rows = [("height", height), ("width", width)]
    lines = []
    for label, row in rows:
        lines.append(f"  {label}: {row['text']}")
        if row["dropped"]:
            what = "row(s) and column(s)" if len(rows) == 1 else (
                "row(s)" if row["axis"] == "height" else "column(s)")
            lines.append(f"    warning: the last {row['dropped']} {what} of the padded input "
                         f"fit no window and are silently dropped")
    return lines


def _render_conv_cell(cell: dict) -> list[str]:
    k = cell["size"]
    lines = [
        f"output[{cell['filter']}, {cell['row']}, {cell['col']}]: filter {cell['filter']} on "
        f"rows {cell['top']}..{cell['top'] + k - 1}, columns {cell['left']}..{cell['left'] + k - 1}"
        f" of the padded input",
    ]
    for ch in cell["channels"]:
        lines.append(f"  channel {ch['channel']}: {ch['terms']} = {num(ch['sum'])}")
    sums = sum_text([ch["sum"] for ch in cell["channels"]])
    lines.append(
        f"  sum over channels: {sums} = {num(cell['channel_sum'])}; "
        f"plus bias {num(cell['bias'])} = {num(cell['value'])}"
    )
    lines.append("")
    return lines


def _as_array(name: str, value, ndim: int) -> np.ndarray:
    a = np.asarray(value, dtype=np.float32)
    if a.ndim != ndim:
        raise ValueError(f"{name}: expected {ndim} dimensions, got shape {a.shape}")
    return a


def explain_conv(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    stride: int = 1,
    padding: int = 0,
) -> ConvExplanation:
    """Run conv2d on one volume and keep what is needed to explain every output cell.

    Args:
        x: input volume ``(C, H, W)``.
        weight: filters ``(F, C, K, K)`` (square).
        bias: ``(F,)``; zeros when None.
        stride: step ``S`` >= 1.
        padding: zeros ``P`` >= 0 on each side.

    Shape:
        output ``(F, OH, OW)`` with ``OH = floor((H - K + 2P)/S) + 1``, likewise ``OW``.

    Returns:
        A :class:`ConvExplanation`.

    Raises:
        ValueError: shapes that do not fit together, or a filter larger than the padded
            input.
    """
    from cnnlab.nn import functional as F
    from cnnlab.tensor import Tensor

    x = _as_array("input", x, 3)
    weight = _as_array("weight", weight, 4)
    nf, c, kh, kw = weight.shape
    if kh != kw:
        raise ValueError(f"weight: explain shows square filters, got {kh}x{kw}")
    if c != x.shape[0]:
        raise ValueError(
            f"weight has {c} channel(s) per filter but the input has {x.shape[0]}; "
            f"weight must be (F, {x.shape[0]}, K, K), got {weight.shape}"
        )
    bias = np.zeros(nf, dtype=np.float32) if bias is None else _as_array("bias", bias, 1)
    if bias.shape != (nf,):
        raise ValueError(f"bias: expected one value per filter ({nf},), got {bias.shape}")
    stride, padding = int(stride), int(padding)
    if stride < 1 or padding < 0:
        raise ValueError(f"expected stride >= 1 and padding >= 0, got {stride} and {padding}")
    for n, letter in ((x.shape[1], "H"), (x.shape[2], "W")):
        output_size_formula(n, kh, stride, padding, letter)  # raises if it does not fit
    out = F.conv2d(Tensor(x[None]), Tensor(weight), Tensor(bias), stride=stride,
                   padding=padding)
    return ConvExplanation(x, weight, bias, stride, padding, np.asarray(out.data)[0])


# --------------------------------------------------------------------------- pooling


@dataclass
class PoolExplanation(_SlidingWindow):
    """One pooling, with every output cell explainable.

    Attributes:
        input: ``(C, H, W)``.
        size: window ``K``; stride ``S``; padding ``P``; mode ``"max"`` or ``"avg"``.
        output: ``(C, OH, OW)`` as computed by ``max_pool2d``/``avg_pool2d``.
    """

    input: np.ndarray
    size: int
    stride: int
    padding: int
    mode: str
    output: np.ndarray
    _first_axis = "channel"

    @property
    def padded(self) -> np.ndarray:
        """Max pooling pads with -inf (never the maximum); average pooling with zeros,
        which count in the average (as PyTorch's default ``count_include_pad=True``)."""
        p = self.padding
        fill = -np.inf if self.mode == "max" else 0.0
        return np.pad(self.input, ((0, 0), (p, p), (p, p)), constant_values=fill)

    def cell(self, ch: int, row: int, col: int) -> dict:
        """Rebuild ``output[ch, row, col]``: the window and its max or mean."""
        self.check_position(ch, row, col)
        k, top, left = self.size, row * self.stride, col * self.stride
        window = self.padded[ch, top:top + k, left:left + k]
        values = [num(v) if np.isfinite(v) else "-inf" for v in window.ravel()]
        if self.mode == "max":
            value = np.float32(window.max())
            terms = f"max({', '.join(values)})"
        else:
            value = np.float32(window.astype(np.float64).sum() / window.size)
            terms = f"({sum_text(window.ravel())})/{window.size}"
        return {
            "channel": ch, "row": row, "col": col, "top": top, "left": left, "size": k,
            "window": jsonable(window), "terms": terms, "value": jsonable(value),
            "pool": jsonable(self.output[ch, row, col]),
        }

    def to_dict(self, at: tuple[int, int, int] = (0, 0, 0), all_cells: bool = False) -> dict:
        c, h, w = self.input.shape
        d = {
            "kind": "pool",
            "config": {"channels": c, "height": h, "width": w, "size": self.size,
                       "stride": self.stride, "padding": self.padding, "mode": self.mode},
            "input": jsonable(self.input),
            "padded": jsonable(self.padded),
            "output": jsonable(self.output),
            "output_size": self.formulas(),
            "cell": self.cell(*at),
        }
        if all_cells:
            d["cells"] = [self.cell(*p) for p in self.positions()]
        return d

    def render(self, at: tuple[int, int, int] = (0, 0, 0), all_cells: bool = False) -> str:
        self.check_position(*at)
        c = self.input.shape[0]
        k, p = self.size, self.padding
        name = "Max" if self.mode == "max" else "Average"
        fill = ("-inf, which never wins the maximum" if self.mode == "max"
                else "zeros, which count in the average")
        out = [
            f"{name} pooling: input {shape_str(self.input.shape)}, window {k}x{k}, "
            f"stride {self.stride}, padding {p}",
            "",
            f"Input, padded by {p} with {fill} -> {shape_str(self.padded.shape)}" if p
            else f"Input {shape_str(self.input.shape)} (no padding)",
        ]
        first = self.cell(*at)
        for ch in range(c):
            marks = None
            if not all_cells and ch == first["channel"]:
                marks = (slice(first["top"], first["top"] + k),
                         slice(first["left"], first["left"] + k))
            out += [f" channel {ch}:", grid(self.padded[ch], "   ", marks)]
        out += ["", "Output size", *_formula_lines(self.formulas())]
        out += [f"  output: {shape_str(self.output.shape)} (pooling keeps the channels)", ""]
        cells = [self.cell(*q) for q in self.positions()] if all_cells else [first]
        for cell in cells:
            out += [
                f"output[{cell['channel']}, {cell['row']}, {cell['col']}]: rows "
                f"{cell['top']}..{cell['top'] + k - 1}, columns {cell['left']}.."
                f"{cell['left'] + k - 1} of channel {cell['channel']}",
                f"  {cell['terms']} = {num(cell['value'])}",
                "",
            ]
        out.append(f"Output ({self.mode}_pool2d)")
        for ch in range(c):
            out += [f" channel {ch}:", grid(self.output[ch], "   ")]
        return "\n".join(out)


def explain_pool(
    x: np.ndarray,
    size: int,
    stride: int | None = None,
    padding: int = 0,
    mode: str = "max",
) -> PoolExplanation:
    """Run max or average pooling on one volume and keep what explains every cell.

    Args:
        x: input ``(C, H, W)``.
        size: window ``K``.
        stride: step; defaults to ``size`` (as in PyTorch).
        padding: padding on each side, at most ``size // 2``.
        mode: ``"max"`` or ``"avg"``.

    Shape:
        output ``(C, OH, OW)``, ``OH = floor((H - K + 2P)/S) + 1``.

    Returns:
        A :class:`PoolExplanation`.

    Raises:
        ValueError: bad mode, padding larger than half the window, or a window larger
            than the padded input.
    """
    from cnnlab.nn import functional as F
    from cnnlab.tensor import Tensor

    x = _as_array("input", x, 3)
    if mode not in ("max", "avg"):
        raise ValueError(f"mode: expected 'max' or 'avg', got {mode!r}")
    size = int(size)
    stride = size if stride is None else int(stride)
    padding = int(padding)
    if size < 1 or stride < 1 or padding < 0:
        raise ValueError(
            f"expected size >= 1, stride >= 1, padding >= 0; got {size}, {stride}, {padding}"
        )
    if padding > size // 2:
        raise ValueError(
            f"padding {padding} is more than half the window {size}; a window could then "
            f"hold only padding. Use padding <= {size // 2}"
        )
    for n, letter in ((x.shape[1], "H"), (x.shape[2], "W")):
        output_size_formula(n, size, stride, padding, letter)
    pool = F.max_pool2d if mode == "max" else F.avg_pool2d
    out = pool(Tensor(x[None]), size, stride=stride, padding=padding)
    return PoolExplanation(x, size, stride, padding, mode, np.asarray(out.data)[0])
