"""What the searches bought and what they cost: the report's tuning sections.

A search is worth its price only if its best configuration beats the defaults on data no trial
saw, so a study that searches re-trains its defaults on the same seeds (on the baseline backend:
the backends compute the same function) and each backend's tuned re-trainings are compared with
them seed by seed, with the same paired statistics as the verdicts. Beside that: the best
configurations side by side, Optuna's parameter importances, each search's cost, the time to a
result including the search (MLCommons AlgoPerf's way: the search's wall time up to the trial
that found the best configuration, plus the re-training's time to the study's target), and
whether the two frameworks' searches chose the same region, told apart from the frameworks by
the cross runs: a backend's best configuration and another backend's best, trained on the same
backend and seeds, differ only by what the searches chose.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from harness.report import verdicts
from harness.report.clauses import Clause
from harness.report.collect import ordered_backends, pairs
from harness.report.comparisons import QUALITY, Samples, Sources, gather
from harness.report.selection import column, finished, of_config, of_newest_config, one_per_seed
from harness.run.retrain import DEFAULTS, config_hash

if TYPE_CHECKING:
    from harness.search import TrialRecord
    from harness.study.schema import Study
    from harness.tracking import Tracker

Trials = dict[tuple[str, str], list["TrialRecord"]]


@dataclass(frozen=True)
class Tuning:
    """The tuning part of a report: clauses as data, and the sections for people."""

    gains: list[Clause]  # each backend's tuned configuration against the defaults
    agreement: list[Clause]  # on each backend: another search's choice against its own
    sections: dict[str, pd.DataFrame]

    @property
    def lines(self) -> list[str]:
        """In words: what tuning bought per (architecture, backend), then whether the searches'
        choices differ where they were trained side by side."""
        return [
            f"{c.architecture} ({c.contender} vs {c.baseline}): {c.words()}"
            for c in (*self.gains, *self.agreement)
        ]


def tuning_report(
    tracker: Tracker,
    runs: pd.DataFrame,
    trials: Trials,
    importances: dict[tuple[str, str], dict[str, float]],
    study: Study,
    sources: Sources,
) -> Tuning | None:
    """The tuning sections of a study that searches; None for one that does not."""
    if not study.searched:
        return None
    backends = ordered_backends(study)
    label, higher = QUALITY.get(sources.quality_metric, (sources.quality_metric, True))
    relative = not higher
    scale = "ratio" if relative else "difference"
    margin = study.verdict.quality_margin_relative if relative else study.verdict.quality_margin
    gains, gain_rows, agreement, agreement_rows = [], {}, [], {}
    tuned_runs: dict[tuple[str, str], Samples] = {}
    for arch in study.architectures:
        defaults = gather(tracker, _defaults_runs(runs, study, arch), sources)
        tuned = {
            backend: gather(tracker, _seeded(_tuned_runs(runs, arch, backend)), sources)
            for backend in backends
        }
        tuned_runs.update({(arch, backend): samples for backend, samples in tuned.items()})
        for backend in backends:
            clause = _clause(
                tuned[backend],
                defaults,
                scale,
                margin,
                higher,
                arch,
                f"{backend} tuned",
                f"{study.baseline} defaults",
                label,
            )
            gains.append(clause)
            gain_rows[(arch, backend)] = {
                f"defaults {label}": _mean(defaults.quality),
                f"tuned {label}": _mean(tuned[backend].quality),
                "tuned vs defaults": clause.statement(),
            }
        for source, target in pairs(backends):
            crossed = gather(tracker, _seeded(_cross_runs(runs, arch, source, target)), sources)
            if not crossed.runs:
                continue
            clause = _clause(
                crossed,
                tuned[target],
                scale,
                margin,
                higher,
                arch,
                f"{source}'s choice on {target}",
                f"{target}'s choice",
                label,
            )
            agreement.append(clause)
            agreement_rows[(arch, f"{source}→{target}")] = {
                "knobs that differ": _differences(trials, arch, source, target, higher, study),
                "same seeds, same backend": clause.statement(),
            }
    sections = {
        "tuning: the tuned configuration against the defaults (test split, paired by seed; "
        f"defaults re-trained on {study.baseline})": _frame(gain_rows),
        "best configurations, side by side (each search's best trial)": _best_configs(
            trials, study, backends
        ),
        "parameter importances (Optuna, fANOVA over each search's complete trials)": _frame(
            {key: {k: f"{v:.2f}" for k, v in found.items()} for key, found in importances.items()}
        ),
        "search cost and time to result (AlgoPerf: search time to the best trial + re-training "
        "time to the target)": _costs(trials, tuned_runs, study, backends),
    }
    if agreement_rows:
        sections[
            "agreement of the searches: another search's best configuration trained on the same "
            "backend and seeds as its own (a difference is the searches', not the frameworks')"
        ] = _frame(agreement_rows)
    return Tuning(gains, agreement, sections)


def _clause(
    ours: Samples,
    theirs: Samples,
    scale: verdicts.Scale,
    margin: float,
    higher: bool,
    arch: str,
    contender: str,
    baseline: str,
    metric: str,
) -> Clause:
    return Clause.of(
        verdicts.compare(ours.quality, theirs.quality, scale),
        architecture=arch,
        contender=contender,
        baseline=baseline,
        metric=metric,
        margin=margin,
        higher_is_better=higher,
        runs=(*ours.run_ids.values(), *theirs.run_ids.values()),
    )


def _seeded(runs: pd.DataFrame) -> pd.DataFrame:
    """One run per seed, the newest (a run that records no seed cannot be paired)."""
    return one_per_seed(runs[column(runs, "tags.seed").notna()])


def _tuned_runs(runs: pd.DataFrame, arch: str, backend: str) -> pd.DataFrame:
    return of_newest_config(finished(runs, arch, backend, "retrain"))


def _cross_runs(runs: pd.DataFrame, arch: str, source: str, target: str) -> pd.DataFrame:
    return of_newest_config(finished(runs, arch, target, "cross", config_from=source))


def _defaults_runs(runs: pd.DataFrame, study: Study, arch: str) -> pd.DataFrame:
    """The defaults re-trained on the baseline: their own runs, or the baseline's re-trainings
    where its search found nothing better than the defaults (then those are the same runs)."""
    wanted = config_hash(study.run_config(study.baseline, arch, {}).as_params())
    candidates = pd.concat(
        [
            finished(runs, arch, study.baseline, DEFAULTS),
            finished(runs, arch, study.baseline, "retrain"),
        ]
    )
    return _seeded(of_config(candidates, wanted))


def _best_trial(found: Iterable[TrialRecord], maximize: bool) -> TrialRecord | None:
    complete = [t for t in found if t.state == "COMPLETE" and t.value is not None]
    if not complete:
        return None
    return (max if maximize else min)(complete, key=lambda t: (t.value, -t.number))


def _best_configs(trials: Trials, study: Study, backends: list[str]) -> pd.DataFrame:
    maximize = study.objective.direction == "maximize"
    rows = {}
    for arch in study.architectures:
        for backend in backends:
            best = _best_trial(trials.get((arch, backend), ()), maximize)
            if best is None:
                continue
            rows[(arch, backend)] = {
                "trial": str(best.number),
                study.objective.metric: f"{best.value:.4f}",
                **{name: _shown(value) for name, value in best.params.items()},
            }
    return _frame(rows)


def _differences(
    trials: Trials, arch: str, source: str, target: str, higher: bool, study: Study
) -> str:
    maximize = study.objective.direction == "maximize"
    a = _best_trial(trials.get((arch, source), ()), maximize)
    b = _best_trial(trials.get((arch, target), ()), maximize)
    if a is None or b is None:
        return ""
    differ = [
        f"{name} {_shown(a.params.get(name))} vs {_shown(b.params.get(name))}"
        for name in dict.fromkeys([*a.params, *b.params])
        if _shown(a.params.get(name)) != _shown(b.params.get(name))
    ]
    return "; ".join(differ) or "none: the same configuration"


def _costs(
    trials: Trials, tuned: dict[tuple[str, str], Samples], study: Study, backends: list[str]
) -> pd.DataFrame:
    """Per search: its wall time, trials by outcome, epochs trained, and the time to a result."""
    maximize = study.objective.direction == "maximize"
    rows = {}
    for arch in study.architectures:
        for backend in backends:
            found = [t for t in trials.get((arch, backend), ()) if t.started and t.completed]
            if not found:
                continue
            start = min(t.started for t in found)
            wall = (max(t.completed for t in found) - start).total_seconds()
            best = _best_trial(found, maximize)
            to_best = (best.completed - start).total_seconds() if best else math.nan
            reached = _to_target(tuned.get((arch, backend)), study)
            rows[(arch, backend)] = {
                "search min": f"{wall / 60:.1f}",
                "trials ok/pruned/failed": " / ".join(
                    str(sum(t.state == s for t in found)) for s in ("COMPLETE", "PRUNED", "FAIL")
                ),
                "epochs trained": str(sum(t.epochs for t in found)),
                "best trial": "" if best is None else str(best.number),
                "search min to best": f"{to_best / 60:.1f}",
                "re-train s to target": reached[0],
                "time to result min": (
                    f"{(to_best + reached[1]) / 60:.1f}" if not math.isnan(reached[1]) else ""
                ),
            }
    return _frame(rows)


def _to_target(samples: Samples | None, study: Study) -> tuple[str, float]:
    """The tuned re-trainings' median training seconds to the study's target, in words and as a
    number (NaN: no target, or not reached by half the runs: then no time to result)."""
    if study.objective.target is None or samples is None or not samples.time_to_target:
        return "", math.nan
    runs, reached = len(samples.time_to_target), samples.reached
    if len(reached) * 2 < runs:
        return f"not reached ({len(reached)}/{runs} runs)", math.nan
    median = float(np.median(reached))
    return f"{median:.1f} ({len(reached)}/{runs} runs)", median


def _shown(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return "" if value is None else str(value)


def _mean(values: dict[int, float]) -> str:
    finite = [v for v in values.values() if not math.isnan(v)]
    return f"{np.mean(finite):.4f} (n {len(finite)})" if finite else ""


def _frame(rows: dict[tuple[str, str], dict[str, str]]) -> pd.DataFrame:
    frame = pd.DataFrame.from_dict(rows, orient="index").fillna("")
    if rows:
        frame.index = pd.MultiIndex.from_tuples(list(rows), names=["architecture", "backend"])
    return frame
