"""One study in one process: space → keras-tuner → builder → fit → MLflow, then the test set once.

`StudyRequest` is what a user asked for (built once, by the CLI or a benchmark);
`open_study` does everything before the first trial (folders, search id, data,
the parent run), `run_search` runs the trials in this process and
`finish_study` evaluates the chosen model(s) on the test set and logs the best
model. The parallel launcher (`study.parallel`) shares `open_study` and
`finish_study`. The tuner's state lives in `logs/.keras-tuner/<study>/` (so
running the same study again resumes it), TensorBoard event files in
`logs/<study>/<trial>/execution<k>/`, and every run in the MLflow store
(`mlflow.db` + `mlruns/` by default).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import logging
import math
import shlex
import shutil
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import retrain, schema, tracking
from .budget import TimeBudget, format_duration
from .data import prepare_data
from .devices import describe_devices
from .errors import SearchError
from .files import full_path, is_disk_full, name_problem, write_atomic
from .lazy import lazy
from .lock import StudyLock
from .model import ConfigError, LeNetConfig
from .paths import study_folder, tuner_root
from .progress import Progress
from .space import Space, StudySettings, check_space_for_dataset, load_space, resolve_config
from .state import repair_tuner_state, replay_trials

# The keras-tuner side (study/tuner.py subclasses keras-tuner's classes as it is imported): loaded when a
# study opens its tuner, so that `lenet-study search` refuses bad flags before TensorFlow starts.
keras = lazy("keras")
tensorflow = lazy("tensorflow")
kt_compat = lazy("study.kt_compat")
tuner_module = lazy("study.tuner")

log = logging.getLogger("study.search")

FINISHED_FILE = "finished.json"  # in the tuner folder: the search ended and its test figure was taken


@dataclass(frozen=True)
class StudyRequest:
    """One study as the user asked for it: the space and its settings (flags applied), where it runs
    and logs, and how many workers train its trials. Built once (cli.py) and handed on whole."""

    space: Space
    settings: StudySettings
    study: str | None = None  # default: the space file's name (see default_study_name)
    fresh: bool = False
    data_dir: str | None = None
    log_dir: str | Path = "logs"
    tracking_uri: str | None = None  # default: $MLFLOW_TRACKING_URI, else ./mlflow.db
    command: str | None = None  # recorded on the parent run (default: this process's command line)
    workers: str | int = 1  # N or "auto"; 1 without oracle_bind: this process trains
    threads: int | None = None  # TensorFlow threads per worker (default: cores / workers)
    oracle_bind: str | None = None  # HOST[:PORT] to serve the oracle to remote workers
    ray: str | None = None  # a Ray cluster's address (local, auto, ray://HOST:PORT, HOST:PORT): chief and workers as actors
    # The clock a time budget is kept on, and its reading when the user asked (default: when the study starts).
    clock: Callable[[], float] = time.monotonic
    started: float | None = None

    @property
    def name(self) -> str:
        """The study's name, checked."""
        return study_name(self.space, self.settings, self.study)

    @property
    def parallel(self) -> bool:
        return str(self.workers).strip() != "1" or bool(self.oracle_bind)

    def replace(self, **changes) -> "StudyRequest":
        return dataclasses.replace(self, **changes)


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


def default_study_name(space: Space, settings: StudySettings) -> str:
    """The space file's stem, with the dataset appended when a flag changed it."""
    name = space.name
    if settings.dataset != space.settings.dataset:
        name += f"-{settings.dataset}"
    return name


def study_name(space: Space, settings: StudySettings, study: str | None = None) -> str:
    """The study's name, which becomes one folder in logs/, logs/.keras-tuner/ and reports/ (files.NAME_RULE)."""
    problem = name_problem(study or default_study_name(space, settings))
    if problem:
        where = "--name" if study else f"the study name taken from {space.path.name} (give --name)"
        raise SearchError(f"{where} {problem}")
    return study or default_study_name(space, settings)


