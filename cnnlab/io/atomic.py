"""Write a file so that readers see either the old version or the complete new one.

The data goes to a temporary file in the same directory (same file system, so the final
rename is atomic), is flushed and fsynced, then ``os.replace`` puts it in place and the
directory is fsynced so the rename itself survives a crash. If anything fails before the
rename, the temporary file is removed and the old file is left untouched.

A process killed mid-write cannot remove its temporary file. Each writer holds an
``flock`` on its temporary file while it writes, so the next write to the same path can
tell a dead writer's leftover (unlocked, untouched for a minute) from a live one's, and
removes it.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
import time
from collections.abc import Iterator
from typing import IO

try:
    import fcntl
except ImportError:  # Windows: leftovers are recognized by their age alone
    fcntl = None  # type: ignore[assignment]

# A temporary file untouched for this long, and not locked by a writer, is a leftover.
STALE_AFTER_S = 60.0
STALE_AFTER_UNLOCKED_S = 24 * 3600.0  # where locks cannot be checked


def _default_mode(path: str) -> int:
    """Permission bits for the new file: the old file's, or what ``open`` would give."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        pass
    # mkstemp creates files as 0600; a plain open() would honour the umask instead.
    # os.umask can only be read by setting it, so set it back at once.
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def _fsync_dir(directory: str) -> None:
    """Make a rename in ``directory`` durable (not possible on every platform)."""
    if os.name == "nt":
        return
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _temporary_prefix(path: str) -> str:
    return f".{os.path.basename(path)}."


def _is_live(fd: int) -> bool:
    """Whether another process holds the writer's lock on this open file."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:  # a file system without locks: judge by age alone
        return False
    fcntl.flock(fd, fcntl.LOCK_UN)
    return False


def remove_stale_temporaries(path: str | os.PathLike) -> list[str]:
    """Remove temporary files that writers of ``path`` left behind when they were killed.

    Returns:
        The paths removed.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    prefix, now = _temporary_prefix(path), time.time()
    removed = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    for entry in entries:
        if not (entry.name.startswith(prefix) and entry.name.endswith(".tmp")):
            continue
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            age = now - entry.stat(follow_symlinks=False).st_mtime
            if age < (STALE_AFTER_S if fcntl is not None else STALE_AFTER_UNLOCKED_S):
                continue
            fd = os.open(entry.path, os.O_RDONLY)
            try:
                live = fcntl is not None and _is_live(fd)
            finally:
                os.close(fd)
            if not live:
                os.unlink(entry.path)
                removed.append(entry.path)
        except OSError:  # gone already, or not ours to remove
            continue
    return removed


def _naming(exc: OSError, path: str) -> OSError:
    """The same error, saying which file could not be written (not the temporary's name)."""
    reason = exc.strerror or str(exc)
    if exc.errno is None:
        return OSError(f"could not write {path}: {reason}")
    return OSError(exc.errno, f"could not write {path}: {reason}")


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file that replaces ``path`` only when the block finishes cleanly.

    Args:
        path: the file to (over)write.
        mode: ``"wb"`` (default) for bytes or ``"w"`` for UTF-8 text.

    Returns:
        A context manager yielding the open temporary file.

    Raises:
        ValueError: for a mode other than ``"wb"`` or ``"w"``.
        OSError: when the directory is not writable or the disk is full; the message
            names ``path`` and the old file is unchanged.

    Example:
        >>> import os, tempfile
        >>> target = os.path.join(tempfile.mkdtemp(), "notes.txt")
        >>> with atomic_write(target, "w") as f:
        ...     _ = f.write("hello")
        >>> with open(target) as f:
        ...     f.read()
        'hello'
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_write mode must be 'wb' or 'w', got {mode!r}")
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    remove_stale_temporaries(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=_temporary_prefix(path), suffix=".tmp", dir=directory)
    except OSError as exc:
        raise _naming(exc, path) from exc
    try:
        if fcntl is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        encoding = "utf-8" if mode == "w" else None
        with os.fdopen(fd, mode, encoding=encoding) as f:
            os.chmod(tmp, _default_mode(path))
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise _naming(exc, path) from exc
        raise
    _fsync_dir(directory)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Atomically replace ``path`` with ``data``."""
    with atomic_write(path, "wb") as f:
        f.write(data)
