"""A warm trial worker: `python -m harness.run.trial --serve`, one job after another.

Its parent (`harness.run.isolation.WarmWorkers`) keeps one per worker slot and backend, and
sends it job files, a path per line on stdin. The framework is imported with the first job and
kept, and so are the datasets (`trial.dataset`); everything else is each job's own: a fresh
model and optimiser, its seeds and its peak memory (both set by `harness.training.train`), the
framework's global state cleared after it (`Backend.clear_state`). A job leaves its outcome
file exactly as in a fresh process, then `Finished` tells the parent the worker is free.

Stdout carries events alone: what a job prints, Python's or the framework's native logging,
goes to that job's process.log, and between jobs to the worker's own log (its stderr).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from harness.run.events import Finished
from harness.run.jobs import event_writer, read_job
from harness.run.trial import FAIL, TrialJob, execute
from harness.system import release_free_memory, reset_peak_resident_memory, resident_memory


def serve(jobs: TextIO = sys.stdin) -> int:
    """Run every job named on `jobs` until it closes (the parent is done, or gone)."""
    report = event_writer(private_stdout())
    for line in jobs:
        job = read_job(TrialJob, line.strip())
        with output_to(job.log_path):
            outcome = execute(job, report)
            peaks_span_runs = clear_after(job)
        resident = resident_memory() or 0
        report(Finished(outcome.state == FAIL, resident / 2**20, peaks_span_runs))
    return 0


def private_stdout() -> TextIO:
    """The event stream: a copy of stdout, while stdout itself now goes where stderr goes, so
    that nothing a framework prints can be mistaken for an event, or get in between two."""
    sys.stdout.flush()
    events = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    return events


@contextlib.contextmanager
def output_to(log_path: Path) -> Iterator[None]:
    """Send this process's stdout and stderr (file descriptors 1 and 2, so native logging too)
    to `log_path` for the length of one job."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(2)
    with log_path.open("w") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved, 1)
            os.dup2(saved, 2)
            os.close(saved)


def clear_after(job: TrialJob) -> bool:
    """Clear what `job` left in the framework and give its freed memory back to the system;
    True when a next job's peak memory could not be its own (the framework's GPU peak cannot be
    reset, or this system's resident high-water mark cannot), so it needs a fresh process."""
    from backends import get_backend

    backend = get_backend(str(job.config["backend"]))  # imported by the job; a lookup now
    backend.clear_state()
    release_free_memory()
    device_peak_kept = not backend.resets_peak_device_memory and backend.accelerator() is not None
    return device_peak_kept or not reset_peak_resident_memory()
