"""An isolation study's report: each scientific value at its best over the nuisance knobs, and their effects.

Pure functions of a loaded `StudyRuns` (study/isolation.py compiles the study, study/retrain.py runs its
phase 2), and the figure drawn from them:
- `value_order`: the scientific values in the file's order (their first trials' order: the grid is
  point-major, so point 0 runs every value in the file's order first);
- `best_configurations`: each value's best nuisance trial by validation accuracy, with the nuisance knobs it
  set (what the retrains trained);
- `retrain_summary`: each value's retrain test accuracies, their mean and its 95% interval;
- `isolation_effects`: each value against the reference (the first listed), on the retrains' test accuracy
  paired by seed: `effects.metric_effect` (interval, MDE, equivalence against the study's margin, verdict);
- `plot_isolation`: the playbook's isolation plot: every nuisance trial's validation error by value (faint),
  each value's best highlighted, and beside it each value's retrain test error with its 95% interval.
"""

from __future__ import annotations

import numpy as np

from .. import schema
from ..lazy import lazy
from ..spacefile import parse_isolation
from .drawing import error_axis, error_range, figure, legend_below, to_error
from .effects import STAT_COLUMNS, effect_row, equivalence_margin, metric_effect, object_equivalent, seed_means
from .load import StudyRuns
from .stats import ACCURACY_BOUNDS, CONFIDENCE, mean_interval

pd = lazy("pandas")

VALUE, POINT = schema.ISOLATION_VALUE, schema.ISOLATION_POINT


def is_isolation(runs: StudyRuns) -> bool:
    return not runs.isolation_trials.empty


def value_order(runs: StudyRuns) -> list[str]:
    """The scientific values ("optimizer=sgd"), in the order of their first trials (the file's order)."""
    trials = runs.trials
    if VALUE not in trials.columns:
        return []
    first = trials.dropna(subset=[VALUE]).sort_values("trial_number", kind="stable")
    order = list(dict.fromkeys(first[VALUE]))
    extra = [] if runs.retrains is None else [v for v in dict.fromkeys(runs.retrains[VALUE]) if v not in order]
    return order + extra


def _nuisance_text(name) -> str:
    """The nuisance knobs an isolation trial set, from its name (its scientific knob left out)."""
    try:
        _, changes = parse_isolation(name)
    except Exception:  # a name this version cannot read: shown as it is
        return str(name)
    return " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in list(changes.items())[1:])


def best_configurations(runs: StudyRuns) -> pd.DataFrame:
    """Per value (value_order): its best completed nuisance trial by validation accuracy (ties: the lower point),
    its point, the nuisance knobs it set, and how many of the value's trials completed."""
    columns = ["value", "trial_id", "point", "nuisance", "val_accuracy", "n_trials", "run_id"]
    if runs.isolation_trials.empty:
        return pd.DataFrame(columns=columns)
    done = runs.isolation_trials.assign(_point=lambda t: pd.to_numeric(t[POINT], errors="coerce"))
    rows = []
    for value in value_order(runs):
        mine = done[done[VALUE] == value]
        if mine.empty:
            continue
        best = mine.sort_values([schema.BEST_VAL_ACCURACY, "_point"], ascending=[False, True], kind="stable").iloc[0]
        rows.append({"value": value, "trial_id": best["trial_id"], "point": int(best["_point"]),
                     "nuisance": _nuisance_text(best.get(schema.ISOLATION)),
                     "val_accuracy": float(best[schema.BEST_VAL_ACCURACY]), "n_trials": len(mine),
                     "run_id": best["run_id"]})
    return pd.DataFrame(rows, columns=columns)


def _retrains(runs: StudyRuns) -> pd.DataFrame:
    """Completed retrains with a test accuracy (none: an empty frame)."""
    if runs.retrains is None or runs.retrains.empty:
        return pd.DataFrame(columns=[VALUE, "seed", schema.TEST_ACCURACY])
    r = runs.retrains
    return r[(r["state"] == "completed") & r[schema.TEST_ACCURACY].notna()]


def retrain_summary(runs: StudyRuns, confidence: float = CONFIDENCE) -> pd.DataFrame:
    """Per value (value_order): its retrains' test accuracy: n, seeds, mean and its 95% interval (t on the
    logit scale: an accuracy stays inside [0, 1]; none for n = 1)."""
    retrains = _retrains(runs)
    rows = []
    for value in value_order(runs):
        mine = retrains[retrains[VALUE] == value]
        scores = mine.set_index(mine["seed"].astype(int))[schema.TEST_ACCURACY].astype(float) if len(mine) else None
        if scores is None or scores.empty:
            rows.append({"value": value, "n": 0, "seeds": "", "test_mean": np.nan, "ci_low": np.nan,
                         "ci_high": np.nan})
            continue
        interval = mean_interval(scores, confidence, bootstrap=False, bounds=ACCURACY_BOUNDS)
        rows.append({"value": value, "n": len(scores), "seeds": ",".join(map(str, sorted(scores.index))),
                     "test_mean": float(scores.mean()), "ci_low": interval.low, "ci_high": interval.high})
    return pd.DataFrame(rows, columns=["value", "n", "seeds", "test_mean", "ci_low", "ci_high"])


