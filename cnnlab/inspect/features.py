"""Activations, feature maps and filters: what a trained network does with one image.

:func:`capture_activations` records layer outputs with forward hooks (the model is not
changed). :func:`save_inspection` writes PNGs: the input, one picture per conv layer with
a tile per feature map, the first layer's filters, and the predicted classes. Drawing uses
Pillow (``pip install 'cnnlab[cli]'``), imported only here and only when drawing.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cnnlab.inspect._format import shape_str

__all__ = [
    "capture_activations",
    "feature_maps_image",
    "filters_image",
    "load_image",
    "save_inspection",
    "tile_scale",
]

# Viridis-like anchors: dark blue (low) to yellow (high), for values that are never negative.
_PALETTE = np.array(
    [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], dtype=np.float32
)
# Blue (negative) through white (zero) to red (positive), for signed values: the red part is
# what a ReLU would let through.
_DIVERGING = np.array(
    [[33, 102, 172], [103, 169, 207], [209, 229, 240], [247, 247, 247], [253, 219, 199],
     [239, 138, 98], [178, 24, 43]], dtype=np.float32
)
_BG = (255, 255, 255)
_INK = (31, 41, 51)
_MUTED = (107, 114, 128)
_FRAME = (209, 213, 219)  # a thin line around each tile, so white values keep their edge
_GAP = 6          # pixels between tiles
_LABEL = 16       # height of the label above each tile
_TITLE = 30       # height of the title bar
_NOTE = 18        # height of the line under the title that says what the picture shows
_LEGEND = 50      # height of the colour bar, its values and its caption under the tiles
_MIN_TILE = 96    # small maps are scaled up (nearest neighbour) to at least this size


def _pil():
    try:
        from PIL import Image, ImageDraw, ImageFont
    except ImportError:
        raise ImportError(
            "drawing feature maps and filters needs Pillow; install it with "
            "pip install 'cnnlab[cli]'"
        ) from None
    return Image, ImageDraw, ImageFont


def _font(size: int):
    _, _, ImageFont = _pil()
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: one fixed bitmap font
        return ImageFont.load_default()


# --------------------------------------------------------------------------- capture


def capture_activations(model, x, layers: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Run ``model`` on ``x`` and keep layer outputs.

    Forward hooks record the outputs; the model runs in eval mode under ``no_grad`` and
    its train/eval flags are restored afterwards.

    Args:
        model: a ``cnnlab.nn.Module``.
        x: input, ``(N, C, H, W)`` or one sample ``(C, H, W)`` (array or Tensor).
        layers: dotted module names (as in ``model.named_modules()``); None: every leaf
            layer.

    Returns:
        ``{name: output array}`` in the order the layers ran; the batch axis is kept.
        A layer that runs twice appears again as ``"name:2"``.

    Raises:
        KeyError: a name in ``layers`` is not a module of the model.
    """
    from cnnlab import no_grad
    from cnnlab.tensor import Tensor

    named = list(model.named_modules())
    by_name = dict(named)
    if layers is None:
        chosen = [(n, m) for n, m in named if not list(m.children())]
    else:
        unknown = [n for n in layers if n not in by_name]
        if unknown:
            known = ", ".join(n for n, _ in named if n) or "(none)"
            raise KeyError(f"no layer named {unknown} in the model; its layers are: {known}")
        chosen = [(n, by_name[n]) for n in layers]

    out: dict[str, np.ndarray] = {}

    def hook_for(name):
        def hook(module, inputs, output):
            key, k = name, 1
            while key in out:
                k += 1
                key = f"{name}:{k}"
            data = output.data if hasattr(output, "data") else output
            out[key] = np.array(data, copy=True)
        return hook

    data = x.data if isinstance(x, Tensor) else np.asarray(x, dtype=np.float32)
    if data.ndim == 3:
        data = data[None]
    modes = [(m, m.training) for _, m in named]
    handles = [m.register_forward_hook(hook_for(n or type(m).__name__)) for n, m in chosen]
    try:
        model.eval()
        with no_grad():
            model(Tensor(data))
    finally:
        for h in handles:
            h.remove()
        for m, mode in modes:
            m.training = mode
    return out


# --------------------------------------------------------------------------- drawing


def _normalize(a: np.ndarray) -> np.ndarray:
    """Scale to 0..1 by the array's own min and max; a constant array becomes 0.5."""
    a = a.astype(np.float32)
    lo, hi = float(a.min()), float(a.max())
    if hi - lo < 1e-12:
        return np.full(a.shape, 0.5, dtype=np.float32)
    return (a - lo) / (hi - lo)


