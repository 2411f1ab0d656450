"""The report as people read it: formatted sections, the terminal view, the Markdown page
(the HTML page is `harness.report.page`).

Every output leads with the verdicts (see `harness.report.comparisons`), then the table of
`harness.report.collect` formatted as mean ± std with units in the headers, then the charts.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import pandas as pd
from rich.console import Console
from rich.table import Table

from harness.report.tables import to_markdown
from harness.report.views import TaskView, quality_title

if TYPE_CHECKING:
    from harness.report.build import Report

CHARTS = ("accuracy", "time", "optimization_history")  # in the order the pages show them
VERDICT_NOTE = (
    "Each clause compares a backend with the study's baseline on the baseline's best "
    "configuration, seed by seed: seed s of both starts from the same weights and sees the same "
    "batches, and the seeds ran seed-major, both sides next to each other in time. Quality is "
    "the paired difference of the test metric (perplexity: the paired ratio); cost the paired "
    "ratio of each run's steady-state time per epoch (the first epoch left out) and of peak "
    "memory. Intervals: the paired t below 20 pairs, a bootstrap of the pairs above. Each "
    "clause says one thing: identical (every pair equal), equivalent (the 90% interval inside "
    "the study's ±margin: TOST), better/worse (the 95% interval excludes no change), or "
    "inconclusive (neither). A clause resting on runs whose machine was busy with other work "
    "names them."
)
TUNING_NOTE = (
    "Each backend's tuned configuration, re-trained on the study's seeds, against the defaults "
    "re-trained on the same seeds (on the baseline backend: the backends compute the same "
    "function), seed by seed, with the verdicts' statistics and margin; then, where cross runs "
    "exist, another search's best configuration against a backend's own, on that backend and "
    "the same seeds: a difference there is the searches' choice, not the framework."
)
OPTIONAL_COLUMNS = ("test accuracy, final epoch",)  # shown only where some run has them
Cell = Callable[[pd.Series], str]  # (table row) -> the formatted cell


def format_sections(
    table: pd.DataFrame, cross: pd.DataFrame, memory: str, metric: str, view: TaskView
) -> dict[str, pd.DataFrame]:
    """The tables as people read them, in long form (a row per architecture and backend):
    mean ± std, units in headers, an empty cell for NaN."""
    memory_label = "peak GPU MiB" if memory == "peak_gpu_memory_mb" else "peak RSS MiB"
    quality: list[tuple[str, Cell]] = [
        (f"search best {metric}", lambda r: _fixed(r[f"search_best_{metric}"], 4)),
        *((label, lambda r, test=test: _pm(r, test)) for test, label in view.tests),
        ("n (seeds)", lambda r: _fixed(r["retrain_runs"], 0)),
    ]
    cost: list[tuple[str, Cell]] = [
        ("s/epoch", lambda r: _fixed(r["seconds_per_epoch"], 2)),
        ("s/epoch vs baseline", lambda r: _fixed(r["seconds_per_epoch_vs_baseline"], 2)),
        (view.throughput[1], lambda r: _fixed(r[view.throughput[0]], 0)),
        (memory_label, lambda r: _fixed(r[memory], 0)),
        ("memory vs baseline", lambda r: _fixed(r[f"{memory}_vs_baseline"], 2)),
        ("parameters", lambda r: _fixed(r["parameter_count"], 0)),
        ("trials ok/pruned/failed", _trials),
        ("busy-host runs", lambda r: _fixed(r["contended_runs"], 0)),
    ]
    sections = {}
    for title, spec in (
        (quality_title(view), quality),
        (
            "cost (mean over re-trainings of each backend's best; "
            "ratios on the baseline's configuration)",
            cost,
        ),
    ):
        frame = pd.DataFrame(index=table.index)
        for label, cell in spec:
            cells = [cell(row) for _, row in table.iterrows()]
            if label in OPTIONAL_COLUMNS and not any(cells):
                continue  # e.g. the final epoch's test figure of a study that tests the final
            frame[label] = cells
        sections[title] = frame
    if len(cross):
        name, label = view.cross
        frame = pd.DataFrame(index=cross.index)
        frame[f"{label} (mean ± std)"] = [_pm(row, name) for _, row in cross.iterrows()]
        frame["n (seeds)"] = [_fixed(v, 0) for v in cross["runs"]]
        sections["cross runs: a's best configuration re-trained on b"] = frame
    return sections


def _fixed(value: float, digits: int) -> str:
    return "" if value is None or math.isnan(value) else f"{value:,.{digits}f}"


def _pm(row: pd.Series, base: str) -> str:
    mean, std = row[f"{base}_mean"], row[f"{base}_std"]
    if math.isnan(mean):
        return ""
    return f"{mean:.3f}" if math.isnan(std) else f"{mean:.3f} ± {std:.3f}"  # one seed: no std


def _trials(row: pd.Series) -> str:
    counts = [row[f"trials_{s}"] for s in ("complete", "pruned", "failed")]
    return "" if any(math.isnan(c) for c in counts) else " / ".join(f"{c:.0f}" for c in counts)


def print_report(console: Console, report: Report) -> None:
    """The verdict first (the line across architectures, then each architecture's), then the
    formatted sections as rich tables, then where the files are and which runs to re-run."""
    if report.headline:
        console.print(
            "[bold]verdict[/] (paired by seed; identical / equivalent within the study's margin "
            "(90% CI) / better or worse (95% CI) / inconclusive):",
            highlight=False,
        )
        for line in report.headline:
            console.print(f"  {line}", highlight=False, markup=False, soft_wrap=True)
    if report.tuning:
        console.print("[bold]what tuning bought[/] (paired by seed, test split):", highlight=False)
        for line in report.tuning:
            console.print(f"  {line}", highlight=False, markup=False, soft_wrap=True)
    for title, frame in report.sections.items():
        console.print(terminal_table(title, frame))
    for name, path in report.paths.items():
        console.print(f"{name}: {path}", highlight=False, markup=False)
    console.print(f"MLflow run: {report.run_id}", highlight=False, markup=False)
    if report.contended:
        console.print(
            f"{len(report.contended)} compared run(s) ran on a machine busy with other work; "
            "their costs are suspect. To re-run them on a quiet machine, delete them and run "
            "the same `bench run` again (it re-runs what is missing):",
            highlight=False,
        )
        for run_id, name in report.contended.items():
            console.print(
                f"  MLFLOW_TRACKING_URI={report.tracking_uri} mlflow runs delete "
                f"--run-id {run_id}   # {name}",
                highlight=False,
                markup=False,
            )


def terminal_table(title: str, frame: pd.DataFrame) -> Table:
    """A long-form section for an 80-column terminal: a row per (architecture, figure), a
    column per backend, so that its width grows with the backends only, never with them
    squared. The files keep one row per (architecture, backend)."""
    if not isinstance(frame.index, pd.MultiIndex):
        table = Table(title=title)
        table.add_column(str(frame.index.name or ""), no_wrap=True)
        for label in frame.columns:
            table.add_column(str(label), justify="right")
        for index, row in frame.iterrows():
            table.add_row(str(index), *map(str, row.tolist()))
        return table
    architectures = list(dict.fromkeys(frame.index.get_level_values(0)))
    columns = list(dict.fromkeys(frame.index.get_level_values(1)))
    table = Table(title=title)
    table.add_column("", no_wrap=True)
    for column in columns:
        table.add_column(str(column), justify="right")
    for arch in architectures:
        table.add_section()
        for label in frame.columns:
            cells = [str(frame[label].get((arch, column), "")) for column in columns]
            table.add_row(f"{arch} {label}", *cells)
    return table


def markdown_page(
    name: str,
    headline: list[str],
    verdicts: pd.DataFrame,
    sections: dict[str, pd.DataFrame],
    tuning: Sequence[str] = (),
) -> str:
    parts = [f"# rnnbench report: {name}\n"]
    if headline:
        parts.append("## Verdict\n\n" + "\n".join(f"- {line}" for line in headline) + "\n")
        parts.append(f"{VERDICT_NOTE}\n\n{to_markdown(readable(verdicts))}")
    if tuning:
        parts.append("## What tuning bought\n\n" + "\n".join(f"- {line}" for line in tuning))
        parts.append(f"{TUNING_NOTE}\n")
    parts += [
        f"## {title}\n\n{to_markdown(_flat_index(frame))}" for title, frame in sections.items()
    ]
    parts += [f"![{chart}]({chart}.png)\n" for chart in CHARTS]
    return "\n".join(parts)


def _flat_index(frame: pd.DataFrame) -> pd.DataFrame:
    """A (architecture, backend) index as one "architecture backend" column for Markdown."""
    if isinstance(frame.index, pd.MultiIndex):
        frame = frame.copy()
        frame.index = [" ".join(map(str, key)) for key in frame.index]
    return frame


def readable(verdicts: pd.DataFrame) -> pd.DataFrame:
    """The verdict records for people, long form (a row per clause, 9 columns whatever the
    number of backends): estimate and deciding interval in the metric's own form, n, busy-host
    runs."""
    if not len(verdicts):
        return pd.DataFrame()
    rows = [_readable_row(record) for _, record in verdicts.iterrows()]
    frame = pd.DataFrame(rows)
    versus = zip(verdicts["contender"], verdicts["baseline"], strict=True)
    frame.index = [f"{contender} vs {baseline}" for contender, baseline in versus]
    frame.index.name = "comparison"
    return frame


def _readable_row(record: pd.Series) -> dict[str, str]:
    difference = record["scale"] == "difference"

    def shown(value: float) -> str:
        if value is None or math.isnan(value):
            return ""
        return f"{value:+.4f}" if difference else f"{value:.3f}x"

    def interval(low: float, high: float) -> str:
        return f"[{shown(low)}, {shown(high)}]" if shown(low) else ""

    unpaired = record["unpaired"]
    busy = [name for name in str(record["contended"] or "").split(", ") if name]
    return {
        "architecture": record["architecture"],
        "metric": record["metric"],
        "kind": record["kind"],
        "estimate": shown(record["estimate"]),
        # The interval that decides the kind: 90% for equivalence (TOST), 95% otherwise; both
        # are in verdicts.csv.
        "interval": (
            f"90% {interval(record['low90'], record['high90'])}"
            if record["kind"] == "equivalent"
            else (f"95% {interval(record['low'], record['high'])}" if shown(record["low"]) else "")
        ),
        "margin": f"±{record['margin']:g}" if difference else f"±{record['margin']:.0%}",
        "n": f"{record['pairs']} pairs" + (f", {unpaired} unpaired" if unpaired != "0/0" else ""),
        "busy-host runs": str(len(busy)) if busy else "",
    }
