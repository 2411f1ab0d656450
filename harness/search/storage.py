"""Opening an Optuna storage (SQLite or PostgreSQL); the one private Optuna API rnnbench uses."""

from __future__ import annotations

import contextlib
import random
import time
import warnings
from collections.abc import Iterator

import optuna
import sqlalchemy.exc

from harness.errors import BenchError
from harness.stores import engine_options, sqlalchemy_url, sqlite_lock, without_password

optuna.logging.set_verbosity(optuna.logging.WARNING)  # rnnbench shows its own progress
# Heartbeats with ask-and-tell are "experimental" in Optuna; they are what finds dead trials.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")

HEARTBEAT_SECONDS = 10  # a trial process proves it is alive this often (see `fail_dead_trials`)
GRACE_SECONDS = 60  # silence after which a RUNNING trial is taken for dead

# Optuna's types, for the annotations of modules that must not import Optuna themselves.
Storage = optuna.storages.RDBStorage
OptunaStudy = optuna.Study
Trial = optuna.Trial


def open_storage(url: str, attempts: int = 8) -> optuna.storages.RDBStorage:
    """An RDB storage (SQLite or PostgreSQL) whose trials send heartbeats.

    Workers that start together on an empty database all try to create Optuna's tables. On
    PostgreSQL the losers of that race get an IntegrityError or ProgrammingError and simply try
    again; on SQLite they take turns.
    """
    for attempt in range(1, attempts + 1):
        try:
            with sqlite_lock(url):
                return optuna.storages.RDBStorage(
                    sqlalchemy_url(url),
                    heartbeat_interval=HEARTBEAT_SECONDS,
                    grace_period=GRACE_SECONDS,
                    engine_kwargs=engine_options(url),
                )
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError) as error:
            failure = error
            time.sleep(random.uniform(0.2, 1.0) * attempt)
        except BenchError:  # said already, in one line (a lock held too long)
            raise
        except Exception as error:  # noqa: BLE001 - SQLAlchemy raises many types for a bad URL
            failure = error
            break
    raise BenchError(
        f"--storage: expected a reachable Optuna RDB URL (sqlite:///file.db, "
        f"postgresql://user@host/db); received {without_password(url)!r} "
        f"({type(failure).__name__})"
    ) from None


@contextlib.contextmanager
def reading(url: str) -> Iterator[optuna.storages.RDBStorage]:
    """The storage, open for one read and closed after it: a report keeps no connections."""
    storage = open_storage(url)
    try:
        yield storage
    finally:
        storage.engine.dispose()


def stale_trial_ids(storage: optuna.storages.RDBStorage, study_id: int) -> list[int]:
    """RUNNING trials silent for longer than the grace period: their process is gone.

    Optuna's one private API in rnnbench. Its public `fail_stale_trials` marks such trials FAIL
    first, after which no reason can be recorded on them and no worker knows that it was the one
    to retry them. Checked by tests/test_workers.py; pyproject.toml bounds Optuna's version.
    """
    return storage._get_stale_trial_ids(study_id)
