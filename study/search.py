"""Run a study: space → keras-tuner → builder → fit → MLflow, then the test set once.

`run_search` is what `lenet-study search` and `make search` call. The tuner's
state lives in `logs/.keras-tuner/<study>/` (so running the same study again
resumes it), TensorBoard event files in `logs/<study>/<trial>/execution<k>/`,
and every run in the MLflow store (`mlflow.db` + `mlruns/` by default).
"""

from __future__ import annotations

import logging
import shlex
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from . import schema
from .space import Space, StudySettings

log = logging.getLogger("study.search")

TUNER_DIRNAME = ".keras-tuner"


class SearchError(RuntimeError):
    """A study that cannot run as asked; one line for the user."""


@dataclass
class SearchResult:
    study: str
    experiment_id: str
    parent_run_id: str
    best_trial_id: str | None
    best_val_accuracy: float | None
    test_accuracy: float | None
    completed: int
    failed: int
    ui_link: str


def default_study_name(space: Space, settings: StudySettings) -> str:
    """The space file's stem, with the dataset appended when a flag changed it."""
    name = space.name
    if settings.dataset != space.settings.dataset:
        name += f"-{settings.dataset}"
    return name


def _search_id(project_dir: Path, fresh: bool) -> str:
    """An id for this study's current search, kept beside the tuner state; new on --fresh."""
    marker = project_dir / "search_id"
    if not fresh and marker.exists():
        return marker.read_text().strip()
    project_dir.mkdir(parents=True, exist_ok=True)
    search_id = uuid.uuid4().hex[:12]
    marker.write_text(search_id + "\n")
    return search_id


