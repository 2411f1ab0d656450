"""GitHub-flavoured Markdown tables from pandas frames, shared by the study report and perf."""

from __future__ import annotations

import math

import pandas as pd


def to_markdown(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured table; pandas' `to_markdown` needs tabulate, which is not installed."""
    header = [frame.index.name or "", *map(str, frame.columns)]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * len(frame.columns)]
    for index, row in frame.iterrows():
        cells = [str(index), *(str(v) for v in row)]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def significant(value: object, digits: int = 3) -> object:
    """Floats to `digits` significant figures for reading; other values unchanged."""
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.{digits}g}"
    return "" if value is None else value
