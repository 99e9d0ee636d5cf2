"""Captions of digit scenes: a small grammar, its vocabulary, and a parser back to digits.

A caption names every digit of a scene in **reading order** and says where the first one is
and how each later one stands to the one named before it::

    a 7 at the top left
    a 7 at the top left and a 2 below it
    an 8 on the left, a 3 to its right and a 0 down to its left

Reading order (``reading_order``) works on the digits' boxes ``x0, y0, x1, y1``:

1. take the digits by the height of their box centres ``cy = (y0 + y1) / 2`` (ties by the
   centre's x);
2. the first digit opens row 1; each next digit joins the current row when its centre lies
   no lower than the bottom edge ``y1`` of that row's first digit, otherwise it opens a new
   row (so two digits side by side are in one row even if one sits a little lower);
3. rows are read top to bottom, each from left to right by ``cx = (x0 + x1) / 2``.

The grammar (every caption is one of these, word for word)::

    caption  := first | first " and " item | first (", " item)* " and " item
    first    := article digit " " place
    item     := article digit " " relation
    article  := "a " | "an "                     ("an" before 8 only)
    digit    := "0" | "1" | ... | "9"
    place    := "at the top left" | "at the top" | "at the top right"
              | "on the left"    | "in the middle" | "on the right"
              | "at the bottom left" | "at the bottom" | "at the bottom right"
    relation := "to its right"                   (same row: next to the right)
              | "below it"                       (next row, centre within its x-span)
              | "down to its left"               (next row, centre left of its x0)
              | "down to its right"              (next row, centre right of its x1)

``place`` is the third of the canvas (left / centre / right by ``cx``, top / middle /
bottom by ``cy``) that holds the first digit's box centre. "it" is always the digit named
just before. Digits are the only words that carry numbers, so ``parse_caption`` reads the
digits back in reading order; with ``strict=True`` it checks the whole grammar too.

Words: the 28 of ``CAPTION_WORDS`` (the comma is a word) after the four special tokens
``<pad>`` (0), ``<start>``, ``<end>`` and ``<unk>``; see ``Vocabulary``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "CAPTION_WORDS",
    "PLACES",
    "RELATIONS",
    "SPECIAL_TOKENS",
    "Vocabulary",
    "caption",
    "caption_length",
    "captions_for",
    "detokenize",
    "parse_caption",
    "reading_order",
    "tokenize",
]

DIGITS = tuple(str(d) for d in range(10))
# PLACES[row][column]: row 0/1/2 = top/middle/bottom third, column 0/1/2 = left/centre/right.
PLACES = (
    ("at the top left", "at the top", "at the top right"),
    ("on the left", "in the middle", "on the right"),
    ("at the bottom left", "at the bottom", "at the bottom right"),
)
# Indexed by the relation code that captions_for computes.
RELATIONS = ("to its right", "below it", "down to its left", "down to its right")
RIGHT, BELOW, DOWN_LEFT, DOWN_RIGHT = range(4)

SPECIAL_TOKENS = ("<pad>", "<start>", "<end>", "<unk>")
CAPTION_WORDS = (
    "a", "an", *DIGITS,
    "at", "the", "top", "bottom", "left", "right", "on", "in", "middle",
    "to", "its", "below", "it", "down",
    "and", ",",
)  # fmt: skip


def _phrase_tokens(phrases: Iterable[str]) -> list[tuple[str, ...]]:
    # Longest first, so "at the top left" is tried before "at the top".
    return sorted((tuple(p.split()) for p in phrases), key=len, reverse=True)


_PLACE_TOKENS = _phrase_tokens(p for row in PLACES for p in row)
_RELATION_TOKENS = _phrase_tokens(RELATIONS)


def caption_length(max_digits: int) -> int:
    """The most words (commas included, ``<start>``/``<end>`` not) a caption of up to
    ``max_digits`` digits can have.

    Example:
        >>> caption_length(1), caption_length(4)
        (6, 27)
    """
    if isinstance(max_digits, bool) or not isinstance(max_digits, (int, np.integer)) or (
        max_digits < 1
    ):
        raise ValueError(f"caption_length: expected max_digits >= 1, found {max_digits!r}")
    first = 2 + max(len(p) for p in _PLACE_TOKENS)
    item = 1 + 2 + max(len(r) for r in _RELATION_TOKENS)  # separator, article, digit
    return first + (int(max_digits) - 1) * item


# --------------------------------------------------------------------------- reading order


def _check_boxes(boxes: np.ndarray, who: str) -> np.ndarray:
    boxes = np.asarray(boxes)
    if boxes.ndim < 2 or boxes.shape[-1] != 4:
        raise ValueError(f"{who}: expected boxes of shape (..., K, 4) as x0, y0, x1, y1, "
                         f"found shape {boxes.shape}")
    if boxes.size and np.any(boxes[..., 2:] < boxes[..., :2]):
        raise ValueError(f"{who}: expected boxes with x1 >= x0 and y1 >= y0, found "
                         f"{boxes[np.any(boxes[..., 2:] < boxes[..., :2], axis=-1)][0].tolist()}")
    return boxes


def _reading_order_padded(boxes: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reading order of ``(N, K, 4)`` boxes, ``valid`` ``(N, K)`` marking real ones.

    Returns ``(order, row)``, both ``(N, K)``: ``order[n]`` lists the box indices of scene n
    in reading order (invalid ones last); ``row[n, j]`` is the row of ``order[n, j]``.
    The loop runs over the K slots, each step vectorized over all scenes.
    """
    n, k = valid.shape
    boxes = boxes.astype(np.float64)
    cx = np.where(valid, (boxes[..., 0] + boxes[..., 2]) / 2, np.inf)
    cy = np.where(valid, (boxes[..., 1] + boxes[..., 3]) / 2, np.inf)
    # Two stable sorts: by cy, ties by cx (the input order never matters).
    by_x = np.argsort(cx, axis=1, kind="stable")
    by_y = np.take_along_axis(
        by_x, np.argsort(np.take_along_axis(cy, by_x, 1), axis=1, kind="stable"), 1
    )
    cy_s = np.take_along_axis(cy, by_y, 1)
    y1_s = np.take_along_axis(boxes[..., 3], by_y, 1)
    row = np.zeros((n, k), np.int64)
    if k:
        ref_bottom = y1_s[:, 0].copy()
        for j in range(1, k):
            new = ~(cy_s[:, j] <= ref_bottom)  # an invalid (inf) box always opens a row
            row[:, j] = row[:, j - 1] + new
            ref_bottom = np.where(new, y1_s[:, j], ref_bottom)
    row = np.where(np.take_along_axis(valid, by_y, 1), row, k + 1)
    cx_s = np.take_along_axis(cx, by_y, 1)
    # Within a row by cx; the stable sort keeps the cy order for equal cx.
    key = np.where(np.isfinite(cx_s), cx_s, 0.0)
    span = (key.max() + 1.0) if key.size else 1.0
    final = np.argsort(row * span + key, axis=1, kind="stable")
    return np.take_along_axis(by_y, final, 1), np.take_along_axis(row, final, 1)


