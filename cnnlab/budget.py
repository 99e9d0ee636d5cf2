"""How much memory a model or a data set may take, checked before anything is allocated.

A typo such as ``conv3x3x100000`` or an input of ``1x80000x80000`` asks for hundreds of
gigabytes. NumPy would try, swap the machine to a standstill or fail with a bare
``MemoryError``. cnnlab works out the size from shapes first (Python integers, which never
overflow) and refuses what cannot fit, saying how much it would take and how much there is.

The limit is the machine's physical memory (``os.sysconf``), or the process's address-space
limit (``ulimit -v``, ``resource.RLIMIT_AS``) when that is smaller.
"""

from __future__ import annotations

import os

from cnnlab import _checkout  # noqa: F401  (a folder named cnnlab hiding the package)

__all__ = ["TooLargeError", "check_fits", "format_bytes", "memory_limit"]


class TooLargeError(ValueError):
    """A model or a data set would need more memory than the machine has.

    The message says what needs how much, how much there is and what to change. It is a
    ``ValueError``: the request itself is unreasonable for this machine.
    """


def _physical_memory() -> int | None:
    try:
        pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):  # not a POSIX system
        return None
    return pages * page_size if pages > 0 and page_size > 0 else None


def _address_space_limit() -> int | None:
    try:
        import resource
    except ImportError:  # Windows
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    return None if soft == resource.RLIM_INFINITY or soft <= 0 else soft


def memory_limit() -> int:
    """Bytes of memory this process can hope to use: physical memory, or the address-space
    limit when one is set and smaller. 8 GiB when neither can be read.

    Example:
        >>> memory_limit() > 0
        True
    """
    found = [n for n in (_physical_memory(), _address_space_limit()) if n]
    return min(found) if found else 8 << 30


def format_bytes(n: int | float) -> str:
    """Bytes in binary units, as ``free`` and ``top`` show them.

    Example:
        >>> format_bytes(3 * 2**40 + 2**39), format_bytes(1536), format_bytes(12)
        ('3.5 TiB', '1.5 KiB', '12 bytes')
    """
    for unit, size in (("PiB", 2**50), ("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20),
                       ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} bytes"


def check_fits(what: str, nbytes: int, hint: str, limit: int | None = None) -> None:
    """Raise :class:`TooLargeError` when ``nbytes`` exceed the memory limit.

    Args:
        what: what needs the memory, e.g. ``"the parameters of 'fc10' for input 1x8x8"``.
        nbytes: how many bytes it needs.
        hint: what to do about it.
        limit: the limit in bytes; default :func:`memory_limit`.

    Raises:
        TooLargeError: ``<what> would need <n>, more than the <limit> of memory ...; <hint>``.

    Example:
        >>> check_fits("a small array", 1024, "use a smaller one")
        >>> check_fits("a huge array", 2**60, "use a smaller one")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        cnnlab.budget.TooLargeError: a huge array would need 1024.0 PiB, ...
    """
    limit = memory_limit() if limit is None else limit
    if nbytes > limit:
        raise TooLargeError(
            f"{what} would need {format_bytes(nbytes)}, more than the {format_bytes(limit)} "
            f"of memory this machine has; {hint}"
        )
