"""Reports: read a study's runs from the MLflow store and turn them into figures and tables.

Reports never train. `load_study` reads one study (an MLflow experiment named
after it, see `schema.py`) into pandas: the parent runs, one row per trial
(child run) and the per-epoch metric histories. The table functions
(`replication_table`, `best_so_far`, `pareto_front`, `leaderboard`,
`failed_trials`) and the `plot_*` functions work on that object only, so the
notebooks in `reports/` call the very same code. `write_report` writes
`reports/<study>/` (PNG figures, `report.md`, a self-contained `report.html`)
and attaches the files to the study's parent run under "report";
`run_notebooks` executes the two notebooks headlessly for one study and
renders them to HTML beside the report.

Figures are drawn on `matplotlib.figure.Figure` objects with an Agg canvas,
never through pyplot, so no global backend or figure state is touched and
nothing needs a display.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime as _dt
import html
import json
import logging
import math
import os
import re
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd

from . import schema
from .model import LeNetConfig
from .variants import VARIANTS

UI_HOST = "http://127.0.0.1:5000"
NOTEBOOKS = ("compare_variants", "search_results")
NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "reports"

# Every LeNetConfig field is a knob except the seed, which makes replicates, not variants.
_FIELD_TYPES = {f.name: str(f.type) for f in dataclasses.fields(LeNetConfig)}
KNOBS = tuple(name for name in _FIELD_TYPES if name != "seed")
_INT_KNOBS = {name for name, kind in _FIELD_TYPES.items() if kind in ("int", "<class 'int'>")}
_FLOAT_KNOBS = {name for name, kind in _FIELD_TYPES.items() if kind in ("float", "<class 'float'>")}
_LOG_KNOBS = {"learning_rate"}  # always drawn on a log axis; others only when they span 100x

# Files write_report owns inside reports/<study>/ (stale ones are removed before writing).
_GENERATED = re.compile(
    r"^(variant_accuracy|variant_learning_curves|best_so_far|knob_[A-Za-z0-9_]+|"
    r"parallel_coordinates|pareto)\.png$|^report\.(md|html)$"
)

COMPLETED, FAILED, RUNNING = "completed", "failed", "running"


class ReportError(Exception):
    """A one-line, user-facing reason why a report cannot be made."""


# --------------------------------------------------------------------------- loading


@dataclass
class StudyRuns:
    """One study as read from the store.

    `parents`: the parent runs (invocations) of the study's latest search
    (search_runs rows, oldest first); `parent`: the latest of them that has
    trials (settings, provenance, and where the report is attached); `trials`:
    one row per trial, deduplicated by TRIAL_ID (see `load_study`), numbered by
    start time, with `state` completed|failed|running and `failure_reason`;
    `histories`: run_id -> DataFrame(step, metric, value) for every ended trial;
    `datasets`: the parent's MLflow dataset inputs.
    """

    study: str
    tracking_uri: str
    experiment_id: str
    parents: pd.DataFrame
    parent: pd.Series
    trials: pd.DataFrame
    histories: dict[str, pd.DataFrame] = field(default_factory=dict)
    datasets: list[dict[str, Any]] = field(default_factory=list)
    n_child_runs: int = 0  # child runs of the latest search before deduplication
    n_earlier_search_runs: int = 0  # child runs of earlier searches (before `search --fresh`), left out

    @property
    def parent_run_id(self) -> str:
        return str(self.parent["run_id"])

    @property
    def experiment_url(self) -> str:
        return experiment_url(self.experiment_id)

    @property
    def parent_params(self) -> dict[str, str]:
        return _prefixed(self.parent, "params.")

    @property
    def parent_tags(self) -> dict[str, str]:
        return _prefixed(self.parent, "tags.")

    @property
    def completed(self) -> pd.DataFrame:
        return self.trials[self.trials["state"] == COMPLETED]

    @property
    def failed(self) -> pd.DataFrame:
        return self.trials[self.trials["state"] == FAILED]

    @property
    def variant_trials(self) -> pd.DataFrame:
        """Completed trials of documented variants (those with the `variant` param)."""
        done = self.completed
        return done[done["variant"].notna()]

    @property
    def has_search(self) -> bool:
        """True when some trial is not a documented variant, i.e. a search ran."""
        return bool(self.trials["variant"].isna().any())


def experiment_url(experiment_id: str, host: str = UI_HOST) -> str:
    """The MLflow UI's runs table of an experiment (MLflow 3 opens the GenAI view without the flag)."""
    from .tracking import ui_link

    return ui_link(host, experiment_id)


def run_url(experiment_id: str, run_id: str, host: str = UI_HOST) -> str:
    return f"{host}/#/experiments/{experiment_id}/runs/{run_id}"


@contextlib.contextmanager
def _tracking(uri: str | None) -> Iterator[None]:
    """Point the fluent MLflow API (mlflow.search_runs) at `uri` for a while, then put back
    exactly what was there (the module global and MLFLOW_TRACKING_URI)."""
    if uri is None:
        yield
        return
    import mlflow
    from mlflow.tracking._tracking_service import utils as tracking_utils

    previous = getattr(tracking_utils, "_tracking_uri", None)
    previous_env = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)
        if previous_env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = previous_env


def _client(tracking_uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)


def _resolve_uri(tracking_uri: str | None) -> str:
    """The same store the search writes to (study.tracking): explicit, else $MLFLOW_TRACKING_URI, else ./mlflow.db."""
    from .tracking import tracking_uri as resolve

    return resolve(tracking_uri)


def _study_experiments(client) -> dict[str, str]:
    """name -> experiment id of every experiment holding a parent run with ROLE=study."""
    from mlflow.entities import ViewType

    experiments, token = [], None
    while True:
        page = client.search_experiments(view_type=ViewType.ACTIVE_ONLY, max_results=1000, page_token=token)
        experiments.extend(page)
        token = page.token
        if not token:
            break
    out = {}
    for exp in experiments:
        hits = client.search_runs(
            [exp.experiment_id], filter_string=f"tags.`{schema.ROLE}` = '{schema.ROLE_STUDY}'", max_results=1
        )
        if hits:
            out[exp.name] = exp.experiment_id
    return out


def list_studies(tracking_uri: str | None = None) -> list[str]:
    """Names of the studies in the store: experiments that have a parent run with ROLE=study."""
    uri = _resolve_uri(tracking_uri)
    return sorted(_study_experiments(_client(uri)))