def _through(palette: np.ndarray, unit: np.ndarray) -> np.ndarray:
    """Values in 0..1 -> RGB uint8 through a palette's anchors (linear between them)."""
    pos = np.clip(unit, 0.0, 1.0) * (len(palette) - 1)
    i = np.minimum(pos.astype(np.int64), len(palette) - 2)
    t = (pos - i)[..., None]
    rgb = palette[i] * (1 - t) + palette[i + 1] * t
    return np.round(rgb).astype(np.uint8)


def _colorize(unit: np.ndarray) -> np.ndarray:
    """(H, W) in 0..1 -> (H, W, 3) uint8 through the viridis-like palette."""
    return _through(_PALETTE, unit)


class ColorScale:
    """One colour scale for a whole picture, so that tiles can be compared.

    Signed values get the diverging palette, symmetric around zero (white); values that
    are never negative get the sequential one from zero to their maximum.

    Attributes:
        lo, hi: the values at the two ends of the colour bar.
        signed: whether the diverging palette is used.
    """

    def __init__(self, values: np.ndarray):
        values = np.asarray(values, dtype=np.float32)
        finite = values[np.isfinite(values)]
        lo = float(finite.min()) if finite.size else 0.0
        hi = float(finite.max()) if finite.size else 0.0
        self.signed = lo < 0
        if self.signed:
            m = max(-lo, hi)
            self.lo, self.hi = -m, m
        else:
            self.lo, self.hi = 0.0, hi

    def unit(self, values: np.ndarray) -> np.ndarray:
        if self.hi - self.lo < 1e-12:
            return np.full(np.shape(values), 0.5 if self.signed else 0.0, dtype=np.float32)
        return (np.asarray(values, dtype=np.float32) - self.lo) / (self.hi - self.lo)

    def rgb(self, values: np.ndarray) -> np.ndarray:
        return _through(_DIVERGING if self.signed else _PALETTE, self.unit(values))

    def ticks(self) -> list[tuple[float, str]]:
        """(position 0..1 along the bar, label)."""
        marks = [(0.0, _tick(self.lo)), (1.0, _tick(self.hi))]
        if self.signed:
            marks.insert(1, (0.5, "0"))
        return marks


def _tick(v: float) -> str:
    return "0" if v == 0 else f"{v:.3g}"


def _signed_gray(w: np.ndarray, scale: float) -> np.ndarray:
    """Weights to 0..255 with 0 at mid-gray, so the sign stays visible."""
    v = 127.5 + 127.5 * (w / scale if scale > 0 else 0 * w)
    return np.clip(np.round(v), 0, 255).astype(np.uint8)


def tile_scale(height: int, width: int, minimum: int = _MIN_TILE) -> int:
    """The whole-number zoom that makes a ``height x width`` map at least ``minimum`` px."""
    return max(1, math.ceil(minimum / max(1, min(height, width))))


def _legend(width: int, bar: np.ndarray, ticks: list[tuple[float, str]], caption: str):
    """A colour bar (``bar``: (1, n, 3) uint8 from low to high) with its values and what
    they mean, ``width`` pixels wide."""
    Image, ImageDraw, _ = _pil()
    img = Image.new("RGB", (width, _LEGEND), _BG)
    draw = ImageDraw.Draw(img)
    small = _font(11)
    bar_w = max(60, min(240, width - 2 * _GAP))
    strip = Image.fromarray(np.repeat(bar, 10, axis=0)).resize((bar_w, 10), Image.NEAREST)
    img.paste(strip, (_GAP, 4))
    draw.rectangle([_GAP, 4, _GAP + bar_w - 1, 13], outline=_MUTED)
    for pos, text in ticks:
        tw = draw.textlength(text, font=small)
        x = _GAP + pos * (bar_w - 1) - tw * pos
        draw.text((x, 16), text, fill=_MUTED, font=small)
    if caption:
        draw.text((_GAP, 32), caption, fill=_MUTED, font=small)
    return img


