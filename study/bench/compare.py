"""Statistics of a study of searches (`bench --only search`): numbers in, numbers out, nothing trained or drawn.

- `best_so_far` and `anytime_band`: each search's best validation accuracy so far against wall time or
  trials, and the median with its interquartile band over seeds;
- `expected_max`: Dodge et al. (2019)'s expected maximum validation accuracy of n random trials;
- `p_beat`: the probability that one search beats another on a seed, with a bootstrap 95% CI
  (scipy.stats.bootstrap), and `paired_wilcoxon` (scipy.stats.wilcoxon), both paired by seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..lazy import lazy

scipy_stats = lazy("scipy.stats")

BOOTSTRAP_RESAMPLES = 9999


def expected_max(values: Sequence[float], n: int) -> float:
    """The expected maximum of `n` trials drawn without replacement from the `values` observed (N of them).

    Dodge, Gururangan, Card, Schwartz and Smith (2019), "Show Your Work: Improved Reporting of
    Experimental Results", EMNLP, section 3: the expected validation performance as a function of the
    number of hyperparameter trials. With the values sorted, v_(1) <= ... <= v_(N), the largest of a random
    n-subset is v_(i) with probability C(i-1, n-1) / C(N, n) (the other n-1 come from the i-1 below it), so

        E[max of n] = sum_i v_(i) C(i-1, n-1) / C(N, n),

    the unbiased estimator of the expected maximum of n trials from the same search (without replacement;
    the paper's first formula draws with replacement and is biased low for n near N). Ties need no care:
    the sum is the mean of the maximum over all C(N, n) subsets. NaNs (failed trials) are left out;
    n must be 1..N.
    """
    v = np.sort(np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=float))
    big_n = len(v)
    if not 1 <= n <= big_n:
        raise ValueError(f"n={n}: give 1..{big_n} (the finite values observed)")
    total = math.comb(big_n, n)
    weights = np.array([math.comb(i - 1, n - 1) / total for i in range(1, big_n + 1)])
    return float(np.dot(weights, v))


def expected_max_curve(values: Sequence[float]) -> np.ndarray:
    """expected_max(values, n) for n = 1..N (N finite values); empty when there are none."""
    finite = [x for x in values if x is not None and math.isfinite(x)]
    return np.array([expected_max(finite, n) for n in range(1, len(finite) + 1)])


def best_so_far(xs: Sequence[float], values: Sequence[float], grid: Sequence[float]) -> np.ndarray:
    """The best of `values` whose x (wall time, or trial number) is at most each point of `grid`; NaN before
    the first finite one. Non-finite values (failed trials) never count."""
    order = np.argsort(np.asarray(xs, dtype=float), kind="stable")
    x = np.asarray(xs, dtype=float)[order]
    v = np.asarray(values, dtype=float)[order]
    v = np.where(np.isfinite(v), v, -np.inf)
    running = np.maximum.accumulate(v) if len(v) else v
    idx = np.searchsorted(x, np.asarray(grid, dtype=float), side="right") - 1
    out = np.where(idx >= 0, running[np.clip(idx, 0, None)] if len(v) else -np.inf, -np.inf)
    return np.where(np.isfinite(out), out, np.nan)


@dataclass(frozen=True)
class Band:
    """The median and interquartile band over seeds at each point of a grid (NaN where too few seeds have a
    value there: see anytime_band)."""

    grid: np.ndarray
    median: np.ndarray
    low: np.ndarray
    high: np.ndarray


def anytime_band(curves: Sequence[np.ndarray], grid: Sequence[float], min_share: float = 0.5) -> Band:
    """Median and quartiles over seeds of curves on one grid (best_so_far of each seed), where at least
    `min_share` of the seeds have a value (1.0 against time: a median that gains a seed can only jump)."""
    grid = np.asarray(grid, dtype=float)
    if not len(curves):
        nan = np.full(len(grid), np.nan)
        return Band(grid, nan, nan, nan)
    stacked = np.vstack([np.asarray(c, dtype=float) for c in curves])
    enough = np.sum(np.isfinite(stacked), axis=0) >= min_share * len(curves)
    quartiles = np.full((3, len(grid)), np.nan)
    if enough.any():
        quartiles[:, enough] = np.nanpercentile(stacked[:, enough], [25, 50, 75], axis=0)
    return Band(grid, quartiles[1], quartiles[0], quartiles[2])


@dataclass(frozen=True)
class Beat:
    """P(a > b) on a seed: the share of seeds a wins (a tie counts a half), its bootstrap 95% CI, n seeds."""

    p: float
    low: float
    high: float
    n: int

    def text(self) -> str:
        return f"{self.p:.2f} [{self.low:.2f}, {self.high:.2f}]"


def wins(a: Sequence[float], b: Sequence[float]) -> np.ndarray:
    """Per seed: 1 where a > b, 0.5 where they tie, 0 where a < b; seeds where either is NaN left out."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    keep = np.isfinite(a) & np.isfinite(b)
    return np.where(a[keep] > b[keep], 1.0, np.where(a[keep] == b[keep], 0.5, 0.0))


def p_beat(a: Sequence[float], b: Sequence[float], confidence: float = 0.95, seed: int = 0) -> Beat:
    """P(a > b) on a seed (pairs by position), with a percentile bootstrap CI over seeds
    (scipy.stats.bootstrap, seeded: the same numbers give the same interval). With one seed, or when
    every seed gives the same outcome, the interval is that outcome: there is nothing to resample."""
    w = wins(a, b)
    if len(w) == 0:
        return Beat(math.nan, math.nan, math.nan, 0)
    p = float(w.mean())
    if len(w) < 2 or np.all(w == w[0]):
        return Beat(p, p, p, len(w))
    ci = scipy_stats.bootstrap((w,), np.mean, confidence_level=confidence, n_resamples=BOOTSTRAP_RESAMPLES,
                               method="percentile", rng=np.random.default_rng(seed)).confidence_interval
    return Beat(p, float(ci.low), float(ci.high), len(w))


@dataclass(frozen=True)
class Wilcoxon:
    """A paired two-sided Wilcoxon signed-rank test of a against b over seeds: its statistic and p-value
    (NaN, with a note, when it cannot be computed), the median difference a − b and the seeds used."""

    statistic: float
    p: float
    median_difference: float
    n: int
    note: str = ""

    def text(self) -> str:
        if not math.isfinite(self.p):
            return f"not computed ({self.note})"
        return f"W = {self.statistic:g}, p = {self.p:.3g} (n = {self.n}, median difference {self.median_difference:+.4f})"


def paired_wilcoxon(a: Sequence[float], b: Sequence[float]) -> Wilcoxon:
    """scipy.stats.wilcoxon(a, b), two-sided, over the seeds where both are finite; seeds with equal values
    are dropped as the test's default ("wilcox") does."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    keep = np.isfinite(a) & np.isfinite(b)
    d = a[keep] - b[keep]
    median = float(np.median(d)) if len(d) else math.nan
    if np.count_nonzero(d) == 0:
        return Wilcoxon(math.nan, math.nan, median, len(d), "every seed tied" if len(d) else "no seed")
    result = scipy_stats.wilcoxon(a[keep], b[keep], alternative="two-sided")
    return Wilcoxon(float(result.statistic), float(result.pvalue), median, len(d))
