"""Verdicts as data: one typed record per clause, and the words every output renders from it.

A clause is what one comparison concludes (`harness.report.verdicts`): its kind, metric,
estimate, intervals, margin, n and the runs it rests on, with the runs among them whose host
was busy with other work (`harness.run.host`). The terminal, Markdown, the HTML page,
verdicts.json/.csv and the MLflow table all render these records; none reads English back.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from harness.report.verdicts import Comparison, Kind, Scale, kind_of

OVERALL = "all architectures"  # the architecture of a clause over every architecture


@dataclass(frozen=True)
class Clause:
    """One conclusion about `contender` against `baseline` on one metric."""

    architecture: str  # or OVERALL
    contender: str
    baseline: str
    metric: str  # "accuracy", "perplexity", "time per epoch", "throughput", "memory"
    kind: Kind
    scale: Scale
    estimate: float
    low: float  # 95% interval
    high: float
    low90: float  # 90% interval (TOST)
    high90: float
    margin: float  # absolute for a difference, relative for a ratio
    higher_is_better: bool
    pairs: int  # seeds both sides ran (for OVERALL: architectures)
    unpaired: tuple[int, int]  # runs without a partner, (contender, baseline)
    method: str
    runs: tuple[str, ...] = ()  # the MLflow run ids it rests on
    contended: tuple[str, ...] = ()  # names of those runs whose host was busy
    counts: dict[str, int] = field(default_factory=dict)  # OVERALL: kinds over architectures

    @classmethod
    def of(
        cls,
        comparison: Comparison,
        *,
        architecture: str,
        contender: str,
        baseline: str,
        metric: str,
        margin: float,
        higher_is_better: bool,
        runs: tuple[str, ...] = (),
        contended: tuple[str, ...] = (),
    ) -> Clause:
        c = comparison
        return cls(
            architecture,
            contender,
            baseline,
            metric,
            kind_of(c, margin, higher_is_better),
            c.scale,
            c.estimate,
            c.low,
            c.high,
            c.low90,
            c.high90,
            margin,
            higher_is_better,
            c.pairs,
            c.unpaired,
            c.method,
            runs,
            contended,
        )

    # -- words ----------------------------------------------------------------------------
    def words(self) -> str:
        """The clause in words with its numbers, e.g. 'time per epoch: keras 1.52x slower
        [1.41, 1.64] (paired t, n 5/5 seeds)'."""
        return f"{self.metric}: {self.statement()}"

    def statement(self) -> str:
        """The clause without its metric's name, for a table whose column names it."""
        text = f"{self._finding()} ({self._figures()})"
        if self.contended:
            text += (
                f" [rests on {len(self.contended)} run(s) of a busy machine: "
                f"{', '.join(self.contended)}]"
            )
        return text

    def _finding(self) -> str:
        if self.kind == "identical":
            return "identical on every seed"
        if self.kind == "no data":
            return "not measured on both sides"
        if self.kind == "equivalent":
            return f"equivalent within ±{self._margin()}"
        if self.kind == "inconclusive":
            return f"inconclusive at a ±{self._margin()} margin"
        if self.scale == "difference":
            return f"{self.contender} {self.kind}"
        return f"{self.contender} {self._ratio_words()}"

    def _ratio_words(self) -> str:
        """A ratio the way people say it: '2.10x faster [1.9, 2.3]' rather than 0.48x."""
        larger = self.estimate > 1
        if self.metric.startswith("time"):
            word = "slower" if larger else "faster"
        elif self.metric == "throughput":
            word = "the throughput" if larger else "less throughput"
        else:
            word = f"more {self.metric}" if larger else f"less {self.metric}"
        if larger:
            return f"{self.estimate:.2f}x {word} [{self.low:.2f}, {self.high:.2f}]"
        return f"{1 / self.estimate:.2f}x {word} [{1 / self.high:.2f}, {1 / self.low:.2f}]"

    def _margin(self) -> str:
        return f"{self.margin:g}" if self.scale == "difference" else f"{self.margin:.0%}"

    def _figures(self) -> str:
        if self.architecture == OVERALL:
            n = f"geometric mean over {self.pairs} architecture(s), {self.method or 'no interval'}"
        elif self.kind == "identical":
            n = f"n {self.pairs}/{self.pairs + max(self.unpaired)}"
        else:
            n = self._n()
        if self.kind in ("identical", "no data") or math.isnan(self.estimate):
            return n
        point = self._point(self.estimate)
        if math.isnan(self.low):
            return f"{point}, no interval, {n}"
        if self.kind == "equivalent":
            return f"{point}, 90% CI [{self._point(self.low90)}, {self._point(self.high90)}], {n}"
        if self.kind in ("better", "worse") and self.scale == "ratio":
            return n  # the interval is in the finding already
        return f"{point}, 95% CI [{self._point(self.low)}, {self._point(self.high)}], {n}"

    def _point(self, value: float) -> str:
        return f"{value:+.4f}" if self.scale == "difference" else f"{value:.3f}x"

    def _n(self) -> str:
        pieces = [self.method] if self.method else []
        total = self.pairs + max(self.unpaired)
        if self.method.endswith("unpaired"):
            pieces.append(f"n {self.pairs + self.unpaired[0]}/{self.pairs + self.unpaired[1]} runs")
        else:
            pieces.append(f"n {self.pairs}/{total} seeds paired")
            if any(self.unpaired):
                pieces.append(f"{sum(self.unpaired)} run(s) without a partner left out")
        return ", ".join(pieces)

    def as_row(self) -> dict[str, object]:
        """The record as one flat row, for verdicts.csv and the MLflow table."""
        row = asdict(self)
        row["unpaired"] = f"{self.unpaired[0]}/{self.unpaired[1]}"
        row["runs"] = " ".join(self.runs)
        row["contended"] = ", ".join(self.contended)
        row["counts"] = ", ".join(f"{k} {v}" for k, v in self.counts.items())
        row["words"] = self.words()
        return row


def overall_words(clause: Clause) -> str:
    """The line across architectures: the pooled ratio, then how many came out which way."""
    counts = ", ".join(f"{kind} on {n}" for kind, n in clause.counts.items() if n)
    return f"{clause.contender} vs {clause.baseline}, {clause.words()}; by architecture: {counts}"
