"""Error messages at the boundary: each names the layer or op, the expected value, what it
got (with the full shape) and, where it can, what to do."""

from __future__ import annotations

import re

import numpy as np
import pytest

import cnnlab
from cnnlab import Tensor, nn
from cnnlab.nn import functional as F
from cnnlab.shape import conv_output_size, pair


def image(*shape: int) -> Tensor:
    return Tensor(np.zeros(shape, np.float32))


# ----- convolution --------------------------------------------------------------------------


def test_conv_on_image_with_wrong_channel_count(seeded):
    with pytest.raises(ValueError) as info:
        nn.Conv2d(3, 6, 5)(image(1, 1, 32, 32))
    message = str(info.value)
    assert message.startswith("Conv2d(3, 6, kernel_size=(5, 5))")  # names the layer
    assert re.search(r"expected input with 3 channels", message)
    assert re.search(r"got 1 channels? in input of shape \(1, 1, 32, 32\)", message)


def test_functional_conv_channel_mismatch_names_filter_depth():
    with pytest.raises(ValueError, match=r"conv2d expected input with 3 channels \(each filter "
                                         r"is 5x5x3\), got 2 channels in input of shape "
                                         r"\(4, 2, 8, 8\)"):
        F.conv2d(image(4, 2, 8, 8), image(6, 3, 5, 5))


@pytest.mark.parametrize("shape", [(3, 32, 32), (32, 32), (1, 1, 3, 32, 32)])
def test_conv_wrong_number_of_dims(shape, seeded):
    full = re.escape(str(shape))
    with pytest.raises(ValueError, match=rf"Conv2d\(3, 6, kernel_size=\(5, 5\)\).*expects a "
                                         rf"4-D input \(N, C, H, W\), got {len(shape)}-D input "
                                         rf"of shape {full}"):
        nn.Conv2d(3, 6, 5)(image(*shape))


def test_conv_3d_input_suggests_a_batch_dimension(seeded):
    with pytest.raises(ValueError, match=r"for a single image use x\.reshape\(1, 3, 32, 32\)"):
        nn.Conv2d(3, 6, 5)(image(3, 32, 32))


def test_conv_kernel_larger_than_padded_input(seeded):
    with pytest.raises(ValueError, match=r"Conv2d\(3, 6, kernel_size=\(5, 5\), padding=\(1, 1\)"
                                         r"\).*cannot be applied to input of shape "
                                         r"\(2, 3, 2, 2\): kernel spans 5 .* padded input is "
                                         r"only 4 \(2 \+ 2\*1\)"):
        nn.Conv2d(3, 6, 5, padding=1)(image(2, 3, 2, 2))


def test_dilated_kernel_span_counts(seeded):
    with pytest.raises(ValueError, match=r"kernel spans 5 \(kernel 3, dilation 2\) but the "
                                         r"padded input is only 4"):
        nn.Conv2d(1, 1, 3, dilation=2)(image(1, 1, 4, 9))


def test_pool_empty_output():
    with pytest.raises(ValueError, match=r"MaxPool2d\(kernel_size=\(3, 3\)\).*max_pool2d cannot "
                                         r"be applied to input of shape \(1, 3, 2, 2\)"):
        nn.MaxPool2d(3)(image(1, 3, 2, 2))
    with pytest.raises(ValueError, match=r"avg_pool2d cannot be applied to input of shape "
                                         r"\(1, 1, 1, 5\)"):
        F.avg_pool2d(image(1, 1, 1, 5), 2)


@pytest.mark.parametrize("args, match", [
    ((5, 5), "kernel spans 5"),
    ((0, 1), "kernel spans 1 .* padded input is only 0"),
    ((3, 0), "kernel size must be at least 1, got 0"),
    ((3, 1, 0), "stride must be at least 1, got 0"),
    ((3, 1, 1, -1), "padding must be at least 0, got -1"),
    ((3, 1, 1, 0, 0), "dilation must be at least 1, got 0"),
])
def test_conv_output_size_refuses_empty_or_invalid(args, match):
    # (size, kernel, stride, padding, dilation); 5 with kernel 5 is fine, 4 is not.
    if args == (5, 5):
        assert conv_output_size(5, 5) == 1
        args = (4, 5)
    with pytest.raises(ValueError, match=match):
        conv_output_size(*args)


def test_groups_must_divide():
    with pytest.raises(ValueError, match=r"Conv2d: groups=2 must divide both in_channels=3 and "
                                         r"out_channels=6"):
        nn.Conv2d(3, 6, 3, groups=2)
    with pytest.raises(ValueError, match=r"Conv2d: groups=4 must divide both in_channels=4 and "
                                         r"out_channels=6"):
        nn.Conv2d(4, 6, 3, groups=4)
    with pytest.raises(ValueError, match=r"conv2d: groups=2 must divide both the input channels "
                                         r"\(4\) and the number of filters \(3\)"):
        F.conv2d(image(1, 4, 4, 4), image(3, 2, 3, 3), groups=2)


