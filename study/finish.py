"""Finishing a study, in one process or with workers: the trials' best models read the test set once, the
chosen configuration's final run trains, the best model is logged and registered, and finished.json says the
search ended (`finish_study`); with the two records it passes along, `SearchResult` and `OpenedStudy`.

search.py opens and runs a study and calls `finish_study`; study/parallel/chief.py calls it after its workers.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from . import retrain, schema, tracking
from .files import write_atomic
from .lazy import lazy
from .model import LeNetConfig
from .space import StudySettings

keras = lazy("keras")
tensorflow = lazy("tensorflow")
kt_compat = lazy("study.kt_compat")
tuner_module = lazy("study.tuner")

FINISHED_FILE = "finished.json"  # in the tuner folder: the search ended and its test figure was taken


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
    max_trials: int | None = None  # the study's max_trials when it finished
    finished_before: bool = False  # the study had finished already: nothing ran, nothing was read or logged

    def done_line(self) -> str:
        """The closing line of a search, in one process or with workers."""
        if self.finished_before:
            test = f", test_accuracy {self.test_accuracy:.4f}" if self.test_accuracy is not None else ""
            return (f"study {self.study!r} is finished ({self.completed} trial(s) completed, {self.failed} failed; "
                    f"best trial {self.best_trial_id}{test}): nothing to do, nothing changed. Raise --max-trials "
                    f"above {self.max_trials} to continue it, or start it over with --fresh; browse with "
                    f"`make ui`: {self.ui_link}")
        return (f"done: {self.completed} trial(s) completed, {self.failed} failed; "
                f"browse with `make ui`: {self.ui_link}")


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


def record_finished(project_dir: Path, search_id: str, settings: StudySettings, result: SearchResult) -> None:
    """After finish_study: the search ended and the test set was read for it (see finished_result)."""
    record = {"search_id": search_id, "max_trials": settings.max_trials,
              **{key: getattr(result, key) for key in ("experiment_id", "parent_run_id", "best_trial_id",
                                                       "best_val_accuracy", "test_accuracy", "completed", "failed")}}
    write_atomic(project_dir / FINISHED_FILE, json.dumps(record, indent=1) + "\n")


def finish_study(tuner, opened: OpenedStudy, settings: StudySettings, echo=print,
                 ui_uri: str | None = None) -> SearchResult:
    """After the last trial: the test set once for the chosen model(s), the best model on the parent run,
    then the study recorded as finished (running it again changes nothing: finished_result).
    `ui_uri`: the store whose UI link to print (default: the tracker's)."""
    result = _finish(tuner, opened, settings, echo, ui_uri)
    result.max_trials = settings.max_trials
    record_finished(opened.project_dir, opened.search_id, settings, result)
    return result


def _finish(tuner, opened: OpenedStudy, settings: StudySettings, echo, ui_uri: str | None) -> SearchResult:
    tracker = opened.tracker
    counts = tuner_module.trial_counts(tuner.oracle)
    trials = sorted(_finished_trials(tuner), key=lambda t: t.score, reverse=True)
    result = SearchResult(tracker.study, tracker.experiment_id, tracker.parent_run_id, None, None, None,
                          counts.completed, counts.failed, tracking.ui_link(ui_uri or tracker.uri, tracker.experiment_id))
    tracker.log_parent_metrics({schema.N_TRIALS_COMPLETED: counts.completed, schema.N_TRIALS_FAILED: counts.failed})
    if not trials:
        echo("no trial finished: nothing to evaluate on the test set")
        return result
    result.best_trial_id, result.best_val_accuracy = trials[0].trial_id, float(trials[0].score)
    tracker.log_parent_metrics({schema.BEST_VAL_ACCURACY: result.best_val_accuracy})
    tracker.set_parent_tags({schema.BEST_TRIAL_ID: trials[0].trial_id})
    if settings.kind == "isolation":  # phase 2: only the retrains read the test set (study/retrain.py)
        done = retrain.retrain_best(opened, settings, retrain.value_order(tuner.oracle.hyperparameters), echo)
        chosen = done.chosen()
        scores = list(done.test.get(chosen, {}).values()) if chosen else []
        if scores:
            result.test_accuracy = float(sum(scores) / len(scores))
            tracker.log_parent_metrics({schema.TEST_ACCURACY: result.test_accuracy})
        return result
    problem = _checkpoint_problem(tuner, trials[0])
    if problem:
        # The study's result without a test figure: the weights are the trial's, never retrained silently.
        run = tracker.completed_run_of_trial(result.best_trial_id)
        echo(f"best trial {result.best_trial_id}: val_accuracy {result.best_val_accuracy:.4f}; not evaluated on "
             f"the test set: {problem}"
             + (f"; `lenet-study train --run {run.info.run_id}` trains its configuration again" if run else ""))
        return result
    _evaluate_on_test(tuner, trials, opened, settings, result, echo)
    return result


def _checkpoint_problem(tuner, trial) -> str | None:
    """Why the trial's best weights cannot be loaded (its checkpoint missing or damaged), or None."""
    checkpoint = Path(_checkpoint(tuner, trial.trial_id))
    if not checkpoint.exists():
        # With workers on other machines: the chief and the workers share no --log-dir.
        return (f"its checkpoint {checkpoint} is missing (trained on another machine? give the chief and the "
                "workers one shared --log-dir)")
    try:
        tuner.load_model(trial)
    except Exception as exc:  # truncated or damaged: h5py's OSError, Keras's ValueError
        return f"its checkpoint {checkpoint} is damaged ({type(exc).__name__})"
    return None


def _finished_trials(tuner):
    completed = kt_compat.TrialStatus.COMPLETED
    return [t for t in tuner.oracle.trials.values() if t.status == completed and t.score is not None]


def _checkpoint(tuner, trial_id: str) -> str:
    return kt_compat.checkpoint_path(tuner, trial_id)


def _evaluate_on_test(tuner, trials, opened: OpenedStudy, settings: StudySettings, result: SearchResult, echo) -> None:
    """The test set, once, for the chosen model(s) only; the best model goes on the parent run."""
    tracker, ds = opened.tracker, opened.ds
    runs = {}
    for run in tracker.trial_runs():  # newest first: keep the latest finished run per trial
        if run.info.status == schema.RUN_FINISHED:
            runs.setdefault(run.data.tags.get(schema.TRIAL_ID), run)
    chosen = trials if settings.test_eval == "all" else trials[:1]
    best_model = best_run = None
    best_test = (math.nan, math.nan)
    for rank, trial in enumerate(chosen):
        run = runs.get(trial.trial_id)
        model = tuner.load_model(trial)  # its optimizer-slot warning is filtered in study.tuner
        test_loss, test_acc = model.evaluate(ds.x_test, ds.y_test, verbose=0, batch_size=512)
        if run is not None and schema.TEST_ACCURACY not in run.data.metrics:
            tracker.log_trial_metrics(run.info.run_id, {schema.TEST_ACCURACY: test_acc, schema.TEST_LOSS: test_loss})
        if rank == 0:
            best_model, best_run, best_test = model, run, (float(test_acc), float(test_loss))
            result.test_accuracy = float(test_acc)
            if run is not None:
                tracker.set_parent_tags({schema.BEST_TRIAL_RUN_ID: run.info.run_id})
    echo(
        f"best trial {result.best_trial_id}: val_accuracy {result.best_val_accuracy:.4f}, "
        f"test_accuracy {result.test_accuracy:.4f} ({len(chosen)} model(s) evaluated on the test set once)"
    )
    final_run = None
    if settings.final_epochs and best_run is not None:
        # Declared before the search (the study's final_epochs): the chosen configuration trained
        # longer is the study's model, whatever the test says.
        best_model, final_run, best_test = _train_final(best_run, opened, settings, echo)
        result.test_accuracy = best_test[0]
    tracker.log_parent_metrics({schema.TEST_ACCURACY: best_test[0], schema.TEST_LOSS: best_test[1]})
    if best_model is not None and math.isfinite(result.test_accuracy):
        model_uri = _log_best_model(tracker, best_model, ds.x_test[:2])
        _register_champion(tracker, model_uri, result, best_run, ds.provenance, echo, final_run)


def _train_final(best_run, opened: OpenedStudy, settings: StudySettings, echo):
    """The best trial's configuration trained settings.final_epochs epochs on the same split (no early
    stopping: a schedule runs to its end), recorded as its own run (ROLE_FINAL); returns (model, run
    id, (test accuracy, test loss))."""
    tracker = opened.tracker
    config = LeNetConfig.from_params(best_run.data.params).replace(epochs=settings.final_epochs, patience=0)
    trial_id = best_run.data.tags.get(schema.TRIAL_ID, "?")
    label = f"trial {trial_id}'s configuration, {config.epochs} epochs: {tuner_module.knob_text(config)}"
    echo(f"final: training {label}")
    run_id = tracker.start_trial(schema.FINAL_TRIAL_ID, config.to_params(), label=label, role=schema.ROLE_FINAL)
    board = tuner_module.TensorBoard(log_dir=str(opened.log_dir / opened.study / schema.FINAL_TRIAL_ID),
                                     write_graph=False)
    model, summary, wall, (test_acc, test_loss) = retrain.train_into_run(opened, run_id, config, "final run",
                                                                         callbacks=[board])
    tracker.set_parent_tags({schema.FINAL_RUN_ID: run_id})
    echo(f"final: val_accuracy {summary.best_val_accuracy:.4f} (best epoch {summary.best_epoch + 1}), "
         f"test_accuracy {test_acc:.4f}, {wall:.0f} s (run {run_id})")
    return model, run_id, (test_acc, test_loss)


def _log_best_model(tracker, model, example) -> str:
    """The best model on the parent run, loadable with keras and with mlflow; returns its model URI."""
    # The checkpoint restored weights only; build the optimizer's slots so the saved file loads cleanly.
    model.optimizer.build(model.trainable_variables)
    return tracker.log_best_model(model, example,
                                  [f"keras=={keras.__version__}", f"tensorflow=={tensorflow.__version__}"])


def _register_champion(tracker, model_uri: str, result: SearchResult, best_run, provenance, echo,
                       final_run: str | None = None) -> None:
    """The best model as a new version of the study's registered model, with the champion alias.
    The model is already on the parent run: a registry that refuses only costs the alias (one line)."""
    tags = {
        schema.STUDY: tracker.study, schema.SEARCH_ID: tracker.search_id, schema.TRIAL_ID: result.best_trial_id,
        schema.TEST_ACCURACY: f"{result.test_accuracy:.4f}", schema.BEST_VAL_ACCURACY: f"{result.best_val_accuracy:.4f}",
        **{f"{schema.DATA_PREFIX}{key}": getattr(provenance, key) for key in ("name", "resolved", "digest")},
    }
    if best_run is not None:
        tags[schema.BEST_TRIAL_RUN_ID] = best_run.info.run_id
    if final_run is not None:
        tags[schema.FINAL_RUN_ID] = final_run
    name = schema.registered_model_name(tracker.study)
    try:
        version = tracker.register_champion(model_uri, tags)
    except tracking.StoreUnavailable:  # the store itself is gone: the study stops (one line) and resumes later
        raise
    except Exception as exc:  # the store's registry is not the study's record: say so and go on
        echo(f"best model not registered as {name} ({str(exc).splitlines()[0][:200]}); it is on the parent "
             f"run {tracker.parent_run_id} as {schema.MODEL_FILE}")
        return
    echo(f"registered models:/{name}/{version.version} as models:/{name}@{schema.CHAMPION_ALIAS}")
