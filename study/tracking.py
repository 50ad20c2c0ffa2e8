"""The MLflow side of a study: the store, the parent run per invocation, a child run per trial.

Everything goes through `MlflowClient` with explicit run ids, so the same code
works in the process that runs the search and in worker processes that only
know the parent run's id. Names of tags and metrics are in `schema.py`.
"""

from __future__ import annotations

import math
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from . import schema

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"


def tracking_uri(explicit: str | None = None) -> str:
    """The store in use: an explicit URI, else $MLFLOW_TRACKING_URI, else ./mlflow.db (MLflow 3's default)."""
    return explicit or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def _local_artifact_root(uri: str) -> str | None:
    """For a local SQLite store, artifacts go to mlruns/ beside the database, as `mlflow ui` expects."""
    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///"):])
        return (db.parent.resolve() / "mlruns").as_uri()
    return None


def client(uri: str | None = None):
    import mlflow
    from mlflow.tracking import MlflowClient

    uri = tracking_uri(uri)
    mlflow.set_tracking_uri(uri)
    return MlflowClient(tracking_uri=uri)


def get_or_create_experiment(c, name: str, store_uri: str | None = None) -> str:
    """The study's experiment. `store_uri` names the store whose mlruns/ holds the artifacts when
    the client talks to it through a server (default: the client's own URI)."""
    exp = c.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            c.restore_experiment(exp.experiment_id)
        return exp.experiment_id
    root = _local_artifact_root(store_uri or c.tracking_uri)
    return c.create_experiment(
        name,
        artifact_location=f"{root}/{_safe(name)}" if root else None,
        # Marks the experiment as classic model training for MLflow's own tools.
        tags={"mlflow.experimentKind": "custom_model_development"},
    )


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


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


def ui_link(uri: str, experiment_id: str) -> str:
    # MLflow 3.17's UI opens experiments in its GenAI view unless told otherwise.
    base = uri if uri.startswith("http") else "http://127.0.0.1:5000"
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"