def remove_study_folder(log_dir: str | Path, study: str) -> None:
    """--fresh: remove the study's tuner folder, and nothing else: never a link, nor a folder that
    resolves anywhere but <log_dir>/.keras-tuner/<study>."""
    folder = study_folder(log_dir, study)
    if not folder.exists() and not folder.is_symlink():
        return
    root = tuner_root(log_dir).resolve()
    if name_problem(study) or folder.is_symlink() or folder.resolve() != root / study or not folder.is_dir():
        raise SearchError(f"--fresh: {folder} is not study {study!r}'s own folder in {root} (a link, or not a "
                          "folder): left as it is; remove it yourself to start over")
    shutil.rmtree(folder)


def _search_id(project_dir: Path, fresh: bool) -> str:
    """An id for this study's current search, kept beside the tuner state; new on --fresh."""
    marker = project_dir / "search_id"
    if not fresh and marker.exists():
        return marker.read_text().strip()
    project_dir.mkdir(parents=True, exist_ok=True)
    search_id = uuid.uuid4().hex[:12]
    write_atomic(marker, search_id + "\n")
    return search_id


# What defines a study: resuming it with another value would mix trials of two studies. max_trials may
# change (more trials of the same study); test_eval and final_epochs act after the search.
DEFINING_SETTINGS = ("dataset", "tuner", "epochs", "patience", "executions_per_trial", "seed", "val_fraction",
                     "hyperband_factor", "train_samples", "stop_at_chance", "kind", "seeds")


def record_finished(project_dir: Path, search_id: str, settings: StudySettings, result: SearchResult) -> None:
    """After finish_study: the search ended and the test set was read for it (see finished_result)."""
    record = {"search_id": search_id, "max_trials": settings.max_trials,
              **{key: getattr(result, key) for key in ("experiment_id", "parent_run_id", "best_trial_id",
                                                       "best_val_accuracy", "test_accuracy", "completed", "failed")}}
    write_atomic(project_dir / FINISHED_FILE, json.dumps(record, indent=1) + "\n")


def finished_result(request: StudyRequest) -> SearchResult | None:
    """The recorded result when this request would run a study that has finished again: same search, and
    max_trials not raised. Running it would only read the test set again and register the same model
    again, so the caller changes nothing. Reads only the tuner folder (no store, no data)."""
    project_dir = study_folder(request.log_dir, request.name)
    if request.fresh:
        return None
    try:
        record = json.loads((project_dir / FINISHED_FILE).read_text(encoding="utf-8"))
        search_id = (project_dir / "search_id").read_text(encoding="utf-8").strip()
    except (OSError, ValueError):  # none, or damaged: the study runs as a resume would
        return None
    if not isinstance(record, dict) or record.get("search_id") != search_id \
            or request.settings.max_trials > int(record.get("max_trials") or 0):
        return None
    fields = {key: record.get(key) for key in ("experiment_id", "parent_run_id", "best_trial_id",
                                               "best_val_accuracy", "test_accuracy", "max_trials")}
    return SearchResult(request.name, completed=int(record.get("completed") or 0),
                        failed=int(record.get("failed") or 0), finished_before=True,
                        ui_link=tracking.ui_link(tracking.tracking_uri(request.tracking_uri),
                                                 str(fields["experiment_id"])), **fields)


def check_resume(request: StudyRequest, data_digest: str | None = None) -> None:
    """Refuse to resume a study whose trials ran with another space file, other defining settings or
    other data than this request's (recorded on the current search's latest parent run). Reads only."""
    project_dir = study_folder(request.log_dir, request.name)
    marker = project_dir / "search_id"
    if request.fresh or not marker.exists() or not any(project_dir.glob("trial_*/trial.json")):
        return
    parent = tracking.latest_search_parent(tracking.client(request.tracking_uri), request.name,
                                           marker.read_text().strip())
    if parent is None:
        return
    params, tags = parent.data.params, parent.data.tags
    now = request.settings.to_params()
    changed = [f"{key} {params[key]} → {now[key]}" for key in DEFINING_SETTINGS
               if key in params and params[key] != now[key]]
    if tags.get(schema.SPACE_DIGEST) not in (None, request.space.digest):
        changed.append(f"space file {request.space.path} (sha256 {tags[schema.SPACE_DIGEST][:12]} → "
                       f"{request.space.digest[:12]})")
    recorded_data = tags.get(f"{schema.DATA_PREFIX}digest")
    if data_digest and recorded_data not in (None, data_digest):
        changed.append(f"data (digest {recorded_data[:12]} → {data_digest[:12]})")
    if changed:
        raise SearchError(f"study {request.name!r} has trials run with other settings: {', '.join(changed)}; "
                          "resume it as it was, start it over with --fresh, or run this as another --name")


