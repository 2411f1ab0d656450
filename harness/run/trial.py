"""One training run, as a job: `python -m harness.run.trial JOB.json`, or inside a warm worker.

A run never shares the `bench run` process (`harness.run.isolation`): a crash, an out-of-memory
kill or TensorFlow's GPU allocator cannot take the study down. It runs either in a fresh process
of its own (`JOB.json`) or in a warm worker that imports its framework once and runs job after
job (`--serve`, `harness.run.serve`). Either way a run reports its events (`Start` with its tags,
`Tags` once training starts, an `Epoch` per epoch), talks to Optuna for pruning, and leaves its
outcome and artifacts in files; the parent (`harness.run.tracked`) turns all of that into the
MLflow run. If the process dies before writing its outcome, the parent records why.
"""

from __future__ import annotations

import functools
import json
import math
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from harness.run.events import Epoch, EventHandler, Start, Tags
from harness.run.jobs import emit, read_job, write_job
from harness.system import leave

if TYPE_CHECKING:
    from harness.tasks import TaskData

COMPLETE, PRUNED, FAIL = "COMPLETE", "PRUNED", "FAIL"


@dataclass(frozen=True)
class TrialJob:
    config: dict[str, object]  # RunConfig fields
    data: str  # resolved dataset source
    # The per-epoch metric reported to the pruner, e.g. "val_accuracy"; it also picks the best
    # epoch whose weights the test split is scored with (RunConfig.test_weights "best_epoch").
    objective: str
    evaluate_test: bool
    folder: str  # where the outcome and the artifacts go
    storage_url: str | None = None  # Optuna storage, for search trials only
    optuna_study: str | None = None
    trial_number: int | None = None  # the trial within `optuna_study`
    pruner: dict[str, object] | None = None  # the study file's [pruner] table

    @property
    def outcome_path(self) -> Path:
        return Path(self.folder) / "outcome.json"

    @property
    def log_path(self) -> Path:
        """The run's own log: the framework's messages and any traceback."""
        return Path(self.folder) / "process.log"

    def write(self) -> Path:
        return write_job(self, Path(self.folder) / "job.json")


@dataclass
class Outcome:
    state: str  # COMPLETE, PRUNED or FAIL
    value: float | None = None  # the objective: at its best epoch, or the last (test_weights)
    reason: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)  # end-of-run figures
    artifacts: list[str] = field(default_factory=list)  # files to attach to the run
    # What the run's figures show, drawn by the parent off the training path (`run.artifacts`)
    epochs: list[dict[str, float]] = field(default_factory=list)  # per-epoch metrics, in order
    confusion: list[list[int]] | None = None  # the test confusion matrix, for a classifier

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self)))

    @classmethod
    def read(cls, path: Path) -> Outcome:
        return cls(**json.loads(path.read_text()))


class Stop(Exception):
    """Ends a run early with a recorded state: pruned, or diverged (also recorded as pruned)."""

    def __init__(self, reason: str, value: float | None) -> None:
        super().__init__(reason)
        self.value = value


DATASETS_KEPT = 4  # per process: a warm worker of a search over sequence_length sees several


@functools.lru_cache(maxsize=DATASETS_KEPT)
def dataset(task: str, source: str, params: tuple[tuple[str, object], ...]) -> TaskData:
    """The splits a run trains on, loaded once per process for each preprocessing."""
    from harness.tasks import load_task_data

    return load_task_data(task, Path(source), **dict(params))