def _col(df: pd.DataFrame, name: str, default: Any = None) -> pd.Series:
    if name in df.columns:
        return df[name]
    return pd.Series([default] * len(df), index=df.index, dtype=object)


def _prefixed(row: pd.Series, prefix: str) -> dict[str, str]:
    return {
        key[len(prefix):]: row[key]
        for key in row.index
        if key.startswith(prefix) and not _missing(row[key])
    }


def _missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _text(value: Any) -> str | None:
    return None if _missing(value) or str(value) == "" else str(value)


def load_study(study: str, tracking_uri: str | None = None) -> StudyRuns:
    """Read study `study` from the store at `tracking_uri` (default: $MLFLOW_TRACKING_URI, else
    ./mlflow.db, as for the search).

    The parent run that sets the scene is the latest one that has child runs;
    settings and provenance come from it and the report is attached to it. A
    study has one parent per invocation: trials are the child runs of every
    parent of the same search (SEARCH_ID tag; `search --fresh` starts a new
    one, and earlier searches are left out), deduplicated by TRIAL_ID: for each
    id the latest completed run is kept, else the latest run. Raises
    ReportError for an unknown study and for a study without a completed trial.
    """
    import mlflow

    uri = _resolve_uri(tracking_uri)
    client = _client(uri)
    known = _study_experiments(client)
    if study not in known:
        where = f" in {uri}"
        if known:
            raise ReportError(f"unknown study {study!r}{where}; known studies: {', '.join(sorted(known))}")
        raise ReportError(f"unknown study {study!r}{where}; the store holds no studies yet (run `lenet-study search` first)")
    experiment_id = known[study]

    with _tracking(uri):
        df = mlflow.search_runs(experiment_ids=[experiment_id], max_results=100_000)
    role = _col(df, f"tags.{schema.ROLE}")
    parents = df[role == schema.ROLE_STUDY].sort_values("start_time", kind="stable").reset_index(drop=True)
    parent_of = _col(df, "tags.mlflow.parentRunId")
    children = df[parent_of.isin(set(parents["run_id"])) & (role != schema.ROLE_STUDY)]
    if children.empty:
        raise ReportError(f"study {study!r} has no trials yet (no child runs under its {len(parents)} parent run(s))")
    # The latest search: the SEARCH_ID of the latest parent with children ("" when untagged).
    search_ids = _col(parents, f"tags.{schema.SEARCH_ID}").map(lambda v: _text(v) or "")
    latest = parents[parents["run_id"].isin(set(children["tags.mlflow.parentRunId"]))].index[-1]
    same_search = search_ids == search_ids.loc[latest]
    in_search = children["tags.mlflow.parentRunId"].isin(set(parents.loc[same_search, "run_id"]))
    n_earlier = int((~in_search).sum())  # every child's parent is one of `parents`
    parents = parents[same_search].reset_index(drop=True)
    children = children[in_search]

    trials = _trials_frame(children)
    n_child_runs = len(trials)
    trials = _deduplicate(trials)
    _explain_failures(trials, client)

    with_children = parents[parents["run_id"].isin(set(trials["parent_run_id"]))]
    parent = with_children.iloc[-1]
    trials = _add_elapsed(trials, parents)
    trials = trials.sort_values(["start_time", "trial_id"], kind="stable").reset_index(drop=True)
    trials.insert(0, "trial_number", range(1, len(trials) + 1))

    n_done = int((trials["state"] == COMPLETED).sum())
    if n_done == 0:
        n_failed = int((trials["state"] == FAILED).sum())
        n_running = int((trials["state"] == RUNNING).sum())
        raise ReportError(
            f"study {study!r} has no finished trials ({n_failed} failed, {n_running} running); nothing to report"
        )

    histories = {}
    for run_id in trials.loc[trials["state"] != RUNNING, "run_id"]:
        histories[run_id] = _history(client, run_id)

    return StudyRuns(
        study=study,
        tracking_uri=uri,
        experiment_id=str(experiment_id),
        parents=parents,
        parent=parent,
        trials=trials,
        histories=histories,
        datasets=_datasets(client, str(parent["run_id"])),
        n_child_runs=n_child_runs,
        n_earlier_search_runs=n_earlier,
    )


def _trials_frame(children: pd.DataFrame) -> pd.DataFrame:
    """One row per child run with plain column names and typed knob values."""
    out = pd.DataFrame(index=children.index)
    out["run_id"] = children["run_id"]
    out["parent_run_id"] = children["tags.mlflow.parentRunId"]
    out["trial_id"] = [
        _text(t) or r for t, r in zip(_col(children, f"tags.{schema.TRIAL_ID}"), children["run_id"])
    ]
    out["status"] = children["status"]
    out["trial_status"] = [_text(v) for v in _col(children, f"tags.{schema.TRIAL_STATUS}")]
    out["stop_reason"] = [_text(v) for v in _col(children, f"tags.{schema.STOP_REASON}")]
    out["failure_reason"] = [_text(v) for v in _col(children, f"tags.{schema.FAILURE_REASON}")]
    out["worker"] = [_text(v) for v in _col(children, f"tags.{schema.WORKER}")]
    variant_param = _col(children, f"params.{schema.VARIANT}")
    variant_tag = _col(children, f"tags.{schema.VARIANT}")
    out["variant"] = [_text(p) or _text(t) for p, t in zip(variant_param, variant_tag)]
    out["variant"] = out["variant"].astype(object)
    out["seed"] = pd.to_numeric(_col(children, "params.seed"), errors="coerce").round().astype("Int64")
    for knob in KNOBS:
        raw = _col(children, f"params.{knob}")
        if knob in _INT_KNOBS:
            out[knob] = pd.to_numeric(raw, errors="coerce").round().astype("Int64")
        elif knob in _FLOAT_KNOBS:
            out[knob] = pd.to_numeric(raw, errors="coerce").astype(float)
        else:
            out[knob] = [_text(v) for v in raw]
            out[knob] = out[knob].astype(object)
    for metric in (
        "best_val_accuracy", "best_val_loss", "best_epoch", "test_accuracy", "test_loss",
        "param_count", "epochs_run", "wall_time_s",
    ):
        out[metric] = pd.to_numeric(_col(children, f"metrics.{metric}", np.nan), errors="coerce").astype(float)
    out["start_time"] = children["start_time"]
    out["end_time"] = children["end_time"]
    # Any other params (tuner/* keys) and metrics (*_mean, *_std) ride along under their own names.
    for col in children.columns:
        for prefix in ("params.", "metrics."):
            if col.startswith(prefix):
                name = col[len(prefix):]
                if name not in out.columns and name not in schema.HISTORY_METRICS:
                    out[name] = children[col]
    out["state"] = [_state(r) for r in out.itertuples()]
    return out.reset_index(drop=True)