@contextlib.contextmanager
def claim_study(request: StudyRequest):
    """Before anything is changed: the study's lock (one chief at a time), then the resume check."""
    with StudyLock(request.log_dir, request.name):
        check_resume(request)
        yield


@contextlib.contextmanager
def no_space_as_error(log_dir: str | Path):
    """A full disk, wherever the study was writing (tuner state, checkpoints, TensorBoard, MLflow), as one
    line; the parent run has ended FAILED by then, and finished trials are kept."""
    try:
        yield
    except Exception as exc:
        if not is_disk_full(exc):
            raise
        where = full_path(exc) or str(Path(log_dir).resolve())
        raise SearchError(f"no space left on the device holding {where}: free some space and run the same "
                          "command again to resume") from exc


MIN_FREE_BYTES = 64 * 2**20  # a trial writes checkpoints and event files; TensorFlow's writers crash on a full disk


def guard_trials(tuner, tracker, log_dir: str | Path, echo=print) -> None:
    """Two guards around each trial of this tuner instance (keras-tuner's classes stay as they are): a trial
    whose run finished but whose process ended before the oracle heard is reported from its run, not
    trained (and logged) again; and no trial starts on a device with almost no space left."""
    run_trial = tuner.run_trial

    def guarded_run_trial(trial, *args, **kwargs):
        # A store that stays away stops the search; the trial waits.
        with tuner_module.store_loss_stops_the_search():
            done = tracker.completed_run_of_trial(trial.trial_id)
        if done is not None and schema.BEST_VAL_ACCURACY in done.data.metrics:
            echo(f"trial {trial.trial_id} already finished (run {done.info.run_id}): reporting it, not re-running")
            if getattr(tuner, "progress", None) is not None:  # no progress line of its own: counted as done
                tuner.progress.done += 1
            return {schema.OBJECTIVE: done.data.metrics[schema.BEST_VAL_ACCURACY]}
        free = shutil.disk_usage(log_dir).free
        if free < MIN_FREE_BYTES:
            raise tuner_module.DiskFull(f"trial {trial.trial_id} not started") from OSError(
                errno.ENOSPC, f"No space left on device ({free // 2**20} MB free)", str(Path(log_dir).resolve()))
        return run_trial(trial, *args, **kwargs)

    tuner.run_trial = guarded_run_trial


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


def open_study(request: StudyRequest, *, echo=print, extra_params: dict | None = None,
               budget: TimeBudget | None = None) -> OpenedStudy:
    """Everything before the first trial: folders, search id, data, and the parent run with data and space.

    Shared by the single-process search and the parallel launcher, which hold the study's lock
    (claim_study). On --fresh the tuner folder is cleared here, before the new search id is written
    into it, so build the tuner with overwrite=False. A resume on other data, and a time budget too
    small for one trial and the final run (`calibrate_budget`), are refused before anything is
    changed or the parent run starts.
    """
    space, settings, study = request.space, request.settings, request.name
    log_dir = Path(request.log_dir)
    project_dir = study_folder(log_dir, study)
    resumed = (project_dir / "oracle.json").exists() and not request.fresh

    ds, (x_tr, y_tr), (x_val, y_val) = prepare_data(settings, request.data_dir)
    prov = ds.provenance
    check_resume(request, data_digest=prov.digest)
    if budget is not None:
        calibrate_budget(budget, request, ds.input_shape, (x_tr, y_tr), (x_val, y_val), echo)
    if request.fresh:
        remove_study_folder(log_dir, study)
    search_id = _search_id(project_dir, request.fresh)
    devices = describe_devices()
    method = settings.tuner if settings.kind == "search" else settings.kind  # a grid of arms x seeds, values x points
    echo(
        f"study {study!r}: {method} on {prov.resolved} ({len(y_tr):,} train / {len(y_val):,} val / "
        f"{len(ds.y_test):,} test, source {prov.source}), devices: {devices}"
    )

    tracker = tracking.StudyTracker(study, request.tracking_uri, search_id=search_id)
    stale = tracking.mark_stale_runs(tracker.client, tracker.experiment_id)
    if stale:
        echo(f"marked {stale} run(s) left RUNNING by an interrupted process as KILLED")
    # Damaged tuner state is repaired from the store, or refused in one line, before the parent run starts.
    repair_tuner_state(project_dir, tracker, space, settings.tuner, echo)
    run_name = (f"{study}: {method} on {prov.resolved}, {time.strftime('%Y-%m-%d %H:%M:%S')}"
                + (" (resumed)" if resumed else ""))
    params = {
        **settings.to_params(),
        schema.DATA_RESOLVED_PARAM: prov.resolved,
        schema.OBJECTIVE_PARAM: schema.OBJECTIVE,
        schema.SPACE_FILE_PARAM: str(space.path),
        **(extra_params or {}),
    }
    tags = {
        schema.SPACE_FILE: str(space.path),
        schema.SPACE_DIGEST: space.digest,
        schema.GIT_COMMIT: tracking.git_commit(),
        schema.COMMAND: request.command or shlex.join(sys.argv),
        schema.NOTE: space.settings.description or f"LeNet-5 study {study}",
        schema.DEVICES: devices,
    }
    tracker.start_parent(run_name, params, tags)
    try:
        tracker.log_dataset(ds, prov)
        tracker.log_parent_artifact(space.path, schema.SPACE_DIR)
    except BaseException:
        tracker.end_parent(schema.RUN_FAILED)
        raise
    return OpenedStudy(study, log_dir, project_dir, search_id, resumed, ds, (x_tr, y_tr), (x_val, y_val), tracker)