def mark_stale_runs(c, experiment_id: str, status: str = "KILLED") -> int:
    """End runs left RUNNING by a killed process; returns how many."""
    runs = c.search_runs([experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=5000)
    for run in runs:
        if run.data.tags.get(schema.ROLE) == schema.ROLE_TRIAL:
            c.set_tag(run.info.run_id, schema.TRIAL_STATUS, status)
        c.set_terminated(run.info.run_id, status=status)
    return len(runs)


@dataclass
class TrialSummary:
    """What one trial achieved, summarised over its executions."""

    best_val_accuracy: float = math.nan
    best_val_loss: float = math.nan
    best_epoch: int = -1
    epochs_run: int = 0
    stop_reason: str = "max_epochs"
    nan: bool = False
    per_execution: list[dict] = field(default_factory=list)
    history: dict[str, list[tuple[int, float]]] = field(default_factory=dict)


def summarise(histories: Iterable[Any], max_epochs: int | None = None) -> TrialSummary:
    """Turn the History objects (one per execution) of a trial into a TrialSummary."""
    import numpy as np

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
            reason = "nan"
        elif max_epochs and last_epoch < max_epochs:
            reason = "early_stopping"
        else:
            reason = "max_epochs"
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
        s.stop_reason = "nan" if "nan" in reasons else ("early_stopping" if "early_stopping" in reasons else "max_epochs")
    return s


class StudyTracker:
    """Logs one study invocation: its parent run and a child run per trial."""

    def __init__(self, study: str, uri: str | None = None, parent_run_id: str | None = None,
                 search_id: str = "", worker: str = "main"):
        self.study = study
        self.uri = tracking_uri(uri)
        self.client = client(self.uri)
        self.experiment_id = get_or_create_experiment(self.client, study)
        self.parent_run_id = parent_run_id
        self.search_id = search_id
        self.worker = worker

    # parent ---------------------------------------------------------------
    def start_parent(self, run_name: str, params: dict[str, Any], tags: dict[str, str]) -> str:
        from mlflow.entities import Param

        base_tags = {schema.ROLE: schema.ROLE_STUDY, schema.STUDY: self.study, schema.SEARCH_ID: self.search_id}
        run = self.client.create_run(self.experiment_id, run_name=run_name, tags={**base_tags, **tags})
        self.parent_run_id = run.info.run_id
        self.client.log_batch(self.parent_run_id, params=[Param(k, str(v)) for k, v in params.items()])
        return self.parent_run_id

    def log_dataset(self, ds, provenance, context: str = "training") -> None:
        """Record the data through MLflow's dataset lineage (name, digest, source, schema, counts)."""
        import mlflow.data
        from mlflow.data.code_dataset_source import CodeDatasetSource
        from mlflow.entities import DatasetInput, InputTag

        source = CodeDatasetSource(tags={"source": provenance.source, "resolved": provenance.resolved})
        dataset = mlflow.data.from_numpy(
            features=ds.x_train, targets=ds.y_train, source=source,
            name=provenance.name, digest=provenance.digest[:36],
        )
        self.client.log_inputs(
            self.parent_run_id,
            datasets=[DatasetInput(dataset._to_mlflow_entity(), tags=[InputTag("mlflow.data.context", context)])],
        )
        for key, value in provenance.to_dict().items():
            self.client.set_tag(self.parent_run_id, f"{schema.DATA_PREFIX}{key}", str(value))

    def end_parent(self, status: str = "FINISHED") -> None:
        if self.parent_run_id:
            self.client.set_terminated(self.parent_run_id, status=status)

    def log_parent_metrics(self, metrics: dict[str, float]) -> None:
        self._log_summary(self.parent_run_id, None, metrics)

    def log_parent_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.parent_run_id, str(path), artifact_path)

    # children -------------------------------------------------------------
    def start_trial(self, trial_id: str, params: dict[str, str], variant: str | None = None) -> str:
        from mlflow.entities import Param

        tags = {
            "mlflow.parentRunId": self.parent_run_id,
            schema.ROLE: schema.ROLE_TRIAL,
            schema.STUDY: self.study,
            schema.SEARCH_ID: self.search_id,
            schema.TRIAL_ID: trial_id,
            schema.WORKER: self.worker,
        }
        if variant:
            tags[schema.VARIANT] = variant
        run = self.client.create_run(self.experiment_id, run_name=f"trial {trial_id}", tags=tags)
        run_id = run.info.run_id
        self.client.log_batch(run_id, params=[Param(k, str(v)[:6000]) for k, v in params.items()])
        return run_id

    def finish_trial(self, run_id: str, summary: TrialSummary, extra: dict[str, float]) -> None:
        scalars = {
            "best_val_accuracy": summary.best_val_accuracy,
            "best_val_loss": summary.best_val_loss,
            "best_epoch": summary.best_epoch,
            "epochs_run": summary.epochs_run,
            **extra,
        }
        if len(summary.per_execution) > 1:
            import numpy as np

            for key in ("best_val_accuracy", "best_val_loss", "epochs_run"):
                values = [e[key] for e in summary.per_execution]
                scalars[f"{key}_mean"] = float(np.mean(values))
                scalars[f"{key}_std"] = float(np.std(values, ddof=1))
        self._log_summary(run_id, summary, scalars)
        self.client.set_tag(run_id, schema.STOP_REASON, summary.stop_reason)
        self.client.set_tag(run_id, schema.TRIAL_STATUS, "COMPLETED")
        self.client.set_terminated(run_id, status="FINISHED")

    def fail_trial(self, run_id: str, reason: str, stop_reason: str, summary: TrialSummary | None = None,
                   extra: dict[str, float] | None = None) -> None:
        self._log_summary(run_id, summary, extra or {})
        self.client.set_tag(run_id, schema.TRIAL_STATUS, "FAILED")
        self.client.set_tag(run_id, schema.FAILURE_REASON, reason[:4000])
        self.client.set_tag(run_id, schema.STOP_REASON, stop_reason)
        self.client.set_terminated(run_id, status="FAILED")

    def _log_summary(self, run_id: str, summary: TrialSummary | None, scalars: dict[str, float]) -> None:
        """Per-epoch histories (step = epoch) and scalar metrics, in batches MLflow accepts."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        history = summary.history if summary is not None else {}
        metrics = [Metric(key, float(value), now, int(step)) for key, points in history.items() for step, value in points]
        metrics += [Metric(k, float(v), now, 0) for k, v in scalars.items()]
        for start in range(0, len(metrics), 900):  # log_batch takes at most 1000 metrics
            self.client.log_batch(run_id, metrics=metrics[start:start + 900])

    def kill_trial(self, run_id: str) -> None:
        self.client.set_tag(run_id, schema.TRIAL_STATUS, "KILLED")
        self.client.set_terminated(run_id, status="KILLED")

    def log_trial_metrics(self, run_id: str, metrics: dict[str, float]) -> None:
        self._log_summary(run_id, None, metrics)

    def trial_runs(self, search_id: str | None = None) -> list:
        """Finished child runs of this study's current search (all parents), newest first."""
        search_id = self.search_id if search_id is None else search_id
        flt = f"tags.`{schema.ROLE}` = '{schema.ROLE_TRIAL}' and tags.`{schema.SEARCH_ID}` = '{search_id}'"
        return self.client.search_runs([self.experiment_id], filter_string=flt, max_results=5000,
                                       order_by=["attributes.start_time DESC"])