def _state(row) -> str:
    if row.trial_status == "FAILED" or row.status in ("FAILED", "KILLED"):
        return FAILED
    if row.status == "FINISHED" or row.trial_status == "COMPLETED":
        return COMPLETED if math.isfinite(row.best_val_accuracy) else FAILED
    return RUNNING


def _deduplicate(trials: pd.DataFrame) -> pd.DataFrame:
    """Keep one run per TRIAL_ID: the latest completed one, else the latest."""
    ranked = trials.assign(_done=trials["state"] == COMPLETED)
    ranked = ranked.sort_values(["_done", "start_time"], kind="stable")
    kept = ranked.groupby("trial_id", sort=False).tail(1)
    return kept.drop(columns="_done").reset_index(drop=True)


def _explain_failures(trials: pd.DataFrame, client) -> None:
    """Fill failure_reason for failed trials that carry no FAILURE_REASON tag."""
    for i in trials.index[(trials["state"] == FAILED) & trials["failure_reason"].isna()]:
        row = trials.loc[i]
        if row["stop_reason"] == "nan":
            reason = "loss became NaN (training diverged)"
        elif row["status"] == "KILLED":
            reason = "run killed (interrupted)"
        elif row["status"] == "FAILED" or row["trial_status"] == "FAILED":
            reason = "run failed (no reason recorded)"
        elif "best_val_accuracy" in client.get_run(row["run_id"]).data.metrics:
            reason = "best_val_accuracy is NaN"
        else:
            reason = "no best_val_accuracy recorded"
        trials.loc[i, "failure_reason"] = reason


def _add_elapsed(trials: pd.DataFrame, parents: pd.DataFrame) -> pd.DataFrame:
    """elapsed_s: seconds from the study's start to the end of each trial.

    Each trial is timed from the start of its own parent run; earlier parent
    runs (previous invocations) add their duration, so idle time between
    invocations does not count.
    """
    offsets, offset = {}, 0.0
    for _, p in parents.iterrows():
        offsets[p["run_id"]] = offset
        mine = trials[trials["parent_run_id"] == p["run_id"]]
        ends = [t for t in list(mine["end_time"]) + [p["end_time"]] if not pd.isna(t)]
        if ends:
            offset += max(0.0, (max(ends) - p["start_time"]).total_seconds())
    starts = trials["parent_run_id"].map(parents.set_index("run_id")["start_time"])
    elapsed = (trials["end_time"] - starts).dt.total_seconds() + trials["parent_run_id"].map(offsets)
    return trials.assign(elapsed_s=elapsed.astype(float))


def _history(client, run_id: str) -> pd.DataFrame:
    rows = []
    for metric in schema.HISTORY_METRICS:
        for m in client.get_metric_history(run_id, metric):
            rows.append((int(m.step), metric, float(m.value)))
    frame = pd.DataFrame(rows, columns=["step", "metric", "value"])
    return frame.sort_values(["metric", "step"]).reset_index(drop=True)


def _datasets(client, run_id: str) -> list[dict[str, Any]]:
    run = client.get_run(run_id)
    out = []
    for di in getattr(run.inputs, "dataset_inputs", None) or []:
        ds = di.dataset
        tags = {t.key: t.value for t in (di.tags or [])}
        out.append({
            "name": ds.name,
            "digest": ds.digest,
            "source_type": ds.source_type,
            "source": ds.source,
            "profile": ds.profile,
            "context": tags.get("mlflow.data.context"),
        })
    return out


# --------------------------------------------------------------------------- tables


def varied_knobs(runs: StudyRuns) -> list[str]:
    """Knobs with more than one distinct value among completed trials, in LeNetConfig order."""
    done = runs.completed
    return [k for k in KNOBS if done[k].dropna().nunique() > 1]


def replication_table(runs: StudyRuns) -> pd.DataFrame:
    """Per documented variant: the tutorial's figure beside the measured accuracy over seeds.

    `difference` = measured mean TEST accuracy - reported figure (the tutorials'
    figures are de facto test/held-out figures). std is the sample std (ddof=1).
    """
    trials = runs.trials[runs.trials["variant"].notna()]
    columns = [
        "variant", "dataset", "measured_dataset", "n", "n_failed", "seeds", "reported", "reported_as",
        "val_mean", "val_std", "test_mean", "test_std", "difference", "params_doc", "params_measured", "note",
    ]
    if trials.empty:
        return pd.DataFrame(columns=columns)
    study_dataset = _text(runs.parent_params.get("dataset"))
    order = [v for v in VARIANTS if v in set(trials["variant"])]
    order += sorted(set(trials["variant"]) - set(order))
    rows = []
    for name in order:
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
        if v and measured_ds and measured_ds != v.dataset:
            notes.append(f"measured on {measured_ds}, the tutorial used {v.dataset}")
        if v is None:
            notes.append("not a documented variant")
        if len(done) and not len(test):
            notes.append("no test accuracy recorded")
        params = done["param_count"].dropna()
        params_measured = float(params.median()) if len(params) else np.nan
        rows.append({
            "variant": name,
            "dataset": v.dataset if v else None,
            "measured_dataset": measured_ds,
            "n": len(done),
            "n_failed": int((mine["state"] == FAILED).sum()),
            "seeds": ",".join(str(s) for s in sorted(done["seed"].dropna().unique())),
            "reported": np.nan if reported is None else float(reported),
            "reported_as": v.reported_as if v else None,
            "val_mean": float(done["best_val_accuracy"].mean()) if len(done) else np.nan,
            "val_std": float(done["best_val_accuracy"].std(ddof=1)) if len(done) > 1 else np.nan,
            "test_mean": test_mean,
            "test_std": float(test.std(ddof=1)) if len(test) > 1 else np.nan,
            "difference": test_mean - reported if reported is not None and len(test) else np.nan,
            "params_doc": v.params if v else np.nan,
            "params_measured": params_measured,
            "note": "; ".join(notes),
        })
    return pd.DataFrame(rows, columns=columns)


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


