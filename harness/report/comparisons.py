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
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from harness.report import verdicts
from harness.report.clauses import OVERALL, Clause
from harness.report.selection import baseline_config, compared_runs
from harness.report.views import view_of
from harness.run.host import CONTENDED_TAG

if TYPE_CHECKING:
    from harness.study.schema import Study
    from harness.study.tables import Verdict as Margins
    from harness.tracking import Tracker

QUALITY = {  # test metric -> (words, higher is better)
    "test_accuracy": ("accuracy", True),
    "test_perplexity": ("perplexity", False),
}


@dataclass
class Samples:
    """What one backend's runs of the compared configuration measured, one value per run, keyed
    by seed: seed s of every backend is the same initial weights and the same batches, so a
    comparison pairs equal seeds."""

    quality: dict[int, float] = field(default_factory=dict)
    epoch_seconds: dict[int, float] = field(default_factory=dict)  # its steady epochs' mean
    throughput: dict[int, float] = field(default_factory=dict)  # its steady epochs' mean
    memory: dict[int, float] = field(default_factory=dict)  # its peak
    time_to_target: list[float] = field(default_factory=list)  # NaN: not reached
    steady_epochs: int = 0  # behind `epoch_seconds`, for the n shown
    run_ids: dict[int, str] = field(default_factory=dict)
    contended: dict[int, str] = field(default_factory=dict)  # seed -> run name, busy host

    @property
    def runs(self) -> int:
        return len(self.quality)

    @property
    def reached(self) -> list[float]:
        """The times to target of the runs that reached it."""
        return [t for t in self.time_to_target if not math.isnan(t)]


@dataclass(frozen=True)
class Verdict:
    """One contender against the baseline on one architecture: its clauses, as data."""

    architecture: str
    contender: str
    baseline: str
    config_hash: str | None
    clauses: list[Clause]  # quality, time per epoch, throughput, memory
    samples: dict[str, Samples]  # by backend
    target: str | None = None  # time to target, in words (medians: no interval)

    def clause(self, metric: str) -> Clause:
        return next(c for c in self.clauses if c.metric == metric)

    @property
    def label(self) -> str:
        return f"{self.architecture} ({self.contender} vs {self.baseline})"

    @property
    def headline(self) -> str:
        if self.config_hash is None or not self.samples[self.contender].runs:
            missing = self.baseline if self.config_hash is None else self.contender
            return (
                f"{self.label}: no verdict: {missing} has no finished runs of "
                f"{self.baseline}'s best configuration (re-train it, or set "
                "[retrain] cross_backend = true)"
            )
        shown = [c.words() for c in self.clauses if c.metric in HEADLINE_METRICS]
        return f"{self.label}: " + "; ".join(shown + ([self.target] if self.target else []))


HEADLINE_METRICS = ("accuracy", "perplexity", "time per epoch", "memory")  # throughput: ~1/time


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
    """One value per run, by seed: its test figure, its peak memory, and the mean of its
    steady-state epochs (the first left out: it carries tracing and compilation)."""
    samples = Samples()
    for _, run in runs.iterrows():
        seed = int(run["tags.seed"])
        samples.run_ids[seed] = run["run_id"]
        if isinstance(run.get(f"tags.{CONTENDED_TAG}"), str):
            samples.contended[seed] = str(run.get("tags.mlflow.runName") or run["run_id"])
        samples.quality[seed] = _number(run, f"metrics.{sources.quality_metric}")
        samples.memory[seed] = _number(run, f"metrics.{sources.memory_metric}")
        seconds = tracker.metric_history(run["run_id"], "epoch_seconds")
        throughput = tracker.metric_history(run["run_id"], sources.throughput_metric)
        samples.epoch_seconds[seed] = _mean(seconds[1:])
        samples.throughput[seed] = _mean(throughput[1:])
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


def sources_of(study: Study, memory: str) -> Sources:
    """Where a study's compared figures come from."""
    view = view_of(study)
    objective = study.objective
    return Sources(
        quality_metric=view.cross[0],
        throughput_metric=view.throughput[0],
        memory_metric=memory,
        objective=objective.metric,
        target=objective.target,
        higher_is_better=objective.direction == "maximize",
    )


