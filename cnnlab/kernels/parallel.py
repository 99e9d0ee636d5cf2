"""Threads for the kernels: one policy, decided once per forward and once per backward pass.

OpenBLAS's own threads speed up only large, square GEMMs; on the skinny ones of a CNN they
are often slower than one thread, and when another process holds a core they spin and can
cost 10x. Splitting a layer over the batch instead parallelizes everything in it — the
window copies, the padding, the GEMM and the bias — and NumPy releases the GIL for all of
them. So a pass over a batch of at least as many images as threads splits its kernels over
the batch and holds BLAS at one thread for the whole pass (through threadpoolctl, when it is
installed), restoring it afterwards, so other NumPy code in the process is unaffected. It
must be one thread for every GEMM of such a pass, split or not: OpenBLAS threads keep
spinning for a while after a call, and then fight the pool's threads for the cores.

A batch smaller than the thread count (one image, for latency) has no batch to split, so
its pass leaves BLAS its threads (they were 1.8x faster on the CIFAR net's GEMMs of one
image) and the pool stays idle; so do passes over data that are not image maps (an LSTM's
GEMMs), and ops called outside any module or backward pass. Switching BLAS threads per
kernel instead cost more than it saved.

:class:`region` is the one place this is decided: ``Module.__call__`` enters it at the root
of a forward pass and ``backward`` at the root of a backward pass; layers and kernels only
ask :func:`workers`. The decision is per Python thread, so two threads running models do
not undo each other's settings.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

# Below this many multiply-adds a layer is not worth splitting (thread hand-off ~50 us).
MIN_SPLIT_WORK = 1_000_000


def _default_threads() -> int:
    for var in ("CNNLAB_NUM_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(var, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


_threads = _default_threads()
_executor: ThreadPoolExecutor | None = None


def get_num_threads() -> int:
    """How many threads cnnlab's kernels use (default: the usable cores, or
    ``CNNLAB_NUM_THREADS`` / ``OMP_NUM_THREADS`` when set)."""
    return _threads


def set_num_threads(n: int) -> None:
    """Set how many threads cnnlab's kernels use (1 runs everything in the calling thread).

    Raises:
        ValueError: if ``n`` is not a positive integer.
    """
    global _threads, _executor
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"set_num_threads expects a positive integer, got {n!r}")
    if n != _threads and _executor is not None:
        _executor.shutdown(wait=True)
        _executor = None
    _threads = n


class _Blas:
    """The BLAS library's thread count, through threadpoolctl when it is installed.

    The setting is process-wide, so it is reference-counted: it drops to one thread when the
    first pass that splits over the batch begins (in any Python thread) and is restored
    when the last one ends.
    """

    def __init__(self) -> None:
        self._lib: Any = None
        self._lock = threading.Lock()
        self._users = 0
        self._saved = 1
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:
            return
        controllers = ThreadpoolController().select(user_api="blas").lib_controllers
        if len(controllers) == 1:  # more than one BLAS loaded: leave them alone
            self._lib = controllers[0]

    @property
    def available(self) -> bool:
        return self._lib is not None

    def threads(self) -> int | None:
        """BLAS's current thread count (None when it cannot be read)."""
        return None if self._lib is None else self._lib.get_num_threads()

    def hold_single(self) -> None:
        with self._lock:
            if self._users == 0:
                self._saved = self._lib.get_num_threads()
                if self._saved != 1:
                    self._lib.set_num_threads(1)
            self._users += 1

    def release_single(self) -> None:
        with self._lock:
            self._users -= 1
            if self._users == 0 and self._saved != 1:
                self._lib.set_num_threads(self._saved)


_blas = _Blas()


class _ThreadState(threading.local):
    depth = 0  # nesting of regions in this thread; only the outermost decides
    split = False  # this thread's pass splits kernels over the batch (BLAS: one thread)


_state = _ThreadState()


class region:
    """The thread policy for one forward or one backward pass, entered at its root.

    With a batch of at least as many images as threads (and BLAS threads under control),
    the kernels split each layer over the batch and BLAS runs single-threaded for the whole
    pass; with a smaller batch (one image, for latency) nothing is split and BLAS keeps its
    own threads. Nested regions (a sub-module's call) keep the outer decision. The decision
    is per Python thread; only the BLAS setting is shared, and reference-counted.

    Args:
        batch: images in the pass (0 when its data are not image maps).
    """

    __slots__ = ("_split", "_outer")

    def __init__(self, batch: int) -> None:
        self._outer = _state.depth == 0
        self._split = self._outer and _blas.available and batch >= _threads

    def __enter__(self) -> region:
        if self._outer and self._split:
            _blas.hold_single()
        _state.depth += 1
        if self._outer:
            _state.split = self._split
        return self

    def __exit__(self, *exc: object) -> None:
        _state.depth -= 1
        if self._outer:
            _state.split = False
            if self._split:
                _blas.release_single()


def in_region() -> bool:
    """Whether the calling thread is inside a forward or backward pass's region."""
    return _state.depth > 0


class Policy(NamedTuple):
    """What the calling thread's current pass does: ``split`` (kernels split over the batch
    across ``threads`` threads) and ``blas_threads`` (BLAS's thread count, None if unknown)."""

    split: bool
    threads: int
    blas_threads: int | None


def current_policy() -> Policy:
    """The policy in force for the calling thread (outside a pass: no splitting)."""
    return Policy(_state.split, _threads if _state.split else 1, _blas.threads())


def workers(cost: int) -> int:
    """How many threads a kernel of ``cost`` multiply-adds should use (1: not worth it, or
    the pass does not split over the batch)."""
    if cost < MIN_SPLIT_WORK or not _state.split:
        return 1
    return _threads


def run_parts(work: Callable[[Any], Any], parts: list[Any]) -> list[Any]:
    """Run ``work(part)`` for every part, one part per thread, the calling thread taking the
    first; returns the results in order."""
    global _executor
    if len(parts) <= 1:
        return [work(p) for p in parts]
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=_threads - 1,
                                       thread_name_prefix="cnnlab-kernel")
    futures = [_executor.submit(work, p) for p in parts[1:]]
    first = work(parts[0])
    return [first] + [f.result() for f in futures]


def over_batch(work: Callable[[int, int], Any], n: int, cost: int) -> list[Any]:
    """Run ``work(start, stop)`` over contiguous chunks of ``range(n)``, in parallel when
    there are threads to use and ``cost`` (multiply-adds) makes it worth it.

    Returns:
        The chunks' results, in batch order.
    """
    if cost < MIN_SPLIT_WORK:  # the common small case, without the bookkeeping below
        return [work(0, n)]
    chunks = max(1, min(workers(cost), n))
    bounds = [n * i // chunks for i in range(chunks + 1)]
    return run_parts(lambda ab: work(*ab), list(zip(bounds[:-1], bounds[1:], strict=True)))
