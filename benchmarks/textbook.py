"""A "textbook" NumPy CNN: the design most from-scratch tutorials teach, as a baseline.

What makes it textbook, on purpose:

- NCHW throughout; convolution lowers to im2col built with one fancy-index gather
  ``x_padded[:, k, i, j]`` into a (C*KH*KW, OH*OW*N) matrix, then one GEMM;
- the input gradient goes back through col2im with ``np.add.at`` (an unbuffered scatter-add);
- max pooling reuses im2col on (N*C, 1, H, W) and its backward scatters the gradient to the
  argmax positions, then runs col2im;
- float32 everywhere (the float64 default would make it about 2x slower still).

One kindness it gets that many tutorials skip: the gather indices are computed once per
input shape and cached, and the first layer skips its input gradient. It is correct: every
benchmark run (and ``tests/test_benchmarks.py``) compares its loss and gradients with
PyTorch's on the same batch before any timing is trusted.
"""

from __future__ import annotations

import numpy as np

_INDEX_CACHE: dict[tuple, tuple[np.ndarray, np.ndarray, np.ndarray, int, int]] = {}


def _im2col_indices(c: int, h: int, w: int, k: int, pad: int, stride: int):
    """Row/column/channel index arrays that gather every KxK window into a column."""
    key = (c, h, w, k, pad, stride)
    if key not in _INDEX_CACHE:
        oh = (h + 2 * pad - k) // stride + 1
        ow = (w + 2 * pad - k) // stride + 1
        i0 = np.tile(np.repeat(np.arange(k), k), c)
        i1 = stride * np.repeat(np.arange(oh), ow)
        j0 = np.tile(np.arange(k), k * c)
        j1 = stride * np.tile(np.arange(ow), oh)
        i = i0.reshape(-1, 1) + i1.reshape(1, -1)
        j = j0.reshape(-1, 1) + j1.reshape(1, -1)
        ch = np.repeat(np.arange(c), k * k).reshape(-1, 1)
        _INDEX_CACHE[key] = (ch, i, j, oh, ow)
    return _INDEX_CACHE[key]


def im2col(x: np.ndarray, k: int, pad: int, stride: int) -> np.ndarray:
    """(N, C, H, W) -> columns (C*K*K, OH*OW*N) via one fancy-index gather."""
    n, c, h, w = x.shape
    ch, i, j, _, _ = _im2col_indices(c, h, w, k, pad, stride)
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad))) if pad else x
    cols = xp[:, ch, i, j]  # (N, C*K*K, OH*OW)
    return cols.transpose(1, 2, 0).reshape(c * k * k, -1)


def col2im(cols: np.ndarray, x_shape: tuple, k: int, pad: int, stride: int) -> np.ndarray:
    """Inverse of :func:`im2col`: scatter-add the columns back with ``np.add.at``."""
    n, c, h, w = x_shape
    ch, i, j, _, _ = _im2col_indices(c, h, w, k, pad, stride)
    xp = np.zeros((n, c, h + 2 * pad, w + 2 * pad), dtype=cols.dtype)
    cols_n = cols.reshape(c * k * k, -1, n).transpose(2, 0, 1)
    np.add.at(xp, (slice(None), ch, i, j), cols_n)
    return xp[:, :, pad:pad + h, pad:pad + w] if pad else xp


class Conv:
    """KxK convolution, stride 1, zero padding ``pad``."""

    def __init__(self, w: np.ndarray, b: np.ndarray, pad: int):
        self.params = {"weight": w, "bias": b}
        self.grads = {"weight": np.zeros_like(w), "bias": np.zeros_like(b)}
        self.pad = pad

    def forward(self, x: np.ndarray) -> np.ndarray:
        w, b = self.params["weight"], self.params["bias"]
        f, _, k, _ = w.shape
        n, c, h, wd = x.shape
        oh, ow = h + 2 * self.pad - k + 1, wd + 2 * self.pad - k + 1
        cols = im2col(x, k, self.pad, 1)
        out = w.reshape(f, -1) @ cols + b.reshape(-1, 1)
        self.cache = (x.shape, cols)
        return out.reshape(f, oh, ow, n).transpose(3, 0, 1, 2)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        w = self.params["weight"]
        f, _, k, _ = w.shape
        x_shape, cols = self.cache
        dout_r = dout.transpose(1, 2, 3, 0).reshape(f, -1)
        self.grads["weight"] = (dout_r @ cols.T).reshape(w.shape)
        self.grads["bias"] = dout.sum(axis=(0, 2, 3))
        dcols = w.reshape(f, -1).T @ dout_r
        return col2im(dcols, x_shape, k, self.pad, 1)


class ReLU:
    params: dict = {}

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.mask = x > 0
        return x * self.mask

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return dout * self.mask


