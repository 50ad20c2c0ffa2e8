"""Tables: the numbers of a report, computed from a `StudyRuns` as pandas DataFrames.

Pure functions of the loaded study (nothing here reads the store or draws):
the replication table of the documented variants (means with the 95% intervals
of `stats.py`), the best-so-far curve, the Pareto fronts (accuracy against
parameters, and against inference latency), the leaderboard with each trial's
cost and the command that reproduces it,
the failed trials, and which knobs the completed trials varied. The figures
(`figures.py`) and report.md (`render.py`) are drawn from these.
"""

from __future__ import annotations

import numpy as np

from .. import schema
from ..lazy import lazy
from ..variants import VARIANTS
from .load import COMPLETED, FAILED, KNOBS, RUNNING, StudyRuns, is_missing, text_or_none
from .stats import ACCURACY_BOUNDS, CONFIDENCE, mean_interval

pd = lazy("pandas")


def varied_knobs(runs: StudyRuns) -> list[str]:
    """Knobs with more than one distinct value among completed trials, in LeNetConfig order."""
    done = runs.completed
    return [k for k in KNOBS if done[k].dropna().nunique() > 1]


def replication_table(runs: StudyRuns, confidence: float = CONFIDENCE) -> pd.DataFrame:
    """Per documented variant: the tutorial's figure beside the measured accuracy over seeds.

    `difference` = measured mean TEST accuracy - reported figure (the tutorials'
    figures are de facto test/held-out figures), only where the variant was
    measured on the dataset its tutorial used (`claim_applies`); a claim about
    another dataset is listed, never compared. std is the sample std (ddof=1).
    `test_ci_low`/`test_ci_high` (and `val_ci_*`): the 95% interval of the mean
    over the replicates (`stats.mean_interval` for values inside [0, 1]: a t
    interval on the logit scale, see its rule; NaN with one replicate), its
    method in `test_ci_method`; `claim_in_ci`:
    whether the tutorial's figure lies inside the test interval (None where the
    claim is not compared or there is no interval).
    """
    trials = runs.trials[runs.trials["variant"].notna() & runs.trials["arm"].isna()]  # an ablation's arms: Effects
    columns = [
        "variant", "dataset", "measured_dataset", "n", "n_failed", "seeds", "reported", "reported_as", "claim_applies",
        "val_mean", "val_std", "test_mean", "test_std", "difference", "params_doc", "params_measured", "note",
        "test_ci_low", "test_ci_high", "test_ci_method", "val_ci_low", "val_ci_high", "claim_in_ci",
    ]
    if trials.empty:
        return pd.DataFrame(columns=columns)
    study_dataset = text_or_none(runs.parent_params.get("dataset"))
    rows = []
    for name in variant_order(trials["variant"]):
        mine = trials[trials["variant"] == name]
        done = mine[mine["state"] == COMPLETED]
        v = VARIANTS.get(name)
        measured_ds = None
        if "dataset" in done.columns and done["dataset"].notna().any():
            measured_ds = ",".join(sorted(set(done["dataset"].dropna().astype(str))))
        measured_ds = measured_ds or study_dataset
        test = done["test_accuracy"].dropna()
        reported = v.reported if v else None
        test_mean = float(test.mean()) if len(test) else np.nan
        notes = []
        if v and v.split_note:
            notes.append(f"tutorial figure on the wrong split: {v.split_note}")
        claim_applies = bool(v and reported is not None and measured_ds == v.dataset)
        if v and measured_ds and measured_ds != v.dataset:
            notes.append(f"measured on {measured_ds}, the tutorial used {v.dataset}"
                         + ("; its figure is not compared" if reported is not None else ""))
        if v is None:
            notes.append("not a documented variant")
        if len(done) and not len(test):
            notes.append("no test accuracy recorded")
        params = done["param_count"].dropna()
        params_measured = float(params.median()) if len(params) else np.nan
        test_ci = mean_interval(test.to_numpy(), confidence, bounds=ACCURACY_BOUNDS)
        val_ci = mean_interval(done["best_val_accuracy"].to_numpy(), confidence, bounds=ACCURACY_BOUNDS)
        rows.append({
            "variant": name,
            "dataset": v.dataset if v else None,
            "measured_dataset": measured_ds,
            "n": len(done),
            "n_failed": int((mine["state"] == FAILED).sum()),
            "seeds": ",".join(str(s) for s in sorted(done["seed"].dropna().unique())),
            "reported": np.nan if reported is None else float(reported),
            "reported_as": v.reported_as if v else None,
            "claim_applies": claim_applies,
            "val_mean": float(done["best_val_accuracy"].mean()) if len(done) else np.nan,
            "val_std": float(done["best_val_accuracy"].std(ddof=1)) if len(done) > 1 else np.nan,
            "test_mean": test_mean,
            "test_std": float(test.std(ddof=1)) if len(test) > 1 else np.nan,
            "difference": test_mean - reported if claim_applies and len(test) else np.nan,
            "params_doc": v.params if v else np.nan,
            "params_measured": params_measured,
            "note": "; ".join(notes),
            "test_ci_low": test_ci.low,
            "test_ci_high": test_ci.high,
            "test_ci_method": test_ci.method if test_ci.n else None,
            "val_ci_low": val_ci.low,
            "val_ci_high": val_ci.high,
            "claim_in_ci": test_ci.includes(float(reported)) if claim_applies else None,
        })
    out = pd.DataFrame(rows, columns=columns)
    out["claim_in_ci"] = out["claim_in_ci"].astype(object)  # True / False / None, whatever the rows hold
    return out


