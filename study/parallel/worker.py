"""A worker: join a running study, ask its oracle for trials, train and log each as a child run.

`lenet-study worker --oracle HOST:PORT --study NAME [--workers N]` (run_worker).
A worker started by a local chief finds the study's parent run by the launch id
it was given; one on another machine finds the study's newest running parent
run through MLFLOW_TRACKING_URI. It checks that its space file and data are the
chief's, then trains trials until the oracle says stop. With `--workers N` it
supervises N such processes (supervise.Supervisor) and gives a dead one's trial
back to the chief.

The oracle's gRPC port has no authentication and no TLS: keep it on loopback or
a private network.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from .. import schema, tracking
from ..data import prepare_data
from ..devices import gpu_assignment, visible_gpu_ids
from ..errors import SearchError
from ..files import name_problem
from ..lazy import lazy
from ..paths import study_folder, tuner_root
from ..progress import Progress
from ..search import guard_trials, no_space_as_error, search_callbacks
from ..space import StudySettings, load_space
from ..store import wait_http
from .chief import LAUNCH_ENV
from .net import hostport, parse_address, wait_port
from .supervise import (POLL_S, TERMINATING, Supervisor, WorkerPool, cpu_cores, parse_workers, sigterm_as_interrupt,
                        watch_supervisor, worker_command)

# keras-tuner's side, loaded once the flags are checked (importing keras-tuner starts TensorFlow).
kt_compat = lazy("study.kt_compat")
tensorflow = lazy("tensorflow")
tuner_module = lazy("study.tuner")


@dataclass
class JoinedStudy:
    study: str
    uri: str
    parent: object  # mlflow Run
    space: object
    settings: object
    search_id: str
    experiment_id: str


def join_study(study: str, *, space_path: str | None, parent_run_id: str | None, wait_s: float = 600.0,
               echo=print) -> JoinedStudy:
    """Find the chief's parent run in MLflow and check this machine's space file against it."""
    uri = tracking.tracking_uri()
    if uri.startswith("sqlite:"):
        raise SearchError(f"a worker logs through the study's tracking server, not the local store {uri}: "
                          "set MLFLOW_TRACKING_URI=http://HOST:PORT (the chief's `mlflow server`)")
    wait_http(uri)
    client = tracking.client(uri)
    parent = _find_parent(client, study, parent_run_id, os.environ.get(LAUNCH_ENV), wait_s, echo)
    params, tags = parent.data.params, parent.data.tags
    path = space_path or params.get(schema.SPACE_FILE_PARAM)
    space = load_space(path)
    if space.digest != tags.get(schema.SPACE_DIGEST):
        raise SearchError(f"{path}: not the chief's space file (sha256 {space.digest[:12]}, the chief's "
                          f"{str(tags.get(schema.SPACE_DIGEST))[:12]}); use the same file with --space")
    settings = StudySettings.from_params(params, base=space.settings)
    return JoinedStudy(study, uri, parent, space, settings, tags.get(schema.SEARCH_ID, ""), parent.info.experiment_id)


def _find_parent(client, study: str, parent_run_id: str | None, launch_id: str | None, wait_s: float, echo):
    """The study's parent run: by id, by the launch id a local launcher gave its workers, or else the
    newest RUNNING parent run of the study whose oracle listens (waiting up to wait_s for the chief)."""
    if parent_run_id:
        run = client.get_run(parent_run_id)
        if run.data.tags.get(schema.ROLE) != schema.ROLE_STUDY or run.data.tags.get(schema.STUDY) != study:
            raise SearchError(f"run {parent_run_id} is not the parent run of study {study!r}")
        return run
    deadline = time.monotonic() + wait_s
    told = False
    experiment_id = None
    while True:
        if experiment_id is None:
            exp = client.get_experiment_by_name(study)
            experiment_id = exp.experiment_id if exp is not None else None
        if experiment_id is not None:
            runs = tracking.study_parents(client, [experiment_id], running=True, launch_id=launch_id,
                                          oracle_listening=not launch_id, max_results=1)
            if runs:
                return runs[0]
        if time.monotonic() >= deadline:
            raise SearchError(f"no running study {study!r} in {client.tracking_uri}: start the chief first "
                              f"(lenet-study search SPACE --oracle-bind HOST:PORT), with the same MLFLOW_TRACKING_URI")
        if not told and not launch_id:
            echo(f"waiting for study {study!r} to start (up to {wait_s:.0f} s)...")
        told = True
        time.sleep(0.5 if launch_id else 2.0)


def _set_threads(threads: int | None) -> None:
    if not threads:
        return
    for name in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS"):
        os.environ[name] = str(threads)
    tensorflow.config.threading.set_intra_op_parallelism_threads(threads)
    tensorflow.config.threading.set_inter_op_parallelism_threads(threads)


@dataclass(frozen=True)
class WorkerRequest:
    """`lenet-study worker` as the user asked for it (built by cli.py)."""

    oracle: str  # HOST:PORT
    study: str
    space: str | None = None
    parent_run_id: str | None = None
    tuner_id: str | None = None
    workers: str | int = 1
    threads: int | None = None
    data_dir: str | None = None
    log_dir: str = "logs"


def run_worker(request: WorkerRequest) -> int:
    """One worker process, or with `--workers N` a supervisor of N of them."""
    for flag, name in (("--study", request.study), ("--tuner-id", request.tuner_id)):
        problem = name_problem(name) if name is not None else None
        if problem:  # both name files and folders under --log-dir
            raise SearchError(f"{flag} {problem}")
    host, port = parse_address(request.oracle, need_port=True, what="--oracle")
    n = parse_workers(request.workers, allow_zero=False)
    with sigterm_as_interrupt(exit_after=5.0 if n == 1 else None), no_space_as_error(request.log_dir):
        if n == 1:
            return work(request, host, port)
        return supervise_workers(request, host, port, n)


def work(request: WorkerRequest, host: str, port: int, echo=print) -> int:
    """One worker process: ask the oracle for trials until it says stop, log each as a child run."""
    watch_supervisor()
    _set_threads(request.threads)
    tuner_id = request.tuner_id or socket.gethostname()
    joined = join_study(request.study, space_path=request.space, parent_run_id=request.parent_run_id, echo=echo)
    settings = joined.settings
    ds, (x_tr, y_tr), (x_val, y_val) = prepare_data(settings, request.data_dir)
    tags = joined.parent.data.tags
    theirs = tags.get(f"{schema.DATA_PREFIX}digest")
    if theirs and theirs != ds.provenance.digest:
        raise SearchError(f"this machine's {settings.dataset} data ({ds.provenance.resolved}, from "
                          f"{ds.provenance.source}) is not the chief's ({tags.get(schema.DATA_PREFIX + 'source')}); "
                          "give --data-dir the same files")
    tracker = tracking.StudyTracker(joined.study, joined.uri, parent_run_id=joined.parent.info.run_id,
                                    search_id=joined.search_id, worker=tuner_id)
    os.environ.update(KERASTUNER_TUNER_ID=tuner_id, KERASTUNER_ORACLE_IP=host, KERASTUNER_ORACLE_PORT=str(port))
    log_dir = Path(request.log_dir)
    echo(f"{tuner_id}: study {joined.study!r} (parent run {tracker.parent_run_id}), oracle {hostport(host, port)}, "
         f"{request.threads or 'default'} TensorFlow thread(s), MLflow {joined.uri}")
    tuner = tuner_module.make_tuner(
        settings.tuner, hypermodel=tuner_module.LeNetHyperModel(settings, ds.input_shape, len(y_tr)),
        hyperparameters=joined.space.hyperparameters(), settings=settings, tracker=tracker,
        progress=Progress(None, echo=echo), directory=str(tuner_root(log_dir)),
        project_name=joined.study,
        overwrite=False,  # never: the folder may be the chief's
    )
    _patch_worker_tuner(tuner)
    guard_trials(tuner, tracker, log_dir, echo)
    wait_port(host, port)
    with tuner_module.gc_frozen():  # keras-tuner's two collections per trial then skip the libraries and the data
        tuner.search(x_tr, y_tr, validation_data=(x_val, y_val), callbacks=search_callbacks(log_dir, joined.study),
                     verbose=0)
    echo(f"{tuner_id}: the oracle has no more trials; done")
    return 0


def _patch_worker_tuner(tuner) -> None:
    """keras-tuner's worker client made patient and alive (kt_compat): after an IDLE answer (Hyperband
    waiting for a bracket) it waits, with backoff, before asking again; while it holds a trial it sends
    the chief heartbeats, so a worker that is gone for good loses its trial to the others."""
    kt_compat.wait_when_idle(tuner.oracle)
    kt_compat.keep_lease(tuner.oracle)


def supervise_workers(request: WorkerRequest, host: str, port: int, n: int) -> int:
    """`lenet-study worker --workers N` on a worker machine: N processes, restarted when they die."""
    joined = join_study(request.study, space_path=request.space, parent_run_id=request.parent_run_id)
    tracker = tracking.StudyTracker(joined.study, joined.uri, parent_run_id=joined.parent.info.run_id,
                                    search_id=joined.search_id)
    threads = request.threads or max(1, cpu_cores() // n)
    base = request.tuner_id or socket.gethostname()
    log_dir = Path(request.log_dir).resolve()
    oracle = hostport(host, port)
    make_cmd = worker_command(oracle=oracle, study=joined.study, space_path=joined.space.path, log_dir=log_dir,
                              data_dir=request.data_dir, parent_run_id=tracker.parent_run_id)
    pool = WorkerPool(make_cmd, {**os.environ, "MLFLOW_TRACKING_URI": joined.uri})
    folder = study_folder(log_dir, joined.study)
    gpus = gpu_assignment(n, visible_gpu_ids())  # one GPU per worker, when there are GPUs
    for i in range(n):
        pool.add(f"{base}-{i}", threads, folder / f"{base}-{i}.log", gpu=gpus[i])
    on_gpus = ", ".join(f"{w.tuner_id} on GPU {w.gpu}" for w in pool.workers if w.gpu is not None)
    print(f"{n} worker(s) for study {joined.study!r}, {threads} TensorFlow thread(s) each"
          f"{f' ({on_gpus})' if on_gpus else ''}; their output: {folder}/{base}-<i>.log")

    def on_death(w) -> str:
        killed = tracker.kill_running_children(w.tuner_id)
        kt_compat.invalidate_remote_trials(oracle, killed)
        return f"; its run for trial {', '.join(killed)} marked KILLED" if killed else ""

    supervisor = Supervisor(pool, on_death)
    try:
        while pool.alive() or pool.running():
            if TERMINATING.is_set():
                raise KeyboardInterrupt
            for event in supervisor.check():
                print(event.message)
            time.sleep(POLL_S)
    except KeyboardInterrupt:
        print("interrupted: stopping the workers; their trials go back to the chief")
        raise
    finally:
        # Trials still running go back to the chief (a stopped worker marks its own run KILLED).
        pending = []
        with contextlib.suppress(Exception):
            pending = [r.data.tags.get(schema.TRIAL_ID) for w in pool.workers
                       for r in tracker.running_children(w.tuner_id)]
        pool.terminate()
        with contextlib.suppress(Exception):
            for w in pool.workers:
                tracker.kill_running_children(w.tuner_id)
            kt_compat.invalidate_remote_trials(oracle, [t for t in pending if t])
    return 0 if all(w.state == "done" for w in pool.workers) else 1
