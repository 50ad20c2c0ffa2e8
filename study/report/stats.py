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

Bounded values (`mean_interval(..., bounds=(0, 1))`, every mean of accuracies):
a mean of values that cannot leave [low, high] gets an interval that cannot
either. A t interval of a few spread-out accuracies does (three SGD trials at
0.11-0.72 gave the default study's knob figures -0.35 to 1.40), and it covers
the true mean less often than it says when the values are skewed. Where the t
interval would be used, the interval is the same t interval carried to the
logit scale around the mean (its half-width divided by p(1 - p), the delta
method) and mapped back: it lies inside the bounds, contains the mean, is
asymmetric towards the far bound, and comes to the t interval itself as the
spread shrinks. Its `method` says "t on the logit scale". (A bootstrap
interval, the rule above, lies between the smallest and largest value already.)

What an effect means (`paired_effect`, for every paired comparison a report
makes: ablation arms, documented variants, and any later kind of study):
beside the mean difference and its 95% interval,

- the minimum detectable effect (MDE) at the study's n: the true difference a
  two-sided paired t test at 5% finds with 80% power, given the observed SD of
  the paired differences: statsmodels' `TTestPower().solve_power(nobs=n,
  alpha=0.05, power=0.8)` (an effect size in SD units) times that SD. That SD
  is an estimate too: at n = 5 a true effect the size of the MDE a study
  prints is found about 69% of the time on average, not 80% (the SD of five
  differences comes out below the true one more often than not; the
  simulations in tests/test_stats.py check both rates);
- with an equivalence margin declared before the study, two one-sided tests
  (TOST, statsmodels' `ttost_paired`, each at 5%): "equivalent within
  ±margin" when both reject, which is the 90% paired t interval lying inside
  (-margin, +margin).

Both assume the t model (normal differences), also where the 95% interval is
a bootstrap by the rule above.

The verdict: "better" / "worse" when the 95% interval excludes 0 (and the
difference is not shown to lie within the margin); "equivalent within
±margin" when TOST says so; otherwise "inconclusive: an effect up to MDE could
hide at n = K". A difference is never read as "no effect" from an interval
that merely includes 0.
"""

from __future__ import annotations

import functools
import math
import warnings
from typing import Any, Callable, Mapping, NamedTuple

import numpy as np

from ..lazy import lazy

pd = lazy("pandas")
scipy_stats = lazy("scipy.stats")  # 1.5 s to import: only when an interval needs it
scipy_special = lazy("scipy.special")
statsmodels_power = lazy("statsmodels.stats.power")
statsmodels_weightstats = lazy("statsmodels.stats.weightstats")

CONFIDENCE = 0.95
BOOTSTRAP_MIN_N = 10
NORMALITY_ALPHA = 0.05
BOOTSTRAP_RESAMPLES = 9_999
BOOTSTRAP_SEED = 0
_SAME = 1e-12  # relative spread below which values count as identical
POWER = 0.80  # the power the minimum detectable effect is quoted at
ACCURACY_BOUNDS = (0.0, 1.0)  # an accuracy, as a fraction: the bounds of `mean_interval(..., bounds=...)`


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


class Effect(NamedTuple):
    """A paired difference a − b as a report reads it (`paired_effect`): its interval, the minimum
    detectable effect at its n, the equivalence test against a margin, and the verdict.

    `sd`: SD of the paired differences (ddof 1; NaN for n < 2). `mde`: the minimum detectable effect,
    in the values' unit. `margin`: the equivalence margin (values' unit), None when none was declared;
    `tost_p`: the larger of the two one-sided p-values (NaN without a margin or an interval);
    `equivalent`: whether both one-sided tests reject (None without a margin or an interval);
    `eq_low` / `eq_high`: the (1 − 2 alpha) paired t interval (90%) that decides it, NaN without a margin.
    `outcome`: one word, "better" / "worse" / "equivalent" / "inconclusive" / "identical" / "none";
    `verdict`: the report's wording (see `verdict`).
    """

    interval: Interval
    sd: float
    mde: float
    margin: float | None
    tost_p: float
    equivalent: bool | None
    outcome: str
    verdict: str
    power: float = POWER
    eq_low: float = math.nan
    eq_high: float = math.nan

    @property
    def estimate(self) -> float:
        return self.interval.estimate

    @property
    def low(self) -> float:
        return self.interval.low

    @property
    def high(self) -> float:
        return self.interval.high

    @property
    def n(self) -> int:
        return self.interval.n

    @property
    def method(self) -> str:
        return self.interval.method


def _plain(x: float) -> str:
    return f"{x:.3g}"


def verdict(interval: Interval, higher_is_better: bool = True, *, mde: float = math.nan,
            margin: float | None = None, equivalent: bool | None = None,
            describe: Callable[[float], str] | None = None) -> str:
    """How a report words a difference: "better" / "worse" when the interval excludes 0; "equivalent
    within ±margin" when the equivalence test says so (", though measurably better" when the interval
    also excludes 0); "identical at every seed (n = K)" for a difference of exactly 0 at every seed
    without a margin; otherwise "inconclusive: an effect up to <mde> could hide at n = K" (with a
    margin: "; not shown within ±margin"); or why there is no interval at all. `describe` writes a
    magnitude in the report's unit (say "0.20 pp"); `paired_effect` fills every argument."""
    return _judge(interval, higher_is_better, mde, margin, equivalent, describe)[1]


def _judge(interval: Interval, higher_is_better: bool, mde: float, margin: float | None,
           equivalent: bool | None, describe: Callable[[float], str] | None) -> tuple[str, str]:
    """(outcome, verdict): see `verdict`."""
    describe = describe or _plain
    n = interval.n
    if n == 0:
        return "none", "no paired seeds"
    if not interval.has_interval:
        return "none", f"no interval at n = {n}"
    way = "better" if (interval.estimate > 0) == higher_is_better else "worse"
    identical = interval.low == interval.high == interval.estimate and interval.estimate == 0
    if equivalent and margin is not None:
        within = f"equivalent within ±{describe(margin)}"
        if interval.excludes_zero:
            return "equivalent", f"{within}, though measurably {way}"
        return "equivalent", within + (" (identical at every seed)" if identical else "")
    if interval.excludes_zero:
        return way, way
    if identical:
        return "identical", f"identical at every seed (n = {n})"
    if math.isfinite(mde):
        text = f"inconclusive: an effect up to {describe(mde)} could hide at n = {n}"
    else:
        text = f"inconclusive at n = {n} (the interval includes 0)"
    if margin is not None:
        text += f"; not shown within ±{describe(margin)}"
    return "inconclusive", text


def mean_interval(values: Any, confidence: float = CONFIDENCE, bootstrap: bool = True,
                  bounds: tuple[float, float] | None = None) -> Interval:
    """The mean of `values` (NaN dropped) and its interval: t over the values, or the rule above
    (`bootstrap=False`: always the t interval, for figures that say they draw t intervals).

    `bounds` (low, high): values that cannot leave them, such as accuracies (ACCURACY_BOUNDS): the t
    interval is taken on the logit scale (module docstring), so the interval stays inside; a value
    outside the bounds is a ValueError. `values` may be a pd.Series indexed by seed (the seeds are
    kept in the result).
    """
    series = _series(values).dropna()
    x = series.to_numpy(dtype=float)
    seeds = tuple(series.index) if isinstance(values, (pd.Series, Mapping)) else ()
    if bounds is not None:
        lo, hi = (float(b) for b in bounds)
        if not lo < hi:
            raise ValueError(f"mean_interval: bounds {bounds!r} are not (low, high) with low < high")
        outside = x[(x < lo) | (x > hi)]
        if len(outside):
            raise ValueError(f"mean_interval: value {outside[0]!r} lies outside the bounds [{lo:g}, {hi:g}]")

    def t_interval():
        ci = scipy_stats.ttest_1samp(x, 0.0).confidence_interval(confidence_level=confidence)
        if bounds is None:
            return float(ci.low), float(ci.high)
        mean = float(np.mean(x))
        return _logit_scale(mean, float(ci.high) - mean, (lo, hi))

    name = "t" if bounds is None else "t on the logit scale"
    return _interval(x, t_interval, name, confidence, bootstrap)._replace(seeds=seeds)


def _logit_scale(mean: float, half: float, bounds: tuple[float, float]) -> tuple[float, float]:
    """A t interval mean ± half carried to the logit scale of `bounds` by the delta method (its
    half-width over p(1 − p), p the mean's place between the bounds) and mapped back inside them."""
    lo, hi = bounds
    width = hi - lo
    p = (mean - lo) / width
    if not 0.0 < p < 1.0:  # every value on one bound: no spread, handled before; kept safe here
        return mean, mean
    centre, spread = scipy_special.logit(p), half / (width * p * (1.0 - p))
    return float(lo + width * scipy_special.expit(centre - spread)), float(lo + width * scipy_special.expit(centre + spread))


def paired_difference(a: Any, b: Any, confidence: float = CONFIDENCE) -> Interval:
    """Mean of a[seed] - b[seed] over the seeds both samples have, with its interval (paired t, or the
    rule above). `a` and `b`: pd.Series or mappings seed -> value, or two plain sequences paired by
    position; a seed given twice in one sample is a ValueError (average replicates of a seed first)."""
    x, y, paired, unpaired = _pairs(a, b)
    return _paired_interval(x, y, paired, unpaired, confidence)


def _pairs(a: Any, b: Any) -> tuple[np.ndarray, np.ndarray, tuple, tuple]:
    """The values of `a` and `b` at the seeds both have (finite in both), in seed order, those seeds,
    and the seeds left out. Two plain sequences (not Series or mappings) pair by position, seed i being the
    i-th value: the same answer as through pandas, faster (simulations call this thousands of times)."""
    if not isinstance(a, (pd.Series, Mapping)) and not isinstance(b, (pd.Series, Mapping)):
        xa, xb = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
        common = min(len(xa), len(xb))
        both = ~np.isnan(xa[:common]) & ~np.isnan(xb[:common])
        paired = np.flatnonzero(both)
        unpaired = [i for i in range(max(len(xa), len(xb))) if i >= common or not both[i]]
        return xa[paired], xb[paired], tuple(int(i) for i in paired), tuple(unpaired)
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
    return x, y, tuple(paired), unpaired


def _paired_interval(x: np.ndarray, y: np.ndarray, paired: tuple, unpaired: tuple, confidence: float) -> Interval:
    def t_interval():
        ci = scipy_stats.ttest_rel(x, y).confidence_interval(confidence_level=confidence)
        return float(ci.low), float(ci.high)

    return _interval(x - y, t_interval, "paired t", confidence)._replace(seeds=paired, unpaired=unpaired)


@functools.lru_cache(maxsize=None)
def detectable_effect_size(n: int, alpha: float = 1 - CONFIDENCE, power: float = POWER) -> float:
    """The true mean difference, in SDs of the paired differences, that a two-sided paired t test at
    `alpha` over `n` pairs detects with probability `power` (statsmodels' TTestPower, the noncentral t).
    NaN for n < 2."""
    if n < 2:
        return math.nan
    return float(statsmodels_power.TTestPower().solve_power(effect_size=None, nobs=n, alpha=alpha, power=power,
                                          alternative="two-sided"))


def minimum_detectable_effect(sd: float, n: int, alpha: float = 1 - CONFIDENCE, power: float = POWER) -> float:
    """The minimum detectable effect at n pairs, in the unit of `sd` (the SD of the paired differences):
    `detectable_effect_size(n) * sd`. 0 with no spread; NaN for n < 2 or an unknown SD."""
    if n < 2 or not math.isfinite(sd):
        return math.nan
    return 0.0 if sd == 0 else detectable_effect_size(n, alpha, power) * sd


def equivalence_test(a: Any, b: Any, margin: float, alpha: float = 1 - CONFIDENCE) -> tuple[float, bool | None]:
    """Two one-sided tests of the paired difference a − b against ±`margin` (statsmodels' ttost_paired,
    each at `alpha`): (p, equivalent), p the larger one-sided p-value; equivalent when p < alpha, the
    same as the (1 − 2 alpha) paired t interval lying inside (−margin, +margin). Paired by seed as
    `paired_difference`. With no spread, the difference itself decides (p 0 or 1); (NaN, None) for
    fewer than two pairs."""
    _check_margin(margin)
    x, y, _, _ = _pairs(a, b)
    return _tost(x, y, margin, alpha)


def _tost(x: np.ndarray, y: np.ndarray, margin: float, alpha: float) -> tuple[float, bool | None]:
    d = x - y
    if len(d) < 2:
        return math.nan, None
    mean = float(np.mean(d))
    if float(np.max(np.abs(d - mean))) <= _SAME * max(1.0, abs(mean)):
        inside = abs(mean) < margin
        return (0.0 if inside else 1.0), inside
    p = float(statsmodels_weightstats.ttost_paired(x, y, -margin, margin)[0])
    return p, bool(p < alpha)


def _check_margin(margin: float) -> None:
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not math.isfinite(margin) or margin <= 0:
        raise ValueError(f"equivalence margin {margin!r}: need a number above 0")


def paired_effect(a: Any, b: Any, margin: float | None = None, *, higher_is_better: bool = True,
                  confidence: float = CONFIDENCE, power: float = POWER,
                  describe: Callable[[float], str] | None = None) -> Effect:
    """Everything a report says about a − b paired by seed (module docstring): the mean difference and
    its interval (`paired_difference`), the SD of the differences, the minimum detectable effect at
    n (two-sided, alpha = 1 − confidence, `power`), and with a `margin` (in the values' unit, > 0)
    the TOST verdict at alpha = 1 − confidence (the 1 − 2 alpha interval inside ±margin). `describe`
    writes a magnitude in the report's unit for the verdict (say lambda x: f"{100 * x:.2f} pp")."""
    if margin is not None:
        _check_margin(margin)
    x, y, paired, unpaired = _pairs(a, b)
    interval = _paired_interval(x, y, paired, unpaired, confidence)
    n, alpha = interval.n, 1 - confidence
    if n < 2:
        sd = math.nan
    elif interval.has_interval and interval.low == interval.high:  # no spread (see _interval)
        sd = 0.0
    else:
        sd = float(np.std(x - y, ddof=1))
    mde = minimum_detectable_effect(sd, n, alpha, power)
    tost_p, equivalent, eq_low, eq_high = math.nan, None, math.nan, math.nan
    if margin is not None and n >= 2:
        tost_p, equivalent = _tost(x, y, margin, alpha)
        if sd == 0:
            eq_low = eq_high = interval.estimate
        else:
            ci = scipy_stats.ttest_rel(x, y).confidence_interval(confidence_level=1 - 2 * alpha)
            eq_low, eq_high = float(ci.low), float(ci.high)
    outcome, said = _judge(interval, higher_is_better, mde, margin, equivalent, describe)
    return Effect(interval, sd, mde, margin, tost_p, equivalent, outcome, said, power, eq_low, eq_high)


def _interval(sample: np.ndarray, t_interval, t_name: str, confidence: float, bootstrap: bool = True) -> Interval:
    """The rule of the module docstring over `sample` (values or differences); `t_interval()` gives
    (low, high) of SciPy's t interval of the same mean (carried to the logit scale for bounded values);
    `bootstrap=False` keeps to it."""
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
    low, high = t_interval()
    return Interval(mean, low, high, n, f"{t_name} (df = {n - 1})", confidence)


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


# --------------------------------------------------------------------------- effects of a fitted model


def lenth_pse(effects: Any) -> tuple[float, float]:
    """Lenth's (1989) pseudo standard error of the effects of an unreplicated two-level design, and the
    degrees of freedom its t reference takes (m / 3 for m effects): s0 = 1.5 median |c|; PSE = 1.5 median of
    the |c| below 2.5 s0. The effects that stand out are left out of the second median, so the PSE estimates
    the noise from the effects that are noise. NaN for fewer than 3 effects."""
    c = np.abs(np.asarray(effects, dtype=float))
    c = c[np.isfinite(c)]
    if len(c) < 3:
        return math.nan, math.nan
    s0 = 1.5 * float(np.median(c))
    small = c[c < 2.5 * s0]
    return (1.5 * float(np.median(small)) if len(small) else s0), len(c) / 3


def model_effect(estimate: float, se: float, df: float, n: int, margin: float | None = None, *,
                 higher_is_better: bool = True, confidence: float = CONFIDENCE, power: float = POWER,
                 method: str = "OLS t", describe: Callable[[float], str] | None = None) -> Effect:
    """An effect estimated by a model (a factorial effect: high − low), as a report reads it, like
    `paired_effect` reads a paired difference: the t interval estimate ± t(df) se; the minimum detectable
    effect at 80% power for a two-sided t test of it at df degrees of freedom (statsmodels' TTestPower: a
    one-sample t over df + 1 values has df degrees of freedom and noncentrality d sqrt(df + 1), so the
    effect it detects is d sqrt(df + 1) se); with a `margin`, two one-sided t tests at alpha (equivalent when
    the 1 − 2 alpha interval lies inside ±margin); and the verdict. `n`: the runs behind it (the verdict's
    "at n = K")."""
    if margin is not None:
        _check_margin(margin)
    alpha = 1 - confidence
    if not (math.isfinite(se) and math.isfinite(df) and df > 0 and se >= 0):
        interval = Interval(estimate, math.nan, math.nan, n, method, confidence)
        outcome, said = _judge(interval, higher_is_better, math.nan, margin, None, describe)
        return Effect(interval, math.nan, math.nan, margin, math.nan, None, outcome, said, power)
    t = scipy_stats.t
    half = float(t.ppf(1 - alpha / 2, df)) * se
    interval = Interval(estimate, estimate - half, estimate + half, n, f"{method} (df = {df:g})", confidence)
    mde = 0.0 if se == 0 else detectable_effect_size(df + 1, alpha, power) * math.sqrt(df + 1) * se
    tost_p, equivalent, eq_low, eq_high = math.nan, None, math.nan, math.nan
    if margin is not None:
        if se == 0:
            equivalent, tost_p = abs(estimate) < margin, 0.0 if abs(estimate) < margin else 1.0
            eq_low = eq_high = estimate
        else:
            tost_p = max(float(t.sf((estimate + margin) / se, df)), float(t.cdf((estimate - margin) / se, df)))
            equivalent = tost_p < alpha
            eq_half = float(t.ppf(1 - alpha, df)) * se
            eq_low, eq_high = estimate - eq_half, estimate + eq_half
    outcome, said = _judge(interval, higher_is_better, mde, margin, equivalent, describe)
    return Effect(interval, se, mde, margin, tost_p, equivalent, outcome, said, power, eq_low, eq_high)
