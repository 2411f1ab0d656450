"""The statistics behind every verdict, on inputs whose answers are known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.report import verdicts


def test_identical_samples_give_an_interval_around_zero_and_even_odds():
    runs = [0.861, 0.858, 0.866, 0.855, 0.863]
    diff = verdicts.difference(runs, list(runs))
    assert diff.estimate == 0 and diff.low < 0 < diff.high
    assert verdicts.probability_of_improvement(runs, list(runs)) == 0.5
    words = verdicts.quality_words("accuracy", diff, 0.5, "torch", "keras")
    assert words.startswith("accuracy: no detectable difference (Δ +0.000, 95% CI [")


def test_well_separated_samples_exclude_zero_and_one_side_always_wins():
    better = [0.90, 0.91, 0.905, 0.912, 0.899]
    worse = [0.80, 0.81, 0.805, 0.79, 0.802]
    diff = verdicts.difference(better, worse)
    assert diff.low > 0 and diff.estimate == pytest.approx(np.mean(better) - np.mean(worse))
    assert verdicts.probability_of_improvement(better, worse) == 1.0
    assert verdicts.probability_of_improvement(worse, better) == 0.0
    words = verdicts.quality_words("accuracy", diff, 1.0, "torch", "keras")
    assert words.startswith("accuracy: torch better (Δ +0.104, 95% CI [+0.0")
    assert "P(torch better) 1.00, n 5/5 seeds" in words
    # For a metric where lower is better, the same numbers are a loss.
    assert verdicts.probability_of_improvement(better, worse, higher_is_better=False) == 0.0
    lower_better = verdicts.quality_words("perplexity", diff, 0.0, "torch", "keras", False)
    assert lower_better.startswith("perplexity: torch worse")


def test_a_time_ratio_whose_interval_contains_one_reads_no_detectable_difference():
    rng = np.random.default_rng(1)
    a, b = rng.normal(10.0, 1.0, 8), rng.normal(10.0, 1.0, 8)
    r = verdicts.ratio(a, b)
    assert r.low < 1 < r.high
    words = verdicts.ratio_words("time per epoch", r, "torch", "epochs")
    assert words.startswith("no detectable difference in time per epoch")
    assert "faster" not in words and "slower" not in words


def test_a_clearly_faster_backend_is_named_with_its_speedup_interval():
    fast, slow = [5.0, 5.2, 4.9, 5.1], [10.0, 10.3, 9.8, 10.1]
    r = verdicts.ratio(fast, slow)
    assert r.high < 1
    words = verdicts.ratio_words("time per epoch", r, "torch", "epochs")
    assert words.startswith("torch 1.99x faster [")
    assert words.endswith("per epoch (n 4/4 epochs)")
    memory = verdicts.ratio_words(
        "memory", verdicts.ratio([400, 410], [1000, 1010]), "torch", "runs"
    )
    assert memory.startswith("0.40x the memory [")


def test_one_run_a_side_has_no_interval_and_says_so():
    diff = verdicts.difference([0.86], [0.85])
    assert diff.estimate == pytest.approx(0.01) and not diff.known
    assert "not enough runs" in verdicts.quality_words("accuracy", diff, 1.0, "torch", "keras")
    assert verdicts.difference([], [0.85]).n == (0, 1)


def test_the_bootstrap_is_seeded_so_a_report_is_reproducible():
    a, b = [1.0, 2.0, 3.5, 2.2], [1.5, 1.1, 2.8, 2.0]
    assert verdicts.difference(a, b) == verdicts.difference(a, b)


def test_time_to_target_counts_every_epoch_until_the_first_that_reaches_it():
    seconds = [30.0, 20.0, 20.0]
    assert verdicts.time_to_target([0.80, 0.86, 0.87], seconds, 0.85, True) == 50.0
    assert verdicts.time_to_target([0.80, 0.84, 0.845], seconds, 0.85, True) != 50.0
    assert math.isnan(verdicts.time_to_target([0.80, 0.84, 0.845], seconds, 0.85, True))
    assert verdicts.time_to_target([140.0, 95.0], [10.0, 10.0], 100.0, False) == 20.0


def test_with_five_seeds_a_side_a_false_winner_is_as_rare_as_promised():
    """Both sides drawn from one distribution: a 95% interval excludes 0 about 5% of the time.
    The percentile bootstrap did so 17% of the time at n = 5, hence Welch's t there."""
    rng = np.random.default_rng(7)
    draws = 400
    false_winners = sum(
        not verdicts.difference(rng.normal(0.86, 0.01, 5), rng.normal(0.86, 0.01, 5)).contains(0)
        for _ in range(draws)
    )
    assert false_winners / draws <= 0.08


def test_no_spread_on_either_side_gives_no_interval_rather_than_a_certain_one():
    diff = verdicts.difference([0.85, 0.85], [0.84, 0.84])
    assert not diff.known and diff.estimate == pytest.approx(0.01)
    assert verdicts.difference([0.85, 0.85], [0.85, 0.85]).contains(0)