def test_conv_bias_shape():
    with pytest.raises(ValueError, match=r"conv2d: bias must have shape \(2,\), got \(3,\)"):
        F.conv2d(image(1, 1, 4, 4), image(2, 1, 3, 3), image(3))


@pytest.mark.parametrize("kwargs, match", [
    (dict(in_channels=0), "Conv2d: in_channels must be a positive integer, got 0"),
    (dict(out_channels=2.5), "Conv2d: out_channels must be a positive integer, got 2.5"),
    (dict(stride=0), r"stride and dilation must be >= 1 and padding >= 0"),
    (dict(padding=-1), r"stride and dilation must be >= 1 and padding >= 0"),
    (dict(kernel_size="same"), "kernel_size must be an int or a pair of ints, got 'same'"),
    (dict(kernel_size=(1, 2, 3)), r"kernel_size must be an int or a pair of ints, got "
                                  r"\(1, 2, 3\)"),
])
def test_conv_constructor_arguments(kwargs, match):
    args = dict(in_channels=3, out_channels=6, kernel_size=3) | kwargs
    with pytest.raises(ValueError, match=match):
        nn.Conv2d(**args)


def test_pool_constructor_arguments():
    with pytest.raises(ValueError, match=r"MaxPool2d: padding \(2, 2\) must be at most half the "
                                         r"kernel size \(2, 2\)"):
        nn.MaxPool2d(2, padding=2)
    with pytest.raises(ValueError, match=r"max_pool2d: padding \(2, 2\) must be at most half"):
        F.max_pool2d(image(1, 1, 8, 8), 3, padding=2)
    with pytest.raises(ValueError, match="AvgPool2d: kernel_size and stride must be >= 1"):
        nn.AvgPool2d(2, stride=0)


def test_pair_rejects_bools_and_wrong_lengths():
    assert pair(3) == (3, 3) and pair((2, 5)) == (2, 5) and pair(np.int64(4)) == (4, 4)
    for bad in (True, (1,), None, "ab"):
        with pytest.raises(ValueError, match="stride must be an int or a pair of ints"):
            pair(bad, "stride")


def test_checks_remembered_for_a_shape_still_reject_a_bool_or_accept_a_list():
    # The shape checks are cached per argument set; True must not hit the entry for 1.
    x, w = image(1, 1, 4, 4), cnnlab.Tensor(np.ones((1, 1, 2, 2), np.float32))
    F.conv2d(x, w, stride=1)
    F.max_pool2d(x, 2, stride=1)
    with pytest.raises(ValueError, match="stride must be an int or a pair of ints, got True"):
        F.conv2d(x, w, stride=True)
    with pytest.raises(ValueError, match="stride must be an int or a pair of ints, got True"):
        F.max_pool2d(x, 2, stride=True)
    assert F.max_pool2d(x, [2, 2]).shape == (1, 1, 2, 2)  # unhashable: checked uncached


def test_adaptive_pool_must_divide():
    with pytest.raises(ValueError, match=r"adaptive_avg_pool2d: output size \(2, 2\) must divide "
                                         r"the input size \(5, 5\)"):
        nn.AdaptiveAvgPool2d(2)(image(1, 1, 5, 5))


# ----- linear -------------------------------------------------------------------------------


def test_linear_feature_mismatch(seeded):
    with pytest.raises(ValueError, match=r"Linear\(in_features=400, out_features=120\) expected "
                                         r"input with 400 features in its last dimension, got "
                                         r"input of shape \(2, 256\); add a Flatten"):
        nn.Linear(400, 120)(image(2, 256))


def test_functional_linear_feature_mismatch_suggests_flatten():
    with pytest.raises(ValueError, match=r"linear expected input with 4 features .* got input "
                                         r"of shape \(2, 1, 2, 2\); did you forget a Flatten"):
        F.linear(image(2, 1, 2, 2), image(3, 4))


# ----- losses -------------------------------------------------------------------------------


def test_cross_entropy_label_out_of_range():
    with pytest.raises(ValueError, match=r"cross_entropy: target labels must be in \[0, 9\] for "
                                         r"10 classes, found 10 \(1 out of range\); does the last "
                                         r"layer have as many outputs"):
        F.cross_entropy(image(2, 10), [3, 10])
    with pytest.raises(ValueError, match=r"found -1 \(2 out of range\)"):
        F.cross_entropy(image(3, 10), np.array([-1, 0, -2]))


@pytest.mark.parametrize("target, match", [
    ([3], r"expects 2 integer labels of shape \(2,\) for logits of shape \(2, 10\), got target "
          r"of shape \(1,\)"),
    ([0.5, 1.0], "expects integer class labels, got dtype float64"),
])
def test_cross_entropy_bad_targets(target, match):
    with pytest.raises(ValueError, match=match):
        F.cross_entropy(image(2, 10), target)


