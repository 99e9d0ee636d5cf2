"""``cnnlab train`` on several ranks (``mpirun -np N cnnlab train ...``): what changes.

Every option means what it means in one process; in particular ``--batch-size`` is the batch
of one step, split evenly between the ranks. Each rank reads its share of every epoch's
shuffled order, evaluates its share of the validation and test sets, and the numbers are
combined; only rank 0 prints and writes files. In one process every method here returns
what it was given, so a run without MPI is exactly what it was.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any

from cnnlab.cli.main import CLIError, UsageError


@contextlib.contextmanager
def rank_zero_output() -> Iterator[None]:
    """Within the block, ranks other than 0 print nothing (their stdout and stderr go to
    /dev/null); a failure is still reported, through ``cnnlab.distributed.fail``."""
    from cnnlab.distributed import launcher_rank

    if launcher_rank() in (None, 0):
        yield
        return
    with open(os.devnull, "w") as null, contextlib.redirect_stdout(null), \
            contextlib.redirect_stderr(null):
        yield


def parse_on_every_rank(parser, argv):
    """``parser.parse_args(argv)``. On a usage error every rank fails alike, before MPI has
    started; rank 0 prints it and exits with 2, the others leave quietly with status 0: a
    non-zero one would make mpirun end the job, rank 0 possibly before it has printed."""
    from cnnlab.distributed import launcher_rank

    try:
        return parser.parse_args(argv)
    except SystemExit:
        if launcher_rank() in (None, 0):
            raise
        raise SystemExit(0) from None


def report_failure(message: str, code: int) -> int:
    """Print ``message`` and return ``code``; with several ranks, end them all, printing once
    (``cnnlab.distributed.fail``, which does not return)."""
    from cnnlab import distributed as dist

    if dist.world_size() > 1:
        dist.fail(message, code)
    print(message, file=sys.stderr)
    return code


class Ranks:
    """The ranks of a ``cnnlab train`` run, as the command needs them."""

    def __init__(self) -> None:
        from cnnlab import distributed as dist

        if dist.launched_by_mpi():
            try:
                dist.init()
            except ImportError as exc:
                raise CLIError(str(exc)) from None
        self.size = dist.world_size()
        self.rank = dist.rank()
        self.is_main = self.rank == 0

    @property
    def many(self) -> bool:
        return self.size > 1

    def check_resume(self, ckpt: dict[str, Any], where: str) -> None:
        """Refuse a checkpoint of another number of ranks; hand this rank its random states."""
        from cnnlab import distributed as dist

        try:
            dist.resume_checkpoint(ckpt)
        except ValueError as exc:
            raise CLIError(f"--resume {where}: {exc}") from None

    @contextlib.contextmanager
    def main_holds(self, hold, *args: Any) -> Iterator[None]:
        """Within the block, rank 0 holds ``hold(*args)`` (a context manager: the run
        folder's lock); when it cannot, every rank stops with its message."""
        if not self.many:
            with hold(*args):
                yield
            return
        with contextlib.ExitStack() as stack:
            error = None
            if self.is_main:
                try:
                    stack.enter_context(hold(*args))
                except CLIError as exc:
                    error = str(exc)
            self._together(error)
            yield

    def main_does(self, fn, *args: Any) -> None:
        """``fn(*args)`` on rank 0 only; when it fails, every rank stops with its message."""
        if not self.many:
            fn(*args)
            return
        error = None
        if self.is_main:
            try:
                fn(*args)
            except CLIError as exc:
                error = str(exc)
        self._together(error)

    def _together(self, error: str | None) -> None:
        from cnnlab.distributed import comm

        error = comm.broadcast_json(error)
        if error is not None:
            raise CLIError(error)

    def same_folder(self, out):
        """Rank 0's output folder on every rank (a default name holds the start time)."""
        from pathlib import Path

        from cnnlab.distributed import comm

        return Path(comm.broadcast_json(str(out))) if self.many else out

    def batch_per_rank(self, batch_size: int) -> int:
        """Each rank's share of a step's batch.

        Raises:
            UsageError: when the batch does not split evenly between the ranks.
        """
        if batch_size % self.size:
            fits = [b for b in (batch_size - batch_size % self.size,
                                batch_size + self.size - batch_size % self.size) if b > 0]
            raise UsageError(
                f"--batch-size {batch_size} is the batch of one step, split evenly between the "
                f"{self.size} ranks; give a multiple of {self.size} "
                f"(e.g. {' or '.join(map(str, fits))})"
            )
        return batch_size // self.size

    def wrap(self, model, config: dict[str, Any], shuffle) -> Any:
        """The model as ``fit`` trains it: batch norm over all ranks with ``--sync-bn``, rank 0's
        weights everywhere, gradients averaged; each rank its own random streams."""
        from cnnlab import distributed as dist
        from cnnlab import nn

        if not self.many:
            return model
        if config.get("sync_bn"):
            nn.SyncBatchNorm.convert_sync_batchnorm(model)
        dist.split_random_streams(shuffle)
        return dist.DistributedDataParallel(model)

    def sampler(self, train, seed: int):
        """This rank's share of every epoch's order (None in one process: ``fit`` shuffles)."""
        from cnnlab import distributed as dist

        return dist.DistributedSampler(dist.count(train), seed=seed) if self.many else None

    def share(self, data, what: str):
        """This rank's contiguous share of a set it evaluates (None stays None)."""
        from cnnlab import distributed as dist

        if not self.many or data is None:
            return data
        if dist.count(data) < self.size:
            raise CLIError(f"the {what} set has {dist.count(data)} images, fewer than the "
                           f"{self.size} ranks; use more data or fewer ranks")
        return dist.share(data)

    def callbacks(self, val_here) -> list:
        """What keeps the ranks' training in step (nothing in one process)."""
        from cnnlab import distributed as dist

        if not self.many:
            return []
        return [dist.DistributedTraining(0 if val_here is None else dist.count(val_here))]

    def evaluate(self, task, model, data) -> dict[str, Any] | None:
        """The task's metrics of the test set: measured by every rank on its share and merged
        where the task can merge them, else by rank 0 alone. Rank 0 gets the result; the
        others get None."""
        from cnnlab import distributed as dist
        from cnnlab.distributed import comm

        if not self.many:
            return task.evaluate(model, data)
        if task.merges_metrics and dist.count(data) >= self.size:
            parts = comm.gather_json(task.evaluate(model, dist.share(data)))
            return task.merge(parts) if self.is_main else None
        return task.evaluate(model, data) if self.is_main else None

    def describe(self, batch_size: int) -> str:
        """The batch as the plan line shows it."""
        if not self.many:
            return f"batch {batch_size}"
        return f"batch {batch_size} ({batch_size // self.size} on each of {self.size} ranks)"