def _grid_image(tiles: list[np.ndarray], labels: list[str], title: str, cols: int,
                note: str = "", legend: tuple | None = None):
    """Lay out equally sized RGB tiles (uint8, (h, w, 3)) under a title (and a note), with
    an optional legend ``(bar, ticks, caption)`` (see :func:`_legend`) below."""
    Image, ImageDraw, _ = _pil()
    th, tw = tiles[0].shape[:2]
    rows = math.ceil(len(tiles) / cols)
    width = _GAP + cols * (tw + _GAP)
    top = _TITLE + (_NOTE if note else 0)
    height = top + rows * (_LABEL + th + _GAP) + (_LEGEND if legend is not None else 0)
    font, small = _font(15), _font(11)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    caption = legend[2] if legend is not None else ""
    width = max(width, *(int(probe.textlength(text, font=f)) + 2 * _GAP
                         for text, f in ((title, font), (note, small), (caption, small))))
    img = Image.new("RGB", (width, height), _BG)
    draw = ImageDraw.Draw(img)
    draw.text((_GAP, 7), title, fill=_INK, font=font)
    if note:
        draw.text((_GAP, _TITLE - 2), note, fill=_MUTED, font=small)
    for k, (tile, label) in enumerate(zip(tiles, labels, strict=True)):
        r, c = divmod(k, cols)
        x = _GAP + c * (tw + _GAP)
        y = top + r * (_LABEL + th + _GAP)
        draw.text((x, y + 1), label, fill=_MUTED, font=small)
        img.paste(Image.fromarray(tile), (x, y + _LABEL))
        draw.rectangle([x - 1, y + _LABEL - 1, x + tw, y + _LABEL + th], outline=_FRAME)
    if legend is not None:
        img.paste(_legend(width, *legend), (0, height - _LEGEND))
    return img


def _zoom(a: np.ndarray, k: int) -> np.ndarray:
    return np.repeat(np.repeat(a, k, axis=0), k, axis=1)


def feature_maps_image(maps: np.ndarray, title: str, cols: int | None = None,
                       note: str = "", reference: np.ndarray | None = None):
    """One tile per feature map, all on one colour scale, with a colour bar.

    Signed maps (a convolution's output before its ReLU) are drawn blue below zero, white
    at zero and red above (the red part is what a ReLU passes on); maps that are never
    negative run from dark blue at zero to yellow at their maximum.

    Args:
        maps: ``(N, H, W)`` activations of one sample.
        title: the line above the tiles (layer and shape).
        cols: tiles per row; default ``ceil(sqrt(N))`` (``N + 1`` with ``reference``).
        note: a second, smaller line saying what the maps are.
        reference: the input image ``(C, H, W)`` in 0..1, shown first (in grey or its own
            colours, not on the maps' scale) at the maps' size, to see where things are.

    Returns:
        A ``PIL.Image`` of ``GAP + cols*(W*z + GAP)`` by
        ``TITLE [+ NOTE] + rows*(LABEL + H*z + GAP) + LEGEND`` pixels,
        ``z = tile_scale(H, W)`` (wider when the title needs it).
    """
    maps = np.asarray(maps)
    if maps.ndim != 3:
        raise ValueError(f"feature maps: expected (N, H, W), got shape {maps.shape}")
    n, h, w = maps.shape
    z = tile_scale(h, w)
    cols = cols or math.ceil(math.sqrt(n + (reference is not None)))
    scale = ColorScale(maps)
    tiles = [_zoom(scale.rgb(m), z) for m in maps]
    bar = scale.rgb(np.linspace(scale.lo, scale.hi, 256, dtype=np.float32))[None]
    caption = ("value: blue below zero, white at zero, red above" if scale.signed
               else "value, from zero (dark) to the largest (yellow)")
    labels = [str(i) for i in range(n)]
    if reference is not None:  # the input, same size on screen, for where things are
        Image, _, _ = _pil()
        ref = Image.fromarray(_image_rgb(np.asarray(reference, dtype=np.float32)))
        tiles.insert(0, np.asarray(ref.resize((w * z, h * z), Image.NEAREST)))
        labels.insert(0, "input")
    return _grid_image(tiles, labels, title, cols, note, (bar, scale.ticks(), caption))


