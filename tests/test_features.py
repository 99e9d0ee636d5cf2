"""Features of a layer, nearest neighbours, kNN, and `cnnlab features` / `cnnlab similar`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import cnnlab
from cnnlab import nn
from cnnlab.inspect.features import capture_activations
from cnnlab.inspect.retrieval import (
    cosine_similarity,
    knn_classify,
    layer_features,
    most_similar,
    similar_image,
)

ARCH = "conv3x3x4p1-bn-relu-pool2-conv3x3x6p1-relu-pool2-fc12-relu-fc10"  # for 1x8x8


def digits_net():
    cnnlab.manual_seed(0)
    model = cnnlab.arch.build(ARCH, (1, 8, 8), num_classes=10)
    model.spec.update(classes=[str(i) for i in range(10)],
                      normalization={"mean": [0.3], "std": [0.4]})
    # Some non-trivial running statistics, so that eval mode matters.
    model[1].running_mean[...] = np.linspace(-0.2, 0.2, 4, dtype=np.float32)
    model[1].running_var[...] = np.linspace(0.5, 2.0, 4, dtype=np.float32)
    return model.eval()


def images(n=7, seed=0):
    return np.random.default_rng(seed).random((n, 1, 8, 8), dtype=np.float32)


# ----------------------------------------------------------------------- model.features


def test_default_features_are_the_input_of_the_last_linear():
    model = digits_net()
    x = images()
    feats = model.features(x)
    assert isinstance(feats, cnnlab.Tensor) and not feats.requires_grad
    assert feats.shape == (7, 12) and feats.dtype == np.float32
    with cnnlab.no_grad():
        expected = model[:-1](cnnlab.Tensor(x)).data  # every layer but the head
    np.testing.assert_allclose(feats.data, expected, rtol=1e-6, atol=1e-6)


def test_features_by_name_position_and_negative_position_agree():
    model = digits_net()
    x = images()
    acts = capture_activations(model, x)
    by_name = layer_features(model, x, "3")
    np.testing.assert_array_equal(by_name, acts["3"].reshape(7, -1))
    assert by_name.shape == (7, 4 * 4 * 4)
    np.testing.assert_array_equal(layer_features(model, x, 3), by_name)
    np.testing.assert_array_equal(layer_features(model, x, 3 - len(model)), by_name)
    np.testing.assert_array_equal(layer_features(model, x, "-8"), by_name)  # as typed
    np.testing.assert_array_equal(layer_features(model, x, -1), acts[str(len(model) - 1)])


def test_features_of_one_sample_and_batches_and_modes():
    model = digits_net()
    model.train()
    x = images(10)
    whole = layer_features(model, x, batch_size=256)
    # (a batch of another size may round differently in the last bit)
    np.testing.assert_allclose(layer_features(model, x, batch_size=3), whole, atol=1e-6)
    np.testing.assert_allclose(layer_features(model, x[4]), whole[4:5], atol=1e-6)
    assert all(m.training for m in model.modules())  # modes are given back
    counts = []
    layer_features(model, x, batch_size=4, progress=counts.append)
    assert counts == [4, 4, 2]


def test_features_of_nested_modules_by_dotted_name():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten())
            self.head = nn.Linear(3 * 6 * 6, 2)

        def forward(self, x):
            return self.head(self.body(x))

    cnnlab.manual_seed(0)
    net = Net()
    x = images(2)
    relu = layer_features(net, x, "body.1")
    with cnnlab.no_grad():
        expected = net.body(cnnlab.Tensor(x)).data
    np.testing.assert_array_equal(relu, expected)
    np.testing.assert_array_equal(layer_features(net, x), expected)  # the head's input
    with pytest.raises(ValueError, match=r"position counts the layers of a Sequential.*body\.1"):
        layer_features(net, x, 1)


def test_features_of_a_fused_model_mean_the_unfused_layers():
    model = digits_net()
    fused = nn.fuse(model)
    assert type(fused[4]).__name__ == "ConvReLUMaxPool2d"
    x = images()
    for layer in ("4", "5", "6", None):  # conv, its ReLU (an Identity when fused), the pool
        np.testing.assert_allclose(layer_features(fused, x, layer),
                                   layer_features(model, x, layer), rtol=1e-5, atol=1e-6)
    assert layer_features(fused, x, "5").shape == (7, 6 * 4 * 4)  # full size, not pooled


def test_unfuse_gives_back_the_layers_with_their_parameters():
    model = digits_net()
    plain = nn.unfuse(nn.fuse(model))
    assert [type(m) for m in plain] == [type(m) for m in model]
    assert plain[4].weight is model[4].weight and plain[0].bias is model[0].bias
    assert plain[6].kernel_size == model[6].kernel_size
    assert nn.unfuse(model) is model
    hand_made = nn.Sequential(nn.ConvReLU2d(nn.Conv2d(1, 2, 3)), nn.Flatten())
    assert nn.unfuse(hand_made) is hand_made  # no placeholders: nothing to split


def test_unknown_layers_are_named_with_the_valid_ones():
    model = digits_net()
    x = images(2)
    with pytest.raises(ValueError, match=r"no layer named 'conv9'.*0 Conv2d, 1 BatchNorm2d"):
        layer_features(model, x, "conv9")
    with pytest.raises(ValueError, match=r"layer 20 is out of range .*\(positions -11\.\.10\)"):
        layer_features(model, x, 20)
    with pytest.raises(ValueError, match="has no Linear layer"):
        layer_features(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU()), x)
    with pytest.raises(ValueError, match="batch_size must be an integer"):
        layer_features(model, x, batch_size=0)


def test_capture_can_stop_at_a_layer_and_record_inputs():
    model = digits_net()
    seen = []
    handle = model[10].register_forward_hook(lambda m, i, o: seen.append(1))
    acts = capture_activations(model, images(2), ["4"], inputs=True, stop=True)
    handle.remove()
    assert list(acts) == ["4"] and seen == []  # layers after 4 never ran
    np.testing.assert_array_equal(acts["4"], capture_activations(model, images(2), ["3"])["3"])


# ----------------------------------------------------------------------- similarity, kNN


def test_most_similar_matches_a_brute_force_ranking(rng):
    db = rng.standard_normal((40, 6))
    q = rng.standard_normal((3, 6))
    idx, sims = most_similar(q, db, 5)
    for row in range(3):
        brute = [float(np.dot(q[row], v) / (np.linalg.norm(q[row]) * np.linalg.norm(v)))
                 for v in db]
        order = sorted(range(40), key=lambda j: -brute[j])[:5]
        assert idx[row].tolist() == order
        np.testing.assert_allclose(sims[row], [brute[j] for j in order], rtol=1e-12)
    np.testing.assert_allclose(cosine_similarity(q, db)[1, 7],
                               q[1] @ db[7] / np.linalg.norm(q[1]) / np.linalg.norm(db[7]))


def test_most_similar_ties_and_limits():
    db = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    idx, sims = most_similar(np.array([1.0, 0.0]), db, 4)
    assert idx.tolist() == [[0, 1, 2, 3]] and sims[0, 3] == 0.0  # a zero vector scores 0
    with pytest.raises(ValueError, match="k must be between 1 and the number of vectors"):
        most_similar(db[0], db, 5)
    with pytest.raises(ValueError, match="same D"):
        cosine_similarity(db, np.ones((2, 3)))


SKLEARN_KNN = """
import sys, numpy as np
from sklearn.neighbors import KNeighborsClassifier
d = np.load(sys.argv[1])
for k in (1, 3, 5):
    ref = KNeighborsClassifier(n_neighbors=k, metric="cosine", algorithm="brute")
    print(" ".join(map(str, ref.fit(d["train"], d["labels"]).predict(d["test"]))))
