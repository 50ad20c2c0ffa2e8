"""Effects: paired comparisons between the arms of an ablation and between documented variants, matched by seed.

Pure functions of a loaded `StudyRuns` (nothing here reads the store or
draws). `effects_table`: each ablation arm against the baseline arm, on test
accuracy, validation accuracy, training time and parameters. `variant_differences`:
every pair of documented variants on test accuracy (which differences are
real). Both pair the trials by their `seed` and take from `stats.paired_effect`
the interval and its method, the minimum detectable effect (MDE) at the
study's n, the equivalence test against the study's margin and the verdict's
wording.

The margin is the study's `equivalence_margin` setting (the space file's
`study:` section, recorded on the parent run), in percentage points of
accuracy: it applies to the accuracy metrics only (training time and
parameters get an MDE and better / worse / inconclusive, never
"equivalent"). Without it, a difference whose interval includes 0 is
"inconclusive", with the MDE saying how large an effect could hide.
"""

from __future__ import annotations

import math
from itertools import combinations
from typing import NamedTuple

import numpy as np

from .. import schema
from ..lazy import lazy
from .load import StudyRuns
from .stats import CONFIDENCE, Effect, paired_difference, paired_effect
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

ACCURACY_METRICS = (schema.TEST_ACCURACY, schema.BEST_VAL_ACCURACY)
MARGIN_SETTING = "equivalence_margin"  # the study setting (and parent-run param), in percentage points

# What every row of an effect carries (`effect_row`), after the columns that name the comparison.
STAT_COLUMNS = ["difference", "ci_low", "ci_high", "n", "seeds", "unpaired", "method", "sd", "mde", "margin",
                 "tost_p", "eq_low", "eq_high", "equivalent", "outcome", "verdict"]
_EFFECT_COLUMNS = ["arm", "knob", "value", "metric", "label", "higher_is_better", "baseline_mean", "arm_mean",
                   *STAT_COLUMNS]


def equivalence_margin(runs: StudyRuns) -> float | None:
    """The study's declared equivalence margin in percentage points (`study.equivalence_margin`, as its
    parent run recorded it), or None: not declared, or a study run before the setting existed."""
    raw = runs.parent_params.get(MARGIN_SETTING)
    try:
        margin = float(raw)
    except (TypeError, ValueError):  # absent, or "None" (the setting left out)
        return None
    return margin if math.isfinite(margin) and margin > 0 else None


def magnitude(metric: str):
    """How a verdict writes a size (an MDE, a margin) of `metric`: accuracy in percentage points, time in
    seconds, parameters as a count."""
    if metric in ACCURACY_METRICS:
        return lambda x: f"{100 * x:.2f} pp"
    if metric == "param_count":
        return lambda x: f"{x:,.0f} parameters"
    return lambda x: f"{x:.1f} s"


def metric_effect(a: pd.Series, b: pd.Series, metric: str, margin_pp: float | None, higher_is_better: bool = True,
                  confidence: float = CONFIDENCE) -> Effect:
    """`stats.paired_effect` of a − b (per-seed values of `metric`), the margin (percentage points) applied to
    accuracy only, sizes written in the metric's unit."""
    margin = margin_pp / 100 if margin_pp is not None and metric in ACCURACY_METRICS else None
    return paired_effect(a, b, margin, higher_is_better=higher_is_better, confidence=confidence,
                         describe=magnitude(metric))


