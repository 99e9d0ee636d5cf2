"""Batch normalization over the whole batch of a data-parallel run, not each rank's share."""

from __future__ import annotations

from typing import Any

from cnnlab.nn.layers import BatchNorm2d
from cnnlab.nn.module import Module
from cnnlab.ops import norm


class SyncBatchNorm(BatchNorm2d):
    """``BatchNorm2d`` whose training statistics come from the batches of every rank together.

    In data-parallel training each rank sees only its share of the batch; plain BatchNorm
    normalizes with that share's mean and variance (per-rank statistics: cheaper, and each
    rank's share is a random sample, but noisier with small shares, and not the statistics
    one process would compute on the whole batch). This layer merges the ranks' statistics
    (one collective in forward and one in backward per layer), so a step equals the step of
    one process on the whole batch. In eval mode, and in a single process, it is exactly
    ``BatchNorm2d``; its parameters and buffers have the same names, so a model file saved from
    it loads as the plain architecture.

    Args:
        num_features: Channels C.
        eps: Added to the variance for stability.
        momentum: Weight of the newest batch in the running statistics.
        process_group: The ranks to normalize over; default every rank
            (``cnnlab.distributed.WORLD``).

    Shape:
        (N, C, H, W) -> (N, C, H, W); N may differ between ranks.

    Example:
        >>> from cnnlab import nn
        >>> model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
        >>> model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        >>> type(model[1]).__name__, list(model.state_dict())[2:4]
        ('SyncBatchNorm', ['1.weight', '1.bias'])
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1,
                 process_group: Any = None) -> None:
        super().__init__(num_features, eps, momentum)
        self.process_group = process_group

    def _group(self) -> Any:
        if self.process_group is not None:
            return self.process_group
        from cnnlab.distributed.comm import WORLD

        return WORLD

    def forward(self, x):
        group = self._group()
        if not self.training or group.size == 1:
            return super().forward(x)
        if x.ndim != 4 or x.shape[1] != self.num_features:
            raise ValueError(f"{self!r} expected input (N, {self.num_features}, H, W), got "
                             f"shape {x.shape}")
        self.num_batches_tracked += 1
        return norm.sync_batch_norm(x, self.running_mean, self.running_var, self.weight,
                                    self.bias, True, self.momentum, self.eps, group)

    @classmethod
    def convert_sync_batchnorm(cls, module: Module, process_group: Any = None) -> Module:
        """Replace every ``BatchNorm2d`` inside ``module`` by a ``SyncBatchNorm`` that keeps its
        parameters (the same objects, so an optimizer made before still updates them),
        buffers and train/eval mode.

        Args:
            module: A model; changed in place.
            process_group: As for the constructor.

        Returns:
            ``module``, or the new layer when ``module`` itself is a ``BatchNorm2d``.
        """
        if type(module) is BatchNorm2d:
            return cls._from(module, process_group)
        for sub in list(module.modules()):
            for name, value in list(vars(sub).items()):
                if name.startswith("_"):
                    continue
                if type(value) is BatchNorm2d:
                    setattr(sub, name, cls._from(value, process_group))
                elif isinstance(value, list):
                    value[:] = [cls._swap(v, process_group) for v in value]
                elif isinstance(value, tuple):
                    setattr(sub, name, tuple(cls._swap(v, process_group) for v in value))
                elif isinstance(value, dict):
                    value.update({k: cls._swap(v, process_group) for k, v in value.items()})
        return module

    @classmethod
    def _swap(cls, value: Any, process_group: Any) -> Any:
        return cls._from(value, process_group) if type(value) is BatchNorm2d else value

    @classmethod
    def _from(cls, layer: BatchNorm2d, process_group: Any) -> SyncBatchNorm:
        new = cls(layer.num_features, layer.eps, layer.momentum, process_group)
        new.weight, new.bias = layer.weight, layer.bias
        for name in layer._buffer_names:
            setattr(new, name, getattr(layer, name))
        new.training = layer.training
        new._forward_hooks, new._next_hook = layer._forward_hooks, layer._next_hook
        return new
