"""explain conv / pool: every number shown equals what cnnlab's conv2d and pooling compute."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnlab import Tensor
from cnnlab.inspect.explain import (
    explain_conv,
    explain_pool,
    load_values,
    output_size_formula,
    random_values,
)
from cnnlab.nn import functional as F
from cnnlab.ops.reference import conv2d_naive


def _conv2d(x, w, b, stride, padding):
    out = F.conv2d(Tensor(x[None]), Tensor(w), Tensor(b), stride=stride, padding=padding)
    return np.asarray(out.data)[0]


def _eval_terms(terms: str) -> float:
    """ "0x1 + 2x-1" -> -2: the written-out inner product, evaluated again."""
    total = 0.0
    for term in terms.split(" + "):
        a, b = term.split("x")
        total += float(a) * float(b)
    return total


@st.composite
def conv_configs(draw):
    c = draw(st.integers(1, 3))
    h, w = draw(st.integers(1, 7)), draw(st.integers(1, 7))
    padding = draw(st.integers(0, 2))
    k = draw(st.integers(1, min(h, w) + 2 * padding))
    return {
        "shape": (c, h, w), "filters": draw(st.integers(1, 3)), "size": k,
        "stride": draw(st.integers(1, 3)), "padding": padding,
        "seed": draw(st.integers(0, 2**16)), "integers": draw(st.booleans()),
    }


@settings(max_examples=60, deadline=None)
@given(conv_configs())
def test_explain_conv_equals_conv2d(cfg):
    v = random_values(cfg["shape"], cfg["filters"], cfg["size"], cfg["seed"], cfg["integers"])
    e = explain_conv(v["input"], v["weight"], v["bias"], cfg["stride"], cfg["padding"])
    expected = _conv2d(v["input"], v["weight"], v["bias"], cfg["stride"], cfg["padding"])
    np.testing.assert_array_equal(e.output, expected)
    np.testing.assert_allclose(
        e.output,
        conv2d_naive(v["input"][None], v["weight"], v["bias"], cfg["stride"], cfg["padding"])[0],
        rtol=1e-5, atol=1e-5,
    )
    exact = cfg["integers"]
    for f, r, c in e.positions():
        cell = e.cell(f, r, c)
        assert np.float32(cell["conv2d"]) == expected[f, r, c]  # float32 round-trips exactly
        for ch in cell["channels"]:
            assert _eval_terms(ch["terms"]) == pytest.approx(ch["sum"], abs=1e-4)
        value = cell["value"]
        if exact:  # small integers: every sum is exact, so equal to the last bit
            assert value == expected[f, r, c]
        else:
            assert value == pytest.approx(float(expected[f, r, c]), rel=1e-5, abs=1e-5)

    # The JSON carries the very same float32 numbers.
    d = json.loads(json.dumps(e.to_dict(all_cells=True)))
    np.testing.assert_array_equal(np.asarray(d["input"], dtype=np.float32), v["input"])
    np.testing.assert_array_equal(np.asarray(d["weight"], dtype=np.float32), v["weight"])
    np.testing.assert_array_equal(np.asarray(d["bias"], dtype=np.float32), v["bias"])
    np.testing.assert_array_equal(np.asarray(d["output"], dtype=np.float32), expected)
    assert len(d["cells"]) == expected.size


@settings(max_examples=40, deadline=None)
@given(
    c=st.integers(1, 2), h=st.integers(2, 7), w=st.integers(2, 7), k=st.integers(1, 3),
    stride=st.integers(1, 3), padding=st.integers(0, 1), mode=st.sampled_from(["max", "avg"]),
    seed=st.integers(0, 1000),
)
def test_explain_pool_equals_pooling(c, h, w, k, stride, padding, mode, seed):
    padding = min(padding, k // 2)
    k = min(k, h + 2 * padding, w + 2 * padding)
    x = np.random.default_rng(seed).integers(0, 10, (c, h, w)).astype(np.float32)
    e = explain_pool(x, k, stride, padding, mode)
    pool = F.max_pool2d if mode == "max" else F.avg_pool2d
    expected = np.asarray(pool(Tensor(x[None]), k, stride=stride, padding=padding).data)[0]
    np.testing.assert_array_equal(e.output, expected)
    for pos in e.positions():
        cell = e.cell(*pos)
        assert cell["value"] == pytest.approx(float(expected[pos]), rel=1e-6)


def test_terms_read_like_the_textbook():
    # One channel; the window at (0, 0) of the padded input is [[0,0,0],[0,1,1],[0,1,1]].
    x = np.ones((1, 2, 2), dtype=np.float32)
    w = np.array([[[[1, 1, 1], [-1, -1, 0], [-1, 1, 0]]]], dtype=np.float32)
    e = explain_conv(x, w, np.zeros(1, dtype=np.float32), stride=1, padding=1)
    cell = e.cell(0, 0, 0)
    line = f"{cell['channels'][0]['terms']} = {cell['channels'][0]['sum']}"
    assert line == "0x1 + 0x1 + 0x1 + 0x-1 + 1x-1 + 1x0 + 0x-1 + 1x1 + 1x0 = 0"
    text = e.render()
    assert "0x1 + 0x1 + 0x1 + 0x-1 + 1x-1 + 1x0 + 0x-1 + 1x1 + 1x0 = 0" in text
    assert "(W - F + 2P)/S + 1 = (2 - 3 + 2*1)/1 + 1 = 2" in text


def test_render_shows_every_part():
    v = random_values((3, 7, 7), 2, 3, seed=0)
    e = explain_conv(v["input"], v["weight"], v["bias"], stride=2, padding=1)
    text = e.render(at=(1, 2, 3))
    assert "Input, zero-padded by 1 -> 3x9x9" in text
    assert text.count(" channel 2:") >= 3  # input and both filters
    assert "(W - F + 2P)/S + 1 = (7 - 3 + 2*1)/2 + 1 = 4" in text
    assert "output[1, 2, 3]: filter 1 on rows 4..6, columns 6..8" in text
    assert "sum over channels:" in text and "plus bias" in text
    assert "Output (conv2d)" in text
    every = e.render(all_cells=True)
    assert every.count("sum over channels:") == 2 * 4 * 4


def test_output_size_formula_and_dropped_rows():
    assert output_size_formula(7, 3, 2, 1) == (
        "(W - F + 2P)/S + 1 = (7 - 3 + 2*1)/2 + 1 = 4", 4, 0)
    text, out, dropped = output_size_formula(8, 3, 2, 1, "H")
    assert (out, dropped) == (4, 1)
    assert text.endswith("= 4.5, rounded down to 4")
    with pytest.raises(ValueError, match="a window of 9 does not fit into an input of 5"):
        output_size_formula(5, 9, 1, 1)


def test_dropped_rows_are_reported_in_text():
    e = explain_conv(np.zeros((1, 8, 7), np.float32), np.ones((1, 1, 3, 3), np.float32),
                     stride=2, padding=1)
    text = e.render()
    assert "height: (H - F + 2P)/S + 1 = (8 - 3 + 2*1)/2 + 1 = 4.5, rounded down to 4" in text
    assert "warning: the last 1 row(s) of the padded input fit no window" in text


def test_pool_render_max_and_avg():
    x = np.arange(16, dtype=np.float32).reshape(1, 4, 4)
    text = explain_pool(x, 2).render(at=(0, 1, 1))
    assert "max(10, 11, 14, 15) = 15" in text
    avg = explain_pool(x, 2, mode="avg").cell(0, 0, 0)
    assert avg["terms"] == "(0 + 1 + 4 + 5)/4" and avg["value"] == 2.5
    padded = explain_pool(x, 3, stride=2, padding=1).cell(0, 0, 0)
    assert padded["terms"].startswith("max(-inf, -inf, -inf, -inf, 0")


def test_bad_arguments_are_named():
    x = np.zeros((3, 5, 5), np.float32)
    with pytest.raises(ValueError, match=r"weight has 2 channel\(s\) per filter but the input"):
        explain_conv(x, np.zeros((1, 2, 3, 3), np.float32))
    with pytest.raises(ValueError, match="one value per filter"):
        explain_conv(x, np.zeros((2, 3, 3, 3), np.float32), np.zeros(3, np.float32))
    e = explain_conv(x, np.zeros((2, 3, 3, 3), np.float32))
    with pytest.raises(ValueError, match="outside the output 2x3x3; filter must be 0..1"):
        e.cell(2, 0, 0)
    with pytest.raises(ValueError, match="padding 2 is more than half the window 3"):
        explain_pool(x, 3, padding=2)
    with pytest.raises(ValueError, match="mode: expected 'max' or 'avg'"):
        explain_pool(x, 2, mode="min")


def test_random_values_are_readable_and_seeded():
    a = random_values((3, 5, 5), 2, 3, seed=7)
    b = random_values((3, 5, 5), 2, 3, seed=7)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
        assert a[key].dtype == np.float32
    assert set(np.unique(a["input"])) <= {0, 1, 2}
    assert set(np.unique(a["weight"])) <= {-1, 0, 1}
    reals = random_values((1, 3, 3), 1, 2, seed=1, integers=False)
    assert np.all(np.round(reals["input"], 2) == reals["input"])


def test_load_values(tmp_path):
    x = np.arange(9, dtype=np.float32).reshape(3, 3)
    np.save(tmp_path / "x.npy", x)
    got = load_values(tmp_path / "x.npy")
    assert got["input"].shape == (1, 3, 3) and set(got) == {"input"}

    (tmp_path / "v.json").write_text(json.dumps(
        {"input": x[None].tolist(), "weight": [[[[1, 0], [0, 1]]]], "bias": [2]}))
    got = load_values(tmp_path / "v.json")
    e = explain_conv(got["input"], got["weight"], got["bias"])
    assert e.output[0].tolist() == [[6.0, 8.0], [12.0, 14.0]]

    np.savez(tmp_path / "v.npz", input=x[None], weight=np.ones((2, 1, 2, 2), np.float32))
    assert load_values(tmp_path / "v.npz")["weight"].shape == (2, 1, 2, 2)

    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="allow_pickle"):
        load_values(tmp_path / "obj.npy")
    (tmp_path / "bad.json").write_text(json.dumps({"input": [[1]], "kernel": [1]}))
    with pytest.raises(ValueError, match=r"unknown keys \['kernel'\]"):
        load_values(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="expected a .npy, .npz or .json file"):
        load_values(tmp_path / "v.txt")
