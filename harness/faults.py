"""The faults a person meets mid-study, told in one line: a full disk, a lost database, a
permission taken away.

They arrive from deep inside SQLAlchemy, MLflow, Optuna or a file write, wrapped once or twice
(an MLflow error around an SQLAlchemy error around SQLite's "database or disk is full"). The
runner has already recorded what it could (a running trial is closed as interrupted, finished
ones are kept), so what is left is to say what happened, where, and that the same command
resumes. Anything not recognised here is a bug and keeps its traceback.
"""

from __future__ import annotations

import contextlib
import errno
import shutil
import traceback
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

from harness.errors import BenchError
from harness.stores import sqlite_file, without_password

RESUME = "then re-run the same command: finished work is kept and the study resumes"

FULL = (errno.ENOSPC, errno.EDQUOT)
NEARLY_FULL = 2**20  # bytes free below which a disk counts as the full one
DENIED = (errno.EACCES, errno.EPERM, errno.EROFS)
# What SQLite and the database drivers say, where no errno survives the wrapping.
FULL_TEXTS = ("database or disk is full", "no space left on device", "disk quota exceeded")
DENIED_TEXTS = ("attempt to write a readonly database",)
# A server gone away, as libpq, psycopg and urllib3 (under MLflow's client) word it; not a
# server that answers with errors, which is a fault of its own and keeps its traceback.
LOST_TEXTS = (
    "server closed the connection",
    "connection refused",
    "could not connect to server",
    "terminating connection",
    "connection timeout expired",
    "the database system is shutting down",
    "failed to establish a new connection",
    "remote end closed connection",
)


@contextlib.contextmanager
def told_in_one_line(places: dict[str, str]) -> Iterator[None]:
    """Turn a recognised fault inside the block into a `BenchError`: one line, exit code 2.

    `places` names what the block writes to: "output folder" -> path, "MLflow tracking
    store" -> URL, and so on.
    """
    try:
        yield
    except BenchError:
        raise
    except Exception as error:
        line = explain(error, places)
        if line is None:
            raise
        kept = _keep_traceback(error, places)
        raise BenchError(line + (f" (details: {kept})" if kept else "")) from None


def _keep_traceback(error: BaseException, places: dict[str, str]) -> Path | None:
    """Append the whole story to the output folder's bench.log, passwords left out, for the
    one who debugs; None where it cannot be written (the very disk that is full)."""
    folder = places.get("output folder")
    if folder is None:
        return None
    text = "".join(traceback.format_exception(error))
    for url in places.values():
        text = text.replace(url, without_password(url))
        password = urlsplit(url).password if "://" in url else None
        if password:
            text = text.replace(password, "***")
    log = Path(folder) / "bench.log"
    try:
        with log.open("a") as file:
            file.write(text)
    except OSError:
        return None
    return log


def explain(error: BaseException, places: dict[str, str]) -> str | None:
    """One line for a fault a person can fix, or None for anything else.

    `places` names what is in play ("Optuna storage" -> URL), so the line can say which one
    failed when the error itself does not (a database error rarely names its file).
    """
    for link in _chain(error):
        text = str(link).lower()
        number = getattr(link, "errno", None)
        path = getattr(link, "filename", None)
        if number in FULL or any(t in text for t in FULL_TEXTS):
            where = path or _full_places(places) or _place_named(text, places)
            return f"no space left on the device holding {where}: free some space, {RESUME}"
        if number in DENIED or any(t in text for t in DENIED_TEXTS):
            where = path or _place_named(text, places)
            return f"permission denied writing {where}: give this user write access, {RESUME}"
        if any(t in text for t in LOST_TEXTS):
            servers = {name: url for name, url in places.items() if _remote(url)}
            where = _place_named(text, servers or places)
            return (
                f"lost the connection to {where} (it did not come back within the client's "
                f"retries): bring it back, {RESUME}"
            )
    return None


def _chain(error: BaseException) -> Iterator[BaseException]:
    """`error` and what it was raised from (or, unless suppressed, during), outermost first:
    the chain Python's own traceback shows."""
    seen: set[int] = set()
    link: BaseException | None = error
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        yield link
        if link.__cause__ is not None:
            link = link.__cause__
        else:
            link = None if link.__suppress_context__ else link.__context__


def _remote(url: str) -> bool:
    """A place reached over the network: a database or tracking server, not a file."""
    return "://" in url and sqlite_file(url) is None


def _place_named(text: str, places: dict[str, str]) -> str:
    """The places `text` mentions (two stores on one host: both), else every place in play."""
    named = {
        name: url
        for name, url in places.items()
        if without_password(url).lower() in text or (_location(url) and _location(url) in text)
    }
    return " or ".join(
        f"the {name} ({without_password(url)})" for name, url in (named or places).items()
    )


def _full_places(places: dict[str, str]) -> str | None:
    """The local places whose disk has (almost) no space left, a place inside another left
    out (the stores in the output folder); None when none is full any more."""
    full: dict[str, Path] = {}
    for name, url in places.items():
        folder = _local_folder(url)
        try:
            if folder is not None and shutil.disk_usage(folder).free < NEARLY_FULL:
                full[name] = folder
        except OSError:
            continue
    kept: dict[str, Path] = {}
    for name, folder in full.items():  # in order: the output folder comes first
        if not any(folder.is_relative_to(other) for other in kept.values()):
            kept[name] = folder
    shown = [f"the {name} ({without_password(places[name])})" for name in kept]
    return " and ".join(shown) or None


def _local_folder(url: str) -> Path | None:
    """The folder on this machine that a place writes into: itself, or an SQLite file's."""
    if "://" not in url:
        return Path(url)
    database = sqlite_file(url)
    return None if database is None else database.parent  # None: a server elsewhere


def _location(url: str) -> str:
    """The part of a place an error message would quote: a folder, an SQLite file or a host."""
    if "://" not in url:
        return url.lower()  # a folder
    database = sqlite_file(url)
    if database is not None:
        return str(database).lower()
    return without_password(url).split("@")[-1].split("/")[0].split(":")[0].lower()
