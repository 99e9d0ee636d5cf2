"""summary: shapes, parameter counts, multiply-adds, receptive fields and warnings."""

import json

import numpy as np
import pytest

from cnnlab import arch, nn
from cnnlab.inspect.summary import summary


def lenet5():
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
        nn.Linear(84, 10),
    )


def test_two_conv_layers_of_the_seed():
    # 32x32x3 -> six 5x5x3 filters -> 28x28x6 -> ten 5x5x6 filters -> 24x24x10
    s = summary(nn.Sequential(nn.Conv2d(3, 6, 5), nn.Conv2d(6, 10, 5)), (3, 32, 32))
    first, second = s.rows
    assert first["output_shape"] == [6, 28, 28] and second["output_shape"] == [10, 24, 24]
    assert (first["weights"], first["biases"], first["params"]) == (450, 6, 456)
    assert (second["weights"], second["biases"], second["params"]) == (1500, 10, 1510)
    assert first["mult_adds"] == 28 * 28 * 6 * 5 * 5 * 3
    assert second["mult_adds"] == 24 * 24 * 10 * 5 * 5 * 6
    assert (first["receptive_field"], first["jump"]) == ([5, 5], [1, 1])
    assert second["receptive_field"] == [9, 9]
    assert s.total_params == 456 + 1510 and s.warnings == []


def test_ten_filters_and_the_dense_equivalent():
    s = summary(arch.build("conv5x5x10", (3, 32, 32)), "3x32x32")
    (row,) = s.rows
    assert row["params"] == 760 and row["output_shape"] == [10, 28, 28]
    assert row["dense"] == {
        "in_features": 32 * 32 * 3, "out_features": 28 * 28 * 10,
        "weights": 32 * 32 * 3 * 28 * 28 * 10, "biases": 28 * 28 * 10,
        "params": 32 * 32 * 3 * 28 * 28 * 10 + 28 * 28 * 10,
    }
    text = str(s)
    assert "24,092,320" in text and "Parameter sharing" in text
    assert "3,072 (3x32x32)" in text and "7,840 (10x28x28)" in text


def test_lenet5_counts_and_receptive_fields():
    s = summary(lenet5(), (1, 28, 28))
    assert s.total_params == 61_706 == s.trainable_params
    assert [r["params"] for r in s.rows if r["params"]] == [156, 2416, 48120, 10164, 850]
    assert [r["output_shape"] for r in s.rows][:6] == [
        [6, 28, 28], [6, 28, 28], [6, 14, 14], [16, 10, 10], [16, 10, 10], [16, 5, 5]]
    assert s.output_shape == [10]
    assert [r["receptive_field"] for r in s.rows[:6]] == [[5, 5], [5, 5], [6, 6], [14, 14],
                                                          [14, 14], [16, 16]]
    assert [r["jump"] for r in s.rows[:6]] == [[1, 1], [1, 1], [2, 2], [2, 2], [2, 2], [4, 4]]
    assert s.rows[6]["receptive_field"] == "all" and s.rows[6]["jump"] is None
    assert s.total_mult_adds == 117_600 + 240_000 + 48_000 + 10_080 + 840
    # the preset of the same name agrees
    assert summary(arch.build("lenet5")).total_params == 61_706


def test_non_integer_output_size_warns():
    s = summary(nn.Sequential(nn.Conv2d(3, 10, 5, stride=2)), (3, 32, 32))
    assert s.rows[0]["output_shape"] == [10, 14, 14]
    (warning,) = s.warnings
    assert "(32 - 5 + 2*0)/2 + 1 = 14.5 is not a whole number" in warning
    assert "height and width" in warning and "silently dropped" in warning
    assert "warning: layer 0 (Conv2d, input 3x32x32)" in str(s)

    only_height = summary(nn.Sequential(nn.MaxPool2d(2)), (1, 5, 4))
    (warning,) = only_height.warnings
    assert "height: (H - F + 2P)/S + 1 = (5 - 2 + 2*0)/2 + 1 = 2.5" in warning
    assert summary(nn.Sequential(nn.MaxPool2d(2)), (1, 4, 4)).warnings == []


def test_table_text_and_print_fn():
    lines = []
    s = summary(lenet5(), (1, 28, 28), print_fn=lines.append)
    assert "\n".join(lines) == str(s) == repr(s)
    header = lines[0].split()
    assert header[:3] == ["layer", "type", "output"]
    for word in ("weights", "biases", "params", "mult-adds", "RF", "jump"):
        assert word in header
    assert any(line.startswith("parameters: 61,706") for line in lines)
    assert any("Linear 400->120" in line for line in lines)


def test_to_dict_is_json():
    d = summary(lenet5(), (1, 28, 28)).to_dict()
    d2 = json.loads(json.dumps(d))
    assert d2["totals"]["params"] == 61_706
    assert d2["input_shape"] == [1, 28, 28] and d2["output_shape"] == [10]
    assert d2["layers"][0]["type"] == "Conv2d" and d2["layers"][0]["dense"]["params"] > 0


def test_model_is_left_as_it_was():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
    model.train()
    before = {k: v.copy() for k, v in model.state_dict().items()}
    summary(model, (1, 6, 6))
    summary(model, (1, 6, 6))
    assert model.training and all(m.training for m in model.modules())
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k])
    # hooks are gone: a later summary sees each layer once
    assert [r["name"] for r in summary(model, (1, 6, 6)).rows] == ["0", "1", "2"]


def test_module_summary_and_spec_shape():
    model = arch.build("conv3x3x4-relu-fc3", (1, 6, 6))
    assert model.summary((1, 6, 6)).total_params == summary(model).total_params
    with pytest.raises(ValueError, match="needs the input shape of one sample"):
        summary(nn.Sequential(nn.ReLU()))


def test_input_that_does_not_fit_names_the_layer():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(50, 2))
    with pytest.raises(ValueError, match=r"an input of 1x8x8 does not fit .* after layer 1"):
        summary(model, (1, 8, 8))
