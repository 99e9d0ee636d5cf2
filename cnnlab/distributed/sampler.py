"""Which samples each rank reads: every epoch's shuffled order, dealt out in shards.

No MPI here: the order is a pure function of (seed, epoch, number of samples, world size),
so every rank computes the same order on its own and takes its share without talking to
the others.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np


def _count(value: Any, what: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"DistributedSampler: {what} must be an integer >= {minimum}, "
                         f"got {value!r}")
    return int(value)


class DistributedSampler:
    """The indices one rank reads in an epoch, as PyTorch's ``DistributedSampler`` deals them.

    Each epoch the ``n`` indices are shuffled by a generator seeded with ``(seed, epoch)``
    (the same on every rank), made a multiple of ``num_replicas`` long — by repeating the
    first indices (default) or dropping the last ones (``drop_last``) — and rank ``r`` takes
    every ``num_replicas``-th index starting at ``r``. So the ranks' shards are disjoint, the
    same size, and together cover the epoch; for a given seed, epoch and world size the order
    is always the same. Call ``set_epoch(e)`` before each epoch, or every epoch repeats the
    first one's order.

    Global step ``k`` with a per-rank batch ``B`` therefore reads positions ``k*N*B`` to
    ``(k+1)*N*B - 1`` of the epoch's order, split between the ranks: the same images a single
    process reads with batch ``N*B`` from the same order (``num_replicas=1``).

    The shuffle uses NumPy's generator, so the orders differ from PyTorch's (which uses its
    own), and ``(seed, epoch)`` seeds it as a pair: seed 1 epoch 0 is not seed 0 epoch 1.

    Args:
        n: The number of samples (or a dataset: its ``len()``).
        num_replicas: The number of ranks; default ``cnnlab.distributed.world_size()``.
        rank: This rank; default ``cnnlab.distributed.rank()``.
        shuffle: Shuffle each epoch (False: the indices in order, dealt out the same way).
        seed: Seed of the shuffle; must be the same on every rank.
        drop_last: Drop the tail that does not divide evenly instead of repeating indices.

    Shape:
        ``len(sampler)`` is ``ceil(n / num_replicas)``, or ``n // num_replicas`` with
        ``drop_last``.

    Raises:
        ValueError: for a rank outside ``0 .. num_replicas-1`` or negative counts.

    Example:
        >>> s = DistributedSampler(10, num_replicas=3, rank=1, shuffle=False)
        >>> len(s), list(s)
        (4, [1, 4, 7, 0])
        >>> s.set_epoch(1)
        >>> DistributedSampler(10, 3, 1, seed=5).indices().tolist() == \\
        ...     DistributedSampler(10, 3, 1, seed=5).indices().tolist()
        True
    """

    def __init__(self, n: Any, num_replicas: int | None = None, rank: int | None = None,
                 shuffle: bool = True, seed: int = 0, drop_last: bool = False) -> None:
        from cnnlab.distributed import comm

        if not isinstance(n, (int, np.integer)) and hasattr(n, "__len__"):
            n = len(n)
        self.n = _count(n, "n (the number of samples)", 0)
        self.num_replicas = _count(comm.world_size() if num_replicas is None else num_replicas,
                                   "num_replicas", 1)
        self.rank = _count(comm.rank() if rank is None else rank, "rank", 0)
        if self.rank >= self.num_replicas:
            raise ValueError(f"DistributedSampler: rank must be in 0..{self.num_replicas - 1} "
                             f"for num_replicas={self.num_replicas}, got {self.rank}")
        self.shuffle = bool(shuffle)
        self.seed = _count(seed, "seed", 0)
        self.drop_last = bool(drop_last)
        self.epoch = 0
        if self.drop_last:
            self.num_samples = self.n // self.num_replicas
        else:
            self.num_samples = -(-self.n // self.num_replicas)
        self.total_size = self.num_samples * self.num_replicas

    def set_epoch(self, epoch: int) -> None:
        """Use epoch ``epoch``'s order from now on (call it at the start of every epoch)."""
        self.epoch = _count(epoch, "epoch", 0)

    def epoch_order(self) -> np.ndarray:
        """The whole epoch's order before it is dealt out: ``total_size`` indices."""
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(self.n)
        else:
            order = np.arange(self.n)
        if self.total_size <= self.n:
            return order[: self.total_size]
        repeats = -(-(self.total_size - self.n) // max(self.n, 1))
        return np.concatenate([order, *[order] * repeats])[: self.total_size]

    def indices(self) -> np.ndarray:
        """This rank's indices for the current epoch, in the order they are read (int64)."""
        return self.epoch_order()[self.rank : self.total_size : self.num_replicas].astype(
            np.int64, copy=False)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices().tolist())

    def __len__(self) -> int:
        return self.num_samples

    def __repr__(self) -> str:
        return (f"DistributedSampler(n={self.n}, num_replicas={self.num_replicas}, "
                f"rank={self.rank}, shuffle={self.shuffle}, seed={self.seed}, "
                f"drop_last={self.drop_last})")


def shard(n: int, num_replicas: int | None = None, rank: int | None = None) -> slice:
    """This rank's contiguous block of ``n`` items (for evaluation): blocks in rank order,
    sizes differing by at most one, so that concatenating the ranks' results in rank order
    restores the original order.

    Example:
        >>> [shard(10, 3, r) for r in range(3)]
        [slice(0, 4, None), slice(4, 7, None), slice(7, 10, None)]
    """
    from cnnlab.distributed import comm

    size = comm.world_size() if num_replicas is None else num_replicas
    me = comm.rank() if rank is None else rank
    base, extra = divmod(int(n), size)
    start = me * base + min(me, extra)
    return slice(start, start + base + (1 if me < extra else 0))