def filters_image(weight: np.ndarray, title: str):
    """First-layer filters on one scale for all of them (the largest weight's size): one
    RGB tile per filter when it has 3 input channels (each channel mid-grey at zero,
    brighter where positive), else one tile per filter and channel, blue where negative,
    white at zero, red where positive. A legend says which is which.

    Args:
        weight: ``(F, C, K, K)``.
        title: the line above the tiles.

    Returns:
        A ``PIL.Image``.
    """
    w = np.asarray(weight, dtype=np.float32)
    if w.ndim != 4:
        raise ValueError(f"filters: expected (F, C, K, K), got shape {w.shape}")
    f, c, kh, kw = w.shape
    z = tile_scale(kh, kw, 48)
    top = float(np.abs(w[np.isfinite(w)]).max()) if np.isfinite(w).any() else 0.0
    tiles, labels = [], []
    if c == 3:  # one colour picture per filter: what colour pattern it responds to
        for i in range(f):
            tiles.append(_zoom(_signed_gray(w[i].transpose(1, 2, 0), top), z))
            labels.append(str(i))
        ramp = _signed_gray(np.linspace(-top, top, 256, dtype=np.float32), top)
        bar = np.stack([ramp] * 3, axis=-1)[None]
        caption = "weight of each colour: darker negative, mid-grey zero, brighter positive"
        ticks = [(0.0, _tick(-top)), (0.5, "0"), (1.0, _tick(top))]
    else:
        scale = ColorScale(np.array([-top, top], dtype=np.float32))
        for i in range(f):
            for ch in range(c):
                tiles.append(_zoom(scale.rgb(w[i, ch]), z))
                labels.append(f"{i}" if c == 1 else f"{i}.{ch}")
        bar = scale.rgb(np.linspace(-top, top, 256, dtype=np.float32))[None]
        caption = "weight: blue negative, white zero, red positive"
        ticks = scale.ticks() if top > 0 else [(0.5, "0")]
    cols = c if c not in (1, 3) else math.ceil(math.sqrt(f))
    return _grid_image(tiles, labels, title, cols, legend=(bar, ticks, caption))


def _image_rgb(x: np.ndarray) -> np.ndarray:
    """(C, H, W) display image in 0..1 -> (H, W, 3) uint8."""
    if x.shape[0] == 3:
        rgb = x.transpose(1, 2, 0)
    else:
        rgb = np.repeat(x[:1].transpose(1, 2, 0), 3, axis=2)
    return np.clip(np.round(rgb * 255), 0, 255).astype(np.uint8)


def _prediction_image(display: np.ndarray, probs: np.ndarray, classes: Sequence[str]):
    Image, ImageDraw, _ = _pil()
    top = np.argsort(-probs)[:5]
    side = 160
    img_in = Image.fromarray(_image_rgb(display)).resize((side, side), Image.NEAREST)
    width, height = 520, max(side + 2 * _GAP + _TITLE, _TITLE + 28 * len(top) + _GAP)
    img = Image.new("RGB", (width, height), _BG)
    draw = ImageDraw.Draw(img)
    font, small = _font(15), _font(13)
    best = int(top[0])
    draw.text((_GAP, 7), f"predicted: {classes[best]} ({100 * probs[best]:.1f}%)", fill=_INK,
              font=font)
    img.paste(img_in, (_GAP, _TITLE))
    names = [str(classes[int(i)])[:14] for i in top]
    name_w = max(int(draw.textlength(n, font=small)) for n in names) + 2 * _GAP
    x0 = side + 2 * _GAP + name_w
    bar_w = width - x0 - 60
    for k, (i, name) in enumerate(zip(top, names, strict=True)):
        y = _TITLE + 4 + 28 * k
        draw.text((side + 2 * _GAP, y), name, fill=_INK, font=small)
        draw.rectangle([x0, y, x0 + bar_w, y + 16], fill=(238, 240, 243))
        color = (224, 122, 22) if k == 0 else (47, 111, 214)
        draw.rectangle([x0, y, x0 + max(1, int(bar_w * float(probs[i]))), y + 16], fill=color)
        draw.text((x0 + bar_w + 6, y), f"{100 * probs[i]:.1f}%", fill=_MUTED, font=small)
    return img


def _what_maps_show(model, name: str) -> str:
    """Say that a conv layer's maps are its raw output, naming the batch norm and
    activation layers that follow it (in a Sequential) and that the maps come before."""
    layers = list(getattr(model, "layers", []))
    names = [str(i) for i in range(len(layers))]
    after = []
    if name in names:
        for layer in layers[names.index(name) + 1:]:
            kind = type(layer).__name__
            if kind not in ("BatchNorm2d", "ReLU", "LeakyReLU", "Sigmoid", "Tanh"):
                break
            after.append({"BatchNorm2d": "batch norm"}.get(kind, kind))
    shared = "one colour scale for all maps"
    if not after:
        return f"the convolution's output; {shared}"
    return f"the convolution's output, before the {' and '.join(after)} after it; {shared}"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", name) or "layer"


