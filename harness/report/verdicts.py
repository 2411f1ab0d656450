"""What a comparison of two backends concludes, with its uncertainty, in numbers and in words.

A benchmark's product is its verdict, so every comparison here carries a 95% confidence interval
and its sample sizes, and a difference whose interval contains 0 (a ratio whose interval
contains 1) reads "no detectable difference", never a winner. The statistics are scipy's:
the percentile bootstrap (`scipy.stats.bootstrap`, the two samples resampled independently)
from SMALL_SAMPLE values a side, Welch's t interval (`scipy.stats.ttest_ind`) below it, where the
bootstrap is too narrow; and the probability of improvement P(A > B) of Bouthillier et al.
(2021) and Agarwal et al. (2021), the Mann-Whitney U statistic over n_A * n_B (ties count one
half). Every sample holds one value per run: epochs of one run are not independent draws.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
RESAMPLES = 9_999
SEED = 0  # the bootstrap's own random numbers: the same stores always give the same report


@dataclass(frozen=True)
class Interval:
    """An estimate with its 95% confidence interval and the sample sizes it came from."""

    estimate: float
    low: float
    high: float
    n: tuple[int, int]  # (contender, baseline)

    @property
    def known(self) -> bool:
        return not any(math.isnan(v) for v in (self.estimate, self.low, self.high))

    def contains(self, value: float) -> bool:
        """True also when the interval is unknown: no evidence is no difference."""
        return not self.known or self.low <= value <= self.high

    def shown(self, digits: int = 3, prefix: str = "") -> str:
        return f"{prefix}{self.estimate:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


SMALL_SAMPLE = 20  # below this many values a side, Welch's t interval instead of the bootstrap


def _clean(values: Sequence[float]) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    return array[np.isfinite(array)]


def _bootstrap(statistic, *samples: np.ndarray) -> tuple[float, float]:
    """The percentile bootstrap's 95% interval of `statistic` over independent samples."""
    result = stats.bootstrap(
        samples,
        statistic,
        n_resamples=RESAMPLES,
        confidence_level=CONFIDENCE,
        method="percentile",
        vectorized=True,
        axis=-1,
        rng=np.random.default_rng(SEED),
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def _welch(contender: np.ndarray, baseline: np.ndarray) -> tuple[float, float]:
    test = stats.ttest_ind(contender, baseline, equal_var=False)
    interval = test.confidence_interval(confidence_level=CONFIDENCE)
    return float(interval.low), float(interval.high)


def _mean_difference(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(a, axis=axis) - np.mean(b, axis=axis)


def _interval_of_difference(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """The 95% interval of mean(a) - mean(b), or NaNs where the data cannot give one.

    With a handful of seeds a side, the percentile bootstrap is too narrow: simulated from one
    distribution, its interval excluded 0 in 17% of cases at n = 5 and 29% at n = 2, not 5%.
    Welch's t interval keeps its coverage there, so it is used below SMALL_SAMPLE values a
    side. With no spread on either side there is nothing to estimate the noise from: no
    interval, unless the two sides are the same number (then the difference is exactly 0).
    """
    if len(a) < 2 or len(b) < 2:
        return math.nan, math.nan
    if np.ptp(a) == 0 and np.ptp(b) == 0:
        return (0.0, 0.0) if a[0] == b[0] else (math.nan, math.nan)
    if min(len(a), len(b)) < SMALL_SAMPLE:
        return _welch(a, b)
    return _bootstrap(_mean_difference, a, b)


def difference(contender: Sequence[float], baseline: Sequence[float]) -> Interval:
    """Mean(contender) - mean(baseline), with its 95% interval (one value per run)."""
    a, b = _clean(contender), _clean(baseline)
    if not len(a) or not len(b):
        return Interval(math.nan, math.nan, math.nan, (len(a), len(b)))
    low, high = _interval_of_difference(a, b)
    return Interval(float(_mean_difference(a, b)), low, high, (len(a), len(b)))


def ratio(contender: Sequence[float], baseline: Sequence[float]) -> Interval:
    """How many times the baseline's value the contender's is, with its 95% interval.

    Computed on the logarithms, where a ratio is a difference: the ratio of geometric means,
    exp(mean(log a) - mean(log b)), and the interval of that difference carried back. The
    values must be positive (times, throughputs, memory) and independent: one per run.
    """
    a, b = _clean(contender), _clean(baseline)
    a, b = a[a > 0], b[b > 0]
    if not len(a) or not len(b):
        return Interval(math.nan, math.nan, math.nan, (len(a), len(b)))
    log_a, log_b = np.log(a), np.log(b)
    low, high = _interval_of_difference(log_a, log_b)
    estimate = float(np.exp(_mean_difference(log_a, log_b)))
    return Interval(estimate, float(np.exp(low)), float(np.exp(high)), (len(a), len(b)))


def probability_of_improvement(
    contender: Sequence[float], baseline: Sequence[float], higher_is_better: bool = True
) -> float:
    """P(a run of the contender beats a run of the baseline); 0.5 means neither does."""
    a, b = _clean(contender), _clean(baseline)
    if not len(a) or not len(b):
        return math.nan
    if not higher_is_better:
        a, b = -a, -b
    u = stats.mannwhitneyu(a, b, alternative="two-sided").statistic
    return float(u / (len(a) * len(b)))


# -- words ------------------------------------------------------------------------------------
NO_DIFFERENCE = "no detectable difference"


def quality_words(
    label: str,
    diff: Interval,
    p_better: float,
    contender: str,
    baseline: str,
    higher_is_better: bool = True,
) -> str:
    """E.g. 'accuracy: no detectable difference (Δ +0.001, 95% CI [-0.004, +0.006],
    P(torch better) 0.55, n 5/5 seeds)' or 'accuracy: torch better (Δ +0.012, ...)'.

    The verdict follows the interval, never the estimate alone."""
    if not diff.known:
        return f"{label}: not enough runs for an interval (n {diff.n[0]}/{diff.n[1]})"
    figures = (
        f"Δ {diff.estimate:+.3f}, 95% CI [{diff.low:+.3f}, {diff.high:+.3f}], "
        f"P({contender} better) {p_better:.2f}, n {diff.n[0]}/{diff.n[1]} seeds"
    )
    if diff.contains(0.0):
        return f"{label}: {NO_DIFFERENCE} ({figures})"
    better = (diff.low > 0) == higher_is_better
    return f"{label}: {contender} {'better' if better else 'worse'} ({figures})"


def ratio_words(what: str, r: Interval, contender: str, unit: str) -> str:
    """A cost ratio in words: faster/slower for times, 'x the memory' for the rest.

    `what` is "time" (a lower ratio is faster), or a noun like "memory" / "throughput".
    """
    n = f"n {r.n[0]}/{r.n[1]} {unit}"
    if not r.known:
        return f"{what}: not enough data for an interval ({n})"
    shown = f"{r.estimate:.2f}x [{r.low:.2f}, {r.high:.2f}], {n}"
    if r.contains(1.0):
        return f"{NO_DIFFERENCE} in {what} ({shown})"
    if what.startswith("time"):
        per = what.removeprefix("time ")
        if r.high < 1:  # the whole interval says faster
            speedup = f"{1 / r.estimate:.2f}x faster [{1 / r.high:.2f}, {1 / r.low:.2f}]"
            return f"{contender} {speedup} {per} ({n})"
        return f"{contender} {r.estimate:.2f}x slower [{r.low:.2f}, {r.high:.2f}] {per} ({n})"
    return f"{r.estimate:.2f}x the {what} [{r.low:.2f}, {r.high:.2f}] ({n})"


def time_to_target(
    values: Sequence[float], seconds: Sequence[float], target: float, higher_is_better: bool
) -> float:
    """Training seconds until the per-epoch metric first reaches `target` (MLPerf's measure:
    every epoch's training time counts, the first included); NaN when it never does."""
    elapsed = 0.0
    for value, spent in zip(values, seconds, strict=True):
        elapsed += spent
        if (value >= target) if higher_is_better else (value <= target):
            return elapsed
    return math.nan


def mean_interval(values: Sequence[float]) -> Interval:
    """The mean of one sample with its 95% interval (for charts: a point per run, and this as
    the bar): Student's t below SMALL_SAMPLE values, the percentile bootstrap above."""
    a = _clean(values)
    if len(a) < 2:
        mean = float(a.mean()) if len(a) else math.nan
        return Interval(mean, math.nan, math.nan, (len(a), 0))
    if np.ptp(a) == 0:
        return Interval(float(a[0]), float(a[0]), float(a[0]), (len(a), 0))
    if len(a) < SMALL_SAMPLE:
        low, high = stats.ttest_1samp(a, 0.0).confidence_interval(confidence_level=CONFIDENCE)
    else:
        low, high = _bootstrap(np.mean, a)
    return Interval(float(a.mean()), float(low), float(high), (len(a), 0))
