"""`bench perf`: what to measure, and the child processes that measure it.

One child process per (backend, architecture), started as a study's trials are
(`harness.run.jobs`: `python -m harness.perf.measure JOB.json`, typed events, stderr to a log):
TensorFlow and PyTorch never share a process, and each process's peak memory is its own. The
parent only plans, relays progress and collects the raw records; `harness.perf.render` turns
them into tables. Every figure is a median over whole passes of the same batches, the first pass
left out.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from backends import BACKENDS, check_backend
from harness.config import RunConfig
from harness.errors import BenchError
from harness.execution import ExecutionOptions
from harness.model_spec import ARCHITECTURES
from harness.run.devices import SHARED_THREAD_VARIABLES
from harness.run.events import Event, EventHandler, Machine, Measured
from harness.run.jobs import run_child, write_job
from harness.system import writable_folder

MAIN, SEQUENCE, BATCH, OPTION = "main", "sequence_length", "batch_size", "option"
WARMUP_ALLOWANCE = 2  # passes timed beyond `passes`, for the warm-up that the report measures


@dataclass(frozen=True)
class Point:
    """One measurement of one backend: a model shape, a batch shape and execution options."""

    kind: str  # MAIN, SEQUENCE, BATCH or OPTION
    architecture: str
    sequence_length: int
    batch_size: int
    precision: str = "float32"
    jit_compile: bool = False
    cudnn: bool = True
    option: str = ""  # OPTION points: the fast path's name, e.g. "bf16"
    needs_gpu: bool = False  # measured only where the framework has a GPU
    plain: bool = False  # also time the framework's tutorial path on the same batches
    flush_denormal: bool = True  # False: a point that keeps denormals (its own process)

    def options(self) -> ExecutionOptions:
        return ExecutionOptions(self.precision, self.jit_compile, self.cudnn, self.flush_denormal)


# Fast paths measured against the plain path: (name, ExecutionOptions fields, GPU only).
FAST_PATHS: tuple[tuple[str, dict[str, object], bool], ...] = (
    ("bf16", {"precision": "bf16"}, False),
    ("fp16", {"precision": "fp16"}, True),  # with loss scaling; no CPU LSTM kernel in PyTorch
    ("jit_compile", {"jit_compile": True}, False),  # torch.compile / XLA
    ("cudnn_off", {"cudnn": False}, True),  # the generic kernel, to show what cuDNN buys
    # What denormals cost where the framework lets them through (PyTorch's own default).
    ("keep_denormals", {"flush_denormal": False}, False),
)

RUN_DEFAULTS = {item.name: item.default for item in fields(RunConfig)}


def installed_backends() -> tuple[str, ...]:
    """Every registered backend whose framework is installed: `bench perf`'s default."""
    return tuple(name for name, info in BACKENDS.items() if not info.missing_packages())


@dataclass(frozen=True)
class PerfPlan:
    architectures: tuple[str, ...] = ARCHITECTURES
    backends: tuple[str, ...] = field(default_factory=installed_backends)
    steps: int = 10  # batches per pass
    passes: int = 8  # measured passes, after the warm-up ones (WARMUP_ALLOWANCE more are timed)
    # The shape of the main table: `bench train`'s defaults (RunConfig, the one place they live).
    sequence_length: int = RUN_DEFAULTS["sequence_length"]
    batch_size: int = RUN_DEFAULTS["batch_size"]
    hidden_size: int = RUN_DEFAULTS["hidden_size"]
    embedding_dim: int = RUN_DEFAULTS["embedding_dim"]
    num_words: int = RUN_DEFAULTS["num_words"]
    threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    scaling_architectures: tuple[str, ...] = ("lstm",)
    sequence_lengths: tuple[int, ...] = (100, 200, 500, 1000)
    batch_sizes: tuple[int, ...] = (32, 64, 128, 256, 512)
    option_architectures: tuple[str, ...] = ARCHITECTURES

    def __post_init__(self) -> None:
        for name, valid in (("architectures", ARCHITECTURES), ("backends", tuple(BACKENDS))):
            chosen = getattr(self, name)
            if not chosen:
                raise BenchError(f"{name}: expected at least one; received none")
            for item in chosen:
                if item not in valid:
                    raise BenchError(
                        f"{name}: expected one of {', '.join(valid)}; received {item!r}"
                    )
        for backend in self.backends:
            check_backend(backend)  # a framework that is not installed: one line, before work
        for name in ("steps", "passes", "sequence_length", "batch_size", "threads"):
            if getattr(self, name) < 1:
                raise BenchError(f"{name}: expected >= 1; received {getattr(self, name)}")
        for name in ("sequence_lengths", "batch_sizes"):
            if any(value < 1 for value in getattr(self, name)):
                raise BenchError(f"{name}: expected values >= 1; received {getattr(self, name)}")

    def points(self, architecture: str) -> list[Point]:
        """Every measurement of one architecture, on whichever backend runs them."""
        base = Point(MAIN, architecture, self.sequence_length, self.batch_size)
        points = [replace(base, plain=True)]
        if architecture in self.scaling_architectures:
            points += [
                replace(base, kind=SEQUENCE, sequence_length=n) for n in self.sequence_lengths
            ]
            points += [replace(base, kind=BATCH, batch_size=n) for n in self.batch_sizes]
        if architecture in self.option_architectures:
            points += [
                replace(base, kind=OPTION, option=name, needs_gpu=gpu, **fields)  # type: ignore[arg-type]
                for name, fields, gpu in FAST_PATHS
            ]
        return points

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def quick_plan(**overrides: object) -> PerfPlan:
    """Small enough for a 2-core CPU in a few minutes: fewer steps, points and one architecture
    for scaling and fast paths."""
    quick = {
        "steps": 6,
        "passes": 5,
        "sequence_lengths": (100, 200, 400),
        "batch_sizes": (32, 64, 128, 256),
        "option_architectures": ("lstm",),
    }
    return PerfPlan(**{**quick, **overrides})  # type: ignore[arg-type]


