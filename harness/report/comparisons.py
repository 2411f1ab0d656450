"""Each backend against the study's baseline backend, per architecture: the report's verdicts.

Only runs of one configuration are compared: the baseline's newest best configuration
(its `config_hash`, which covers the whole run configuration but the seed and the backend), as
re-trained on the baseline and as run on the contender, whether as the contender's own best
(`retrain`) or as a cross run. Every figure keeps its n: quality from one test figure per seed,
cost from every steady-state epoch (the first epoch, which carries tracing and compilation, is
left out) averaged within each run, memory from one peak per run: one value per run, as the
epochs of one run are not independent draws.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from harness.report import verdicts
from harness.report.selection import baseline_config, compared_runs
from harness.report.verdicts import Interval
from harness.report.views import view_of

if TYPE_CHECKING:
    from harness.study.schema import Study
    from harness.tracking import Tracker

QUALITY = {  # test metric -> (words, higher is better)
    "test_accuracy": ("accuracy", True),
    "test_perplexity": ("perplexity", False),
}


@dataclass
class Samples:
    """What one backend's runs of the compared configuration measured."""

    quality: list[float] = field(default_factory=list)  # one per run (seed)
    epoch_seconds: list[float] = field(default_factory=list)  # per run: its steady epochs' mean
    throughput: list[float] = field(default_factory=list)  # per run: its steady epochs' mean
    memory: list[float] = field(default_factory=list)  # one peak per run
    time_to_target: list[float] = field(default_factory=list)  # one per run; NaN: not reached
    steady_epochs: int = 0  # behind `epoch_seconds`, for the n shown

    @property
    def runs(self) -> int:
        return len(self.quality)

    @property
    def reached(self) -> list[float]:
        """The times to target of the runs that reached it."""
        return [t for t in self.time_to_target if not math.isnan(t)]


@dataclass(frozen=True)
class Verdict:
    architecture: str
    contender: str
    baseline: str
    config_hash: str | None
    quality: Interval
    p_better: float
    time: Interval
    throughput: Interval
    memory: Interval
    samples: dict[str, Samples]  # by backend
    headline: str


@dataclass(frozen=True)
class Sources:
    """Where the figures come from: the run columns and which way the quality metric is good."""

    quality_metric: str  # e.g. test_accuracy
    throughput_metric: str  # samples_per_second or tokens_per_second
    memory_metric: str  # peak_gpu_memory_mb or peak_rss_mb
    objective: str  # the per-epoch validation metric, for time to target
    target: float | None
    higher_is_better: bool  # of the objective


def gather(tracker: Tracker, runs: pd.DataFrame, sources: Sources) -> Samples:
    """One value per run: its test figure, its peak memory, and the mean of its steady-state
    epochs (the first left out: it carries tracing and compilation)."""
    samples = Samples()
    for _, run in runs.iterrows():
        samples.quality.append(_number(run, f"metrics.{sources.quality_metric}"))
        samples.memory.append(_number(run, f"metrics.{sources.memory_metric}"))
        seconds = tracker.metric_history(run["run_id"], "epoch_seconds")
        throughput = tracker.metric_history(run["run_id"], sources.throughput_metric)
        samples.epoch_seconds.append(_mean(seconds[1:]))
        samples.throughput.append(_mean(throughput[1:]))
        samples.steady_epochs += len(seconds[1:])
        if sources.target is not None:
            values = tracker.metric_history(run["run_id"], sources.objective)
            usable = min(len(values), len(seconds))
            samples.time_to_target.append(
                verdicts.time_to_target(
                    values[:usable], seconds[:usable], sources.target, sources.higher_is_better
                )
            )
    return samples


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else math.nan


def study_verdicts(
    tracker: Tracker, runs: pd.DataFrame, study: Study, memory: str
) -> list[Verdict]:
    """Every other backend of the study against its baseline (the first unless it names one),
    per architecture; none for a study of one backend."""
    view = view_of(study)
    objective = study.objective
    sources = Sources(
        quality_metric=view.cross[0],
        throughput_metric=view.throughput[0],
        memory_metric=memory,
        objective=objective.metric,
        target=objective.target,
        higher_is_better=objective.direction == "maximize",
    )
    contenders = [b for b in study.backends if b != study.baseline]
    return [
        compare(tracker, runs, arch, contender, study.baseline, sources)
        for arch in study.architectures
        for contender in contenders
    ]


