"""What a comparison of two backends concludes, as numbers: paired intervals, TOST, the kind.

The study's design pairs its runs: seed s of every backend starts from the same initial weights
and sees the same batches in the same order, and the seeds run seed-major, side by side in time
(`harness.run.retrain.seed_major`). So a comparison takes the difference *within* each seed
(quality) or the log-ratio (cost), and its interval comes from the spread of those paired
differences, not from the seed-to-seed spread of either side:

- below SMALL_SAMPLE pairs, the paired t interval (`scipy.stats.ttest_rel`); from SMALL_SAMPLE
  pairs on, the percentile bootstrap of the pairs (`scipy.stats.bootstrap`, seeded);
- seeds that only one side has are left out of a paired comparison and counted; with fewer than
  two pairs, Welch's unpaired t over all runs, said as "unpaired".

Each comparison then gets exactly one kind, checked in this order:

    identical     every pair equal to the metric's resolution
    equivalent    the 90% interval lies inside ±margin: two one-sided tests at 5% (TOST), with
                  the margin the study declares in [verdict] (a difference smaller than the
                  margin does not matter, by the study's own definition)
    better/worse  the 95% interval excludes no change
    inconclusive  neither: too few or too noisy runs to say

A cost is a ratio of geometric means; its margin m is relative: equivalent when the 90% interval
lies inside [1 - m, 1 + m]. Every sample holds one value per run: epochs of one run are not
independent draws. The words for people are in `harness.report.clauses`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats

CONFIDENCE = 0.95  # better/worse
EQUIVALENCE_CONFIDENCE = 0.90  # TOST at 5% a side
RESAMPLES = 9_999
SEED = 0  # the bootstrap's own random numbers: the same stores always give the same report
SMALL_SAMPLE = 20  # below this many pairs the paired t, from it on the bootstrap of the pairs
# Two runs agree when their figures differ by less than this, relative to the baseline's figure:
# far below any metric's resolution (one review in 25,000 is 4e-5 of accuracy) and above float
# noise in the logged values.
RESOLUTION = 1e-9

Scale = Literal["difference", "ratio"]
Kind = Literal["identical", "equivalent", "better", "worse", "inconclusive", "no data"]
KINDS: tuple[Kind, ...] = ("identical", "equivalent", "better", "worse", "inconclusive", "no data")


@dataclass(frozen=True)
class Interval:
    """An estimate with its 95% confidence interval and the sample sizes it came from."""

    estimate: float
    low: float
    high: float
    n: tuple[int, int]  # (contender, baseline), or (values, 0) for one sample

    @property
    def known(self) -> bool:
        return not any(math.isnan(v) for v in (self.estimate, self.low, self.high))


@dataclass(frozen=True)
class Comparison:
    """The contender against the baseline on one metric, on the metric's own scale: a
    difference of means, or a ratio of geometric means (intervals carried back from logs)."""

    scale: Scale
    estimate: float
    low: float  # 95%
    high: float
    low90: float  # 90%, for TOST
    high90: float
    pairs: int  # seeds both sides have
    unpaired: tuple[int, int]  # runs without a partner (contender, baseline)
    method: str  # "paired t", "paired bootstrap", "Welch t, unpaired", "" (no interval)
    identical: bool  # every pair equal to the resolution

    @property
    def known(self) -> bool:
        return not any(math.isnan(v) for v in (self.low, self.high, self.low90, self.high90))

    @property
    def no_change(self) -> float:
        return 0.0 if self.scale == "difference" else 1.0


def _finite(values: Mapping[object, float], positive: bool) -> dict[object, float]:
    kept = {}
    for key, value in values.items():
        if value is None or not math.isfinite(value) or (positive and value <= 0):
            continue
        kept[key] = float(value)
    return kept


def _paired_t(d: np.ndarray, confidence: float) -> tuple[float, float]:
    """The paired t interval of mean(d), as `scipy.stats.ttest_rel(a, b)` gives it for d = a - b
    (its one-sample form on d: the same statistic, degrees of freedom and interval)."""
    if np.ptp(d) == 0:  # no spread to estimate the noise from: no interval, not a certain one
        return math.nan, math.nan
    interval = stats.ttest_1samp(d, 0.0).confidence_interval(confidence_level=confidence)
    return float(interval.low), float(interval.high)


def _bootstrap(statistic, samples: tuple[np.ndarray, ...], confidence: float):
    result = stats.bootstrap(
        samples,
        statistic,
        n_resamples=RESAMPLES,
        confidence_level=confidence,
        method="percentile",
        vectorized=True,
        axis=-1,
        rng=np.random.default_rng(SEED),
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def _welch(a: np.ndarray, b: np.ndarray, confidence: float) -> tuple[float, float]:
    if np.ptp(a) == 0 and np.ptp(b) == 0:  # no spread: no interval, not a certain one
        return math.nan, math.nan
    test = stats.ttest_ind(a, b, equal_var=False)
    interval = test.confidence_interval(confidence_level=confidence)
    return float(interval.low), float(interval.high)


def compare(
    contender: Mapping[object, float], baseline: Mapping[object, float], scale: Scale
) -> Comparison:
    """Compare two sides given as {seed: value}, one value per run, pairing equal seeds."""
    ratio = scale == "ratio"
    a_all, b_all = _finite(contender, ratio), _finite(baseline, ratio)
    seeds = [s for s in a_all if s in b_all]
    unpaired = (len(a_all) - len(seeds), len(b_all) - len(seeds))
    to_scale = np.log if ratio else (lambda x: x)
    back = np.exp if ratio else (lambda x: x)
    nan = math.nan

    def result(estimate, low, high, low90, high90, method, identical=False) -> Comparison:
        values = [float(back(v)) for v in (estimate, low, high, low90, high90)]
        return Comparison(scale, *values, len(seeds), unpaired, method, identical)

    if seeds:
        a = to_scale(np.array([a_all[s] for s in seeds]))
        b = to_scale(np.array([b_all[s] for s in seeds]))
        d = a - b
        tolerance = RESOLUTION * max(1.0, float(np.max(np.abs(b)))) if not ratio else RESOLUTION
        identical = bool(np.all(np.abs(d) <= tolerance))
        if identical:
            return result(0.0, 0.0, 0.0, 0.0, 0.0, "identical", identical=True)
        if len(seeds) >= 2:
            if len(seeds) < SMALL_SAMPLE:
                low, high = _paired_t(d, CONFIDENCE)
                low90, high90 = _paired_t(d, EQUIVALENCE_CONFIDENCE)
                method = "paired t"
            else:
                low, high = _bootstrap(np.mean, (d,), CONFIDENCE)
                low90, high90 = _bootstrap(np.mean, (d,), EQUIVALENCE_CONFIDENCE)
                method = "paired bootstrap"
            return result(float(np.mean(d)), low, high, low90, high90, method)
    if len(a_all) >= 2 and len(b_all) >= 2:  # too few pairs: every run, unpaired
        a = to_scale(np.array(list(a_all.values())))
        b = to_scale(np.array(list(b_all.values())))
        low, high = _welch(a, b, CONFIDENCE)
        low90, high90 = _welch(a, b, EQUIVALENCE_CONFIDENCE)
        estimate = float(np.mean(a) - np.mean(b))
        return result(estimate, low, high, low90, high90, "Welch t, unpaired")
    if seeds:  # one pair: an estimate, no interval
        d = to_scale(np.array([a_all[seeds[0]]])) - to_scale(np.array([b_all[seeds[0]]]))
        return result(float(d[0]), nan, nan, nan, nan, "")
    return Comparison(scale, nan, nan, nan, nan, nan, 0, unpaired, "", False)


def margin_bounds(scale: Scale, margin: float) -> tuple[float, float]:
    """±margin on the comparison's scale: a difference, or a ratio within [1 - m, 1 + m]."""
    return (-margin, margin) if scale == "difference" else (1.0 - margin, 1.0 + margin)