def run(job: TrialJob, report: EventHandler = emit) -> Outcome:
    """Train `job`'s configuration, telling `report` (the parent, by default) as it goes."""
    from harness.run.devices import pin_to_slot_cores

    pin_to_slot_cores()  # before the framework is imported, which sizes its pools by the cores
    cpu_started, wall_started = time.process_time(), time.perf_counter()
    from backends import get_backend
    from harness.config import RunConfig
    from harness.system import cpu_model
    from harness.tasks import baseline_metrics
    from harness.training import EpochResult, train

    config = RunConfig(**job.config)
    backend = get_backend(config.backend)
    framework, version = backend.framework()
    data = dataset(config.task, job.data, tuple(sorted(config.data_params().items())))
    report(
        Start(
            digest=data.digest,
            baselines=baseline_metrics(data),
            tags={
                "framework": framework,
                "framework_version": version,
                "device": backend.accelerator() or cpu_model(),
                **backend.runtime_tags(),
            },
        )
    )
    reporter = None
    if job.trial_number is not None:
        from harness.search import TrialReporter
        from harness.study.schema import Pruner

        reporter = TrialReporter(
            job.storage_url,
            job.optuna_study,
            job.trial_number,
            Pruner(**job.pruner),
            config.epochs,  # the study's: RunConfig's epochs are the study file's
        )

    def on_epoch(epoch: EpochResult) -> None:
        value = epoch.as_metrics()[job.objective]
        report(Epoch(epoch.epoch, config.epochs, epoch.as_metrics()))
        if not (math.isfinite(epoch.train_loss) and math.isfinite(epoch.val_loss)):
            raise Stop(f"diverged: loss is {epoch.train_loss} at epoch {epoch.epoch}", None)
        if reporter is not None and reporter.report(value, epoch.epoch):
            raise Stop(f"pruned at epoch {epoch.epoch} ({job.objective} {value:.4f})", value)

    try:
        result = train(
            config,
            data,
            on_epoch=on_epoch,
            evaluate_test=job.evaluate_test,
            on_start=lambda started: report(Tags(started.execution_tags())),
            select_by=job.objective,  # the best epoch, where the test uses its weights
        )
    except Stop as stop:
        return Outcome(PRUNED, stop.value, str(stop))
    finally:
        if reporter is not None:
            reporter.close()
    # The process's CPU time (every thread) over the job's wall time: a run that got less than
    # its usual share of the cores shows it here, whatever else the host did.
    cpu_per_wall = (time.process_time() - cpu_started) / (time.perf_counter() - wall_started)
    return Outcome(
        COMPLETE,
        objective_value(
            config.test_weights,
            [e.as_metrics()[job.objective] for e in result.epochs],
            job.objective,
        ),
        None,
        {**result.summary_metrics(), "process_cpu_per_wall": cpu_per_wall},
        write_texts(result, Path(job.folder)),
        [{"epoch": e.epoch, **e.as_metrics()} for e in result.epochs],
        None if result.confusion is None else result.confusion.tolist(),
    )


def objective_value(test_weights: str, values: list[float], objective: str) -> float:
    """What a finished trial tells the search: the objective at its best epoch where the
    study tests the best epoch's weights (the search then ranks configurations by the figure
    their re-trainings are tested with), else at its last epoch."""
    from harness.metrics import METRIC_DIRECTION

    if test_weights != "best_epoch":
        return values[-1]
    finite = [v for v in values if math.isfinite(v)] or values
    return (max if METRIC_DIRECTION[objective] == "maximize" else min)(finite)


def write_texts(result, folder: Path) -> list[str]:
    """The run's text artifacts; its figures are drawn by the parent (`run.artifacts`)."""
    written = {"model_summary.txt": result.model_summary}
    if result.classification_report:
        written["classification_report.txt"] = result.classification_report
    for name, text in written.items():
        (folder / name).write_text(text)
    return [str(folder / name) for name in written]


def execute(job: TrialJob, report: EventHandler = emit) -> Outcome:
    """Run `job` and write its outcome file, whatever happens short of the process dying."""
    try:
        outcome = run(job, report)
    except Exception as error:  # noqa: BLE001 - any failure is recorded, never lost
        traceback.print_exc()
        line = f"{type(error).__name__}: {error}".splitlines()[0][:500]
        outcome = Outcome(FAIL, None, line)
    outcome.write(job.outcome_path)
    return outcome


def main(argument: str) -> NoReturn:
    """``JOB.json``: run that one job in this fresh process. ``--serve``: be a warm worker."""
    if argument == "--serve":
        from harness.run.serve import serve

        leave(serve())
    outcome = execute(read_job(TrialJob, argument))
    leave(0 if outcome.state != FAIL else 1)


if __name__ == "__main__":
    main(sys.argv[1])
