"""The statistics of the search benchmark (study/bench/compare.py), on synthetic numbers with a known answer."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from study.bench.compare import (anytime_band, best_so_far, expected_max, expected_max_curve, p_beat,
                                 paired_wilcoxon, wins)


@pytest.mark.parametrize("values", [[0.91, 0.95, 0.93, 0.97, 0.90, 0.96], [0.5, 0.5, 0.7, 0.7, 0.6]])
def test_expected_max_is_the_mean_maximum_over_every_subset(values):
    """Brute force: the maximum of every n-subset, averaged, is what the estimator gives (ties included)."""
    for n in range(1, len(values) + 1):
        brute = np.mean([max(c) for c in itertools.combinations(values, n)])
        assert expected_max(values, n) == pytest.approx(brute, abs=1e-12)


def test_expected_max_matches_simulated_random_searches():
    """Simulation: n trials drawn without replacement from a pool of N observed ones, many times."""
    rng = np.random.default_rng(1)
    pool = rng.beta(50, 2, size=30)  # validation accuracies near 0.96
    for n in (1, 3, 10, 30):
        draws = [rng.choice(pool, size=n, replace=False).max() for _ in range(20_000)]
        assert expected_max(pool, n) == pytest.approx(np.mean(draws), abs=3 * np.std(draws) / math.sqrt(20_000) + 1e-9)
    curve = expected_max_curve(list(pool) + [math.nan])  # a failed trial is left out
    assert len(curve) == 30 and curve[0] == pytest.approx(pool.mean()) and curve[-1] == pytest.approx(pool.max())
    assert np.all(np.diff(curve) >= -1e-12)  # more trials never lower the expected best
    with pytest.raises(ValueError):
        expected_max(pool, 31)


def test_best_so_far_and_the_band_over_seeds():
    curve = best_so_far([3.0, 1.0, 2.0, 5.0], [0.90, math.nan, 0.95, 0.93], [0, 1, 2, 3, 4, 10])
    assert np.isnan(curve[:2]).all() and list(curve[2:]) == [0.95, 0.95, 0.95, 0.95]
    grid = [1, 2, 3]
    band = anytime_band([np.array([0.1, 0.2, 0.3]), np.array([0.2, 0.4, np.nan]), np.array([0.3, 0.6, np.nan])],
                        grid)
    assert list(band.median[:2]) == [0.2, 0.4] and band.low[0] == pytest.approx(0.15)
    assert band.high[1] == pytest.approx(0.5) and np.isnan(band.median[2])  # 1 seed of 3 left: no median


def test_p_beat_counts_ties_as_halves_and_its_interval_covers_the_truth():
    assert list(wins([0.9, 0.8, 0.7, math.nan], [0.8, 0.8, 0.9, 0.5])) == [1.0, 0.5, 0.0]
    one = p_beat([0.99] * 5, [0.98] * 5)
    assert (one.p, one.low, one.high, one.n) == (1.0, 1.0, 1.0, 5)  # nothing to resample
    # Coverage by simulation: seeds on which a beats b with probability 0.7.
    rng = np.random.default_rng(0)
    covered, trials = 0, 200
    for i in range(trials):
        a_wins = rng.random(20) < 0.7
        beat = p_beat(a_wins.astype(float), np.full(20, 0.5), seed=i)
        assert beat.low <= beat.p <= beat.high
        covered += beat.low <= 0.7 <= beat.high
    assert covered / trials > 0.85  # a 95% percentile interval at n = 20 covers a little under 95%
    assert p_beat([0.9, 0.8], [0.8, 0.9]).text() == "0.50 [0.00, 1.00]"


def test_paired_wilcoxon_is_scipys_and_says_when_it_cannot_be_computed():
    from scipy.stats import wilcoxon

    a = [0.991, 0.992, 0.990, 0.993, 0.994, 0.989, 0.995]
    b = [0.990, 0.990, 0.991, 0.990, 0.991, 0.990, 0.990]
    test = paired_wilcoxon(a, b)
    assert test.p == pytest.approx(wilcoxon(a, b).pvalue) and test.n == 7
    assert test.median_difference == pytest.approx(0.002)
    tied = paired_wilcoxon([0.9, 0.9], [0.9, 0.9])
    assert math.isnan(tied.p) and tied.text() == "not computed (every seed tied)"


def test_the_trials_panel_never_rises_where_shorter_seeds_drop_out():
    """Seeds that ran different numbers of trials: the median best-so-far against trials is drawn only where
    every seed has a point, so it never gets worse (the longer seeds here are the worse ones)."""
    import numpy as np

    from study.bench.searches import Searched, curves

    found = {"optuna": []}
    for seed, values in enumerate(([0.90, 0.95, 0.97], [0.90, 0.95, 0.97, 0.97], [0.5, 0.6, 0.6, 0.6, 0.6, 0.7],
                                   [0.5, 0.6, 0.6, 0.6, 0.6, 0.7, 0.7])):
        s = Searched("optuna", seed, f"run{seed}", 0.0, 60.0)
        s.values = np.array(values)
        s.times = np.arange(1, len(values) + 1) * 10.0
        s.trials = len(values)
        found["optuna"].append(s)
    band = curves(found, 100.0).by_trials["optuna"]
    drawn = band.median[np.isfinite(band.median)]
    assert len(drawn) == 3  # up to the shortest seed's last trial
    assert np.all(np.diff(drawn) >= 0)