def variant_order(names) -> list[str]:
    """Variant names in VARIANTS' (documented) order, then any others sorted."""
    names = set(names)
    return [v for v in VARIANTS if v in names] + sorted(names - set(VARIANTS))


def best_so_far(runs: StudyRuns) -> pd.DataFrame:
    """Best validation accuracy found so far, by trial number and by wall time.

    One row per trial that ended (completed or failed), in trial-number order
    (trials numbered by start time). `best_val_accuracy` is NaN for failed
    trials, which never raise the best. `best_so_far` is the running max in
    trial order; `best_so_far_at_time` the max over trials that had ended by
    this trial's end (differs only when trials ran in parallel).
    """
    ended = runs.trials[runs.trials["state"] != RUNNING]
    acc = ended["best_val_accuracy"].where(ended["state"] == COMPLETED)
    out = pd.DataFrame({
        "trial_number": ended["trial_number"].to_numpy(),
        "trial_id": ended["trial_id"].to_numpy(),
        "run_id": ended["run_id"].to_numpy(),
        "state": ended["state"].to_numpy(),
        "variant": ended["variant"].to_numpy(),
        "best_val_accuracy": acc.to_numpy(dtype=float),
        "elapsed_s": ended["elapsed_s"].to_numpy(dtype=float),
    })
    # cummax leaves NaN where a failed trial sits; the best so far carries on through it.
    out["best_so_far"] = out["best_val_accuracy"].cummax().ffill()
    by_time = out.sort_values(["elapsed_s", "trial_number"], kind="stable")
    out["best_so_far_at_time"] = by_time["best_val_accuracy"].cummax().ffill().reindex(out.index)
    return out.reset_index(drop=True)


# What a trial costs beside its accuracy, each a Pareto axis (fewer is better): column -> label.
COSTS = {"param_count": "parameters", schema.INFERENCE_MS: "inference latency (ms per image, batch 1)"}


def measured(runs: StudyRuns, column: str) -> bool:
    """Whether any completed trial recorded `column` (a study run before latency was measured did not)."""
    done = runs.completed
    return column in done.columns and bool(done[column].notna().any())


