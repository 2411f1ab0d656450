"""Two runs of one study, side by side: does every clause say the same thing?

    python docs/scripts/compare_verdicts.py OUT_A OUT_B

OUT_A and OUT_B are the output folders of two `bench run`s of the same study (each holds
report/verdicts.csv and mlflow.db). Prints, as Markdown: each clause's kind and estimate in both
runs, whether the kinds agree, and every compared run the busy-host guard tagged `contended`.
Exit code 1 when a kind differs, so that a script can tell.
"""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

import pandas as pd

KEYS = ["architecture", "contender", "metric"]


def clauses(out: Path) -> pd.DataFrame:
    frame = pd.read_csv(out / "report" / "verdicts.csv")
    return frame[[*KEYS, "scale", "kind", "estimate", "low", "high", "pairs"]]


def contended(out: Path) -> list[tuple[str, str]]:
    """(run name, reason) of every run tagged contended, read from the SQLite store as it is."""
    with sqlite3.connect(out / "mlflow.db") as db:
        rows = db.execute(
            "select r.name, t.value from runs r join tags t on t.run_uuid = r.run_uuid "
            "where t.key = 'contended' and r.lifecycle_stage = 'active' order by r.name"
        ).fetchall()
    return [(str(name), str(reason)) for name, reason in rows]


def shown(value: float, scale: str) -> str:
    return f"{value:+.4f}" if scale == "difference" else f"{value:.3f}x"


def main(first: Path, second: Path) -> int:
    a, b = clauses(first), clauses(second)
    both = a.merge(b, on=[*KEYS, "scale"], suffixes=(" A", " B"), how="outer")
    print("| architecture | contender | metric | A | B | same kind |")
    print("|---|---|---|---|---|---|")
    for _, row in both.iterrows():
        cells = [
            f"{row['kind A']} {shown(row['estimate A'], row['scale'])}",
            f"{row['kind B']} {shown(row['estimate B'], row['scale'])}",
        ]
        same = "yes" if row["kind A"] == row["kind B"] else "**no**"
        print(
            f"| {row['architecture']} | {row['contender']} | {row['metric']} | "
            f"{cells[0]} | {cells[1]} | {same} |"
        )
    differing = int((both["kind A"] != both["kind B"]).sum())
    print(f"\n{len(both) - differing} of {len(both)} clauses say the same kind in both runs.")
    for name, out in (("A", first), ("B", second)):
        busy = contended(out)
        print(f"\nrun {name} ({out}): {len(busy)} run(s) tagged contended")
        for run, reason in busy:
            print(f"- {run}: {reason}")
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
