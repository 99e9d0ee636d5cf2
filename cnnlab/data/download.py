"""Downloading dataset files with checksums, and extracting archives safely.

Every file is streamed into a temporary file in the target folder, its MD5 and SHA-256 are
checked against the values pinned below, and only then is it renamed into place with
``os.replace`` (atomic), so a half-downloaded or tampered file never sits under the real
name. URLs are tried in order: the official one first, then mirrors.

Where the pinned values come from:

* MD5 of every archive: the value the dataset's authors publish (the CIFAR page), or the
  value the usual loaders ship for it (MNIST, Fashion-MNIST).
* ``sha256``: SHA-256 of the file *as served* (the ``.gz`` / ``.tar.gz``), taken from the
  public per-URL checksum lists of TensorFlow Datasets.
* ``payload_sha256`` (MNIST only): SHA-256 of the *decompressed* IDX file. These are the
  bytes that define MNIST, so they stay valid for a re-compressed copy whose ``.gz`` hash
  differs.

The mirror lists (``MIRRORS``) are plain module data so tests and users can point them
elsewhere; every function also takes ``base_urls`` to override them for one call.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import shutil
import sys
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.request import Request, urlopen

from cnnlab.data.errors import (
    ChecksumError,
    DataFormatError,
    DatasetNotFoundError,
    DownloadError,
    UnsafeArchiveError,
)

__all__ = [
    "MIRRORS",
    "RESOURCES",
    "Resource",
    "data_home",
    "default_root",
    "download_file",
    "fetch",
    "file_digests",
    "candidate_folders",
    "missing_files_error",
    "safe_extract_tar",
]

CHUNK = 1 << 20
TIMEOUT_S = 30.0
GZ_HINT = "the .gz files may also be stored decompressed (same names without .gz)."


@dataclass(frozen=True)
class Resource:
    """One downloadable file and the checksums it must match.

    Attributes:
        filename: name on the server and on disk.
        md5: published MD5 of the file as served.
        sha256: SHA-256 of the file as served, or None where none is published.
        size: size in bytes as served, or None if unknown.
        payload_sha256: SHA-256 of the decompressed content of a ``.gz`` file, or None.
    """

    filename: str
    md5: str
    sha256: str | None = None
    size: int | None = None
    payload_sha256: str | None = None


# Base URLs, official first. A file's URL is base + filename.
MIRRORS: dict[str, list[str]] = {
    "mnist": [
        "http://yann.lecun.com/exdb/mnist/",
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ],
    "fashion-mnist": [
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    ],
    "cifar10": [
        "https://www.cs.toronto.edu/~kriz/",
    ],
}

RESOURCES: dict[str, dict[str, Resource]] = {
    "mnist": {
        r.filename: r
        for r in [
            Resource(
                "train-images-idx3-ubyte.gz",
                md5="f68b3c2dcbeaaa9fbdd348bbdeb94873",
                sha256="440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
                size=9912422,
                payload_sha256="ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            ),
            Resource(
                "train-labels-idx1-ubyte.gz",
                md5="d53e105ee54ea40749a09fcbcd1e9432",
                sha256="3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
                size=28881,
                payload_sha256="65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            ),
            Resource(
                "t10k-images-idx3-ubyte.gz",
                md5="9fb629c4189551a2d022fa330f9573f3",
                sha256="8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                size=1648877,
                payload_sha256="0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            ),
            Resource(
                "t10k-labels-idx1-ubyte.gz",
                md5="ec29112dd5afa0611ce80d1b7f02629c",
                sha256="f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
                size=4542,
                payload_sha256="ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
            ),
        ]
    },
    "fashion-mnist": {
        r.filename: r
        for r in [
            Resource(
                "train-images-idx3-ubyte.gz",
                md5="8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                sha256="3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
                size=26421880,
            ),
            Resource(
                "train-labels-idx1-ubyte.gz",
                md5="25c81989df183df01b3e8a0aad5dffbe",
                sha256="a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
                size=29515,
            ),
            Resource(
                "t10k-images-idx3-ubyte.gz",
                md5="bef4ecab320f06d8554ea6380940ec79",
                sha256="346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
                size=4422102,
            ),
            Resource(
                "t10k-labels-idx1-ubyte.gz",
                md5="bb300cfdad3c16e7a12a480ee83cd310",
                sha256="67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
                size=5148,
            ),
        ]
    },
    "cifar10": {
        "cifar-10-binary.tar.gz": Resource(
            "cifar-10-binary.tar.gz",
            md5="c32a1d4ab5d03f1284b67883e8d87530",
            sha256="c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd",
            size=170052171,
        ),
    },
}

Log = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def data_home() -> Path:
    """The folder that holds all datasets: ``$CNNLAB_DATA``, else ``~/.cache/cnnlab``."""
    env = os.environ.get("CNNLAB_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "cnnlab"


def default_root(name: str) -> Path:
    """The folder of one dataset: ``data_home() / name`` (e.g. ``~/.cache/cnnlab/mnist``)."""
    return data_home() / name


def file_digests(path: str | os.PathLike, decompress: bool = False) -> tuple[str, str]:
    """Return ``(md5, sha256)`` hex digests of a file, or of its gzip content if asked."""
    md5 = hashlib.md5(usedforsecurity=False)
    sha = hashlib.sha256()
    opener = gzip.open if decompress else open
    with opener(path, "rb") as f:
        while chunk := f.read(CHUNK):
            md5.update(chunk)
            sha.update(chunk)
    return md5.hexdigest(), sha.hexdigest()


def _join(base: str, filename: str) -> str:
    return base.rstrip("/") + "/" + filename


def _urls(resource: Resource, base_urls: Sequence[str]) -> list[str]:
    return [_join(base, resource.filename) for base in base_urls]


# A download of a file whose size is not pinned stops at this many bytes.
MAX_UNPINNED_BYTES = 4 << 30


class _TooLong(Exception):
    """The server sent more bytes than the file can have."""


def _stream(url: str, target: Path, timeout: float,
            expected: int | None = None) -> tuple[str, str, int]:
    """Copy ``url`` into ``target`` chunk by chunk; return (md5, sha256, bytes written).

    Stops (raising ``_TooLong``) as soon as the server has sent more than ``expected``
    bytes (or ``MAX_UNPINNED_BYTES`` when the size is not known), so a server that never
    stops cannot fill the disk; a Content-Length above that is refused before reading.
    """
    limit = expected if expected is not None else MAX_UNPINNED_BYTES
    md5 = hashlib.md5(usedforsecurity=False)
    sha = hashlib.sha256()
    size = 0
    request = Request(url, headers={"User-Agent": "cnnlab"})
    with urlopen(request, timeout=timeout) as response, open(target, "wb") as out:
        announced = response.headers.get("Content-Length") if response.headers else None
        if announced is not None and announced.strip().isdigit() and int(announced) > limit:
            raise _TooLong(f"the server announces {int(announced)} bytes")
        while chunk := response.read(CHUNK):
            size += len(chunk)
            if size > limit:
                raise _TooLong(f"the server sent more than {limit} bytes")
            out.write(chunk)
            md5.update(chunk)
            sha.update(chunk)
    return md5.hexdigest(), sha.hexdigest(), size


def _checksum_problems(resource: Resource, md5: str, sha: str, size: int) -> list[str]:
    problems = []
    if resource.size is not None and size != resource.size:
        problems.append(f"size: expected {resource.size} bytes, got {size}")
    if md5 != resource.md5:
        problems.append(f"MD5: expected {resource.md5}, got {md5}")
    if resource.sha256 is not None and sha != resource.sha256:
        problems.append(f"SHA-256: expected {resource.sha256}, got {sha}")
    return problems


def download_file(
    resource: Resource,
    dest_dir: str | os.PathLike,
    base_urls: Sequence[str],
    log: Log | None = _stderr,
    timeout: float = TIMEOUT_S,
) -> Path:
    """Download one file, trying each base URL in turn, and verify its checksums.

    Args:
        resource: the file name and the checksums it must match.
        dest_dir: folder to save into (created if needed).
        base_urls: URL prefixes to try in order; the file's URL is prefix + filename.
        log: called with one line per attempt (None for silence).
        timeout: seconds to wait on the network before giving up on a URL.

    Returns:
        The path of the verified file.

    Raises:
        ChecksumError: every URL failed and at least one served a file whose size or
            checksums differ from the pinned values (nothing is left on disk).
        DownloadError: every URL failed (offline, refused, not found); the message lists
            each URL with its reason.
    """
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    final = dest_dir / resource.filename
    failures: list[str] = []
    bad_checksum = False
    for url in _urls(resource, base_urls):
        if log:
            log(f"downloading {url}")
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".{resource.filename}.", suffix=".part", dir=dest_dir
        )
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            try:
                md5, sha, size = _stream(url, tmp, timeout, resource.size)
            except _TooLong as exc:
                bad_checksum = True
                expected = "" if resource.size is None else f"expected {resource.size} bytes, "
                failures.append(f"{url}: size: {expected}{exc}; stopped reading")
                continue
            problems = _checksum_problems(resource, md5, sha, size)
            if not problems and resource.payload_sha256 is not None:
                payload_sha = file_digests(tmp, decompress=True)[1]
                if payload_sha != resource.payload_sha256:
                    problems.append(
                        f"SHA-256 of the decompressed content: expected "
                        f"{resource.payload_sha256}, got {payload_sha}"
                    )
            if problems:
                bad_checksum = True
                failures.append(f"{url}: checksum mismatch ({'; '.join(problems)})")
                continue
            os.replace(tmp, final)
            if log:
                checked = ["MD5"] + ["SHA-256"] * (resource.sha256 is not None)
                checked += ["decompressed SHA-256"] * (resource.payload_sha256 is not None)
                log(f"saved {final} ({size} bytes; verified {', '.join(checked)})")
            return final
        except (OSError, http.client.HTTPException, EOFError) as exc:
            failures.append(f"{url}: {exc}")
        finally:
            tmp.unlink(missing_ok=True)
    tried = "\n".join(f"  {line}" for line in failures) or "  (no URL given)"
    if bad_checksum:
        raise ChecksumError(
            f"could not get a verified copy of {resource.filename}; URLs tried:\n{tried}\n"
            "Nothing was saved. A mismatch means the server sent a different or damaged "
            f"file: try again later, or put a good copy into {dest_dir}"
        )
    raise DownloadError(f"could not download {resource.filename}; URLs tried:\n{tried}")


def candidate_folders(root: str | os.PathLike | None, name: str) -> list[Path]:
    """Where to look for dataset ``name``: ``root`` then ``root/name``, or the default root.

    The first entry is also where downloads are saved.
    """
    if root is None:
        return [default_root(name)]
    root = Path(root).expanduser()
    return [root, root / name]


def missing_files_error(
    name: str,
    filenames: Iterable[str],
    folder: Path,
    base_urls: Sequence[str] | None = None,
    reason: str = "",
    hint: str = GZ_HINT,
    offer_download: bool = True,
) -> DatasetNotFoundError:
    """Build the error that says which files to put where, and where they come from."""
    bases = MIRRORS.get(name, []) if base_urls is None else list(base_urls)
    lines = []
    for filename in filenames:
        urls = [_join(b, filename) for b in bases]
        lines.append(f"  {filename}" + (", from one of:" if len(urls) > 1 else ", from:"))
        lines.extend(f"      {url}" for url in urls)
    head = reason or f"{name}: files not found in {folder}"
    tail = "or pass download=True (--download) to fetch them; " if offer_download else ""
    return DatasetNotFoundError(
        f"{head}\nPut these files into {folder} (or into a folder you pass as root= / "
        f"--data-dir):\n" + "\n".join(lines) + f"\n{tail}{hint}"
    )


def fetch(
    name: str,
    filenames: Sequence[str],
    dest_dir: str | os.PathLike,
    base_urls: Sequence[str] | None = None,
    log: Log | None = _stderr,
    timeout: float = TIMEOUT_S,
    hint: str = GZ_HINT,
) -> list[Path]:
    """Download the named files of dataset ``name`` into ``dest_dir``, verified.

    Args:
        name: a key of ``RESOURCES`` ("mnist", "fashion-mnist", "cifar10").
        filenames: which of its files to get.
        dest_dir: where to save them.
        base_urls: URL prefixes to try instead of ``MIRRORS[name]``.
        log: progress lines go here (None for silence).
        timeout: seconds per network wait.
        hint: last line of the "put these files there" message.

    Returns:
        The paths of the saved files.

    Raises:
        KeyError: unknown dataset or file name.
        ChecksumError: a file came back with the wrong checksums from every URL.
        DownloadError: a file could not be downloaded at all; the message lists every
            URL tried and which files to put in which folder by hand.
    """
    if name not in RESOURCES:
        raise KeyError(f"unknown dataset {name!r}; expected one of {sorted(RESOURCES)}")
    bases = list(MIRRORS[name] if base_urls is None else base_urls)
    dest_dir = Path(dest_dir)
    saved = []
    for i, filename in enumerate(filenames):
        resource = RESOURCES[name].get(filename)
        if resource is None:
            raise KeyError(
                f"{name} has no file {filename!r}; expected one of {sorted(RESOURCES[name])}"
            )
        try:
            saved.append(download_file(resource, dest_dir, bases, log=log, timeout=timeout))
        except ChecksumError:
            raise
        except DownloadError as exc:
            # Same type, but the message also says which files to put where by hand.
            guide = missing_files_error(
                name,
                filenames[i:],
                dest_dir,
                bases,
                reason=f"{name}: {exc}",
                hint=hint,
                offer_download=False,
            )
            raise DownloadError(str(guide)) from exc
    return saved


def _check_member(member: tarfile.TarInfo, archive: Path) -> PurePosixPath:
    path = PurePosixPath(member.name)
    where = f"{archive}: member {member.name!r}"
    drive = ":" in member.name.split("/")[0]  # "C:..." on Windows
    if member.name.startswith(("/", "\\")) or path.is_absolute() or drive:
        raise UnsafeArchiveError(
            f"{where} has an absolute path; refusing to extract this "
            "archive (expected relative paths only)"
        )
    if ".." in path.parts or "\\" in member.name:
        raise UnsafeArchiveError(
            f"{where} points outside the target folder ('..'); refusing to extract this archive"
        )
    if member.issym() or member.islnk():
        raise UnsafeArchiveError(
            f"{where} is a link to {member.linkname!r}; refusing to "
            "extract this archive (expected regular files only)"
        )
    if not (member.isfile() or member.isdir()):
        raise UnsafeArchiveError(
            f"{where} is a device, FIFO or other special file; refusing "
            "to extract this archive (expected regular files only)"
        )
    return path


def _members(tar: tarfile.TarFile, archive: Path, max_bytes: int, max_members: int):
    """The archive's members, checked one by one as their headers are read: the running
    total of declared sizes is checked before the reader moves past a member's data, so a
    bomb is refused without decompressing it."""
    members, total = [], 0
    while True:
        member = tar.next()
        if member is None:
            return members
        members.append(member)
        total += member.size if member.isfile() else 0
        if len(members) > max_members:
            raise DataFormatError(
                f"{archive}: holds more than {max_members:,} members; expected a small "
                "archive of data files: download it again or replace it with the original"
            )
        if total > max_bytes:
            raise DataFormatError(
                f"{archive}: its members unpack to more than {max_bytes:,} bytes (the most "
                "expected of it); refusing to extract it: download it again or replace it "
                "with the original file"
            )


def _check_layout(members: list[tarfile.TarInfo], paths: list[PurePosixPath],
                  archive: Path) -> None:
    """Refuse an archive in which one name is both a file and a folder."""
    files, folders = {}, {}
    for member, path in zip(members, paths, strict=True):
        for parent in list(path.parents)[:-1]:  # every folder above it
            folders.setdefault(parent, member.name)
        (folders if member.isdir() else files).setdefault(path, member.name)
    for path, name in files.items():
        if path in folders:
            raise DataFormatError(
                f"{archive}: {str(path)!r} is both a file (member {name!r}) and a folder "
                f"(for member {folders[path]!r}); the archive is damaged or not the expected "
                "one: download it again"
            )


def _default_max_bytes(archive: Path, dest_dir: Path) -> int:
    """What an archive may unpack to: what its compression allows, and the free space."""
    from cnnlab.data.streams import GZIP_MAX_RATIO, GZIP_SLACK

    size = archive.stat().st_size
    limit = GZIP_MAX_RATIO * size + GZIP_SLACK
    try:
        limit = min(limit, shutil.disk_usage(dest_dir).free)
    except OSError:
        pass
    return limit


def safe_extract_tar(
    archive: str | os.PathLike,
    dest_dir: str | os.PathLike,
    max_bytes: int | None = None,
    max_members: int = 100_000,
) -> list[Path]:
    """Extract the regular files of a tar archive into ``dest_dir``, refusing anything unsafe.

    Every member is checked before anything is written: absolute paths, ``..`` parts,
    symbolic and hard links, devices and FIFOs, and a name that is both a file and a folder
    make the whole archive rejected, and so do more than ``max_members`` members or more
    than ``max_bytes`` of declared content (checked while the member headers are read,
    before their data is decompressed). Files are written by copying their bytes (no
    owners, modes or times from the archive).

    Args:
        archive: a ``.tar``, ``.tar.gz``, ``.tar.bz2`` or ``.tar.xz`` file.
        dest_dir: where to extract (created if needed).
        max_bytes: the most the files may add up to; default what deflate's best ratio
            allows for the archive's size, and at most the free space of ``dest_dir``.
        max_members: the most members (files and folders) accepted.

    Returns:
        The extracted file paths, in archive order.

    Raises:
        UnsafeArchiveError: a member would escape ``dest_dir`` or is not a plain file/folder.
        DataFormatError: the file is not a readable tar archive, holds too much, or names
            one path as both a file and a folder.
        OSError: a file cannot be written (the message names it), e.g. the disk is full.
    """
    archive = Path(archive)
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    if max_bytes is None:
        max_bytes = _default_max_bytes(archive, dest_dir)
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = _members(tar, archive, max_bytes, max_members)
            paths = [_check_member(m, archive) for m in members]
            _check_layout(members, paths, archive)
            written = []
            for member, rel in zip(members, paths, strict=True):
                target = dest_dir.joinpath(*rel.parts)
                try:
                    if member.isdir():
                        target.mkdir(parents=True, exist_ok=True)
                        continue
                    target.parent.mkdir(parents=True, exist_ok=True)
                    source = tar.extractfile(member)
                    with source, open(target, "wb") as out:
                        shutil.copyfileobj(source, out, CHUNK)
                except OSError as exc:
                    reason = exc.strerror or str(exc)
                    raise OSError(exc.errno, f"could not extract {member.name!r} from "
                                             f"{archive} to {target}: {reason}") from exc
                written.append(target)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise DataFormatError(
            f"{archive}: not a readable tar archive ({exc}); download it "
            "again or replace it with the original file"
        ) from exc
    return written
