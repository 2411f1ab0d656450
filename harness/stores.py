"""Database URLs, as the user writes them and as SQLAlchemy (under Optuna and MLflow) needs them."""

from __future__ import annotations

import contextlib
import os
import re
import urllib.request
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from filelock import FileLock, Timeout
from sqlalchemy.engine import make_url

from harness.errors import BenchError

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


# Query keys that hold a secret (libpq's `password`, tokens, keys): their values are never shown.
SECRET_KEY = re.compile(r"pass|pwd|token|secret|api[_-]?key|auth|credential|sslkey", re.I)
HIDDEN = "***"


def without_password(url: str) -> str:
    """`url` as it may be shown or written down: its password left out of the userinfo
    (``user@host``) and the value of every secret-like query key (``password``, ``token``,
    ``secret``, ...) replaced by ***, so that no terminal line, log or job file holds it. The
    one redaction of rnnbench; a URL without a secret comes back unchanged."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # not a URL (e.g. a bad port): show nothing that could be a secret
        return HIDDEN if "@" in url or "=" in url else url
    if password is not None:
        host = parts.netloc.rsplit("@", 1)[1]
        parts = parts._replace(netloc=f"{parts.username}@{host}")
    if parts.query:
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        if any(SECRET_KEY.search(key) for key, _ in pairs):
            hidden = [(k, HIDDEN if SECRET_KEY.search(k) else v) for k, v in pairs]
            parts = parts._replace(query=urlencode(hidden, safe="*"))
    return urlunsplit(parts) if password is not None or parts.query != urlsplit(url).query else url


def password_of(url: str) -> str | None:
    """The password a database URL carries, in its userinfo or as libpq's `password` query key."""
    try:
        parts = urlsplit(url)
        if parts.password is not None:
            return unquote(parts.password)
    except ValueError:
        return None
    found = [v for k, v in parse_qsl(parts.query) if k.lower() == "password"]
    return found[0] if found else None


def password_environment(url: str) -> dict[str, str]:
    """What a child process needs to open the PostgreSQL database of `url` once its job file
    holds `without_password(url)`: libpq's own PGPASSWORD, passed in the child's environment
    (readable by its user alone), never in a file."""
    password = password_of(url)
    if password is None or not is_postgres(url):
        return {}
    return {"PGPASSWORD": password}


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
    through the environment (`password_environment`), the query's `password` key dropped."""
    if not password_environment(url):
        return url
    parts = urlsplit(without_password(url))
    kept = [(k, v) for k, v in parse_qsl(parts.query) if k.lower() != "password"]
    return urlunsplit(parts._replace(query=urlencode(kept, safe="*")))


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


# The longest a store's lock is waited for before saying who holds it (BENCH_LOCK_SECONDS).
LOCK_SECONDS = float(os.environ.get("BENCH_LOCK_SECONDS", "120"))


def sqlite_lock(url: str) -> contextlib.AbstractContextManager[object]:
    """A lock file beside an SQLite database, for what SQLite cannot keep apart by itself.

    Processes sharing one file race to create its tables (MLflow's migrations and Optuna's
    schema fail on the loser's side) and to take a queued trial (SQLite cannot lock its row).
    PostgreSQL needs none of this, so other URLs get a no-op. The wait is bounded: after
    LOCK_SECONDS it ends in one line naming the lock and the processes holding it open.
    """
    database = sqlite_file(url)
    return contextlib.nullcontext() if database is None else TimedLock(Path(f"{database}.lock"))


class TimedLock:
    """A file lock that is waited for at most `seconds`, then refused in one line naming the
    lock and who holds it. Reusable, like the FileLock under it."""

    def __init__(self, path: Path, seconds: float | None = None) -> None:
        self.path = path
        self.seconds = LOCK_SECONDS if seconds is None else seconds
        self.lock = FileLock(str(path), timeout=self.seconds)

    def __enter__(self) -> TimedLock:
        try:
            self.lock.acquire()
        except Timeout:
            raise BenchError(
                f"the lock {self.path} is still held after {self.seconds:.0f} s by "
                f"{lock_holders(self.path)}; wait for that command to finish, or end it, "
                "then run this one again"
            ) from None
        return self

    def __exit__(self, *exc: object) -> None:
        self.lock.release()


