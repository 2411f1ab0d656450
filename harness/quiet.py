"""A quiet terminal: the libraries' start-up chatter goes to a log file; `-v` lets it through.

TensorFlow prints its C++ INFO lines ("oneDNN custom operations are on", "Could not find cuda
drivers") straight to file descriptor 2, below Python, and MLflow logs "Creating initial MLflow
database tables" and, with a tracking server, "View run ..." after every run. None of it is for
the person watching a benchmark. What the frameworks print is kept for the one debugging it (a
log file; each run's process.log in a study), as are MLflow's warnings and errors (bench.log);
MLflow's INFO lines and "View run" links are switched off, and `-v` brings them all back.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import platformdirs

# MLflow's own switches, read when it is imported (and inherited by every trial process).
QUIET_ENVIRONMENT = {
    "MLFLOW_LOGGING_LEVEL": "WARNING",  # no "Creating initial MLflow database tables..."
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",  # no "View run ... at: http://..."
}


LIBRARY_LOGGERS = ("mlflow", "alembic", "urllib3")  # urllib3: MLflow's client's retry warnings


def train_log_path() -> Path:
    """Where `bench train` keeps its framework's output: one file, the latest run's."""
    return platformdirs.user_log_path("rnnbench") / "train.log"


def quiet_libraries(verbose: bool) -> None:
    """Set MLflow's logging switches before it is imported, unless the user set them already."""
    if verbose:
        return
    for name, value in QUIET_ENVIRONMENT.items():
        os.environ.setdefault(name, value)


def library_logs_to(log_path: Path, verbose: bool) -> None:
    """Send MLflow's and Alembic's logging (an error's traceback included) to `log_path`
    instead of the terminal: what goes wrong reaches the terminal once, as rnnbench's own
    one-line error. Call it after MLflow is imported, which installs its own handler."""
    if verbose:
        return
    handler = LenientFileHandler(log_path, delay=True)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        for old in list(logger.handlers):
            logger.removeHandler(old)
        logger.addHandler(handler)
        logger.propagate = False


class LenientFileHandler(logging.FileHandler):
    """A log file that drops what it cannot write (the disk it is on is full) instead of
    printing logging's own traceback to the terminal."""

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        pass


@contextlib.contextmanager
def native_output_to(log_path: Path, verbose: bool) -> Iterator[None]:
    """Send what the frameworks write to file descriptors 1 and 2, and Python's warnings, to
    `log_path`, while `sys.stdout` and `sys.stderr` (rich's progress and tables) keep the
    terminal. With `verbose` nothing is redirected."""
    if verbose:
        yield
        return
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as log, warnings.catch_warnings(), contextlib.ExitStack() as undo:
        sys.stdout.flush()
        sys.stderr.flush()
        streams = sys.stdout, sys.stderr
        terminal = _reopened(1, streams[0]), _reopened(2, streams[1])
        for descriptor in (1, 2):
            saved = os.dup(descriptor)
            undo.callback(os.close, saved)  # callbacks run last-in first-out: restored first
            undo.callback(os.dup2, saved, descriptor)
            os.dup2(log.fileno(), descriptor)
        undo.callback(setattr, sys, "stdout", streams[0])
        undo.callback(setattr, sys, "stderr", streams[1])
        warnings.showwarning = lambda *args, **kwargs: log.write(warnings.formatwarning(*args[:4]))
        sys.stdout, sys.stderr = terminal
        try:
            yield
        finally:
            for stream in terminal:
                with contextlib.suppress(OSError):  # a closed pipe (`bench train | head`)
                    stream.flush()


def _reopened(descriptor: int, like: TextIO) -> TextIO:
    """A new text stream on a copy of `descriptor`, line-buffered and encoded like `like`.

    Not closed afterwards: a logging handler made meanwhile may still hold it.
    """
    copy = os.dup(descriptor)
    return os.fdopen(copy, "w", buffering=1, encoding=like.encoding, errors=like.errors)
