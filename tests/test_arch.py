"""Architecture strings: parsing, canonical strings, building with inferred shapes."""

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cnnlab
from cnnlab import arch

LENET = "conv5x5x6p2-relu-pool2-conv5x5x16-relu-pool2-fc120-relu-fc84-relu-fc10"


# ----------------------------------------------------------------------------- parse


@pytest.mark.parametrize(
    "token, spec",
    [
        (
            "conv5x5x6",
            {"type": "conv", "kernel_size": [5, 5], "out_channels": 6, "stride": 1, "padding": 0},
        ),
        (
            "conv3x3x32s1p1",
            {"type": "conv", "kernel_size": [3, 3], "out_channels": 32, "stride": 1, "padding": 1},
        ),
        (
            "conv3x5x8s2",
            {"type": "conv", "kernel_size": [3, 5], "out_channels": 8, "stride": 2, "padding": 0},
        ),
        ("pool2", {"type": "maxpool", "kernel_size": 2, "stride": 2, "padding": 0}),
        ("maxpool2", {"type": "maxpool", "kernel_size": 2, "stride": 2, "padding": 0}),
        ("pool3s2", {"type": "maxpool", "kernel_size": 3, "stride": 2, "padding": 0}),
        ("pool3s2p1", {"type": "maxpool", "kernel_size": 3, "stride": 2, "padding": 1}),
        ("avgpool2", {"type": "avgpool", "kernel_size": 2, "stride": 2, "padding": 0}),
        ("gap", {"type": "gap"}),
        ("relu", {"type": "relu"}),
        ("lrelu", {"type": "leakyrelu", "negative_slope": 0.01}),
        ("leakyrelu0.2", {"type": "leakyrelu", "negative_slope": 0.2}),
        ("sigmoid", {"type": "sigmoid"}),
        ("tanh", {"type": "tanh"}),
        ("bn", {"type": "bn"}),
        ("dropout", {"type": "dropout", "p": 0.5}),
        ("dropout0.25", {"type": "dropout", "p": 0.25}),
        ("dropout.1", {"type": "dropout", "p": 0.1}),
        ("flatten", {"type": "flatten"}),
        ("fc120", {"type": "fc", "out_features": 120}),
    ],
)
def test_parse_each_token(token, spec):
    assert arch.parse(token) == [spec]


def test_parse_lenet_and_canonical_round_trip():
    specs = arch.parse(LENET)
    assert [s["type"] for s in specs] == [
        "conv",
        "relu",
        "maxpool",
        "conv",
        "relu",
        "maxpool",
        "fc",
        "relu",
        "fc",
        "relu",
        "fc",
    ]
    assert arch.to_string(specs) == LENET
    assert arch.to_string(LENET) == LENET


@pytest.mark.parametrize(
    "text, canonical",
    [
        ("maxpool2s2", "pool2"),
        ("pool2s1", "pool2s1"),
        ("conv3x3x8s1p0", "conv3x3x8"),
        ("leakyrelu0.01", "lrelu"),
        ("dropout0.50", "dropout"),
        ("Conv3x3x8P1-ReLU-FC10", "conv3x3x8p1-relu-fc10"),
        (" conv3x3x8 - relu ", "conv3x3x8-relu"),
    ],
)
def test_to_string_is_canonical(text, canonical):
    assert arch.to_string(arch.parse(text)) == canonical


def test_unknown_layer_message_points_at_the_token():
    with pytest.raises(ValueError) as info:
        arch.parse("conx5x5x6-relu-pool2")
    message = str(info.value)
    assert message.startswith(
        "unknown layer 'conx5x5x6' at position 1 (characters 0-8): expected one of "
        "conv<K>x<K>x<F>[s<S>][p<P>], pool<K>[s<S>][p<P>], "
    )
    assert "did you mean 'conv5x5x6'?" in message
    assert message.endswith("\n  conx5x5x6-relu-pool2\n  ^^^^^^^^^")


def test_error_positions_later_in_the_string():
    with pytest.raises(ValueError) as info:
        arch.parse("conv3x3x8-relu-poool2-fc10")
    message = str(info.value)
    assert "'poool2' at position 3 (characters 15-20)" in message
    assert message.endswith("\n  conv3x3x8-relu-poool2-fc10\n                 ^^^^^^")


