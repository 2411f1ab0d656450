"""`harness.faults`: what a person reads when a disk fills, a database goes away or a
permission is taken away, from the exceptions the real libraries raise."""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path

import psycopg
import pytest
import sqlalchemy
from mlflow.exceptions import MlflowException

from harness.errors import BenchError
from harness.faults import explain, told_in_one_line

PASSWORD = "pw-31c7"


def places(tmp_path: Path) -> dict[str, str]:
    return {
        "output folder": str(tmp_path / "out"),
        "Optuna storage": f"postgresql://bench:{PASSWORD}@db.example:5432/optuna",
        "MLflow tracking store": f"sqlite:///{tmp_path / 'out' / 'mlflow.db'}",
    }


def wrapped(inner: BaseException) -> MlflowException:
    """`inner` as MLflow's SQL store hands it on: inside SQLAlchemy's error, inside its own."""
    try:
        try:
            raise sqlalchemy.exc.OperationalError("INSERT INTO metrics ...", {}, inner)
        except sqlalchemy.exc.OperationalError as error:
            raise MlflowException(f"SQLAlchemy database error: {error}") from error
    except MlflowException as outer:
        return outer


def test_an_oserror_names_its_file(tmp_path):
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "out" / "x.png"))
    line = explain(full, places(tmp_path))
    assert line.startswith(f"no space left on the device holding {tmp_path / 'out' / 'x.png'}")
    assert "re-run the same command" in line
    denied = PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "out"))
    assert explain(denied, places(tmp_path)).startswith(f"permission denied writing {tmp_path}")


def test_sqlite_full_inside_mlflow_errors_is_a_full_disk(tmp_path):
    line = explain(wrapped(sqlite3.OperationalError("database or disk is full")), places(tmp_path))
    assert line.startswith("no space left on the device holding ")


def test_a_read_only_database_is_a_permission(tmp_path):
    error = wrapped(sqlite3.OperationalError("attempt to write a readonly database"))
    assert explain(error, places(tmp_path)).startswith("permission denied writing ")


def test_a_lost_postgres_connection_names_the_store_without_its_password(tmp_path):
    lost = psycopg.OperationalError(
        'connection to server at "db.example" (10.0.0.5), port 5432 failed: server closed '
        "the connection unexpectedly"
    )
    line = explain(wrapped(lost), places(tmp_path))
    assert line.startswith("lost the connection to the Optuna storage (postgresql://bench@")
    assert PASSWORD not in line and "bring it back" in line


def test_anything_else_keeps_its_traceback(tmp_path):
    assert explain(ValueError("a bug"), places(tmp_path)) is None
    with pytest.raises(ValueError), told_in_one_line(places(tmp_path)):
        raise ValueError("a bug")
    with pytest.raises(BenchError, match="^no space left"), told_in_one_line(places(tmp_path)):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path))


def test_what_only_looks_like_a_fault_keeps_its_traceback(tmp_path):
    """A bug raised while handling a fault, with its context suppressed, is not that fault;
    nor is a closed SQLAlchemy connection (a programming error) a lost server, nor MLflow's
    reply to a request it refuses."""
    try:
        try:
            raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path))
        except PermissionError:
            raise KeyError("a bug") from None
    except KeyError as bug:
        assert explain(bug, places(tmp_path)) is None
    closed = sqlalchemy.exc.ResourceClosedError("This Connection is closed")
    assert explain(closed, places(tmp_path)) is None
    refused = MlflowException("PERMISSION_DENIED: Permission denied for experiment 1")
    assert explain(refused, places(tmp_path)) is None


def test_the_whole_story_goes_to_bench_log_without_the_password(tmp_path):
    (tmp_path / "out").mkdir()
    lost = psycopg.OperationalError(f"connection refused; dsn had password={PASSWORD}")
    with pytest.raises(BenchError) as told, told_in_one_line(places(tmp_path)):
        raise wrapped(lost)
    log = tmp_path / "out" / "bench.log"
    assert str(told.value).endswith(f"(details: {log})")
    kept = log.read_text()
    assert "Traceback" in kept and "OperationalError" in kept and PASSWORD not in kept
