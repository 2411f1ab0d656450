"""One trial or re-training in its child process, recorded as the MLflow run made for it.

Only the parent talks to MLflow: it fills the run in from the child's events (`Start`, `Tags`,
`Epoch`) and from the outcome and artifacts the child leaves, then closes the run with a status,
so that a child that crashed, was killed or was interrupted still leaves a closed run saying why.
"""

from __future__ import annotations

import signal
from pathlib import Path

from harness.run.events import Epoch, Event, EventHandler, FromJob, Start, Tags
from harness.run.jobs import run_child
from harness.run.pool import WorkerPool
from harness.run.trial import COMPLETE, FAIL, PRUNED, Outcome, TrialJob
from harness.tracking import Tracker

STATUS = {COMPLETE: "FINISHED", PRUNED: "FINISHED", FAIL: "FAILED"}  # MLflow's, per outcome
INTERRUPTED = "interrupted by the user (Ctrl-C); re-run the same command to resume"


def run_trial_process(
    job: TrialJob,
    log_path: Path,
    on_event: EventHandler,
    pool: WorkerPool,
    environment: dict[str, str] | None = None,
) -> tuple[Outcome, int]:
    """Run one job in a `harness.run.trial` process, relay its events; always returns an
    outcome, and the process's exit code (negative when a signal ended it)."""
    job_path = job.write()
    job.outcome_path.unlink(missing_ok=True)
    returncode = run_child(
        "harness.run.trial", job_path, log_path, on_event, pool.children, environment
    )
    if job.outcome_path.exists():
        return Outcome.read(job.outcome_path), returncode
    return Outcome(FAIL, reason=f"{death_reason(returncode)}; log: {log_path}"), returncode


def death_reason(returncode: int) -> str:
    if returncode < 0:
        name = signal.Signals(-returncode).name
        hint = " (out of memory?)" if name == "SIGKILL" else ""
        return f"trial process killed by {name}{hint}"
    return f"trial process exited with code {returncode} before reporting"


class TrackedJobs:
    """Runs jobs in child processes and keeps each one's MLflow run in step with it."""

    def __init__(
        self, tracker: Tracker, data: Path, pool: WorkerPool, on_event: EventHandler
    ) -> None:
        self.tracker = tracker
        self.data = data  # the dataset source, linked to every run as its input
        self.pool = pool
        self.on_event = on_event

    def execute(
        self, job: TrialJob, run_id: str, label: str, environment: dict[str, str]
    ) -> Outcome:
        """Run a job's process and turn what it reports into its MLflow run, then close it.

        A job cut short by Ctrl-C is recorded as interrupted (its run KILLED); one that
        finished before the interrupt reached it keeps its result.
        """
        config = job.config

        def on_event(event: Event) -> None:
            match event:
                case Start():
                    self.tracker.log_start(
                        run_id,
                        params={**config, "dataset_digest": event.digest},
                        tags=event.tags,
                        dataset=self.data,
                        dataset_digest=event.digest,
                    )
                    self.tracker.log_metrics(run_id, event.baselines)
                case Tags():
                    self.tracker.set_tags(run_id, **event.tags)
                case Epoch():
                    self.tracker.log_metrics(run_id, event.metrics, step=event.epoch)
            self.on_event(FromJob(label, event))

        Path(job.folder).mkdir(parents=True, exist_ok=True)
        log = Path(job.folder) / "process.log"
        outcome, returncode = run_trial_process(job, log, on_event, self.pool, environment)
        if outcome.state == FAIL and self.pool.interrupted(returncode):
            outcome = Outcome(FAIL, reason=INTERRUPTED)
            self.tracker.set_tags(run_id, trial_state=FAIL)
            self.tracker.finish(run_id, "KILLED", INTERRUPTED)
            return outcome
        self.tracker.log_metrics(run_id, outcome.metrics, step=int(config["epochs"]))
        self.tracker.log_artifacts(run_id, outcome.artifacts)
        self.tracker.set_tags(
            run_id,
            trial_state=outcome.state,
            **({"stop_reason": outcome.reason} if outcome.state == PRUNED else {}),
        )
        failed = outcome.state == FAIL
        self.tracker.finish(run_id, STATUS[outcome.state], outcome.reason if failed else None)
        return outcome