def study_verdicts(
    tracker: Tracker, runs: pd.DataFrame, study: Study, memory: str
) -> list[Verdict]:
    """Every other backend of the study against its baseline (the first unless it names one),
    per architecture; none for a study of one backend."""
    sources = sources_of(study, memory)
    contenders = [b for b in study.backends if b != study.baseline]
    return [
        compare(tracker, runs, arch, contender, study.baseline, sources, study.verdict)
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
    margins: Margins,
) -> Verdict:
    config = baseline_config(runs, arch, baseline)
    samples = {
        backend: gather(tracker, compared_runs(runs, arch, backend, baseline, config), sources)
        for backend in (contender, baseline)
    }
    a, b = samples[contender], samples[baseline]
    label, higher = QUALITY.get(sources.quality_metric, (sources.quality_metric, True))
    relative = not higher  # perplexity: a ratio with a relative margin; accuracy: a difference
    run_ids = tuple(a.run_ids.values()) + tuple(b.run_ids.values())
    contended = tuple(a.contended.values()) + tuple(b.contended.values())

    def clause(metric, scale, ours, theirs, margin, higher_is_better, cost=False) -> Clause:
        return Clause.of(
            verdicts.compare(ours, theirs, scale),
            architecture=arch,
            contender=contender,
            baseline=baseline,
            metric=metric,
            margin=margin,
            higher_is_better=higher_is_better,
            runs=run_ids,
            contended=contended if cost else (),  # a busy host moves costs, not results
        )

    quality_scale = "ratio" if relative else "difference"
    quality_margin = margins.quality_margin_relative if relative else margins.quality_margin
    clauses = [
        clause(label, quality_scale, a.quality, b.quality, quality_margin, higher),
        clause(
            "time per epoch",
            "ratio",
            a.epoch_seconds,
            b.epoch_seconds,
            margins.cost_margin,
            False,
            cost=True,
        ),
        clause(
            "throughput", "ratio", a.throughput, b.throughput, margins.cost_margin, True, cost=True
        ),
        clause("memory", "ratio", a.memory, b.memory, margins.cost_margin, False, cost=True),
    ]
    target = (
        target_words(sources, a, b, contender, baseline) if sources.target is not None else None
    )
    return Verdict(arch, contender, baseline, config, clauses, samples, target)


def overall(found: Iterable[Verdict], margin: float) -> list[Clause]:
    """One clause per contender across architectures: the geometric mean of its time-per-epoch
    ratios, with an interval from a bootstrap stratified by architecture, and how many
    architectures came out which way."""
    by_contender: dict[str, list[Verdict]] = {}
    for v in found:
        if v.config_hash is not None and v.samples[v.contender].runs:
            by_contender.setdefault(v.contender, []).append(v)
    lines = []
    for contender, compared in by_contender.items():
        strata = []
        for v in compared:
            a, b = v.samples[contender], v.samples[v.baseline]
            strata.append(
                [
                    math.log(a.epoch_seconds[s] / b.epoch_seconds[s])
                    for s in a.epoch_seconds
                    if s in b.epoch_seconds and a.epoch_seconds[s] > 0 and b.epoch_seconds[s] > 0
                ]
            )
        estimate, low, high, low90, high90, method = verdicts.stratified_ratio(strata)
        used = sum(1 for s in strata if s)
        pooled = verdicts.Comparison(
            "ratio", estimate, low, high, low90, high90, used, (0, 0), str(method), False
        )
        clauses = [v.clause("time per epoch") for v in compared]
        counts = {kind: sum(c.kind == kind for c in clauses) for kind in verdicts.KINDS}
        line = Clause.of(
            pooled,
            architecture=OVERALL,
            contender=contender,
            baseline=compared[0].baseline,
            metric="time per epoch",
            margin=margin,
            higher_is_better=False,
            runs=tuple(r for c in clauses for r in c.runs),
            contended=tuple(dict.fromkeys(n for c in clauses for n in c.contended)),
        )
        lines.append(replace(line, counts={k: n for k, n in counts.items() if n}))
    return lines


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


def verdict_table(found: Iterable[Verdict], lines: Iterable[Clause] = ()) -> pd.DataFrame:
    """Every clause as a row (long form: the columns do not grow with the backends), the
    lines across architectures last."""
    rows = [c.as_row() for v in found for c in v.clauses] + [c.as_row() for c in lines]
    return pd.DataFrame(rows)


def _median(values: list[float]) -> float:
    return float(np.median(values)) if values else math.nan


def _number(run: pd.Series, key: str) -> float:
    value = pd.to_numeric(run.get(key), errors="coerce")
    return float(value) if value is not None and not pd.isna(value) else math.nan
