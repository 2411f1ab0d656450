"""One trial or re-training, run apart from `bench run` (`harness.run.isolation`), recorded as the
MLflow run made for it.

Only the parent talks to MLflow: it fills the run in from the child's events (`Start`, `Tags`,
`Epoch`) and from the outcome and artifacts the child leaves, then closes the run with a status,
so that a child that crashed, was killed or was interrupted still leaves a closed run saying why.
"""

from __future__ import annotations

from pathlib import Path

from harness.run.artifacts import Artifacts, title
from harness.run.energy import EnergyMeter
from harness.run.events import Epoch, Event, EventHandler, FromJob, Start, Tags
from harness.run.host import HostWatch
from harness.run.isolation import Isolation
from harness.run.pool import WorkerPool
from harness.run.trial import COMPLETE, FAIL, PRUNED, Outcome, TrialJob
from harness.tracking import Tracker

STATUS = {COMPLETE: "FINISHED", PRUNED: "FINISHED", FAIL: "FAILED"}  # MLflow's, per outcome
INTERRUPTED = "interrupted by the user (Ctrl-C); re-run the same command to resume"


class TrackedJobs:
    """Runs jobs apart from this process and keeps each one's MLflow run in step with it."""

    def __init__(
        self,
        tracker: Tracker,
        data: Path,
        pool: WorkerPool,
        isolation: Isolation,
        artifacts: Artifacts,
        on_event: EventHandler,
    ) -> None:
        self.tracker = tracker
        self.data = data  # the dataset source, linked to every run as its input
        self.pool = pool
        self.isolation = isolation
        self.artifacts = artifacts
        self.on_event = on_event

    def execute(self, job: TrialJob, run_id: str, label: str, slot: int) -> Outcome:
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

        host = HostWatch()
        energy = EnergyMeter(self.pool.gpu_of(slot))
        monitor = self.tracker.system_metrics(run_id)
        try:
            ran = self.isolation.run(job, on_event, slot)
        finally:
            monitor.finish()
        outcome = ran.outcome
        busy, busy_tags = host.stop()
        joules, energy_tags = energy.stop(_samples(outcome.epochs))
        self.tracker.log_metrics(run_id, {**busy, **joules})
        self.tracker.set_tags(run_id, **ran.tags, **busy_tags, **energy_tags)
        if outcome.state == FAIL and self.pool.interrupted(ran.returncode):
            outcome = Outcome(FAIL, reason=INTERRUPTED)
            self.tracker.set_tags(run_id, trial_state=FAIL)
            self.tracker.finish(run_id, "KILLED", INTERRUPTED)
            return outcome
        self.tracker.log_metrics(run_id, outcome.metrics, step=int(config["epochs"]))
        self.tracker.log_artifacts(run_id, outcome.artifacts)  # the text files: small, now
        if outcome.epochs or outcome.confusion is not None:  # the figures: off the training path
            heading = title(config["architecture"], config["backend"], config["seed"])
            self.artifacts.add(run_id, Path(job.folder), heading)
        self.tracker.set_tags(
            run_id,
            trial_state=outcome.state,
            **({"stop_reason": outcome.reason} if outcome.state == PRUNED else {}),
        )
        failed = outcome.state == FAIL
        self.tracker.finish(run_id, STATUS[outcome.state], outcome.reason if failed else None)
        return outcome


def _samples(epochs: list[dict[str, float]]) -> float | None:
    """Training samples the run processed, from each epoch's throughput and time."""
    total = sum(e.get("samples_per_second", 0.0) * e.get("epoch_seconds", 0.0) for e in epochs)
    return total or None
