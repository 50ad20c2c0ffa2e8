"""The chief: serve the study's oracle to workers, launch the local ones, show progress, finish the study.

`launch(request)` is `lenet-study search SPACE --workers N [--oracle-bind HOST[:PORT]]`:

- It opens the study as the single-process search does (search.open_study: name,
  search id, data, one parent run) and builds the same tuner, whose oracle this
  process serves over keras-tuner's own gRPC servicer (`ChiefServer`), on
  127.0.0.1 unless `--oracle-bind` says otherwise.
- With the default SQLite store it puts a temporary `mlflow server` in front of
  it (server.LocalTrackingServer).
- It starts N local worker processes (supervise.WorkerPool) and restarts the ones
  that die (supervise.Supervisor): a dead worker's RUNNING run is marked KILLED
  and its trial goes back to the oracle as INVALID (keras-tuner retries it once).
- It prints one progress line per finished trial, whichever worker ran it.
- After the last trial the test set is evaluated once and the best model is
  logged, exactly as in the single-process search (finish.finish_study).
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import queue
import socket
import time
import uuid
from concurrent import futures
from pathlib import Path

from .. import schema, tracking
from ..devices import gpu_assignment, visible_gpu_ids
from ..errors import SearchError
from ..finish import finish_study
from ..lazy import lazy, load
from ..paths import study_folder
from ..progress import Progress
from ..search import (StudyRequest, announce_resume, claim_study, finished_result, interrupt_note, make_study_tuner,
                      no_space_as_error, open_study, record_search_stop, remove_study_folder, study_budget)
from .net import LOOPBACK, connect_host, free_port, hostport, is_loopback, parse_address
from .server import LocalTrackingServer
from .supervise import (POLL_S, TERMINATING, Supervisor, WorkerPool, cpu_cores, parse_workers,
                        sigterm_as_interrupt, worker_command)

# keras-tuner's side, loaded once the flags are checked (importing keras-tuner starts TensorFlow).
grpc = lazy("grpc")
kt_compat = lazy("study.kt_compat")
tuner_module = lazy("study.tuner")

WORKER_DEATH_RETRIES = 1  # keras-tuner's max_retries_per_trial for the trial of a worker that died
REMOTE_GRACE_S = 30.0  # how long the chief waits for remote workers to hear "stop" once every trial is done
LAUNCH_ENV = "LENET_LAUNCH_ID"  # a local worker finds its parent run by this id (tag schema.LAUNCH_ID)


class ChiefServer:
    """keras-tuner's OracleServicer for an oracle living in this process, with hooks for progress and faults.

    Differences from keras-tuner's own `oracle_chief.start_server`: it binds to a given
    address (port 0 = any free port), it is stopped by its owner instead of polling
    every 20 s, a trial ended twice (a worker reporting after the chief restarted) is
    ignored, `max_consecutive_failed_trials` stops the study by answering STOPPED
    instead of failing the worker's gRPC call, and a worker that falls silent for longer than
    a lease (kt_compat.Leases: every call counts, a worker holding a trial sends heartbeats)
    has its trial given back and is no longer waited for.
    """

    def __init__(self, oracle, host: str = LOOPBACK, port: int = 0, lease_s: float | None = None):
        self.oracle = oracle
        self.host = host
        self.port = port
        # Who was heard from when: a worker silent for longer than a lease loses its trial (reclaim_lapsed).
        self.leases = kt_compat.Leases(lease_s if lease_s is not None else kt_compat.LEASE_S)
        self.events: queue.Queue = queue.Queue()  # (trial_id, note) after each end_trial
        self.aborted: str | None = None
        self.stop_triggered = False
        self._server = None

    @property
    def address(self) -> str:
        return hostport(self.host, self.port)

    def start(self) -> "ChiefServer":
        chief = self

        class Servicer(kt_compat.oracle_servicer_class()):
            def CreateTrial(self, request, context):
                chief.leases.heard_from(request.tuner_id)
                if chief.aborted:
                    trial = kt_compat.Trial(chief.oracle.get_space(), status=kt_compat.TrialStatus.STOPPED)
                    chief.oracle.tuner_ids.discard(request.tuner_id)
                else:
                    trial = chief.oracle.create_trial(request.tuner_id)
                if trial.status == kt_compat.TrialStatus.STOPPED:
                    chief.stop_triggered = True
                return kt_compat.create_trial_response(trial)

            def EndTrial(self, request, context):
                trial = kt_compat.trial_from_request(request)
                chief.leases.heard_of_trial(chief.oracle, trial.trial_id)
                chief.end_trial(trial)
                return kt_compat.end_trial_response()

            def UpdateTrial(self, request, context):
                chief.leases.heard_of_trial(chief.oracle, request.trial_id)
                return super().UpdateTrial(request, context)

            def GetTrial(self, request, context):  # also a worker's heartbeat (kt_compat.keep_lease)
                chief.leases.heard_of_trial(chief.oracle, request.trial_id)
                return super().GetTrial(request, context)

        server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
        kt_compat.add_oracle_servicer(Servicer(self.oracle), server)
        try:
            port = server.add_insecure_port(hostport(self.host, self.port))
        except RuntimeError:
            port = 0
        if not port:
            raise SearchError(f"cannot listen on {hostport(self.host, self.port)} for the oracle "
                              "(address not on this machine, or port in use)")
        self.port = port
        server.start()
        self._server = server
        return self

    def end_trial(self, trial, note: str = "") -> bool:
        """oracle.end_trial, unless the trial already ended; queues a progress event."""
        ended = kt_compat.synchronized(_end_trial_once)(self.oracle, trial, self)
        if ended:
            self.events.put((trial.trial_id, note))
        return ended

    def drain(self) -> list[tuple[str, str]]:
        out = []
        while True:
            try:
                out.append(self.events.get_nowait())
            except queue.Empty:
                return out

    def reclaim_lapsed(self) -> list[str]:
        """Give back the trials of workers silent for longer than a lease; returns those trials' ids."""
        return [trial.trial_id for trial in kt_compat.reclaim_lapsed(self.oracle, self.leases)
                if self.end_trial(trial, note=trial.message)]

    def all_trials_done(self) -> bool:
        # A trial given back after the last one was handed out waits in the retry queue: not done.
        return ((self.stop_triggered or bool(self.aborted)) and not self.oracle.ongoing_trials
                and (bool(self.aborted) or not kt_compat.retry_queue(self.oracle)))

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=1).wait(5)
            self._server = None