def make_study_tuner(request: StudyRequest, opened: OpenedStudy, progress=None, echo=print,
                     budget: TimeBudget | None = None):
    """The study's tracked tuner over its tuner folder (never overwritten: open_study cleared it on --fresh),
    its trials guarded (guard_trials), and with a time budget only started while they fit in it."""
    settings = request.settings
    hypermodel = tuner_module.LeNetHyperModel(settings, opened.ds.input_shape, len(opened.train[1]))
    tuner = tuner_module.make_tuner(
        settings.tuner, hypermodel=hypermodel,
        hyperparameters=request.space.hyperparameters(), settings=settings, tracker=opened.tracker,
        progress=progress, directory=str(tuner_root(opened.log_dir)), project_name=opened.study,
        overwrite=False, start=request.space.start_values(),
    )
    replay_trials(tuner, opened.project_dir)  # an oracle.json that open_study found damaged: from the trial files
    guard_trials(tuner, opened.tracker, opened.log_dir, echo)
    if budget is not None:
        settings = request.settings
        planned = tuner_module.planned_trial_epochs(
            tuner, settings, tuner_module.expected_trials(tuner, settings, request.space.size()))
        tuner_module.keep_to_budget(tuner, budget, lambda n: planned[n] if n < len(planned) else settings.epochs)
    return tuner


def planned_final_epochs(request: StudyRequest) -> int:
    """The epochs trained after the search: the final run's, or an isolation study's retrains."""
    isolation = request.space.isolation
    if isolation is not None:  # phase 2's retrains, after the grid
        return len(isolation.values) * len(isolation.retrain_seeds) * request.settings.epochs
    return request.settings.final_epochs


def study_budget(request: StudyRequest) -> TimeBudget | None:
    """The request's time budget, its clock started when the user asked (request.started), or None."""
    seconds = request.settings.time_budget
    if seconds is None:
        return None
    where = ("--time-budget" if seconds != request.space.settings.time_budget
             else f"{request.space.path}: study.time_budget")
    return TimeBudget(seconds, planned_final_epochs(request), clock=request.clock, started=request.started,
                      where=where)


def calibrate_budget(budget: TimeBudget, request: StudyRequest, input_shape, train, val, echo=print) -> None:
    """Before the first trial: the probe (tuner.probe_trial_cost) of the study's first configuration, then
    a budget that cannot hold one trial and the final run refused in one line (BudgetError)."""
    settings = request.settings
    try:
        config = resolve_config(dict((request.space.start_values() or [{}])[0]), settings)
    except ConfigError:
        config = resolve_config({}, settings)
    setup, per_epoch = tuner_module.probe_trial_cost(config, train, val, input_shape, clock=budget.clock)
    budget.calibrate(setup, per_epoch)
    first = 1 if settings.tuner == "hyperband" else settings.epochs  # Hyperband's first rounds can be 1 epoch
    budget.check_first(first)
    echo(f"time budget {format_duration(budget.seconds)}: ~{per_epoch:.1f} s per epoch and {setup:.1f} s of set-up "
         f"per trial measured here; room for about {budget.estimate_trials(settings.epochs)} trial(s) of "
         f"{settings.epochs} epochs before the final run ({budget.final_epochs} epochs)")


