"""Cache-sized tiles of a convolution's output: the unit of work of the conv kernels.

A window matrix built for a whole batch (151 MB for a 32x32x32 map at batch 128) goes out to
memory and has to come back for the GEMM. Built one tile at a time into a small buffer, it
stays in the core's L2 cache between the copy and the GEMM, and the layer runs 1.3-1.8x
faster. A tile is a block of whole samples when a sample's windows fit in ``TILE_BYTES``,
otherwise a band of output rows of one sample; bands also let a single image be shared
between threads.
"""

from __future__ import annotations

from typing import NamedTuple

# About one core's L2 cache (1 MiB here) plus what the L3 share absorbs: measured best
# between 0.6 and 2.5 MB for the layers of LeNet-5 and the CIFAR net.
TILE_BYTES = 2 << 20


class Tile(NamedTuple):
    samples: slice  # of the batch
    rows: slice  # output rows of those samples
    flat: slice  # the tile's rows in the (N*OH*OW, ...) matrices


def plan(n: int, oh: int, ow: int, row_bytes: int, parts: int,
         row_bands: bool = True) -> list[Tile]:
    """Cut an (N, OH, OW) output into tiles whose window matrix takes about ``TILE_BYTES``.

    Args:
        row_bytes: bytes of window matrix per output row (OW * KH * KW * C * itemsize).
        parts: how many threads will share the tiles; there are at least that many tiles
            when the batch allows, and a multiple of it when tiles are whole samples.
        row_bands: whether a sample may be cut into bands of rows (False where tiles
            written by different threads must not overlap, as in col2im).
    """
    if n == 0:
        return []
    rows_per_tile = max(1, TILE_BYTES // max(1, row_bytes))
    if not row_bands or n >= parts and rows_per_tile * 2 > oh:
        per_tile = max(1, rows_per_tile // oh)
        count = -(-n // per_tile)
        count = min(n, -(-count // parts) * parts)  # equal shares for the threads
        bounds = [n * i // count for i in range(count + 1)]
        return [Tile(slice(a, z), slice(0, oh), slice(a * oh * ow, z * oh * ow))
                for a, z in zip(bounds[:-1], bounds[1:], strict=True)]
    bands = min(oh, max(-(-oh // rows_per_tile), -(-parts // n)))
    edges = [oh * i // bands for i in range(bands + 1)]
    return [Tile(slice(s, s + 1), slice(r0, r1),
                 slice((s * oh + r0) * ow, (s * oh + r1) * ow))
            for s in range(n) for r0, r1 in zip(edges[:-1], edges[1:], strict=True)]


def share(tiles: list[Tile], parts: int) -> list[list[Tile]]:
    """Consecutive tiles in ``parts`` groups of equal count (fewer if there are fewer tiles),
    so each thread writes one contiguous stretch of the output; :func:`plan` makes tiles of
    equal size in a multiple of ``parts`` wherever it can."""
    count = min(parts, len(tiles))
    return [tiles[len(tiles) * i // count:len(tiles) * (i + 1) // count] for i in range(count)]


def largest(tiles: list[Tile]) -> int:
    """Rows of the largest tile (the size of a buffer that fits any of them)."""
    return max(t.flat.stop - t.flat.start for t in tiles)