def isolation_effects(runs: StudyRuns, confidence: float = CONFIDENCE, margin_pp: float | None = None) -> pd.DataFrame:
    """Each value against the reference value (the first listed), on the retrains' test accuracy paired by
    seed: one row per other value, with `reference`, `reference_mean` / `value_mean` over the paired seeds,
    and the columns of `effects_table` (difference, interval, MDE, margin, TOST, outcome, verdict).
    `margin_pp`: the equivalence margin in percentage points, by default the study's."""
    columns = ["value", "reference", "reference_mean", "value_mean", *STAT_COLUMNS]
    retrains, order = _retrains(runs), value_order(runs)
    if retrains.empty or len(order) < 2:
        return pd.DataFrame(columns=columns)
    means = seed_means(retrains, VALUE, [schema.TEST_ACCURACY])[schema.TEST_ACCURACY]
    present = set(means.index.get_level_values(0))
    empty = means.iloc[0:0]
    reference = order[0]
    ref = means.loc[reference].dropna() if reference in present else empty
    margin_pp = equivalence_margin(runs) if margin_pp is None else margin_pp
    rows = []
    for value in order[1:]:
        mine = means.loc[value].dropna() if value in present else empty
        effect = metric_effect(mine, ref, schema.TEST_ACCURACY, margin_pp, True, confidence)
        paired = list(effect.interval.seeds)
        rows.append({"value": value, "reference": reference,
                     "reference_mean": float(ref.loc[paired].mean()) if paired else np.nan,
                     "value_mean": float(mine.loc[paired].mean()) if paired else np.nan, **effect_row(effect)})
    return object_equivalent(pd.DataFrame(rows, columns=columns))


def top_comparisons(runs: StudyRuns, confidence: float = CONFIDENCE) -> tuple[str | None, list]:
    """The value with the highest retrain test mean, and (value, stats.Effect of top − value paired by seed)
    for every other value with retrains: how much better the top is, and whether that is real."""
    summary = retrain_summary(runs, confidence)
    summary = summary[summary["n"] > 0]
    if summary.empty:
        return None, []
    top = str(summary.sort_values("test_mean", ascending=False, kind="stable")["value"].iloc[0])
    means = seed_means(_retrains(runs), VALUE, [schema.TEST_ACCURACY])[schema.TEST_ACCURACY]
    margin_pp = equivalence_margin(runs)
    out = []
    for value in summary["value"]:
        if value != top:
            out.append((value, metric_effect(means.loc[top].dropna(), means.loc[value].dropna(), schema.TEST_ACCURACY,
                                             margin_pp, True, confidence)))
    return top, out


def nuisance_knobs(runs: StudyRuns) -> list[str]:
    """The nuisance knobs the study tuned (those its trials' names set, the scientific knob left out)."""
    knobs: dict[str, None] = {}
    for name in runs.isolation_trials.get(schema.ISOLATION, pd.Series(dtype=object)).dropna():
        try:
            knobs.update(dict.fromkeys(list(parse_isolation(name)[1])[1:]))
        except Exception:
            continue
    return list(knobs)


def plot_isolation(runs: StudyRuns):
    """The isolation plot: x the scientific values; left, every nuisance trial's validation error (log axis,
    faint points) with each value's best highlighted; right, each value's retrain test error: the seeds'
    points and the mean with its 95% interval. None when the study has no isolation trial."""
    trials = runs.isolation_trials
    if trials.empty:
        return None
    order, best, summary = value_order(runs), best_configurations(runs), retrain_summary(runs)
    retrains = _retrains(runs)
    has_test = not retrains.empty
    fig, axes = figure(11.0 if has_test else 7.5, 5.5, ncols=2 if has_test else 1)
    left, right = (axes[0], axes[1]) if has_test else (axes, None)
    x = {value: i for i, value in enumerate(order)}
    val_err = to_error(trials[schema.BEST_VAL_ACCURACY])
    rng = error_range(val_err, keep=to_error(best["val_accuracy"]))
    jitter = np.random.default_rng(0).uniform(-0.12, 0.12, len(trials))
    xs = trials[VALUE].map(x).to_numpy(dtype=float) + jitter
    left.scatter(xs, rng.clip(val_err), s=18, color="C0", alpha=0.35, label="nuisance trial (validation)")
    left.scatter(best["value"].map(x), rng.clip(to_error(best["val_accuracy"])), s=90, marker="*", color="C3",
                 zorder=5, label="each value's best (validation)")
    error_axis(left, rng, "validation error", accuracy_side=False)
    left.set_xticks(range(len(order)), order, rotation=15)
    left.set_xlim(-0.6, len(order) - 0.4)
    left.set_title(f"phase 1: {len(trials)} nuisance trials, validation only")
    left.grid(axis="y", alpha=0.3)
    if right is not None:
        test_err = to_error(retrains[schema.TEST_ACCURACY])
        means = to_error(summary["test_mean"])
        # the axis reaches both ends of every interval (the high accuracy end is the low error end)
        trng = error_range(np.concatenate([test_err, means, to_error(summary["ci_high"])]),
                           keep=to_error(summary["ci_low"]))
        right.scatter(retrains[VALUE].map(x), trng.clip(test_err), s=16, color="0.5", alpha=0.6,
                      label="retrain seed (test)")
        lows, highs = to_error(summary["ci_high"]), to_error(summary["ci_low"])
        err = np.nan_to_num(np.vstack([means - lows, highs - means]).clip(min=0))
        right.errorbar(summary["value"].map(x) + 0.15, trng.clip(means), yerr=err, fmt="s", color="C1", capsize=4,
                       ms=7, label="retrain mean (test), 95% CI")
        error_axis(right, trng, "test error")
        right.set_xticks(range(len(order)), [f"{v}\n(n={n})" for v, n in zip(order, summary["n"])], rotation=15)
        right.set_xlim(-0.6, len(order) - 0.4)
        right.set_title("phase 2: each value's best retrained with fresh seeds, on test")
        right.grid(axis="y", alpha=0.3)
    knobs = ", ".join(nuisance_knobs(runs)) or "none"
    fig.suptitle(f"Isolation study '{runs.study}': each value with its nuisance knobs tuned ({knobs})")
    legend_below(fig, ncols=4)
    return fig