def _end_trial_once(oracle, trial, chief: ChiefServer) -> bool:
    """Runs under the oracle's lock (kt_compat.synchronized)."""
    current = oracle.trials.get(trial.trial_id)
    if current is None or current.status in kt_compat.ENDED:
        return False
    waiting = kt_compat.retry_queue(oracle)
    if trial.trial_id in waiting:
        # The oracle was reloaded while this trial ran: it waits for a retry. A result settles it.
        if trial.status == kt_compat.TrialStatus.INVALID:
            return False
        waiting.remove(trial.trial_id)
    try:
        if trial.status == kt_compat.TrialStatus.INVALID:
            # keras-tuner prints "Trial N failed k times" on a retry; the progress view says it instead.
            with contextlib.redirect_stdout(io.StringIO()):
                oracle.end_trial(trial)
        else:
            oracle.end_trial(trial)
        # keras-tuner saves oracle.json before it drops the trial from ongoing_trials (a worker's tuner
        # never saves the oracle): save again, or a resumed study would run this trial once more.
        oracle.save()
    except RuntimeError as exc:  # max_consecutive_failed_trials reached (raised after the trial was recorded)
        chief.aborted = str(exc).splitlines()[0]
        for tuner_id, ongoing in list(oracle.ongoing_trials.items()):
            if ongoing.trial_id == trial.trial_id:
                oracle.ongoing_trials.pop(tuner_id)
        kt_compat.save_trial(oracle, current)
        oracle.save()
    return True


