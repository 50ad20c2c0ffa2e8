"""Loading: read one study from the MLflow store into a `StudyRuns` (pandas frames), through `study.tracking`.

This is the report package's only module that talks to the store, and it does
so only through `study.tracking` (which resolves the URI, builds the client and
every search filter): `load_study` and `list_studies` read, `StudyRuns.attach`
writes the report files to the parent run. Tag, param and metric names come
from `study.schema`; the columns of `StudyRuns.trials` are named after the
metrics and LeNetConfig fields they hold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from .. import schema, tracking
from ..model import LeNetConfig, field_types, scalar_type

# A trial's state in a report (lower case; not schema's TRIAL_STATUS values, which are tags).
COMPLETED, FAILED, RUNNING = "completed", "failed", "running"

# Every LeNetConfig field is a knob except the seed, which makes replicates, not variants.
# KNOB_TYPES: knob -> int, float, str (or None for anything else, e.g. dense_units' tuple).
KNOB_TYPES = {name: scalar_type(tp) for name, tp in field_types(LeNetConfig).items() if name != "seed"}
KNOBS = tuple(KNOB_TYPES)

# Trial metrics every row carries (NaN when the run did not log them).
_TRIAL_METRICS = (
    schema.BEST_VAL_ACCURACY, "best_val_loss", "best_epoch", schema.TEST_ACCURACY, schema.TEST_LOSS,
    "param_count", "epochs_run", "wall_time_s",
    # cost beside accuracy (study/cost.py); NaN for runs recorded before it was measured
    schema.INFERENCE_MS, schema.INFERENCE_IPS, schema.EPOCH_SECONDS,
)


class ReportError(Exception):
    """A one-line, user-facing reason why a report cannot be made."""


@dataclass
class StudyRuns:
    """One study as read from the store.

    `parents`: the parent runs (invocations) of the study's latest search
    (rows of `tracking.runs_frame`, oldest first); `parent`: the latest of them that has
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
        """The MLflow UI's runs table of the study's experiment."""
        return tracking.ui_link(self.tracking_uri, self.experiment_id)

    @property
    def parent_run_url(self) -> str:
        return tracking.run_link(self.experiment_id, self.parent_run_id)

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

    def attach(self, paths: Iterable[str | Path]) -> None:
        """Log files to the parent run under schema.REPORT_DIR."""
        tracking.attach(tracking.client(self.tracking_uri), self.parent_run_id, paths, schema.REPORT_DIR)


def list_studies(tracking_uri: str | None = None) -> list[str]:
    """Names of the studies in the store: experiments that have a parent run with ROLE=study."""
    return sorted(tracking.study_experiments(tracking.client(tracking_uri)))


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


_PARENT_COL = f"tags.{schema.PARENT_RUN_ID}"


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
    uri = tracking.tracking_uri(tracking_uri)
    client = tracking.client(uri)
    known = tracking.study_experiments(client)
    if study not in known:
        where = f" in {uri}"
        if known:
            raise ReportError(f"unknown study {study!r}{where}; known studies: {', '.join(sorted(known))}")
        raise ReportError(f"unknown study {study!r}{where}; the store holds no studies yet (run `lenet-study search` first)")
    experiment_id = known[study]

    df = tracking.runs_frame(uri, experiment_id)
    role = _col(df, f"tags.{schema.ROLE}")
    parents = df[role == schema.ROLE_STUDY].sort_values("start_time", kind="stable").reset_index(drop=True)
    parent_of = _col(df, _PARENT_COL)
    # Trials only: a final run (the chosen configuration trained longer) is not a point of the search.
    children = df[parent_of.isin(set(parents["run_id"])) & ~role.isin([schema.ROLE_STUDY, schema.ROLE_FINAL])]
    if children.empty:
        raise ReportError(f"study {study!r} has no trials yet (no child runs under its {len(parents)} parent run(s))")
    # The latest search: the SEARCH_ID of the latest parent with children ("" when untagged).
    search_ids = _col(parents, f"tags.{schema.SEARCH_ID}").map(lambda v: _text(v) or "")
    latest = parents[parents["run_id"].isin(set(children[_PARENT_COL]))].index[-1]
    same_search = search_ids == search_ids.loc[latest]
    in_search = children[_PARENT_COL].isin(set(parents.loc[same_search, "run_id"]))
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
        datasets=tracking.dataset_inputs(client, str(parent["run_id"])),
        n_child_runs=n_child_runs,
        n_earlier_search_runs=n_earlier,
    )


def _trials_frame(children: pd.DataFrame) -> pd.DataFrame:
    """One row per child run with plain column names and typed knob values."""
    out = pd.DataFrame(index=children.index)
    out["run_id"] = children["run_id"]
    out["parent_run_id"] = children[_PARENT_COL]
    out["trial_id"] = [
        _text(t) or r for t, r in zip(_col(children, f"tags.{schema.TRIAL_ID}"), children["run_id"])
    ]
    out["status"] = children["status"]
    out["trial_status"] = [_text(v) for v in _col(children, f"tags.{schema.TRIAL_STATUS}")]
    out["stop_reason"] = [_text(v) for v in _col(children, f"tags.{schema.STOP_REASON}")]
    out["failure_reason"] = [_text(v) for v in _col(children, f"tags.{schema.FAILURE_REASON}")]
    out["worker"] = [_text(v) for v in _col(children, f"tags.{schema.WORKER}")]
    out["host"] = [_text(v) for v in _col(children, f"tags.{schema.HOST}")]
    variant_param = _col(children, f"params.{schema.VARIANT}")
    variant_tag = _col(children, f"tags.{schema.VARIANT}")
    out["variant"] = [_text(p) or _text(t) for p, t in zip(variant_param, variant_tag)]
    out["variant"] = out["variant"].astype(object)
    out["seed"] = pd.to_numeric(_col(children, "params.seed"), errors="coerce").round().astype("Int64")
    for knob, kind in KNOB_TYPES.items():
        raw = _col(children, f"params.{knob}")
        if kind is int:
            out[knob] = pd.to_numeric(raw, errors="coerce").round().astype("Int64")
        elif kind is float:
            out[knob] = pd.to_numeric(raw, errors="coerce").astype(float)
        else:
            out[knob] = [_text(v) for v in raw]
            out[knob] = out[knob].astype(object)
    for metric in _TRIAL_METRICS:
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
    if row.trial_status == schema.FAILED or row.status in (schema.RUN_FAILED, schema.RUN_KILLED):
        return FAILED
    if row.status == schema.RUN_FINISHED or row.trial_status == schema.COMPLETED:
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
        if row["stop_reason"] == schema.STOP_NAN:
            reason = "loss became NaN (training diverged)"
        elif row["status"] == schema.RUN_KILLED:
            reason = "run killed (interrupted)"
        elif row["status"] == schema.RUN_FAILED or row["trial_status"] == schema.FAILED:
            reason = "run failed (no reason recorded)"
        elif schema.BEST_VAL_ACCURACY in client.get_run(row["run_id"]).data.metrics:
            reason = f"{schema.BEST_VAL_ACCURACY} is NaN"
        else:
            reason = f"no {schema.BEST_VAL_ACCURACY} recorded"
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
    """DataFrame(step, metric, value) of a run's per-epoch HISTORY_METRICS."""
    frame = pd.DataFrame(tracking.metric_histories(client, run_id), columns=["step", "metric", "value"])
    return frame.sort_values(["metric", "step"]).reset_index(drop=True)