def prepare_data(settings: StudySettings, data_dir: str | None):
    """Load the dataset, subsample if the study asks, and carve the validation split."""
    from .data import load_dataset, subsample, train_val_split

    ds = load_dataset(settings.dataset, data_dir)
    if settings.train_samples and settings.train_samples < len(ds.y_train):
        n_test = min(len(ds.y_test), max(settings.train_samples // 2, 100))
        ds = subsample(ds, settings.train_samples, n_test, seed=settings.seed)
    x_tr, y_tr, x_val, y_val = train_val_split(ds.x_train, ds.y_train, settings.val_fraction, seed=settings.seed)
    return ds, (x_tr, y_tr), (x_val, y_val)


@dataclass
class OpenedStudy:
    """What `open_study` set up: the study's folders and search id, its data, and its parent run."""

    study: str
    log_dir: Path
    project_dir: Path
    search_id: str
    resumed: bool
    ds: object
    train: tuple
    val: tuple
    tracker: object  # tracking.StudyTracker, its parent run started


def study_name(space: Space, settings: StudySettings, study: str | None = None) -> str:
    study = study or default_study_name(space, settings)
    if not study or "/" in study:
        raise SearchError(f"study name {study!r}: use letters, digits, '-', '_' and '.'")
    return study


def open_study(
    space: Space,
    settings: StudySettings,
    *,
    study: str | None = None,
    fresh: bool = False,
    data_dir: str | None = None,
    log_dir: str | Path = "logs",
    tracking_uri: str | None = None,
    command: str | None = None,
    echo=print,
    extra_params: dict | None = None,
    extra_tags: dict | None = None,
) -> OpenedStudy:
    """Everything before the first trial: folders, search id, data, and the parent run with data and space.

    Shared by the single-process search and the distributed launcher. On --fresh the tuner folder is
    cleared here, before the new search id is written into it, so build the tuner with overwrite=False.
    """
    import shutil

    from . import tracking

    study = study_name(space, settings, study)
    log_dir = Path(log_dir)
    project_dir = log_dir / TUNER_DIRNAME / study
    resumed = (project_dir / "oracle.json").exists() and not fresh
    if fresh and project_dir.exists():
        shutil.rmtree(project_dir)
    search_id = _search_id(project_dir, fresh)

    ds, (x_tr, y_tr), (x_val, y_val) = prepare_data(settings, data_dir)
    prov = ds.provenance
    echo(
        f"study {study!r}: {settings.tuner} on {prov.resolved} ({len(y_tr):,} train / {len(y_val):,} val / "
        f"{len(ds.y_test):,} test, source {prov.source})"
    )

    tracker = tracking.StudyTracker(study, tracking_uri, search_id=search_id)
    stale = tracking.mark_stale_runs(tracker.client, tracker.experiment_id)
    if stale:
        echo(f"marked {stale} run(s) left RUNNING by an interrupted process as KILLED")
    run_name = f"{study} {time.strftime('%Y-%m-%d %H:%M:%S')}" + (" (resumed)" if resumed else "")
    params = {
        "tuner": settings.tuner, "max_trials": settings.max_trials, "epochs": settings.epochs,
        "patience": settings.patience, "dataset": settings.dataset, "data_resolved": prov.resolved,
        "executions_per_trial": settings.executions_per_trial, "seed": settings.seed,
        "val_fraction": settings.val_fraction, "objective": schema.OBJECTIVE, "space_file": str(space.path),
        "test_eval": settings.test_eval, "train_samples": settings.train_samples or "all",
        "hyperband_factor": settings.hyperband_factor,
        **(extra_params or {}),
    }
    tags = {
        schema.SPACE_FILE: str(space.path),
        schema.SPACE_DIGEST: space.digest,
        schema.GIT_COMMIT: tracking.git_commit(),
        schema.COMMAND: command or shlex.join(sys.argv),
        "mlflow.note.content": space.settings.description or f"LeNet-5 study {study}",
        **(extra_tags or {}),
    }
    tracker.start_parent(run_name, params, tags)
    try:
        tracker.log_dataset(ds, prov)
        tracker.log_parent_artifact(space.path, "space")
    except BaseException:
        tracker.end_parent("FAILED")
        raise
    return OpenedStudy(study, log_dir, project_dir, search_id, resumed, ds, (x_tr, y_tr), (x_val, y_val), tracker)


def search_callbacks(log_dir: str | Path, study: str) -> list:
    """The callbacks every trial gets, in one process or in a worker."""
    import keras

    from .tuner import TensorBoard

    return [
        TensorBoard(log_dir=str(Path(log_dir) / study), write_graph=True, histogram_freq=0),
        keras.callbacks.TerminateOnNaN(),
    ]


def finish_study(tuner, opened: OpenedStudy, settings: StudySettings, echo=print) -> SearchResult:
    """After the last trial: the test set once for the chosen model(s), the best model on the parent run."""
    from . import tracking

    result = _evaluate_on_test(tuner, opened.tracker, settings, opened.ds, echo)
    result.ui_link = tracking.ui_link(opened.tracker.uri, opened.tracker.experiment_id)
    return result


def run_search(
    space: Space,
    settings: StudySettings,
    *,
    study: str | None = None,
    fresh: bool = False,
    data_dir: str | None = None,
    log_dir: str | Path = "logs",
    tracking_uri: str | None = None,
    command: str | None = None,
    echo=print,
) -> SearchResult:
    from .tuner import LeNetHyperModel, Progress, expected_trials, gc_frozen, make_tuner

    opened = open_study(space, settings, study=study, fresh=fresh, data_dir=data_dir, log_dir=log_dir,
                        tracking_uri=tracking_uri, command=command, echo=echo)
    study, log_dir, tracker = opened.study, opened.log_dir, opened.tracker
    (x_tr, y_tr), (x_val, y_val) = opened.train, opened.val
    status = "FAILED"
    try:
        hp = space.hyperparameters()
        progress = Progress(None, echo=echo)
        tuner = make_tuner(
            settings.tuner, hypermodel=LeNetHyperModel(settings), hyperparameters=hp, settings=settings,
            tracker=tracker, progress=progress, directory=str(log_dir / TUNER_DIRNAME), project_name=study,
            overwrite=False,  # open_study already cleared the folder on --fresh
        )
        done_before = len([t for t in tuner.oracle.trials.values() if t.status in ("COMPLETED", "FAILED", "INVALID")])
        progress.total = expected_trials(tuner, settings, space.size())
        progress.done = done_before
        if done_before:
            echo(f"resuming: {done_before} trial(s) already finished are kept, not re-run")
        with gc_frozen():  # keras-tuner's two collections per model build then skip the libraries and the data
            tuner.search(x_tr, y_tr, validation_data=(x_val, y_val), callbacks=search_callbacks(log_dir, study),
                         verbose=0)
            result = finish_study(tuner, opened, settings, echo)
        status = "FINISHED"
        return result
    except KeyboardInterrupt:
        status = "KILLED"
        echo("interrupted: finished trials are kept; run the same command again to resume")
        raise
    finally:
        tracker.end_parent(status)


def _finished_trials(tuner):
    return [t for t in tuner.oracle.trials.values() if t.status == "COMPLETED" and t.score is not None]


def _evaluate_on_test(tuner, tracker, settings: StudySettings, ds, echo) -> SearchResult:
    """The test set, once, for the chosen model(s) only; the best model goes on the parent run."""
    import math

    trials = sorted(_finished_trials(tuner), key=lambda t: t.score, reverse=True)
    failed = len([t for t in tuner.oracle.trials.values() if t.status in ("FAILED", "INVALID")])
    result = SearchResult(tracker.study, tracker.experiment_id, tracker.parent_run_id, None, None, None,
                          len(trials), failed, "")
    tracker.log_parent_metrics({"n_trials_completed": len(trials), "n_trials_failed": failed})
    if not trials:
        echo("no trial finished: nothing to evaluate on the test set")
        return result
    runs = {}
    for run in tracker.trial_runs():  # newest first: keep the latest finished run per trial
        if run.info.status == "FINISHED":
            runs.setdefault(run.data.tags.get(schema.TRIAL_ID), run)
    chosen = trials if settings.test_eval == "all" else trials[:1]
    best_model = None
    for rank, trial in enumerate(chosen):
        run = runs.get(trial.trial_id)
        model = tuner.load_model(trial)  # its optimizer-slot warning is filtered in study.tuner
        test_loss, test_acc = model.evaluate(ds.x_test, ds.y_test, verbose=0, batch_size=512)
        if run is not None and "test_accuracy" not in run.data.metrics:
            tracker.log_trial_metrics(run.info.run_id, {"test_accuracy": test_acc, "test_loss": test_loss})
        if rank == 0:
            best_model = model
            result.best_trial_id = trial.trial_id
            result.best_val_accuracy = float(trial.score)
            result.test_accuracy = float(test_acc)
            tracker.log_parent_metrics(
                {"best_val_accuracy": float(trial.score), "test_accuracy": test_acc, "test_loss": test_loss}
            )
            if run is not None:
                tracker.client.set_tag(tracker.parent_run_id, "lenet.best_trial_run_id", run.info.run_id)
            tracker.client.set_tag(tracker.parent_run_id, "lenet.best_trial_id", trial.trial_id)
    echo(
        f"best trial {result.best_trial_id}: val_accuracy {result.best_val_accuracy:.4f}, "
        f"test_accuracy {result.test_accuracy:.4f} ({len(chosen)} model(s) evaluated on the test set once)"
    )
    if best_model is not None and math.isfinite(result.test_accuracy):
        _log_best_model(tracker, best_model, ds.x_test[:2])
    return result


def _log_best_model(tracker, model, example) -> None:
    """The best model as `best_model.keras` (keras.models.load_model) and as an MLflow Keras model."""
    import mlflow
    import keras

    # The checkpoint restored weights only; build the optimizer's slots so the saved file loads cleanly.
    model.optimizer.build(model.trainable_variables)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "best_model.keras"
        model.save(path)
        tracker.log_parent_artifact(path)
    requirements = [f"keras=={keras.__version__}", f"tensorflow=={_tf_version()}"]
    signature = mlflow.models.infer_signature(example.astype("float32"), model.predict(example, verbose=0))
    with mlflow.start_run(run_id=tracker.parent_run_id):
        mlflow.keras.log_model(model, name="best_model", pip_requirements=requirements, signature=signature)
    # start_run(run_id=...) ended the run as FINISHED on exit; the caller sets the final status.


def _tf_version() -> str:
    import tensorflow as tf

    return tf.__version__


def load_space_with_overrides(path: str, **overrides) -> tuple[Space, StudySettings]:
    from .space import load_space

    space = load_space(path)
    return space, space.settings.override(**overrides)