class ProgressView:
    """One line per finished trial, whichever worker ran it: progress.Progress fed from the oracle and MLflow."""

    def __init__(self, progress, oracle, tracker, settings, echo=print):
        self.progress = progress
        self.oracle = oracle
        self.tracker = tracker
        self.settings = settings
        self.echo = echo

    def handle(self, trial_id: str, note: str = "") -> None:
        trial = self.oracle.trials.get(trial_id)
        if trial is None:
            return
        if trial.status not in kt_compat.ENDED:
            self.echo(f"trial {trial_id}: {note or 'invalid result'}; keras-tuner will run it again")
            return
        run = self.tracker.run_of_trial(trial_id)
        metrics = run.data.metrics if run is not None else {}
        tags = run.data.tags if run is not None else {}
        worker = tags.get(schema.WORKER)
        label = tuner_module.hp_label(trial.hyperparameters, self.settings) + (f" [{worker}]" if worker else "")
        val_acc = metrics.get(schema.BEST_VAL_ACCURACY, trial.score if trial.score is not None else math.nan)
        if trial.status == kt_compat.TrialStatus.FAILED:
            note = note or tags.get(schema.FAILURE_REASON, "") or (trial.message or "").strip()[-80:]
        self.progress.trial_done(trial_id, label, trial.status, float(val_acc), int(metrics.get("epochs_run", 0)),
                                 float(metrics.get("wall_time_s", 0.0)), note[:80], metrics.get(schema.EPOCH_SECONDS))

    def drain(self, chief: ChiefServer) -> None:
        for trial_id, note in chief.drain():
            self.handle(trial_id, note)


# --------------------------------------------------------------------------- the launch


def start_local_workers(*, n: int, threads: int, oracle: str, study: str, request: StudyRequest, log_dir: Path,
                        project_dir: Path, env: dict[str, str]) -> WorkerPool:
    """N `lenet-study worker` processes on this machine, one GPU each when there are GPUs."""
    make_cmd = worker_command(oracle=oracle, study=study, space_path=request.space.path, log_dir=log_dir,
                              data_dir=request.data_dir)
    pool = WorkerPool(make_cmd, {**os.environ, **env})
    gpus = gpu_assignment(n, visible_gpu_ids())  # one GPU per worker, when there are GPUs
    for i in range(n):
        pool.add(f"worker{i}", threads, project_dir / f"worker{i}.log", gpu=gpus[i])
    if any(gpus):  # this process builds models too: it takes GPU memory as needed, not every card's
        os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
    return pool


