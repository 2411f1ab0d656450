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

import pandas as pd

from harness.report.render import VERDICT_NOTE
from harness.report.tables import significant
from harness.report.verdicts import NO_DIFFERENCE

LEGEND = {  # a verdict clause's badge (CSS below) and what it means, shown under the verdict
    "found": "the 95% interval excludes no change",
    "same": "the interval contains no change",
    "unknown": "too few runs for an interval",
    "info": "no interval",
}
WIDE_CHART_PX = 800  # wider charts get a row of their own; two narrower ones share a row
# Badges are CSS (::before), not text, so each verdict block's text stays its line verbatim.
PAGE_CSS = """
:root{--ink:#1f2328;--muted:#59636e;--line:#d8dee4;--soft:#f6f8fa;--accent:#0969da}
*{box-sizing:border-box}
body{margin:0;color:var(--ink);background:#fff;
font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:1180px;margin:0 auto;padding:28px 32px 64px}
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
.found::before{content:"difference";background:#ddf4ff;color:#0550ae;border-color:#54aeff}
.same::before{content:"no difference";background:#fff;color:var(--muted);border-color:var(--line)}
.unknown::before{content:"no verdict";background:#fff8c5;color:#7d4e00;border-color:#d4a72c}
.info::before{content:"median";color:var(--muted)}
.figures{color:var(--muted)}
.clauses b{font-weight:600}
.legend{display:flex;flex-wrap:wrap;gap:4px 24px;margin-top:8px;padding-top:10px;
border-top:1px solid var(--line);font-size:.8rem;color:var(--muted)}
.legend li{grid-template-columns:auto 1fr;gap:6px}
.scroll{overflow-x:auto;margin:8px 0 4px}
table{border-collapse:collapse;font-size:.875rem;font-variant-numeric:tabular-nums}
th,td{padding:3px 14px 3px 10px;text-align:right;white-space:nowrap;vertical-align:top}
thead th{border-bottom:2px solid var(--line);font-weight:600}
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
    headline: list[str],
    verdicts: pd.DataFrame,
    sections: dict[str, pd.DataFrame],
    charts: list[Path],
) -> str:
    """One self-contained page (inline CSS, charts as data: URIs, no script), so MLflow's
    artifact viewer shows it whole. It reads at a laptop's width without scrolling sideways:
    tables are transposed (a column per architecture, as in the terminal) and a table still too
    wide scrolls inside its own box."""
    body = [f'<header><p class="kicker">rnnbench report</p><h1>{_e(name)}</h1></header>']
    if headline:
        body.append(_findings(headline, verdicts))
    if len(verdicts):
        body.append(
            '<section><h2>Verdicts in numbers</h2><p class="note">'
            f"{_e(VERDICT_NOTE)}</p>{_html_table(_verdict_rows(verdicts))}</section>"
        )
    for title, frame in sections.items():
        heading, _, note = title.partition(": ")  # "quality: how it was measured"
        note_html = f'<p class="note">{_e(note)}</p>' if note else ""
        table = _html_table(_by_metric(frame))
        body.append(f"<section><h2>{_e(heading)}</h2>{note_html}{table}</section>")
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


def _findings(headline: list[str], verdicts: pd.DataFrame) -> str:
    """The verdict lines, one block per architecture and contender, each clause badged by what
    its interval says. Each block's text is its line verbatim: the separators are hidden, not
    dropped, and the badges are CSS, not text."""
    compared = list(zip(verdicts.get("contender", []), verdicts.get("baseline", []), strict=True))
    versus = [f"{c} vs {b}" for c, b in compared] if len(compared) == len(headline) else []
    lead = ""
    if versus:
        contenders = ", ".join(dict.fromkeys(c for c, _ in compared))
        lead = f"{contenders} against the baseline {compared[0][1]}; 95% confidence intervals."
    items = "".join(_finding(line, versus[i] if versus else "") for i, line in enumerate(headline))
    legend = "".join(
        f'<li class="{kind}"><span class="text">{_e(words)}</span></li>'
        for kind, words in LEGEND.items()
    )
    return (
        f'<section class="headline"><h2>Verdict</h2><p class="lead">{_e(lead)}</p>'
        f'<ul class="findings">{items}</ul><ul class="legend">{legend}</ul></section>'
    )


def _finding(line: str, versus: str) -> str:
    arch, _, rest = line.partition(": ")
    clauses = rest.split("; ")
    items = "".join(
        f'<li class="{_kind(clause)}"><span class="text">{_clause(clause)}'
        + ('<span class="sep">; </span>' if i < len(clauses) - 1 else "")
        + "</span></li>"
        for i, clause in enumerate(clauses)
    )
    return (
        f'<li class="finding"><span class="arch" data-versus="{_e(versus)}">{_e(arch)}</span>'
        f'<span class="sep">: </span><ul class="clauses">{items}</ul></li>'
    )


def _kind(clause: str) -> str:
    """What a clause of a verdict line says, for its badge (see LEGEND)."""
    if clause.startswith("no verdict") or "not enough" in clause:
        return "unknown"
    if NO_DIFFERENCE in clause:
        return "same"
    return "info" if clause.startswith("time to ") else "found"  # a median: no interval


def _clause(clause: str) -> str:
    """The words in bold, the figures in brackets after them quieter."""
    words, bracket, figures = clause.partition(" (")
    if _kind(clause) == "info" or not bracket:
        return _e(clause)
    return f'<b>{_e(words)}</b> <span class="figures">({_e(figures)}</span>'


def _verdict_rows(verdicts: pd.DataFrame) -> pd.DataFrame:
    """The verdict table transposed as the sections are: a column per architecture, a row per
    figure (and contender, when there are several), each estimate with its interval."""
    frame = _with_intervals(verdicts.map(significant))
    contenders = list(dict.fromkeys(frame["contender"]))
    architectures = list(dict.fromkeys(frame["architecture"]))
    cells = frame.set_index(["contender", "architecture"])
    rows: dict[str | tuple[str, str], list[str]] = {}
    for label in cells.columns:
        for contender in contenders:
            values = [cells[label].get((contender, arch), "") for arch in architectures]
            if len(contenders) == 1:
                rows[label] = values
            elif any(values):  # "P(torch better)" is empty in keras-jax's rows
                rows[(label, contender)] = values
    return pd.DataFrame.from_dict(rows, orient="index", columns=architectures)


def _with_intervals(frame: pd.DataFrame) -> pd.DataFrame:
    """Each estimate and its interval in one column, "0.513 [0.37, 0.711]": the two columns
    after an estimate, named "... CI low" and "... CI high", are its bounds."""
    merged: dict[str, list[str]] = {}
    labels = list(frame.columns)
    i = 0
    while i < len(labels):
        bounds = labels[i + 1 : i + 3]
        if len(bounds) == 2 and bounds[0].endswith("CI low") and bounds[1].endswith("CI high"):
            merged[f"{labels[i]} [95% CI]"] = [
                f"{e} [{low}, {high}]" if low != "" and high != "" else e
                for e, low, high in zip(frame[labels[i]], *(frame[b] for b in bounds), strict=True)
            ]
            i += 3
        else:
            merged[labels[i]] = frame[labels[i]].tolist()
            i += 1
    return pd.DataFrame(merged)


def _by_metric(frame: pd.DataFrame) -> pd.DataFrame:
    """A section transposed: a row per (label, backend), a column per architecture."""
    rows = frame.T
    rows.index = pd.MultiIndex.from_tuples([tuple(c.rsplit(" ", 1)) for c in rows.index])
    return rows


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
