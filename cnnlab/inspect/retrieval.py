"""A trained network as a feature extractor: layer vectors, nearest neighbours, kNN.

- :func:`layer_features`: what one layer computes for a batch of images, one flat vector
  per image (also ``Module.features``); the default layer is the input of the last Linear,
  the representation a classifier's head sees.
- :func:`most_similar`: the nearest vectors by cosine similarity, one matrix product.
- :func:`knn_classify`: a k-nearest-neighbour classifier on such vectors (or raw pixels).
- :func:`similar_image`: a picture of a query and its nearest images (``cnnlab similar``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = [
    "cosine_similarity",
    "default_layer",
    "describe_layer",
    "knn_classify",
    "layer_features",
    "most_similar",
    "normalize_rows",
    "resolve_layer",
    "similar_image",
]


# --------------------------------------------------------------------------- layers


def default_layer(model) -> tuple[str, Any]:
    """The last Linear layer of ``model`` (its input is the default feature vector).

    Raises:
        ValueError: the model has no Linear layer (then a layer must be named).
    """
    from cnnlab import nn
    from cnnlab.nn.select import layer_names

    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"this {type(model).__name__} has no Linear layer, whose input would "
                         f"be the default features; name a layer, one of: "
                         f"{layer_names(model)}")
    return linears[-1]


def resolve_layer(model, layer: int | str | None) -> tuple[str, Any, bool]:
    """``(name, module, inputs)``: the module whose output (or, for the default, whose
    input: ``inputs`` True) holds the features ``layer`` asks for.

    Raises:
        ValueError: as :func:`cnnlab.nn.select.select_layer`, or :func:`default_layer`.
    """
    from cnnlab.nn.select import select_layer

    if layer is None:
        name, module = default_layer(model)
        return name, module, True
    name, module = select_layer(model, layer)
    return name, module, False


def describe_layer(model, layer: int | str | None) -> str:
    """``layer 11 (Dropout)`` or ``the input of layer 12 (Linear)``, for messages."""
    from cnnlab import nn

    name, module, inputs = resolve_layer(nn.unfuse(model), layer)
    text = f"layer {name} ({type(module).__name__})"
    return f"the input of {text}" if inputs else text


def layer_features(model, x, layer: int | str | None = None, *, batch_size: int = 256,
                   progress: Callable[[int], None] | None = None) -> np.ndarray:
    """What layer ``layer`` computes for ``x``, flattened to one vector per sample.

    A forward hook records the layer's output (for the default, the last Linear's input)
    while the model runs in eval mode under ``no_grad``, in batches; the forward pass stops
    at that layer. A model made by :func:`cnnlab.nn.fuse` runs unfused (:func:`cnnlab.nn
    .unfuse`), so that every name means the layer it names.

    Args:
        model: a ``cnnlab.nn.Module``.
        x: ``(N, C, H, W)`` or one sample ``(C, H, W)`` (array or Tensor), prepared as the
            model expects (normalized).
        layer: a dotted module name (``"3"``, ``"features.2"``), a position in a
            Sequential (negative from the end), or None: the input of the last Linear.
        batch_size: samples per forward pass.
        progress: called with the number of samples done after each batch.

    Shape:
        ``(N, C, H, W) -> (N, D)``, ``D`` the number of values the layer gives per sample.

    Returns:
        A NumPy array of the activations' dtype (float32 for a float32 model).

    Raises:
        ValueError: no such layer (listing the valid names), or a layer the forward pass
            never runs.

    Example:
        >>> import numpy as np, cnnlab
        >>> net = cnnlab.arch.build("conv3x3x4p1-relu-pool2-fc8-relu-fc3", (1, 6, 6))
        >>> x = np.zeros((5, 1, 6, 6), dtype=np.float32)
        >>> layer_features(net, x).shape, layer_features(net, x, layer=2).shape
        ((5, 8), (5, 36))
    """
    from cnnlab import nn
    from cnnlab.inspect.features import capture_activations
    from cnnlab.tensor import Tensor

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"layer_features: batch_size must be an integer >= 1, got "
                         f"{batch_size!r}")
    plain = nn.unfuse(model)
    name, module, inputs = resolve_layer(plain, layer)
    data = x.data if isinstance(x, Tensor) else np.asarray(x)
    if data.dtype.kind != "f":
        data = data.astype(np.float32)
    if data.ndim == 3:
        data = data[None]
    n = len(data)
    out: np.ndarray | None = None
    for start in range(0, n, batch_size):
        stop = min(n, start + batch_size)
        acts = capture_activations(plain, data[start:stop], [name], inputs=inputs, stop=True)
        if name not in acts:
            raise ValueError(f"layer {name} ({type(module).__name__}) did not run in the "
                             "forward pass, so it has no features; choose another layer")
        batch = acts[name].reshape(stop - start, -1)
        if out is None:
            out = np.empty((n, batch.shape[1]), dtype=batch.dtype)
        out[start:stop] = batch
        if progress is not None:
            progress(stop - start)
    return out if out is not None else np.zeros((0, 0), dtype=np.float32)


# --------------------------------------------------------------------------- similarity


def normalize_rows(a: np.ndarray) -> np.ndarray:
    """Each row divided by its Euclidean norm (a zero row stays zero). Keeps the dtype
    of a floating array (others become float32)."""
    a = np.asarray(a)
    if a.dtype.kind != "f":
        a = a.astype(np.float32)
    norms = np.linalg.norm(a, axis=1, keepdims=True)
    return a / np.maximum(norms, np.finfo(a.dtype).tiny)


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """All cosine similarities between the rows of ``a`` (M, D) and of ``b`` (N, D), as
    one matrix product of the normalized rows.

    Shape:
        ``(M, D), (N, D) -> (M, N)``.

    Raises:
        ValueError: the rows have different lengths.

    Example:
        >>> cosine_similarity(np.array([[1.0, 0.0]]), np.array([[2.0, 0.0], [1.0, 1.0]]))
        array([[1.        , 0.70710678]])
    """
    a, b = np.atleast_2d(np.asarray(a)), np.atleast_2d(np.asarray(b))
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"cosine_similarity: expected (M, D) and (N, D) with the same D, got "
                         f"{a.shape} and {b.shape}")
    return normalize_rows(a) @ normalize_rows(b).T


def _top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the ``k`` largest scores of each row, largest first (ties: the
    smaller index first)."""
    n = scores.shape[1]
    if k < n:
        part = np.argpartition(scores, -k, axis=1)[:, -k:]
    else:
        part = np.broadcast_to(np.arange(n), scores.shape).copy()
    picked = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -picked), axis=1)
    return np.take_along_axis(part, order, axis=1)


