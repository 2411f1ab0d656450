"""The report's numbers: one row per architecture, read from the stores, never trained for.

Column names are ``"<metric> <backend>"``, so every backend of a metric sits next to its
baseline; ``"<metric> <contender>/<baseline>"`` are each contender's ratios to the baseline, and
``"cross_<metric>_<mean|std> <source>_on_<target>"`` a backend's best configuration re-trained on
another framework, which separates framework differences from search differences. Missing pieces
(a search that failed, a backend with no runs) are NaN cells, never errors.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from harness.identity import DIGEST_KEY
from harness.report.selection import (
    baseline_config,
    column,
    compared_runs,
    finished,
    of_newest_config,
)
from harness.report.views import TaskView, view_of

if TYPE_CHECKING:
    from harness.search import TrialRecord
    from harness.study.schema import Study
    from harness.tracking import Tracker

Trials = dict[tuple[str, str], list["TrialRecord"]]  # by (architecture, backend)
TRIAL_STATES = {"complete": "COMPLETE", "pruned": "PRUNED", "failed": "FAIL"}  # column: state


def read_runs(tracker: Tracker, study: Study) -> pd.DataFrame:
    """Every run of the study made under its definition (see `same_definition`)."""
    return same_definition(tracker.runs_frame(study=study.name), tracker)


def same_definition(runs: pd.DataFrame, tracker: Tracker) -> pd.DataFrame:
    """Only the runs made under the study's definition, where runs say which they were made
    under: the current digest, or the one recorded in the experiment when it was created (the
    identity check has just accepted that definition as this study's)."""
    digests = column(runs, f"tags.{DIGEST_KEY}")
    if digests.isna().all():
        return runs  # a store from before identities were recorded: nothing to tell apart
    accepted = {tracker.base_tags[DIGEST_KEY], tracker.experiment_tag(DIGEST_KEY)}
    return runs[digests.isin(accepted)]


def ordered_backends(study: Study) -> list[str]:
    """The baseline first, then the contenders in the study's order."""
    return [study.baseline, *(b for b in study.backends if b != study.baseline)]


def memory_metric(runs: pd.DataFrame) -> str:
    """peak_gpu_memory_mb when any run measured it (it ran on a GPU), else peak_rss_mb."""
    on_gpu = not numbers(runs, "metrics.peak_gpu_memory_mb").empty
    return "peak_gpu_memory_mb" if on_gpu else "peak_rss_mb"


def report_table(
    tracker: Tracker, runs: pd.DataFrame, trials: Trials, study: Study, memory: str
) -> pd.DataFrame:
    """Numeric, long form: one row per (architecture, backend), so that its width does not grow
    with the backends; exactly what report.csv holds."""
    backends = ordered_backends(study)
    view = view_of(study)
    rows = {
        (arch, backend): _row(tracker, runs, trials, arch, backend, memory, study, view)
        for arch in study.architectures
        for backend in backends
    }
    for arch in study.architectures:  # each backend's cost against the baseline's
        same = _same_work_costs(tracker, runs, arch, backends, memory)
        base = same[backends[0]]
        for backend in backends:
            for name in ("seconds_per_epoch", memory):
                rows[(arch, backend)][f"{name}_vs_baseline"] = _ratio(
                    same[backend][name], base[name]
                )
    columns = list(dict.fromkeys(k for row in rows.values() for k in row))
    table = pd.DataFrame.from_dict(rows, orient="index", columns=columns, dtype=float)
    table.index = pd.MultiIndex.from_tuples(list(rows), names=["architecture", "backend"])
    return table


def cross_table(runs: pd.DataFrame, study: Study) -> pd.DataFrame:
    """Cross runs, long form: one row per (architecture, source, target) that has any, with the
    compared quality metric's mean, std and n over seeds."""
    cross = view_of(study).cross[0]
    rows = {}
    for arch in study.architectures:
        for source, target in pairs(ordered_backends(study)):
            ran = of_newest_config(finished(runs, arch, target, "cross", config_from=source))
            values = numbers(ran, f"metrics.{cross}")
            if len(values):
                rows[(arch, f"{source}→{target}")] = {
                    f"{cross}_mean": values.mean(),
                    f"{cross}_std": values.std(ddof=1),
                    "runs": float(len(values)),
                }
    table = pd.DataFrame.from_dict(rows, orient="index", dtype=float)
    if rows:
        table.index = pd.MultiIndex.from_tuples(list(rows), names=["architecture", "config"])
    return table


def numbers(frame: pd.DataFrame, name: str) -> pd.Series:
    return pd.to_numeric(column(frame, name), errors="coerce").dropna()


def pairs(backends: list[str]) -> Iterable[tuple[str, str]]:
    """Every ordered (source, target) pair: where a cross run may have taken a configuration."""
    return ((s, t) for s in backends for t in backends if s != t)


def _row(
    tracker: Tracker,
    runs: pd.DataFrame,
    trials: Trials,
    arch: str,
    backend: str,
    memory: str,
    study: Study,
    view: TaskView,
) -> dict[str, float]:
    """One (architecture, backend)'s numbers: its search, its re-trains' means."""
    row: dict[str, float] = {}
    metric, direction = study.objective.metric, study.objective.direction
    found = trials.get((arch, backend))
    values = [t.value for t in found or () if t.state == "COMPLETE"]
    row[f"search_best_{metric}"] = (
        (max if direction == "maximize" else min)(values) if values else math.nan
    )
    for name, state in TRIAL_STATES.items():
        row[f"trials_{name}"] = math.nan if found is None else sum(t.state == state for t in found)
    chosen = of_newest_config(finished(runs, arch, backend, "retrain"))
    row["retrain_runs"] = float(len(chosen))
    for test, _ in view.tests:
        row[f"{test}_mean"] = numbers(chosen, f"metrics.{test}").mean()
        row[f"{test}_std"] = numbers(chosen, f"metrics.{test}").std(ddof=1)
    row["seconds_per_epoch"] = _per_epoch(tracker, chosen, "epoch_seconds", _seconds_fallback)
    throughput = view.throughput[0]
    row[throughput] = _per_epoch(tracker, chosen, throughput, lambda run: math.nan)
    row[memory] = numbers(chosen, f"metrics.{memory}").mean()
    row["parameter_count"] = numbers(chosen, "metrics.parameter_count").mean()
    row["contended_runs"] = float(sum(isinstance(v, str) for v in column(chosen, "tags.contended")))
    return row


def _same_work_costs(
    tracker: Tracker, runs: pd.DataFrame, arch: str, backends: list[str], memory: str
) -> dict[str, dict[str, float]]:
    """Each backend's mean cost on the baseline's best configuration, the runs its verdict
    compares (`compared_runs`). A backend's own best may be another configuration (a wider
    model, a smaller batch), and a ratio of unequal work would measure the searches' choices,
    not the frameworks; where a backend never ran the baseline's configuration it has none."""
    config = baseline_config(runs, arch, backends[0])
    costs = {}
    for backend in backends:
        same = (
            compared_runs(runs, arch, backend, backends[0], config)
            if config is not None
            else finished(runs, arch, backend, "retrain")  # a store from before config hashes
        )
        costs[backend] = {
            "seconds_per_epoch": _per_epoch(tracker, same, "epoch_seconds", _seconds_fallback),
            memory: numbers(same, f"metrics.{memory}").mean(),
        }
    return costs


def _per_epoch(
    tracker: Tracker, runs: pd.DataFrame, key: str, fallback: Callable[[pd.Series], float]
) -> float:
    """Mean over runs of each run's steady-state mean over its epochs (its metric history).

    The first epoch carries graph building and compilation (tracked on its own as
    time_to_first_epoch), so it is left out whenever a run has later epochs to average.
    """
    means = []
    for _, run in runs.iterrows():
        history = tracker.metric_history(run["run_id"], key)
        steady = history[1:] or history
        means.append(float(np.mean(steady)) if steady else fallback(run))
    return float(np.nanmean(means)) if means and not np.isnan(means).all() else math.nan


def _seconds_fallback(run: pd.Series) -> float:
    total = pd.to_numeric(run.get("metrics.total_train_seconds"), errors="coerce")
    epochs = pd.to_numeric(run.get("params.epochs"), errors="coerce")
    return float(total / epochs) if epochs and epochs > 0 else math.nan


def _ratio(top: float, bottom: float) -> float:
    return top / bottom if bottom and not (math.isnan(top) or math.isnan(bottom)) else math.nan