def dominated(cost: np.ndarray, accuracy: np.ndarray) -> np.ndarray:
    """For each point, whether another has accuracy >= and cost <= with one of them strict. Sorted by cost
    (ties: most accurate first), a point is dominated by an earlier one of lower cost and no lower accuracy,
    or by the best of its own cost when that is more accurate: O(n log n), for 10,000 trials too."""
    n = len(cost)
    if n == 0:
        return np.zeros(0, dtype=bool)
    order = np.lexsort((-accuracy, cost))
    c, a = cost[order], accuracy[order]
    group_start = np.r_[True, c[1:] != c[:-1]]
    first = np.maximum.accumulate(np.where(group_start, np.arange(n), 0))  # first index of each point's cost
    best_before = np.maximum.accumulate(a)  # best accuracy up to each index
    best_cheaper = np.where(first > 0, best_before[np.maximum(first - 1, 0)], -np.inf)
    out = np.empty(n, dtype=bool)
    out[order] = (best_cheaper >= a) | (a[first] > a)
    return out


def pareto_front(runs: StudyRuns, cost: str = "param_count") -> pd.DataFrame:
    """Completed trials that no other trial beats on both accuracy (max) and `cost` (min): one of COSTS,
    the parameter count or the inference latency. Sorted by that cost. Accuracy is best_val_accuracy
    (model selection never looks at test). Empty when no trial recorded the cost.
    """
    cols = ["trial_number", "trial_id", "variant", *COSTS, "best_val_accuracy", "test_accuracy", "run_id"]
    done = runs.completed
    if cost not in done.columns:
        return pd.DataFrame(columns=cols)
    done = done.dropna(subset=[cost, "best_val_accuracy"])
    front = done[~dominated(done[cost].to_numpy(dtype=float), done["best_val_accuracy"].to_numpy(dtype=float))]
    return front.sort_values([cost, "best_val_accuracy"])[cols].reset_index(drop=True)


def reproduce_command(run_id: str) -> str:
    return f"lenet-study train --run {run_id}"


def knob_list(row: pd.Series) -> str:
    """All knobs of a trial as `name=value` pairs (the run's params; seed last)."""
    parts = []
    for knob in (*KNOBS, "seed"):
        value = row.get(knob)
        if is_missing(value):
            continue
        if knob == "learning_rate" or knob == "momentum":
            value = f"{float(value):g}"
        parts.append(f"{knob}={value}")
    return " ".join(parts)


def leaderboard(runs: StudyRuns, top: int = 10) -> pd.DataFrame:
    """The `top` completed trials by validation accuracy (ties: fewer parameters first)."""
    done = runs.completed.sort_values(
        ["best_val_accuracy", "param_count", "trial_number"], ascending=[False, True, True], kind="stable"
    ).head(top)
    knobs = varied_knobs(runs)
    out = pd.DataFrame({
        "rank": range(1, len(done) + 1),
        "trial_id": done["trial_id"].to_numpy(),
        "variant": done["variant"].to_numpy(),
        "seed": done["seed"].to_numpy(),
    })
    for knob in knobs:
        out[knob] = done[knob].to_numpy()
    for col in ("best_val_accuracy", "test_accuracy", "param_count", "epochs_run", "wall_time_s",
                schema.INFERENCE_MS, schema.INFERENCE_IPS, schema.EPOCH_SECONDS):
        out[col] = done[col].to_numpy(dtype=float)
    out["run_id"] = done["run_id"].to_numpy()
    out["command"] = [reproduce_command(r) for r in done["run_id"]]
    out["knobs"] = [knob_list(row) for _, row in done.iterrows()]
    return out


def failed_trials(runs: StudyRuns) -> pd.DataFrame:
    """Failed and NaN trials with their reason (never plotted)."""
    f = runs.failed
    cols = ["trial_number", "trial_id", "variant", "status", "trial_status", "stop_reason", "failure_reason", "run_id"]
    return f[cols].reset_index(drop=True)