@pytest.mark.parametrize(
    "text, pattern",
    [
        (
            "conv5x5-relu",
            r"malformed conv layer 'conv5x5' at position 1 \(characters 0-6\): "
            r"expected conv<K>x<K>x<F>\[s<S>\]\[p<P>\], e\.g\. conv3x3x32s1p1",
        ),
        ("relu-fc", r"malformed fc layer 'fc' at position 2 \(characters 5-6\)"),
        ("relu6", r"malformed relu layer 'relu6'.*expected just 'relu'"),
        ("conv3x3x8--relu", r"empty layer at position 2 \(character 10\)"),
        ("-relu", r"empty layer at position 1 \(character 0\)"),
        ("relu-", r"empty layer at position 2 \(character 5\)"),
        ("", r"empty architecture"),
        ("   ", r"empty architecture"),
        (
            "fc0",
            r"bad value in 'fc0' at position 1 \(characters 0-2\): fc width must be at least 1",
        ),
        ("conv0x3x8", r"conv kernel size must be at least 1, got 0"),
        ("conv3x3x8s0", r"conv stride must be at least 1, got 0"),
        ("pool2p2", r"pool padding must be at most half the kernel size"),
        ("dropout1", r"dropout probability must be in \[0, 1\), got 1\.0"),
        ("fc99999999", r"fc width must be at most 1000000"),
        ("lenet", r"did you mean the preset 'lenet5'\?"),
        ("banana", r"\(or a preset: lenet5, digits, cifar-small, mnist, mnist-large\)"),
        ("relu-tahn", r"unknown layer 'tahn'.*did you mean 'tanh'\?"),
        ("conv3x3x8p1s2", r"malformed conv layer 'conv3x3x8p1s2'"),
        ("conv٣x3x8", r"malformed conv layer"),  # non-ASCII digits are not numbers here
    ],
)
def test_parse_errors(text, pattern):
    with pytest.raises(ValueError, match=pattern):
        arch.parse(text)


def test_parse_rejects_non_strings():
    with pytest.raises(ValueError, match="must be a string, got int"):
        arch.parse(5)


@pytest.mark.parametrize(
    "specs, pattern",
    [
        ([{"type": "convolution"}], r"layer 1: unknown layer type 'convolution'"),
        ([{"type": "relu"}, {"type": "fc"}], r"layer 2: fc needs 'out_features'"),
        ([{"type": "fc", "out_features": 3, "bias": False}], r"fc has no field 'bias'"),
        ([{"type": "conv", "kernel_size": [3], "out_channels": 4}], r"kernel_size must be"),
        ([{"type": "fc", "out_features": 2.5}], r"fc width must be an integer, got 2\.5"),
        ([{"type": "fc", "out_features": True}], r"must be an integer, got True"),
        ([{"type": "leakyrelu", "negative_slope": -0.1}], r"slope must be >= 0"),
        ([{"type": "dropout", "p": float("nan")}], r"must be finite"),
        (["relu"], r"a layer spec must be a dict"),
        ([], r"empty architecture"),
        ({"type": "relu"}, r"expected a list of layer specs, got dict"),
    ],
)
def test_to_string_rejects_bad_specs(specs, pattern):
    with pytest.raises(ValueError, match=pattern):
        arch.to_string(specs)


def test_to_string_accepts_int_kernel_and_tuples():
    assert arch.to_string([{"type": "conv", "kernel_size": 3, "out_channels": 4}]) == "conv3x3x4"
    assert arch.to_string(({"type": "conv", "kernel_size": (1, 7), "out_channels": 4},)) == (
        "conv1x7x4"
    )


# ----------------------------------------------------------------------------- hypothesis