def pareto_front(runs: StudyRuns) -> pd.DataFrame:
    """Completed trials that no other trial beats on both accuracy (max) and parameters (min).

    Sorted by parameter count. Accuracy is best_val_accuracy (model selection
    never looks at test).
    """
    done = runs.completed.dropna(subset=["param_count", "best_val_accuracy"])
    acc = done["best_val_accuracy"].to_numpy(dtype=float)
    par = done["param_count"].to_numpy(dtype=float)
    no_worse = (acc[None, :] >= acc[:, None]) & (par[None, :] <= par[:, None])
    better = (acc[None, :] > acc[:, None]) | (par[None, :] < par[:, None])
    dominated = (no_worse & better).any(axis=1)
    front = done[~dominated]
    cols = ["trial_number", "trial_id", "variant", "param_count", "best_val_accuracy", "test_accuracy", "run_id"]
    return front.sort_values(["param_count", "best_val_accuracy"])[cols].reset_index(drop=True)


def reproduce_command(run_id: str) -> str:
    return f"lenet-study train --run {run_id}"


def knob_list(row: pd.Series) -> str:
    """All knobs of a trial as `name=value` pairs (the run's params; seed last)."""
    parts = []
    for knob in (*KNOBS, "seed"):
        value = row.get(knob)
        if _missing(value):
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
    for col in ("best_val_accuracy", "test_accuracy", "param_count", "epochs_run", "wall_time_s"):
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


# --------------------------------------------------------------------------- figures


def _figure(width: float = 8.0, height: float = 5.0, ncols: int = 1):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, ncols)
    return fig, axes


def _variant_order(names) -> list[str]:
    names = set(names)
    return [v for v in VARIANTS if v in names] + sorted(names - set(VARIANTS))


def _label(row: pd.Series) -> str:
    return str(row["variant"]) if not _missing(row.get("variant")) else f"trial {row['trial_id']}"


def plot_variant_accuracy(runs: StudyRuns):
    """Validation and test accuracy per documented variant: mean bars, std error bars, n, reported figure."""
    table = replication_table(runs)
    table = table[table["n"] > 0].reset_index(drop=True)
    if table.empty:
        return None
    fig, ax = _figure(max(7.5, 1.6 * len(table) + 2.5), 5.5)
    x = np.arange(len(table))
    width = 0.38
    has_test = table["test_mean"].notna().any()
    offset = width / 2 if has_test else 0.0
    ax.bar(x - offset, table["val_mean"], width, yerr=table["val_std"].fillna(0), capsize=4,
           color="C0", label="validation (best epoch)")
    if has_test:
        ax.bar(x + offset, table["test_mean"], width, yerr=table["test_std"].fillna(0), capsize=4,
               color="C1", label="test")
    reported = table["reported"]
    if reported.notna().any():
        ax.scatter(x[reported.notna()] + offset, reported[reported.notna()], marker="D", color="black",
                   zorder=5, label="reported by the tutorial")
    values = pd.concat([table["val_mean"] - table["val_std"].fillna(0),
                        table["test_mean"] - table["test_std"].fillna(0), reported]).dropna()
    # Zoom in on the top of the axis only when every bar is high (say so on the label), else start at 0.
    low = math.floor((values.min() - 0.03) * 20) / 20 if len(values) and values.min() >= 0.5 else 0.0
    top = min(1.0, (pd.concat([table["val_mean"] + table["val_std"].fillna(0),
                                table["test_mean"] + table["test_std"].fillna(0), reported]).max()))
    ax.set_ylim(low, top + (top - low) * 0.08)
    for xi, n in zip(x, table["n"]):
        ax.annotate(f"n={n}", (xi, low), xytext=(0, 4), textcoords="offset points", ha="center",
                    va="bottom", fontsize=8, color="white", fontweight="bold")
    ax.set_xticks(x, table["variant"], rotation=15, ha="right")
    ax.set_ylabel(f"accuracy (axis starts at {low:.2f})" if low > 0 else "accuracy")
    ax.set_title(f"Documented variants (study '{runs.study}')\nmean over seed replicates; error bars: sample std")
    ax.grid(axis="y", alpha=0.3)
    fig.legend(loc="outside lower center", ncols=3, fontsize=9)
    return fig


