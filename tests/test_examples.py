"""The example programs run unchanged on cnnlab and, with PyTorch's imports, on PyTorch,
and learn as well on the same slice of MNIST.

The slice is real MNIST when its files are found (``CNNLAB_MNIST_DIR``, or the data folder
next to the checkout); otherwise the built-in UCI digits, scaled up to 28x28 and written as
IDX files, stand in for it (real handwriting as well, and always available offline).
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import cnnlab
from cnnlab.data import write_idx

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
TORCH_IMPORTS = {
    "import cnnlab as torch": "import torch",
    "import cnnlab.nn as nn": "import torch.nn as nn",
    "import cnnlab.nn.functional as F": "import torch.nn.functional as F",
    "import cnnlab.optim as optim": "import torch.optim as optim",
}
TRAIN, TEST = 6000, 1000  # images per split in the slice of MNIST
# Epochs per program: the UCI digits stand-in is four times smaller, so it trains longer
# (at the tutorial's small learning rate and batch, fewer steps leave both frameworks
# short of their plateau, where the start decides more of the result).
EPOCHS = {"mnist": {"mnist.py": 2, "classifier.py": 2},
          "digits": {"mnist.py": 4, "classifier.py": 8}}


def _mnist_folder() -> Path | None:
    for folder in (os.environ.get("CNNLAB_MNIST_DIR"), REPO.parent / "shared" / "data" / "mnist"):
        if folder and (Path(folder) / "train-images-idx3-ubyte.gz").exists():
            return Path(folder)
    return None


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple[Path, str]:
    """The slice's folder, and which data it holds ("mnist" or "digits")."""
    out = tmp_path_factory.mktemp("mnist-slice")
    source = _mnist_folder()
    if source is not None:
        sets = {split: cnnlab.data.MNIST(root=source, train=split == "train")
                for split in ("train", "test")}
        arrays = {split: ((ds.images[:n, 0] * 255).round().astype(np.uint8), ds.labels[:n])
                  for (split, ds), n in zip(sets.items(), (TRAIN, TEST), strict=True)}
    else:  # the UCI digits (8x8) scaled up to 28x28: 7x7 blocks of pixels, centred
        arrays = {}
        for split in ("train", "test"):
            ds = cnnlab.data.Digits(train=split == "train")
            big = np.kron(ds.images[:, 0], np.ones((3, 3), np.float32))  # 24x24
            big = np.pad(big, ((0, 0), (2, 2), (2, 2)))
            arrays[split] = ((big * 255).round().astype(np.uint8), ds.labels)
    names = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
    for split, (images, labels) in arrays.items():
        write_idx(out / names[split][0], images)
        write_idx(out / names[split][1], labels.astype(np.uint8))
    return out, "mnist" if source is not None else "digits"


def _run(script: str, framework: str, data_dir: Path, tmp_path: Path, *args: str) -> float:
    source = (EXAMPLES / script).read_text()
    if framework == "torch":
        for ours, theirs in TORCH_IMPORTS.items():
            assert source.count(ours + "\n") == 1, f"{script} must import {ours!r} once"
            source = source.replace(ours + "\n", theirs + "\n")
    program = tmp_path / f"{framework}_{script}"
    program.write_text(source)
    # One thread each: the same for both, and no thread pool spinning on a shared machine.
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(EXAMPLES), str(REPO)]),
               OMP_NUM_THREADS="1", CNNLAB_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(program), "--data-dir", str(data_dir), *args],
                          capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    match = re.search(r"final accuracy ([0-9.]+)", proc.stdout)
    assert match, proc.stdout
    return float(match.group(1))


@pytest.mark.slow
@pytest.mark.parametrize("script", ["mnist.py", "classifier.py"])
def test_example_learns_as_well_as_on_pytorch(script, data, tmp_path):
    data_dir, kind = data
    args = ("--epochs", str(EPOCHS[kind][script]))
    if script == "mnist.py":
        args += ("--log-interval", "1000")
    ours = _run(script, "cnnlab", data_dir, tmp_path, *args)
    assert ours > 0.80, f"{script} on cnnlab reached only {ours:.1%}"
    pytest.importorskip("torch", reason="the comparison runs the same program on PyTorch")
    theirs = _run(script, "torch", data_dir, tmp_path, *args)
    assert abs(ours - theirs) <= 0.03, f"{script}: cnnlab {ours:.1%}, PyTorch {theirs:.1%}"