def test_cross_entropy_bad_logits_and_reduction():
    with pytest.raises(ValueError, match=r"expects logits of shape \(N, C\), got \(2, 3, 4\)"):
        F.cross_entropy(image(2, 3, 4), [0, 1])
    with pytest.raises(ValueError, match="reduction must be 'mean', 'sum' or 'none', got 'avg'"):
        F.cross_entropy(image(2, 10), [0, 1], reduction="avg")


def test_cross_entropy_accepts_integral_float_and_tensor_labels():
    a = F.cross_entropy(Tensor(np.eye(3)), [0.0, 1.0, 2.0]).item()
    b = F.cross_entropy(Tensor(np.eye(3)), Tensor(np.arange(3))).item()
    assert a == b


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_cross_entropy_raises(bad):
    logits = np.zeros((2, 3), np.float32)
    logits[1, 2] = bad
    with pytest.raises(cnnlab.NonFiniteLossError, match=r"cross_entropy: the loss is (nan|inf) "
                                                        r"\(expected a finite number\)"):
        F.cross_entropy(Tensor(logits), [0, 2])


def test_non_finite_mse_raises():
    with pytest.raises(cnnlab.NonFiniteLossError, match="mse_loss: the loss is inf"):
        F.mse_loss(Tensor(np.array([1e30], np.float32)), [0.0])  # overflows float32
    with pytest.raises(cnnlab.NonFiniteLossError, match="lower the learning rate"):
        F.mse_loss(Tensor(np.array([np.nan, 1.0])), [0.0, 0.0], reduction="none")


def test_non_finite_loss_error_is_a_floating_point_error():
    assert issubclass(cnnlab.NonFiniteLossError, FloatingPointError)


def test_mse_shape_mismatch():
    with pytest.raises(ValueError, match=r"mse_loss expects input and target of the same shape, "
                                         r"got \(2, 3\) and \(3, 2\)"):
        F.mse_loss(image(2, 3), np.zeros((3, 2)))


# ----- dropout, batch norm ------------------------------------------------------------------


@pytest.mark.parametrize("p", [-0.1, 1.5, float("nan")])
def test_bad_dropout_probability(p):
    with pytest.raises(ValueError, match=r"Dropout: p must be in \[0, 1\], got"):
        nn.Dropout(p)
    with pytest.raises(ValueError, match=r"dropout probability must be in \[0, 1\], got"):
        F.dropout(image(2, 2), p)


def test_batchnorm_channel_mismatch_and_single_value():
    with pytest.raises(ValueError, match=r"BatchNorm2d\(3, eps=1e-05, momentum=0.1\) expected "
                                         r"input \(N, 3, H, W\), got shape \(1, 1, 4, 4\)"):
        nn.BatchNorm2d(3)(image(1, 1, 4, 4))
    with pytest.raises(ValueError, match=r"batch_norm needs more than one value per channel in "
                                         r"training, got input of shape \(1, 3, 1, 1\); use a "
                                         r"larger batch or eval\(\)"):
        nn.BatchNorm2d(3)(image(1, 3, 1, 1))
    nn.BatchNorm2d(3).eval()(image(1, 3, 1, 1))  # fine in eval mode


# ----- containers ---------------------------------------------------------------------------


def test_sequential_prefixes_layer_index(seeded):
    net = nn.Sequential(nn.Conv2d(1, 6, 5), nn.ReLU(), nn.Flatten(), nn.Linear(10, 2))
    with pytest.raises(ValueError, match=r"^layer 3: Linear\(in_features=10, out_features=2\) "
                                         r"expected input with 10 features in its last "
                                         r"dimension, got input of shape \(1, 4704\)"):
        net(image(1, 1, 32, 32))


def test_nested_sequential_gives_the_dotted_path(seeded):
    net = nn.Sequential(nn.ReLU(), nn.Sequential(nn.Tanh(), nn.Conv2d(3, 6, 5)))
    with pytest.raises(ValueError, match=r"^layer 1\.1: Conv2d\(3, 6, kernel_size=\(5, 5\)\): "
                                         r"conv2d expected input with 3 channels") as info:
        net(image(1, 1, 32, 32))
    assert str(info.value).count("layer ") == 1


def test_sequential_rejects_non_modules():
    with pytest.raises(TypeError, match="Sequential: item 1 is int, not a Module"):
        nn.Sequential(nn.ReLU(), 3)


def test_module_without_super_init():
    class Broken(nn.Module):
        def __init__(self):
            self.fc = nn.Linear(2, 2)

        def forward(self, x):
            return self.fc(x)

    with pytest.raises(RuntimeError, match=r"Broken.__init__ must call super\(\).__init__\(\)"):
        Broken()(image(1, 2))


def test_forward_not_implemented():
    with pytest.raises(NotImplementedError, match="Module must implement forward"):
        nn.Module()(image(1))
