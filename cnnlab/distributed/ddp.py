"""Data-parallel training: one model per rank, gradients averaged over the ranks each step.

Every rank holds the same weights (rank 0's, broadcast when the wrapper is made), runs
forward and backward on its own share of the batch, and then the gradients are averaged
with ``Allreduce`` before the optimizer steps; so every rank takes the same step, and it is
the step one process would take on the whole batch (see ``docs/distributed.md``).

How the wrapper knows when the gradients are ready: the engine gives each parameter (a
leaf of the graph) its gradient exactly once per backward pass, after every use of it has
been accounted for (``Tensor._set_grad``). The wrapper watches that moment for the
parameters it manages — their class becomes a subclass of theirs that reports the
assignment — and copies each gradient into a flat bucket of a few MB. When the last
gradient of the pass has arrived (still inside ``loss.backward()``), each bucket is summed
over the ranks in one ``Allreduce``, divided by the number of ranks, and the parameters'
``.grad`` become views of the averaged buckets. One message per bucket instead of one per
parameter: a collective's fixed cost (latency) is paid a few times per step, not dozens.
"""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np

from cnnlab.distributed import comm
from cnnlab.nn.module import Module, Parameter
from cnnlab.tensor import Tensor

DEFAULT_BUCKET_CAP_MB = 4.0


class DistributedDataParallel(Module):
    """Wrap a model so that training it on every rank averages the gradients over the ranks.

    At construction the parameters and buffers of rank 0 are copied to every rank. After
    ``loss.backward()`` each parameter's ``.grad`` is the mean of the ranks' gradients, so
    ``optimizer.step()`` takes the same step on every rank: with per-rank batches of B it is
    the step of one process on the N*B images together (to float rounding), as long as the
    layers treat images independently — BatchNorm computes its statistics per rank unless
    converted to ``nn.SyncBatchNorm``. In training mode each forward also copies rank 0's
    buffers (BatchNorm's running statistics) to the other ranks afterwards, so that
    evaluation gives the same answer everywhere.

    The wrapper is transparent for saving: ``state_dict()``, ``named_parameters()`` and
    ``load_state_dict()`` are the wrapped model's, without a prefix, so checkpoints and model
    files of a distributed run read like those of one process. ``wrapper.module`` is the
    model itself.

    Every rank must call forward (in training mode) and backward the same number of times,
    in the same order: they are collective operations. With one process (world size 1) the
    wrapper does nothing but call the model.

    Args:
        module: The model (a ``cnnlab.nn.Module``).
        bucket_cap_mb: Largest bucket of gradients reduced in one message, in MiB
            (parameters are never split; a larger one gets a bucket of its own).
        broadcast_buffers: Copy rank 0's buffers to every rank after each training forward.

    Raises:
        TypeError: when ``module`` is not a Module, or a parameter is already managed by
            another wrapper.
        ValueError: for a ``bucket_cap_mb`` that is not positive.
        RuntimeError: at a forward, when the previous backward did not give every parameter
            a gradient (a parameter that does not affect the loss: freeze it with
            ``requires_grad = False`` or take it out of the model).

    Example:
        >>> import numpy as np, cnnlab
        >>> from cnnlab import distributed as dist, nn
        >>> model = dist.DistributedDataParallel(nn.Linear(3, 2))
        >>> loss = model(cnnlab.Tensor(np.ones((4, 3), np.float32))).sum()
        >>> loss.backward()   # with N ranks: the mean of their gradients
        >>> model.module.weight.grad.shape, list(model.state_dict())
        ((2, 3), ['weight', 'bias'])
    """

    def __init__(self, module: Module, bucket_cap_mb: float = DEFAULT_BUCKET_CAP_MB,
                 broadcast_buffers: bool = True) -> None:
        super().__init__()
        if not isinstance(module, Module):
            raise TypeError(f"DistributedDataParallel expects a cnnlab.nn.Module, got "
                            f"{type(module).__name__}")
        if isinstance(bucket_cap_mb, bool) or not isinstance(bucket_cap_mb, (int, float)) or \
                not bucket_cap_mb > 0:
            raise ValueError(f"DistributedDataParallel: bucket_cap_mb must be a number > 0, got "
                             f"{bucket_cap_mb!r}")
        self.module = module
        self.bucket_cap_mb = float(bucket_cap_mb)
        self.broadcast_buffers = bool(broadcast_buffers)
        self._reducer: _Reducer | None = None
        if comm.world_size() > 1:
            cap = int(self.bucket_cap_mb * 2**20)
            _broadcast_arrays([p.data for p in module.parameters()], cap)
            _broadcast_arrays(list(module.buffers()), cap)
            self._reducer = _Reducer(module, cap)

    @property
    def spec(self) -> Any:
        """The wrapped model's architecture description (``model.spec``), if it has one."""
        return self.module.spec

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if self._reducer is not None:
            self._reducer.prepare()
        out = self.module(*args, **kwargs)
        if self._reducer is not None and self.training and self.broadcast_buffers:
            buffers = list(self.module.buffers())
            if buffers:
                _broadcast_arrays(buffers, int(self.bucket_cap_mb * 2**20))
        return out

    def bucket_sizes(self) -> list[int]:
        """Bytes in each gradient bucket, in the order they are reduced (empty with one rank)."""
        if self._reducer is None:
            return []
        self._reducer.prepare()
        return [b.buffer.nbytes for b in self._reducer.buckets]

    # The wrapped model's names, without a "module." prefix (see the class docstring).
    def named_parameters(self, prefix: str = ""):
        return self.module.named_parameters(prefix)

    def named_buffers(self):
        return self.module.named_buffers()

    def state_dict(self) -> dict[str, np.ndarray]:
        return self.module.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any], strict: bool = True) -> None:
        self.module.load_state_dict(state_dict, strict)

    def extra_repr(self) -> str:
        return f"bucket_cap_mb={self.bucket_cap_mb:g}"


