"""How a run is kept apart from `bench run`: one small family, chosen with ``--isolation``.

- `FreshProcess` ("process"): a new ``python -m harness.run.trial JOB.json`` per run. The
  strictest; every run pays a Python start, a framework import and a data load (seconds).
- `WarmWorkers` ("warm", the default): a long-lived worker process per worker slot and backend
  (`harness.run.serve`) runs job after job, so those costs are paid once. A crash or an
  out-of-memory kill still takes only the worker, which is replaced; its run is recorded as in
  a fresh process. A worker is recycled after `recycle_after` runs, when its resident memory
  grew `recycle_growth_mb` past its size after its first run, after a failed run, and after
  every run when its next run's peak memory could not be its own (JAX on a GPU, or a system
  where the resident high-water mark cannot be reset). On a GPU a slot keeps one worker at a
  time, so that an idle framework's cached memory never crowds the one training.
- `InProcess`: in the calling process, for tests. No protection at all, and the frameworks of
  every backend it runs end up in one process.

Each returns the run's `Outcome` and an exit code read like a process's (negative: the signal
that ended it), so that `harness.run.tracked` records every one alike, plus the tags that say
how the run was isolated.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from harness.run.events import EventHandler, Finished
from harness.run.jobs import relay, run_child
from harness.run.pool import WorkerPool
from harness.run.trial import FAIL, Outcome, TrialJob, execute
from harness.stores import child_environment

ISOLATIONS = ("warm", "process")  # the choices of --isolation; the first is the default
RECYCLE_AFTER = 50  # runs per warm worker
RECYCLE_GROWTH_MB = 1024.0  # resident memory a warm worker may gain after its first run


@dataclass(frozen=True)
class Ran:
    """What running a job gave: its outcome, its exit code, and how it was isolated (tags)."""

    outcome: Outcome
    returncode: int
    tags: dict[str, str] = field(default_factory=dict)


class Isolation(Protocol):
    def run(self, job: TrialJob, on_event: EventHandler, slot: int) -> Ran: ...

    def close(self) -> None: ...


def make_isolation(name: str, pool: WorkerPool, logs: Path) -> Isolation:
    """The isolation called `name` on ``--isolation``; `logs` holds the warm workers' own logs."""
    if name == "process":
        return FreshProcess(pool)
    if name == "warm":
        return WarmWorkers(pool, logs)
    raise ValueError(f"isolation: expected one of {', '.join(ISOLATIONS)}; received {name!r}")


def death_reason(returncode: int) -> str:
    if returncode < 0:
        name = signal.Signals(-returncode).name
        hint = " (out of memory?)" if name == "SIGKILL" else ""
        return f"trial process killed by {name}{hint}"
    return f"trial process exited with code {returncode} before reporting"


def outcome_of(job: TrialJob, returncode: int) -> Outcome:
    """The outcome the job wrote, or, when its process died first, why it died."""
    if job.outcome_path.exists():
        return Outcome.read(job.outcome_path)
    return Outcome(FAIL, reason=f"{death_reason(returncode)}; log: {job.log_path}")


def prepared(job: TrialJob) -> Path:
    """Write the job file where its process reads it, and clear what an earlier try of the same
    job left (its outcome, its log), so that nothing stale is read as this try's."""
    Path(job.folder).mkdir(parents=True, exist_ok=True)
    job.outcome_path.unlink(missing_ok=True)
    job.log_path.unlink(missing_ok=True)
    return job.write()


class FreshProcess:
    """A new process per run."""

    def __init__(self, pool: WorkerPool) -> None:
        self.pool = pool

    def run(self, job: TrialJob, on_event: EventHandler, slot: int) -> Ran:
        returncode = run_child(
            "harness.run.trial",
            prepared(job),
            job.log_path,
            on_event,
            self.pool.children,
            self.pool.environment(slot),
        )
        return Ran(outcome_of(job, returncode), returncode, {"isolation": "process"})

    def close(self) -> None:
        """Nothing outlives its run."""


