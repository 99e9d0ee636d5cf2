"""Batch transforms: exact values for crops and flips, normalization, statistics."""

import numpy as np
import pytest

from cnnlab.data import Compose, Normalize, RandomCrop, RandomHorizontalFlip, compute_mean_std


def batch(n=4, c=2, h=5, w=6, seed=0):
    return np.random.default_rng(seed).random((n, c, h, w), dtype=np.float32)


def test_random_crop_matches_a_loop_over_samples():
    x = batch()
    size, pad = (4, 3), 2
    out = RandomCrop(size, padding=pad)(x, generator=np.random.default_rng(11))
    assert out.shape == (4, 2, 4, 3) and out.dtype == np.float32
    # Same draws, done slowly: one offset pair per sample, zero padding.
    rng = np.random.default_rng(11)
    top = rng.integers(0, 5 + 2 * pad - size[0] + 1, size=4)
    left = rng.integers(0, 6 + 2 * pad - size[1] + 1, size=4)
    padded = np.zeros((4, 2, 9, 10), np.float32)
    padded[:, :, pad : pad + 5, pad : pad + 6] = x
    for i in range(4):
        expected = padded[i, :, top[i] : top[i] + size[0], left[i] : left[i] + size[1]]
        np.testing.assert_array_equal(out[i], expected)


def test_random_crop_content_is_a_shifted_copy():
    # With padding p and full size, each output is the input shifted by (top-p, left-p).
    x = batch(n=16, c=1, h=6, w=6, seed=2)
    out = RandomCrop(6, padding=2)(x, generator=np.random.default_rng(5))
    for xi, oi in zip(x[:, 0], out[:, 0], strict=True):
        matches = [
            (dy, dx)
            for dy in range(-2, 3)
            for dx in range(-2, 3)
            if np.array_equal(oi, np.pad(xi, 2)[2 + dy : 8 + dy, 2 + dx : 8 + dx])
        ]
        assert len(matches) == 1
    assert np.isin(0.0, out)  # some padding shows


def test_random_crop_without_padding_and_too_large():
    x = batch(h=4, w=4)
    np.testing.assert_array_equal(RandomCrop(4)(x, np.random.default_rng(0)), x)
    with pytest.raises(
        ValueError, match=r"crop 6x6 is larger than the padded image 4x4 \(input 4x4, padding 0\)"
    ):
        RandomCrop(6)(x, np.random.default_rng(0))
    with pytest.raises(
        ValueError,
        match=r"crop 9x9 is larger than the padded image 6x6 "
        r"\(input 4x4, padding 1\)",
    ):
        RandomCrop(9, padding=1)(x, np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"expected a batch of shape \(N, C, H, W\)"):
        RandomCrop(2)(x[0])


def test_flip_exact():
    x = batch(n=64)
    out = RandomHorizontalFlip(0.5)(x, generator=np.random.default_rng(3))
    flipped = np.random.default_rng(3).random(64) < 0.5
    np.testing.assert_array_equal(out[flipped], x[flipped][..., ::-1])
    np.testing.assert_array_equal(out[~flipped], x[~flipped])
    assert 0 < flipped.sum() < 64
    np.testing.assert_array_equal(RandomHorizontalFlip(1.0)(x), x[..., ::-1])
    np.testing.assert_array_equal(RandomHorizontalFlip(0.0)(x), x)
    with pytest.raises(ValueError, match=r"expected p in \[0, 1\], found 2"):
        RandomHorizontalFlip(2)


def test_normalize_per_channel():
    x = np.stack([np.full((2, 2), 1.0), np.full((2, 2), 3.0)]).astype(np.float32)[None]
    out = Normalize([0.5, 1.0], [0.5, 2.0])(x)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[0, 0], 1.0)
    np.testing.assert_allclose(out[0, 1], 1.0)
    np.testing.assert_allclose(Normalize(0.5, 0.5)(x[0])[1], 5.0)  # single (C, H, W) image
    with pytest.raises(ValueError, match="has 3 channel values but the input has 2 channels"):
        Normalize([0, 0, 0], [1, 1, 1])(x)
    with pytest.raises(ValueError, match=r"expected every std > 0, found \[1.0, 0.0\]"):
        Normalize([0, 0], [1, 0])


def test_compose_passes_generator():
    x = batch(n=8)
    t = Compose([RandomCrop(3, padding=1), RandomHorizontalFlip(), Normalize(0.5, 0.25)])
    a = t(x, generator=np.random.default_rng(4))
    b = t(x, generator=np.random.default_rng(4))
    assert a.shape == (8, 2, 3, 3) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)


def test_compute_mean_std():
    x = batch(n=50, c=3, h=4, w=4, seed=9)
    mean, std = compute_mean_std(x, chunk=7)
    np.testing.assert_allclose(mean, x.astype(np.float64).mean(axis=(0, 2, 3)), rtol=1e-6)
    np.testing.assert_allclose(std, x.astype(np.float64).std(axis=(0, 2, 3)), rtol=1e-5)
    assert all(isinstance(v, float) for v in mean + std)
