"""Loading: read one study from the MLflow store into a `StudyRuns` (pandas frames), through `study.tracking`.

This is the report package's only module that talks to the store, and it does
so only through `study.tracking` (which resolves the URI, builds the client and
every search filter): `load_study` and `list_studies` read, `StudyRuns.attach`
writes the report files to the parent run. Tag, param and metric names come
from `study.schema`; the columns of `StudyRuns.trials` are named after the
metrics and LeNetConfig fields they hold.
"""

from __future__ import annotations

import functools
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import numpy as np

from .. import schema, tracking
from ..errors import StudyError
from ..lazy import lazy
from ..model import LeNetConfig, field_types, scalar_type

pd = lazy("pandas")

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


class ReportError(StudyError):
    """A one-line, user-facing reason why a report cannot be made."""


@dataclass
class StudyRuns:
    """One study as read from the store.

    `parents`: the parent runs (invocations) of the study's latest search
    (rows of `tracking.runs_frame`, oldest first); `parent`: the latest of them that has
    trials (settings, provenance, and where the report is attached); `trials`:
    one row per trial, deduplicated by TRIAL_ID (see `load_study`), numbered by
    start time, with `state` completed|failed|running and `failure_reason`
    (and `arm`, an ablation's arm, None for other trials);
    `histories`: run_id -> DataFrame(step, metric, value) for every ended trial;
    `datasets`: the parent's MLflow dataset inputs; `space_file`: the space file the parent logged
    (read on first use).
    """

    study: str
    tracking_uri: str
    experiment_id: str
    parents: pd.DataFrame
    parent: pd.Series
    trials: pd.DataFrame
    histories: Mapping[str, pd.DataFrame] = field(default_factory=dict)
    datasets: list[dict[str, Any]] = field(default_factory=list)
    n_child_runs: int = 0  # child runs of the latest search before deduplication
    n_earlier_search_runs: int = 0  # child runs of earlier searches (before `search --fresh`), left out
    # An isolation study's retrains (ROLE_RETRAIN runs, one row per value x seed, the columns of `trials`);
    # None for other studies. Not in `trials`: they are no points of the search.
    retrains: Any = None
    # What a report computes from these runs once and uses twice (a figure and its table), by key;
    # not an __init__ argument, so dataclasses.replace (other trials, say) starts an empty one.
    memo: dict[Any, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

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

    @functools.cached_property
    def space_file(self) -> tuple[str, bytes] | None:
        """(name, bytes) of the space file the parent run logged, read from the store on first use;
        None when there is none."""
        return tracking.space_file(tracking.client(self.tracking_uri), self.parent_run_id)

    @property
    def completed(self) -> pd.DataFrame:
        return self.trials[self.trials["state"] == COMPLETED]

    @property
    def failed(self) -> pd.DataFrame:
        return self.trials[self.trials["state"] == FAILED]

    @property
    def variant_trials(self) -> pd.DataFrame:
        """Completed trials of documented variants (those with the `variant` param), not an ablation's baseline
        arm that happens to be a variant's recipe (its arms are compared in the Effects section)."""
        done = self.completed
        return done[done["variant"].notna() & done["arm"].isna()]

    @property
    def arm_trials(self) -> pd.DataFrame:
        """Completed trials of an ablation's arms (those with the `arm` param or tag)."""
        done = self.completed
        return done[done["arm"].notna()]

    @property
    def isolation_trials(self) -> pd.DataFrame:
        """Completed nuisance trials of an isolation study (those with the ISOLATION_VALUE param)."""
        done = self.completed
        if schema.ISOLATION_VALUE not in done.columns:
            return done.iloc[0:0]
        return done[done[schema.ISOLATION_VALUE].notna()]

    @property
    def has_search(self) -> bool:
        """True when some trial is neither a documented variant, an ablation's arm nor a factorial study's run,
        i.e. a search ran."""
        factorial = (self.trials[schema.FACTORIAL_ROW].notna() if schema.FACTORIAL_ROW in self.trials.columns
                     else False)
        return bool((self.trials["variant"].isna() & self.trials["arm"].isna() & ~factorial).any())

    def attach(self, paths: Iterable[str | Path]) -> None:
        """Log files to the parent run under schema.REPORT_DIR."""
        tracking.attach(tracking.client(self.tracking_uri), self.parent_run_id, paths, schema.REPORT_DIR)


def list_studies(tracking_uri: str | None = None) -> list[str]:
    """Names of the studies in the store: experiments that have a parent run with ROLE=study."""
    return sorted(tracking.study_experiments(tracking.client(tracking_uri)))


def save_runs(runs: StudyRuns, path: str | Path) -> Path:
    """Write a loaded study to `path` (a pickle), for `open_study` in another process of the same code:
    the report's notebooks read the study the report loaded instead of loading it again."""
    path = Path(path)
    with open(path, "wb") as f:
        pickle.dump(runs, f, protocol=pickle.HIGHEST_PROTOCOL)
    return path


def open_study(study: str, tracking_uri: str | None = None, runs_file: str | Path | None = None) -> StudyRuns:
    """The study from `runs_file` (written by `save_runs`; trusted: only a file this package wrote) when it
    holds that study, else `load_study(study, tracking_uri)`: what the notebooks call."""
    if runs_file and Path(runs_file).is_file():
        with open(runs_file, "rb") as f:
            runs = pickle.load(f)
        if isinstance(runs, StudyRuns) and runs.study == study:
            return runs
    return load_study(study, tracking_uri)


def _col(df: pd.DataFrame, name: str, default: Any = None) -> pd.Series:
    if name in df.columns:
        return df[name]
    return pd.Series([default] * len(df), index=df.index, dtype=object)


def _prefixed(row: pd.Series, prefix: str) -> dict[str, str]:
    return {
        key[len(prefix):]: row[key]
        for key in row.index
        if key.startswith(prefix) and not is_missing(row[key])
    }


def is_missing(value: Any) -> bool:
    """None, NaN, NaT or pd.NA: a value a run did not record."""
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def text_or_none(value: Any) -> str | None:
    """The value as text; None when it is missing or empty."""
    return None if is_missing(value) or str(value) == "" else str(value)


def _texts(values: pd.Series) -> pd.Series:
    """`text_or_none` of every value, at once (object dtype, None where missing or empty)."""
    text = pd.Series(values, dtype=object).map(str, na_action="ignore")
    keep = (text.notna() & (text != "")).to_numpy()
    return pd.Series(np.where(keep, text.to_numpy(dtype=object), None), index=text.index, dtype=object)


_PARENT_COL = f"tags.{schema.PARENT_RUN_ID}"


def load_study(study: str, tracking_uri: str | None = None, *, bulk: bool = True) -> StudyRuns:
    """Read study `study` from the store at `tracking_uri` (default: $MLFLOW_TRACKING_URI, else
    ./mlflow.db, as for the search).

    The parent run that sets the scene is the latest one that has child runs;
    settings and provenance come from it and the report is attached to it. A
    study has one parent per invocation: trials are the child runs of every
    parent of the same search (SEARCH_ID tag; `search --fresh` starts a new
    one, and earlier searches are left out), deduplicated by TRIAL_ID: for each
    id the latest completed run is kept, else the latest run. Raises
    ReportError for an unknown study and for a study without a completed trial.

    A database store is read in a few queries (`tracking.runs_frame`, `tracking.history_frame`: about
    1 s for 10,000 trials); bulk=False reads it through the MLflow client, run by run, as any store.
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

    df = tracking.runs_frame(uri, experiment_id, bulk=bulk)
    role = _col(df, f"tags.{schema.ROLE}")
    parents = df[role == schema.ROLE_STUDY].sort_values("start_time", kind="stable").reset_index(drop=True)
    parent_of = _col(df, _PARENT_COL)
    # Trials only: a final run (the chosen configuration trained longer) is not a point of the search, nor is an
    # isolation study's retrain (read apart, into StudyRuns.retrains).
    children = df[parent_of.isin(set(parents["run_id"]))
                  & ~role.isin([schema.ROLE_STUDY, schema.ROLE_FINAL, schema.ROLE_RETRAIN])]
    retrain_runs = df[parent_of.isin(set(parents["run_id"])) & (role == schema.ROLE_RETRAIN)]
    if children.empty:
        raise ReportError(f"study {study!r} has no trials yet (no child runs under its {len(parents)} parent run(s))")
    # The latest search: the SEARCH_ID of the latest parent with children ("" when untagged).
    search_ids = _col(parents, f"tags.{schema.SEARCH_ID}").map(lambda v: text_or_none(v) or "")
    latest = parents[parents["run_id"].isin(set(children[_PARENT_COL]))].index[-1]
    same_search = search_ids == search_ids.loc[latest]
    in_search = children[_PARENT_COL].isin(set(parents.loc[same_search, "run_id"]))
    n_earlier = int((~in_search).sum())  # every child's parent is one of `parents`
    parents = parents[same_search].reset_index(drop=True)
    children = children[in_search]
    retrain_runs = retrain_runs[retrain_runs[_PARENT_COL].isin(set(parents["run_id"]))]
    retrains = _deduplicate(_trials_frame(retrain_runs)) if len(retrain_runs) else None

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

    ended = list(trials.loc[trials["state"] != RUNNING, "run_id"])
    histories = RunHistories(tracking.history_frame(uri, experiment_id, ended, bulk=bulk), ended)

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
        retrains=retrains,
    )


def _trials_frame(children: pd.DataFrame) -> pd.DataFrame:
    """One row per child run with plain column names and typed knob values."""
    out = pd.DataFrame(index=children.index)
    out["run_id"] = children["run_id"]
    out["parent_run_id"] = children[_PARENT_COL]
    out["trial_id"] = _texts(_col(children, f"tags.{schema.TRIAL_ID}")).fillna(children["run_id"]).astype(object)
    out["status"] = children["status"]
    out["trial_status"] = _texts(_col(children, f"tags.{schema.TRIAL_STATUS}"))
    out["stop_reason"] = _texts(_col(children, f"tags.{schema.STOP_REASON}"))
    out["failure_reason"] = _texts(_col(children, f"tags.{schema.FAILURE_REASON}"))
    out["worker"] = _texts(_col(children, f"tags.{schema.WORKER}"))
    out["host"] = _texts(_col(children, f"tags.{schema.HOST}"))
    variant_param = _col(children, f"params.{schema.VARIANT}")
    variant_tag = _col(children, f"tags.{schema.VARIANT}")
    out["variant"] = _texts(variant_param).fillna(_texts(variant_tag)).astype(object)
    # An ablation's arm ("baseline" or "<knob>=<value>"), param first as for the variant; None elsewhere.
    out["arm"] = _texts(_col(children, f"params.{schema.ARM}")).fillna(
        _texts(_col(children, f"tags.{schema.ARM}"))).astype(object)
    out["seed"] = pd.to_numeric(_col(children, "params.seed"), errors="coerce").round().astype("Int64")
    for knob, kind in KNOB_TYPES.items():
        raw = _col(children, f"params.{knob}")
        if kind is int:
            out[knob] = pd.to_numeric(raw, errors="coerce").round().astype("Int64")
        elif kind is float:
            out[knob] = pd.to_numeric(raw, errors="coerce").astype(float)
        else:
            out[knob] = _texts(raw)
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
    out["state"] = _states(out)
    return out.reset_index(drop=True)


def _states(trials: pd.DataFrame) -> np.ndarray:
    """FAILED for a failed or killed run (or a finished one without a finite accuracy), COMPLETED for a
    finished one, else RUNNING."""
    status, trial_status = trials["status"], trials["trial_status"]
    failed = (trial_status == schema.FAILED) | status.isin([schema.RUN_FAILED, schema.RUN_KILLED])
    ended = (status == schema.RUN_FINISHED) | (trial_status == schema.COMPLETED)
    finite = np.isfinite(trials["best_val_accuracy"].to_numpy(dtype=float))
    return np.where(failed, FAILED, np.where(ended, np.where(finite, COMPLETED, FAILED), RUNNING)).astype(object)


def _deduplicate(trials: pd.DataFrame) -> pd.DataFrame:
    """Keep one run per TRIAL_ID: the latest completed one, else the latest."""
    ranked = trials.assign(_done=trials["state"] == COMPLETED)
    ranked = ranked.sort_values(["_done", "start_time"], kind="stable")
    kept = ranked.drop_duplicates("trial_id", keep="last")
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


class RunHistories(Mapping):
    """run_id -> DataFrame(step, metric, value), sorted by metric then step, for each run it was given
    (an empty frame for a run that logged none). One long frame underneath, sliced on access: a study of
    10,000 trials builds no 10,000 frames unless something asks for them."""

    def __init__(self, frame: pd.DataFrame, run_ids: Iterable[str]):
        self._run_ids = list(dict.fromkeys(run_ids))
        frame = frame[frame["run_id"].isin(set(self._run_ids))]
        # Grouped by run, each run's points by metric name then step (NumPy: 10,000 runs in milliseconds).
        runs, run_names = pd.factorize(frame["run_id"])
        metrics, _ = pd.factorize(frame["metric"], sort=True)
        order = np.lexsort((frame["step"].to_numpy(), metrics, runs))
        self._frame = frame.iloc[order].reset_index(drop=True)
        runs = runs[order]
        starts = np.flatnonzero(np.r_[True, runs[1:] != runs[:-1]]) if len(runs) else np.zeros(0, dtype=int)
        stops = np.r_[starts[1:], len(runs)]
        self._rows = {run_names[runs[a]]: (int(a), int(b)) for a, b in zip(starts, stops)}

    def __getitem__(self, run_id: str) -> pd.DataFrame:
        if run_id not in self._rows:
            if run_id in self._run_ids:
                return self._frame.iloc[0:0][["step", "metric", "value"]].reset_index(drop=True)
            raise KeyError(run_id)
        start, stop = self._rows[run_id]
        return self._frame.iloc[start:stop][["step", "metric", "value"]].reset_index(drop=True)

    def __iter__(self) -> Iterator[str]:
        return iter(self._run_ids)

    def __len__(self) -> int:
        return len(self._run_ids)

    def __contains__(self, run_id: object) -> bool:
        return run_id in self._rows or run_id in self._run_ids

    @property
    def frame(self) -> pd.DataFrame:
        """Every run's points at once: DataFrame(run_id, metric, step, value)."""
        return self._frame