def reading_order(boxes: Any) -> np.ndarray:
    """The indices of a scene's boxes in reading order (rows top to bottom, each left to
    right; see the module's description for how rows are formed).

    Args:
        boxes: ``(K, 4)`` boxes ``x0, y0, x1, y1``.

    Returns:
        ``(K,)`` int64 permutation.

    Raises:
        ValueError: boxes not of shape ``(K, 4)``, or with ``x1 < x0`` / ``y1 < y0``.

    Example:
        >>> reading_order([[40, 30, 60, 50], [2, 2, 22, 22], [30, 5, 50, 25]]).tolist()
        [1, 2, 0]
    """
    boxes = _check_boxes(boxes, "reading_order")
    if boxes.ndim != 2:
        raise ValueError(f"reading_order: expected (K, 4) boxes, found shape {boxes.shape}")
    order, _ = _reading_order_padded(boxes[None], np.ones((1, boxes.shape[0]), bool))
    return order[0]


# --------------------------------------------------------------------------------- captions


def _article(digit: int) -> str:
    return "an" if digit == 8 else "a"


def captions_for(
    boxes: Sequence[Any], labels: Sequence[Any], size: tuple[int, int]
) -> list[str]:
    """Captions of many scenes at once (the geometry is vectorized over scenes).

    Args:
        boxes: per scene a ``(K, 4)`` array of boxes ``x0, y0, x1, y1`` in pixels (a
            ``Ragged`` or a list of arrays).
        labels: per scene its ``(K,)`` digits 0..9, in the same order as the boxes.
        size: ``(H, W)`` of the canvas, for the thirds that name the first digit's place.

    Returns:
        One caption per scene (digits in reading order).

    Raises:
        ValueError: different numbers of scenes, boxes and labels that disagree, a scene
            without digits, labels outside 0..9.
    """
    from cnnlab.data.ragged import Ragged

    if not isinstance(boxes, Ragged):
        boxes = Ragged.from_list([np.asarray(b, np.float64).reshape(-1, 4) for b in boxes],
                                 np.float64, (4,))
    if not isinstance(labels, Ragged):
        labels = Ragged.from_list([np.asarray(v).reshape(-1) for v in labels], np.int64)
    if len(boxes) != len(labels) or not np.array_equal(boxes.lengths, labels.lengths):
        raise ValueError(
            f"captions_for: expected one label per box, found {len(boxes)} scenes of boxes "
            f"and {len(labels)} of labels with different counts"
        )
    if len(boxes) and boxes.lengths.min() < 1:
        raise ValueError("captions_for: expected at least one digit in every scene, found "
                         f"an empty scene at index {int(np.argmin(boxes.lengths))}")
    lab = labels.data
    if lab.size and (not np.all(np.mod(lab, 1) == 0) or lab.min() < 0 or lab.max() > 9):
        raise ValueError(f"captions_for: expected digits 0..9 as labels, found {lab.tolist()}")
    height, width = (int(s) for s in size)
    box, valid = boxes.padded(fill=0)
    _check_boxes(box, "captions_for")
    lab, _ = labels.padded(fill=0)
    order, row = _reading_order_padded(box, valid)
    box = np.take_along_axis(box.astype(np.float64), order[..., None], 1)
    lab = np.take_along_axis(lab.astype(np.int64), order, 1)
    cx = (box[..., 0] + box[..., 2]) / 2
    cy = (box[..., 1] + box[..., 3]) / 2
    third_x = np.clip(np.floor(3 * cx[:, 0] / width), 0, 2).astype(np.int64)
    third_y = np.clip(np.floor(3 * cy[:, 0] / height), 0, 2).astype(np.int64)
    # Relation of digit j to digit j - 1 (column 0 unused).
    relation = np.full(row.shape, RIGHT, np.int64)
    if row.shape[1] > 1:
        prev, cur = box[:, :-1], cx[:, 1:]
        below = np.where(cur < prev[..., 0], DOWN_LEFT,
                         np.where(cur > prev[..., 2], DOWN_RIGHT, BELOW))
        relation[:, 1:] = np.where(row[:, 1:] == row[:, :-1], RIGHT, below)
    out = []
    for n, count in enumerate(boxes.lengths.tolist()):
        digits = lab[n, :count].tolist()
        parts = [f"{_article(digits[0])} {digits[0]} {PLACES[third_y[n]][third_x[n]]}"]
        for j in range(1, count):
            parts.append(f"{_article(digits[j])} {digits[j]} {RELATIONS[relation[n, j]]}")
        out.append(_join(parts))
    return out


