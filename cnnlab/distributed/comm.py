"""The MPI side of ``cnnlab.distributed``: start-up, ranks, collectives, failing together.

mpi4py is imported by :func:`init` and by nothing else, so ``import cnnlab`` (and ``import
cnnlab.distributed``) never loads MPI. Before ``init()`` — or without MPI at all — a process
is rank 0 of a world of one: every collective returns its input, so code written for N
ranks runs unchanged in one process.

Collectives work in place on NumPy arrays (and on ``Tensor``s, through their ``.data``), as
PyTorch's do on tensors, and use MPI's buffer interface: no pickle anywhere. The few
objects that travel as such (random-generator states for checkpoints) go as JSON text.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from typing import Any

import numpy as np

# Variables a launcher sets in every process it starts: Open MPI's mpirun, PMIx launchers
# (Open MPI 5, Slurm's srun --mpi=pmix) and PMI ones (MPICH's and Intel MPI's mpiexec,
# srun --mpi=pmi2).
_SIZE_VARS = ("OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE")
_RANK_VARS = ("OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK")
# How long a failing rank waits to learn whether every rank failed the same way (and one
# line can stand for all) before it stops the job alone. Ranks that fail on the same input
# reach the failure within a fraction of this of each other.
AGREE_SECONDS = 2.0

_MPI: Any = None  # the mpi4py.MPI module, once init() has run
_world: Any = None  # COMM_WORLD
_control: Any = None  # a duplicate of COMM_WORLD for failure agreement, never for training
_previous_excepthook = None

_OPS = ("sum", "mean", "max", "min")


def launched_by_mpi() -> bool:
    """Whether this process was started by an MPI launcher (mpirun, mpiexec, srun --mpi=...).

    It looks at the environment only; nothing is imported.
    """
    return any(os.environ.get(var) for var in _SIZE_VARS)


def launcher_rank() -> int | None:
    """This process's rank as the launcher's environment says, or None outside one.

    Known before MPI starts, so that a usage error can be printed by rank 0 alone.
    """
    for var in _RANK_VARS:
        value = os.environ.get(var, "")
        if value.isdigit():
            return int(value)
    return None


def init() -> None:
    """Start MPI (once; later calls do nothing) and join the job's ranks.

    Also installs an exception hook: an uncaught exception in any rank prints its traceback
    once and ends every rank within seconds (see :func:`fail`), instead of leaving the others
    waiting forever in a collective. When several ranks share a machine and no thread count
    was set (``CNNLAB_NUM_THREADS``, ``OMP_NUM_THREADS``), each rank gets its share of the
    cores. Unless ``OMPI_MCA_mpi_yield_when_idle`` is set, Open MPI is asked to let a waiting
    rank yield its core.

    Raises:
        ImportError: when mpi4py is not installed (``pip install "cnnlab[mpi]"``).
    """
    global _MPI, _world, _control, _previous_excepthook
    if _MPI is not None:
        return
    # A rank waiting for the others gives its core away instead of spinning on it (Open MPI;
    # read when MPI starts). Spinning saves microseconds on an idle machine and cost 10x on a
    # busy one (see BENCHMARKS.md); an explicit setting wins.
    os.environ.setdefault("OMPI_MCA_mpi_yield_when_idle", "1")
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise ImportError(
            f"cnnlab.distributed needs mpi4py and an MPI library ({exc}); install them with "
            'pip install "cnnlab[mpi]" (mpi4py and Open MPI from PyPI), then start the ranks '
            "with mpirun -np N"
        ) from None
    _world = MPI.COMM_WORLD
    _control = _world.Dup()
    _MPI = MPI
    _previous_excepthook = sys.excepthook
    sys.excepthook = _excepthook
    _share_cores()


def _share_cores() -> None:
    """Split the machine's cores between the ranks on it, unless a thread count was set."""
    if any(os.environ.get(var) for var in ("CNNLAB_NUM_THREADS", "OMP_NUM_THREADS")):
        return
    local = _world.Split_type(_MPI.COMM_TYPE_SHARED)
    try:
        per_machine = local.Get_size()
    finally:
        local.Free()
    if per_machine > 1:
        from cnnlab.kernels.parallel import get_num_threads, set_num_threads

        # The cores this rank may use (mpirun may have bound it to some), but no more than
        # its share of the machine's when the ranks' cores overlap.
        share = max(1, (os.cpu_count() or 1) // per_machine)
        set_num_threads(max(1, min(get_num_threads(), share)))


def is_initialized() -> bool:
    """Whether :func:`init` has run in this process."""
    return _MPI is not None


def rank() -> int:
    """This process's rank, 0 .. world_size()-1 (0 before ``init()``)."""
    return 0 if _world is None else _world.Get_rank()


def world_size() -> int:
    """How many ranks take part (1 before ``init()``)."""
    return 1 if _world is None else _world.Get_size()


def is_main_process() -> bool:
    """Whether this is rank 0, the one that prints and writes files."""
    return rank() == 0


def _buffer(x: Any, who: str) -> tuple[np.ndarray, Any]:
    """The array to communicate for ``x`` and what to hand back: arrays and Tensors are
    worked on in place, numbers come back as numbers."""
    from cnnlab.tensor import Tensor

    if isinstance(x, Tensor):
        return x.data, x
    if isinstance(x, np.ndarray):
        return x, x
    if isinstance(x, (bool, int, float, np.number)):
        return np.array([x]), None
    raise TypeError(f"{who} expects a NumPy array, a cnnlab Tensor or a number, got "
                    f"{type(x).__name__}")


def _contiguous_call(array: np.ndarray, call) -> None:
    """Run ``call(buffer)`` on ``array`` itself when MPI can use its memory, else on a copy
    that is written back."""
    if array.flags.c_contiguous and array.flags.writeable:
        call(array)
    else:
        work = np.ascontiguousarray(array)
        call(work)
        np.copyto(array, work)


def all_reduce(x: Any, op: str = "sum") -> Any:
    """Combine ``x`` over every rank, element by element; every rank gets the result.

    Args:
        x: A NumPy array or Tensor (reduced in place, as PyTorch does) or a number.
        op: "sum", "mean" (the sum divided by the world size; a float for a number),
            "max" or "min".

    Returns:
        ``x`` itself for an array or Tensor, the reduced number for a number.

    Raises:
        ValueError: for an unknown ``op``.
        TypeError: for "mean" of an integer array (it could not hold the result).

    Example:
        >>> import numpy as np
        >>> from cnnlab import distributed as dist
        >>> x = np.array([1.0, 2.0], dtype=np.float32)
        >>> dist.all_reduce(x, op="mean") is x, x   # one process: the mean of one copy
        (True, array([1., 2.], dtype=float32))
    """
    if op not in _OPS:
        raise ValueError(f"all_reduce: op must be one of {list(_OPS)}, got {op!r}")
    array, handle = _buffer(x, "all_reduce")
    if op == "mean" and handle is None:  # the mean of numbers is a float
        array = array.astype(np.float64)
    if op == "mean" and array.dtype.kind != "f":
        raise TypeError(f"all_reduce: op='mean' needs a floating-point array, got {array.dtype}; "
                        "reduce with op='sum' and divide, or convert the array first")
    if world_size() > 1:
        mpi_op = {"sum": _MPI.SUM, "mean": _MPI.SUM, "max": _MPI.MAX, "min": _MPI.MIN}[op]
        _contiguous_call(array, lambda buf: _world.Allreduce(_MPI.IN_PLACE, buf, op=mpi_op))
        if op == "mean":
            array /= world_size()
    if handle is None:
        return array[0].item()
    return handle


def start_all_reduce(array: np.ndarray) -> Any:
    """Begin summing a contiguous array over the ranks in place (``Iallreduce``); the
    returned request's ``Wait()`` finishes it. Only for a world of more than one rank."""
    return _world.Iallreduce(_MPI.IN_PLACE, array, op=_MPI.SUM)


def broadcast(x: Any, src: int = 0) -> Any:
    """Copy ``x`` from rank ``src`` to every rank (in place for arrays and Tensors).

    Every rank must pass an array of the same shape and dtype.

    Returns:
        ``x`` itself for an array or Tensor, ``src``'s value for a number.

    Raises:
        ValueError: for a ``src`` outside 0 .. world_size()-1.
    """
    _check_rank(src, "broadcast: src")
    array, handle = _buffer(x, "broadcast")
    if world_size() > 1:
        _contiguous_call(array, lambda buf: _world.Bcast(buf, root=src))
    if handle is None:
        return array[0].item()
    return handle


def all_gather(x: Any) -> np.ndarray:
    """Every rank's ``x`` stacked in rank order: shape ``(world_size, *x.shape)``.

    Every rank must pass an array of the same shape and dtype.

    Example:
        >>> import numpy as np
        >>> from cnnlab import distributed as dist
        >>> dist.all_gather(np.arange(3)).shape
        (1, 3)
    """
    array, _ = _buffer(x, "all_gather")
    array = np.ascontiguousarray(array)
    out = np.empty((world_size(), *array.shape), dtype=array.dtype)
    if world_size() > 1:
        _world.Allgather(array, out)
    else:
        out[0] = array
    return out


def all_gather_rows(x: np.ndarray) -> np.ndarray:
    """Every rank's array concatenated along the first axis in rank order; the first axis
    may differ between ranks, the rest of the shape and the dtype may not.

    Example:
        >>> import numpy as np
        >>> from cnnlab import distributed as dist
        >>> dist.all_gather_rows(np.arange(3)).tolist()
        [0, 1, 2]
    """
    array = np.ascontiguousarray(x)
    if world_size() == 1:
        return array.copy()
    rows = np.zeros(world_size(), dtype=np.int64)
    _world.Allgather(np.array([len(array)], dtype=np.int64), rows)
    per_row = int(np.prod(array.shape[1:], dtype=np.int64))
    out = np.empty((int(rows.sum()), *array.shape[1:]), dtype=array.dtype)
    _world.Allgatherv(array, [out, rows * per_row])
    return out


def barrier() -> None:
    """Wait until every rank has reached this call."""
    if world_size() > 1:
        _world.Barrier()


def _check_rank(value: Any, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or \
            not 0 <= value < world_size():
        raise ValueError(f"{what} must be a rank in 0..{world_size() - 1}, got {value!r}")


class _World:
    """The ranks of this job as a group for collective ops (``cnnlab.ops.norm`` takes one)."""

    @property
    def size(self) -> int:
        return world_size()

    def all_reduce(self, array: np.ndarray) -> np.ndarray:
        return all_reduce(array, "sum")

    def all_gather(self, array: np.ndarray) -> np.ndarray:
        return all_gather(array)


WORLD = _World()


# ------------------------------------------------------------------ objects, as JSON text


def gather_json(obj: Any, dst: int = 0) -> list[Any] | None:
    """Every rank's JSON-able ``obj``, in rank order, on rank ``dst`` (None elsewhere)."""
    data = np.frombuffer(json.dumps(obj).encode(), dtype=np.uint8)
    if world_size() == 1:
        return [json.loads(data.tobytes())]
    sizes = np.zeros(world_size(), dtype=np.int64)
    _world.Gather(np.array([data.size], dtype=np.int64), sizes, root=dst)
    out = np.empty(int(sizes.sum()), dtype=np.uint8) if rank() == dst else None
    _world.Gatherv(data, [out, sizes] if rank() == dst else None, root=dst)
    if rank() != dst:
        return None
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    return [json.loads(out[a:b].tobytes()) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def broadcast_json(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s JSON-able ``obj`` on every rank."""
    if world_size() == 1:
        return obj
    data = np.frombuffer(json.dumps(obj).encode(), dtype=np.uint8) if rank() == src else None
    size = broadcast(np.array([0 if data is None else data.size], dtype=np.int64), src)
    buf = data.copy() if data is not None else np.empty(int(size[0]), dtype=np.uint8)
    _world.Bcast(buf, root=src)
    return json.loads(buf.tobytes())


# ------------------------------------------------------------------------------ failure


def fail(message: str, code: int = 1) -> None:
    """End the job because this rank cannot go on: one report, every rank stops.

    Ranks that fail on the same input (a missing file, a bad option, a NaN loss after the
    gradients were averaged) get there together; they agree within ``AGREE_SECONDS`` on the
    lowest failing rank, which alone prints ``message``, and all exit with ``code``. A rank
    that fails alone prints ``message`` naming itself ("rank R of N") and aborts the job,
    which ends the other ranks wherever they wait. Never returns. Outside MPI it prints and
    exits.

    Args:
        message: What to print to stderr (a line, or a traceback).
        code: The exit status.
    """
    if not _report(message):
        _world.Abort(code)
    sys.exit(code)


def _report(message: str) -> bool:
    """Print ``message`` once for the ranks failing together; False if this rank is alone."""
    stderr = sys.__stderr__ or sys.stderr
    if world_size() == 1:
        print(message, file=stderr, flush=True)
        return True
    me = rank()
    lowest = np.empty(1, dtype=np.int64)
    request = _control.Iallreduce(np.array([me], dtype=np.int64), lowest, op=_MPI.MIN)
    deadline = time.monotonic() + AGREE_SECONDS
    agreed = request.Test()
    while not agreed and time.monotonic() < deadline:
        time.sleep(0.005)
        agreed = request.Test()
    if agreed:  # every rank failed here: one of them speaks for all
        if me == int(lowest[0]):
            print(message, file=stderr, flush=True)
        _control.Barrier()  # no rank exits (and has mpirun end the job) before it is out
        return True
    print(_on_rank(message, me, world_size()), file=stderr, flush=True)
    return False


def _on_rank(message: str, me: int, n: int) -> str:
    """``message`` saying which rank it comes from."""
    lead = "cnnlab: error: "
    if message.startswith(lead):
        return f"cnnlab: error on rank {me} of {n}: {message[len(lead):]}"
    return f"rank {me} of {n}: {message}"


def _excepthook(kind, value, tb) -> None:
    if world_size() == 1 or issubclass(kind, SystemExit):
        (_previous_excepthook or sys.__excepthook__)(kind, value, tb)
        return
    text = "".join(traceback.format_exception(kind, value, tb)).rstrip()
    sys.stdout.flush()
    if not _report(text):
        _world.Abort(1)
    # Every rank failed the same way: Python now exits with status 1 on each.