def compare(
    tracker: Tracker,
    runs: pd.DataFrame,
    arch: str,
    contender: str,
    baseline: str,
    sources: Sources,
) -> Verdict:
    config = baseline_config(runs, arch, baseline)
    samples = {
        backend: gather(tracker, compared_runs(runs, arch, backend, baseline, config), sources)
        for backend in (contender, baseline)
    }
    a, b = samples[contender], samples[baseline]
    label, higher = QUALITY.get(sources.quality_metric, (sources.quality_metric, True))
    quality = verdicts.difference(a.quality, b.quality)
    p_better = verdicts.probability_of_improvement(a.quality, b.quality, higher)
    time = verdicts.ratio(a.epoch_seconds, b.epoch_seconds)
    throughput = verdicts.ratio(a.throughput, b.throughput)
    memory = verdicts.ratio(a.memory, b.memory)
    if config is None or not a.runs:
        missing = baseline if config is None else contender
        headline = (
            f"{arch}: no verdict: {missing} has no finished runs of {baseline}'s best "
            "configuration (re-train it, or set [retrain] cross_backend = true)"
        )
    else:
        clauses = [
            verdicts.quality_words(label, quality, p_better, contender, baseline, higher),
            verdicts.ratio_words(
                "time per epoch",
                time,
                contender,
                f"runs, {a.steady_epochs}/{b.steady_epochs} steady epochs",
            ),
            verdicts.ratio_words("memory", memory, contender, "runs"),
        ]
        if sources.target is not None:
            clauses.append(target_words(sources, a, b, contender, baseline))
        headline = f"{arch}: " + "; ".join(clauses)
    return Verdict(
        arch,
        contender,
        baseline,
        config,
        quality,
        p_better,
        time,
        throughput,
        memory,
        samples,
        headline,
    )


def target_words(sources: Sources, a: Samples, b: Samples, contender: str, baseline: str) -> str:
    def one(name: str, s: Samples) -> str:
        runs = len(s.time_to_target)
        if not s.reached:
            return f"{name} not reached (0/{runs} runs)"
        return f"{name} {np.median(s.reached):.1f} s ({len(s.reached)}/{runs} runs)"

    return (
        f"time to {sources.objective} {sources.target:g} (median): "
        f"{one(contender, a)}, {one(baseline, b)}"
    )


def verdict_table(found: Iterable[Verdict], quality_label: str) -> pd.DataFrame:
    """One row per (architecture, contender): every estimate and interval bound, with its n."""
    rows = []
    for v in found:
        a, b = v.samples[v.contender], v.samples[v.baseline]
        rows.append(
            {
                "architecture": v.architecture,
                "contender": v.contender,
                "baseline": v.baseline,
                f"Δ {quality_label}": v.quality.estimate,
                "Δ CI low": v.quality.low,
                "Δ CI high": v.quality.high,
                f"P({v.contender} better)": v.p_better,
                "seeds (contender/baseline)": f"{a.runs}/{b.runs}",
                "time/epoch ratio": v.time.estimate,
                "time CI low": v.time.low,
                "time CI high": v.time.high,
                "steady epochs": f"{a.steady_epochs}/{b.steady_epochs}",
                "throughput ratio": v.throughput.estimate,
                "throughput CI low": v.throughput.low,
                "throughput CI high": v.throughput.high,
                "memory ratio": v.memory.estimate,
                "memory CI low": v.memory.low,
                "memory CI high": v.memory.high,
                "runs (contender/baseline)": f"{len(a.memory)}/{len(b.memory)}",
                "time to target contender (s)": _median(a.reached),
                "time to target baseline (s)": _median(b.reached),
                "reached (contender/baseline)": (
                    f"{len(a.reached)}/{len(a.time_to_target)}, "
                    f"{len(b.reached)}/{len(b.time_to_target)}"
                ),
            }
        )
    return pd.DataFrame(rows)


def _median(values: list[float]) -> float:
    return float(np.median(values)) if values else math.nan


def _number(run: pd.Series, key: str) -> float:
    value = pd.to_numeric(run.get(key), errors="coerce")
    return float(value) if value is not None and not pd.isna(value) else math.nan