def lock_holders(path: Path) -> str:
    """The processes that have `path` open, as 'pid 123 (bench run ...)', for the message."""
    import psutil

    holders = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        try:
            if any(f.path == str(path) for f in process.open_files()):
                command = " ".join(process.info["cmdline"] or [])[:80]
                holders.append(f"pid {process.info['pid']} ({without_password(command)})")
        except psutil.Error:
            continue
    return ", ".join(holders) or "a process this machine cannot see (another machine?)"


# -- checks before anything is created ---------------------------------------------------------
SPECIAL_FILESYSTEMS = {
    "proc",
    "sysfs",
    "devtmpfs",
    "devpts",
    "cgroup",
    "cgroup2",
    "debugfs",
    "securityfs",
    "pstore",
    "bpf",
    "tracefs",
    "configfs",
    "fusectl",
    "mqueue",
}
DRIVERS = {  # SQLAlchemy backend -> what to install when its driver is missing
    "mysql": "pip install mysqlclient (or name a driver: mysql+pymysql://, pip install pymysql)",
    "mariadb": "pip install mariadb",
    "oracle": "pip install oracledb",
    "mssql": "pip install pyodbc",
}


def check_database_url(url: str, flag: str) -> None:
    """Refuse, in one line naming `flag`, a database URL that cannot hold a study: not a URL, a
    driver that is not installed, an in-memory SQLite database (it forgets everything when the
    command ends), or an SQLite file whose folder does not exist, takes no files or is a
    special filesystem (/proc). Creates nothing."""
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    shown = without_password(url)
    try:
        parsed = make_url(sqlalchemy_url(url))
    except (ArgumentError, ValueError):
        raise BenchError(
            f"{flag}: expected a database URL such as sqlite:///path/optuna.db or "
            f"postgresql://user@host/db; received {shown!r}"
        ) from None
    backend = parsed.get_backend_name()
    try:
        dialect = parsed.get_dialect()
        dialect.import_dbapi()
    except NoSuchModuleError:
        raise BenchError(
            f"{flag}: expected a database SQLAlchemy knows (sqlite, postgresql, mysql, ...); "
            f"received {shown!r}"
        ) from None
    except ImportError as error:
        hint = DRIVERS.get(backend, f"install the Python driver for {backend}")
        raise BenchError(
            f"{flag}: the database driver for {backend} is not installed ({error}); {hint}"
        ) from None
    if backend == "sqlite":
        database = parsed.database
        if not database or database == ":memory:" or database.startswith("file::memory:"):
            raise BenchError(
                f"{flag}: expected an SQLite file (sqlite:///path/to/file.db); received "
                f"{shown!r}, an in-memory database, which forgets the study when the command ends"
            )
        check_file_place(Path(database), flag)


def check_file_place(path: Path, flag: str) -> None:
    """A file at `path` can be made or written: its folder exists (or can be made under a
    writable one) and is not a special filesystem. Creates nothing."""
    path = path.expanduser().resolve()
    if path.is_dir():
        raise BenchError(f"{flag}: expected a file; received {str(path)!r}, a folder")
    _check_creatable(_nearest_existing(path.parent), path, flag)