def save_inspection(
    model,
    x: np.ndarray,
    out_dir: str | Path,
    *,
    display: np.ndarray | None = None,
    classes: Sequence[str] | None = None,
    probabilities: bool = False,
) -> dict:
    """Write the pictures of one forward pass to ``out_dir``.

    Files: ``input.png`` (the image, zoomed by ``tile_scale(H, W, 256)``, under a title),
    ``feature_maps_<layer>.png`` for every Conv2d (its output, before the batch norm or
    activation that follows it, on one colour scale), ``filters_<layer>.png`` for the
    first Conv2d, ``prediction.png`` when the model ends in class scores ``(1, K)``.

    Args:
        model: a ``cnnlab.nn.Module``.
        x: the model's input for one sample ``(C, H, W)``, already normalized.
        out_dir: folder for the PNGs (created).
        display: the same image in 0..1 for ``input.png``; default ``x`` scaled by its
            min and max.
        classes: class names for the prediction; default ``"0", "1", ...``.
        probabilities: the model's output is already probabilities (it ends in a
            softmax), not scores to take the softmax of.

    Returns:
        ``{"files": [paths], "prediction": {"index", "class", "probability"} or None}``.
    """
    from cnnlab import nn

    Image, _, _ = _pil()
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 3:
        raise ValueError(f"expected one image (C, H, W), got shape {x.shape}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    display = _normalize(x) if display is None else np.asarray(display, dtype=np.float32)

    files = []
    z = tile_scale(x.shape[1], x.shape[2], 256)
    path = out_dir / "input.png"
    title = f"input: {shape_str(x.shape)} image"
    _grid_image([_zoom(_image_rgb(display), z)], [""], title, 1,
                note="the pixels as read, before normalization; one square per pixel").save(path)
    files.append(path)

    acts = capture_activations(model, x)
    named = [(n or type(m).__name__, m) for n, m in model.named_modules()]
    convs = [(n, m) for n, m in named if isinstance(m, nn.Conv2d)]
    for k, (name, module) in enumerate(convs):
        if name not in acts:
            continue
        maps = acts[name][0]
        title = f"layer {name}: {type(module).__name__} {module.out_channels} filters -> " \
                f"{shape_str(maps.shape)}"
        path = out_dir / f"feature_maps_{_safe(name)}.png"
        feature_maps_image(maps, title, note=_what_maps_show(model, name),
                           reference=display).save(path)
        files.append(path)
        if k == 0:
            w = np.asarray(module.weight.data)
            title = f"layer {name}: {w.shape[0]} filters of {shape_str(w.shape[1:])}"
            path = out_dir / f"filters_{_safe(name)}.png"
            filters_image(w, title).save(path)
            files.append(path)

    prediction = None
    last = list(acts.values())[-1] if acts else None
    if last is not None and last.ndim == 2 and last.shape[0] == 1 and last.shape[1] > 1:
        logits = last[0].astype(np.float64)
        if probabilities:
            probs = logits
        else:
            probs = np.exp(logits - logits.max())
            probs /= probs.sum()
        names = list(classes) if classes else [str(i) for i in range(len(probs))]
        if len(names) != len(probs):
            names = [str(i) for i in range(len(probs))]
        best = int(np.argmax(probs))
        prediction = {"index": best, "class": names[best], "probability": float(probs[best])}
        path = out_dir / "prediction.png"
        _prediction_image(display, probs, names).save(path)
        files.append(path)
    return {"files": files, "prediction": prediction}


def load_image(path: str | Path, input_shape: Sequence[int]) -> np.ndarray:
    """Read an image file (or a ``.npy`` array) as a model input before normalization.

    Args:
        path: PNG/JPEG/... (converted to gray or RGB and resized to the model's size), or
            ``.npy`` holding ``(C, H, W)`` or ``(H, W)`` (uint8 0..255 or floats 0..1).
        input_shape: the model's ``(C, H, W)``.

    Returns:
        ``(C, H, W)`` float32 in 0..1.

    Raises:
        ValueError: an array of another shape, or channels that cannot be converted.
    """
    c, h, w = (int(s) for s in input_shape)
    path = Path(path)
    if path.suffix.lower() == ".npy":
        a = np.load(path, allow_pickle=False)
        if a.ndim == 2:
            a = a[None]
        if a.dtype == np.uint8:
            a = a.astype(np.float32) / 255.0
        if a.shape != (c, h, w):
            raise ValueError(f"{path}: expected an array of {c}x{h}x{w}, got {shape_str(a.shape)}")
        return a.astype(np.float32)
    if c not in (1, 3):
        raise ValueError(f"the model takes {c} channels; only 1 (gray) or 3 (RGB) images can be "
                         f"read from an image file, pass a .npy array instead")
    Image, _, _ = _pil()
    with Image.open(path) as im:
        im = im.convert("L" if c == 1 else "RGB")
        if im.size != (w, h):
            im = im.resize((w, h), Image.BILINEAR)
        a = np.asarray(im, dtype=np.float32) / 255.0
    return a[None] if c == 1 else a.transpose(2, 0, 1).copy()
