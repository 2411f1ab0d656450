"""`bench report`: one row per architecture, every backend beside the study's baseline, as files
and an MLflow run.

Reads what `bench run` left behind and never trains anything: runs through `harness.tracking`,
trials through `harness.search`. The pipeline: `collect` the runs and trials into a numeric table,
`comparisons` for the verdicts of each contender against the baseline, `render` for people,
`charts` for pictures; this module joins them and writes the files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from harness import search
from harness.errors import BenchError
from harness.identity import DIGEST_KEY, check_identity, study_digest
from harness.report import charts, collect, page, render
from harness.report.clauses import Clause, overall_words
from harness.report.comparisons import (
    Verdict,
    overall,
    sources_of,
    study_verdicts,
    verdict_table,
)
from harness.report.tuning import tuning_report
from harness.report.views import view_of
from harness.stores import without_password
from harness.tracking import Tracker

if TYPE_CHECKING:  # only the attributes named in `build_report` are used
    from matplotlib.figure import Figure

    from harness.study.schema import Study


@dataclass
class Report:
    """What `build_report` made: the numbers, where they were written, and the MLflow run."""

    table: pd.DataFrame  # numeric, index "architecture"; exactly what report.csv holds
    paths: dict[str, Path]  # csv, markdown, html and one PNG per chart
    run_id: str  # the role=report MLflow run holding the files as artifacts
    experiment_id: str  # the study's MLflow experiment, for links to its runs page
    memory_metric: str  # peak_gpu_memory_mb when any re-train ran on a GPU, else peak_rss_mb
    sections: dict[str, pd.DataFrame] = field(default_factory=dict)  # formatted, for people
    verdicts: list[Verdict] = field(default_factory=list)  # each contender against the baseline
    verdict_table: pd.DataFrame = field(default_factory=pd.DataFrame)  # their records
    overall: list[Clause] = field(default_factory=list)  # per contender, across architectures
    contended: dict[str, str] = field(default_factory=dict)  # compared runs of a busy host
    tracking_uri: str = ""  # shown without its password, for the re-run commands
    tuning: list[str] = field(default_factory=list)  # what tuning bought, in words

    @property
    def headline(self) -> list[str]:
        """In words with numbers: one line per contender across architectures, then one per
        architecture and contender."""
        return headline(self.verdicts, self.overall)


def headline(found: list[Verdict], lines: list[Clause]) -> list[str]:
    return [overall_words(line) for line in lines] + [v.headline for v in found]


def contended_runs(found: list[Verdict]) -> dict[str, str]:
    """Run id -> name of every compared run whose host was busy with other work."""
    runs: dict[str, str] = {}
    for v in found:
        for samples in v.samples.values():
            for seed, name in samples.contended.items():
                runs[samples.run_ids[seed]] = name
    return runs


def require_a_run(study: Study, tracking_uri: str, storage_url: str) -> None:
    """Refuse, in one line and before anything is read into being, a report of a study whose
    stores hold no run of it: a missing SQLite file is not created, an absent experiment not
    made (its artifacts would go wherever the command ran)."""
    from mlflow.tracking import MlflowClient

    from harness.stores import sqlalchemy_url, sqlite_file
    from harness.tracking import check_reachable

    first = f"run `bench run --study {study.name}` first (with the same --out and stores)"
    for url, name in ((tracking_uri, "MLflow tracking store"), (storage_url, "Optuna storage")):
        database = sqlite_file(url)
        if database is not None and not database.is_file():
            raise BenchError(
                f"bench report: expected the stores of an earlier run of {study.name}; "
                f"received no {name} at {database}: {first}"
            )
    check_reachable(tracking_uri)
    client = MlflowClient(sqlalchemy_url(tracking_uri))
    found = client.get_experiment_by_name(study.name)
    runs = (
        client.search_runs([found.experiment_id], "tags.role != 'report'", max_results=1)
        if found is not None
        else []
    )
    if not runs:
        raise BenchError(
            f"bench report: expected a run of {study.name} in the MLflow tracking store "
            f"({without_password(tracking_uri)}); received none: {first}"
        )


def build_report(study: Study, tracking_uri: str, storage_url: str, out_dir: Path) -> Report:
    """Gather the study's runs and trials, write csv/md/html/png to `out_dir`, log them to MLflow.

    Never trains; safe to run while `bench run` is still going (it reports what has finished).
    """
    tracker = Tracker(
        tracking_uri,
        study.name,
        out_dir.parent / "artifacts",  # as `bench run`'s: never a relative ./mlruns
        run_tags={DIGEST_KEY: study_digest(study)},
    )
    with search.reading(storage_url) as storage:
        check_identity(study, tracker, storage, record=False)  # never report another definition
        trials = search.read_trials(study, storage)
        importances = search.read_importances(study, storage) if study.searched else {}
    runs = collect.read_runs(tracker, study)
    memory = collect.memory_metric(runs)
    view = view_of(study)
    table = collect.report_table(tracker, runs, trials, study, memory)
    backends = collect.ordered_backends(study)
    cross = collect.cross_table(runs, study)
    sections = render.format_sections(table, cross, memory, study.objective.metric, view)
    found = study_verdicts(tracker, runs, study, memory)
    lines = overall(found, study.verdict.cost_margin)
    verdicts = verdict_table(found, lines)
    words = headline(found, lines)
    tuned = tuning_report(tracker, runs, trials, importances, study, sources_of(study, memory))
    if tuned is not None:
        sections.update(tuned.sections)

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out_dir / "report.csv", "markdown": out_dir / "report.md"}
    table.to_csv(paths["csv"])
    paths["verdicts"] = out_dir / "verdicts.csv"
    verdicts.to_csv(paths["verdicts"], index=False)
    if tuned is not None:
        paths["tuning"] = out_dir / "tuning.csv"
        verdict_table([], [*tuned.gains, *tuned.agreement]).to_csv(paths["tuning"], index=False)
    for name, figure in _charts(study, found, trials, backends).items():
        paths[name] = out_dir / f"{name}.png"
        figure.savefig(paths[name], dpi=110)
    tuning_lines = tuned.lines if tuned is not None else []
    markdown = render.markdown_page(study.name, words, verdicts, sections, tuning_lines)
    paths["markdown"].write_text(markdown, encoding="utf-8")
    paths["html"] = out_dir / "report.html"
    pictures = [paths[chart] for chart in render.CHARTS]
    html = page.html_page(study.name, found, lines, verdicts, sections, pictures)
    paths["html"].write_text(html, encoding="utf-8")  # as the page declares: ±, Δ, –

    # One report run per study definition, rewritten by each `bench report`.
    tags = {"role": "report", "study": study.name, DIGEST_KEY: study_digest(study)}
    run_id = tracker.reopen(f"{study.name} report", tags)
    try:
        tracker.log_artifacts(run_id, [str(path) for path in paths.values()])
        tracker.log_table(run_id, verdicts, "verdicts.json")  # empty: no contender (yet)
        tracker.log_text(run_id, "\n".join(words) + "\n", "headline.txt")
    except Exception as error:
        tracker.finish(run_id, "FAILED", f"{type(error).__name__}: {error}")
        raise
    tracker.finish(run_id, "FINISHED")
    return Report(
        table,
        paths,
        run_id,
        tracker.experiment_id,
        memory,
        sections,
        found,
        verdicts,
        lines,
        contended_runs(found),
        without_password(tracking_uri),
        tuning_lines,
    )


def _charts(
    study: Study, found: list[Verdict], trials: collect.Trials, backends: list[str]
) -> dict[str, Figure]:
    """The pictures, named as `render.CHARTS` names them: each compared run's figure beside the
    mean and its interval, per backend, and each search's history."""
    quality: dict[str, dict[str, list[float]]] = {}
    epochs: dict[str, dict[str, list[float]]] = {}
    for v in found:  # one verdict per contender; the baseline's samples are the same in each
        for backend, samples in v.samples.items():
            quality.setdefault(v.architecture, {})[backend] = list(samples.quality.values())
            epochs.setdefault(v.architecture, {})[backend] = list(samples.epoch_seconds.values())
    objective = study.objective
    return {
        "accuracy": charts.points_and_intervals(quality, backends, view_of(study).cross[1], "seed"),
        "time": charts.points_and_intervals(
            epochs, backends, "seconds per epoch (steady state)", "run"
        ),
        "optimization_history": charts.optimization_history(
            trials, study.architectures, backends, objective.metric, objective.direction
        ),
    }