def _join(parts: list[str]) -> str:
    if len(parts) == 1:
        return parts[0]
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def caption(boxes: Any, labels: Any, size: tuple[int, int]) -> str:
    """The caption of one scene.

    Args:
        boxes: ``(K, 4)`` boxes ``x0, y0, x1, y1`` in pixels, K >= 1.
        labels: ``(K,)`` digits 0..9 (any order, as long as it matches the boxes).
        size: ``(H, W)`` of the canvas.

    Returns:
        The caption; its digits are in reading order.

    Raises:
        ValueError: as ``captions_for``.

    Example:
        >>> caption([[2, 3, 20, 23]], [7], (64, 64))
        'a 7 at the top left'
        >>> caption([[30, 36, 48, 56], [4, 4, 22, 24]], [2, 7], (64, 64))
        'a 7 at the top left and a 2 down to its right'
        >>> caption([[40, 8, 58, 28], [4, 4, 22, 24], [38, 36, 56, 56]], [8, 1, 5], (64, 64))
        'a 1 at the top left, an 8 to its right and a 5 below it'
    """
    return captions_for([boxes], [labels], size)[0]


# ------------------------------------------------------------------------------- words


def tokenize(text: str) -> list[str]:
    """Split a caption into words: lower case, the comma a word of its own.

    Example:
        >>> tokenize("A 7 at the top left, a 2 to its right")
        ['a', '7', 'at', 'the', 'top', 'left', ',', 'a', '2', 'to', 'its', 'right']
    """
    if not isinstance(text, str):
        raise TypeError(f"tokenize: expected a caption as str, found {type(text).__name__}")
    return text.lower().replace(",", " , ").split()


