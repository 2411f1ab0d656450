"""The verdict's statistics against known answers: scipy's paired t, TOST on constructed samples,
and simulations of the two promises (false better/worse and false equivalence at most 5%)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from harness.report import verdicts
from harness.report.clauses import OVERALL, Clause


def seeds(values) -> dict[int, float]:
    return dict(enumerate(values))


def test_the_paired_interval_is_scipys_paired_t():
    a = [0.861, 0.855, 0.870, 0.866, 0.859]
    b = [0.850, 0.851, 0.862, 0.860, 0.849]
    found = verdicts.compare(seeds(a), seeds(b), "difference")
    expected = stats.ttest_rel(a, b).confidence_interval(confidence_level=0.95)
    assert (found.low, found.high) == pytest.approx((expected.low, expected.high))
    ninety = stats.ttest_rel(a, b).confidence_interval(confidence_level=0.90)
    assert (found.low90, found.high90) == pytest.approx((ninety.low, ninety.high))
    assert found.method == "paired t" and found.pairs == 5


def test_pairing_removes_the_seed_to_seed_spread():
    """Seeds that differ a lot from each other but the same on both sides plus a constant-ish
    shift: the unpaired interval spans 0, the paired one does not."""
    base = [0.80, 0.84, 0.88, 0.82, 0.86]
    shift = [0.004, 0.005, 0.006, 0.004, 0.006]
    contender = [b + s for b, s in zip(base, shift, strict=True)]
    paired = verdicts.compare(seeds(contender), seeds(base), "difference")
    unpaired = stats.ttest_ind(contender, base, equal_var=False).confidence_interval()
    assert unpaired.low < 0 < unpaired.high
    assert paired.low > 0
    assert verdicts.kind_of(paired, margin=0.001, higher_is_better=True) == "better"


def test_equal_runs_on_every_seed_are_identical():
    values = seeds([0.51, 0.705, 0.685])
    found = verdicts.compare(values, dict(values), "difference")
    assert found.identical and verdicts.kind_of(found, 0.005, True) == "identical"
    clause = Clause.of(
        found,
        architecture="lstm",
        contender="keras",
        baseline="torch",
        metric="accuracy",
        margin=0.005,
        higher_is_better=True,
    )
    assert clause.words() == "accuracy: identical on every seed (n 3/3)"


def test_tost_on_constructed_samples():
    """Differences of mean 0.001 with a small spread lie inside ±0.005 at 90%; the same
    differences against a margin of 0.001 do not, and their 95% interval spans 0."""
    d = np.array([0.0010, 0.0030, -0.0010, 0.0020, 0.0000])
    base = np.full(5, 0.85)
    inside = verdicts.compare(seeds(base + d), seeds(base), "difference")
    assert verdicts.kind_of(inside, 0.005, True) == "equivalent"
    assert verdicts.kind_of(inside, 0.001, True) == "inconclusive"
    assert inside.low90 > -0.005 and inside.high90 < 0.005


def test_ratios_are_paired_on_the_log_scale_with_a_relative_margin():
    base = np.array([10.0, 12.0, 9.0, 11.0, 10.5])
    slower = verdicts.compare(seeds(base * 1.5 * [1, 1.01, 0.99, 1, 1.02]), seeds(base), "ratio")
    assert slower.estimate == pytest.approx(1.5, rel=0.02)
    assert verdicts.kind_of(slower, 0.05, higher_is_better=False) == "worse"
    same = verdicts.compare(seeds(base * [1.01, 0.99, 1.0, 1.005, 0.995]), seeds(base), "ratio")
    assert verdicts.kind_of(same, 0.05, higher_is_better=False) == "equivalent"


def test_seeds_without_a_partner_are_left_out_and_counted():
    found = verdicts.compare({0: 1.0, 1: 1.1, 2: 1.2, 3: 5.0}, {0: 1.0, 1: 1.0, 2: 1.1}, "ratio")
    assert found.pairs == 3 and found.unpaired == (1, 0)


def test_too_few_pairs_falls_back_to_welch_and_says_so():
    found = verdicts.compare({0: 0.80, 1: 0.82}, {2: 0.79, 3: 0.81}, "difference")
    expected = stats.ttest_ind([0.80, 0.82], [0.79, 0.81], equal_var=False).confidence_interval()
    assert found.method == "Welch t, unpaired"
    assert (found.low, found.high) == pytest.approx((expected.low, expected.high))


def test_no_spread_in_the_differences_gives_no_interval_rather_than_a_certain_one():
    found = verdicts.compare(seeds([0.85, 0.86]), seeds([0.84, 0.85]), "difference")
    assert not found.known and found.estimate == pytest.approx(0.01)
    assert verdicts.kind_of(found, 0.005, True) == "inconclusive"


def test_nothing_to_compare_is_no_data():
    found = verdicts.compare({}, seeds([0.85]), "difference")
    assert verdicts.kind_of(found, 0.005, True) == "no data"


def test_at_five_pairs_a_false_better_or_worse_is_at_most_five_percent():
    """Nothing differs: the paired differences are noise around 0. The 95% paired t interval
    excludes 0 in 5% of draws in theory; 4,000 seeded draws, allowing 3 binomial standard
    errors (0.34 points) above 5%."""
    rng = np.random.default_rng(11)
    draws = 4000
    base = rng.normal(0.86, 0.02, (draws, 5))
    noise = rng.normal(0.0, 0.004, (draws, 5))
    false = sum(
        verdicts.kind_of(verdicts.compare(seeds(b + e), seeds(b), "difference"), 0.005, True)
        in ("better", "worse")
        for b, e in zip(base, noise, strict=True)
    )
    assert false / draws <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / draws)


def test_when_the_true_difference_equals_the_margin_a_false_equivalent_is_at_most_five_percent():
    rng = np.random.default_rng(12)
    draws = 4000
    margin = 0.005
    base = rng.normal(0.86, 0.02, (draws, 5))
    shifted = base + margin + rng.normal(0.0, 0.003, (draws, 5))
    false = sum(
        verdicts.kind_of(verdicts.compare(seeds(s), seeds(b), "difference"), margin, True)
        == "equivalent"
        for s, b in zip(shifted, base, strict=True)
    )
    assert false / draws <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / draws)


def test_the_stratified_line_pools_architectures_and_resamples_within_each():
    strata = [np.log([1.9, 2.1, 2.0]), np.log([0.5, 0.52, 0.49]), np.log([1.0, 1.02, 0.98])]
    estimate, low, high, low90, high90, method = verdicts.stratified_ratio(strata)
    expected = math.exp(np.mean([np.mean(s) for s in strata]))
    assert estimate == pytest.approx(expected)
    assert low < low90 < estimate < high90 < high
    assert verdicts.stratified_ratio(strata)[:5] == (estimate, low, high, low90, high90)  # seeded
    # At 3 seeds an architecture the percentile bootstrap alone is too narrow: the interval is
    # at least the stratified t's (Welch-Satterthwaite).
    k = len(strata)
    variance = sum(np.var(s, ddof=1) / len(s) for s in strata) / k**2
    assert math.log(high) - math.log(estimate) >= 1.96 * math.sqrt(variance)
    assert "bootstrap" in method


def test_the_stratified_line_covers_as_promised_at_five_seeds():
    """Four architectures, five seeds each, no true difference: the pooled 95% interval
    excludes no change in at most 5% of 400 seeded draws (3 standard errors allowed)."""
    rng = np.random.default_rng(13)
    draws = 400
    misses = 0
    for _ in range(draws):
        strata = [rng.normal(0.0, 0.05, 5) for _ in range(4)]
        _, low, high, *_ = verdicts.stratified_ratio(strata)
        misses += not (low <= 1.0 <= high)
    assert misses / draws <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / draws)


def test_clause_words_say_one_kind_and_name_busy_runs():
    compared = verdicts.compare(seeds([2.0, 2.1, 2.05]), seeds([1.0, 1.02, 1.01]), "ratio")
    clause = Clause.of(
        compared,
        architecture="gru",
        contender="keras",
        baseline="torch",
        metric="time per epoch",
        margin=0.05,
        higher_is_better=False,
        contended=("gru/keras retrain seed 1",),
    )
    words = clause.words()
    assert words.startswith("time per epoch: keras 2.0") and "x slower [" in words
    assert "busy machine: gru/keras retrain seed 1" in words
    assert "no detectable difference" not in words
    assert clause.as_row()["kind"] == "worse" and clause.architecture != OVERALL