def record_search_stop(budget: TimeBudget | None, tracker, echo=print) -> None:
    """After the search: why it stopped, when a time budget stopped it (a line, and tags on the parent run).
    A store that fails here loses no trial: they are logged already."""
    if budget is None:
        return
    tags = {schema.SEARCH_STOP: schema.STOP_TIME_BUDGET if budget.stopped else schema.STOP_PLAN}
    if budget.stopped:
        echo(budget.stopped)
        tags[schema.SEARCH_STOP_NOTE] = budget.stopped
    try:
        tracker.set_parent_tags(tags)
    except Exception as exc:  # noqa: BLE001 - the tag is a note; the study goes on to its final run
        echo(f"why the search stopped was not recorded on the parent run ({type(exc).__name__})")


def search_callbacks(log_dir: str | Path, study: str) -> list:
    """The callbacks every trial gets, in one process or in a worker."""
    return [
        tuner_module.TensorBoard(log_dir=str(Path(log_dir) / study), write_graph=True, histogram_freq=0),
        keras.callbacks.TerminateOnNaN(),
    ]


def announce_resume(tuner, progress, request: StudyRequest, echo) -> None:
    """Set the progress line's totals and say what a resumed study keeps."""
    done_before = tuner_module.trial_counts(tuner.oracle).finished
    progress.total = tuner_module.expected_trials(tuner, request.settings, request.space.size())
    progress.trial_epochs = tuner_module.planned_trial_epochs(tuner, request.settings, progress.total)
    progress.final_epochs = planned_final_epochs(request)
    progress.done = done_before
    if done_before:
        echo(f"resuming: {done_before} trial(s) already finished are kept, not re-run")


def run_search(request: StudyRequest, echo=print) -> SearchResult:
    """`lenet-study search SPACE` with one worker: every trial in this process."""
    with no_space_as_error(request.log_dir), claim_study(request):
        finished = finished_result(request)
        if finished is not None:
            return finished
        budget = study_budget(request)
        opened = open_study(request, echo=echo, budget=budget)
        (x_tr, y_tr), (x_val, y_val) = opened.train, opened.val
        with opened.tracker.parent_status(), interrupt_note(echo):
            progress = Progress(None, echo=echo, budget=budget)
            tuner = make_study_tuner(request, opened, progress, echo, budget=budget)
            announce_resume(tuner, progress, request, echo)
            # keras-tuner's two collections per model build then skip the libraries and the data
            with tuner_module.gc_frozen():
                tuner.search(x_tr, y_tr, validation_data=(x_val, y_val),
                             callbacks=search_callbacks(opened.log_dir, opened.study), verbose=0)
                record_search_stop(budget, opened.tracker, echo)
                result = finish_study(tuner, opened, request.settings, echo)
        if budget is not None:
            echo(budget.end_line())
        return result


@contextlib.contextmanager
def interrupt_note(echo):
    """On Ctrl-C: say that finished trials are kept and how to resume (the interrupt goes on)."""
    try:
        yield
    except KeyboardInterrupt:
        echo("interrupted: finished trials are kept; run the same command again to resume")
        raise


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


def load_space_with_overrides(path: str, **overrides) -> tuple[Space, StudySettings]:
    space = load_space(path)
    compiled = {"an isolation study, whose nuisance points and trials": space.isolation,
                "a factorial study, whose replicates' seeds and run order": space.factorial}
    for what, kind in compiled.items():
        if kind is not None and overrides.get("seed") not in (None, space.settings.seed):
            # Drawn, shuffled and seeded with the file's seed when it was compiled.
            raise SearchError(f"--seed: {path} is {what} take the file's study.seed ({space.settings.seed}); "
                              "change it there")
    settings = space.settings.override(**overrides)
    check_space_for_dataset(space, settings, f"{path} with --dataset {settings.dataset}")
    return space, settings