def detokenize(words: Iterable[str]) -> str:
    """Join words back into text (a comma sticks to the word before it)."""
    return " ".join(words).replace(" ,", ",")


def parse_caption(text: str, strict: bool = False) -> list[int]:
    """The digits a caption names, in the order it names them (reading order).

    Args:
        text: a caption (for example a model's output).
        strict: also check that the caption follows the grammar word for word; without
            it every digit word counts, whatever surrounds it (what the captioning
            metrics want of a model's imperfect sentences).

    Returns:
        The digits as ints.

    Raises:
        ValueError: with ``strict``, the first word where the caption leaves the grammar
            (its position, what was expected, what was found).

    Example:
        >>> parse_caption("an 8 at the top left, a 3 to its right and a 0 below it")
        [8, 3, 0]
        >>> parse_caption("a 4 at the the 9", strict=False)
        [4, 9]
    """
    words = tokenize(text)
    if not strict:
        return [int(w) for w in words if w in DIGITS]
    return _parse_strict(words, text)


def _parse_strict(words: list[str], text: str) -> list[int]:
    pos = 0
    digits: list[int] = []

    def fail(expected: str) -> None:
        found = repr(words[pos]) if pos < len(words) else "the end of the caption"
        raise ValueError(f"parse_caption: expected {expected} at word {pos + 1} of {text!r}, "
                         f"found {found}")

    def phrase(options: list[tuple[str, ...]], what: str) -> None:
        nonlocal pos
        for option in options:
            if tuple(words[pos : pos + len(option)]) == option:
                pos += len(option)
                return
        fail(what)

    last = False
    separator = -1  # where the last ',' or 'and' was
    while True:
        if pos >= len(words) or words[pos] not in ("a", "an"):
            fail("'a' or 'an'")
        article = words[pos]
        pos += 1
        if pos >= len(words) or words[pos] not in DIGITS:
            fail("a digit 0-9")
        digit = int(words[pos])
        if article != _article(digit):
            pos -= 1
            fail(f"{_article(digit)!r} before {digit}")
        pos += 1
        digits.append(digit)
        if len(digits) == 1:
            phrase(_PLACE_TOKENS, "a place such as 'at the top left'")
        else:
            phrase(_RELATION_TOKENS, "a relation such as 'to its right' or 'below it'")
        if pos == len(words):
            if len(digits) > 1 and not last:
                pos = separator
                fail("'and' before the last digit")
            return digits
        if last:
            fail("the end of the caption after the digit that follows 'and'")
        if words[pos] == "and":
            last = True
        elif words[pos] != ",":
            fail("',' or 'and'")
        separator = pos
        pos += 1


# ---------------------------------------------------------------------------- vocabulary


