"""Exceptions raised by ``cnnlab.data``.

Each one subclasses the built-in exception a caller would already catch (``ValueError`` for
bad file contents, ``FileNotFoundError`` for missing files, ``OSError`` for network
trouble), so ``except ValueError`` keeps working while the names stay precise.
"""

from __future__ import annotations


class DataFormatError(ValueError):
    """A data file exists but its contents are not what the format promises."""


class UnsafeArchiveError(DataFormatError):
    """An archive holds a member that could write outside its folder (or is not a file)."""


class DatasetNotFoundError(FileNotFoundError):
    """The files of a dataset are not on disk and downloading was not asked for."""


class DownloadError(OSError):
    """No URL of a file could be downloaded; the message lists every URL tried."""


class ChecksumError(DownloadError):
    """A downloaded file's MD5 or SHA-256 differs from the published value."""