@dataclass(frozen=True)
class PerfJob:
    """What one child process measures: one backend, one architecture, its points in order."""

    backend: str
    architecture: str
    points: list[dict[str, object]]
    plan: dict[str, object]
    data: str  # the resolved dataset source
    part: str = ""  # a job of its own for points that need a fresh process, e.g. "denormals"

    def write(self, folder: Path) -> Path:
        suffix = f"-{self.part}" if self.part else ""
        return write_job(self, folder / f"{self.backend}-{self.architecture}{suffix}.json")


def run_job(job: PerfJob, folder: Path, on_event: EventHandler) -> list[dict]:
    """Run one job in a child process with the plan's thread cap; its records, in order."""
    job_path = job.write(folder)
    log_path = job_path.with_suffix(".log")
    threads = str(job.plan["threads"])
    records: list[dict] = []

    def relay(event: Event) -> None:
        on_event(event)
        if isinstance(event, Machine | Measured):
            records.append(event.record())

    # Set before the framework starts, so that every thread pool (OpenMP's, oneDNN's,
    # TensorFlow's) is capped the same way in both frameworks; the backends cap their own too.
    environment = dict.fromkeys(SHARED_THREAD_VARIABLES, threads)
    returncode = run_child("harness.perf.measure", job_path, log_path, relay, None, environment)
    if returncode != 0:
        lines = log_path.read_text().strip().splitlines() or ["no output"]
        raise BenchError(
            f"perf measurement {job.backend}/{job.architecture} failed (exit code {returncode}): "
            f"{lines[-1][:300]}; log: {log_path}"
        )
    return records


def run_plan(plan: PerfPlan, data: Path, folder: Path, on_event: EventHandler) -> list[dict]:
    """Every (backend, architecture) job of the plan, one process each, backends interleaved
    per architecture so that a drifting machine load affects both frameworks alike."""
    folder.mkdir(parents=True, exist_ok=True)
    records: list[dict] = []
    for architecture in plan.architectures:
        points = plan.points(architecture)
        # A process's denormal mode reaches only the threads started after it is set, so the
        # points that keep denormals get a process of their own.
        parts = {
            "": [asdict(p) for p in points if p.flush_denormal],
            "denormals": [asdict(p) for p in points if not p.flush_denormal],
        }
        for backend in plan.backends:
            for part, chosen in parts.items():
                if chosen:
                    job = PerfJob(backend, architecture, chosen, plan.as_dict(), str(data), part)
                    records += run_job(job, folder, on_event)
    return records


def total_points(plan: PerfPlan) -> int:
    return sum(len(plan.points(a)) for a in plan.architectures) * len(plan.backends)


def build_plan(quick: bool, overrides: dict[str, object]) -> PerfPlan:
    """The full or quick plan with the command line's choices; scaling and fast paths follow
    the chosen architectures (LSTM when it is among them)."""
    chosen = {k: v for k, v in overrides.items() if v is not None}
    architectures = tuple(chosen.get("architectures", ARCHITECTURES))  # type: ignore[arg-type]
    focus = ("lstm",) if "lstm" in architectures else architectures[:1]
    chosen.setdefault("scaling_architectures", focus)
    if quick:
        chosen.setdefault("option_architectures", focus)
        return quick_plan(**chosen)
    return PerfPlan(**chosen)  # type: ignore[arg-type]


def run_perf(console, quick: bool, out: Path, data: Path | None, overrides: dict) -> None:
    """`bench perf`: plan, measure in child processes with a progress bar, write the report."""
    from harness.console import PerfProgress
    from harness.data.classification import load_corpus
    from harness.data.source import resolve_source
    from harness.perf.render import write

    plan = build_plan(quick, overrides)
    source = resolve_source(data)
    load_corpus(source)  # tokenise once, here; the measuring processes reuse the cache
    jobs = writable_folder(out, "--out") / "jobs"
    jobs.mkdir(exist_ok=True)
    with PerfProgress(console, total_points(plan)) as progress:
        records = run_plan(plan, source, jobs, progress)
    command = "bench perf" + (" --quick" if quick else "")
    for path in write(records, plan, command, out):
        console.print(f"wrote {path}", highlight=False, soft_wrap=True)