def _flat_groups(arrays: list[np.ndarray], cap: int) -> list[list[np.ndarray]]:
    """``arrays`` in groups of one dtype and at most ``cap`` bytes (or a single array), in a
    fixed order (the same on every rank)."""
    groups: list[list[np.ndarray]] = []
    for dtype in dict.fromkeys(a.dtype for a in arrays):
        group: list[np.ndarray] = []
        size = 0
        for a in arrays:
            if a.dtype != dtype:
                continue
            if group and size + a.nbytes > cap:
                groups.append(group)
                group, size = [], 0
            group.append(a)
            size += a.nbytes
        if group:
            groups.append(group)
    return groups


def _broadcast_arrays(arrays: list[np.ndarray], cap: int, src: int = 0) -> None:
    """Copy rank ``src``'s ``arrays`` to every rank, in place, a few big messages at a time."""
    for group in _flat_groups(arrays, cap):
        flat = np.concatenate([a.reshape(-1) for a in group])
        comm.broadcast(flat, src)
        offset = 0
        for a in group:
            a[...] = flat[offset : offset + a.size].reshape(a.shape)
            offset += a.size


class _Bucket:
    """Gradients of some parameters, side by side in one flat array reduced as one."""

    def __init__(self, params: list[Parameter]) -> None:
        self.params = params
        self.buffer = np.zeros(sum(p.data.size for p in params), dtype=params[0].data.dtype)
        self.views = []
        offset = 0
        for p in params:
            self.views.append(self.buffer[offset : offset + p.data.size].reshape(p.data.shape))
            offset += p.data.size
        self.missing = len(params)
        self.request: Any = None

    def start(self) -> None:
        """Begin summing over the ranks without waiting (``Iallreduce``)."""
        self.request = comm.start_all_reduce(self.buffer)

    def reduce(self) -> None:
        """Sum over the ranks and divide by their number: the mean gradient, in place."""
        if self.request is None:
            comm.all_reduce(self.buffer, "sum")
        else:
            self.request.Wait()
            self.request = None
        self.buffer /= comm.world_size()


