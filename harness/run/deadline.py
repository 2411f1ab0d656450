"""`[budget] study_minutes`: the time of a whole study, and when each search must stop for it.

A study's answer is its re-trainings (the report compares them, not the trials), and they run
after the searches; a budget spent searching would leave nothing to compare. So the total first
reserves the re-trainings' time and the searches share what is left. How long a re-training
takes is not known before runs of the same models have finished on the same machine, so the
reserve is estimated again from the searches' own finished trials each time a trial is about to
be claimed. The slots take the searches one after another (`Searches.work_on` takes the first
with room), so search k of n must end by (k + 1) / n of the search time: the first cannot take
the time of those behind it, and time a search leaves unused passes to the next.

Arithmetic on numbers passed in (seconds, paces), no clock read, so it is tested with real
figures. Like `timeout_minutes`, the budget counts per invocation: a resumed study gets it again.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness.study.schema import Study

# A run's wall time over its training time: validation each epoch, scoring the test split (twice
# with the best epoch's weights), building the model, tracking. Paces are training seconds per
# epoch (`harness.search.seconds_per_epoch`), so every estimate is scaled by this. Measured on
# imdb-cpu-search's first run (2026-12-07, 2-core EPYC, 2 worker slots): a re-training's wall
# time over its training seconds had a median of 1.2 (1.11-1.59 over 45 runs), a complete
# trial's 1.08; 1.3 leans to the safe side (the study ends early rather than late).
WALL_PER_TRAINING_SECOND = 1.3


def retrain_runs(study: Study, backend: str) -> int:
    """The re-training runs one (architecture, `backend`) search leads to (`run.retrain`).

    Counted on the backend that runs them, whose pace is what they cost: with cross runs each
    backend of an architecture runs every backend's best, `seeds x (1 + other backends)` runs in
    all, as many as each search causes. A study that searches also re-trains its defaults on the
    baseline backend, once per architecture. The one place to change when `retrain.py` does.
    """
    seeds = study.retrain.seeds
    runs = seeds * (len(study.backends) if study.retrain.cross_backend else 1)
    if study.searched and backend == study.baseline:
        runs += seeds  # the defaults, beside the baseline's best
    return runs


def pace(seconds_per_epoch: Sequence[float]) -> float | None:
    """A search's pace: the median seconds per epoch of its finished trials; None before any."""
    return statistics.median(seconds_per_epoch) if seconds_per_epoch else None


@dataclass(frozen=True)
class Deadline:
    """One invocation's total time, split between the searches and the re-trainings' reserve.

    Paces are seconds per epoch, one per search in `runs`' order; None where no trial of that
    search has finished yet, then taken to be as slow as the slowest measured one (the safe side:
    the study ends early rather than late). Before any pace at all nothing is reserved: the first
    trials are the measurement.
    """

    seconds: float  # the whole budget: study_minutes x 60, from the searches' start
    epochs: int  # of every run; a re-training is never pruned
    workers: int  # the worker slots that run the re-trainings side by side
    runs: tuple[int, ...]  # the re-training runs each search leads to, in the slots' order

    @classmethod
    def of(cls, study: Study, workers: int) -> Deadline | None:
        """The study's deadline, its searches in the order `Searches` opens them; None: no total."""
        if study.budget.study_minutes is None:
            return None
        runs = tuple(retrain_runs(study, b) for _ in study.architectures for b in study.backends)
        return cls(60 * study.budget.study_minutes, study.epochs, workers, runs)

    def filled(self, paces: Sequence[float | None]) -> list[float]:
        """Each search's pace, the slowest measured one where it has none yet."""
        slowest = max((p for p in paces if p is not None), default=0.0)
        return [slowest if p is None else p for p in paces]

    def reserve(self, paces: Sequence[float | None]) -> float:
        """Wall seconds the re-trainings will take at these paces, spread over the slots."""
        runs = sum(n * p for n, p in zip(self.runs, self.filled(paces), strict=True))
        return runs * self.epochs * WALL_PER_TRAINING_SECOND / self.workers

    def search_end(self, position: int, paces: Sequence[float | None]) -> float:
        """Seconds from the start by which search `position` (0-based) must have ended."""
        searching = max(self.seconds - self.reserve(paces), 0.0)
        return searching * (position + 1) / len(self.runs)

    def may_start(
        self, position: int, elapsed: float, paces: Sequence[float | None], tried: int
    ) -> bool:
        """Whether search `position` may start a trial `elapsed` seconds in: it must end, at
        the search's pace for every epoch, within the search's share. A search that has
        `tried` no trial yet (finished, running or failed) always starts one: its defaults,
        which its re-trainings need."""
        if tried == 0:
            return True
        trial = self.filled(paces)[position] * self.epochs * WALL_PER_TRAINING_SECOND
        return elapsed + trial <= self.search_end(position, paces)