def launch(request: StudyRequest, echo=print, start_workers=start_local_workers):
    """Run one study with N local worker processes (and any remote ones); returns a finish.SearchResult.

    Start-up order is chosen for a 2-core machine: the tracking server and the workers start
    first (each needs ~10 s to import MLflow/TensorFlow), while this process opens the study.
    A worker finds the parent run by the launch id it was given, and waits for the oracle's port.
    The flags are checked first; from then on the chief holds the study's lock (search.claim_study).
    `start_workers` starts the workers (local processes; cluster.py passes Ray actors) and returns their
    pool, which the one restart policy (supervise.Supervisor) then watches.
    """
    n = parse_workers(request.workers)
    study = request.name
    bind_host, bind_port = parse_address(request.oracle_bind, what="--oracle-bind")
    remote_ok = not is_loopback(bind_host)
    if n == 0 and not request.oracle_bind:
        raise SearchError("--workers 0 runs the chief only: give --oracle-bind HOST:PORT for remote workers to join")
    threads = request.threads or max(1, cpu_cores() // max(n, 1))
    user_uri = tracking.tracking_uri(request.tracking_uri)
    if user_uri.startswith("sqlite:") and remote_ok:
        raise SearchError(
            f"remote workers cannot write to the local store {user_uri}: run `mlflow server` with a "
            "PostgreSQL backend store and set MLFLOW_TRACKING_URI=http://HOST:PORT on every machine")
    with no_space_as_error(request.log_dir), claim_study(request):
        finished = finished_result(request)
        if finished is not None:  # before any worker, server or run starts
            return finished
        return _start(request, study=study, n=n, threads=threads, bind=(bind_host, bind_port), remote_ok=remote_ok,
                      user_uri=user_uri, echo=echo, start_workers=start_workers)


def _start(request: StudyRequest, *, study: str, n: int, threads: int, bind: tuple[str, int], remote_ok: bool,
           user_uri: str, echo, start_workers):
    """`launch` once its flags are checked and the study is this process's."""
    bind_host, bind_port = bind
    local_store = user_uri.startswith("sqlite:")
    log_dir = Path(request.log_dir).resolve()
    project_dir = study_folder(log_dir, study)
    if request.fresh:
        remove_study_folder(log_dir, study)  # open_study then writes a new search id into the empty folder
    project_dir.mkdir(parents=True, exist_ok=True)

    env_before = {k: os.environ.get(k) for k in ("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "TF_FORCE_GPU_ALLOW_GROWTH")}
    server = pool = None
    launch_id = uuid.uuid4().hex
    try:
        with sigterm_as_interrupt():
            if local_store:
                db = Path(user_uri[len("sqlite:///"):])
                server = LocalTrackingServer(db, db.resolve().parent / "mlruns", project_dir / "mlflow-server.log")
                server.start()
                run_uri = server.uri
                # Run links printed by MLflow would point at a server that is gone after the search.
                os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
            else:
                run_uri = user_uri
            # The workers start now and wait for the parent run and the oracle's port.
            if not bind_port:
                bind_port = free_port(bind_host if bind_host not in ("", "0.0.0.0", "::") else LOOPBACK)
            pool = start_workers(n=n, threads=threads, oracle=hostport(connect_host(bind_host), bind_port),
                                 study=study, request=request, log_dir=log_dir, project_dir=project_dir,
                                 env={"MLFLOW_TRACKING_URI": run_uri, LAUNCH_ENV: launch_id})

            load("keras_tuner")  # now: TensorFlow's import overlaps the others' start

            if server is not None:
                server.wait_ready()
                echo(f"tracking server {server.uri} (SQLite {server.db_path}; stopped at the end; "
                     f"log {server.log_path})")
                server.keep_alive(echo)  # one that stops is started again on the same port
                # Created through the server with the ./mlruns artifact location a local store gets.
                tracking.get_or_create_experiment(tracking.client(run_uri), study, store_uri=user_uri)
            chief_request = request.replace(study=study, fresh=False, log_dir=log_dir, tracking_uri=run_uri)
            return _run_chief(chief_request, pool=pool, n=n, threads=threads, bind=(bind_host, bind_port),
                              remote_ok=remote_ok, user_uri=user_uri, launch_id=launch_id, echo=echo, server=server)
    finally:
        if pool is not None:
            pool.terminate()
        if server is not None:
            server.stop()
        for key, value in env_before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _run_chief(request: StudyRequest, *, pool: WorkerPool, n: int, threads: int, bind: tuple[str, int],
               remote_ok: bool, user_uri: str, launch_id: str, echo, server: LocalTrackingServer | None = None):
    budget = study_budget(request)  # None without a time budget
    opened = open_study(request, echo=echo, budget=budget,
                        extra_params={schema.WORKERS_PARAM: n, schema.THREADS_PARAM: threads})
    tracker = opened.tracker
    chief = None
    with tracker.parent_status(), interrupt_note(echo):
        try:
            progress = Progress(None, echo=echo, budget=budget)
            tuner = make_study_tuner(request, opened, budget=budget)  # progress: from the view below, not the tuner
            oracle = tuner.oracle
            oracle.verbose = 0  # the progress view prints instead of keras-tuner's Display
            # A trial whose worker died comes back INVALID: keras-tuner runs it once more, then counts it FAILED.
            oracle.max_retries_per_trial = max(oracle.max_retries_per_trial, WORKER_DEATH_RETRIES)
            # A trial ended just before an interruption can be both finished and queued for a retry on reload.
            kt_compat.set_retry_queue(oracle, [t for t in kt_compat.retry_queue(oracle)
                                               if oracle.trials[t].status not in kt_compat.ENDED])
            tuner.save()  # tuner0.json + oracle.json: a single-process search can resume this study, and back
            announce_resume(tuner, progress, request, echo)
            view = ProgressView(progress, oracle, tracker, request.settings, echo)

            chief = ChiefServer(oracle, *bind).start()
            # Workers wait for these: the parent run then holds every parameter and tag they read.
            tracker.set_parent_tags({schema.LAUNCH_ID: launch_id, schema.ORACLE: chief.address})
            _announce(request, chief, pool, n, threads, bind[0], remote_ok, user_uri, opened.project_dir, echo)

            outcome = supervise_study(chief, pool, oracle, tracker, view, n=n, remote_ok=remote_ok, echo=echo,
                                      server=server)
            if not (server is not None and server.gave_up):
                view.drain(chief)
            chief.stop()
            pool.terminate()
            oracle.save()
            if outcome != "done":
                raise SearchError(outcome)
            record_search_stop(budget, tracker, echo)
            result = finish_study(tuner, opened, request.settings, echo, ui_uri=user_uri)
            if budget is not None:
                echo(budget.end_line())
            return result
        finally:
            pool.terminate()  # SIGTERM: a worker marks its own run KILLED (the oracle still hears a last result)
            if chief is not None:
                chief.stop()
                with contextlib.suppress(Exception):
                    chief.oracle.save()
            with contextlib.suppress(Exception):
                killed = tracker.kill_running_children()
                if killed:
                    echo(f"marked {len(killed)} trial run(s) left RUNNING as KILLED")


def _announce(request, chief, pool, n, threads, bind_host, remote_ok, user_uri, project_dir, echo) -> None:
    echo(f"oracle (keras-tuner chief) listening on {chief.address}" + ("" if remote_ok else " (this machine only)"))
    if remote_ok or not n:
        host = socket.gethostname() if bind_host in ("", "0.0.0.0", "::") else bind_host
        echo(f"workers join with: MLFLOW_TRACKING_URI={user_uri} lenet-study worker --oracle "
             f"{hostport(host, chief.port)} --study {request.name} --space {request.space.path} [--workers N]")
    if remote_ok:
        echo("the oracle has no authentication and no encryption: keep its port on a private network")
    if n:
        echo(f"{n} worker(s), {threads} TensorFlow thread(s) each: {', '.join(w.describe() for w in pool.workers)}; "
             f"{pool.output_hint(project_dir)}")


def supervise_study(chief: ChiefServer, pool: WorkerPool, oracle, tracker, view: ProgressView, *, n: int,
                    remote_ok: bool, echo, poll_s: float = POLL_S, server=None) -> str:
    """Print progress, restart dead workers, and tell when the study is over: 'done' or why it stopped
    (also: the temporary tracking server `server` stopped too often to be started again)."""

    def on_death(w) -> str:
        killed = tracker.kill_running_children(w.tuner_id)
        ongoing = oracle.ongoing_trials.get(w.tuner_id)
        if ongoing is not None:
            died = f"{w.tuner_id} died ({w.exit_text()})"
            invalid = kt_compat.Trial(ongoing.hyperparameters, trial_id=ongoing.trial_id,
                                      status=kt_compat.TrialStatus.INVALID, message=died)
            chief.end_trial(invalid, note=died)
        return f"; its run for trial {', '.join(killed)} marked KILLED" if killed else ""

    supervisor = Supervisor(pool, on_death)
    idle_since = None
    while True:
        if TERMINATING.is_set():
            raise KeyboardInterrupt
        if server is not None and server.gave_up:  # before anything asks the store
            pool.terminate()
            return server.gave_up
        view.drain(chief)
        for event in supervisor.check():
            if event.kind == "error":
                return event.message
            if event.kind != "done":
                echo(event.message)
        chief.reclaim_lapsed()  # the progress view says which trial goes back, and why
        view.drain(chief)

        if chief.aborted:
            pool.terminate()
            return f"stopped: {chief.aborted}"
        running = pool.running()
        all_done = chief.all_trials_done()
        if n and not running and not remote_ok:
            if all_done:
                return "done"
            return ("every worker stopped before the study was done (see the worker logs); "
                    "run the same command again to resume")
        if all_done:
            # Remote workers hear "stop" when they ask for their next trial; give them a moment to ask. A
            # worker still starting then (a Ray actor waiting for a node) holds no trial: it is not waited for.
            idle_since = idle_since or time.monotonic()
            if (not running and not oracle.tuner_ids) or time.monotonic() - idle_since > REMOTE_GRACE_S:
                return "done"
        else:
            idle_since = None
        time.sleep(poll_s)