class WarmWorker:
    """One warm worker process, seen from its parent: send a job, relay events to `Finished`."""

    def __init__(self, pool: WorkerPool, environment: dict[str, str], log_path: Path) -> None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("a") as log:  # the child keeps its own copy of the descriptor
            self.process = pool.children.start(
                [sys.executable, "-m", "harness.run.trial", "--serve"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                bufsize=1,
                env=child_environment(environment),
            )
        self.pool = pool
        self.log_path = log_path  # its own output: what it printed outside any job
        self.runs = 0
        self.resident_after_first_mb: float | None = None

    def run(self, job_path: Path, on_event: EventHandler) -> Finished | None:
        """Run one job; its `Finished`, or None when the worker died before finishing it."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.runs += 1
        try:
            self.process.stdin.write(f"{job_path}\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            return None  # it died before reading the job
        try:
            return relay(self.process.stdout, on_event, until=Finished)
        except BaseException:  # `on_event` raised: the worker must not outlive its job
            self.kill()
            raise

    def exit_code(self) -> int:
        """After the worker died: how (negative for a signal)."""
        return self.process.wait()

    def release(self) -> None:
        """No more jobs: the worker leaves its loop and begins to exit (`close` waits for it)."""
        if self.process.stdin is not None and not self.process.stdin.closed:
            try:
                self.process.stdin.close()
            except BrokenPipeError:
                pass

    def close(self) -> None:
        """No more jobs: the worker leaves its loop and exits."""
        self.release()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.kill()
        self.pool.children.done(self.process)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self.pool.children.done(self.process)


class WarmWorkers:
    """A warm worker per slot and process-wide setting: the backend (each framework in its own
    process, and Keras can load one backend per process) and the denormal mode, which the
    framework's running threads would not pick up if a later run changed it."""

    def __init__(
        self,
        pool: WorkerPool,
        logs: Path,
        recycle_after: int = RECYCLE_AFTER,
        recycle_growth_mb: float = RECYCLE_GROWTH_MB,
    ) -> None:
        self.pool = pool
        self.logs = logs
        self.recycle_after = recycle_after
        self.recycle_growth_mb = recycle_growth_mb
        self.workers: dict[tuple[int, str, bool], WarmWorker] = {}
        self.retired: list[WarmWorker] = []  # recycled, exiting in their own time
        self.lock = threading.Lock()  # slots are threads; each uses only its own workers

    def run(self, job: TrialJob, on_event: EventHandler, slot: int) -> Ran:
        backend = str(job.config["backend"])
        key = (slot, backend, bool(job.config.get("flush_denormal", True)))
        worker = self.worker(key)
        finished = worker.run(prepared(job), on_event)
        tags = {"isolation": "warm", "worker_run": str(worker.runs)}
        if finished is None:  # it died: replaced by a fresh one for the next job
            self.forget(key)
            returncode = worker.exit_code()
            worker.close()
            outcome = outcome_of(job, returncode)
            if outcome.state == FAIL and outcome.reason and not job.log_path.exists():
                outcome.reason += f" (it died before the run's log opened: {worker.log_path})"
            return Ran(outcome, returncode, tags)
        recycled = self.recycle_reason(worker, finished)
        if recycled:
            self.forget(key)
            self.retire(worker)
            tags["worker_recycled"] = recycled
        returncode = 1 if finished.failed else 0
        return Ran(outcome_of(job, returncode), returncode, tags)

    def worker(self, key: tuple[int, str, bool]) -> WarmWorker:
        with self.lock:
            worker = self.workers.get(key)
            if worker is not None and worker.process.poll() is not None:
                worker.close()  # it died between jobs (killed while idle): no job was lost
                worker = None
            if worker is None:
                slot, backend, flush = key
                if self.pool.gpus:  # one framework per slot holds GPU memory at a time
                    for other in [k for k in self.workers if k[0] == slot]:
                        self.retire(self.workers.pop(other))
                log = self.logs / f"slot-{slot}-{backend}{'' if flush else '-denormals'}.log"
                worker = WarmWorker(self.pool, self.pool.environment(slot), log)
                self.workers[key] = worker
            return worker

    def forget(self, key: tuple[int, str, bool]) -> None:
        with self.lock:
            self.workers.pop(key, None)

    def retire(self, worker: WarmWorker) -> None:
        """Let `worker` exit in its own time (a framework can take seconds): the slot goes on,
        and `close` reaps it at the end."""
        worker.release()
        self.retired.append(worker)

    def recycle_reason(self, worker: WarmWorker, finished: Finished) -> str | None:
        """Why `worker` should make way for a fresh one now, if it should."""
        if finished.peaks_span_runs:
            return "its next run could not have a peak memory of its own: one run per process"
        if finished.failed:
            return "its run failed: the next starts from a clean process"
        if worker.runs >= self.recycle_after:
            return f"it reached its limit of {self.recycle_after} runs"
        if worker.resident_after_first_mb is None:
            worker.resident_after_first_mb = finished.resident_mb
        elif finished.resident_mb - worker.resident_after_first_mb > self.recycle_growth_mb:
            return f"its memory grew to {finished.resident_mb:.0f} MiB"
        return None

    def close(self) -> None:
        with self.lock:
            workers, self.workers = list(self.workers.values()), {}
            workers, self.retired = [*workers, *self.retired], []
        for worker in workers:
            worker.release()  # all of them at once: a framework can take seconds to exit
        for worker in workers:
            worker.close()


class InProcess:
    """In this very process, for tests: the run's events go straight to `on_event`."""

    def run(self, job: TrialJob, on_event: EventHandler, slot: int) -> Ran:
        prepared(job)
        outcome = execute(job, on_event)
        return Ran(outcome, 1 if outcome.state == FAIL else 0, {"isolation": "in-process"})

    def close(self) -> None:
        """Nothing to close."""
