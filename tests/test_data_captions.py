"""Captions of digit scenes: the grammar, reading order, the parser and the vocabulary."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnlab.data import DigitScenes, Vocabulary, caption, parse_caption
from cnnlab.data.captions import (
    CAPTION_WORDS,
    PLACES,
    caption_length,
    captions_for,
    reading_order,
    tokenize,
)

SIZE = (64, 64)


def box(cx, cy, w=12, h=16):
    return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]


@pytest.mark.parametrize("row", range(3))
@pytest.mark.parametrize("col", range(3))
def test_the_first_digit_is_placed_by_thirds(row, col):
    cx, cy = 64 * (col + 0.5) / 3, 64 * (row + 0.5) / 3
    assert caption([box(cx, cy)], [4], SIZE) == f"a 4 {PLACES[row][col]}"


def test_relations_and_joining():
    top_left, right, below = box(10, 10), box(30, 12), box(30, 40)
    assert caption([top_left, right], [7, 2], SIZE) == "a 7 at the top left and a 2 to its right"
    assert caption([top_left, box(12, 40)], [7, 2], SIZE) == "a 7 at the top left and a 2 below it"
    assert caption([right, box(10, 40)], [7, 2], SIZE) == "a 7 at the top and a 2 down to its left"
    assert (caption([top_left, box(50, 50)], [7, 8], SIZE)
            == "a 7 at the top left and an 8 down to its right")
    assert (caption([box(50, 50), right, top_left, below], [1, 2, 3, 4], SIZE)
            == "a 3 at the top left, a 2 to its right, a 4 below it and a 1 down to its right")


def test_rows_allow_a_digit_a_little_lower():
    # Centre of the second digit (y = 17) is above the first's bottom edge (18): same row.
    assert caption([box(10, 10), box(30, 17)], [1, 2], SIZE).endswith("a 2 to its right")
    # A centre below that edge opens a new row, even for a digit further right.
    assert caption([box(10, 10), box(30, 19)], [1, 2], SIZE).endswith("a 2 down to its right")
    # The row is judged against its first (highest) digit, not the one before.
    boxes = [box(10, 10), box(30, 17), box(50, 24)]
    assert reading_order(boxes).tolist() == [0, 1, 2]
    assert caption(boxes, [1, 2, 3], SIZE).endswith("and a 3 down to its right")


def test_reading_order_ties_and_errors():
    # Equal heights: left to right, whatever the input order.
    assert reading_order([box(40, 20), box(10, 20)]).tolist() == [1, 0]
    assert reading_order(np.zeros((0, 4))).tolist() == []
    with pytest.raises(ValueError, match=r"expected boxes of shape \(..., K, 4\)"):
        reading_order([[1, 2, 3]])
    with pytest.raises(ValueError, match="expected boxes with x1 >= x0 and y1 >= y0"):
        reading_order([[5, 5, 4, 9]])


@st.composite
def scenes(draw):
    k = draw(st.integers(1, 6))
    boxes = []
    for _ in range(k):
        x0, y0 = draw(st.integers(0, 60)), draw(st.integers(0, 60))
        w, h = draw(st.integers(1, 24)), draw(st.integers(1, 24))
        boxes.append([x0, y0, x0 + w, y0 + h])
    labels = draw(st.lists(st.integers(0, 9), min_size=k, max_size=k))
    perm = draw(st.permutations(range(k)))
    return np.array(boxes, np.float32), np.array(labels), list(perm)


@settings(derandomize=True, max_examples=300, deadline=None)
@given(scenes())
def test_caption_round_trip_and_order_independence(scene):
    boxes, labels, perm = scene
    text = caption(boxes, labels, SIZE)
    expected = labels[reading_order(boxes)].tolist()
    assert parse_caption(text, strict=True) == expected
    assert parse_caption(text) == expected
    # The caption depends on the scene, not on the order its digits are listed in.
    assert caption(boxes[perm], labels[perm], SIZE) == text
    assert len(tokenize(text)) <= caption_length(len(labels))
    vocab = Vocabulary()
    ids = vocab.encode(text)
    assert vocab.unk_id not in ids and vocab.decode(ids) == text


def test_every_scene_caption_parses_back():
    scenes = DigitScenes("digits", train=True)
    for text, labels in zip(scenes.captions, scenes.labels, strict=True):
        assert parse_caption(text, strict=True) == labels.tolist()
    lengths = [len(tokenize(t)) for t in scenes.captions]
    assert max(lengths) <= caption_length(4) == 27
    assert captions_for(scenes.boxes[:5], scenes.labels[:5], (32, 32)) == scenes.captions[:5]
    assert captions_for(list(scenes.boxes[:5]), list(scenes.labels[:5]),
                        (32, 32)) == scenes.captions[:5]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "expected 'a' or 'an' at word 1 of '', found the end of the caption"),
        ("a 7 at the top left, a 2 below it", "expected 'and' before the last digit at word 7"),
        ("a 8 at the top left", "expected 'an' before 8 at word 1"),
        ("an 7 at the top left", "expected 'a' before 7 at word 1"),
        ("a 7 over there", "expected a place such as 'at the top left' at word 3"),
        ("a 7 at the top left and a 2 at the top", "expected a relation such as"),
        ("a 7 at the top left and a 2 below it and a 3 below it",
         "expected the end of the caption after the digit that follows 'and' at word 12"),
        ("a 7 at the top left or a 2 below it",
         "expected ',' or 'and' at word 7 of .*, found 'or'"),
        ("a seven at the top left", "expected a digit 0-9 at word 2 of"),
        ("a 7 at the top left and", "expected 'a' or 'an' at word 8 of .*, found the end"),
    ],
)
def test_strict_parser_names_the_first_wrong_word(text, message):
    with pytest.raises(ValueError, match=message):
        parse_caption(text, strict=True)


def test_lenient_parser_reads_every_digit_word():
    assert parse_caption("a 7 7 at the top, 3 below") == [7, 7, 3]
    assert parse_caption("<unk> nothing here") == []
    with pytest.raises(TypeError, match="expected a caption as str"):
        parse_caption(None)


def test_captions_for_checks_its_input():
    with pytest.raises(ValueError, match="expected one label per box"):
        captions_for([np.zeros((2, 4))], [[1]], SIZE)
    with pytest.raises(ValueError, match="expected at least one digit in every scene"):
        captions_for([np.zeros((0, 4))], [[]], SIZE)
    with pytest.raises(ValueError, match="expected digits 0..9 as labels"):
        captions_for([[box(10, 10)]], [[10]], SIZE)
    with pytest.raises(ValueError, match="expected boxes with x1 >= x0"):
        caption([[10, 10, 5, 20]], [1], SIZE)
    with pytest.raises(ValueError, match="expected max_digits >= 1"):
        caption_length(0)


def test_vocabulary_ids_and_round_trip():
    vocab = Vocabulary()
    assert len(vocab) == 32 < 50
    assert vocab.tokens[:4] == ["<pad>", "<start>", "<end>", "<unk>"]
    assert vocab.tokens[4:] == list(CAPTION_WORDS)
    assert (vocab.pad_id, vocab.start_id, vocab.end_id, vocab.unk_id) == (0, 1, 2, 3)
    every_word = set()
    for row in PLACES:
        for place in row:
            every_word.update(place.split())
    assert every_word <= set(vocab.tokens)
    restored = Vocabulary.from_dict(json.loads(json.dumps(vocab.to_dict())))
    assert restored == vocab and hash(restored) == hash(vocab)
    assert vocab.encode("a 7 at the MOON") == [1, 4, 13, 16, 17, 3, 2]
    assert vocab.decode([1, 4, 13, 3, 2, 9, 9]) == "a 7 <unk>"
    assert vocab.decode(np.array([4, 13, 0, 0])) == "a 7"
    assert "middle" in vocab and "<pad>" in vocab and "moon" not in vocab
    texts = ["a 1 in the middle", "a 2 at the top and a 3 below it"]
    batch = vocab.encode_batch(texts)
    assert batch.shape == (2, 12) and batch.dtype == np.int64
    assert batch[0, 6] == vocab.end_id and batch[0, 7:].tolist() == [0] * 5
    assert [vocab.decode(row) for row in batch] == texts
    assert vocab.encode_batch([]).shape == (0, 0)
    with pytest.raises(ValueError, match="caption 1 needs 12 ids with <start> and <end>, more "
                                         "than max_len=8"):
        vocab.encode_batch(texts, max_len=8)
    with pytest.raises(ValueError, match="expected ids 0..31, found 32"):
        vocab.decode([32])


@pytest.mark.parametrize(
    ("words", "message"),
    [
        (["a", "b", "a"], "expected each word once, found 'a' twice"),
        (["a", "<end>"], "'<end>' is a special token"),
        (["a b"], "expected words without spaces"),
        ([""], "expected words without spaces"),
    ],
)
def test_vocabulary_rejects_bad_words(words, message):
    with pytest.raises(ValueError, match=message):
        Vocabulary(words)


@pytest.mark.parametrize(
    "data",
    [{"words": ["a"]}, {"tokens": ["a", "b"]}, ["<pad>"], {"tokens": [1, 2]}],
)
def test_vocabulary_from_bad_dict(data):
    with pytest.raises(ValueError, match="Vocabulary.from_dict: expected"):
        Vocabulary.from_dict(data)
