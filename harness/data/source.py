"""Where the IMDB reviews come from: a path, `BENCH_DATA`, or a cached download of the tarball.

This module knows the archive's layout (`aclImdb/{train,test}/{pos,neg}/[id]_[rating].txt`, in a
gzip tarball or an extracted folder) and nothing about tokens;
`harness.data.corpus` builds on it.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import platformdirs
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from harness.errors import BenchError
from harness.system import writable_folder

CANONICAL_URL = "http://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
CANONICAL_MD5 = "7c2ac02c03563afcf9b574c7e56c153a"
DOWNLOAD_NAME = "aclImdb_v1.tar.gz"  # the cached download's file name inside cache_dir()

ENV_DATA = "BENCH_DATA"  # a tarball or folder to use instead of the download
ENV_DATA_URL = "BENCH_DATA_URL"  # another URL for the canonical tarball (a mirror, a test server)
ENV_CACHE = "BENCH_CACHE"  # the cache folder instead of the per-user one

SPLITS = ("train", "test")
LABELS = ("neg", "pos")  # position = label: 0 = neg, 1 = pos
LAYOUT = "aclImdb/{train,test}/{pos,neg}/[id]_[rating].txt"

_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 20
_MEMBER = re.compile(r"^(?:\./)?aclImdb/(train|test)/(neg|pos)/(\d+)_(\d+)\.txt$")
_FILE = re.compile(r"^(\d+)_(\d+)\.txt$")


@dataclass(frozen=True)
class RawReview:
    """One review as stored in the archive, before tokenisation."""

    split: str  # "train" or "test"
    label: int  # 0 = neg, 1 = pos
    review_id: int  # the [id] of [id]_[rating].txt, unique within its split and label
    rating: int  # the [rating] (1-4 for neg, 7-10 for pos)
    text: str


def cache_dir() -> Path:
    """The folder for downloads and derived arrays: `BENCH_CACHE`, else the per-user cache."""
    folder = cache_root()
    ensure_writable(folder)
    return folder


def cache_root() -> Path:
    return Path(os.environ.get(ENV_CACHE) or platformdirs.user_cache_dir("rnnbench")).expanduser()


def ensure_writable(folder: Path) -> None:
    """Create `folder` if needed and prove it takes files, so a cache write cannot fail later."""
    try:
        writable_folder(folder, "cache folder")
    except BenchError as error:  # the one fix a user has: point the cache elsewhere
        raise BenchError(f"{error}; set {ENV_CACHE} to a writable folder") from None


def resolve_source(path: str | Path | None) -> Path:
    """The archive to read: `path`, else `BENCH_DATA`, else the canonical tarball (downloaded once).

    Returns a gzip tarball, or the folder that directly holds `train/` and `test/`. A tarball's
    layout is checked when it is first read (`read_reviews`), since that means decompressing it.
    """
    if path is not None and str(path) != "":
        return _check_path(Path(path).expanduser(), "")
    if os.environ.get(ENV_DATA):
        return _check_path(Path(os.environ[ENV_DATA]).expanduser(), f" (from {ENV_DATA})")
    url = os.environ.get(ENV_DATA_URL) or CANONICAL_URL
    dest = cache_dir() / DOWNLOAD_NAME
    marker = dest.with_name(dest.name + ".ok")
    if dest.is_file() and marker.is_file() and _marker(dest, CANONICAL_MD5) == _read(marker):
        return dest
    if not (dest.is_file() and _md5(dest) == CANONICAL_MD5):
        download(url, dest, CANONICAL_MD5)
    marker.write_text(_marker(dest, CANONICAL_MD5))
    return dest


def planned_source(path: str | Path | None) -> str:
    """Where `resolve_source(path)` would read, for `bench run --dry-run`: a given path is
    checked as usual, but nothing is downloaded or created."""
    if (path is not None and str(path) != "") or os.environ.get(ENV_DATA):
        return str(resolve_source(path))
    dest = cache_root() / DOWNLOAD_NAME
    if dest.is_file():
        return str(dest)
    url = os.environ.get(ENV_DATA_URL) or CANONICAL_URL
    return f"{url}, downloaded into {dest} on first use"


def download(url: str, dest: Path, md5: str) -> Path:
    """Stream `url` into `dest` with a progress bar on stderr; a file only appears once verified."""
    ensure_writable(dest.parent)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=dest.name + ".", suffix=".part")
    tmp = Path(tmp_name)
    digest = hashlib.md5(usedforsecurity=False)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            with progress_bar(download=True) as progress:
                task = progress.add_task(f"downloading {DOWNLOAD_NAME}", total=total)
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    progress.update(task, advance=len(chunk))
    except (OSError, ValueError, http.client.HTTPException) as exc:  # URLError is an OSError
        tmp.unlink(missing_ok=True)
        raise BenchError(
            f"expected to download {url} to {dest}; received an error: {_reason(exc)} "
            f"(download it by hand and pass its path, or set {ENV_DATA})"
        ) from exc
    if digest.hexdigest() != md5:
        tmp.unlink(missing_ok=True)
        raise BenchError(
            f"expected md5 {md5} for {url}; received {digest.hexdigest()} "
            f"(the download was deleted, not saved as {dest})"
        )
    os.chmod(tmp, 0o644)  # mkstemp makes it private; the dataset is no secret
    os.replace(tmp, dest)
    return dest


def source_digest(path: Path) -> str:
    """A sha256 that names the archive's content in cache keys.

    For a tarball, the hash of its bytes. For a folder, a cheap fingerprint: the hash of the sorted
    (relative path, size) of its review files, so an edit that keeps a file's size goes unnoticed.
    """
    digest = hashlib.sha256()
    if path.is_dir():
        for name, size in sorted(_review_files(path)):
            digest.update(f"{name}\0{size}\n".encode())
        return digest.hexdigest()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def read_reviews(
    source: Path, on_progress: Callable[[int, int], None] | None = None
) -> Iterator[RawReview]:
    """Yield every labelled review of `source` in archive order (`train/unsup` is skipped).

    `on_progress(done, total)` counts compressed bytes for a tarball, files for a folder. A corrupt
    archive or a missing `{train,test}/{pos,neg}` folder raises BenchError naming `source`.
    """
    found = {(split, label): 0 for split in SPLITS for label in range(len(LABELS))}
    reader = _read_folder if source.is_dir() else _read_tarball
    for review in reader(source, on_progress or (lambda done, total: None)):
        found[review.split, review.label] += 1
        yield review
    missing = [f"{split}/{LABELS[label]}" for (split, label), n in found.items() if n == 0]
    if missing:
        raise BenchError(
            f"expected reviews laid out as {LAYOUT}; received none under "
            f"{', '.join(missing)} in {source}"
        )


def progress_bar(download: bool = False) -> Progress:
    """A rich progress bar on stderr, so stdout stays clean for results. Transient: it shows
    while the work runs and leaves no line behind, so that a refusal stays one line."""
    columns = [TextColumn("{task.description}"), BarColumn()]
    if download:
        columns += [DownloadColumn(), TransferSpeedColumn()]
    return Progress(*columns, TimeRemainingColumn(), console=Console(stderr=True), transient=True)


def _read_tarball(source: Path, on_progress: Callable[[int, int], None]) -> Iterator[RawReview]:
    size = source.stat().st_size
    try:
        with source.open("rb") as raw:
            counted = _Counted(raw, lambda done: on_progress(done, size))
            with tarfile.open(fileobj=counted, mode="r|gz") as archive:
                for member in archive:
                    match = _MEMBER.match(member.name)
                    if not (match and member.isfile()):
                        continue
                    data = archive.extractfile(member)
                    assert data is not None  # a regular file always has data
                    yield _review(match.groups(), data.read())
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise BenchError(
            f"expected a readable gzip tarball; received a corrupt or truncated archive "
            f"{source}: {_reason(exc)}"
        ) from exc


def _read_folder(source: Path, on_progress: Callable[[int, int], None]) -> Iterator[RawReview]:
    files = sorted(_review_files(source))
    for done, (name, _size) in enumerate(files, start=1):
        split, label, filename = name.split("/")
        match = _FILE.match(filename)
        assert match is not None  # _review_files only lists matching names
        try:
            data = (source / name).read_bytes()
        except OSError as exc:
            raise BenchError(f"expected a readable review file; received {exc}") from exc
        yield _review((split, label, *match.groups()), data)
        on_progress(done, len(files))


def _review(groups: tuple[str, ...], data: bytes) -> RawReview:
    split, label, review_id, rating = groups
    text = data.decode("utf-8", errors="replace")
    return RawReview(split, LABELS.index(label), int(review_id), int(rating), text)


def _review_files(folder: Path) -> Iterator[tuple[str, int]]:
    """(path relative to `folder`, size) of each review file under {train,test}/{pos,neg}."""
    for split in SPLITS:
        for label in LABELS:
            sub = folder / split / label
            if not sub.is_dir():
                continue
            with os.scandir(sub) as entries:
                for entry in entries:
                    if _FILE.match(entry.name) and entry.is_file():
                        yield f"{split}/{label}/{entry.name}", entry.stat().st_size


def _check_path(path: Path, origin: str) -> Path:
    """`path` itself if it is a gzip file, its folder holding train/ and test/, else BenchError."""
    if not path.exists():
        raise BenchError(
            f"expected an IMDB tarball (.tar.gz) or aclImdb folder; received a path that does "
            f"not exist: {path}{origin}"
        )
    if path.is_dir():
        for folder in (path, path / "aclImdb"):
            if all((folder / s / lab).is_dir() for s in SPLITS for lab in LABELS):
                return folder
        raise BenchError(
            f"expected a folder laid out as {LAYOUT} (or the aclImdb folder itself); received "
            f"a folder without {{train,test}}/{{pos,neg}}: {path}{origin}"
        )
    try:
        with path.open("rb") as fh:
            magic = fh.read(2)
    except OSError as exc:
        raise BenchError(f"expected a readable tarball; received {exc}{origin}") from exc
    if magic != _GZIP_MAGIC:
        raise BenchError(
            f"expected a gzip tarball (.tar.gz/.tgz) or an aclImdb folder; received a file that "
            f"is not gzip-compressed: {path}{origin}"
        )
    return path


class _Counted:
    """A read-only file wrapper that reports how many bytes were read (for the progress bar)."""

    def __init__(self, raw: BinaryIO, report: Callable[[int], None]) -> None:
        self._raw, self._report, self._done = raw, report, 0

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self._done += len(data)
        self._report(self._done)
        return data


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _marker(path: Path, md5: str) -> str:
    """What the `.ok` file records, so a replaced download is verified again."""
    stat = path.stat()
    return f"{md5} {stat.st_size} {stat.st_mtime_ns}\n"


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _reason(exc: BaseException) -> str:
    """An exception as one line (messages from zlib or urllib may span several)."""
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"
