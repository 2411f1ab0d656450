"""`bench report`: one row per architecture, Keras and PyTorch side by side, as files and a run.

Reads what `bench run` left behind (MLflow runs and Optuna trials, see `harness.tracking` and
`harness.search`) and never trains anything. The numeric table is `Report.table` and report.csv;
column names are ``"<metric> <backend>"`` so both backends of a metric sit next to each other, plus
``"<metric> torch/keras"`` ratios and ``"cross_test_accuracy_<mean|std> <source>_on_<target>"``:
a backend's best configuration re-trained on the other framework, which separates framework
differences from search differences. Missing pieces (a search that failed, a backend the study
does not have) are NaN cells, never errors.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import optuna
import pandas as pd
from mlflow.tracking import MlflowClient
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console
from rich.table import Table

from harness.identity import DIGEST_KEY, study_digest
from harness.report import charts as plots
from harness.report.comparisons import Sources, Verdict, column, compare, verdict_table
from harness.report.tables import significant, to_markdown
from harness.run.runner import check_identity
from harness.search import open_storage, optuna_study_name
from harness.tracking import Tracker

if TYPE_CHECKING:  # only the attributes named in `build_report` are used
    from harness.study.schema import Study

BASELINE, CONTENDER = "keras", "torch"  # ratios are CONTENDER / BASELINE
CHARTS = ("accuracy", "time", "optimization_history")


@dataclass(frozen=True)
class TaskView:
    """Which figures tell a task's story: the quality metrics shown as mean ± std over the
    re-train seeds (metric, label), the one compared across backends, and the throughput."""

    tests: tuple[tuple[str, str], ...]
    cross: tuple[str, str]
    throughput: tuple[str, str]


VIEWS = {
    "classification": TaskView(
        tests=(
            ("test_accuracy", "test accuracy"),
            ("test_f1", "test F1"),
            ("test_roc_auc", "test ROC-AUC"),
            ("test_perplexity", "test perplexity"),
        ),
        cross=("test_accuracy", "accuracy"),
        throughput=("samples_per_second", "samples/s"),
    ),
    "language_model": TaskView(
        tests=(
            ("test_perplexity", "test perplexity"),
            ("test_accuracy", "test top-1 accuracy"),
            ("unigram_test_perplexity", "unigram baseline perplexity"),
        ),
        cross=("test_perplexity", "perplexity"),
        throughput=("tokens_per_second", "tokens/s"),
    ),
}


def view_of(study: Study) -> TaskView:
    return VIEWS[getattr(study, "task", "classification")]


def quality_title(view: TaskView) -> str:
    name = view.cross[1]
    return (
        f"quality: test split, mean ± std over re-train seeds; cross {name} a→b: a's best "
        "configuration re-trained on b"
    )


@dataclass
class Report:
    """What `build_report` made: the numbers, where they were written, and the MLflow run."""

    table: pd.DataFrame  # numeric, index "architecture"; exactly what report.csv holds
    paths: dict[str, Path]  # csv, markdown, html and one PNG per chart
    run_id: str  # the role=report MLflow run holding the files as artifacts
    memory_metric: str  # peak_gpu_memory_mb when any re-train ran on a GPU, else peak_rss_mb
    sections: dict[str, pd.DataFrame] = field(default_factory=dict)  # formatted, for people
    verdicts: list[Verdict] = field(default_factory=list)  # each backend against the baseline
    verdict_table: pd.DataFrame = field(default_factory=pd.DataFrame)  # their numbers

    @property
    def headline(self) -> list[str]:
        """One line per architecture and contender, in words with numbers: what was found."""
        return [verdict.headline for verdict in self.verdicts]


def build_report(study: Study, tracking_uri: str, storage_url: str, out_dir: Path) -> Report:
    """Gather the study's runs and trials, write csv/md/html/png to `out_dir`, log them to MLflow.

    Never trains; safe to run while `bench run` is still going (it reports what has finished).
    """
    tracker = Tracker(tracking_uri, study.name, run_tags={DIGEST_KEY: study_digest(study)})
    storage = open_storage(storage_url)
    check_identity(study, tracker, storage, record=False)  # never report another definition
    storage.engine.dispose()
    runs = same_definition(read_runs(tracker.client, tracker.experiment_id, study.name), tracker)
    trials = read_trials(study, storage_url)
    backends = list(dict.fromkeys([BASELINE, CONTENDER, *study.backends]))
    memory = "peak_gpu_memory_mb" if _has_metric(runs, "peak_gpu_memory_mb") else "peak_rss_mb"
    metric, direction = study.objective.metric, study.objective.direction
    view = view_of(study)
    rows = {
        arch: _row(tracker.client, runs, trials, arch, backends, memory, metric, direction, view)
        for arch in study.architectures
    }
    columns = list(dict.fromkeys(k for row in rows.values() for k in row))
    table = pd.DataFrame.from_dict(rows, orient="index", columns=columns, dtype=float)
    table.index.name = "architecture"
    for backend in set(backends) - set(study.backends):  # "no runs" would read as "ran none"
        table[f"retrain_runs {backend}"] = math.nan
    sections = format_sections(table, backends, memory, metric, view)
    found = study_verdicts(tracker.client, runs, study, memory)
    verdict_frame = verdict_table(found, view.cross[1])

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out_dir / "report.csv", "markdown": out_dir / "report.md"}
    table.to_csv(paths["csv"])
    paths["verdicts"] = out_dir / "verdicts.csv"
    verdict_frame.to_csv(paths["verdicts"], index=False)
    quality = {v.architecture: {b: s.quality for b, s in v.samples.items()} for v in found}
    epochs = {v.architecture: {b: s.epoch_seconds for b, s in v.samples.items()} for v in found}
    charts = {
        "accuracy": plots.points_and_intervals(quality, study.backends, view.cross[1], "seed"),
        "time": plots.points_and_intervals(
            epochs, study.backends, "seconds per epoch (steady state)", "epoch"
        ),
        "optimization_history": plots.optimization_history(
            trials, study.architectures, backends, metric, direction
        ),
    }
    for name, figure in charts.items():
        paths[name] = out_dir / f"{name}.png"
        figure.savefig(paths[name], dpi=110)
    headline = [verdict.headline for verdict in found]
    paths["markdown"].write_text(_markdown_page(study.name, headline, verdict_frame, sections))
    paths["html"] = out_dir / "report.html"
    paths["html"].write_text(
        _html_page(study.name, headline, verdict_frame, sections, [paths[c] for c in CHARTS])
    )

    run_id = tracker.start("report", {"role": "report", "study": study.name})
    try:
        for path in paths.values():
            tracker.client.log_artifact(run_id, str(path))
        if not verdict_frame.empty:
            tracker.client.log_table(run_id, verdict_frame, "verdicts.json")
        tracker.client.log_text(run_id, "\n".join(headline) + "\n", "headline.txt")
    except Exception as error:
        tracker.finish(run_id, "FAILED", f"{type(error).__name__}: {error}")
        raise
    tracker.finish(run_id, "FINISHED")
    return Report(table, paths, run_id, memory, sections, found, verdict_frame)


def study_verdicts(
    client: MlflowClient, runs: pd.DataFrame, study: Study, memory: str
) -> list[Verdict]:
    """Every backend of the study against its baseline (the first unless it names one)."""
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
    baseline = study.baseline
    contenders = [b for b in study.backends if b != baseline]
    return [
        compare(client, runs, arch, contender, baseline, sources)
        for arch in study.architectures
        for contender in contenders
    ]


def print_report(console: Console, report: Report) -> None:
    """The headline first, then the formatted sections as rich tables, then where the files are."""
    if report.headline:
        console.print(
            "[bold]verdict[/] (95% confidence intervals; 'no detectable difference' "
            "when an interval contains no change):",
            highlight=False,
        )
        for line in report.headline:
            console.print(f"  {line}", highlight=False, soft_wrap=True)
    for title, frame in report.sections.items():
        # Transposed for the terminal: a column per architecture fits 80 characters, a column
        # per (metric, backend) does not. The files keep one row per architecture.
        table = Table(title=title)
        table.add_column("", no_wrap=True)
        for arch in frame.index:
            table.add_column(str(arch), justify="right")
        for label, row in frame.T.iterrows():
            table.add_row(str(label), *row.tolist())
        console.print(table)
    for name, path in report.paths.items():
        console.print(f"{name}: {path}", highlight=False)
    console.print(f"MLflow run: {report.run_id}", highlight=False)


# -- reading ----------------------------------------------------------------------------------
def read_runs(client: MlflowClient, experiment_id: str, study_name: str) -> pd.DataFrame:
    """Every run of the study, shaped like `mlflow.search_runs` (tags.x, metrics.x, params.x).

    Built from the client rather than `mlflow.search_runs`, which reads the process-wide
    tracking URI, so reporting never changes global MLflow state.
    """
    rows, token = [], None
    while True:
        page = client.search_runs([experiment_id], max_results=1000, page_token=token)
        for run in page:
            rows.append(
                {
                    "run_id": run.info.run_id,
                    "status": run.info.status,
                    "start_time": run.info.start_time,
                    **{f"tags.{k}": v for k, v in run.data.tags.items()},
                    **{f"metrics.{k}": v for k, v in run.data.metrics.items()},
                    **{f"params.{k}": v for k, v in run.data.params.items()},
                }
            )
        token = page.token
        if not token:
            break
    runs = pd.DataFrame(rows, columns=["run_id", "status", "start_time"] if not rows else None)
    return runs[column(runs, "tags.study") == study_name]


def same_definition(runs: pd.DataFrame, tracker: Tracker) -> pd.DataFrame:
    """Only the runs made under the study's definition, where runs say which they were made
    under: the current digest, or the one recorded in the experiment when it was created (the
    identity check has just accepted that definition as this study's)."""
    digests = column(runs, f"tags.{DIGEST_KEY}")
    if digests.isna().all():
        return runs  # a store from before identities were recorded: nothing to tell apart
    accepted = {tracker.base_tags[DIGEST_KEY], tracker.experiment_tag(DIGEST_KEY)}
    return runs[digests.isin(accepted)]


def read_trials(study: Study, storage_url: str) -> dict[tuple[str, str], list[FrozenTrial]]:
    """Trials per (architecture, backend); a search that never started is absent."""
    storage = open_storage(storage_url)
    found = set(optuna.get_all_study_names(storage))
    trials = {}
    for arch in study.architectures:
        for backend in study.backends:
            name = optuna_study_name(study, arch, backend)
            if name in found:
                study_id = storage.get_study_id_from_name(name)
                trials[arch, backend] = storage.get_all_trials(study_id, deepcopy=False)
    storage.engine.dispose()
    return trials


def _numbers(frame: pd.DataFrame, name: str) -> pd.Series:
    return pd.to_numeric(column(frame, name), errors="coerce").dropna()


def _has_metric(runs: pd.DataFrame, name: str) -> bool:
    return not _numbers(runs, f"metrics.{name}").empty


def _finished(
    runs: pd.DataFrame, role: str, arch: str, backend: str, config_from: str | None = None
) -> pd.DataFrame:
    """Finished runs of one kind, only those of the newest configuration.

    A longer search can find a new best configuration; its re-trains then sit beside the old
    ones (their config_hash differs) and must not be averaged with them.
    """
    mask = (
        (column(runs, "status") == "FINISHED")
        & (column(runs, "tags.role") == role)
        & (column(runs, "tags.architecture") == arch)
        & (column(runs, "tags.backend") == backend)
    )
    if config_from is not None:
        mask &= column(runs, "tags.config_from") == config_from
    chosen = runs[mask]
    hashes = column(chosen.sort_values("start_time"), "tags.config_hash").dropna()
    return chosen[chosen["tags.config_hash"] == hashes.iloc[-1]] if len(hashes) else chosen


def _per_epoch(
    client: MlflowClient, runs: pd.DataFrame, key: str, fallback: Callable[[pd.Series], float]
) -> float:
    """Mean over runs of each run's steady-state mean over its epochs (its metric history).

    The first epoch carries graph building and compilation (tracked on its own as
    time_to_first_epoch), so it is left out whenever a run has later epochs to average.
    """
    means = []
    for _, run in runs.iterrows():
        history = sorted(client.get_metric_history(run["run_id"], key), key=lambda m: m.step)
        steady = [m.value for m in history[1:]] or [m.value for m in history]
        means.append(float(np.mean(steady)) if steady else fallback(run))
    return float(np.nanmean(means)) if means and not np.isnan(means).all() else math.nan


def _seconds_fallback(run: pd.Series) -> float:
    total = pd.to_numeric(run.get("metrics.total_train_seconds"), errors="coerce")
    epochs = pd.to_numeric(run.get("params.epochs"), errors="coerce")
    return float(total / epochs) if epochs and epochs > 0 else math.nan


def _row(
    client: MlflowClient,
    runs: pd.DataFrame,
    trials: dict,
    arch: str,
    backends: list[str],
    memory: str,
    metric: str,
    direction: str,
    view: TaskView,
) -> dict[str, float]:
    """One architecture's numbers; keys are "<metric> <backend>", grouped by metric."""
    cells: dict[str, dict[str, float]] = {}

    def put(name: str, backend: str, value: float) -> None:
        cells.setdefault(name, {})[backend] = value

    for backend in backends:
        found = trials.get((arch, backend))
        counts = {
            s: math.nan if found is None else sum(t.state == s for t in found)
            for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
        }
        values = [t.value for t in found or () if t.state == TrialState.COMPLETE]
        best = (max if direction == "maximize" else min)(values) if values else math.nan
        put(f"search_best_{metric}", backend, best)
        put("trials_complete", backend, counts[TrialState.COMPLETE])
        put("trials_pruned", backend, counts[TrialState.PRUNED])
        put("trials_failed", backend, counts[TrialState.FAIL])
        chosen = _finished(runs, "retrain", arch, backend)
        put("retrain_runs", backend, float(len(chosen)))
        for test, _ in view.tests:
            put(f"{test}_mean", backend, _numbers(chosen, f"metrics.{test}").mean())
            put(f"{test}_std", backend, _numbers(chosen, f"metrics.{test}").std(ddof=1))
        put(
            "seconds_per_epoch",
            backend,
            _per_epoch(client, chosen, "epoch_seconds", _seconds_fallback),
        )
        throughput = view.throughput[0]
        put(throughput, backend, _per_epoch(client, chosen, throughput, lambda run: math.nan))
        put(memory, backend, _numbers(chosen, f"metrics.{memory}").mean())
        put("parameter_count", backend, _numbers(chosen, "metrics.parameter_count").mean())

    row = {f"{name} {b}": value for name, per in cells.items() for b, value in per.items()}
    for name in ("seconds_per_epoch", memory):
        row[f"{name} {CONTENDER}/{BASELINE}"] = _ratio(
            row[f"{name} {CONTENDER}"], row[f"{name} {BASELINE}"]
        )
    cross = view.cross[0]
    for source, target in _pairs(backends):
        values = _numbers(_finished(runs, "cross", arch, target, source), f"metrics.{cross}")
        row[f"cross_{cross}_mean {source}_on_{target}"] = values.mean()
        row[f"cross_{cross}_std {source}_on_{target}"] = values.std(ddof=1)
    return row


def _ratio(top: float, bottom: float) -> float:
    return top / bottom if bottom and not (math.isnan(top) or math.isnan(bottom)) else math.nan


def _pairs(backends: list[str]) -> Iterable[tuple[str, str]]:
    return ((s, t) for s in backends for t in backends if s != t)


# -- formatting -------------------------------------------------------------------------------
def format_sections(
    table: pd.DataFrame, backends: list[str], memory: str, metric: str, view: TaskView
) -> dict[str, pd.DataFrame]:
    """The table as people read it: mean ± std, units in headers, an empty cell for NaN."""
    memory_label = "peak GPU MiB" if memory == "peak_gpu_memory_mb" else "peak RSS MiB"
    quality: list[tuple[str, Callable[[pd.Series, str], str]]] = [
        (f"search best {metric}", lambda r, b: _fixed(r[f"search_best_{metric} {b}"], 4)),
        *((label, lambda r, b, test=test: _pm(r, test, b)) for test, label in view.tests),
        ("n (seeds)", lambda r, b: _fixed(r[f"retrain_runs {b}"], 0)),
    ]
    cost: list[tuple[str, Callable[[pd.Series, str], str]]] = [
        ("s/epoch", lambda r, b: _fixed(r[f"seconds_per_epoch {b}"], 2)),
        (view.throughput[1], lambda r, b: _fixed(r[f"{view.throughput[0]} {b}"], 0)),
        (memory_label, lambda r, b: _fixed(r[f"{memory} {b}"], 0)),
        ("parameters", lambda r, b: _fixed(r[f"parameter_count {b}"], 0)),
        ("trials ok/pruned/failed", _trials),
    ]
    sections = {}
    for title, spec in (
        (quality_title(view), quality),
        ("cost (mean over re-train runs)", cost),
    ):
        frame = pd.DataFrame(index=table.index)
        for label, cell in spec:
            for backend in backends:
                frame[f"{label} {backend}"] = [cell(row, backend) for _, row in table.iterrows()]
        sections[title] = frame
    quality_frame, cost_frame = sections.values()
    cross, name = view.cross
    for source, target in _pairs(backends):
        quality_frame[f"cross {name} {source}→{target}"] = [
            _pm(row, f"cross_{cross}", f"{source}_on_{target}") for _, row in table.iterrows()
        ]
    for name, label in (("seconds_per_epoch", "s/epoch"), (memory, "memory")):
        ratio = f"{name} {CONTENDER}/{BASELINE}"
        cost_frame[f"{label} {CONTENDER}/{BASELINE}"] = [_fixed(v, 2) for v in table[ratio]]
    return sections


def _fixed(value: float, digits: int) -> str:
    return "" if value is None or math.isnan(value) else f"{value:,.{digits}f}"


def _pm(row: pd.Series, base: str, key: str) -> str:
    mean, std = row[f"{base}_mean {key}"], row[f"{base}_std {key}"]
    if math.isnan(mean):
        return ""
    return f"{mean:.3f}" if math.isnan(std) else f"{mean:.3f} ± {std:.3f}"  # one seed: no std


def _trials(row: pd.Series, backend: str) -> str:
    counts = [row[f"trials_{s} {backend}"] for s in ("complete", "pruned", "failed")]
    return "" if any(math.isnan(c) for c in counts) else " / ".join(f"{c:.0f}" for c in counts)


VERDICT_NOTE = (
    "Each line compares a backend with the study's baseline on the baseline's best "
    "configuration, one value per run: quality is the difference of the test metric's means "
    "over the re-train seeds, cost the ratio (of geometric means) of each run's steady-state "
    "time per epoch (the first epoch left out) and of peak memory, each with a 95% interval "
    "(Welch's t below 20 runs a side, where a bootstrap is too narrow; the percentile "
    "bootstrap above); an interval that contains no change reads 'no detectable difference'."
)


def _markdown_page(
    name: str, headline: list[str], verdicts: pd.DataFrame, sections: dict[str, pd.DataFrame]
) -> str:
    parts = [f"# rnnbench report: {name}\n"]
    if headline:
        parts.append("## Verdict\n\n" + "\n".join(f"- {line}" for line in headline) + "\n")
        parts.append(f"{VERDICT_NOTE}\n\n{to_markdown(_readable(verdicts))}")
    parts += [f"## {title}\n\n{to_markdown(frame)}" for title, frame in sections.items()]
    parts += [f"![{chart}]({chart}.png)\n" for chart in CHARTS]
    return "\n".join(parts)


def _readable(verdicts: pd.DataFrame) -> pd.DataFrame:
    """The verdict table for people: one row per comparison, numbers to 3 significant digits."""
    frame = verdicts.set_index(["architecture", "contender"]) if len(verdicts) else verdicts
    frame = frame.map(significant)
    if len(frame):
        frame.index = [f"{arch} {contender}" for arch, contender in frame.index]
        frame.index.name = "comparison"
    return frame


def _html_page(
    name: str,
    headline: list[str],
    verdicts: pd.DataFrame,
    sections: dict[str, pd.DataFrame],
    charts: list[Path],
) -> str:
    """One self-contained page: the charts travel inside it, so MLflow's viewer shows them."""
    body = [f"<h1>rnnbench report: {html.escape(name)}</h1>"]
    if headline:
        items = "".join(f"<li>{html.escape(line)}</li>" for line in headline)
        body += [
            "<h2>Verdict</h2>",
            f"<ul>{items}</ul>",
            f"<p>{html.escape(VERDICT_NOTE)}</p>",
            _readable(verdicts).to_html(border=0),
        ]
    for title, frame in sections.items():
        body += [f"<h2>{html.escape(title)}</h2>", frame.to_html(border=0)]
    for chart in charts:
        data = base64.b64encode(chart.read_bytes()).decode("ascii")
        body.append(f'<img alt="{chart.stem}" src="data:image/png;base64,{data}">')
    style = "body{font-family:sans-serif} td,th{padding:2px 8px;text-align:right}"
    return (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{html.escape(name)}'
        f"</title><style>{style}</style></head>\n<body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


# -- charts -----------------------------------------------------------------------------------