def kind_of(comparison: Comparison, margin: float, higher_is_better: bool) -> Kind:
    """The one thing a comparison says (see the module's docstring for the order)."""
    if comparison.identical:
        return "identical"
    if math.isnan(comparison.estimate):
        return "no data"
    if not comparison.known:
        return "inconclusive"
    low_margin, high_margin = margin_bounds(comparison.scale, margin)
    if low_margin <= comparison.low90 and comparison.high90 <= high_margin:
        return "equivalent"
    null = comparison.no_change
    if comparison.low > null or comparison.high < null:
        above = comparison.low > null
        return "better" if above == higher_is_better else "worse"
    return "inconclusive"


def stratified_ratio(log_ratios: Sequence[Sequence[float]]) -> tuple[float, ...]:
    """The geometric mean over strata (architectures) of each stratum's ratio, with its 95% and
    90% intervals: (estimate, low, high, low90, high90, method). Strata with no value are left
    out.

    The interval is the stratified percentile bootstrap (each stratum's pairs resampled within
    it, as rliable does for tasks), widened to the stratified t interval (Welch-Satterthwaite
    degrees of freedom) where that is wider: with a handful of seeds per stratum the percentile
    bootstrap is too narrow, as it is for one sample (see `compare`).
    """
    strata = tuple(np.asarray(s, dtype=float) for s in log_ratios if len(s))
    if not strata:
        return (math.nan,) * 5 + ("",)

    def statistic(*samples: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.mean([np.mean(s, axis=axis) for s in samples], axis=0)

    estimate = float(statistic(*strata))
    if any(len(s) < 2 for s in strata) or all(np.ptp(s) == 0 for s in strata):
        return (math.exp(estimate),) + (math.nan,) * 4 + ("",)  # no noise to estimate from
    bounds = {}
    for confidence in (CONFIDENCE, EQUIVALENCE_CONFIDENCE):
        low, high = _bootstrap(statistic, strata, confidence)
        t_low, t_high = _stratified_t(strata, estimate, confidence)
        bounds[confidence] = (min(low, t_low), max(high, t_high))
    (low, high), (low90, high90) = bounds[CONFIDENCE], bounds[EQUIVALENCE_CONFIDENCE]
    values = tuple(math.exp(v) for v in (estimate, low, high, low90, high90))
    return values + ("stratified bootstrap, at least the stratified t",)


def _stratified_t(
    strata: tuple[np.ndarray, ...], estimate: float, confidence: float
) -> tuple[float, float]:
    """The t interval of the mean of stratum means: variance sum(s_i^2 / n_i) / k^2, degrees
    of freedom by Welch-Satterthwaite."""
    k = len(strata)
    parts = np.array([np.var(s, ddof=1) / len(s) for s in strata]) / k**2
    variance = float(parts.sum())
    if variance == 0:
        return estimate, estimate
    dof = variance**2 / float(sum(p**2 / (len(s) - 1) for p, s in zip(parts, strata, strict=True)))
    half = float(stats.t.ppf(0.5 + confidence / 2, dof)) * math.sqrt(variance)
    return estimate - half, estimate + half


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
    a = np.asarray(values, dtype=float)
    a = a[np.isfinite(a)]
    if len(a) < 2:
        mean = float(a.mean()) if len(a) else math.nan
        return Interval(mean, math.nan, math.nan, (len(a), 0))
    if np.ptp(a) == 0:
        return Interval(float(a[0]), float(a[0]), float(a[0]), (len(a), 0))
    if len(a) < SMALL_SAMPLE:
        low, high = stats.ttest_1samp(a, 0.0).confidence_interval(confidence_level=CONFIDENCE)
    else:
        low, high = _bootstrap(np.mean, (a,), CONFIDENCE)
    return Interval(float(a.mean()), float(low), float(high), (len(a), 0))
