"""Data-parallel training over MPI: the same model on every rank, each on its share of the data.

Start N processes with an MPI launcher (``mpirun -np N python train.py``, or ``mpirun -np N
cnnlab train ...``); in each, :func:`init` joins the job. Then:

- :class:`DistributedDataParallel` wraps the model: rank 0's weights everywhere at the
  start, gradients averaged over the ranks (in buckets of a few MB) after every backward;
- :class:`DistributedSampler` deals each epoch's shuffled order out to the ranks;
- ``cnnlab.nn.SyncBatchNorm`` normalizes over the whole batch instead of each rank's share;
- :class:`DistributedTraining` (a ``fit`` callback) and :func:`evaluate` make the metrics
  those of the whole batch and set;
- :func:`all_reduce`, :func:`broadcast`, :func:`all_gather`, :func:`barrier` are the
  collectives, on NumPy arrays and Tensors, in place.

mpi4py is imported by :func:`init` only (``pip install "cnnlab[mpi]"``). Without it, or before
``init()``, a process is rank 0 of a world of one and everything here works, doing nothing
more than one process needs. See ``docs/distributed.md``.

Example:
    >>> from cnnlab import distributed as dist
    >>> dist.rank(), dist.world_size(), dist.is_initialized()
    (0, 1, False)
"""

from cnnlab.distributed.comm import (
    WORLD,
    all_gather,
    all_gather_rows,
    all_reduce,
    barrier,
    broadcast,
    fail,
    init,
    is_initialized,
    is_main_process,
    launched_by_mpi,
    launcher_rank,
    rank,
    world_size,
)
from cnnlab.distributed.ddp import DistributedDataParallel
from cnnlab.distributed.sampler import DistributedSampler, shard
from cnnlab.distributed.training import (
    DistributedTraining,
    check_world_size,
    checkpoint_world_size,
    count,
    evaluate,
    resume_checkpoint,
    share,
    split_random_streams,
)

__all__ = [
    "WORLD", "DistributedDataParallel", "DistributedSampler", "DistributedTraining",
    "all_gather", "all_gather_rows", "all_reduce", "barrier", "broadcast", "check_world_size",
    "checkpoint_world_size", "count", "evaluate", "fail", "init", "is_initialized",
    "is_main_process", "launched_by_mpi", "launcher_rank", "rank", "resume_checkpoint", "shard",
    "share", "split_random_streams", "world_size",
]
