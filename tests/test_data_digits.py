"""The shipped digits dataset, and load_dataset by name."""

import numpy as np
import pytest

from cnnlab.data import DataLoader, Digits, load_dataset
from cnnlab.data.digits import load_digits_arrays


def test_all_samples():
    images, labels = load_digits_arrays()
    assert images.shape == (1797, 1, 8, 8) and images.dtype == np.float32
    assert labels.dtype == np.int64 and sorted(set(labels.tolist())) == list(range(10))
    assert images.min() == 0.0 and images.max() == 1.0


def test_split_stratified_and_deterministic():
    train, test = Digits(train=True), Digits(train=False)
    assert len(train) + len(test) == 1797
    assert train.classes == [str(d) for d in range(10)]
    counts = np.bincount(test.labels, minlength=10) / np.bincount(
        np.concatenate([train.labels, test.labels]), minlength=10
    )
    np.testing.assert_allclose(counts, 0.2, atol=0.01)
    np.testing.assert_array_equal(Digits(train=False).images, test.images)
    assert not np.array_equal(Digits(train=False, seed=1).labels, test.labels)
    assert len(Digits(train=False, test_fraction=0.5)) in range(895, 903)
    with pytest.raises(ValueError, match="expected test_fraction strictly between 0 and 1"):
        Digits(test_fraction=0)


def test_loads_by_name_and_batches():
    ds = load_dataset("digits", train=False)
    x, y = next(iter(DataLoader(ds, batch_size=16)))
    assert x.shape == (16, 1, 8, 8) and y.shape == (16,)
    with pytest.raises(ValueError, match="unknown dataset 'nope'"):
        load_dataset("nope")