def _curves(runs: StudyRuns, trials: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Columns = run ids, index = step, values = `metric`."""
    series = {}
    for run_id in trials["run_id"]:
        h = runs.histories.get(run_id)
        if h is None or h.empty:
            continue
        s = h[h["metric"] == metric].set_index("step")["value"]
        if not s.empty:
            series[run_id] = s
    return pd.DataFrame(series)


def plot_learning_curves(runs: StudyRuns, metric: str = "val_accuracy"):
    """Per-epoch `metric` of every documented variant: mean over replicates, band = min..max."""
    trials = runs.variant_trials
    if trials.empty:
        return None
    fig, ax = _figure(9.0, 5.0)
    drawn = 0
    for i, name in enumerate(_variant_order(trials["variant"])):
        curves = _curves(runs, trials[trials["variant"] == name], metric)
        if curves.empty:
            continue
        epochs = curves.index.to_numpy() + 1
        color = f"C{i % 10}"
        ax.plot(epochs, curves.mean(axis=1), marker="o", ms=3, color=color,
                label=f"{name} (n={curves.shape[1]})")
        if curves.shape[1] > 1:
            ax.fill_between(epochs, curves.min(axis=1), curves.max(axis=1), color=color, alpha=0.2, lw=0)
        drawn += 1
    if not drawn:
        return None
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    pretty = metric.replace("val_", "validation ").replace("_", " ")
    ax.set_ylabel(pretty)
    ax.set_title(f"{pretty.capitalize()} per epoch of each documented variant\nmean over seed replicates; band: min to max")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9)
    return fig


def _time_unit(seconds: float) -> tuple[float, str]:
    if seconds >= 2 * 3600:
        return 3600.0, "h"
    if seconds >= 600:
        return 60.0, "min"
    return 1.0, "s"


def plot_best_so_far(runs: StudyRuns):
    """Best validation accuracy so far against trial number and against wall time."""
    bsf = best_so_far(runs)
    done = bsf[bsf["state"] == COMPLETED]
    if done.empty:
        return None
    fig, (left, right) = _figure(12.0, 4.8, ncols=2)
    left.scatter(done["trial_number"], done["best_val_accuracy"], s=18, color="0.6", label="completed trial")
    left.step(bsf["trial_number"], bsf["best_so_far"], where="post", color="C3", lw=2, label="best so far")
    left.set_xlabel("trial number (in start order)")
    left.set_ylabel("best validation accuracy")
    left.set_title("Best so far by trial" + ("\n" if len(runs.parents) > 1 else ""))
    timed = bsf.dropna(subset=["elapsed_s"]).sort_values("elapsed_s")
    scale, unit = _time_unit(float(timed["elapsed_s"].max()) if len(timed) else 0.0)
    tdone = timed[timed["state"] == COMPLETED]
    right.scatter(tdone["elapsed_s"] / scale, tdone["best_val_accuracy"], s=18, color="0.6", label="completed trial")
    right.step(timed["elapsed_s"] / scale, timed["best_so_far_at_time"], where="post", color="C3", lw=2,
               label="best so far")
    right.set_xlabel(f"wall time at trial end ({unit})")
    gaps = "\n(from the study's start; idle time between invocations left out)" if len(runs.parents) > 1 else ""
    right.set_title(f"Best so far by wall time{gaps}")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=9)
    n_failed = int((bsf["state"] == FAILED).sum())
    note = f"; {n_failed} failed trial(s) not plotted" if n_failed else ""
    fig.suptitle(f"Study '{runs.study}': {len(done)} completed trials{note}")
    return fig


def _is_categorical(values: pd.Series, knob: str) -> bool:
    if knob in _FLOAT_KNOBS:
        return False
    if knob in _INT_KNOBS:
        return values.nunique() <= 4
    return True


def _sorted_categories(values: pd.Series) -> list:
    uniq = list(values.dropna().unique())
    try:
        return sorted(uniq, key=float)
    except (TypeError, ValueError):
        return sorted(uniq, key=str)


def _use_log(values: pd.Series, knob: str) -> bool:
    v = values.dropna().astype(float)
    if v.empty or (v <= 0).any():
        return False
    return knob in _LOG_KNOBS or v.max() / v.min() >= 100


def plot_knob(runs: StudyRuns, knob: str):
    """Validation accuracy against one knob's values (completed trials; the best one starred)."""
    done = runs.completed.dropna(subset=[knob])
    if done.empty:
        return None
    fig, ax = _figure(7.0, 4.5)
    acc = done["best_val_accuracy"].astype(float)
    best = done.loc[acc.idxmax()]
    rng = np.random.default_rng(0)
    if _is_categorical(done[knob], knob):
        cats = _sorted_categories(done[knob])
        groups = [acc[done[knob] == c].to_numpy() for c in cats]
        ax.boxplot(groups, positions=range(len(cats)), widths=0.5, showfliers=False,
                   medianprops={"color": "C1"})
        for i, g in enumerate(groups):
            ax.scatter(i + rng.uniform(-0.12, 0.12, len(g)), g, s=16, color="C0", alpha=0.7, zorder=3)
        ax.set_xticks(range(len(cats)), [f"{c}\n(n={len(g)})" for c, g in zip(cats, groups)])
        ax.scatter([cats.index(best[knob])], [best["best_val_accuracy"]], marker="*", s=180, color="C3",
                   zorder=4, label=f"best: trial {best['trial_id']}")
    else:
        x = done[knob].astype(float)
        ax.scatter(x, acc, s=20, color="C0", alpha=0.8)
        if _use_log(done[knob], knob):
            ax.set_xscale("log")
        ax.scatter([float(best[knob])], [best["best_val_accuracy"]], marker="*", s=180, color="C3",
                   zorder=4, label=f"best: trial {best['trial_id']}")
    ax.set_xlabel(knob)
    ax.set_ylabel("best validation accuracy")
    ax.set_title(f"{knob}: validation accuracy of {len(done)} completed trials")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=9)
    return fig


def plot_parallel_coordinates(runs: StudyRuns, top: int = 15):
    """The top trials across the varied knobs and validation accuracy, coloured by accuracy."""
    import matplotlib
    from matplotlib import cm, colors

    knobs = varied_knobs(runs)
    if not knobs:
        return None
    done = runs.completed.sort_values("best_val_accuracy", ascending=False, kind="stable").head(top)
    axes_names = knobs + ["best_val_accuracy"]
    positions, ticks = {}, {}
    for name in axes_names:
        col = done[name]
        if name != "best_val_accuracy" and _is_categorical(runs.completed[name].dropna(), name):
            cats = _sorted_categories(runs.completed[name])
            span = max(len(cats) - 1, 1)
            pos = {c: (i / span if len(cats) > 1 else 0.5) for i, c in enumerate(cats)}
            positions[name] = col.map(lambda v: pos.get(v, np.nan)).astype(float)
            ticks[name] = [(p, str(c)) for c, p in pos.items()]
        else:
            vals = col.astype(float)
            log = name != "best_val_accuracy" and _use_log(runs.completed[name], name)
            t = np.log10(vals) if log else vals
            lo, hi = float(t.min()), float(t.max())
            positions[name] = (t - lo) / (hi - lo) if hi > lo else t * 0 + 0.5
            shown = [lo, hi] if hi > lo else [lo]
            ticks[name] = [((v - lo) / (hi - lo) if hi > lo else 0.5, f"{10 ** v if log else v:.4g}") for v in shown]
    fig, ax = _figure(max(8.0, 1.4 * len(axes_names) + 2), 5.5)
    acc = done["best_val_accuracy"].astype(float)
    norm = colors.Normalize(vmin=float(acc.min()), vmax=float(acc.max()) if acc.max() > acc.min() else float(acc.min()) + 1e-9)
    cmap = matplotlib.colormaps["viridis"]
    xs = np.arange(len(axes_names))
    for rank, (idx, a) in enumerate(acc.items()):
        ys = [positions[n].loc[idx] for n in axes_names]
        ax.plot(xs, ys, color=cmap(norm(a)), lw=3.0 if rank == 0 else 1.3, alpha=0.9, zorder=3 if rank == 0 else 2)
    for i, name in enumerate(axes_names):
        ax.axvline(i, color="0.3", lw=1)
        for y, label in ticks[name]:
            ax.annotate(label, (i, y), xytext=(-4, 0), textcoords="offset points", ha="right", va="center",
                        fontsize=8, color="0.15", bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8})
    ax.set_xticks(xs, [n.replace("best_val_accuracy", "val accuracy") for n in axes_names], rotation=20, ha="right")
    ax.set_yticks([])
    ax.set_ylim(-0.06, 1.06)
    ax.set_xlim(-0.6, len(axes_names) - 0.6)
    for spine in ("left", "right", "top"):
        ax.spines[spine].set_visible(False)
    fig.colorbar(cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="best validation accuracy")
    ax.set_title(f"Top {len(done)} trials by validation accuracy (thick line: best)")
    return fig


