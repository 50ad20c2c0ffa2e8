"""One study in one process: space → keras-tuner → builder → fit → MLflow, then the test set once.

`StudyRequest` is what a user asked for (built once, by the CLI or a benchmark);
`open_study` does everything before the first trial (folders, search id, data,
the parent run), `run_search` runs the trials in this process and
`finish_study` (study/finish.py) evaluates the chosen model(s) on the test set and
logs the best model. The parallel launcher (`study.parallel`) shares `open_study` and
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
import shlex
import shutil
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import schema, tracking
from .budget import TimeBudget, format_duration
from .data import prepare_data
from .devices import describe_devices
from .errors import SearchError
from .files import full_path, is_disk_full, name_problem, write_atomic
from .finish import FINISHED_FILE, OpenedStudy, SearchResult, finish_study
from .lazy import lazy
from .lock import StudyLock
from .model import ConfigError
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
