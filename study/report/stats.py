"""Statistics: the 95% confidence interval of a mean, of one sample or of paired differences matched by seed.

One job: turn a few numbers per seed into an estimate, its interval, n and
the name of the method, with SciPy doing the arithmetic (`ttest_rel`,
`ttest_1samp`, `bootstrap`, `shapiro`). Nothing here knows about runs,
studies or MLflow; `effects.py` and `tables.py` feed it per-seed values.

Which interval (one rule for both functions, stated in every result's `method`):

- n = 0: nothing to estimate. n = 1: the value, no interval (a single seed
  says nothing about the spread between seeds).
- No spread (every value, or every paired difference, the same to 1e-12 of
  its size): the interval is that value, zero wide. That is the t interval's
  own answer (its width t x s / sqrt(n) is 0 when s is 0); SciPy would give a
  0/0 and a precision-loss warning instead. It happens for real: a knob that
  leaves the parameter count unchanged, or two arms that train identically.
- Otherwise a t interval (paired t for differences), the default: exact when
  the differences are normal, and honest (wide) at small n.
- A bootstrap instead only when both hold: n >= BOOTSTRAP_MIN_N (10) and a
  Shapiro-Wilk test rejects normality of the values (differences) at 5%. Then
  BCa, 9,999 resamples, seeded (BOOTSTRAP_SEED), so a report is repeatable;
  percentile if BCa comes out undefined. Below 10 values a bootstrap
  resamples too few distinct numbers for its interval to mean anything (it
  comes out too narrow), and Shapiro-Wilk has next to no power, so the t
  interval stays.

Pairing (`paired_difference`): two samples indexed by seed; only seeds with a
finite value in both are paired, the others are listed in `unpaired` and left
out, and n is the number of pairs.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Mapping, NamedTuple

import numpy as np

from ..lazy import lazy

pd = lazy("pandas")
scipy_stats = lazy("scipy.stats")  # 1.5 s to import: only when an interval needs it

CONFIDENCE = 0.95
BOOTSTRAP_MIN_N = 10
NORMALITY_ALPHA = 0.05
BOOTSTRAP_RESAMPLES = 9_999
BOOTSTRAP_SEED = 0
_SAME = 1e-12  # relative spread below which values count as identical


class Interval(NamedTuple):
    """A mean (of values, or of paired differences a - b) with its confidence interval.

    `low`/`high` are NaN when there is no interval (n < 2). `seeds`: the seeds
    used (the pairs, for a paired difference); `unpaired`: seeds present in only
    one sample (or NaN in one), left out.
    """

    estimate: float
    low: float
    high: float
    n: int
    method: str
    confidence: float = CONFIDENCE
    seeds: tuple = ()
    unpaired: tuple = ()

    @property
    def has_interval(self) -> bool:
        return math.isfinite(self.low) and math.isfinite(self.high)

    def includes(self, value: float) -> bool | None:
        """Whether `value` lies inside the interval (None when there is no interval)."""
        if not self.has_interval:
            return None
        return bool(self.low <= value <= self.high)

    @property
    def excludes_zero(self) -> bool:
        """True only when there is an interval and 0 lies outside it."""
        return self.includes(0.0) is False


def verdict(interval: Interval, higher_is_better: bool = True) -> str:
    """How a report words a difference: "better" / "worse" only when the interval excludes 0, else
    "no measurable effect at n = K" (or why there is no interval at all)."""
    if interval.n == 0:
        return "no paired seeds"
    if not interval.has_interval:
        return f"no interval at n = {interval.n}"
    if not interval.excludes_zero:
        return f"no measurable effect at n = {interval.n}"
    return "better" if (interval.estimate > 0) == higher_is_better else "worse"


def mean_interval(values: Any, confidence: float = CONFIDENCE, bootstrap: bool = True) -> Interval:
    """The mean of `values` (NaN dropped) and its interval: t over the values, or the rule above
    (`bootstrap=False`: always the t interval, for figures that say they draw t intervals).

    `values` may be a pd.Series indexed by seed (the seeds are kept in the result).
    """
    series = _series(values).dropna()
    x = series.to_numpy(dtype=float)
    seeds = tuple(series.index) if isinstance(values, (pd.Series, Mapping)) else ()

    def t_interval():
        return scipy_stats.ttest_1samp(x, 0.0).confidence_interval(confidence_level=confidence)

    return _interval(x, t_interval, "t", confidence, bootstrap)._replace(seeds=seeds)


def paired_difference(a: Any, b: Any, confidence: float = CONFIDENCE) -> Interval:
    """Mean of a[seed] - b[seed] over the seeds both samples have, with its interval (paired t, or the
    rule above). `a` and `b`: pd.Series or mappings seed -> value; a seed given twice in one sample
    is a ValueError (average replicates of a seed first)."""
    sa, sb = _series(a).dropna(), _series(b).dropna()
    for name, s in (("a", sa), ("b", sb)):
        if s.index.has_duplicates:
            twice = sorted({str(k) for k in s.index[s.index.duplicated()]})
            raise ValueError(f"paired_difference: sample {name} has seed(s) {', '.join(twice)} more than once")
    every = set(_series(a).index) | set(_series(b).index)
    paired = _sorted(set(sa.index) & set(sb.index))
    unpaired = tuple(_sorted(every - set(paired)))
    x = sa.loc[paired].to_numpy(dtype=float)
    y = sb.loc[paired].to_numpy(dtype=float)

    def t_interval():
        return scipy_stats.ttest_rel(x, y).confidence_interval(confidence_level=confidence)

    return _interval(x - y, t_interval, "paired t", confidence)._replace(seeds=tuple(paired), unpaired=unpaired)


def _interval(sample: np.ndarray, t_interval, t_name: str, confidence: float, bootstrap: bool = True) -> Interval:
    """The rule of the module docstring over `sample` (values or differences); `t_interval()` gives
    SciPy's t interval of the same mean; `bootstrap=False` keeps to it."""
    n = len(sample)
    nan = float("nan")
    if n == 0:
        return Interval(nan, nan, nan, 0, "none (no values)", confidence)
    mean = float(np.mean(sample))
    if n == 1:
        return Interval(mean, nan, nan, 1, "none (n = 1: no spread between seeds to estimate)", confidence)
    if float(np.max(np.abs(sample - mean))) <= _SAME * max(1.0, abs(mean)):
        return Interval(mean, mean, mean, n, "none needed: the same value at every seed (zero spread)", confidence)
    if bootstrap and n >= BOOTSTRAP_MIN_N:
        p = float(scipy_stats.shapiro(sample).pvalue)
        if p < NORMALITY_ALPHA:
            low, high, how = _bootstrap(sample, confidence)
            return Interval(mean, low, high, n, f"bootstrap {how} ({BOOTSTRAP_RESAMPLES:,} resamples, seed "
                                                f"{BOOTSTRAP_SEED}; Shapiro-Wilk p = {p:.3g} < {NORMALITY_ALPHA})",
                            confidence)
    ci = t_interval()
    return Interval(mean, float(ci.low), float(ci.high), n, f"{t_name} (df = {n - 1})", confidence)


def _bootstrap(sample: np.ndarray, confidence: float) -> tuple[float, float, str]:
    for method in ("BCa", "percentile"):
        with warnings.catch_warnings():
            # BCa warns (and gives NaN) when its acceleration is undefined: percentile is the fallback.
            warnings.simplefilter("ignore", scipy_stats.DegenerateDataWarning)
            result = scipy_stats.bootstrap((sample,), np.mean, confidence_level=confidence, method=method,
                                     n_resamples=BOOTSTRAP_RESAMPLES, rng=np.random.default_rng(BOOTSTRAP_SEED))
        low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
        if math.isfinite(low) and math.isfinite(high):
            return low, high, method
    return float("nan"), float("nan"), "undefined"


def _series(values: Any) -> pd.Series:
    if isinstance(values, pd.Series):
        return values.astype(float)
    if isinstance(values, Mapping):
        return pd.Series({k: float(v) for k, v in values.items()}, dtype=float)
    return pd.Series(np.asarray(values, dtype=float))


def _sorted(keys) -> list:
    try:
        return sorted(keys)
    except TypeError:
        return sorted(keys, key=str)
