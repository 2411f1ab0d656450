"""What child processes and the study runner report, as small typed events.

Child processes (`harness.run.trial`, `harness.perf.measure`) send their events as JSON lines
(`harness.run.jobs`); the parent relays them and adds its own. The terminal (`harness.console`)
and the tracking read these classes, never string-keyed dicts, so a misspelt field fails where
it is written instead of where it is read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import ClassVar


class Event:
    """Base of every event; `wire` names the kind on the JSON lines of a child process."""

    wire: ClassVar[str] = ""  # empty: the event never leaves the process that made it

    def as_json(self) -> dict[str, object]:
        return {"event": self.wire, **asdict(self)}  # type: ignore[call-overload]


EventHandler = Callable[[Event], None]


# -- a trial or re-training process (`harness.run.trial`) ---------------------------------------
@dataclass(frozen=True)
class Start(Event):
    """The data is loaded: what the run's MLflow params, dataset input and tags need."""

    wire = "start"
    digest: str  # sha256 of the dataset source
    baselines: dict[str, float]  # e.g. the majority-class and unigram figures
    tags: dict[str, str]  # framework, its version, the device


@dataclass(frozen=True)
class Tags(Event):
    """Execution tags known only once training starts (e.g. the kernel the framework chose)."""

    wire = "tags"
    tags: dict[str, str]


@dataclass(frozen=True)
class Epoch(Event):
    """One finished epoch, with every per-epoch metric (logged at step `epoch`)."""

    wire = "epoch"
    epoch: int
    epochs: int
    metrics: dict[str, float]


@dataclass(frozen=True)
class Finished(Event):
    """A warm worker (`harness.run.serve`) finished a job: its outcome file is written."""

    wire = "finished"
    failed: bool  # the outcome is FAIL (a fresh process would have exited with code 1)
    resident_mb: float  # the worker's memory once the run was cleared away (0: unknown)
    peaks_span_runs: bool  # a next run's peak memory could not be its own (JAX's GPU peak, or
    # no resettable resident high-water mark): the worker must make way for a fresh process


# -- a `bench perf` measuring process (`harness.perf.measure`) ----------------------------------
@dataclass(frozen=True)
class Machine(Event):
    """What one backend's process runs on; kept as a raw record of perf.json."""

    wire = "machine"
    backend: str
    framework: str
    framework_version: str
    device: str
    gpu: bool
    threads: int

    def record(self) -> dict[str, object]:
        return self.as_json()


@dataclass(frozen=True)
class Measuring(Event):
    """A measurement begins; `point` holds the `harness.perf.plan.Point` fields."""

    wire = "point"
    backend: str
    point: dict[str, object]


@dataclass(frozen=True)
class Measured(Event):
    """A measurement's figures; kept, flattened, as a raw record of perf.json."""

    wire = "result"
    backend: str
    point: dict[str, object]
    figures: dict[str, object]

    def record(self) -> dict[str, object]:
        return {"event": self.wire, "backend": self.backend, **self.point, **self.figures}


# -- a `bench doctor` probe (`harness.doctor.probe`) --------------------------------------------
@dataclass(frozen=True)
class Diagnosis(Event):
    """What one backend would run on, and how far its logits are from the numpy reference."""

    wire = "diagnosis"
    backend: str
    framework: str
    version: str
    device: str
    gpu: bool
    cpus: int
    threads: dict[str, str]  # the thread-count variables set in the environment
    denormal_mode: str
    kernels: dict[str, str]  # architecture -> the recurrent kernel it runs
    parity: dict[str, float]  # architecture -> largest |logit gap| to the reference


# -- a `bench run` pace probe (`harness.run.pace`) -----------------------------------------------
@dataclass(frozen=True)
class Paced(Event):
    """How long one training step of one architecture took here, at a study's defaults."""

    wire = "paced"
    backend: str
    architecture: str
    step_seconds: float  # the mean of the timed steps, after a warm-up step
    accelerator: str | None  # the GPU the framework ran on; None on a CPU


CHILD_EVENTS: dict[str, type[Event]] = {
    kind.wire: kind
    for kind in (Start, Tags, Epoch, Finished, Machine, Measuring, Measured, Diagnosis, Paced)
}


# -- the study runner (`harness.run.runner`), for the terminal ----------------------------------
@dataclass(frozen=True)
class FromJob(Event):
    """An event of the child process running `job` (a trial's or a re-training's label)."""

    job: str
    event: Event


@dataclass(frozen=True)
class SearchOpened(Event):
    name: str  # the Optuna study, <study>/<architecture>/<backend>
    budget: int | None  # None: unlimited
    done: int  # trials that finished before this run


@dataclass(frozen=True)
class DeadTrial(Event):
    """A trial whose process died was closed and its params queued again."""

    name: str
    trial: int


@dataclass(frozen=True)
class TrialStarted(Event):
    job: str
    params: dict[str, object]


@dataclass(frozen=True)
class TrialDone(Event):
    job: str
    search: str  # the Optuna study, <study>/<architecture>/<backend>
    state: str  # COMPLETE, PRUNED or FAIL
    value: float | None
    best: float | None  # the search's best value so far
    reason: str | None
    log: str | None = None  # the run's process.log: what its framework printed


@dataclass(frozen=True)
class RetrainStarted(Event):
    job: str


@dataclass(frozen=True)
class RetrainDone(Event):
    job: str
    state: str
    metrics: dict[str, float]
    reason: str | None
    log: str | None = None  # the run's process.log: what its framework printed


@dataclass(frozen=True)
class Skipped(Event):
    """A re-training that finished in an earlier run: counted, not repeated."""

    name: str
