"""Write a file so that readers see either the old version or the complete new one.

The data goes to a temporary file in the same directory (same file system, so the final
rename is atomic), is flushed and fsynced, then ``os.replace`` puts it in place and the
directory is fsynced so the rename itself survives a crash. If anything fails before the
rename, the temporary file is removed and the old file is left untouched.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator
from typing import IO


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
        OSError: when the directory is not writable; the old file is then unchanged.

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
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        encoding = "utf-8" if mode == "w" else None
        with os.fdopen(fd, mode, encoding=encoding) as f:
            os.chmod(tmp, _default_mode(path))
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(directory)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Atomically replace ``path`` with ``data``."""
    with atomic_write(path, "wb") as f:
        f.write(data)
