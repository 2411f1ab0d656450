"""Whether a study sized for a GPU may start here, and how long it would take if it did.

A study file may say `[study] sized_for = "gpu"`. On a machine without a GPU, `bench run` then
stops before anything is created, in one line with an estimate of the hours, so that nobody
learns it a day into a search; `--on-cpu` runs it anyway, and `--dry-run` prints the same line.

The estimate is a probe, not a guess from a table: a few training steps per architecture at the
study's default configuration, timed on this machine in a child process (`harness.run.pace`; no
warm worker is started), scaled by the steps per epoch, the epochs, the trials of every search
(capped by its timeout) and the re-trainings. The probe's reviews are cut to `PROBE_TOKENS`
tokens and its time scaled up by the real length: a recurrent step's cost grows linearly with
the length (one cell step per token), and a full-length step of a GPU-sized model takes seconds
on a CPU, which would make the probe as slow as the wait it spares. Every backend is assumed to
keep the probed backend's pace, and the searched configurations the defaults': an order of
magnitude, said as one ("about 40 hours").
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from backends import DEFAULT_BACKEND, check_backend
from harness.errors import BenchError
from harness.run.devices import visible_gpus
from harness.run.events import Event, Paced
from harness.run.jobs import run_child, write_job

if TYPE_CHECKING:
    from harness.study.schema import Study

PROBE_STEPS = 3  # timed training steps per architecture, after one warm-up step
# Tokens per review in the probe: short enough for seconds on a CPU. On this project's 2-core CPU,
# busy at the time, an LSTM or GRU step at imdb's defaults took 0.02-0.06 s per token at 16 or 32
# tokens and 0.04 s at 200: the estimate is an order of magnitude, and so is this scaling.
PROBE_TOKENS = 16
IMDB_TRAIN_REVIEWS = 25_000  # the official train split, before validation is carved off
# Tokens per review in the language model's stream (the end-of-review token included):
# imdb-lm's ~4.7M training tokens per epoch over its 20,000 training reviews.
LM_TOKENS_PER_REVIEW = 235


@dataclass(frozen=True)
class Pace:
    """What the probe found: seconds per training step and token of the reviews' length, by
    architecture, on `backend`."""

    backend: str
    token_step_seconds: dict[str, float]
    accelerator: str | None  # the GPU the framework found, which nvidia-smi did not list


def probe_backend(study: Study) -> str:
    """The backend to probe: PyTorch where the study has it (the quickest to start, no
    TensorFlow), else the study's first."""
    return DEFAULT_BACKEND if DEFAULT_BACKEND in study.backends else study.backends[0]


def probe_pace(study: Study, steps: int = PROBE_STEPS) -> Pace:
    """Time `steps` training steps per architecture in a child process; nothing is left behind."""
    from harness.run.pace import PaceJob

    backend = probe_backend(study)
    check_backend(backend)
    lengths = [
        min(study.run_config(backend, arch, {}).sequence_length, PROBE_TOKENS)
        for arch in study.architectures
    ]
    configs = [
        study.run_config(backend, arch, {"sequence_length": length}).as_params()
        for arch, length in zip(study.architectures, lengths, strict=True)
    ]
    found: list[Paced] = []

    def keep(event: Event) -> None:
        if isinstance(event, Paced):
            found.append(event)

    with tempfile.TemporaryDirectory(prefix="bench-pace-") as tmp:
        job = write_job(PaceJob(configs, steps), Path(tmp) / "pace.json")
        log = Path(tmp) / "pace.log"
        returncode = run_child("harness.run.pace", job, log, keep)
        if returncode != 0 or len(found) != len(configs):
            lines = log.read_text().strip().splitlines() or ["no output"]
            raise BenchError(f"the probe failed (exit code {returncode}): {lines[-1][:200]}")
    return Pace(
        backend,
        {
            event.architecture: event.step_seconds / length
            for event, length in zip(found, lengths, strict=True)
        },
        next((event.accelerator for event in found if event.accelerator), None),
    )


def training_samples(study: Study, sequence_length: int) -> float:
    """Samples per training epoch: reviews, or a language model's windows of tokens."""
    reviews = (study.data.subset or IMDB_TRAIN_REVIEWS) * (1 - study.data.validation_fraction)
    if study.task == "language_model":
        return reviews * LM_TOKENS_PER_REVIEW / sequence_length
    return reviews


def study_seconds(study: Study, pace: Pace) -> float:
    """The training time of the whole study at `pace`: every search to its trial budget (or
    its timeout, whichever comes first), then every re-training and cross run."""
    others = len(study.backends) - 1 if study.retrain.cross_backend else 0
    runs_after_search = study.retrain.seeds * (1 + others)  # each best: own and cross runs
    timeout = study.budget.timeout_minutes * 60 if study.budget.timeout_minutes else math.inf
    total = 0.0
    for arch in study.architectures:
        config = study.run_config(pace.backend, arch, {})
        steps = math.ceil(training_samples(study, config.sequence_length) / config.batch_size)
        step = pace.token_step_seconds[arch] * config.sequence_length
        run = study.epochs * steps * step
        search = min(study.budget.trials * run if study.budget.trials else math.inf, timeout)
        total += len(study.backends) * (search + runs_after_search * run)
    return total


def about(seconds: float) -> str:
    """A duration rounded as an estimate deserves: "about 40 hours", "about 25 minutes"."""
    hours, minutes = seconds / 3600, round(seconds / 60)
    if minutes < 1:
        return "less than a minute"
    if hours < 1.5:
        return f"about {minutes} minute{'s' if minutes > 1 else ''}"
    step = 1 if hours < 10 else 5 if hours < 100 else 10
    rounded = f"about {round(hours / step) * step:,} hours"
    return f"{rounded} ({hours / 24:.0f} days)" if hours >= 48 else rounded


def without_gpu(study: Study) -> str | None:
    """What a study sized for a GPU would cost on this machine, which has none, and what to do
    instead; None when the study may run here (not sized for a GPU, or a GPU is here)."""
    if study.sized_for != "gpu" or visible_gpus():
        return None
    try:
        pace = probe_pace(study)
    except BenchError as error:
        cost = f"it would take many hours (no estimate: {error})"
    else:
        if pace.accelerator is not None:
            return None
        cost = (
            f"it would take {about(study_seconds(study, pace))} (an estimate from a probe of "
            f"{PROBE_STEPS} training steps per architecture on {pace.backend} at the study's "
            f"default configuration, its reviews cut to {PROBE_TOKENS} tokens)"
        )
    instead = f"run --study {study.cpu_study} instead, or add" if study.cpu_study else "add"
    return f"on this machine (no GPU) {cost}; {instead} --on-cpu to run it anyway"


def refuse_without_gpu(study: Study) -> None:
    """`bench run`'s check, before anything is created: a study sized for a GPU, on a machine
    without one, is one line and exit code 2 (`--on-cpu` skips this check)."""
    cost = without_gpu(study)
    if cost is not None:
        raise BenchError(f"{_shown(study.path)} is sized for a GPU; {cost}")


def sizing_line(study: Study) -> str | None:
    """`bench run --dry-run`'s line about the machine, for a study sized for a GPU."""
    if study.sized_for != "gpu":
        return None
    gpus = visible_gpus()
    if gpus:
        return f"sized for a GPU: this machine has {len(gpus)} (ids {', '.join(gpus)})"
    cost = without_gpu(study)
    return f"sized for a GPU: {cost}" if cost else "sized for a GPU: the framework found one here"


def _shown(path: Path) -> str:
    """The study file as its user would name it: relative to the current folder if under it."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)
