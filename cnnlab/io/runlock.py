"""One writer per run folder: a lock that two trainings into the same ``--out`` cannot share.

Two processes writing the same folder would both report success while only one of their
models survives. :class:`RunLock` creates the folder, proves it writable by creating
``.cnnlab-run.lock`` in it (so a read-only folder is found before any training, not after
an epoch), and holds an ``fcntl.flock`` on that file while the run lasts. The operating
system releases the lock when the process ends, however it ends, so a killed run never
leaves the folder locked. The lock file records who holds it, for the message a second
writer gets.

Where ``fcntl`` does not exist (Windows), the folder is still checked for writability, but
not locked.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import sys
from pathlib import Path
from types import TracebackType

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["LOCK_FILE", "RunLock", "RunLockedError"]

LOCK_FILE = ".cnnlab-run.lock"


class RunLockedError(RuntimeError):
    """Another process is writing to the same run folder."""


class RunLock:
    """Hold the run folder ``folder`` for this process.

    Args:
        folder: the run folder; created (with its parents) if missing.
        what: how the message names the folder, e.g. ``"--out runs/a"``.

    Raises (on entering):
        RunLockedError: another process holds the folder (its pid and start are named).
        OSError: the folder cannot be created or written (read-only, full, no permission);
            the message names it.

    Example:
        >>> import tempfile
        >>> folder = tempfile.mkdtemp()
        >>> with RunLock(folder):
        ...     pass  # train, save...
    """

    def __init__(self, folder: str | os.PathLike, what: str | None = None) -> None:
        self.folder = Path(folder)
        self.what = what or str(self.folder)
        self.path = self.folder / LOCK_FILE
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()

    def acquire(self) -> None:
        """Create the folder and take its lock (see the class)."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise OSError(exc.errno, f"cannot write to {self.what}: "
                                     f"{exc.strerror or exc}; choose a folder you can write "
                                     "to") from exc
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = self._holder(fd)
                os.close(fd)
                raise RunLockedError(
                    f"another cnnlab process is writing to {self.what}{holder}; wait for it "
                    "to finish, or choose another folder"
                ) from None
            except OSError:  # a file system without locks: go on unlocked
                pass
        try:
            self._record(fd)
        except OSError as exc:  # e.g. the disk is full
            os.close(fd)
            raise OSError(exc.errno, f"cannot write to {self.what}: "
                                     f"{exc.strerror or exc}") from exc
        self._fd = fd

    def release(self) -> None:
        """Give the folder up (the lock file stays; it is empty of meaning once unlocked)."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing releases the flock
            self._fd = None

    @staticmethod
    def _record(fd: int) -> None:
        info = {"pid": os.getpid(), "started": datetime.datetime.now().isoformat(" ", "seconds"),
                "command": " ".join(sys.argv[:8])}
        data = json.dumps(info).encode()
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, data)
        os.fsync(fd)

    @staticmethod
    def _holder(fd: int) -> str:
        try:
            os.lseek(fd, 0, os.SEEK_SET)
            info = json.loads(os.read(fd, 4096) or b"{}")
            return f" (process {int(info['pid'])}, started {info['started']})"
        except (OSError, ValueError, KeyError, TypeError):
            return ""
