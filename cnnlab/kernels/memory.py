"""Freed memory kept in the process for the next step, as frameworks' caching allocators do.

Every training step allocates the same large arrays again (activations, masks, gradients,
1-20 MB each). With glibc's defaults, such arrays are mapped fresh from the operating system
and handed back when freed (or trimmed off the top of the heap), so every step page-faults
them in again: on LeNet-5 at batch 64, ~1,000 page faults and about 40% of the step.
Raising the mmap and trim thresholds keeps freed memory for reuse. It is done once, when
cnnlab is imported, on glibc only; never over the user's own ``MALLOC_*`` settings; and not
at all with ``CNNLAB_KEEP_FREED_MEMORY=0``. The cost: a process keeps up to
``TRIM_THRESHOLD`` of freed memory instead of returning it.
"""

from __future__ import annotations

import ctypes
import os

MMAP_THRESHOLD = 32 << 20  # arrays below this come from the heap (glibc's own adaptive cap)
TRIM_THRESHOLD = 128 << 20  # free memory kept at the top of the heap
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters, from glibc's malloc.h
USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_",
                 "MALLOC_MMAP_MAX_")


def is_glibc() -> bool:
    """Whether this process runs on the GNU C library."""
    try:
        return os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc")
    except (AttributeError, ValueError, OSError):  # not a GNU system
        return False


def keep_freed_memory(environ: dict[str, str] | None = None) -> bool:
    """Raise glibc's mmap and trim thresholds for this process.

    Returns:
        True if they were set; False when opted out, when the user set ``MALLOC_*``
        variables, or when the C library is not glibc.
    """
    env = os.environ if environ is None else environ
    if env.get("CNNLAB_KEEP_FREED_MEMORY", "1") == "0" or any(v in env for v in USER_SETTINGS):
        return False
    if not is_glibc():
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
                and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
