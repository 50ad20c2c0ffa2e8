"""Effects: paired comparisons between the arms of an ablation and between documented variants, matched by seed.

Pure functions of a loaded `StudyRuns` (nothing here reads the store or
draws). `effects_table`: each ablation arm against the baseline arm, on test
accuracy, validation accuracy, training time and parameters. `variant_differences`:
every pair of documented variants on test accuracy (which differences are
real). Both pair the trials by their `seed` and take the intervals, their
method and the verdict's wording from `stats.py`.
"""

from __future__ import annotations

from itertools import combinations
from typing import NamedTuple

import numpy as np

from .. import schema
from ..lazy import lazy
from .load import StudyRuns
from .stats import CONFIDENCE, Interval, paired_difference, verdict
from .tables import variant_order

pd = lazy("pandas")


class EffectMetric(NamedTuple):
    column: str  # a column of StudyRuns.trials
    label: str  # how the report names it
    higher_is_better: bool


EFFECT_METRICS = (
    EffectMetric(schema.TEST_ACCURACY, "test accuracy", True),
    EffectMetric(schema.BEST_VAL_ACCURACY, "validation accuracy", True),
    EffectMetric("wall_time_s", "training time", False),
    EffectMetric("param_count", "parameters", False),
)

_EFFECT_COLUMNS = [
    "arm", "knob", "value", "metric", "label", "higher_is_better", "baseline_mean", "arm_mean", "difference",
    "ci_low", "ci_high", "n", "seeds", "unpaired", "method", "verdict",
]


def _interval_row(interval: Interval) -> dict:
    return {
        "difference": interval.estimate, "ci_low": interval.low, "ci_high": interval.high, "n": interval.n,
        "seeds": ",".join(str(s) for s in interval.seeds),
        "unpaired": ",".join(str(s) for s in interval.unpaired), "method": interval.method,
    }


def seed_means(trials: pd.DataFrame, by: str, columns: list[str]) -> pd.DataFrame:
    """`columns` of `trials` averaged per (`by`, seed) (NaN skipped; trials without a seed left out), indexed by
    both: the per-seed values every pairing here reads, computed once."""
    seeded = trials.dropna(subset=["seed"])
    keys = [seeded[by], seeded["seed"].astype(int).rename("seed")]
    return seeded[columns].astype(float).groupby(keys).mean()


def arm_order(trials: pd.DataFrame) -> list[str]:
    """The arms other than the baseline, in the order their first trial started (the space file's order)."""
    first = trials.dropna(subset=["arm"]).sort_values("trial_number", kind="stable")
    return [a for a in dict.fromkeys(first["arm"]) if a != schema.ARM_BASELINE]


def effects_table(runs: StudyRuns, confidence: float = CONFIDENCE) -> pd.DataFrame:
    """Per ablation arm and metric (EFFECT_METRICS): mean difference arm − baseline, paired by seed.

    One row per (arm, metric), arms in `arm_order`. `baseline_mean` / `arm_mean`
    are over the paired seeds only, so difference = arm_mean − baseline_mean.
    `verdict` is `stats.verdict` ("better"/"worse" only when the interval excludes
    0; lower is better for time and parameters). `knob` / `value` split the arm's
    "<knob>=<value>". Empty when the study has no completed baseline trial.
    """
    done = runs.arm_trials
    means = seed_means(done, "arm", [m.column for m in EFFECT_METRICS])
    if schema.ARM_BASELINE not in means.index.get_level_values(0):
        return pd.DataFrame(columns=_EFFECT_COLUMNS)
    baseline = means.loc[schema.ARM_BASELINE]
    empty = baseline.iloc[0:0]
    rows = []
    for arm in arm_order(runs.trials):
        mine = means.loc[arm] if arm in means.index.get_level_values(0) else empty  # an arm that only failed
        knob, _, value = arm.partition("=")
        for metric in EFFECT_METRICS:
            a, b = mine[metric.column].dropna(), baseline[metric.column].dropna()
            interval = paired_difference(a, b, confidence)
            paired = list(interval.seeds)
            rows.append({
                "arm": arm, "knob": knob if value else None, "value": value or None, "metric": metric.column,
                "label": metric.label, "higher_is_better": metric.higher_is_better,
                "baseline_mean": float(b.loc[paired].mean()) if paired else np.nan,
                "arm_mean": float(a.loc[paired].mean()) if paired else np.nan,
                **_interval_row(interval),
                "verdict": verdict(interval, metric.higher_is_better),
            })
    return pd.DataFrame(rows, columns=_EFFECT_COLUMNS)


def variant_differences(runs: StudyRuns, confidence: float = CONFIDENCE) -> pd.DataFrame:
    """Every pair of documented variants: mean difference in test accuracy, paired by seed.

    Each pair is oriented so that `first` has the higher mean over the paired
    seeds (difference >= 0); pairs in the order of `first`, then `second`, by
    their mean test accuracy (best first). Validation accuracy stands in when no
    variant trial recorded a test accuracy (`metric` says which). `real`: the
    interval excludes 0. `real_all_pairs`: it still does at the Bonferroni level
    for all m pairs with an interval at once (confidence 1 − (1 − confidence)/m),
    the stricter reading when scanning the whole table. Empty with fewer than two variants.
    """
    trials = runs.variant_trials
    columns = ["first", "second", "metric", "first_mean", "second_mean", "difference", "ci_low", "ci_high", "n",
               "seeds", "unpaired", "method", "verdict", "real", "real_all_pairs", "pairs"]
    names = variant_order(trials["variant"])
    if len(names) < 2:
        return pd.DataFrame(columns=columns)
    metric = schema.TEST_ACCURACY if trials[schema.TEST_ACCURACY].notna().any() else schema.BEST_VAL_ACCURACY
    means = seed_means(trials, "variant", [metric])[metric]
    by_variant = {name: means.loc[name].dropna() if name in means.index.get_level_values(0) else means.iloc[0:0]
                  for name in names}
    overall = {name: float(s.mean()) if len(s) else -np.inf for name, s in by_variant.items()}
    rank = sorted(names, key=lambda v: (-overall[v], names.index(v)))
    pairs = []
    for first, second in combinations(rank, 2):
        interval = paired_difference(by_variant[first], by_variant[second], confidence)
        if interval.estimate < 0:  # a higher overall mean can still lose on the seeds both have
            first, second = second, first
            interval = paired_difference(by_variant[first], by_variant[second], confidence)
        pairs.append((first, second, interval))
    m = sum(interval.has_interval for *_, interval in pairs)
    strict = 1 - (1 - confidence) / max(m, 1)
    rows = []
    for first, second, interval in pairs:
        adjusted = paired_difference(by_variant[first], by_variant[second], strict)
        paired = list(interval.seeds)
        rows.append({
            "first": first, "second": second, "metric": metric,
            "first_mean": float(by_variant[first].loc[paired].mean()) if paired else np.nan,
            "second_mean": float(by_variant[second].loc[paired].mean()) if paired else np.nan,
            **_interval_row(interval),
            "verdict": verdict(interval),
            "real": interval.excludes_zero,
            "real_all_pairs": adjusted.excludes_zero,
            "pairs": m,
        })
    return pd.DataFrame(rows, columns=columns)

