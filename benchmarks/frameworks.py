"""One runner per framework, all with the same three operations.

A runner is built from (layers, weights, x, y) and offers:

- ``train_step()``: zero grads, forward, mean cross-entropy, backward, SGD momentum update;
- ``eval()``: switch to evaluation mode, once, before ``infer()`` is timed;
- ``infer()``: a forward pass in inference mode (no graph), returning the logits;
- ``loss_and_grads()``: forward + backward at the current weights without updating them,
  returning (loss, {param name: gradient}) for the correctness check.

Each framework is imported only inside its own runner, so a worker process loads only the
framework it measures.
"""

from __future__ import annotations

import numpy as np

from benchmarks.workloads import LR, MOMENTUM

FRAMEWORKS = ["cnnlab", "torch_nchw", "torch_channels_last", "textbook"]


class CnnlabRunner:
    def __init__(self, layers, weights, x, y, threads: int | None = None):
        import cnnlab
        import cnnlab.nn.functional as F
        from cnnlab import nn
        from cnnlab.optim import SGD

        self.cnnlab, self.F = cnnlab, F
        if threads is not None and hasattr(cnnlab, "set_num_threads"):
            cnnlab.set_num_threads(threads)
        cnnlab.keep_freed_memory()  # as fit and the command line do
        mods = []
        for spec in layers:
            kind = spec["type"]
            if kind == "conv":
                mods.append(nn.Conv2d(spec["in"], spec["out"], spec["k"], padding=spec["pad"]))
            elif kind == "linear":
                mods.append(nn.Linear(spec["in"], spec["out"]))
            elif kind == "relu":
                mods.append(nn.ReLU())
            elif kind == "maxpool":
                mods.append(nn.MaxPool2d(spec["k"]))
            elif kind == "flatten":
                mods.append(nn.Flatten())
        self.model = nn.Sequential(*mods)
        self.model.load_state_dict(weights)
        # Fused layers (a conv with its ReLU, ...), as fit, evaluate and predict run them.
        self.model = nn.fuse(self.model)
        self.opt = SGD(self.model.parameters(), lr=LR, momentum=MOMENTUM)
        self.x, self.y = x, y

    def train_step(self) -> None:
        self.opt.zero_grad()
        out = self.model(self.cnnlab.Tensor(self.x))
        loss = self.F.cross_entropy(out, self.y)
        loss.backward()
        self.opt.step()

    def eval(self) -> None:
        self.model.eval()

    def infer(self) -> np.ndarray:
        with self.cnnlab.no_grad():
            out = self.model(self.cnnlab.Tensor(self.x))
        return out.data

    def loss_and_grads(self):
        self.opt.zero_grad()
        out = self.model(self.cnnlab.Tensor(self.x))
        loss = self.F.cross_entropy(out, self.y)
        loss.backward()
        grads = {n: p.grad.numpy().copy() for n, p in self.model.named_parameters()}
        self.opt.zero_grad()
        return float(loss.item()), grads


class TorchRunner:
    def __init__(self, layers, weights, x, y, channels_last: bool = False):
        import torch

        self.torch = torch
        mods = []
        for spec in layers:
            kind = spec["type"]
            if kind == "conv":
                mods.append(torch.nn.Conv2d(spec["in"], spec["out"], spec["k"],
                                            padding=spec["pad"]))
            elif kind == "linear":
                mods.append(torch.nn.Linear(spec["in"], spec["out"]))
            elif kind == "relu":
                mods.append(torch.nn.ReLU())
            elif kind == "maxpool":
                mods.append(torch.nn.MaxPool2d(spec["k"]))
            elif kind == "flatten":
                mods.append(torch.nn.Flatten())
        self.model = torch.nn.Sequential(*mods)
        self.model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
        self.x = torch.from_numpy(x)
        self.y = torch.from_numpy(y)
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
            self.x = self.x.contiguous(memory_format=torch.channels_last)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=LR, momentum=MOMENTUM)

    def train_step(self) -> None:
        self.opt.zero_grad()
        out = self.model(self.x)
        loss = self.torch.nn.functional.cross_entropy(out, self.y)
        loss.backward()
        self.opt.step()

    def eval(self) -> None:
        self.model.eval()

    def infer(self) -> np.ndarray:
        with self.torch.inference_mode():
            out = self.model(self.x)
        return out.numpy()

    def loss_and_grads(self):
        self.opt.zero_grad()
        loss = self.torch.nn.functional.cross_entropy(self.model(self.x), self.y)
        loss.backward()
        grads = {n: p.grad.detach().numpy().copy() for n, p in self.model.named_parameters()}
        self.opt.zero_grad()
        return float(loss.item()), grads


class TextbookRunner:
    def __init__(self, layers, weights, x, y):
        from benchmarks.textbook import TextbookNet

        self.net = TextbookNet(layers, weights, lr=LR, momentum=MOMENTUM)
        self.x, self.y = x, y

    def train_step(self) -> None:
        self.net.train_step(self.x, self.y)

    def eval(self) -> None:
        pass  # no layer behaves differently in evaluation

    def infer(self) -> np.ndarray:
        return self.net.forward(self.x)

    def loss_and_grads(self):
        loss = self.net.loss_and_grads(self.x, self.y)
        return loss, {n: g.copy() for n, g in self.net.named_grads()}


def make_runner(framework: str, layers, weights, x, y, threads: int | None = None):
    """Build the runner for ``framework`` (one of :data:`FRAMEWORKS`); ``threads`` sets
    cnnlab's own kernel threads (torch's are set by the worker, BLAS's by the environment).

    Raises:
        ValueError: unknown framework name.
    """
    if framework == "cnnlab":
        return CnnlabRunner(layers, weights, x, y, threads)
    if framework == "torch_nchw":
        return TorchRunner(layers, weights, x, y, channels_last=False)
    if framework == "torch_channels_last":
        return TorchRunner(layers, weights, x, y, channels_last=True)
    if framework == "textbook":
        return TextbookRunner(layers, weights, x, y)
    raise ValueError(f"unknown framework {framework!r}; expected one of {', '.join(FRAMEWORKS)}")