"""


def test_knn_agrees_with_scikit_learn(rng, tmp_path):
    import importlib.util
    import subprocess
    import sys

    if importlib.util.find_spec("sklearn") is None:
        pytest.skip("scikit-learn is not installed")
    train = rng.standard_normal((300, 12))
    labels = rng.integers(0, 4, 300)
    test = rng.standard_normal((80, 12))
    np.savez(tmp_path / "d.npz", train=train, labels=labels, test=test)
    # In its own process: scikit-learn brings a second BLAS library into the one it runs in.
    proc = subprocess.run([sys.executable, "-c", SKLEARN_KNN, str(tmp_path / "d.npz")],
                          capture_output=True, text=True, check=True)
    for k, line in zip((1, 3, 5), proc.stdout.splitlines(), strict=True):
        ours = knn_classify(train, labels, test, k, chunk=32)
        np.testing.assert_array_equal(ours, np.array(line.split(), dtype=np.int64), str(k))


def test_knn_checks_its_input(rng):
    train = rng.standard_normal((5, 3))
    with pytest.raises(ValueError, match="k must be between 1"):
        knn_classify(train, np.arange(5), train, k=6)
    with pytest.raises(ValueError, match="integer labels >= 0"):
        knn_classify(train, np.array([0, 1, -1, 0, 1]), train)
    with pytest.raises(ValueError, match="same D"):
        knn_classify(train, np.arange(5), np.ones((2, 4)))


def test_similar_image_lays_out_query_and_neighbours():
    pytest.importorskip("PIL")
    picture = similar_image(images(1)[0], images(10), [["#1", "a"]] * 10, "title", columns=4)
    zoom = 12  # 8x8 images scaled to at least 96 pixels
    assert picture.width >= 5 * 8 * zoom and picture.height > 3 * 8 * zoom


# ----------------------------------------------------------------------- the commands


def in_process(args, capsys):
    from cnnlab.cli.main import main

    try:
        rc = main([str(a) for a in args])
    except SystemExit as exc:
        rc = exc.code
    out, err = capsys.readouterr()
    return rc, out, err


def check_error(args, capsys, rc, *phrases):
    code, out, err = in_process(args, capsys)
    assert code == rc, out + err
    assert "Traceback" not in err
    if rc == 1:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("cnnlab: error: "), err
    for phrase in phrases:
        assert phrase in err, err


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "model.safetensors"
    cnnlab.io.save_model(digits_net(), path)
    return path


def write_folder(root: Path, flat: bool = False, size: int = 8) -> list[str]:
    from PIL import Image

    rng = np.random.default_rng(3)
    names = []
    for i in range(6):
        sub = root if flat else root / ("cat" if i % 2 else "dog")
        sub.mkdir(parents=True, exist_ok=True)
        name = f"im{i}.png"
        Image.fromarray((rng.random((size, size)) * 255).astype(np.uint8)).save(sub / name)
        names.append(name if flat else f"{sub.name}/{name}")
    return sorted(names)


def normalized(x):
    return (x - np.float32(0.3)) / np.float32(0.4)


def test_features_command_writes_vectors_and_labels(tmp_path, model_file, capsys):
    out = tmp_path / "feats.npz"
    rc, stdout, _ = in_process(["features", model_file, "digits", "--split", "test", "--out",
                                out, "--batch-size", "100"], capsys)
    assert rc == 0 and "wrote" in stdout and "359 vectors of 12 values" in stdout
    with np.load(out, allow_pickle=False) as f:
        assert set(f.files) == {"features", "labels", "classes", "model", "data", "split",
                                "layer", "layer_description"}
        feats, labels = f["features"], f["labels"]
        assert str(f["split"]) == "test" and str(f["data"]) == "digits"
        assert f["classes"].tolist() == [str(i) for i in range(10)]
        assert str(f["layer_description"]) == "the input of layer 10 (Linear)"
    test = cnnlab.data.Digits(train=False)
    assert feats.dtype == np.float32 and feats.shape == (359, 12)
    np.testing.assert_array_equal(labels, test.labels)
    expected = layer_features(cnnlab.io.load_model(model_file), normalized(test.images[:5]))
    np.testing.assert_allclose(feats[:5], expected, rtol=1e-5, atol=1e-6)


def test_features_command_on_folders_keeps_file_names(tmp_path, model_file, capsys):
    names = write_folder(tmp_path / "pics")
    out = tmp_path / "f.npz"
    rc, stdout, _ = in_process(["features", model_file, tmp_path / "pics", "--layer", "7",
                                "--out", out], capsys)
    assert rc == 0, stdout
    with np.load(out, allow_pickle=False) as f:
        assert f["files"].tolist() == ["cat/im1.png", "cat/im3.png", "cat/im5.png",
                                       "dog/im0.png", "dog/im2.png", "dog/im4.png"]
        assert f["labels"].tolist() == [0, 0, 0, 1, 1, 1]
        assert f["features"].shape == (6, 6 * 2 * 2) and str(f["split"]) == "all"
    flat = write_folder(tmp_path / "flat", flat=True, size=16)  # resized to 8x8, with a note
    rc, _, err = in_process(["features", model_file, tmp_path / "flat", "--out", out], capsys)
    assert rc == 0 and "resized 6 of 6 images to 8x8" in err
    with np.load(out, allow_pickle=False) as f:
        assert f["files"].tolist() == flat and f["labels"].tolist() == [-1] * 6
        assert f["classes"].shape == (0,)
    assert names


def test_similar_ranks_as_a_brute_force_search(tmp_path, model_file, capsys):
    from PIL import Image

    model = cnnlab.io.load_model(model_file)
    test = cnnlab.data.Digits(train=False)
    query = test.images[17]
    Image.fromarray((query[0] * 255).round().astype(np.uint8)).save(tmp_path / "q.png")
    query = np.asarray(Image.open(tmp_path / "q.png"), dtype=np.float32)[None] / 255
    rc, out, _ = in_process(["similar", model_file, tmp_path / "q.png", "--data", "digits",
                             "--split", "test", "--top-k", "6", "--out", tmp_path / "g.png"],
                            capsys)
    assert rc == 0, out
    rows = [line.split() for line in out.splitlines()[2:8]]
    q = model.features(normalized(query)).data[0].astype(np.float64)
    brute = []
    for i in range(len(test)):
        v = model.features(normalized(test.images[i])).data[0].astype(np.float64)
        brute.append(float(q @ v / (np.linalg.norm(q) * np.linalg.norm(v))))
    order = sorted(range(len(test)), key=lambda j: -brute[j])[:6]
    assert [int(r[-1].lstrip("#")) for r in rows] == order
    assert order[0] == 17 and float(rows[0][1]) == pytest.approx(1.0, abs=1e-4)
    np.testing.assert_allclose([float(r[1]) for r in rows], [brute[j] for j in order],
                               atol=1e-4)
    assert [r[2] for r in rows] == [str(test.labels[j]) for j in order]
    with Image.open(tmp_path / "g.png") as im:
        assert im.width > 7 * 96


def test_similar_in_a_folder_prints_file_names(tmp_path, model_file, capsys):
    write_folder(tmp_path / "pics")
    query = tmp_path / "pics" / "cat" / "im3.png"
    rc, out, _ = in_process(["similar", model_file, query, "--data", tmp_path / "pics",
                             "--top-k", "9"], capsys)
    assert rc == 0
    rows = [line.split() for line in out.splitlines()[2:]]
    assert len(rows) == 6 and rows[0][3] == "cat/im3.png" and rows[0][2] == "cat"


def test_bad_input_gets_one_line(tmp_path, model_file, capsys):
    q = tmp_path / "q.npy"
    np.save(q, np.zeros((1, 5, 5), dtype=np.float32))
    check_error(["features", model_file, "digits", "--layer", "conv9"], capsys, 2,
                "--layer conv9: no layer named 'conv9'", "0 Conv2d")
    check_error(["features", model_file, "digits", "--layer", "40"], capsys, 2,
                "out of range")
    check_error(["features", q, "digits"], capsys, 2, "MODEL:")  # arguments swapped
    check_error(["features", tmp_path / "none.safetensors", "digits"], capsys, 1,
                "no model file there")
    check_error(["features", model_file, tmp_path / "nowhere"], capsys, 1,
                "neither a dataset")
    check_error(["similar", model_file, q, "--data", "digits"], capsys, 1,
                "expected an array of 1x8x8, got 1x5x5")
    check_error(["similar", model_file, tmp_path / "missing.png", "--data", "digits"], capsys,
                1, "no such image file")
    check_error(["similar", model_file, q, "--data", "digits", "--top-k", "0"], capsys, 2)
    check_error(["similar", model_file, q], capsys, 2, "--data")
    check_error(["features", model_file, "digits", "--split", "val"], capsys, 2)


def test_features_refuses_a_dataset_of_another_size(tmp_path, capsys):
    cnnlab.manual_seed(0)
    model = cnnlab.arch.build("conv3x3x4-relu-fc10", (1, 12, 12))
    cnnlab.io.save_model(model, tmp_path / "m.safetensors")
    check_error(["features", tmp_path / "m.safetensors", "digits"], capsys, 1,
                "the model takes images of 1x12x12, but digits has images of 1x8x8")


def test_progress_bar_only_on_a_terminal_and_for_long_runs(monkeypatch):
    import io

    from cnnlab.cli import features as cli

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    pytest.importorskip("tqdm")
    for stream, total, shown in ((Terminal(), 5000, True), (Terminal(), 100, False),
                                 (io.StringIO(), 5000, False)):
        monkeypatch.setattr(cli.sys, "stderr", stream)
        with cli.Progress(total, "features") as bar:
            for _ in range(5):
                bar(total // 5)
        text = stream.getvalue()
        assert ("features:" in text and f"0/{total}" in text) == shown