class Vocabulary:
    """Words and their ids: the four special tokens first, then the words.

    ``<pad>`` is 0 (so a padded batch is zero-filled), ``<start>`` 1, ``<end>`` 2,
    ``<unk>`` 3 (any word not in the list). Saved in a model file as the JSON of
    ``to_dict()``.

    Args:
        words: the ordinary words, in id order (ids start at 4); default ``CAPTION_WORDS``.

    Raises:
        ValueError: a repeated word, a special token among the words, an empty word or one
            with spaces in it.

    Example:
        >>> vocab = Vocabulary()
        >>> len(vocab), vocab.pad_id, vocab.start_id, vocab.end_id, vocab.unk_id
        (32, 0, 1, 2, 3)
        >>> ids = vocab.encode("a 7 at the top left")
        >>> ids
        [1, 4, 13, 16, 17, 18, 20, 2]
        >>> vocab.decode(ids)
        'a 7 at the top left'
        >>> vocab.encode_batch(["a 1 in the middle", "a 7 at the top"], max_len=8).shape
        (2, 8)
    """

    def __init__(self, words: Sequence[str] | None = None) -> None:
        words = list(CAPTION_WORDS if words is None else words)
        seen: set[str] = set()
        for w in words:
            if not isinstance(w, str) or not w or w != w.strip() or len(w.split()) != 1:
                raise ValueError(f"Vocabulary: expected words without spaces, found {w!r}")
            if w in SPECIAL_TOKENS:
                raise ValueError(f"Vocabulary: {w!r} is a special token; list only ordinary "
                                 "words (the special tokens come first by themselves)")
            if w in seen:
                raise ValueError(f"Vocabulary: expected each word once, found {w!r} twice")
            seen.add(w)
        self.tokens: list[str] = [*SPECIAL_TOKENS, *words]
        self._ids = {t: i for i, t in enumerate(self.tokens)}

    pad_id, start_id, end_id, unk_id = 0, 1, 2, 3

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, word: object) -> bool:
        return word in self._ids

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and other.tokens == self.tokens

    def __hash__(self) -> int:
        return hash(tuple(self.tokens))

    def index(self, word: str) -> int:
        """The id of a word (``unk_id`` for an unknown one)."""
        return self._ids.get(word, self.unk_id)

    def encode(self, text: str, add_special: bool = True) -> list[int]:
        """Ids of a caption's words, wrapped in ``<start>`` ... ``<end>`` by default."""
        ids = [self.index(w) for w in tokenize(text)]
        return [self.start_id, *ids, self.end_id] if add_special else ids

    def decode(self, ids: Iterable[Any]) -> str:
        """Text of a sequence of ids: stops at ``<end>``, leaves out ``<pad>`` and
        ``<start>``, writes ``<unk>`` as is.

        Raises:
            ValueError: an id outside ``0..len(vocab) - 1``.
        """
        words = []
        for i in np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids).reshape(-1):
            i = int(i)
            if not 0 <= i < len(self.tokens):
                raise ValueError(f"Vocabulary.decode: expected ids 0..{len(self.tokens) - 1}, "
                                 f"found {i}")
            if i == self.end_id:
                break
            if i in (self.pad_id, self.start_id):
                continue
            words.append(self.tokens[i])
        return detokenize(words)

    def encode_batch(self, texts: Sequence[str], max_len: int | None = None) -> np.ndarray:
        """Encode captions into one zero-padded ``(N, T)`` int64 array.

        Each row is ``<start>``, the words, ``<end>``, then ``<pad>`` (0) to length T.

        Args:
            texts: the captions.
            max_len: T (default: the longest encoded caption).

        Raises:
            ValueError: a caption that needs more than ``max_len`` ids (never cut short
                silently).
        """
        encoded = [self.encode(t) for t in texts]
        longest = max((len(e) for e in encoded), default=0)
        length = longest if max_len is None else int(max_len)
        if longest > length:
            worst = int(np.argmax([len(e) for e in encoded]))
            raise ValueError(
                f"Vocabulary.encode_batch: caption {worst} needs {longest} ids with <start> "
                f"and <end>, more than max_len={length}; raise max_len to at least {longest}"
            )
        out = np.zeros((len(encoded), length), np.int64)
        if encoded:
            lengths = np.array([len(e) for e in encoded])
            mask = np.arange(length)[None, :] < lengths[:, None]
            out[mask] = np.concatenate([np.asarray(e, np.int64) for e in encoded])
        return out

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able description (what a model file stores)."""
        return {"tokens": list(self.tokens)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Vocabulary:
        """Rebuild from ``to_dict()``'s output.

        Raises:
            ValueError: not a mapping with ``tokens``, or tokens that do not start with
                the special tokens in their order.
        """
        tokens = data.get("tokens") if isinstance(data, Mapping) else None
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
            raise ValueError("Vocabulary.from_dict: expected {'tokens': [str, ...]}, found "
                             f"{json.dumps(data)[:80] if _jsonable(data) else type(data).__name__}")
        if tuple(tokens[: len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
            raise ValueError(
                f"Vocabulary.from_dict: expected the tokens to start with {list(SPECIAL_TOKENS)}, "
                f"found {tokens[: len(SPECIAL_TOKENS)]}"
            )
        return cls(tokens[len(SPECIAL_TOKENS) :])

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} tokens: {' '.join(self.tokens[4:12])} ...)"


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True
