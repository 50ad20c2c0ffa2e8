"""The only door to MLflow: the store, the parent run per invocation, a child run per trial, and every query.

Everything goes through `MlflowClient` with explicit run ids and URIs, so the
same code works in the process that runs the search and in worker processes
that only know the parent run's id. Every MLflow search filter the package
uses is built here (the queries section), and nothing here or elsewhere sets
MLflow's process-wide tracking URI for good: the two fluent calls that need it
(`mlflow.search_runs`, `mlflow.keras.log_model`) run inside `scoped_uri` (store.py),
which puts back what was there. Names of tags and metrics are in `schema.py`.

A study's calls go through `store.RetryingClient`: a store that does not answer (locked, read-only,
unreachable, HTTP 5xx) is retried for up to STORE_RETRY_S, then the study stops with
StoreUnavailable, one line for the user. Where the store is and whether it answers is `store.py`'s job;
its names are re-exported here (its time budgets, STORE_RETRY_S and STORE_WAIT_S, are
read there: set them on `store`). Reading a whole experiment at once (the report's `runs_frame` and
`history_frame`: a few queries on a database store) and copying runs in bulk are `bulk.py`'s, re-exported
here.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import os
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from . import schema
from .bulk import (  # noqa: F401  (re-exported: whole experiments read, and runs copied, in bulk)
    RunCopy, copy_runs, history_frame, metric_histories, relocate_artifacts, runs_frame)
from .cost import host_tags
from .files import folder_name
from .lazy import lazy
from .store import (  # noqa: F401  (re-exported: the store's place and its outages, through the one door)
    DEFAULT_TRACKING_URI, STORE_FORMS, STORE_SCHEMES, UI_HOST, NoAnswer, RetryingClient, StoreUnavailable,
    StoreURIError, check_store, client, local_artifact_root, run_link, scoped_uri, tracking_uri, ui_command, ui_link,
    unavailable_reason, wait_http)

mlflow = lazy("mlflow")
mlflow_data = lazy("mlflow.data")
mlflow_code_source = lazy("mlflow.data.code_dataset_source")
mlflow_entities = lazy("mlflow.entities")
mlflow_exceptions = lazy("mlflow.exceptions")

log = logging.getLogger("study.tracking")


def get_or_create_experiment(c, name: str, store_uri: str | None = None) -> str:
    """The study's experiment. `store_uri` names the store whose mlruns/ holds the artifacts when
    the client talks to it through a server (default: the client's own URI)."""
    exp = c.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            c.restore_experiment(exp.experiment_id)
        return exp.experiment_id
    root = local_artifact_root(store_uri or c.tracking_uri)
    return c.create_experiment(
        name,
        artifact_location=f"{root}/{folder_name(name)}" if root else None,
        # Marks the experiment as classic model training for MLflow's own tools.
        tags={schema.EXPERIMENT_KIND: schema.EXPERIMENT_KIND_TRAINING},
    )


def git_commit(cwd: str | Path = ".") -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5
        )
        commit = out.stdout.strip()
        if out.returncode != 0 or not commit:
            return "unknown"
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd, capture_output=True, text=True, timeout=5,
        ).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def mark_stale_runs(c, experiment_id: str, status: str = schema.RUN_KILLED) -> int:
    """End runs left RUNNING by a killed process; returns how many."""
    runs = c.search_runs([experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=5000)
    for run in runs:
        if run.data.tags.get(schema.ROLE) == schema.ROLE_TRIAL:
            c.set_tag(run.info.run_id, schema.TRIAL_STATUS, status)
        c.set_terminated(run.info.run_id, status=status)
    return len(runs)


# --------------------------------------------------------------------------- queries: every filter the package uses


def _tag_is(key: str, value: str) -> str:
    return f"tags.`{key}` = '{value}'"


def _all(*clauses: str) -> str:
    return " and ".join(c for c in clauses if c)


def study_experiments(c) -> dict[str, str]:
    """name -> experiment id of every active experiment holding a parent run with ROLE=study."""
    experiments, token = [], None
    while True:
        page = c.search_experiments(view_type=mlflow_entities.ViewType.ACTIVE_ONLY, max_results=1000, page_token=token)
        experiments.extend(page)
        token = page.token
        if not token:
            break
    out = {}
    for exp in experiments:
        if c.search_runs([exp.experiment_id], filter_string=_tag_is(schema.ROLE, schema.ROLE_STUDY), max_results=1):
            out[exp.name] = exp.experiment_id
    return out


def study_parents(c, experiment_ids: list[str], *, running: bool = False, launch_id: str | None = None,
                  oracle_listening: bool = False, max_results: int = 200) -> list:
    """Parent runs (ROLE=study), newest first: only RUNNING ones, only those of one launch, or only those
    whose oracle listens (the ORACLE tag is set once a study is fully open)."""
    flt = _all(_tag_is(schema.ROLE, schema.ROLE_STUDY),
               "attributes.status = 'RUNNING'" if running else "",
               _tag_is(schema.LAUNCH_ID, launch_id) if launch_id else "",
               f"tags.`{schema.ORACLE}` LIKE '%'" if oracle_listening else "")
    return c.search_runs(experiment_ids, filter_string=flt, max_results=max_results,
                         order_by=["attributes.start_time DESC"])


def latest_search_parent(c, study: str, search_id: str):
    """The newest parent run of one search of `study` (what a resume of that search is compared with),
    or None when the store holds none. Reads only: no experiment is created."""
    exp = c.get_experiment_by_name(study)
    if exp is None:
        return None
    runs = c.search_runs([exp.experiment_id], filter_string=_all(_tag_is(schema.ROLE, schema.ROLE_STUDY),
                                                                 _tag_is(schema.SEARCH_ID, search_id)),
                         max_results=1, order_by=["attributes.start_time DESC"])
    return runs[0] if runs else None


def trial_runs(c, experiment_id: str, search_id: str | None = None, *, trial_id: str | None = None,
               completed: bool = False, max_results: int = 5000) -> list:
    """Child runs (ROLE=trial) of an experiment, newest first: of one search, of one trial id, or only
    the completed ones (FINISHED with TRIAL_STATUS=COMPLETED)."""
    flt = _all(_tag_is(schema.ROLE, schema.ROLE_TRIAL),
               _tag_is(schema.SEARCH_ID, search_id) if search_id is not None else "",
               _tag_is(schema.TRIAL_ID, trial_id) if trial_id is not None else "",
               _all(_tag_is(schema.TRIAL_STATUS, schema.COMPLETED), "attributes.status = 'FINISHED'")
               if completed else "")
    return c.search_runs([experiment_id], filter_string=flt, max_results=max_results,
                         order_by=["attributes.start_time DESC"])


def running_children(c, experiment_id: str, parent_run_id: str, worker: str | None = None) -> list:
    """RUNNING child runs of one parent run, of one worker or of all."""
    flt = _all(_tag_is("mlflow.parentRunId", parent_run_id), "attributes.status = 'RUNNING'",
               _tag_is(schema.WORKER, worker) if worker is not None else "")
    return c.search_runs([experiment_id], filter_string=flt, max_results=1000)


def best_trial_run(c, study: str):
    """(parent run, best trial run) of the newest search of `study` that chose a best trial (its parent run
    carries BEST_TRIAL_RUN_ID), or None when the store has no such study or search."""
    exp = c.get_experiment_by_name(study)
    if exp is None:
        return None
    for parent in study_parents(c, [exp.experiment_id]):
        run_id = parent.data.tags.get(schema.BEST_TRIAL_RUN_ID)
        if run_id:
            return parent, c.get_run(run_id)
    return None


def parent_run(c, run):
    """The parent run of a trial or final run (tag PARENT_RUN_ID), or None."""
    parent_id = run.data.tags.get(schema.PARENT_RUN_ID)
    return c.get_run(parent_id) if parent_id else None


def final_run(c, parent_run_id: str):
    """The final run (ROLE_FINAL) a parent run names in FINAL_RUN_ID, or None when its search trained none."""
    run_id = c.get_run(parent_run_id).data.tags.get(schema.FINAL_RUN_ID)
    return c.get_run(run_id) if run_id else None


def champion(c, study: str):
    """The study's CHAMPION_ALIAS model version, or None when the study registered none."""
    try:
        return c.get_model_version_by_alias(schema.registered_model_name(study), schema.CHAMPION_ALIAS)
    except mlflow_exceptions.MlflowException:
        return None


def latest_study(c) -> tuple[str, str] | None:
    """(name, experiment id) of the study whose parent run started last, or None when there is none."""
    experiments = study_experiments(c)
    newest = study_parents(c, list(experiments.values()), max_results=1) if experiments else []
    if not newest:
        return None
    return newest[0].data.tags.get(schema.STUDY, ""), newest[0].info.experiment_id


def load_keras_model(model_uri: str, uri: str | None = None):
    """A Keras model logged or registered in the store at `uri`, by MLflow model URI
    (models:/NAME@ALIAS, models:/NAME/VERSION, runs:/RUN_ID/PATH)."""
    with scoped_uri(tracking_uri(uri)):
        return mlflow.keras.load_model(model_uri)


def dataset_inputs(c, run_id: str) -> list[dict[str, Any]]:
    """The MLflow dataset inputs of a run (name, digest, source, profile, context)."""
    run = c.get_run(run_id)
    out = []
    for di in getattr(run.inputs, "dataset_inputs", None) or []:
        ds = di.dataset
        tags = {t.key: t.value for t in (di.tags or [])}
        out.append({"name": ds.name, "digest": ds.digest, "source_type": ds.source_type, "source": ds.source,
                    "profile": ds.profile, "context": tags.get("mlflow.data.context")})
    return out


def has_artifact(c, run_id: str, path: str) -> bool:
    try:
        return any(f.path == path for f in c.list_artifacts(run_id))
    except Exception:
        return False


def space_file(c, run_id: str) -> tuple[str, bytes] | None:
    """(file name, bytes) of the space file a parent run logged under SPACE_DIR; None when it has none or
    its artifacts cannot be read (a report then says what it did without it)."""
    progress = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    bar, os.environ[progress] = os.environ.get(progress), "false"
    try:
        files = sorted(f.path for f in c.list_artifacts(run_id, schema.SPACE_DIR) if not f.is_dir)
        if not files:
            return None
        with tempfile.TemporaryDirectory() as tmp:
            return Path(files[0]).name, Path(c.download_artifacts(run_id, files[0], tmp)).read_bytes()
    except (OSError, mlflow_exceptions.MlflowException):
        return None
    finally:  # MLflow's download progress bar off for this one small file, then as it was
        if bar is None:
            os.environ.pop(progress, None)
        else:
            os.environ[progress] = bar


def attach(c, run_id: str, paths: Iterable[str | Path], artifact_path: str | None = None) -> None:
    for path in paths:
        c.log_artifact(run_id, str(path), artifact_path)


@dataclass
class TrialSummary:
    """What one trial achieved, summarised over its executions."""

    best_val_accuracy: float = math.nan
    best_val_loss: float = math.nan
    best_epoch: int = -1
    epochs_run: int = 0
    stop_reason: str = schema.STOP_MAX_EPOCHS
    nan: bool = False
    per_execution: list[dict] = field(default_factory=list)
    history: dict[str, list[tuple[int, float]]] = field(default_factory=dict)


def summarise(histories: Iterable[Any], max_epochs: int | None = None) -> TrialSummary:
    """Turn the History objects (one per execution) of a trial into a TrialSummary."""
    per_exec = []
    curves: dict[str, dict[int, list[float]]] = {}
    any_nan = False
    for hist in histories:
        h = getattr(hist, "history", hist) or {}
        epochs = list(getattr(hist, "epoch", range(len(h.get("loss", [])))))
        for key in schema.HISTORY_METRICS:
            for ep, value in zip(epochs, h.get(key, [])):
                curves.setdefault(key, {}).setdefault(int(ep), []).append(float(value))
        losses = [float(v) for v in h.get("loss", [])] + [float(v) for v in h.get("val_loss", [])]
        nan = any(not math.isfinite(v) for v in losses)
        any_nan |= nan
        vacc = [float(v) for v in h.get("val_accuracy", [])]
        vloss = [float(v) for v in h.get("val_loss", [])]
        finite = [i for i, v in enumerate(vacc) if math.isfinite(v)]
        best_i = max(finite, key=lambda i: vacc[i]) if finite else None
        run_epochs = len(epochs)
        last_epoch = (epochs[-1] + 1) if epochs else 0
        if nan:
            reason = schema.STOP_NAN
        elif getattr(hist, "stop_reason", None):  # set by whoever stopped the fit (a pruned trial)
            reason = hist.stop_reason
        elif max_epochs and last_epoch < max_epochs and vacc and vacc[-1] < schema.CHANCE_ACCURACY:
            reason = schema.STOP_CHANCE
        elif max_epochs and last_epoch < max_epochs:
            reason = schema.STOP_EARLY
        else:
            reason = schema.STOP_MAX_EPOCHS
        per_exec.append(
            {
                "best_val_accuracy": vacc[best_i] if best_i is not None else math.nan,
                "best_val_loss": min((v for v in vloss if math.isfinite(v)), default=math.nan),
                "best_epoch": epochs[best_i] if best_i is not None else -1,
                "epochs_run": run_epochs,
                "stop_reason": reason,
            }
        )
    s = TrialSummary(per_execution=per_exec, nan=any_nan)
    s.history = {k: [(ep, float(np.mean(v))) for ep, v in sorted(d.items())] for k, d in curves.items()}
    if per_exec:
        accs = [e["best_val_accuracy"] for e in per_exec]
        s.best_val_accuracy = float(np.mean(accs))
        s.best_val_loss = float(np.mean([e["best_val_loss"] for e in per_exec]))
        s.best_epoch = per_exec[0]["best_epoch"]
        s.epochs_run = int(max(e["epochs_run"] for e in per_exec))
        reasons = {e["stop_reason"] for e in per_exec}
        s.stop_reason = next(r for r in (schema.STOP_NAN, schema.STOP_CHANCE, schema.STOP_PRUNED, schema.STOP_EARLY,
                                         schema.STOP_MAX_EPOCHS) if r in reasons or r == schema.STOP_MAX_EPOCHS)
    return s


class StudyTracker:
    """Logs one study invocation: its parent run and a child run per trial.

    Every call goes through a RetryingClient: a store that does not answer is retried for up to
    STORE_RETRY_S, then StoreUnavailable. Closing calls on the way out of a failure (a parent run ended
    FAILED or KILLED, a trial run KILLED) get one try and never raise: a run they leave RUNNING is
    marked KILLED when the study next starts (mark_stale_runs)."""

    def __init__(self, study: str, uri: str | None = None, parent_run_id: str | None = None,
                 search_id: str = "", worker: str = "main"):
        self.study = study
        self.uri = tracking_uri(uri)
        self.client = RetryingClient(client(self.uri), self.uri)
        self.experiment_id = get_or_create_experiment(self.client, study)
        self.parent_run_id = parent_run_id
        self.search_id = search_id
        self.worker = worker

    # parent ---------------------------------------------------------------
    def start_parent(self, run_name: str, params: dict[str, Any], tags: dict[str, str]) -> str:
        Param = mlflow_entities.Param
        base_tags = {schema.ROLE: schema.ROLE_STUDY, schema.STUDY: self.study, schema.SEARCH_ID: self.search_id}
        run = self.client.create_run(self.experiment_id, run_name=run_name, tags={**base_tags, **tags})
        self.parent_run_id = run.info.run_id
        self.client.log_batch(self.parent_run_id, params=[Param(k, str(v)) for k, v in params.items()])
        return self.parent_run_id

    def log_dataset(self, ds, provenance, context: str = "training") -> None:
        """Record the data through MLflow's dataset lineage (name, digest, source, schema, counts)."""
        source = mlflow_code_source.CodeDatasetSource(
            tags={"source": provenance.source, "resolved": provenance.resolved})
        dataset = mlflow_data.from_numpy(
            features=ds.x_train, targets=ds.y_train, source=source,
            name=provenance.name, digest=provenance.digest[:36],
        )
        self.client.log_inputs(
            self.parent_run_id,
            datasets=[mlflow_entities.DatasetInput(dataset._to_mlflow_entity(),
                                                   tags=[mlflow_entities.InputTag("mlflow.data.context", context)])],
        )
        for key, value in provenance.to_dict().items():
            self.client.set_tag(self.parent_run_id, f"{schema.DATA_PREFIX}{key}", str(value))

    def end_parent(self, status: str = schema.RUN_FINISHED) -> None:
        """End the parent run: FINISHED retried like any call; FAILED or KILLED (on the way out of a
        failure) one try, never raised."""
        if not self.parent_run_id:
            return
        if status == schema.RUN_FINISHED:
            self.client.set_terminated(self.parent_run_id, status=status)
            return
        with self.client.single_try(), contextlib.suppress(Exception):
            self.client.set_terminated(self.parent_run_id, status=status)

    @contextlib.contextmanager
    def parent_status(self) -> Iterator[None]:
        """Own the parent run's final status: FINISHED when the block completes, KILLED on Ctrl-C or
        SIGTERM, FAILED on any other error. The one place a study's parent run is ended."""
        status = schema.RUN_FAILED
        try:
            yield
            status = schema.RUN_FINISHED
        except KeyboardInterrupt:
            status = schema.RUN_KILLED
            raise
        finally:
            self.end_parent(status)

    def set_parent_tags(self, tags: dict[str, str]) -> None:
        for key, value in tags.items():
            self.client.set_tag(self.parent_run_id, key, str(value))

    def log_best_model(self, model, example, pip_requirements: list[str]) -> str:
        """The best model on the parent run as MODEL_FILE (keras.models.load_model) and as the MLflow
        Keras model MODEL_NAME (mlflow.keras.load_model("runs:/<parent>/best_model")); returns the
        logged model's URI (models:/m-...), which `register_champion` registers."""
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / schema.MODEL_FILE
            model.save(path)
            self.log_parent_artifact(path)
        signature = mlflow.models.infer_signature(example.astype("float32"), model.predict(example, verbose=0))

        def log_model():
            with scoped_uri(self.uri), mlflow.start_run(run_id=self.parent_run_id):
                return mlflow.keras.log_model(model, name=schema.MODEL_NAME, pip_requirements=pip_requirements,
                                              signature=signature)

        info = self.client.call(log_model)
        # start_run(run_id=...) ended the run as FINISHED on exit; parent_status sets the final status.
        return info.model_uri

    def register_champion(self, model_uri: str, tags: dict[str, Any]):
        """Register the logged model as a new version of the study's registered model and move the
        CHAMPION_ALIAS to it; returns the ModelVersion."""
        name = schema.registered_model_name(self.study)
        try:
            self.client.get_registered_model(name)
        except mlflow_exceptions.MlflowException:
            self.client.create_registered_model(
                name, tags={schema.STUDY: self.study},
                description=f"Best LeNet-5 of study {self.study!r}; alias '{schema.CHAMPION_ALIAS}' = the "
                            "version the latest search chose")
        # register_model (not client.create_model_version) also links the logged model to the version;
        # its two progress lines go to stderr, where the study's own line says the same.
        def register():
            with scoped_uri(self.uri), contextlib.redirect_stderr(io.StringIO()):
                return mlflow.register_model(model_uri, name, tags={k: str(v) for k, v in tags.items()})

        version = self.client.call(register)
        self.client.set_registered_model_alias(name, schema.CHAMPION_ALIAS, version.version)
        return version

    def log_parent_metrics(self, metrics: dict[str, float]) -> None:
        self._log_summary(self.parent_run_id, None, metrics)

    def log_parent_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.parent_run_id, str(path), artifact_path)

    # children -------------------------------------------------------------
    def start_trial(self, trial_id: str, params: dict[str, str], variant: str | None = None,
                    label: str | None = None, role: str = schema.ROLE_TRIAL, values: dict | None = None,
                    arm: str | None = None, tags: dict[str, str] | None = None) -> str:
        """A child run named "trial <id>: <label>" (label: the trial's knobs, as on the progress line);
        role ROLE_FINAL for the final run. `values`: keras-tuner's values of the trial (tag TRIAL_VALUES,
        what a damaged trial file is rebuilt from); `arm`: an ablation's arm (tag ARM); `tags`: more tags."""
        Param = mlflow_entities.Param
        extra, tags = tags or {}, {
            schema.PARENT_RUN_ID: self.parent_run_id,
            schema.ROLE: role,
            schema.STUDY: self.study,
            schema.SEARCH_ID: self.search_id,
            schema.TRIAL_ID: trial_id,
            schema.WORKER: self.worker,
        }
        if variant:
            tags[schema.VARIANT] = variant
        if arm is not None:
            tags[schema.ARM] = arm
        tags.update(host_tags())  # the machine that trains the run and measures its cost
        tags.update(extra)
        if values is not None:
            tags[schema.TRIAL_VALUES] = json.dumps(values, sort_keys=True)
        name = f"trial {trial_id}: {label}" if label else f"trial {trial_id}"
        run = self.client.create_run(self.experiment_id, run_name=name[:250], tags=tags)
        run_id = run.info.run_id
        self.client.log_batch(run_id, params=[Param(k, str(v)[:6000]) for k, v in params.items()])
        return run_id

    def finish_trial(self, run_id: str, summary: TrialSummary, extra: dict[str, float]) -> None:
        scalars = {
            schema.BEST_VAL_ACCURACY: summary.best_val_accuracy,
            "best_val_loss": summary.best_val_loss,
            "best_epoch": summary.best_epoch,
            "epochs_run": summary.epochs_run,
            **extra,
        }
        if len(summary.per_execution) > 1:
            for key in ("best_val_accuracy", "best_val_loss", "epochs_run"):
                values = [e[key] for e in summary.per_execution]
                scalars[f"{key}_mean"] = float(np.mean(values))
                scalars[f"{key}_std"] = float(np.std(values, ddof=1))
        self._log_summary(run_id, summary, scalars)
        self.client.set_tag(run_id, schema.STOP_REASON, summary.stop_reason)
        self.client.set_tag(run_id, schema.TRIAL_STATUS, schema.COMPLETED)
        self.client.set_terminated(run_id, status=schema.RUN_FINISHED)

    def fail_trial(self, run_id: str, reason: str, stop_reason: str, summary: TrialSummary | None = None,
                   extra: dict[str, float] | None = None) -> None:
        self._log_summary(run_id, summary, extra or {})
        self.client.set_tag(run_id, schema.TRIAL_STATUS, schema.FAILED)
        self.client.set_tag(run_id, schema.FAILURE_REASON, reason[:4000])
        self.client.set_tag(run_id, schema.STOP_REASON, stop_reason)
        self.client.set_terminated(run_id, status=schema.RUN_FAILED)

    def _log_summary(self, run_id: str, summary: TrialSummary | None, scalars: dict[str, float]) -> None:
        """Per-epoch histories (step = epoch) and scalar metrics, in batches MLflow accepts."""
        Metric = mlflow_entities.Metric
        now = int(time.time() * 1000)
        history = summary.history if summary is not None else {}
        metrics = [Metric(key, float(value), now, int(step)) for key, points in history.items() for step, value in points]
        metrics += [Metric(k, float(v), now, 0) for k, v in scalars.items()]
        for start in range(0, len(metrics), 900):  # log_batch takes at most 1000 metrics
            self.client.log_batch(run_id, metrics=metrics[start:start + 900])

    def kill_trial(self, run_id: str) -> None:
        """Mark a trial's run KILLED, on the way out of a failure: one try, never raised."""
        with self.client.single_try(), contextlib.suppress(Exception):
            self.client.set_tag(run_id, schema.TRIAL_STATUS, schema.KILLED)
            self.client.set_terminated(run_id, status=schema.RUN_KILLED)

    def log_trial_metrics(self, run_id: str, metrics: dict[str, float]) -> None:
        self._log_summary(run_id, None, metrics)

    # queries about this study ---------------------------------------------
    def trial_runs(self, search_id: str | None = None) -> list:
        """Child runs of this study's current search (all parents), newest first."""
        return trial_runs(self.client, self.experiment_id, self.search_id if search_id is None else search_id)

    def runs_of_trial(self, trial_id: str) -> list:
        """This search's runs of one trial, newest first."""
        return trial_runs(self.client, self.experiment_id, self.search_id, trial_id=trial_id, max_results=50)

    def run_of_trial(self, trial_id: str):
        """The run that ended a trial of this search (the newest ended one, else the newest), or None."""
        runs = self.runs_of_trial(trial_id)
        ended = [r for r in runs if r.info.status in (schema.RUN_FINISHED, schema.RUN_FAILED)]
        return (ended or runs or [None])[0]

    def completed_run_of_trial(self, trial_id: str):
        """This search's completed run of a trial, or None."""
        runs = trial_runs(self.client, self.experiment_id, self.search_id, trial_id=trial_id, completed=True,
                          max_results=1)
        return runs[0] if runs else None

    def retrain_runs(self) -> list:
        """This search's FINISHED retrain runs (ROLE_RETRAIN: an isolation study's phase 2), newest first."""
        flt = _all(_tag_is(schema.ROLE, schema.ROLE_RETRAIN), _tag_is(schema.SEARCH_ID, self.search_id),
                   "attributes.status = 'FINISHED'")
        return self.client.search_runs([self.experiment_id], filter_string=flt, max_results=5000,
                                       order_by=["attributes.start_time DESC"])

    def running_children(self, worker: str | None = None) -> list:
        """RUNNING child runs of the parent run, of one worker or of all."""
        return running_children(self.client, self.experiment_id, self.parent_run_id, worker)

    def kill_running_children(self, worker: str | None = None) -> list[str]:
        """Mark the parent's RUNNING child runs (of one worker, or all) KILLED; returns their trial ids.
        A closing call: one try, never raised (a store that does not answer: nothing marked)."""
        trial_ids = []
        with self.client.single_try(), contextlib.suppress(Exception):
            for run in self.running_children(worker):
                self.kill_trial(run.info.run_id)
                trial_ids.append(run.data.tags.get(schema.TRIAL_ID, "?"))
        return trial_ids
