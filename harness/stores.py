"""Database URLs, as the user writes them and as SQLAlchemy (under Optuna and MLflow) needs them."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from filelock import FileLock
from sqlalchemy.engine import make_url

POSTGRES_SCHEMES = ("postgresql://", "postgres://")
# MLflow's login, for the one process that talks to MLflow; trial processes never do.
TRACKING_SECRETS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")


def sqlalchemy_url(url: str) -> str:
    """``postgresql://...`` with the psycopg 3 driver that rnnbench installs.

    SQLAlchemy's default PostgreSQL driver is psycopg2, which is not a dependency; naming the
    driver lets users paste the URL their database administrator gave them.
    """
    for scheme in POSTGRES_SCHEMES:
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url[len(scheme) :]
    return url


def without_password(url: str) -> str:
    """`url` as it may be shown or written down: with its password left out (``user@host``), so
    that no terminal line, log or job file holds it. A URL without one comes back unchanged."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return urlunsplit(parts._replace(netloc=f"{parts.username}@{parts.netloc.rsplit('@', 1)[1]}"))


def password_environment(url: str) -> dict[str, str]:
    """What a child process needs to open the PostgreSQL database of `url` once its job file
    holds `without_password(url)`: libpq's own PGPASSWORD, passed in the child's environment
    (readable by its user alone), never in a file."""
    password = urlsplit(url).password
    if password is None or not is_postgres(url):
        return {}
    return {"PGPASSWORD": unquote(password)}


def is_postgres(url: str) -> bool:
    """A PostgreSQL URL, whatever its driver (`postgresql://`, `postgresql+psycopg://`)."""
    try:
        return make_url(sqlalchemy_url(url)).get_backend_name() == "postgresql"
    except Exception:  # noqa: BLE001 - not a database URL at all
        return False


def child_environment(overrides: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a child process: this one's, less MLflow's login, plus `overrides`."""
    kept = {k: v for k, v in os.environ.items() if k not in TRACKING_SECRETS}
    return {**kept, **(overrides or {})}


def child_url(url: str) -> str:
    """The storage URL a job file holds: without its password wherever libpq can be given it
    through the environment (`password_environment`)."""
    return without_password(url) if password_environment(url) else url


def engine_options(url: str) -> dict[str, object]:
    """Connection settings for many writers: several workers and their trial processes."""
    options: dict[str, object] = {"pool_pre_ping": True}
    if url.startswith("sqlite"):
        options["connect_args"] = {"timeout": 60}  # wait for a writer instead of failing at 5 s
    return options


def is_server(url: str) -> bool:
    """An MLflow tracking server (http or https), not a store opened from this machine."""
    return url.startswith(("http://", "https://"))


def sqlite_file(url: str) -> Path | None:
    """The database file of an SQLite URL; None for any other URL or an in-memory database."""
    database = make_url(url).database if url.startswith("sqlite") else None
    return Path(database) if database and database != ":memory:" else None


def sqlite_lock(url: str) -> contextlib.AbstractContextManager[object]:
    """A lock file beside an SQLite database, for what SQLite cannot keep apart by itself.

    Processes sharing one file race to create its tables (MLflow's migrations and Optuna's
    schema fail on the loser's side) and to take a queued trial (SQLite cannot lock its row).
    PostgreSQL needs none of this, so other URLs get a no-op.
    """
    database = sqlite_file(url)
    return contextlib.nullcontext() if database is None else FileLock(f"{database}.lock")