def effect_row(effect: Effect) -> dict:
    interval = effect.interval
    return {
        "difference": interval.estimate, "ci_low": interval.low, "ci_high": interval.high, "n": interval.n,
        "seeds": ",".join(str(s) for s in interval.seeds),
        "unpaired": ",".join(str(s) for s in interval.unpaired), "method": interval.method,
        "sd": effect.sd, "mde": effect.mde, "margin": np.nan if effect.margin is None else effect.margin,
        "tost_p": effect.tost_p, "eq_low": effect.eq_low, "eq_high": effect.eq_high, "equivalent": effect.equivalent,
        "outcome": effect.outcome,
        "verdict": effect.verdict,
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


def effects_table(runs: StudyRuns, confidence: float = CONFIDENCE, margin_pp: float | None = None) -> pd.DataFrame:
    """Per ablation arm and metric (EFFECT_METRICS): mean difference arm − baseline, paired by seed.

    One row per (arm, metric), arms in `arm_order`. `baseline_mean` / `arm_mean`
    are over the paired seeds only, so difference = arm_mean − baseline_mean.
    `sd` (of the paired differences), `mde` (minimum detectable effect at n, 80%
    power, 5% two-sided), `margin` (the study's equivalence margin as a fraction,
    accuracy only, else NaN), `tost_p`, `eq_low` / `eq_high` (the 90% interval
    the equivalence test reads), `equivalent`, `outcome` and `verdict`:
    `stats.paired_effect` ("better"/"worse" only when the interval excludes 0;
    lower is better for time and parameters; "equivalent within ±margin" or
    "inconclusive: an effect up to MDE could hide at n = K"). `knob` / `value`
    split the arm's "<knob>=<value>". Empty when the study has no completed
    baseline trial. `margin_pp`: the margin in percentage points, by default the
    study's (`equivalence_margin`).
    """
    done = runs.arm_trials
    means = seed_means(done, "arm", [m.column for m in EFFECT_METRICS])
    if schema.ARM_BASELINE not in means.index.get_level_values(0):
        return pd.DataFrame(columns=_EFFECT_COLUMNS)
    baseline = means.loc[schema.ARM_BASELINE]
    margin_pp = equivalence_margin(runs) if margin_pp is None else margin_pp
    empty = baseline.iloc[0:0]
    rows = []
    for arm in arm_order(runs.trials):
        mine = means.loc[arm] if arm in means.index.get_level_values(0) else empty  # an arm that only failed
        knob, _, value = arm.partition("=")
        for metric in EFFECT_METRICS:
            a, b = mine[metric.column].dropna(), baseline[metric.column].dropna()
            effect = metric_effect(a, b, metric.column, margin_pp, metric.higher_is_better, confidence)
            paired = list(effect.interval.seeds)
            rows.append({
                "arm": arm, "knob": knob if value else None, "value": value or None, "metric": metric.column,
                "label": metric.label, "higher_is_better": metric.higher_is_better,
                "baseline_mean": float(b.loc[paired].mean()) if paired else np.nan,
                "arm_mean": float(a.loc[paired].mean()) if paired else np.nan,
                **effect_row(effect),
            })
    return object_equivalent(pd.DataFrame(rows, columns=_EFFECT_COLUMNS))


def object_equivalent(table: pd.DataFrame) -> pd.DataFrame:
    """`equivalent` as True / False / None whatever the rows hold (never a numpy bool column)."""
    table["equivalent"] = pd.Series([None if v is None else bool(v) for v in table["equivalent"]], index=table.index,
                                    dtype=object)
    return table


def variant_differences(runs: StudyRuns, confidence: float = CONFIDENCE,
                        margin_pp: float | None = None) -> pd.DataFrame:
    """Every pair of documented variants: mean difference in test accuracy, paired by seed.

    Each pair is oriented so that `first` has the higher mean over the paired
    seeds (difference >= 0); pairs in the order of `first`, then `second`, by
    their mean test accuracy (best first). Validation accuracy stands in when no
    variant trial recorded a test accuracy (`metric` says which). `sd`, `mde`,
    `margin`, `tost_p`, `eq_low`, `eq_high`, `equivalent`, `outcome`, `verdict`:
    as in `effects_table` (the study's margin; `margin_pp` overrides it).
    `real`: the interval excludes 0. `real_all_pairs`: it still does at the
    Bonferroni level for all m pairs with an interval at once (confidence
    1 − (1 − confidence)/m), the stricter reading when scanning the whole
    table. Empty with fewer than two variants.
    """
    trials = runs.variant_trials
    columns = ["first", "second", "metric", "first_mean", "second_mean", *STAT_COLUMNS, "real", "real_all_pairs",
               "pairs"]
    names = variant_order(trials["variant"])
    if len(names) < 2:
        return pd.DataFrame(columns=columns)
    metric = schema.TEST_ACCURACY if trials[schema.TEST_ACCURACY].notna().any() else schema.BEST_VAL_ACCURACY
    means = seed_means(trials, "variant", [metric])[metric]
    by_variant = {name: means.loc[name].dropna() if name in means.index.get_level_values(0) else means.iloc[0:0]
                  for name in names}
    overall = {name: float(s.mean()) if len(s) else -np.inf for name, s in by_variant.items()}
    rank = sorted(names, key=lambda v: (-overall[v], names.index(v)))
    margin_pp = equivalence_margin(runs) if margin_pp is None else margin_pp
    pairs = []
    for first, second in combinations(rank, 2):
        effect = metric_effect(by_variant[first], by_variant[second], metric, margin_pp, True, confidence)
        if effect.estimate < 0:  # a higher overall mean can still lose on the seeds both have
            first, second = second, first
            effect = metric_effect(by_variant[first], by_variant[second], metric, margin_pp, True, confidence)
        pairs.append((first, second, effect))
    m = sum(effect.interval.has_interval for *_, effect in pairs)
    strict = 1 - (1 - confidence) / max(m, 1)
    rows = []
    for first, second, effect in pairs:
        adjusted = paired_difference(by_variant[first], by_variant[second], strict)
        paired = list(effect.interval.seeds)
        rows.append({
            "first": first, "second": second, "metric": metric,
            "first_mean": float(by_variant[first].loc[paired].mean()) if paired else np.nan,
            "second_mean": float(by_variant[second].loc[paired].mean()) if paired else np.nan,
            **effect_row(effect),
            "real": effect.interval.excludes_zero,
            "real_all_pairs": adjusted.excludes_zero,
            "pairs": m,
        })
    return object_equivalent(pd.DataFrame(rows, columns=columns))