def plot_pareto(runs: StudyRuns):
    """Validation accuracy against parameter count, Pareto front (max accuracy, min params) marked."""
    done = runs.completed.dropna(subset=["param_count", "best_val_accuracy"])
    if done.empty:
        return None
    front = pareto_front(runs)
    fig, ax = _figure(8.5, 5.0)
    ax.scatter(done["param_count"], done["best_val_accuracy"], s=22, color="0.55", label="completed trial")
    ax.step(front["param_count"], front["best_val_accuracy"], where="post", color="C3", lw=1.2, alpha=0.7)
    ax.scatter(front["param_count"], front["best_val_accuracy"], s=60, color="C3", zorder=3,
               label=f"Pareto front ({len(front)} trials)")
    for _, row in front.iterrows():
        ax.annotate(_label(row), (row["param_count"], row["best_val_accuracy"]), xytext=(5, -10),
                    textcoords="offset points", fontsize=8)
    p = done["param_count"].astype(float)
    if p.min() > 0 and p.max() / p.min() >= 10:
        ax.set_xscale("log")
    ax.set_xlabel("parameters")
    ax.set_ylabel("best validation accuracy")
    ax.set_title("Accuracy against model size (front: no trial is both more accurate and smaller)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=9)
    return fig


def figures(runs: StudyRuns) -> dict[str, Any]:
    """file name -> Figure for every figure that applies to this study."""
    out: dict[str, Any] = {}
    if not runs.variant_trials.empty:
        out["variant_accuracy.png"] = plot_variant_accuracy(runs)
        out["variant_learning_curves.png"] = plot_learning_curves(runs)
    if runs.has_search:
        out["best_so_far.png"] = plot_best_so_far(runs)
    for knob in varied_knobs(runs):
        out[f"knob_{knob}.png"] = plot_knob(runs, knob)
    out["parallel_coordinates.png"] = plot_parallel_coordinates(runs)
    out["pareto.png"] = plot_pareto(runs)
    return {name: fig for name, fig in out.items() if fig is not None}


# --------------------------------------------------------------------------- report.md / report.html


def _fmt(value: Any, kind: str = "") -> str:
    if _missing(value):
        return "—"
    if kind == "acc":
        return f"{float(value):.4f}"
    if kind == "signed":
        return f"{float(value):+.4f}"
    if kind == "int":
        return f"{int(round(float(value))):,}"
    if kind == "s":
        return f"{float(value):.1f}"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _cell(value: Any) -> str:
    text = re.sub(r"\s+", " ", str(value)).strip()
    if len(text) > 300:
        text = text[:297] + "..."
    return text.replace("|", "\\|")


def _md_table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _settings_section(runs: StudyRuns) -> list[str]:
    params = runs.parent_params
    tags = runs.parent_tags
    lines = ["## Study settings", ""]
    earlier = (f" Child runs of earlier searches (before `search --fresh`) are left out: "
               f"{runs.n_earlier_search_runs}." if runs.n_earlier_search_runs else "")
    lines.append(
        f"From parent run [`{runs.parent_run_id}`]({run_url(runs.experiment_id, runs.parent_run_id)}) "
        f"(started {runs.parent['start_time']:%Y-%m-%d %H:%M UTC}, status {runs.parent['status']}), the latest "
        f"of {len(runs.parents)} parent run(s) (invocations) of this search.{earlier}"
    )
    lines.append("")
    if params:
        lines.append(_md_table(["param", "value"], [[k, f"`{v}`"] for k, v in sorted(params.items())]))
    else:
        lines.append("The parent run records no params.")
    named = [
        ("space file", schema.SPACE_FILE), ("space digest", schema.SPACE_DIGEST), ("git commit", schema.GIT_COMMIT),
        ("command", schema.COMMAND), ("search id", schema.SEARCH_ID),
    ]
    rows = [[label, f"`{tags[key]}`"] for label, key in named if key in tags]
    skip = {key for _, key in named} | {schema.ROLE, schema.STUDY}
    rows += [[key, f"`{value}`"] for key, value in sorted(tags.items())
             if key.startswith("lenet.") and key not in skip and not key.startswith(schema.DATA_PREFIX)]
    if rows:
        lines += ["", _md_table(["tag", "value"], rows)]
    return lines + [""]


def _provenance_section(runs: StudyRuns) -> list[str]:
    lines = ["## Data provenance", ""]
    data_tags = {k[len(schema.DATA_PREFIX):]: v for k, v in runs.parent_tags.items() if k.startswith(schema.DATA_PREFIX)}
    order = ("name", "resolved", "source", "n_train", "n_test", "digest", "note")
    keys = [k for k in order if k in data_tags] + sorted(set(data_tags) - set(order))
    if data_tags:
        lines.append(f"Parent run tags `{schema.DATA_PREFIX}*`:")
        lines += ["", _md_table(["field", "value"], [[k, f"`{data_tags[k]}`"] for k in keys])]
    else:
        lines.append(f"No `{schema.DATA_PREFIX}*` tags on the parent run.")
    lines.append("")
    if runs.datasets:
        lines.append("Dataset inputs of the parent run (MLflow dataset lineage):")
        rows = []
        for d in runs.datasets:
            rows.append([d["name"], d["context"] or "—", f"`{d['digest']}`", d["source_type"],
                         f"`{d['source']}`", f"`{d['profile']}`" if d["profile"] else "—"])
        lines += ["", _md_table(["dataset", "context", "digest", "source type", "source", "profile"], rows)]
    else:
        lines.append("The parent run logged no dataset input.")
    return lines + [""]


def _summary_line(runs: StudyRuns) -> str:
    t = runs.trials
    counts = {s: int((t["state"] == s).sum()) for s in (COMPLETED, FAILED, RUNNING)}
    best = runs.completed.sort_values("best_val_accuracy", ascending=False).iloc[0]
    dup = runs.n_child_runs - len(t)
    dup_note = f" ({dup} older duplicate run(s) of the same trial ids ignored)" if dup else ""
    return (
        f"{len(t)} trials{dup_note}: {counts[COMPLETED]} completed, {counts[FAILED]} failed or NaN, "
        f"{counts[RUNNING]} running or interrupted. Best validation accuracy "
        f"{best['best_val_accuracy']:.4f} ("
        + (f"{best['variant']}, " if not _missing(best["variant"]) else "")
        + f"trial {best['trial_id']})."
    )


def _leaderboard_section(runs: StudyRuns, top: int) -> list[str]:
    board = leaderboard(runs, top)
    knobs = varied_knobs(runs)
    show_variant = board["variant"].notna().any()
    header = ["#", "trial"] + (["variant", "seed"] if show_variant else []) + knobs + [
        "val acc", "test acc", "params", "epochs run", "time (s)", "run id"]
    rows = []
    for _, r in board.iterrows():
        row = [r["rank"], r["trial_id"]] + ([_fmt(r["variant"]), _fmt(r["seed"])] if show_variant else [])
        row += [_fmt(r[k]) for k in knobs]
        row += [_fmt(r["best_val_accuracy"], "acc"), _fmt(r["test_accuracy"], "acc"), _fmt(r["param_count"], "int"),
                _fmt(r["epochs_run"], "int"), _fmt(r["wall_time_s"], "s"), f"`{r['run_id']}`"]
        rows.append(row)
    lines = [f"## Leaderboard (top {len(board)} by validation accuracy)", "",
             "Ranked by best validation accuracy; test accuracy only where the trial was evaluated on test.", "",
             _md_table(header, rows), "", "### Reproduce a trial", "",
             "`lenet-study train --run RUN_ID` retrains the config recorded in that run's params; "
             "the knob list beside it is the same config spelled out.", "", "```"]
    for _, r in board.iterrows():
        lines.append(f"# {r['rank']}. trial {r['trial_id']}: val {r['best_val_accuracy']:.4f}")
        lines.append(r["command"])
        lines.append(f"#   knobs: {r['knobs']}")
    lines += ["```", ""]
    return lines


def _replication_section(runs: StudyRuns) -> list[str]:
    table = replication_table(runs)
    if table.empty:
        return []
    lines = [
        "## Documented variants", "",
        "### Replication: reported figure vs measured TEST accuracy", "",
        "The tutorials' figures are de facto test/held-out figures, so they are set beside the measured "
        "**test** accuracy (mean ± sample std over seed replicates); difference = measured test mean − reported. "
        "Validation accuracy is the best epoch's, on the validation split carved from the training set.", "",
    ]
    rows = []
    for _, r in table.iterrows():
        pm = lambda m, s: "—" if _missing(m) else (f"{m:.4f} ± {s:.4f}" if not _missing(s) else f"{m:.4f}")  # noqa: E731
        rows.append([
            r["variant"], _fmt(r["measured_dataset"]), f"{r['n']}" + (f" (+{r['n_failed']} failed)" if r["n_failed"] else ""),
            _fmt(r["seeds"]), _fmt(r["reported"], "acc"), _fmt(r["reported_as"]), pm(r["test_mean"], r["test_std"]),
            _fmt(r["difference"], "signed"), pm(r["val_mean"], r["val_std"]),
            _fmt(r["params_doc"], "int"), _fmt(r["params_measured"], "int"), r["note"] or "",
        ])
    lines.append(_md_table(
        ["variant", "dataset", "n", "seeds", "reported", "reported as", "measured TEST (mean ± std)",
         "difference (test − reported)", "measured val (mean ± std)", "params (doc)", "params (measured)", "note"],
        rows))
    return lines + [""]


def _failed_section(runs: StudyRuns) -> list[str]:
    failed = failed_trials(runs)
    lines = ["## Failed and NaN trials", ""]
    if failed.empty:
        return lines + ["None.", ""]
    lines.append("Listed here, left out of every figure and table above.")
    lines.append("")
    rows = [[r["trial_number"], r["trial_id"], _fmt(r["variant"]), r["status"], _fmt(r["trial_status"]),
             _fmt(r["stop_reason"]), _fmt(r["failure_reason"]), f"`{r['run_id']}`"] for _, r in failed.iterrows()]
    lines.append(_md_table(["#", "trial", "variant", "run status", "trial status", "stop reason", "reason", "run id"], rows))
    return lines + [""]


def _pareto_section(runs: StudyRuns) -> list[str]:
    front = pareto_front(runs)
    if front.empty:
        return []
    rows = [[r["trial_id"], _fmt(r["variant"]), _fmt(r["param_count"], "int"), _fmt(r["best_val_accuracy"], "acc"),
             _fmt(r["test_accuracy"], "acc"), f"`{r['run_id']}`"] for _, r in front.iterrows()]
    return ["### Pareto front: validation accuracy vs parameters", "",
            _md_table(["trial", "variant", "params", "val acc", "test acc", "run id"], rows), ""]


def _img(name: str, alt: str) -> str:
    return f"![{alt}]({name})"


def render_markdown(runs: StudyRuns, figure_names: list[str], top: int = 10) -> str:
    names = set(figure_names)
    lines = [
        f"# Study report: {runs.study}", "",
        f"Generated {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M UTC} from the MLflow store "
        f"`{runs.tracking_uri}` (reports read the store and never retrain). "
        f"MLflow UI (`make ui`): [experiment {runs.study} (id {runs.experiment_id})]({runs.experiment_url}).", "",
        _summary_line(runs), "",
    ]
    lines += _settings_section(runs)
    lines += _provenance_section(runs)
    lines += _leaderboard_section(runs, top)
    if not runs.variant_trials.empty:
        lines += _replication_section(runs)
        for name, alt in (("variant_accuracy.png", "Accuracy of each documented variant"),
                          ("variant_learning_curves.png", "Validation accuracy per epoch of each variant")):
            if name in names:
                lines += [_img(name, alt), ""]
    search_figs = [n for n in figure_names if n == "best_so_far.png" or n.startswith("knob_")
                   or n in ("parallel_coordinates.png", "pareto.png")]
    if search_figs:
        lines += ["## Search", ""]
        if "best_so_far.png" in names:
            lines += ["### Best so far", "", _img("best_so_far.png", "Best validation accuracy so far"), ""]
        knob_figs = [n for n in figure_names if n.startswith("knob_")]
        if knob_figs:
            lines += ["### One axis plot per varied knob", "",
                      "Knobs with more than one value among completed trials: "
                      + ", ".join(f"`{n[5:-4]}`" for n in knob_figs) + ".", ""]
            lines += [line for n in knob_figs for line in (_img(n, f"validation accuracy against {n[5:-4]}"), "")]
        if "parallel_coordinates.png" in names:
            lines += ["### Top trials across the knobs", "", _img("parallel_coordinates.png", "Parallel coordinates"), ""]
        if "pareto.png" in names:
            lines += ["### Accuracy against parameter count", "", _img("pareto.png", "Pareto front"), ""]
            lines += _pareto_section(runs)
    lines += _failed_section(runs)
    return "\n".join(lines) + "\n"


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1200px; margin: 2em auto;
       padding: 0 1em; color: #222; line-height: 1.45; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.88em; display: block; overflow-x: auto; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
code, pre { background: #f6f6f6; font-size: 0.9em; }
pre { padding: 0.8em; overflow-x: auto; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
"""


def render_html(markdown_text: str, folder: Path, title: str) -> str:
    """report.md as one self-contained HTML page (figures embedded as data URIs)."""
    import markdown

    body = markdown.markdown(markdown_text, extensions=["tables", "fenced_code"])

    def embed(match: re.Match) -> str:
        path = folder / html.unescape(match.group(2))
        if not path.is_file():
            return match.group(0)
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        return f'{match.group(1)}"data:image/png;base64,{data}"'

    body = re.sub(r'(<img[^>]*?src=)"([^":]+\.png)"', embed, body)
    return (f"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n")


def _study_dir(out_root: str | os.PathLike, study: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", study)
    return Path(out_root) / safe


def write_report(study: str, out_root: str | os.PathLike = "reports", tracking_uri: str | None = None,
                 log_to_mlflow: bool = True, top: int = 10) -> Path:
    """Write reports/<study>/ (figures, report.md, report.html) and attach them to the parent run.

    Returns the folder. Raises ReportError (see `load_study`).
    """
    runs = load_study(study, tracking_uri)
    out = _study_dir(out_root, study)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.iterdir():
        if old.is_file() and _GENERATED.match(old.name):
            old.unlink()
    written = []
    figs = figures(runs)
    for name, fig in figs.items():
        fig.savefig(out / name, dpi=110)
        written.append(out / name)
    md = render_markdown(runs, list(figs), top=top)
    (out / "report.md").write_text(md, encoding="utf-8")
    (out / "report.html").write_text(render_html(md, out, f"Study report: {study}"), encoding="utf-8")
    written += [out / "report.md", out / "report.html"]
    if log_to_mlflow:
        _attach(runs, written)
    return out


def _attach(runs: StudyRuns, files: list[Path]) -> None:
    client = _client(runs.tracking_uri)
    for path in files:
        client.log_artifact(runs.parent_run_id, str(path), artifact_path="report")


# --------------------------------------------------------------------------- notebooks


class _DropMessage(logging.Filter):
    def __init__(self, text: str):
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


def _kernel_spec_dir(tmp: Path) -> Path:
    """A private kernel spec that runs ipykernel on this very interpreter (nothing registered globally)."""
    spec = tmp / "kernels" / "lenet-study"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "lenet-study (this interpreter)",
        "language": "python",
    }))
    return tmp / "kernels"


def inject_parameters(nb, **values: Any):
    """Replace the source of the cell tagged "parameters" (or insert one first) with `values`."""
    import nbformat

    source = "\n".join(f"{k} = {v!r}" for k, v in values.items())
    for cell in nb.cells:
        if cell.cell_type == "code" and "parameters" in cell.get("metadata", {}).get("tags", []):
            cell.source = source
            return nb
    nb.cells.insert(0, nbformat.v4.new_code_cell(source, metadata={"tags": ["parameters"]}))
    return nb


def run_notebooks(study: str, out_root: str | os.PathLike = "reports", tracking_uri: str | None = None,
                  log_to_mlflow: bool = True, timeout: int = 600) -> list[Path]:
    """Execute reports/compare_variants.ipynb and reports/search_results.ipynb for `study` headlessly
    and write their HTML renderings into reports/<study>/. The stored notebooks are not modified."""
    import nbformat
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError
    from nbconvert import HTMLExporter

    runs = load_study(study, tracking_uri)  # fail early, with the same one-line errors as write_report
    uri = runs.tracking_uri
    out = _study_dir(out_root, study)
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    env["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    written = []
    with tempfile.TemporaryDirectory(prefix="lenet-kernel-") as tmp:
        kernels = _kernel_spec_dir(Path(tmp))
        for name in NOTEBOOKS:
            source = NOTEBOOK_DIR / f"{name}.ipynb"
            if not source.is_file():
                raise ReportError(f"notebook {source} is missing")
            nb = inject_parameters(nbformat.read(source, as_version=4), study=study, tracking_uri=uri)
            km = KernelManager(kernel_name="lenet-study",
                               kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernels)]))
            if os.name == "posix":  # local sockets in the temp dir: no TCP ports, no plain-text warning
                km.transport = "ipc"
                km.ip = str(Path(tmp) / f"{name}-ipc")
            client = NotebookClient(nb, km=km, timeout=timeout, kernel_name="lenet-study",
                                    resources={"metadata": {"path": os.getcwd()}})
            try:
                client.execute(env=env, cleanup_kc=True)  # shut the kernel down even though we made its manager
            except CellExecutionError as exc:
                first = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
                raise ReportError(f"notebook {source.name} failed for study {study!r}: {first}") from exc
            finally:
                if km.has_kernel:
                    km.shutdown_kernel(now=True)
            exporter = HTMLExporter()
            quiet = _DropMessage("Alternative text is missing")  # plots in outputs carry no alt text
            exporter.log.addFilter(quiet)
            try:
                body, _ = exporter.from_notebook_node(nb)
            finally:
                exporter.log.removeFilter(quiet)
            target = out / f"{name}.html"
            target.write_text(body, encoding="utf-8")
            written.append(target)
    if log_to_mlflow:
        _attach(runs, written)
    return written