class MaxPool:
    """KxK max pooling with stride K, through im2col and an argmax scatter."""

    params: dict = {}

    def __init__(self, k: int):
        self.k = k

    def forward(self, x: np.ndarray) -> np.ndarray:
        n, c, h, w = x.shape
        k = self.k
        oh, ow = (h - k) // k + 1, (w - k) // k + 1
        cols = im2col(x.reshape(n * c, 1, h, w), k, 0, k)
        idx = np.argmax(cols, axis=0)
        out = cols[idx, np.arange(idx.size)]
        self.cache = (x.shape, cols.shape, idx)
        return out.reshape(oh, ow, n, c).transpose(2, 3, 0, 1)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        x_shape, cols_shape, idx = self.cache
        n, c, h, w = x_shape
        dcols = np.zeros(cols_shape, dtype=dout.dtype)
        dcols[idx, np.arange(idx.size)] = dout.transpose(2, 3, 0, 1).ravel()
        return col2im(dcols, (n * c, 1, h, w), self.k, 0, self.k).reshape(x_shape)


class Flatten:
    params: dict = {}

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return dout.reshape(self.shape)


class Linear:
    def __init__(self, w: np.ndarray, b: np.ndarray):
        self.params = {"weight": w, "bias": b}
        self.grads = {"weight": np.zeros_like(w), "bias": np.zeros_like(b)}

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.x = x
        return x @ self.params["weight"].T + self.params["bias"]

    def backward(self, dout: np.ndarray) -> np.ndarray:
        self.grads["weight"] = dout.T @ self.x
        self.grads["bias"] = dout.sum(axis=0)
        return dout @ self.params["weight"]


def softmax_cross_entropy(logits: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy of integer labels and its gradient with respect to the logits."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    probs = exp / exp.sum(axis=1, keepdims=True)
    n = logits.shape[0]
    loss = -np.log(probs[np.arange(n), y]).mean()
    dlogits = probs
    dlogits[np.arange(n), y] -= 1
    dlogits /= n
    return float(loss), dlogits


class TextbookNet:
    """A network built from a list of layer dicts (see ``benchmarks.workloads``).

    Args:
        layers: layer specs, e.g. ``{"type": "conv", "in": 1, "out": 6, "k": 5, "pad": 2}``.
        weights: ``"<index>.weight"``/``"<index>.bias"`` arrays in torch layout (float32).
        lr: SGD learning rate.
        momentum: SGD momentum (PyTorch's formulation: ``buf = m*buf + g; p -= lr*buf``).
    """

    def __init__(self, layers: list[dict], weights: dict[str, np.ndarray], lr: float = 0.01,
                 momentum: float = 0.9):
        self.layers = []
        for i, spec in enumerate(layers):
            kind = spec["type"]
            if kind == "conv":
                w = weights[f"{i}.weight"].astype(np.float32, copy=True)
                b = weights[f"{i}.bias"].astype(np.float32, copy=True)
                self.layers.append(Conv(w, b, spec["pad"]))
            elif kind == "linear":
                w = weights[f"{i}.weight"].astype(np.float32, copy=True)
                b = weights[f"{i}.bias"].astype(np.float32, copy=True)
                self.layers.append(Linear(w, b))
            elif kind == "relu":
                self.layers.append(ReLU())
            elif kind == "maxpool":
                self.layers.append(MaxPool(spec["k"]))
            elif kind == "flatten":
                self.layers.append(Flatten())
            else:
                raise ValueError(f"layer {i}: unknown type {kind!r}; expected conv, linear, "
                                 "relu, maxpool or flatten")
        self.lr = np.float32(lr)
        self.momentum = np.float32(momentum)
        self.velocity = {name: np.zeros_like(p) for name, p in self.named_parameters()}

    def named_parameters(self):
        for i, layer in enumerate(self.layers):
            for key, p in layer.params.items():
                yield f"{i}.{key}", p

    def named_grads(self):
        for i, layer in enumerate(self.layers):
            for key in layer.params:
                yield f"{i}.{key}", layer.grads[key]

    def forward(self, x: np.ndarray) -> np.ndarray:
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def loss_and_grads(self, x: np.ndarray, y: np.ndarray) -> float:
        """Forward, cross-entropy and backward; gradients end up in each layer's ``grads``."""
        loss, dout = softmax_cross_entropy(self.forward(x), y)
        for idx, layer in enumerate(reversed(self.layers)):
            if idx == len(self.layers) - 1:
                # The input needs no gradient; only this layer's parameter grads are needed.
                if isinstance(layer, Conv):
                    self._first_conv_param_grads(layer, dout)
                    break
            dout = layer.backward(dout)
        return loss

    @staticmethod
    def _first_conv_param_grads(layer: Conv, dout: np.ndarray) -> None:
        f = layer.params["weight"].shape[0]
        _, cols = layer.cache
        dout_r = dout.transpose(1, 2, 3, 0).reshape(f, -1)
        layer.grads["weight"] = (dout_r @ cols.T).reshape(layer.params["weight"].shape)
        layer.grads["bias"] = dout.sum(axis=(0, 2, 3))

    def sgd_step(self) -> None:
        for (name, p), (_, g) in zip(self.named_parameters(), self.named_grads(), strict=True):
            v = self.velocity[name]
            v *= self.momentum
            v += g
            p -= self.lr * v

    def train_step(self, x: np.ndarray, y: np.ndarray) -> float:
        loss = self.loss_and_grads(x, y)
        self.sgd_step()
        return loss