def most_similar(query: np.ndarray, database: np.ndarray, k: int) -> tuple[np.ndarray,
                                                                           np.ndarray]:
    """The ``k`` rows of ``database`` most similar (cosine) to each row of ``query``.

    Args:
        query: ``(D,)`` or ``(M, D)``.
        database: ``(N, D)``.
        k: how many neighbours, at most N.

    Returns:
        ``(indices, similarities)``, each ``(M, k)``, most similar first (ties: the smaller
        index first).

    Raises:
        ValueError: k out of range, or rows of different lengths.

    Example:
        >>> idx, sim = most_similar([1.0, 0.0], np.array([[0.0, 1.0], [3.0, 0.1], [1.0, 1.0]]), 2)
        >>> idx.tolist(), np.round(sim, 3).tolist()
        ([[1, 2]], [[0.999, 0.707]])
    """
    database = np.asarray(database)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or \
            not 1 <= k <= len(database):
        raise ValueError(f"most_similar: k must be between 1 and the number of vectors "
                         f"({len(database)}), got {k!r}")
    sims = cosine_similarity(query, database)
    idx = _top_k(sims, int(k))
    return idx, np.take_along_axis(sims, idx, axis=1)


def knn_classify(train: np.ndarray, train_labels: np.ndarray, test: np.ndarray, k: int = 1,
                 *, num_classes: int | None = None, chunk: int = 1024) -> np.ndarray:
    """k-nearest-neighbour classification by cosine similarity, with a majority vote.

    The similarities of a chunk of test rows to every training row are one matrix product;
    the ``k`` best are found with ``argpartition`` and their labels counted at once. A tied
    vote goes to the smallest label (as scikit-learn's ``KNeighborsClassifier`` does).

    Args:
        train: ``(N, D)`` vectors with known labels.
        train_labels: ``(N,)`` integer labels >= 0.
        test: ``(M, D)`` vectors to classify.
        k: neighbours that vote, 1..N.
        num_classes: the number of classes (default: the largest label + 1).
        chunk: test rows per matrix product (memory: ``chunk * N`` similarities).

    Returns:
        ``(M,)`` int64 predicted labels.

    Raises:
        ValueError: mismatched shapes, negative labels, or k out of range.

    Example:
        >>> train = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
        >>> knn_classify(train, np.array([0, 0, 1]), np.array([[0.2, 1.0], [1.0, 0.2]]), k=1)
        array([1, 0])
    """
    train, test = np.asarray(train), np.asarray(test)
    labels = np.asarray(train_labels)
    if train.ndim != 2 or test.ndim != 2 or train.shape[1] != test.shape[1]:
        raise ValueError(f"knn_classify: expected train (N, D) and test (M, D) with the same D, "
                         f"got {train.shape} and {test.shape}")
    if labels.shape != (len(train),) or labels.dtype.kind not in "iu" or \
            (len(labels) and labels.min() < 0):
        raise ValueError(f"knn_classify: expected {len(train)} integer labels >= 0, got an "
                         f"array of shape {labels.shape} and dtype {labels.dtype}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= len(train):
        raise ValueError(f"knn_classify: k must be between 1 and the number of training "
                         f"vectors ({len(train)}), got {k!r}")
    classes = int(num_classes if num_classes is not None else labels.max() + 1)
    train_n = normalize_rows(train)
    test_n = normalize_rows(test).astype(train_n.dtype, copy=False)
    preds = np.empty(len(test), dtype=np.int64)
    for start in range(0, len(test), chunk):
        sims = test_n[start:start + chunk] @ train_n.T
        if k == 1:
            nearest = sims.argmax(axis=1)[:, None]
        else:
            nearest = np.argpartition(sims, -k, axis=1)[:, -k:]
        votes = (labels[nearest][:, :, None] == np.arange(classes)).sum(axis=1)
        preds[start:start + chunk] = votes.argmax(axis=1)
    return preds


# --------------------------------------------------------------------------- drawing

_GAP, _TITLE, _LINE = 8, 30, 17


def similar_image(query: np.ndarray, images: np.ndarray, captions: Sequence[Sequence[str]],
                  title: str, *, query_caption: Sequence[str] = ("query",),
                  columns: int = 8, minimum: int = 96) -> Any:
    """The query image and its neighbours in a grid, each with lines of text under it.

    Args:
        query: ``(C, H, W)`` in [0, 1].
        images: ``(K, C, H, W)`` in [0, 1], most similar first.
        captions: lines of text for each neighbour (rank and similarity, label...).
        title: the line above the grid.
        query_caption: the lines under the query.
        columns: neighbours per row; the query has the first column to itself.
        minimum: small images are scaled up (nearest neighbour) to at least this many
            pixels.

    Returns:
        A ``PIL.Image``.
    """
    from cnnlab.inspect.draw import scale_for, to_rgb
    from cnnlab.inspect.features import _INK, _MUTED, _font, _pil

    Image, ImageDraw, _ = _pil()
    images = np.asarray(images)
    zoom = scale_for(query.shape[1], query.shape[2], minimum)
    th, tw = query.shape[1] * zoom, query.shape[2] * zoom
    cols = max(1, min(columns, len(images)))
    rows = max(1, -(-len(images) // cols))
    n_lines = max([len(query_caption), *(len(c) for c in captions)])
    cell_h = th + 4 + n_lines * _LINE + _GAP
    font, small = _font(15), _font(12)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    width = max(2 * _GAP + (cols + 1) * (tw + _GAP) + _GAP,
                int(probe.textlength(title, font=font)) + 2 * _GAP)
    height = _TITLE + rows * cell_h + _GAP
    img = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    draw.text((_GAP, 8), title, fill=_INK, font=font)

    def cell(picture, x: int, y: int, lines: Sequence[str], first_dark: bool) -> None:
        img.paste(picture, (x, y))
        for i, line in enumerate(lines):
            text = _fit(probe, str(line), small, tw + _GAP - 2)
            draw.text((x, y + th + 4 + i * _LINE), text,
                      fill=_INK if (i == 0 and first_dark) else _MUTED, font=small)

    cell(to_rgb(query, zoom), _GAP, _TITLE, list(query_caption), True)
    x_sep = _GAP + tw + _GAP + _GAP // 2
    draw.line([(x_sep, _TITLE), (x_sep, height - _GAP)], fill=(200, 200, 200), width=1)
    for k, (image, lines) in enumerate(zip(images, captions, strict=True)):
        r, c = divmod(k, cols)
        cell(to_rgb(image, zoom), 2 * _GAP + (c + 1) * (tw + _GAP), _TITLE + r * cell_h,
             lines, True)
    return img


def _fit(probe, text: str, font, width: int) -> str:
    """``text``, cut with an ellipsis to fit ``width`` pixels."""
    if probe.textlength(text, font=font) <= width:
        return text
    while text and probe.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"
