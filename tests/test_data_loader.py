"""DataLoader batching and shuffling, splits, ArrayDataset."""

import json

import numpy as np
import pytest

import cnnlab
from cnnlab.data import (
    ArrayDataset,
    DataLoader,
    RandomHorizontalFlip,
    random_split,
    train_val_split,
)


def arrays(n=10, c=1, h=2, w=2):
    x = np.arange(n * c * h * w, dtype=np.float32).reshape(n, c, h, w)
    y = np.arange(n) % 3
    return x, y


@pytest.mark.parametrize("shuffle", [False, True])
def test_every_sample_once_per_epoch(shuffle):
    x, y = arrays(n=23)
    loader = DataLoader((x, y), batch_size=5, shuffle=shuffle, generator=np.random.default_rng(1))
    assert len(loader) == 5
    for _ in range(3):
        seen = []
        sizes = []
        for xb, yb in loader:
            assert xb.dtype == np.float32 and yb.dtype == np.int64
            sizes.append(len(xb))
            seen.extend(int(v) for v in xb[:, 0, 0, 0] // 4)  # sample index from its content
            np.testing.assert_array_equal(yb, np.asarray(seen[-len(xb) :]) % 3)
        assert sizes == [5, 5, 5, 5, 3]
        assert sorted(seen) == list(range(23))


def test_unshuffled_order_is_original():
    x, y = arrays(n=7)
    batches = [yb.tolist() for _, yb in DataLoader((x, y), batch_size=3)]
    assert batches == [[0, 1, 2], [0, 1, 2], [0]]


def test_drop_last():
    x, y = arrays(n=23)
    loader = DataLoader(
        (x, y), batch_size=5, drop_last=True, shuffle=True, generator=np.random.default_rng(0)
    )
    assert len(loader) == 4
    assert [len(b) for _, b in loader] == [5, 5, 5, 5]


def test_seeded_shuffle_reproducible_and_epochs_differ():
    x, y = arrays(n=50)

    def orders(seed):
        loader = DataLoader(
            (x, y), batch_size=50, shuffle=True, generator=np.random.default_rng(seed)
        )
        return [xb[:, 0, 0, 0].tolist() for _ in range(2) for xb, _ in loader]

    first = orders(7)
    assert first == orders(7)
    assert first[0] != first[1]  # a new permutation each epoch
    assert first != orders(8)


def test_resume_from_generator_state():
    # Generator state saved at an epoch boundary replays the same batches, transforms included.
    x, y = arrays(n=20)
    gen = np.random.default_rng(3)
    loader = DataLoader(
        (x, y), batch_size=6, shuffle=True, transform=RandomHorizontalFlip(0.5), generator=gen
    )
    list(loader)  # epoch 1
    saved = json.loads(json.dumps(loader.state_dict()))  # survives a JSON checkpoint
    epoch2 = [xb.copy() for xb, _ in loader]
    fresh = DataLoader(
        (x, y),
        batch_size=6,
        shuffle=True,
        transform=RandomHorizontalFlip(0.5),
        generator=np.random.default_rng(99),
    )
    fresh.load_state_dict(saved)
    for a, (b, _) in zip(epoch2, fresh, strict=True):
        np.testing.assert_array_equal(a, b)


def test_global_generator_used_when_none_given():
    # Shuffling without a generator draws from cnnlab's global one: reseeding repeats it.
    x, y = arrays(n=8)
    cnnlab.manual_seed(5)
    a = [yb.tolist() for _, yb in DataLoader((x, y), batch_size=8, shuffle=True)]
    cnnlab.manual_seed(5)
    b = [yb.tolist() for _, yb in DataLoader((x, y), batch_size=8, shuffle=True)]
    c = [yb.tolist() for _, yb in DataLoader((x, y), batch_size=8, shuffle=True)]
    assert a == b and a != c


def test_plain_function_transform():
    x, y = arrays(n=4)
    out = [xb for xb, _ in DataLoader((x, y), batch_size=4, transform=lambda b: b * 0)]
    assert out[0].sum() == 0


def test_loader_errors():
    x, y = arrays()
    with pytest.raises(ValueError, match="expected batch_size to be an integer >= 1, found 0"):
        DataLoader((x, y), batch_size=0)
    with pytest.raises(ValueError, match="the dataset is empty"):
        DataLoader((x[:0], y[:0]))
    with pytest.raises(TypeError, match="expected a dataset with .images and .labels"):
        DataLoader([1, 2, 3])
    with pytest.raises(TypeError, match="numpy.random.Generator"):
        DataLoader((x, y), generator=42)


def test_array_dataset():
    x, y = arrays(n=4)
    ds = ArrayDataset(x.astype(np.float64), y, classes=["a", "b", "c"])
    assert ds.images.dtype == np.float32 and ds.labels.dtype == np.int64
    assert len(ds) == 4 and ds[1][0].shape == (1, 2, 2) and int(ds[1][1]) == 1
    assert ArrayDataset(x, y).classes == ["0", "1", "2"]
    with pytest.raises(
        ValueError,
        match=r"expected images of shape \(N, C, H, W\), found "
        r"shape \(4, 2, 2\)",
    ):
        ArrayDataset(x[:, 0], y)
    with pytest.raises(ValueError, match=r"expected labels of shape \(4,\)"):
        ArrayDataset(x, y[:3])
    with pytest.raises(ValueError, match=r"expected labels in 0\.\.1 for 2 classes, found 0\.\.2"):
        ArrayDataset(x, y, classes=["a", "b"])


def test_train_val_split_deterministic_and_stratified():
    x = np.zeros((100, 1, 1, 1), np.float32)
    x[:, 0, 0, 0] = np.arange(100)
    y = np.repeat([0, 1], [80, 20])
    train, val = train_val_split((x, y), val_fraction=0.25, seed=3)
    assert len(train) == 75 and len(val) == 25
    assert np.bincount(val.labels).tolist() == [20, 5]
    ids = np.concatenate([train.images.ravel(), val.images.ravel()])
    assert sorted(ids.tolist()) == list(range(100))  # disjoint and complete
    again = train_val_split((x, y), val_fraction=0.25, seed=3)[1]
    np.testing.assert_array_equal(again.images, val.images)
    other = train_val_split((x, y), val_fraction=0.25, seed=4)[1]
    assert not np.array_equal(other.images, val.images)
    with pytest.raises(ValueError, match="expected val_fraction strictly between 0 and 1"):
        train_val_split((x, y), val_fraction=1.0)


def test_random_split():
    x, y = arrays(n=10)
    parts = random_split((x, y), [7, 3], generator=np.random.default_rng(0))
    assert [len(p) for p in parts] == [7, 3]
    ids = np.concatenate([p.images[:, 0, 0, 0] for p in parts]) // 4
    assert sorted(ids.tolist()) == list(range(10))
    assert [len(p) for p in random_split((x, y), [0.5, 0.5], np.random.default_rng(0))] == [5, 5]
    with pytest.raises(ValueError, match="expected lengths summing to 10 samples"):
        random_split((x, y), [3, 3])


def test_manual_seed_drives_default_shuffling():
    import cnnlab

    x, y = arrays(n=30)
    loader = DataLoader((x, y), batch_size=30, shuffle=True)

    def epoch():
        return next(iter(loader))[1].tolist()

    cnnlab.manual_seed(123)
    first = epoch()
    cnnlab.manual_seed(123)  # replaces the global generator: the loader must follow it
    assert epoch() == first