class _Reducer:
    """Collects one backward pass's gradients in buckets and averages them over the ranks."""

    def __init__(self, module: Module, cap: int, overlap: bool = False) -> None:
        self.module = module
        self.cap = cap
        # Start each bucket's reduction as soon as its gradients are in, while backward goes
        # on (see BENCHMARKS.md for what it was measured to gain).
        self.overlap = overlap
        self.layout: tuple = ()
        self.params: list[Parameter] = []
        self.buckets: list[_Bucket] = []
        self.slots: dict[int, tuple[_Bucket, int]] = {}
        self.arrived: set[int] = set()
        self._watch_ref = weakref.ref(self)
        self.prepare()

    def prepare(self) -> None:
        """Before a forward: check the last pass finished; rebuild the buckets if the set of
        parameters, their shapes or dtypes changed since."""
        if self.arrived:
            missing = [name for name, p in self.module.named_parameters()
                       if id(p) in self.slots and id(p) not in self.arrived]
            self.arrived.clear()
            raise RuntimeError(
                f"DistributedDataParallel: the last backward pass gave no gradient to "
                f"{len(missing)} parameter(s) ({', '.join(missing[:5])}), so the ranks' "
                "gradients were never averaged; every trainable parameter must affect the "
                "loss: freeze the others (requires_grad = False) or take them out of the model"
            )
        layout = tuple((id(p), p.data.dtype, p.data.shape, p.requires_grad)
                       for p in self.module.parameters())
        if layout != self.layout:
            self._build()
            self.layout = layout

    def _build(self) -> None:
        for p in self.params:
            _unwatch(p)
        # Reverse order: backward produces the last layers' gradients first.
        self.params = [p for p in self.module.parameters() if p.requires_grad][::-1]
        for p in self.params:
            _watch(p, self._watch_ref)
        self.buckets = [_Bucket(group) for group in _param_groups(self.params, self.cap)]
        self.slots = {id(p): (b, i) for b in self.buckets for i, p in enumerate(b.params)}

    def arrive(self, param: Parameter, grad: np.ndarray) -> None:
        """A parameter got its gradient for this pass; average all of them once all are in."""
        bucket, i = self.slots[id(param)]
        np.copyto(bucket.views[i], grad)
        if id(param) in self.arrived:
            return
        self.arrived.add(id(param))
        bucket.missing -= 1
        if self.overlap:
            if bucket.missing == 0:
                bucket.start()
            for b in self.buckets:  # MPI moves a request along only inside MPI calls
                if b.request is not None:
                    b.request.Test()
        if len(self.arrived) == len(self.slots):
            self._finish()

    def _finish(self) -> None:
        for bucket in self.buckets:
            bucket.reduce()
            bucket.missing = len(bucket.params)
            for p, view in zip(bucket.params, bucket.views, strict=True):
                _set_quietly(p, view)
        self.arrived.clear()


def _param_groups(params: list[Parameter], cap: int) -> list[list[Parameter]]:
    """Consecutive parameters of one dtype, at most ``cap`` bytes a group."""
    groups: list[list[Parameter]] = []
    for p in params:
        last = groups[-1] if groups else None
        if last and last[0].data.dtype == p.data.dtype and \
                sum(q.data.nbytes for q in last) + p.data.nbytes <= cap:
            last.append(p)
        else:
            groups.append([p])
    return groups


# ------------------------------------------------- watching a parameter's gradient arrive

_WATCHED_CLASSES: dict[type, type] = {}


def _watched_class(base: type) -> type:
    """A subclass of ``base`` whose gradient assignments are reported to a reducer."""
    if base not in _WATCHED_CLASSES:

        def _set_grad(self, array):
            Tensor._set_grad(self, array)
            reducer = self.__dict__["_cnnlab_reducer"]()
            if array is not None and reducer is not None:
                reducer.arrive(self, self._grad)

        _WATCHED_CLASSES[base] = type(base.__name__, (base,), {
            "_set_grad": _set_grad,
            "__module__": base.__module__,
            "__qualname__": base.__qualname__,
            "_cnnlab_base": base,
        })
    return _WATCHED_CLASSES[base]


def _watch(param: Parameter, reducer_ref: weakref.ref) -> None:
    current = param.__dict__.get("_cnnlab_reducer")
    if current is not None and current() is not None and current is not reducer_ref:
        raise TypeError("DistributedDataParallel: a parameter of this model is already "
                        "managed by another DistributedDataParallel wrapper; wrap a model once")
    if current is None:
        param.__class__ = _watched_class(type(param))
    param.__dict__["_cnnlab_reducer"] = reducer_ref


def _unwatch(param: Parameter) -> None:
    if "_cnnlab_reducer" in param.__dict__:
        del param.__dict__["_cnnlab_reducer"]
        param.__class__ = type(param)._cnnlab_base


def _set_quietly(param: Parameter, grad: np.ndarray) -> None:
    Tensor._set_grad(param, grad)
