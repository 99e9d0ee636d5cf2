"""The architectures and workloads the benchmark measures, and their shared inputs.

An architecture is a list of plain layer dicts (JSON-able), so that every framework builds
exactly the same network from it and names its parameters the same way as
``nn.Sequential`` does: ``"<index>.weight"`` and ``"<index>.bias"``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

# LeNet-5 as in the classic paper, with ReLU and max pooling, on 1x28x28 (MNIST-sized) input.
LENET5: list[dict] = [
    {"type": "conv", "in": 1, "out": 6, "k": 5, "pad": 2},
    {"type": "relu"},
    {"type": "maxpool", "k": 2},
    {"type": "conv", "in": 6, "out": 16, "k": 5, "pad": 0},
    {"type": "relu"},
    {"type": "maxpool", "k": 2},
    {"type": "flatten"},
    {"type": "linear", "in": 400, "out": 120},
    {"type": "relu"},
    {"type": "linear", "in": 120, "out": 84},
    {"type": "relu"},
    {"type": "linear", "in": 84, "out": 10},
]

# A small VGG-style network on 3x32x32 (CIFAR-10-sized) input.
CIFAR_SMALL: list[dict] = [
    {"type": "conv", "in": 3, "out": 32, "k": 3, "pad": 1},
    {"type": "relu"},
    {"type": "conv", "in": 32, "out": 32, "k": 3, "pad": 1},
    {"type": "relu"},
    {"type": "maxpool", "k": 2},
    {"type": "conv", "in": 32, "out": 64, "k": 3, "pad": 1},
    {"type": "relu"},
    {"type": "conv", "in": 64, "out": 64, "k": 3, "pad": 1},
    {"type": "relu"},
    {"type": "maxpool", "k": 2},
    {"type": "flatten"},
    {"type": "linear", "in": 64 * 8 * 8, "out": 10},
]

# A very small network for smoke tests: runs in milliseconds everywhere.
TINY: list[dict] = [
    {"type": "conv", "in": 1, "out": 4, "k": 3, "pad": 1},
    {"type": "relu"},
    {"type": "maxpool", "k": 2},
    {"type": "flatten"},
    {"type": "linear", "in": 4 * 4 * 4, "out": 10},
]

# Sequence models (layers of cnnlab.nn / torch.nn with batch_first=True): the recurrent layer
# hands its last step's output to the classifier. One step of 256 features per token, as
# the embedded words of a caption decoder would be; 20 steps.
SEQ_STEPS = 20
LSTM_SEQ: list[dict] = [
    {"type": "lstm", "in": 256, "hidden": 256},
    {"type": "linear", "in": 256, "out": 10},
]
GRU_SEQ: list[dict] = [
    {"type": "gru", "in": 256, "hidden": 256},
    {"type": "linear", "in": 256, "out": 10},
]
# Token ids (word-like frequencies) into a 10,000-word table of 256, then a classifier over
# the flattened sequence: the lookup and its scatter-add gradient.
VOCAB = 10_000
EMBED_SEQ: list[dict] = [
    {"type": "embedding", "num": VOCAB, "dim": 256},
    {"type": "flatten"},
    {"type": "linear", "in": SEQ_STEPS * 256, "out": 10},
]
TINY_LSTM: list[dict] = [
    {"type": "embedding", "num": 30, "dim": 6},
    {"type": "lstm", "in": 6, "hidden": 5},
    {"type": "linear", "in": 5, "out": 10},
]
# Frameworks that can run the sequence models (the textbook CNN has no recurrent layers,
# and channels_last is a layout of image tensors).
SEQ_FRAMEWORKS = ("cnnlab", "torch_nchw")

ARCHS: dict[str, dict] = {
    "lenet5": {
        "layers": LENET5,
        "input": (1, 28, 28),
        "text": "conv5x5x6 pad2-relu-maxpool2-conv5x5x16-relu-maxpool2-"
        "fc120-relu-fc84-relu-fc10",
    },
    "cifar": {
        "layers": CIFAR_SMALL,
        "input": (3, 32, 32),
        "text": "conv3x3x32 pad1-relu-conv3x3x32 pad1-relu-maxpool2-conv3x3x64 pad1-relu-"
        "conv3x3x64 pad1-relu-maxpool2-flatten-fc10",
    },
    "tiny": {
        "layers": TINY,
        "input": (1, 8, 8),
        "text": "conv3x3x4 pad1-relu-maxpool2-flatten-fc10",
    },
    "lstm": {
        "layers": LSTM_SEQ,
        "input": (SEQ_STEPS, 256),
        "text": "lstm256 (20 steps, batch_first)-last step-fc10",
        "frameworks": SEQ_FRAMEWORKS,
    },
    "gru": {
        "layers": GRU_SEQ,
        "input": (SEQ_STEPS, 256),
        "text": "gru256 (20 steps, batch_first)-last step-fc10",
        "frameworks": SEQ_FRAMEWORKS,
    },
    "embed": {
        "layers": EMBED_SEQ,
        "input": (SEQ_STEPS,),
        "tokens": VOCAB,
        "text": "embedding 10000x256 (20 tokens)-flatten-fc10",
        "frameworks": SEQ_FRAMEWORKS,
    },
    "tiny-lstm": {
        "layers": TINY_LSTM,
        "input": (4,),
        "tokens": 30,
        "text": "embedding 30x6 (4 tokens)-lstm5-last step-fc10",
        "frameworks": SEQ_FRAMEWORKS,
    },
}

NUM_CLASSES = 10
LR = 0.01
MOMENTUM = 0.9


@dataclass(frozen=True)
class Workload:
    """One measured case: an architecture, a task ("train" or "infer") and a batch size."""

    name: str
    arch: str
    task: str
    batch: int

    def to_dict(self) -> dict:
        return asdict(self)


WORKLOADS: list[Workload] = [
    Workload("lenet5-train-b64", "lenet5", "train", 64),
    Workload("lenet5-train-b256", "lenet5", "train", 256),
    Workload("cifar-train-b128", "cifar", "train", 128),
    Workload("lenet5-infer-b1", "lenet5", "infer", 1),
    Workload("lenet5-infer-b256", "lenet5", "infer", 256),
    Workload("cifar-infer-b1", "cifar", "infer", 1),
    Workload("cifar-infer-b256", "cifar", "infer", 256),
    Workload("lstm-train-b64", "lstm", "train", 64),
    Workload("gru-train-b64", "gru", "train", 64),
    Workload("embed-train-b64", "embed", "train", 64),
    Workload("lstm-infer-b64", "lstm", "infer", 64),
]

# Not part of the default run; selected by name (the smoke test uses them).
EXTRA_WORKLOADS: list[Workload] = [
    Workload("tiny-train-b4", "tiny", "train", 4),
    Workload("tiny-infer-b1", "tiny", "infer", 1),
    Workload("tiny-lstm-train-b4", "tiny-lstm", "train", 4),
]


def find_workloads(names: list[str] | None) -> list[Workload]:
    """Return the workloads named in ``names`` (all default workloads when None).

    Raises:
        ValueError: a name matches no workload.
    """
    if not names:
        return list(WORKLOADS)
    known = {w.name: w for w in WORKLOADS + EXTRA_WORKLOADS}
    out = []
    for name in names:
        if name not in known:
            raise ValueError(
                f"unknown workload {name!r}; expected one of: {', '.join(sorted(known))}"
            )
        out.append(known[name])
    return out


def param_shapes(layers: list[dict]) -> dict[str, tuple[int, ...]]:
    """Parameter names and shapes in torch layout, in ``named_parameters()`` order."""
    shapes: dict[str, tuple[int, ...]] = {}
    for i, layer in enumerate(layers):
        if layer["type"] == "conv":
            shapes[f"{i}.weight"] = (layer["out"], layer["in"], layer["k"], layer["k"])
            shapes[f"{i}.bias"] = (layer["out"],)
        elif layer["type"] == "linear":
            shapes[f"{i}.weight"] = (layer["out"], layer["in"])
            shapes[f"{i}.bias"] = (layer["out"],)
        elif layer["type"] in ("lstm", "gru"):
            gates = (4 if layer["type"] == "lstm" else 3) * layer["hidden"]
            shapes[f"{i}.weight_ih_l0"] = (gates, layer["in"])
            shapes[f"{i}.weight_hh_l0"] = (gates, layer["hidden"])
            shapes[f"{i}.bias_ih_l0"] = (gates,)
            shapes[f"{i}.bias_hh_l0"] = (gates,)
        elif layer["type"] == "embedding":
            shapes[f"{i}.weight"] = (layer["num"], layer["dim"])
    return shapes


def frameworks_for(arch: str, frameworks: list[str]) -> list[str]:
    """The frameworks of ``frameworks`` that can run ``arch`` (sequence models leave out the
    textbook CNN and torch's channels_last layout)."""
    allowed = ARCHS[arch].get("frameworks")
    return [fw for fw in frameworks if allowed is None or fw in allowed]


def make_weights(layers: list[dict], seed: int) -> dict[str, np.ndarray]:
    """Float32 weights drawn like PyTorch's default init: U(-1/sqrt(fan_in), 1/sqrt(fan_in));
    recurrent layers U(-1/sqrt(hidden), 1/sqrt(hidden)); embeddings N(0, 1)."""
    rng = np.random.default_rng(seed)
    weights: dict[str, np.ndarray] = {}
    fan_in = 1
    kinds = {str(i): layer for i, layer in enumerate(layers)}
    for name, shape in param_shapes(layers).items():
        layer = kinds[name.split(".")[0]]
        if layer["type"] in ("lstm", "gru"):
            bound = 1.0 / np.sqrt(layer["hidden"])
            weights[name] = rng.uniform(-bound, bound, size=shape).astype(np.float32)
            continue
        if layer["type"] == "embedding":
            weights[name] = rng.standard_normal(shape).astype(np.float32)
            continue
        if name.endswith(".weight"):
            fan_in = int(np.prod(shape[1:]))
        bound = 1.0 / np.sqrt(fan_in)
        weights[name] = rng.uniform(-bound, bound, size=shape).astype(np.float32)
    return weights


def make_batch(input_shape: tuple[int, ...], batch: int, seed: int,
               tokens: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A float32 batch (N, *input_shape) of standard-normal values (pixels, or the features
    of sequence steps) and int64 labels in [0, 10); with ``tokens``, int64 token ids in
    [0, tokens) instead, with word-like frequencies (probability of id k proportional to
    1/(k+1), so a few ids repeat many times in a batch, as words do)."""
    rng = np.random.default_rng(seed + 1)
    if tokens:
        p = 1.0 / np.arange(1, tokens + 1)
        x = rng.choice(tokens, size=(batch, *input_shape), p=p / p.sum()).astype(np.int64)
    else:
        x = rng.standard_normal((batch, *input_shape)).astype(np.float32)
    y = rng.integers(0, NUM_CLASSES, size=batch).astype(np.int64)
    return x, y


def write_inputs(workload: Workload, seed: int, directory: Path) -> Path:
    """Write the workload's initial weights and data batch to one .npz file; return its path.

    Every framework's worker loads this same file, so all start from identical numbers.
    """
    arch = ARCHS[workload.arch]
    weights = make_weights(arch["layers"], seed)
    x, y = make_batch(arch["input"], workload.batch, seed, arch.get("tokens"))
    path = directory / f"inputs-{workload.name}.npz"
    arrays = {f"param:{k}": v for k, v in weights.items()}
    np.savez(path, x=x, y=y, **arrays)
    return path


def read_inputs(path: str | Path) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Load what :func:`write_inputs` wrote: (weights, x, y). No pickle."""
    with np.load(path, allow_pickle=False) as f:
        weights = {k[len("param:"):]: f[k] for k in f.files if k.startswith("param:")}
        return weights, f["x"], f["y"]
