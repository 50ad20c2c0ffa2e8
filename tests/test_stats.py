"""The report's statistics (study/report/stats.py) against cases worked out by hand.

Expected intervals use t quantiles from a printed table (t(0.975, 4) = 2.776, t(0.975, 1) = 12.706),
not SciPy, so a wrong call into SciPy (a one-sided interval, the wrong df, an unpaired test) shows.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest

from study.report import stats
from study.report.stats import mean_interval, paired_difference, verdict

T_975_4 = 2.776  # t table, 0.975 quantile, 4 degrees of freedom
T_975_1 = 12.706  # 1 degree of freedom


@pytest.fixture(autouse=True)
def _no_warnings():
    """No case here may emit a warning (a NaN warning from a zero variance, SciPy's precision loss)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def test_paired_t_interval_by_hand():
    # 5 seeds; differences 0.010, 0.005, 0.015, 0.005, 0.015: mean 0.010, sample sd 0.005
    a = pd.Series([0.970, 0.980, 0.990, 0.960, 0.975], index=[0, 1, 2, 3, 4])
    b = pd.Series([0.960, 0.975, 0.975, 0.955, 0.960], index=[0, 1, 2, 3, 4])
    half = T_975_4 * 0.005 / math.sqrt(5)  # 0.0062073
    r = paired_difference(a, b)
    assert r.n == 5 and r.seeds == (0, 1, 2, 3, 4) and r.unpaired == ()
    assert r.estimate == pytest.approx(0.010)
    assert r.low == pytest.approx(0.010 - half, abs=2e-6) and r.high == pytest.approx(0.010 + half, abs=2e-6)
    assert r.method == "paired t (df = 4)" and r.confidence == 0.95
    # a clearly positive effect: the interval lies above zero
    assert r.excludes_zero and verdict(r) == "better" and verdict(r, higher_is_better=False) == "worse"
    # the pairing matters: the same numbers unpaired (seeds shuffled in b) give another interval
    shuffled = paired_difference(a, pd.Series(b.to_numpy()[::-1], index=b.index))
    assert shuffled.estimate == pytest.approx(0.010) and shuffled.high - shuffled.low != pytest.approx(2 * half)


def test_a_knob_with_no_effect_includes_zero():
    base = pd.Series([0.981, 0.984, 0.979, 0.986, 0.982], index=range(5))
    arm = base + np.array([-0.004, 0.002, 0.0, -0.002, 0.004])  # symmetric around 0
    r = paired_difference(arm, base)
    assert r.estimate == pytest.approx(0.0, abs=1e-12)
    sd = math.sqrt((0.004**2 * 2 + 0.002**2 * 2) / 4)
    assert r.high == pytest.approx(T_975_4 * sd / math.sqrt(5), abs=2e-6)
    assert r.low < 0 < r.high and r.includes(0.0) and not r.excludes_zero
    assert verdict(r) == "no measurable effect at n = 5"


def test_only_seeds_in_both_samples_are_paired():
    a = {0: 0.90, 1: 0.91, 2: float("nan"), 3: 0.93, 4: 0.95, 5: 0.96}  # seed 2 NaN: not a measurement
    b = {0: 0.89, 1: 0.90, 2: 0.80, 3: 0.91, 7: 0.99}
    r = paired_difference(a, b)
    assert r.n == 3 and r.seeds == (0, 1, 3) and r.unpaired == (2, 4, 5, 7)
    assert r.estimate == pytest.approx((0.01 + 0.01 + 0.02) / 3)
    # differences 0.01, 0.01, 0.02: sd 0.005774, t(0.975, 2) = 4.303: half-width 0.01434 > the mean
    assert r.high - r.estimate == pytest.approx(4.303 * 0.0057735 / math.sqrt(3), abs=2e-6)
    assert verdict(r) == "no measurable effect at n = 3"
    with pytest.raises(ValueError, match="seed\\(s\\) 1 more than once"):
        paired_difference(pd.Series([0.9, 0.91, 0.92], index=[0, 1, 1]), pd.Series([0.9, 0.9], index=[0, 1]))


def test_zero_spread_gives_that_value_without_warnings():
    # a knob that adds 4,862 parameters whatever the seed: the difference is exact
    r = paired_difference({s: 61706 for s in range(5)}, {s: 56844 for s in range(5)})
    assert (r.estimate, r.low, r.high, r.n) == (4862, 4862, 4862, 5)
    assert "zero spread" in r.method and r.excludes_zero and verdict(r, higher_is_better=False) == "worse"
    # two arms that train identically (floating-point noise only): difference 0, no effect
    base = np.array([0.9812, 0.9790, 0.9833])
    same = paired_difference(base + 1e-17, base)
    assert same.low == same.high == same.estimate and abs(same.estimate) < 1e-15
    assert verdict(same) == "no measurable effect at n = 3"
    flat = mean_interval([0.9871, 0.9871, 0.9871])
    assert flat.low == flat.high == pytest.approx(0.9871) and flat.includes(0.9871)


def test_too_few_values():
    one = paired_difference({0: 0.99}, {0: 0.98, 1: 0.97})
    assert one.n == 1 and one.estimate == pytest.approx(0.01) and not one.has_interval
    assert one.unpaired == (1,) and verdict(one) == "no interval at n = 1" and one.includes(0.0) is None
    none = paired_difference({0: 0.99}, {1: 0.97})
    assert none.n == 0 and math.isnan(none.estimate) and verdict(none) == "no paired seeds"
    assert mean_interval([]).n == 0 and not mean_interval([0.5]).has_interval


def test_mean_interval_by_hand():
    r = mean_interval(pd.Series([0.985, 0.987], index=[3, 4]))  # mean 0.986, sd 0.0014142, n 2
    assert r.seeds == (3, 4) and r.method == "t (df = 1)"
    assert r.estimate == pytest.approx(0.986)
    half = T_975_1 * math.sqrt(2e-6) / math.sqrt(2)  # 0.012706
    assert r.low == pytest.approx(0.986 - half, abs=1e-5) and r.high == pytest.approx(0.986 + half, abs=1e-5)
    five = mean_interval([0.97, 0.98, 0.99, 0.96, 0.975, float("nan")])  # NaN dropped: n = 5
    sd = float(np.std([0.97, 0.98, 0.99, 0.96, 0.975], ddof=1))
    assert five.n == 5 and five.high - five.estimate == pytest.approx(T_975_4 * sd / math.sqrt(5), rel=2e-4)
    assert five.includes(0.975) and not five.includes(0.99)
    wider = mean_interval([0.97, 0.98, 0.99, 0.96, 0.975], confidence=0.99)
    assert wider.low < five.low and wider.high > five.high and wider.confidence == 0.99


def test_bootstrap_only_for_many_values_far_from_normal():
    rng = np.random.default_rng(1)
    base = pd.Series(rng.normal(0.98, 0.002, 20))
    # 17 seeds barely change, 3 jump: far from normal (Shapiro-Wilk p ~ 1e-7), n = 20
    skewed = base + np.r_[np.full(17, 0.001), 0.05, 0.06, 0.08]
    r = paired_difference(skewed, base)
    assert r.method.startswith("bootstrap BCa (9,999 resamples, seed 0; Shapiro-Wilk p = ")
    assert r.low < r.estimate < r.high and r.low > 0.001 - 1e-9 and r.high < 0.08
    assert paired_difference(skewed, base) == r  # seeded: the same interval every time
    # the same shape with 5 seeds: too few for a bootstrap, a paired t
    small = paired_difference(skewed[:4].tolist() + [skewed[19]], base[:4].tolist() + [base[19]])
    assert small.method == "paired t (df = 4)"
    # 20 roughly normal differences: the paired t
    normal = paired_difference(base + rng.normal(0.003, 0.001, 20), base)
    assert normal.method == "paired t (df = 19)" and normal.excludes_zero
    assert stats.BOOTSTRAP_MIN_N == 10 and stats.NORMALITY_ALPHA == 0.05


# --------------------------------------------------------------------------- intervals of bounded values


def test_accuracy_means_keep_their_interval_inside_0_and_1():
    # three SGD trials at 0.11-0.72: the t interval runs from -0.32 to 1.21, which says nothing
    values = [0.11, 0.50, 0.72]
    plain = mean_interval(values)
    assert plain.low < 0 and plain.high > 1
    r = mean_interval(values, bounds=stats.ACCURACY_BOUNDS)
    assert r.method == "t on the logit scale (df = 2)" and r.estimate == pytest.approx(0.443333)
    # by hand: the t half-width 4.303 x 0.30892 / sqrt(3) = 0.76753 over p(1 - p) = 0.24679 on the logit scale
    centre, half = math.log(0.443333 / 0.556667), 4.3027 * 0.308923 / math.sqrt(3) / (0.443333 * 0.556667)
    assert r.low == pytest.approx(1 / (1 + math.exp(-(centre - half))), abs=1e-4)
    assert r.high == pytest.approx(1 / (1 + math.exp(-(centre + half))), abs=1e-4)
    assert 0 < r.low < r.estimate < r.high < 1
    # tight accuracies: the same as the t interval, to within a small fraction of its width
    tight = [0.9810, 0.9790, 0.9795, 0.9805, 0.9800]
    t, logit = mean_interval(tight), mean_interval(tight, bounds=(0, 1))
    assert logit.low == pytest.approx(t.low, abs=0.03 * (t.high - t.low))
    assert logit.high == pytest.approx(t.high, abs=0.03 * (t.high - t.low))
    assert mean_interval([0.98, 0.98], bounds=(0, 1)).low == pytest.approx(0.98)  # no spread
    assert not mean_interval([0.98], bounds=(0, 1)).has_interval
    with pytest.raises(ValueError, match="outside the bounds"):
        mean_interval([0.5, 1.2], bounds=(0, 1))


@pytest.mark.parametrize("a,b", [(2.0, 2.0), (98.0, 2.0)])
def test_bounded_interval_covers_the_true_mean_by_simulation(a, b):
    """Three accuracies per study from Beta(a, b) (spread out like the SGD trials, or near the top): the
    logit-scale interval covers the true mean 93-97% of the time and never leaves [0, 1]."""
    rng = np.random.default_rng(7)
    samples = rng.beta(a, b, (2000, 3))
    true = a / (a + b)
    found = [mean_interval(x, bounds=(0, 1)) for x in samples]
    low, high = np.array([r.low for r in found]), np.array([r.high for r in found])
    assert 0.93 <= np.mean((low <= true) & (true <= high)) <= 0.97
    assert (low >= 0).all() and (high <= 1).all()
