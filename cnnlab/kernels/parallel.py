"""Threads for the kernels: work split over the batch, with BLAS kept single-threaded.

OpenBLAS's own threads speed up only large, square GEMMs; on the skinny ones of a CNN they
are often slower than one thread, and when another process holds a core they spin and can
cost 10x. Splitting a layer over the batch instead parallelizes everything in it — the
window copies, the padding, the GEMM and the bias — and NumPy releases the GIL for all of
them. BLAS threads are set to one only while a kernel runs (through threadpoolctl, when it
is installed) and restored afterwards, so other NumPy code in the process is unaffected.
It must be one thread for every GEMM of a step, split or not: OpenBLAS threads keep spinning
for a while after a call, and then fight the pool's threads for the cores.

The exception is a batch smaller than the thread count (one image, for latency): there is
no batch to split, so a Module called on it leaves BLAS its threads for the whole pass
(they were 1.8x faster on the CIFAR net's GEMMs of one image) and the pool stays idle.
Switching BLAS threads per kernel instead cost more than it saved.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

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


class _BlasControl:
    """Sets the BLAS library to one thread while a kernel (or a Module call) runs;
    re-entrant, and only the outermost block switches."""

    def __init__(self) -> None:
        self._lib: Any = None
        self._saved = 0
        self._depth = 0
        self.threaded = False  # inside left_threaded(): BLAS threads on, no pool splitting
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

    @property
    def entered(self) -> bool:
        """Whether a kernel (or a Module call) in this process is inside the block."""
        return self._depth > 0

    def __enter__(self) -> _BlasControl:
        if self._lib is not None:
            if self._depth == 0:
                self._saved = self._lib.get_num_threads()
                if self._saved != 1:
                    self._lib.set_num_threads(1)
            self._depth += 1
        return self

    def __exit__(self, *exc: object) -> None:
        if self._lib is not None:
            self._depth -= 1
            if self._depth == 0 and self._saved != 1:
                self._lib.set_num_threads(self._saved)

    @contextlib.contextmanager
    def left_threaded(self) -> Iterator[None]:
        """A block in which BLAS keeps its own threads and nested kernels leave them be:
        for work that cnnlab's pool does not split (a batch smaller than its threads)."""
        if self._lib is None or self._depth > 0:
            yield
            return
        self._depth += 1
        self._saved = 1  # nothing to restore on the way out
        self.threaded = True
        try:
            yield
        finally:
            self._depth -= 1
            self.threaded = False


single_threaded_blas = _BlasControl()


def workers(cost: int) -> int:
    """How many threads a kernel of ``cost`` multiply-adds should use (1: not worth it, BLAS
    threads cannot be controlled, or BLAS has the cores to itself)."""
    if cost < MIN_SPLIT_WORK or not single_threaded_blas.available or \
            single_threaded_blas.threaded:
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
