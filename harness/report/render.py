"""The report as people read it: formatted sections, the terminal view, the Markdown page
(the HTML page is `harness.report.page`).

Every output leads with the verdicts (see `harness.report.comparisons`), then the table of
`harness.report.collect` formatted as mean ± std with units in the headers, then the charts.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import pandas as pd
from rich.console import Console
from rich.table import Table

from harness.report.collect import pairs
from harness.report.tables import significant, to_markdown
from harness.report.views import TaskView, quality_title

if TYPE_CHECKING:
    from harness.report.build import Report

CHARTS = ("accuracy", "time", "optimization_history")  # in the order the pages show them
VERDICT_NOTE = (
    "Each line compares a backend with the study's baseline on the baseline's best "
    "configuration, one value per run: quality is the difference of the test metric's means "
    "over the re-train seeds, cost the ratio (of geometric means) of each run's steady-state "
    "time per epoch (the first epoch left out) and of peak memory, each with a 95% interval "
    "(Welch's t below 20 runs a side, where a bootstrap is too narrow; the percentile "
    "bootstrap above); an interval that contains no change reads 'no detectable difference'."
)
Cell = Callable[[pd.Series, str], str]  # (table row, backend) -> the formatted cell


def format_sections(
    table: pd.DataFrame, backends: list[str], memory: str, metric: str, view: TaskView
) -> dict[str, pd.DataFrame]:
    """The table as people read it: mean ± std, units in headers, an empty cell for NaN.

    `backends` starts with the baseline, which every contender's ratio is taken against.
    """
    memory_label = "peak GPU MiB" if memory == "peak_gpu_memory_mb" else "peak RSS MiB"
    quality: list[tuple[str, Cell]] = [
        (f"search best {metric}", lambda r, b: _fixed(r[f"search_best_{metric} {b}"], 4)),
        *((label, lambda r, b, test=test: _pm(r, test, b)) for test, label in view.tests),
        ("n (seeds)", lambda r, b: _fixed(r[f"retrain_runs {b}"], 0)),
    ]
    cost: list[tuple[str, Cell]] = [
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
    for source, target in pairs(backends):
        quality_frame[f"cross {name} {source}→{target}"] = [
            _pm(row, f"cross_{cross}", f"{source}_on_{target}") for _, row in table.iterrows()
        ]
    baseline, *contenders = backends
    for name, label in (("seconds_per_epoch", "s/epoch"), (memory, "memory")):
        for contender in contenders:
            ratio = f"{contender}/{baseline}"
            cost_frame[f"{label} {ratio}"] = [_fixed(v, 2) for v in table[f"{name} {ratio}"]]
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


def print_report(console: Console, report: Report) -> None:
    """The headline first, then the formatted sections as rich tables, then where the files are."""
    if report.headline:
        console.print(
            "[bold]verdict[/] (95% confidence intervals; 'no detectable difference' "
            "when an interval contains no change):",
            highlight=False,
        )
        for line in report.headline:
            console.print(f"  {line}", highlight=False, markup=False, soft_wrap=True)
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
        console.print(f"{name}: {path}", highlight=False, markup=False)
    console.print(f"MLflow run: {report.run_id}", highlight=False, markup=False)


def markdown_page(
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