def check_folder_place(folder: Path, flag: str) -> None:
    """A folder at `folder` exists or can be made by this user, on a real disk. Creates
    nothing."""
    folder = folder.expanduser().resolve()
    if folder.exists() and not folder.is_dir():
        raise BenchError(f"{flag}: expected a folder; received {str(folder)!r}, a file")
    _check_creatable(_nearest_existing(folder), folder, flag)


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _check_creatable(existing: Path, target: Path, flag: str) -> None:
    if not existing.is_dir():
        raise BenchError(
            f"{flag}: expected a place under a folder; received {str(target)!r} "
            f"({existing} is a file)"
        )
    kind = filesystem_of(existing)
    if kind in SPECIAL_FILESYSTEMS:
        raise BenchError(
            f"{flag}: expected a place on a disk; received {str(target)!r}, on the {kind} "
            "filesystem, which holds no files of ours"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise BenchError(
            f"{flag}: expected a place this user can write; received {str(target)!r} "
            f"({existing} is not writable)"
        )


def filesystem_of(path: Path) -> str | None:
    """The type of the filesystem `path` lives on (ext4, tmpfs, proc, ...), from the mount
    table; None where there is none to read."""
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return None
    best, kind = "", None
    target = str(path.resolve())
    for line in mounts:
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, fields[2]
    return kind


def has_secret(url: str) -> bool:
    """A URL that carries a password or a secret-like query key."""
    return without_password(url) != url


def check_tracking_uri(uri: str) -> None:
    """Refuse, in one line, a tracking URI no run could log to; creates nothing. A server's
    login belongs in MLFLOW_TRACKING_USERNAME/PASSWORD, never in the URL."""
    shown = without_password(uri)
    if is_server(uri):
        if has_secret(uri):
            raise BenchError(
                "--tracking-uri: expected the server's login in MLFLOW_TRACKING_USERNAME and "
                f"MLFLOW_TRACKING_PASSWORD, not in the URL; received {shown!r} with a secret"
            )
        return
    if uri.startswith("file:") or "://" not in uri:  # MLflow 3's folder store takes no new runs
        raise BenchError(
            "--tracking-uri: expected an MLflow tracking server (http://host:5000) or a "
            f"database (sqlite:///path/mlflow.db, postgresql://user@host/db); received {shown!r}"
        )
    check_database_url(uri, "--tracking-uri")


def check_database_answers(url: str, flag: str, seconds: int = 10) -> None:
    """A database server (not an SQLite file) that does not answer is refused in one line,
    before anything is made; connecting creates nothing."""
    from sqlalchemy import create_engine, text

    if url.startswith("sqlite"):
        return
    options: dict[str, object] = {}
    if is_postgres(url):
        options["connect_args"] = {"connect_timeout": seconds}
    try:
        engine = create_engine(sqlalchemy_url(url), **options)
        try:
            with engine.connect() as connection:
                connection.execute(text("select 1"))
        finally:
            engine.dispose()
    except Exception as error:  # noqa: BLE001 - the driver's many errors mean one thing here
        reason = str(getattr(error, "orig", None) or error).strip().splitlines()
        shown = without_password(url)
        detail = (reason[0] if reason else type(error).__name__)[:200]
        password = password_of(url)
        if password:
            detail = detail.replace(password, HIDDEN)
        raise BenchError(
            f"{flag}: expected a database that answers; received {shown!r} ({detail})"
        ) from None


def check_reachable(tracking_uri: str, timeout: float = 10.0) -> None:
    """Fail in seconds, before any training, when a tracking server does not answer.

    MLflow's own client retries an unreachable server with backoff for minutes. A login in the
    URL is refused: MLflow takes it from MLFLOW_TRACKING_USERNAME / _PASSWORD, and a URL is
    shown and written in too many places to hold one.
    """
    if not is_server(tracking_uri):
        return  # a local store: opening it reports its own problem at once
    shown = without_password(tracking_uri)
    if has_secret(tracking_uri):
        raise BenchError(
            "--tracking-uri: expected the server's login in MLFLOW_TRACKING_USERNAME and "
            f"MLFLOW_TRACKING_PASSWORD, not in the URL; received {shown!r} with a password"
        )
    try:
        with urllib.request.urlopen(f"{tracking_uri.rstrip('/')}/health", timeout=timeout):
            pass
    except Exception as error:  # noqa: BLE001 - any failure to answer is the same to the user
        reason = str(getattr(error, "reason", None) or error).replace(tracking_uri, shown)
        raise BenchError(
            f"--tracking-uri: expected a reachable MLflow tracking server; received "
            f"{shown!r}, which did not answer ({reason})"
        ) from None
