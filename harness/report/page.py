"""The report as an HTML page: one self-contained, styled file that leads with the verdict.

Inline CSS, the charts as data: URIs and no script, so MLflow's artifact viewer shows it whole
and it reads at a laptop's width (1280-1440 px) without scrolling sideways: tables are
transposed (a column per architecture, as in the terminal) and a table still too wide scrolls
inside its own box. `tests/test_report_browser.py` checks it in a real headless Chromium.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from harness.report.clauses import Clause, overall_words
from harness.report.render import VERDICT_NOTE, readable

if TYPE_CHECKING:
    from harness.report.comparisons import Verdict

LEGEND = {  # a verdict clause's badge (CSS below, by the record's kind) and what it means
    "identical": "every pair of runs gave the same figure",
    "equivalent": "the 90% interval lies inside the study's margin",
    "better": "the 95% interval excludes no change",
    "inconclusive": "neither: more seeds, or a quieter machine",
    "unknown": "no runs to compare",
    "info": "a median or a count: no interval",
}
BADGE = {  # a record's kind -> its CSS class
    "identical": "identical",
    "equivalent": "equivalent",
    "better": "better",
    "worse": "worse",
    "inconclusive": "inconclusive",
    "no data": "unknown",
}
WIDE_CHART_PX = 800  # wider charts get a row of their own; two narrower ones share a row
# Badges are CSS (::before), not text, so each verdict block's text stays its line verbatim.
PAGE_CSS = """
:root{--ink:#1f2328;--muted:#59636e;--line:#d8dee4;--soft:#f6f8fa;--accent:#0969da}
*{box-sizing:border-box}
body{margin:0;color:var(--ink);background:#fff;
font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:1240px;margin:0 auto;padding:28px 32px 64px}
.kicker{margin:0;color:var(--muted);font-size:.8rem;letter-spacing:.06em;text-transform:uppercase}
h1{margin:0 0 20px;font-size:1.75rem;line-height:1.2}
h2{margin:36px 0 6px;font-size:1.2rem;padding-bottom:4px;border-bottom:1px solid var(--line)}
h2::first-letter{text-transform:uppercase}
.note{margin:4px 0 10px;color:var(--muted);font-size:.875rem;max-width:100ch}
.headline{border:1px solid var(--line);border-left:4px solid var(--accent);border-radius:6px;
background:var(--soft);padding:4px 20px 12px}
.headline h2{margin-top:12px;border:0}
.lead{margin:0 0 6px;color:var(--muted)}
ul.findings,ul.clauses,ul.legend{list-style:none;margin:0;padding:0}
.finding{display:grid;grid-template-columns:8.5rem 1fr;gap:0 12px;padding:10px 0;
border-top:1px solid var(--line)}
.arch{font-weight:600;font-size:1.05rem}
.arch::after{content:attr(data-versus);display:block;font-weight:400;font-size:.8rem;
color:var(--muted)}
.sep{display:none}
.clauses li,.legend li{display:grid;grid-template-columns:7.5rem 1fr;gap:12px;
align-items:baseline;padding:1px 0}
.clauses li::before,.legend li::before{border-radius:999px;padding:0 8px;font-size:.75rem;
font-weight:600;text-align:center;border:1px solid transparent}
.better::before{content:"better";background:#dafbe1;color:#116329;border-color:#4ac26b}
.worse::before{content:"worse";background:#ffebe9;color:#a40e26;border-color:#ff8182}
.identical::before{content:"identical";background:#fff;color:var(--muted);border-color:var(--line)}
.equivalent::before{content:"equivalent";background:#ddf4ff;color:#0550ae;border-color:#54aeff}
.inconclusive::before{content:"inconclusive";background:#fff8c5;color:#7d4e00;
border-color:#d4a72c}
.unknown::before{content:"no verdict";background:#fff8c5;color:#7d4e00;border-color:#d4a72c}
.info::before{content:"median";color:var(--muted)}
.legend .better::before{content:"better/worse"}
.busy{color:#a40e26}
.figures{color:var(--muted)}
.clauses b{font-weight:600}
.legend{display:flex;flex-wrap:wrap;gap:4px 24px;margin-top:8px;padding-top:10px;
border-top:1px solid var(--line);font-size:.8rem;color:var(--muted)}
.legend li{grid-template-columns:auto 1fr;gap:6px}
.scroll{overflow-x:auto;margin:8px 0 4px}
table{border-collapse:collapse;font-size:.875rem;font-variant-numeric:tabular-nums}
th,td{padding:3px 14px 3px 10px;text-align:right;white-space:nowrap;vertical-align:top}
thead th{border-bottom:2px solid var(--line);font-weight:600;white-space:normal;
vertical-align:bottom;min-width:4.5em}
tbody th{text-align:left;font-weight:600}
tbody th.sub{font-weight:400;color:var(--muted)}
tr.group>*{border-top:1px solid var(--line)}
tbody tr:hover td{background:var(--soft)}
td:empty::after{content:"–";color:#afb8c1}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(100%,500px),1fr));
gap:24px 32px;margin-top:12px}
figure.wide{grid-column:1/-1}
figure{margin:0}
img{display:block;max-width:100%;height:auto}
figcaption{margin-top:4px;color:var(--muted);font-size:.8rem}
"""


def html_page(
    name: str,
    found: list[Verdict],
    lines: list[Clause],
    verdicts: pd.DataFrame,
    sections: dict[str, pd.DataFrame],
    charts: list[Path],
) -> str:
    """One self-contained page (inline CSS, charts as data: URIs, no script), so MLflow's
    artifact viewer shows it whole. It reads at a laptop's width without scrolling sideways:
    every table is long form, a row per architecture and backend (or per clause)."""
    body = [f'<header><p class="kicker">rnnbench report</p><h1>{_e(name)}</h1></header>']
    if found:
        body.append(_findings(found, lines))
    if len(verdicts):
        body.append(
            '<section><h2>Verdicts in numbers</h2><p class="note">'
            f"{_e(VERDICT_NOTE)}</p>{_html_table(readable(verdicts))}</section>"
        )
    for title, frame in sections.items():
        heading, _, note = title.partition(": ")  # "quality: how it was measured"
        note_html = f'<p class="note">{_e(note)}</p>' if note else ""
        body.append(f"<section><h2>{_e(heading)}</h2>{note_html}{_html_table(frame)}</section>")
    figures = "".join(_figure(chart) for chart in charts)
    if figures:
        body.append(f'<section><h2>Charts</h2><div class="charts">{figures}</div></section>')
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>rnnbench report: {_e(name)}</title><style>{PAGE_CSS}</style></head>\n"
        "<body><main>\n" + "\n".join(body) + "\n</main></body></html>\n"
    )


def _e(text: object) -> str:
    return html.escape(str(text))


def _findings(found: list[Verdict], lines: list[Clause]) -> str:
    """The verdict: a block per contender across architectures, then one per architecture and
    contender, each clause badged by its record's kind. Each block's text is its headline line
    verbatim: the separators are hidden, not dropped, and the badges are CSS, not text."""
    contenders = ", ".join(dict.fromkeys(v.contender for v in found))
    lead = (
        f"{contenders} against the baseline {found[0].baseline}, paired by seed; "
        "the study's margins decide what counts as equivalent."
    )
    items = []
    for line in lines:
        counts = overall_words(line).rpartition("; ")[2]
        items.append(
            _finding(
                f"{line.contender} vs {line.baseline}",
                "across architectures",
                ", ",
                [(BADGE[line.kind], line.words()), ("info", counts)],
            )
        )
    for v in found:
        if v.config_hash is None or not v.samples[v.contender].runs:
            clauses = [("unknown", v.headline.partition(": ")[2])]
        else:
            from harness.report.comparisons import HEADLINE_METRICS

            clauses = [
                (BADGE[c.kind], c.words()) for c in v.clauses if c.metric in HEADLINE_METRICS
            ]
            if v.target:
                clauses.append(("info", v.target))
        items.append(_finding(v.label, "", ": ", clauses))
    legend = "".join(
        f'<li class="{kind}"><span class="text">{_e(words)}</span></li>'
        for kind, words in LEGEND.items()
    )
    return (
        f'<section class="headline"><h2>Verdict</h2><p class="lead">{_e(lead)}</p>'
        f'<ul class="findings">{"".join(items)}</ul><ul class="legend">{legend}</ul></section>'
    )


def _finding(label: str, versus: str, separator: str, clauses: list[tuple[str, str]]) -> str:
    items = "".join(
        f'<li class="{kind}"><span class="text">{_clause(kind, text)}'
        + ('<span class="sep">; </span>' if i < len(clauses) - 1 else "")
        + "</span></li>"
        for i, (kind, text) in enumerate(clauses)
    )
    return (
        f'<li class="finding"><span class="arch" data-versus="{_e(versus)}">{_e(label)}</span>'
        f'<span class="sep">{_e(separator)}</span><ul class="clauses">{items}</ul></li>'
    )


def _clause(kind: str, clause: str) -> str:
    """The words in bold, the figures in brackets after them quieter, a busy host in red."""
    words, bracket, figures = clause.partition(" (")
    if kind == "info" or not bracket:
        return _e(clause)
    figures, busy, rest = figures.partition(" [rests on ")
    warning = f' <span class="busy">[rests on {_e(rest)}</span>' if busy else ""
    return f'<b>{_e(words)}</b> <span class="figures">({_e(figures)}</span>{warning}'


def _html_table(frame: pd.DataFrame) -> str:
    """The frame's rows labelled by its index; consecutive rows of one label (a tuple index's
    first part) share one header cell. It scrolls inside its box when wider than the page."""
    labels = [key if isinstance(key, tuple) else (key,) for key in frame.index]
    depth = max((len(label) for label in labels), default=1)
    head = f'<th colspan="{depth}"></th>' + "".join(
        f'<th scope="col">{_e(column)}</th>' for column in frame.columns
    )
    body = []
    for i, (label, values) in enumerate(zip(labels, frame.itertuples(index=False), strict=True)):
        first = i == 0 or labels[i - 1][0] != label[0]
        cells = ""
        if first:
            span = next(
                (j for j, other in enumerate(labels[i:]) if other[0] != label[0]),
                len(labels) - i,
            )
            scope = "rowgroup" if depth > 1 else "row"
            cells += f'<th scope="{scope}" rowspan="{span}">{_e(label[0])}</th>'
        cells += "".join(f'<th scope="row" class="sub">{_e(part)}</th>' for part in label[1:])
        cells += "".join(f"<td>{_e(value)}</td>" for value in values)
        body.append(f'<tr class="group">{cells}</tr>' if first else f"<tr>{cells}</tr>")
    return (
        f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def _figure(chart: Path) -> str:
    """A chart as a data: URI, its pixel size given (a PNG's header holds it) so the page keeps
    its place while it decodes; narrow charts pair up, a wide one takes a row of its own."""
    png = chart.read_bytes()
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    caption = chart.stem.replace("_", " ")
    data = base64.b64encode(png).decode("ascii")
    wide = ' class="wide"' if width > WIDE_CHART_PX else ""
    return (
        f"<figure{wide}>"
        f'<img alt="{_e(caption)} chart" width="{width}" height="{height}" '
        f'src="data:image/png;base64,{data}"><figcaption>{_e(caption)}</figcaption></figure>'
    )