_ints = st.integers(1, 64)
_unit = st.floats(0, 1, exclude_max=True, allow_subnormal=True)
_layer = st.one_of(
    st.builds(
        lambda kh, kw, f, s, p: {
            "type": "conv",
            "kernel_size": [kh, kw],
            "out_channels": f,
            "stride": s,
            "padding": p,
        },
        _ints,
        _ints,
        _ints,
        _ints,
        st.integers(0, 8),
    ),
    st.integers(1, 9).flatmap(
        lambda k: st.builds(
            lambda kind, s, p: {"type": kind, "kernel_size": k, "stride": s, "padding": p},
            st.sampled_from(["maxpool", "avgpool"]),
            st.integers(1, 9),
            st.integers(0, k // 2),
        )
    ),
    st.sampled_from([{"type": t} for t in ("gap", "relu", "sigmoid", "tanh", "bn", "flatten")]),
    st.builds(lambda a: {"type": "leakyrelu", "negative_slope": a}, st.floats(0, 10)),
    st.builds(lambda p: {"type": "dropout", "p": p}, _unit),
    st.builds(lambda n: {"type": "fc", "out_features": n}, st.integers(1, 10_000)),
)


@given(st.lists(_layer, min_size=1, max_size=12))
def test_specs_survive_to_string_and_parse(specs):
    text = arch.to_string(specs)
    assert arch.parse(text) == specs
    assert arch.to_string(arch.parse(text)) == text


_ALPHABET = "convpoolavgmaxgapreluktanhsigmdbnfcflatx0123456789.-sp "


@given(st.text(alphabet=_ALPHABET, max_size=40))
@settings(max_examples=300)
def test_fuzz_near_valid_strings_give_value_error_or_specs(text):
    try:
        specs = arch.parse(text)
    except ValueError as exc:
        assert str(exc)
    else:
        assert arch.parse(arch.to_string(specs)) == specs


@given(st.text(max_size=30))
@settings(max_examples=200)
def test_fuzz_any_text_gives_value_error_or_specs(text):
    try:
        arch.parse(text)
    except ValueError:
        pass


@given(
    st.lists(
        st.one_of(
            st.none(),
            st.integers(),
            st.text(max_size=5),
            st.dictionaries(
                st.sampled_from(["type", "p", "kernel_size", "x"]),
                st.one_of(st.text(max_size=4), st.integers(-3, 3), st.floats(), st.none()),
            ),
        ),
        max_size=4,
    )
)
def test_fuzz_bad_specs_give_value_error(specs):
    try:
        arch.to_string(specs)
    except ValueError:
        pass


# ----------------------------------------------------------------------------- build


def _forward(model, input_shape, batch=2):
    x = np.random.default_rng(0).standard_normal((batch, *input_shape)).astype(np.float32)
    with cnnlab.no_grad():
        return model(cnnlab.tensor(x)).data


def test_build_lenet_infers_channels_and_features():
    model = arch.build(LENET, input_shape=(1, 28, 28))
    kinds = [type(m).__name__ for m in model]
    assert kinds == [
        "Conv2d",
        "ReLU",
        "MaxPool2d",
        "Conv2d",
        "ReLU",
        "MaxPool2d",
        "Flatten",
        "Linear",
        "ReLU",
        "Linear",
        "ReLU",
        "Linear",
    ]
    assert (model[0].in_channels, model[0].out_channels, model[0].padding) == (1, 6, (2, 2))
    assert (model[3].in_channels, model[3].out_channels) == (6, 16)
    assert (model[7].in_features, model[9].in_features, model[11].out_features) == (400, 120, 10)
    assert _forward(model, (1, 28, 28)).shape == (2, 10)
    assert model.spec == {
        "arch": LENET,
        "input_shape": [1, 28, 28],
        "classes": None,
        "normalization": None,
    }


def test_build_every_layer_kind():
    model = arch.build(
        "conv3x5x8s2p1-bn-lrelu0.2-pool3s2p1-avgpool2-dropout0.1-tanh-sigmoid-relu-gap-fc4",
        input_shape=(3, 20, 24),
    )
    kinds = [type(m).__name__ for m in model]
    assert kinds == [
        "Conv2d",
        "BatchNorm2d",
        "LeakyReLU",
        "MaxPool2d",
        "AvgPool2d",
        "Dropout",
        "Tanh",
        "Sigmoid",
        "ReLU",
        "AdaptiveAvgPool2d",
        "Flatten",
        "Linear",
    ]
    assert model[0].kernel_size == (3, 5) and model[0].stride == (2, 2)
    assert model[1].num_features == 8 and model[2].negative_slope == 0.2
    assert model[3].kernel_size == (3, 3) and model[3].stride == (2, 2)
    assert model[5].p == 0.1 and model[11].in_features == 8
    model.eval()
    assert _forward(model, (3, 20, 24)).shape == (2, 4)


def test_plan_shapes_match_the_forward_pass():
    text = "conv3x3x4p1-pool2-conv3x5x6s2-gap-flatten-fc3"
    steps = arch.plan(text, (2, 16, 16))
    assert [s["output_shape"] for s in steps] == [
        (4, 16, 16),
        (4, 8, 8),
        (6, 3, 2),
        (6, 1, 1),
        (6,),
        (3,),
    ]
    assert not any(s["auto"] for s in steps)  # flatten was given explicitly
    model = arch.build(text, (2, 16, 16))
    seen = []
    for layer in model:
        layer.register_forward_hook(lambda m, i, o: seen.append(o.shape[1:]))
    _forward(model, (2, 16, 16))
    assert seen == [s["output_shape"] for s in steps]


def test_flatten_is_inserted_once_before_the_first_fc():
    steps = arch.plan("conv3x3x4-fc8-relu-fc2", (1, 5, 5))
    assert [(s["token"], s["auto"]) for s in steps] == [
        ("conv3x3x4", False),
        ("flatten", True),
        ("fc8", False),
        ("relu", False),
        ("fc2", False),
    ]
    model = arch.build("conv3x3x4-fc8-relu-fc2", (1, 5, 5))
    assert model.spec["arch"] == "conv3x3x4-fc8-relu-fc2"  # the auto flatten is not stored


def test_build_accepts_a_spec_list_and_a_preset_name():
    model = arch.build(arch.parse("conv3x3x4-relu-fc2"), (1, 6, 6))
    assert model.spec["arch"] == "conv3x3x4-relu-fc2"
    assert arch.build("LeNet5").spec["input_shape"] == [1, 28, 28]


def test_empty_output_names_token_and_shape():
    with pytest.raises(ValueError) as info:
        arch.build("conv5x5x6-relu-pool2-conv5x5x16-pool2", (1, 12, 12))
    message = str(info.value)
    assert message.startswith(
        "'conv5x5x16' at position 4 (characters 21-30) would produce an empty output from "
        "input shape (6, 4, 4): kernel spans 5"
    )
    assert message.endswith("\n  conv5x5x6-relu-pool2-conv5x5x16-pool2\n" + " " * 23 + "^" * 10)


def test_empty_output_of_a_pool_and_of_a_spec_list():
    with pytest.raises(ValueError, match=r"'pool2' at position 2 .* input shape \(4, 1, 1\)"):
        arch.build("conv3x3x4-pool2", (1, 3, 3))
    specs = arch.parse("conv3x3x4-pool2")
    with pytest.raises(ValueError, match=r"^layer 2 \(pool2\) would produce an empty output"):
        arch.build(specs, (1, 3, 3))


@pytest.mark.parametrize(
    "text, pattern",
    [
        (
            "fc10-conv3x3x4",
            r"'conv3x3x4' at position 2 .* needs feature maps \(C, H, W\), but "
            r"its input is already flat with shape \(10,\)",
        ),
        ("flatten-bn", r"'bn' at position 2 .* already flat with shape \(16,\)"),
        ("fc10-gap", r"'gap' at position 2"),
    ],
)
def test_layers_that_need_feature_maps(text, pattern):
    with pytest.raises(ValueError, match=pattern):
        arch.build(text, (1, 4, 4))


@pytest.mark.parametrize(
    "shape, pattern",
    [
        (None, r"input_shape is required for an architecture string: pass \(C, H, W\)"),
        ((28, 28), r"input_shape must be \(C, H, W\) with positive ints.*got \(28, 28\)"),
        ((1, 0, 28), r"got \(1, 0, 28\)"),
        ((1, 28.0, 28), r"positive ints"),
        (5, r"got 5"),
    ],
)
def test_bad_input_shape(shape, pattern):
    with pytest.raises(ValueError, match=pattern):
        arch.build("conv3x3x4-fc2", shape)


def test_num_classes_replaces_the_last_fc():
    model = arch.build("lenet5", num_classes=3)
    assert model[-1].out_features == 3
    assert model.spec["arch"].endswith("-fc84-relu-fc3")
    assert _forward(model, (1, 28, 28)).shape == (2, 3)


def test_num_classes_is_checked_when_the_net_does_not_end_in_fc():
    model = arch.build("conv1x1x5-gap-flatten", (3, 4, 4), num_classes=5)
    assert _forward(model, (3, 4, 4)).shape == (2, 5)
    with pytest.raises(
        ValueError,
        match=r"num_classes=3, but the architecture ends with output "
        r"shape \(5, 1, 1\); end it with an fc layer",
    ):
        arch.build("conv1x1x5-gap", (3, 4, 4), num_classes=3)
    with pytest.raises(ValueError, match="num_classes must be at least 1"):
        arch.build("fc2", (1, 2, 2), num_classes=0)


@pytest.mark.parametrize("name", sorted(arch.PRESETS))
def test_presets_build_and_run(name):
    model = arch.build(name)
    assert model.spec["input_shape"] == list(arch.PRESET_INPUT_SHAPES[name])
    assert arch.resolve(name) == arch.PRESETS[name] == model.spec["arch"]
    model.eval()
    assert _forward(model, arch.PRESET_INPUT_SHAPES[name]).shape == (2, 10)
    assert name in arch.PRESET_NOTES


def test_build_is_reproducible_under_manual_seed():
    cnnlab.manual_seed(3)
    a = arch.build("conv3x3x4-fc2", (1, 5, 5)).state_dict()
    cnnlab.manual_seed(3)
    b = arch.build("conv3x3x4-fc2", (1, 5, 5)).state_dict()
    assert all(np.array_equal(a[k], b[k]) for k in a)


_buildable = st.lists(
    st.sampled_from(
        [
            "conv3x3x4p1",
            "conv1x3x3",
            "conv2x2x2s2",
            "pool2",
            "pool3s1p1",
            "avgpool2",
            "bn",
            "relu",
            "lrelu",
            "tanh",
            "dropout0.1",
            "gap",
        ]
    ),
    max_size=6,
)


@given(
    _buildable,
    st.integers(1, 3),
    st.integers(1, 12),
    st.integers(1, 12),
    st.lists(st.integers(1, 16), max_size=2),
)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_built_models_match_their_plan(tokens, c, h, w, widths):
    text = "-".join(tokens + [f"fc{n}" for n in widths]) or "flatten"
    try:
        steps = arch.plan(text, (c, h, w))
    except ValueError as exc:
        assert "would produce an empty output" in str(exc)
        return
    model = arch.build(text, (c, h, w)).eval()
    out = _forward(model, (c, h, w), batch=1)
    assert out.shape[1:] == steps[-1]["output_shape"]
    assert len(model) == len(steps)
    want = math.prod(steps[-1]["output_shape"])
    assert out.size == want


def _torch_layer(torch, spec, channels):
    kind = spec["type"]
    if kind == "conv":
        return torch.nn.Conv2d(
            channels,
            spec["out_channels"],
            tuple(spec["kernel_size"]),
            spec["stride"],
            spec["padding"],
        )
    if kind in ("maxpool", "avgpool"):
        cls = torch.nn.MaxPool2d if kind == "maxpool" else torch.nn.AvgPool2d
        return cls(spec["kernel_size"], spec["stride"], spec["padding"])
    if kind == "leakyrelu":
        return torch.nn.LeakyReLU(spec["negative_slope"])
    if kind == "fc":
        return torch.nn.Linear(channels, spec["out_features"])
    return {"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh, "flatten": torch.nn.Flatten}[kind]()


def test_built_model_matches_torch():
    torch = pytest.importorskip("torch")
    text = "conv3x5x4s2p1-relu-pool3s2p1-conv3x3x6p1-lrelu0.2-avgpool2-fc7-tanh-fc3"
    model = arch.build(text, (2, 17, 19)).double().eval()
    reference = torch.nn.Sequential(
        *[
            _torch_layer(torch, step["spec"], step["input_shape"][0])
            for step in arch.plan(text, (2, 17, 19))
        ]
    ).double()
    reference.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})
    x = np.random.default_rng(1).standard_normal((3, 2, 17, 19))
    with cnnlab.no_grad():
        ours = model(cnnlab.tensor(x)).data
    with torch.no_grad():
        theirs = reference(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12)


def test_error_messages_never_leak_other_exceptions():
    # Braces and odd characters in tokens are shown, not interpreted.
    for text in ["con{0}", "fc{}", "conv%sx3", "{where}", "\x00", "conv3x3x8-\n-relu"]:
        with pytest.raises(ValueError) as info:
            arch.parse(text)
        assert text.strip().split("-")[0] in str(info.value)
