"""Trials in parallel: keras-tuner's chief/worker mode, every trial tracked once under one parent run.

`lenet-study search SPACE --workers N` (run_distributed) is the chief's side:

- It opens the study as the single-process search does (study name, search id,
  data, one parent run) and builds the same tuner, whose oracle this process
  serves to the workers with keras-tuner's own gRPC servicer (keras-tuner's
  "chief"), on 127.0.0.1 unless `--oracle-bind HOST[:PORT]` says otherwise.
- A local SQLite store (the default) is put behind an `mlflow server` that this
  process starts on 127.0.0.1 and stops at the end, so several processes never
  write to the database file at once ("database is locked"). Artifacts still go
  straight to ./mlruns.
- It starts N worker processes (`lenet-study worker ...`, tuner ids worker0..),
  each with its own TensorFlow thread budget; their output goes to
  logs/.keras-tuner/<study>/worker<i>.log. Each logs its trials as child runs of
  the parent run, with the tag lenet.worker naming it.
- It prints one progress line per finished trial, in the single-process format.
- A worker that dies: its RUNNING child run is marked KILLED, its trial goes
  back to the oracle as INVALID (keras-tuner retries it once, then counts it
  FAILED), and the worker is restarted (at most MAX_RESTARTS times).
- After the last trial the test set is evaluated once and the best model is
  logged, exactly as in the single-process search.

`lenet-study worker --oracle HOST:PORT --study NAME` (run_worker) is a worker's
side: on another machine it joins a chief started with `--oracle-bind`, finds the
study's parent run through MLFLOW_TRACKING_URI, and checks that its space file
and data are the chief's.

The oracle's gRPC port has no authentication and no TLS: keep it on loopback or
a private network.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import ipaddress
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from . import schema
from .search import TUNER_DIRNAME, SearchError

LOOPBACK = "127.0.0.1"
MAX_RESTARTS = 3  # per worker process
WORKER_DEATH_RETRIES = 1  # keras-tuner's max_retries_per_trial for the trial of a worker that died
REMOTE_GRACE_S = 30.0  # how long the chief waits for remote workers to hear "stop" once every trial is done
POLL_S = 0.5
SUPERVISOR_ENV = "LENET_SUPERVISOR_PID"
LAUNCH_ENV = "LENET_LAUNCH_ID"  # a local worker finds its parent run by this id (tag LAUNCH_TAG)
LAUNCH_TAG = "lenet.launch_id"
# Set on the parent run once the study is fully open and the oracle listens: workers wait for it.
ORACLE_TAG = "lenet.oracle"
USER_ERROR_EXIT = 2  # what `lenet-study` returns for a one-line user error: not worth a restart


# --------------------------------------------------------------------------- small helpers


def cpu_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def parse_workers(value, *, allow_zero: bool = True) -> int:
    """`N` or `auto` (one worker per core)."""
    text = str(value).strip().lower()
    if text == "auto":
        return cpu_cores()
    try:
        n = int(text)
    except ValueError:
        raise SearchError(f"--workers {value!r}: give a number or 'auto'") from None
    if n < 0 or (n == 0 and not allow_zero):
        raise SearchError(f"--workers {value!r}: give {'0 or more' if allow_zero else '1 or more'}, or 'auto'")
    return n


def parse_address(text: str | None, *, default_host: str = LOOPBACK, default_port: int = 0,
                  need_port: bool = False, what: str = "address") -> tuple[str, int]:
    """`HOST`, `HOST:PORT`, `:PORT` or `[IPv6]:PORT` into (host, port)."""
    text = (text or "").strip()
    host, port = text, None
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else None
    elif text.count(":") == 1:
        host, port = text.split(":")
    host = host or default_host
    if port in (None, ""):
        if need_port:
            raise SearchError(f"{what} {text!r}: give HOST:PORT")
        return host, default_port
    try:
        number = int(port)
        if not 0 <= number <= 65535:
            raise ValueError
    except ValueError:
        raise SearchError(f"{what} {text!r}: the port must be a number from 0 to 65535") from None
    return host, number


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _connect_host(bind_host: str) -> str:
    """Where a process on this machine reaches a server bound to bind_host."""
    if bind_host in ("", "0.0.0.0"):
        return LOOPBACK
    if bind_host == "::":
        return "::1"
    return bind_host


def free_port(host: str = LOOPBACK) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _exit_text(rc: int | None) -> str:
    if rc is None:
        return "still running"
    if rc < 0:
        try:
            return f"killed by {signal.Signals(-rc).name}"
        except ValueError:
            return f"killed by signal {-rc}"
    return f"exit code {rc}"


def _tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text[-lines:])


_TERMINATING = threading.Event()


@contextlib.contextmanager
def _sigterm_as_interrupt(exit_after: float | None = None):
    """SIGTERM takes the Ctrl-C path, so runs are marked KILLED and children stopped.

    Python drops an exception raised while it runs a weakref callback ("Exception ignored"),
    so the flag _TERMINATING is set as well for loops to check; with exit_after, the process
    also ends that many seconds later whatever it is doing (a supervisor cleans up after it).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_sigterm(signum, frame):
        if exit_after is not None and not _TERMINATING.is_set():
            timer = threading.Timer(exit_after, os._exit, args=(128 + signal.SIGTERM,))
            timer.daemon = True
            timer.start()
        _TERMINATING.set()
        raise KeyboardInterrupt

    before = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)
        _TERMINATING.clear()


# --------------------------------------------------------------------------- a local MLflow server


class LocalTrackingServer:
    """`mlflow server` on loopback in front of a local SQLite file, for the length of one search.

    Runs under a small guard process (`python -m study.distributed _guard`) that stops
    the server if this process dies without cleaning up.
    """

    def __init__(self, db_path: Path, artifact_root: Path, log_path: Path, host: str = LOOPBACK):
        self.db_path = db_path.resolve()
        self.artifact_root = artifact_root.resolve()
        self.log_path = log_path
        self.host = host
        self.port = free_port(host)
        self.proc: subprocess.Popen | None = None

    @property
    def uri(self) -> str:
        return f"http://{_hostport(self.host, self.port)}"

    def start(self) -> "LocalTrackingServer":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable, "-m", "mlflow", "server",
            "--backend-store-uri", f"sqlite:///{self.db_path}",
            # Experiments this search creates are given ./mlruns (file:) beforehand; this covers any other.
            "--no-serve-artifacts", "--default-artifact-root", self.artifact_root.as_uri(),
            "--host", self.host, "--port", str(self.port),
            # One process: every write to the SQLite file goes through it, one at a time.
            "--workers", "1",
        ]
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no GenAI job runners
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "study.distributed", "_guard", str(os.getpid()), "--", *cmd],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                start_new_session=True,  # Ctrl-C reaches this process only; the server stops last
            )
        return self

    def wait_ready(self, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise SearchError(f"the MLflow tracking server stopped at start ({_exit_text(self.proc.returncode)}); "
                                  f"see {self.log_path}: {_tail(self.log_path)}")
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.3)
        raise SearchError(f"the MLflow tracking server did not answer on {self.uri} within {timeout:.0f} s; "
                          f"see {self.log_path}")

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()  # the guard stops the server's process group, then exits
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)


def _guard(parent_pid: int, cmd: list[str]) -> int:
    """Run cmd in its own process group; stop the group on SIGTERM/SIGINT or when parent_pid is gone."""
    child = subprocess.Popen(cmd, start_new_session=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())
    while child.poll() is None and not stop.is_set() and os.getppid() == parent_pid:
        stop.wait(1.0)
    if child.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGTERM)
        try:
            child.wait(15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
            child.wait()
    return 0


# --------------------------------------------------------------------------- the chief: keras-tuner's oracle on gRPC


class ChiefServer:
    """keras-tuner's OracleServicer for an oracle living in this process, with hooks for progress and faults.

    Differences from keras-tuner's own `oracle_chief.start_server`: it binds to a given
    address (port 0 = any free port), it is stopped by its owner instead of polling
    every 20 s, a trial ended twice (a worker reporting after the chief restarted) is
    ignored, and `max_consecutive_failed_trials` stops the study by answering STOPPED
    instead of failing the worker's gRPC call.
    """

    def __init__(self, oracle, host: str = LOOPBACK, port: int = 0):
        self.oracle = oracle
        self.host = host
        self.port = port
        self.events: queue.Queue = queue.Queue()  # (trial_id, note) after each end_trial
        self.aborted: str | None = None
        self.stop_triggered = False
        self._server = None

    @property
    def address(self) -> str:
        return _hostport(self.host, self.port)

    def start(self) -> "ChiefServer":
        from concurrent import futures

        import grpc
        from keras_tuner.src import protos
        from keras_tuner.src.distribute.oracle_chief import OracleServicer
        from keras_tuner.src.engine import trial as trial_module

        chief = self

        class Servicer(OracleServicer):
            def CreateTrial(self, request, context):
                if chief.aborted:
                    trial = trial_module.Trial(chief.oracle.get_space(), status=trial_module.TrialStatus.STOPPED)
                    chief.oracle.tuner_ids.discard(request.tuner_id)
                else:
                    trial = chief.oracle.create_trial(request.tuner_id)
                if trial.status == trial_module.TrialStatus.STOPPED:
                    chief.stop_triggered = True
                return protos.get_service().CreateTrialResponse(trial=trial.to_proto())

            def EndTrial(self, request, context):
                chief.end_trial(trial_module.Trial.from_proto(request.trial))
                return protos.get_service().EndTrialResponse()

        server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
        protos.get_service_grpc().add_OracleServicer_to_server(Servicer(self.oracle), server)
        try:
            port = server.add_insecure_port(_hostport(self.host, self.port))
        except RuntimeError:
            port = 0
        if not port:
            raise SearchError(f"cannot listen on {_hostport(self.host, self.port)} for the oracle "
                              "(address not on this machine, or port in use)")
        self.port = port
        server.start()
        self._server = server
        return self

    def end_trial(self, trial, note: str = "") -> bool:
        """oracle.end_trial, unless the trial already ended; queues a progress event."""
        from keras_tuner.src.engine.oracle import synchronized

        ended = synchronized(_end_trial_once)(self.oracle, trial, self)
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

    def all_trials_done(self) -> bool:
        return (self.stop_triggered or bool(self.aborted)) and not self.oracle.ongoing_trials

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=1).wait(5)
            self._server = None


def _end_trial_once(oracle, trial, chief: ChiefServer) -> bool:
    """Runs under the oracle's lock (keras_tuner.synchronized)."""
    from keras_tuner.src.engine.trial import TrialStatus

    current = oracle.trials.get(trial.trial_id)
    if current is None or current.status in (TrialStatus.COMPLETED, TrialStatus.FAILED):
        return False
    if trial.trial_id in oracle._retry_queue:
        # The oracle was reloaded while this trial ran: it waits for a retry. A result settles it.
        if trial.status == TrialStatus.INVALID:
            return False
        oracle._retry_queue.remove(trial.trial_id)
    try:
        if trial.status == TrialStatus.INVALID:
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
        oracle._save_trial(current)
        oracle.save()
    return True


# --------------------------------------------------------------------------- worker processes


@dataclass
class WorkerProcess:
    tuner_id: str
    threads: int
    log_path: Path
    proc: subprocess.Popen | None = None
    restarts: int = 0
    state: str = "running"  # running | done | gave_up | error
    last_rc: int | None = None


class WorkerPool:
    """Starts `lenet-study worker` processes, one TensorFlow thread budget each; restarts are the caller's call."""

    def __init__(self, make_cmd, env: dict[str, str]):
        self.make_cmd = make_cmd  # (WorkerProcess) -> argv
        self.env = env
        self.workers: list[WorkerProcess] = []

    def add(self, tuner_id: str, threads: int, log_path: Path) -> WorkerProcess:
        w = WorkerProcess(tuner_id, threads, log_path)
        self.workers.append(w)
        self.start(w)
        return w

    def start(self, w: WorkerProcess) -> None:
        w.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {
            **self.env,
            "TF_NUM_INTRAOP_THREADS": str(w.threads), "TF_NUM_INTEROP_THREADS": str(w.threads),
            "OMP_NUM_THREADS": str(w.threads), SUPERVISOR_ENV: str(os.getpid()), "PYTHONUNBUFFERED": "1",
        }
        with open(w.log_path, "ab") as log:
            log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {w.tuner_id} start "
                      f"(restart {w.restarts}), {w.threads} thread(s)\n".encode())
            log.flush()
            w.proc = subprocess.Popen(self.make_cmd(w), stdout=log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        w.state = "running"

    def exited(self) -> list[WorkerProcess]:
        """Workers whose process ended since the last call (state still 'running'; last_rc set)."""
        out = []
        for w in self.workers:
            if w.state == "running" and w.proc is not None and w.proc.poll() is not None:
                w.last_rc = w.proc.returncode
                out.append(w)
        return out

    def alive(self) -> list[WorkerProcess]:
        return [w for w in self.workers if w.proc is not None and w.proc.poll() is None]

    def terminate(self, timeout: float = 10.0) -> None:
        """SIGTERM (a worker marks its run KILLED and exits), then SIGKILL what is left."""
        for w in self.alive():
            with contextlib.suppress(ProcessLookupError):
                w.proc.terminate()
        deadline = time.monotonic() + timeout
        for w in self.workers:
            if w.proc is None:
                continue
            try:
                w.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(w.proc.pid, signal.SIGKILL)
                w.proc.wait(5)


def _running_child_runs(tracker, worker: str | None = None) -> list:
    flt = f"tags.`mlflow.parentRunId` = '{tracker.parent_run_id}' and attributes.status = 'RUNNING'"
    if worker is not None:
        flt += f" and tags.`{schema.WORKER}` = '{worker}'"
    return tracker.client.search_runs([tracker.experiment_id], filter_string=flt, max_results=1000)


def kill_worker_runs(tracker, worker: str | None = None) -> list[str]:
    """Mark a dead worker's RUNNING child runs KILLED; returns their trial ids."""
    trial_ids = []
    for run in _running_child_runs(tracker, worker):
        tracker.kill_trial(run.info.run_id)
        trial_ids.append(run.data.tags.get(schema.TRIAL_ID, "?"))
    return trial_ids


def _trial_label(hp, settings=None) -> str:
    """The same short label as the single-process progress lines (tuner.trial_label)."""
    from .model import ConfigError
    from .tuner import config_from_hp, hp_values, trial_label

    values = hp_values(hp)
    try:
        config = config_from_hp(hp, settings)
    except ConfigError:
        config = None
    return trial_label(values, config)


class ProgressView:
    """One line per finished trial, whichever worker ran it: tuner.Progress fed from the oracle and MLflow."""

    def __init__(self, progress, oracle, tracker, settings, echo=print):
        self.progress = progress
        self.oracle = oracle
        self.tracker = tracker
        self.settings = settings
        self.echo = echo

    def _run_of(self, trial_id: str):
        flt = (f"tags.`{schema.SEARCH_ID}` = '{self.tracker.search_id}' and "
               f"tags.`{schema.TRIAL_ID}` = '{trial_id}'")
        runs = self.tracker.client.search_runs([self.tracker.experiment_id], filter_string=flt, max_results=50,
                                               order_by=["attributes.start_time DESC"])
        ended = [r for r in runs if r.info.status in ("FINISHED", "FAILED")]
        return (ended or runs or [None])[0]

    def handle(self, trial_id: str, note: str = "") -> None:
        import math

        trial = self.oracle.trials.get(trial_id)
        if trial is None:
            return
        if trial.status not in ("COMPLETED", "FAILED"):
            self.echo(f"trial {trial_id}: {note or 'invalid result'}; keras-tuner will run it again")
            return
        run = self._run_of(trial_id)
        metrics = run.data.metrics if run is not None else {}
        tags = run.data.tags if run is not None else {}
        worker = tags.get(schema.WORKER)
        label = _trial_label(trial.hyperparameters, self.settings) + (f" [{worker}]" if worker else "")
        val_acc = metrics.get("best_val_accuracy", trial.score if trial.score is not None else math.nan)
        if trial.status == "FAILED":
            note = note or tags.get(schema.FAILURE_REASON, "") or (trial.message or "").strip()[-80:]
        self.progress.trial_done(trial_id, label, trial.status, float(val_acc), int(metrics.get("epochs_run", 0)),
                                 float(metrics.get("wall_time_s", 0.0)), note[:80])


# --------------------------------------------------------------------------- the launcher (chief side)


def run_distributed(args, space, settings) -> int:
    """`lenet-study search ... --workers N|auto [--oracle-bind HOST[:PORT]]`."""
    result = launch(
        space, settings, workers=args.workers, study=args.name, fresh=args.fresh, data_dir=args.data_dir,
        log_dir=args.log_dir, oracle_bind=getattr(args, "oracle_bind", None),
    )
    print(f"done: {result.completed} trial(s) completed, {result.failed} failed; "
          f"browse with `make ui`: {result.ui_link}")
    return 0


def launch(space, settings, *, workers="auto", threads: int | None = None, study: str | None = None,
           fresh: bool = False, data_dir: str | None = None, log_dir="logs", oracle_bind: str | None = None,
           tracking_uri: str | None = None, command: str | None = None, echo=print):
    """Run one study with N local worker processes (and any remote ones); returns a search.SearchResult.

    Start-up order is chosen for a 2-core machine: the tracking server and the workers start
    first (each needs ~10 s to import MLflow/TensorFlow), while this process opens the study.
    A worker finds the parent run by the launch id it was given, and waits for the oracle's port.
    """
    import shutil
    import uuid

    import mlflow

    from . import tracking
    from .search import study_name

    n = parse_workers(workers)
    study = study_name(space, settings, study)
    bind_host, bind_port = parse_address(oracle_bind, what="--oracle-bind")
    remote_ok = not is_loopback(bind_host)
    if n == 0 and not oracle_bind:
        raise SearchError("--workers 0 runs the chief only: give --oracle-bind HOST:PORT for remote workers to join")
    threads = threads or max(1, cpu_cores() // max(n, 1))
    user_uri = tracking.tracking_uri(tracking_uri)
    local_store = user_uri.startswith("sqlite:")
    if local_store and remote_ok:
        raise SearchError(
            f"remote workers cannot write to the local store {user_uri}: run `mlflow server` with a "
            "PostgreSQL backend store and set MLFLOW_TRACKING_URI=http://HOST:PORT on every machine")
    log_dir = Path(log_dir).resolve()
    project_dir = log_dir / TUNER_DIRNAME / study
    if fresh and project_dir.exists():
        shutil.rmtree(project_dir)  # open_study then writes a new search id into the empty folder
    project_dir.mkdir(parents=True, exist_ok=True)

    uri_before = mlflow.get_tracking_uri()
    env_before = {k: os.environ.get(k) for k in ("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT",)}
    server = pool = None
    launch_id = uuid.uuid4().hex
    try:
        with _sigterm_as_interrupt():
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
            oracle_addr = _hostport(_connect_host(bind_host), bind_port)

            def make_cmd(w: WorkerProcess) -> list[str]:
                cmd = [sys.executable, "-m", "study.cli", "worker", "--oracle", oracle_addr, "--study", study,
                       "--space", str(Path(space.path).resolve()), "--tuner-id", w.tuner_id,
                       "--threads", str(w.threads), "--log-dir", str(log_dir)]
                return cmd + (["--data-dir", str(data_dir)] if data_dir else [])

            pool = WorkerPool(make_cmd, {**os.environ, "MLFLOW_TRACKING_URI": run_uri, LAUNCH_ENV: launch_id})
            for i in range(n):
                pool.add(f"worker{i}", threads, project_dir / f"worker{i}.log")

            import keras_tuner  # noqa: F401  (TensorFlow's import overlaps the others' start)

            if server is not None:
                server.wait_ready()
                echo(f"tracking server {server.uri} (SQLite {server.db_path}; stopped at the end; "
                     f"log {server.log_path})")
                _create_experiment(run_uri, user_uri, study)
            return _launch(space, settings, pool=pool, n=n, threads=threads, study=study, data_dir=data_dir,
                           log_dir=log_dir, bind_host=bind_host, bind_port=bind_port, remote_ok=remote_ok,
                           run_uri=run_uri, user_uri=user_uri, command=command, launch_id=launch_id, echo=echo)
    finally:
        if pool is not None:
            pool.terminate()
        if server is not None:
            server.stop()
        mlflow.set_tracking_uri(uri_before)
        for key, value in env_before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _create_experiment(run_uri: str, user_uri: str, study: str) -> None:
    """The study's experiment, created through the server with the ./mlruns artifact location
    that tracking.get_or_create_experiment gives a local SQLite store, so artifacts stay on disk."""
    from . import tracking

    tracking.get_or_create_experiment(tracking.client(run_uri), study, store_uri=user_uri)


def _launch(space, settings, *, pool, n, threads, study, data_dir, log_dir, bind_host, bind_port, remote_ok,
            run_uri, user_uri, command, launch_id, echo):
    from . import tracking
    from .search import open_study
    from .tuner import LeNetHyperModel, Progress, expected_trials, make_tuner

    opened = open_study(
        space, settings, study=study, fresh=False, data_dir=data_dir, log_dir=log_dir, tracking_uri=run_uri,
        command=command, echo=echo, extra_params={"workers": n, "threads_per_worker": threads},
    )
    tracker = opened.tracker
    status = "FAILED"
    chief = None
    try:
        progress = Progress(None, echo=echo)
        tuner = make_tuner(
            settings.tuner, hypermodel=LeNetHyperModel(settings), hyperparameters=space.hyperparameters(),
            settings=settings, tracker=tracker, progress=None, directory=str(log_dir / TUNER_DIRNAME),
            project_name=study, overwrite=False,
        )
        oracle = tuner.oracle
        oracle.verbose = 0  # the progress view prints instead of keras-tuner's Display
        # A trial whose worker died comes back INVALID: keras-tuner runs it once more, then counts it FAILED.
        oracle.max_retries_per_trial = max(oracle.max_retries_per_trial, WORKER_DEATH_RETRIES)
        # A trial ended just before an interruption can be both finished and queued for a retry on reload.
        oracle._retry_queue = [t for t in oracle._retry_queue
                               if oracle.trials[t].status not in ("COMPLETED", "FAILED")]
        tuner.save()  # tuner0.json + oracle.json: a single-process search can resume this study, and back
        done_before = len([t for t in oracle.trials.values() if t.status in ("COMPLETED", "FAILED")])
        progress.total = expected_trials(tuner, settings, space.size())
        progress.done = done_before
        if done_before:
            echo(f"resuming: {done_before} trial(s) already finished are kept, not re-run")
        view = ProgressView(progress, oracle, tracker, settings, echo)

        chief = ChiefServer(oracle, bind_host, bind_port).start()
        # Workers wait for these: the parent run then holds every parameter and tag they read.
        tracker.client.set_tag(tracker.parent_run_id, LAUNCH_TAG, launch_id)
        tracker.client.set_tag(tracker.parent_run_id, ORACLE_TAG, chief.address)
        echo(f"oracle (keras-tuner chief) listening on {chief.address}"
             + ("" if remote_ok else " (this machine only)"))
        if remote_ok or not n:
            host = socket.gethostname() if bind_host in ("", "0.0.0.0", "::") else bind_host
            echo(f"workers join with: MLFLOW_TRACKING_URI={user_uri} lenet-study worker --oracle "
                 f"{_hostport(host, chief.port)} --study {study} --space {space.path} [--workers N]")
        if remote_ok:
            echo("the oracle has no authentication and no encryption: keep its port on a private network")
        if n:
            pids = ", ".join(f"{w.tuner_id} (pid {w.proc.pid})" for w in pool.workers)
            echo(f"{n} worker(s), {threads} TensorFlow thread(s) each: {pids}; "
                 f"their output: {opened.project_dir}/worker<i>.log")

        outcome = _supervise(chief, pool, oracle, tracker, view, n=n, remote_ok=remote_ok, echo=echo)
        for trial_id, note in chief.drain():
            view.handle(trial_id, note)
        chief.stop()
        pool.terminate()
        oracle.save()
        if outcome != "done":
            raise SearchError(outcome)
        result = _finish(tuner, opened, settings, echo)
        result.ui_link = tracking.ui_link(user_uri, tracker.experiment_id)
        status = "FINISHED"
        return result
    except KeyboardInterrupt:
        status = "KILLED"
        echo("interrupted: finished trials are kept; run the same command again to resume")
        raise
    finally:
        pool.terminate()  # SIGTERM: a worker marks its own run KILLED (the oracle still hears a last result)
        if chief is not None:
            chief.stop()
            with contextlib.suppress(Exception):
                chief.oracle.save()
        with contextlib.suppress(Exception):
            killed = kill_worker_runs(tracker)
            if killed:
                echo(f"marked {len(killed)} trial run(s) left RUNNING as KILLED")
        tracker.end_parent(status)


def _finish(tuner, opened, settings, echo):
    """search.finish_study, unless the best trial's checkpoint is on another machine (no shared --log-dir)."""
    from .search import SearchResult, finish_study

    best = [t for t in tuner.oracle.get_best_trials(1) if t.status == "COMPLETED"]
    checkpoint = Path(tuner._get_checkpoint_fname(best[0].trial_id)) if best else None
    if checkpoint is None or checkpoint.exists():
        return finish_study(tuner, opened, settings, echo)
    trials = tuner.oracle.trials.values()
    completed = len([t for t in trials if t.status == "COMPLETED"])
    failed = len([t for t in trials if t.status in ("FAILED", "INVALID")])
    opened.tracker.log_parent_metrics({"n_trials_completed": completed, "n_trials_failed": failed,
                                       "best_val_accuracy": float(best[0].score)})
    echo(f"best trial {best[0].trial_id}: val_accuracy {best[0].score:.4f}; not evaluated on the test set: its "
         f"checkpoint {checkpoint} is not on this machine (give the chief and the workers one shared --log-dir)")
    return SearchResult(opened.study, opened.tracker.experiment_id, opened.tracker.parent_run_id,
                        best[0].trial_id, float(best[0].score), None, completed, failed, "")


def _supervise(chief: ChiefServer, pool: WorkerPool, oracle, tracker, view: ProgressView, *, n: int,
               remote_ok: bool, echo) -> str:
    """Print progress, restart dead workers, and tell when the study is over: 'done' or why it stopped."""
    from keras_tuner.src.engine import trial as trial_module

    idle_since = None
    while True:
        if _TERMINATING.is_set():
            raise KeyboardInterrupt
        for trial_id, note in chief.drain():
            view.handle(trial_id, note)
        for w in pool.exited():
            if w.last_rc == 0:
                w.state = "done"
                continue
            died = f"{w.tuner_id} died ({_exit_text(w.last_rc)})"
            killed = kill_worker_runs(tracker, w.tuner_id)
            ongoing = oracle.ongoing_trials.get(w.tuner_id)
            if ongoing is not None:
                invalid = trial_module.Trial(ongoing.hyperparameters, trial_id=ongoing.trial_id,
                                             status=trial_module.TrialStatus.INVALID, message=died)
                chief.end_trial(invalid, note=died)
            what = f"; its run for trial {', '.join(killed)} marked KILLED" if killed else ""
            if w.last_rc == USER_ERROR_EXIT:
                w.state = "error"
                return f"{died}: {_tail(w.log_path, 1)}"
            if w.restarts >= MAX_RESTARTS:
                w.state = "gave_up"
                echo(f"{died}{what}; not restarted again (already {w.restarts} times); see {w.log_path}")
                continue
            w.restarts += 1
            pool.start(w)
            echo(f"{died}{what}; restarted ({w.restarts}/{MAX_RESTARTS}), see {w.log_path}")
        for trial_id, note in chief.drain():
            view.handle(trial_id, note)

        if chief.aborted:
            pool.terminate()
            return f"stopped: {chief.aborted}"
        running = [w for w in pool.workers if w.state == "running"]
        if n and not running and not remote_ok:
            if chief.all_trials_done():
                return "done"
            return ("every worker stopped before the study was done (see the worker logs); "
                    "run the same command again to resume")
        if chief.all_trials_done() and not running:
            # Remote workers hear "stop" when they ask for their next trial; give them a moment to ask.
            idle_since = idle_since or time.monotonic()
            if not oracle.tuner_ids or time.monotonic() - idle_since > REMOTE_GRACE_S:
                return "done"
        else:
            idle_since = None
        time.sleep(POLL_S)


# --------------------------------------------------------------------------- the worker side


def _find_parent(client, study: str, parent_run_id: str | None, launch_id: str | None, wait_s: float, echo):
    """The study's parent run: by id, by the launch id a local launcher gave its workers, or else the
    newest RUNNING parent run of the study (waiting up to wait_s for the chief to open it)."""
    if parent_run_id:
        run = client.get_run(parent_run_id)
        if run.data.tags.get(schema.ROLE) != schema.ROLE_STUDY or run.data.tags.get(schema.STUDY) != study:
            raise SearchError(f"run {parent_run_id} is not the parent run of study {study!r}")
        return run
    flt = f"tags.`{schema.ROLE}` = '{schema.ROLE_STUDY}' and attributes.status = 'RUNNING'"
    if launch_id:
        flt += f" and tags.`{LAUNCH_TAG}` = '{launch_id}'"
    else:
        flt += f" and tags.`{ORACLE_TAG}` LIKE '%'"  # opened completely, its oracle listening
    deadline = time.monotonic() + wait_s
    told = False
    experiment_id = None
    while True:
        if experiment_id is None:
            exp = client.get_experiment_by_name(study)
            experiment_id = exp.experiment_id if exp is not None else None
        if experiment_id is not None:
            runs = client.search_runs([experiment_id], filter_string=flt, max_results=1,
                                      order_by=["attributes.start_time DESC"])
            if runs:
                return runs[0]
        if time.monotonic() >= deadline:
            raise SearchError(f"no running study {study!r} in {client.tracking_uri}: start the chief first "
                              f"(lenet-study search SPACE --oracle-bind HOST:PORT), with the same MLFLOW_TRACKING_URI")
        if not told and not launch_id:
            echo(f"waiting for study {study!r} to start (up to {wait_s:.0f} s)...")
        told = True
        time.sleep(0.5 if launch_id else 2.0)


def _wait_http(uri: str, timeout: float = 180.0) -> None:
    """Until an MLflow tracking server answers (MLflow's own client retries with long back-offs)."""
    if not uri.startswith("http"):
        return
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=2):
                return
        except OSError:
            if time.monotonic() >= deadline:
                raise SearchError(f"no MLflow tracking server answers on {uri}") from None
            time.sleep(0.3)


def _wait_port(host: str, port: int, timeout: float = 600.0) -> None:
    """Until the oracle's port accepts connections (gRPC's own reconnects back off for many seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=2):
                return
        except OSError:
            if time.monotonic() >= deadline:
                raise SearchError(f"no oracle answers on {_hostport(host, port)}") from None
            time.sleep(0.2)


def settings_from_params(space, params: dict[str, str]):
    """The chief's study settings, read back from its parent run's parameters."""
    from .space import StudySettings

    ints = {"max_trials", "epochs", "patience", "executions_per_trial", "seed", "hyperband_factor"}
    changes = {}
    for f in dataclasses.fields(StudySettings):
        raw = params.get(f.name)
        if raw is None or f.name == "description":
            continue
        if f.name == "train_samples":
            changes[f.name] = None if raw in ("all", "None", "") else int(raw)
        elif f.name in ints:
            changes[f.name] = int(raw)
        elif f.name == "val_fraction":
            changes[f.name] = float(raw)
        else:
            changes[f.name] = raw
    settings = dataclasses.replace(space.settings, **changes)
    return settings


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
    from . import tracking
    from .space import load_space

    uri = tracking.tracking_uri()
    if uri.startswith("sqlite:"):
        raise SearchError(f"a worker logs through the study's tracking server, not the local store {uri}: "
                          "set MLFLOW_TRACKING_URI=http://HOST:PORT (the chief's `mlflow server`)")
    _wait_http(uri)
    client = tracking.client(uri)
    parent = _find_parent(client, study, parent_run_id, os.environ.get(LAUNCH_ENV), wait_s, echo)
    params, tags = parent.data.params, parent.data.tags
    path = space_path or params.get("space_file")
    space = load_space(path)
    if space.digest != tags.get(schema.SPACE_DIGEST):
        raise SearchError(f"{path}: not the chief's space file (sha256 {space.digest[:12]}, the chief's "
                          f"{str(tags.get(schema.SPACE_DIGEST))[:12]}); use the same file with --space")
    return JoinedStudy(study, uri, parent, space, settings_from_params(space, params),
                       tags.get(schema.SEARCH_ID, ""), parent.info.experiment_id)


def _watch_supervisor() -> None:
    """In a supervised worker: stop (as on SIGTERM) when the supervising process is gone."""
    supervisor = os.environ.get(SUPERVISOR_ENV)
    if not supervisor:
        return
    supervisor_pid = int(supervisor)

    def watch():
        while True:
            time.sleep(1.0)
            if os.getppid() != supervisor_pid:
                os.kill(os.getpid(), signal.SIGTERM)
                return

    threading.Thread(target=watch, name="supervisor-watch", daemon=True).start()


def _set_threads(threads: int | None) -> None:
    if not threads:
        return
    for name in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS"):
        os.environ[name] = str(threads)
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)


def run_worker(args) -> int:
    """`lenet-study worker --oracle HOST:PORT --study NAME [--workers N] ...`."""
    host, port = parse_address(args.oracle, need_port=True, what="--oracle")
    n = parse_workers(getattr(args, "workers", 1) or 1, allow_zero=False)
    with _sigterm_as_interrupt(exit_after=5.0 if n == 1 else None):
        if n == 1:
            return work(args, host, port)
        return _supervise_remote(args, host, port, n)


def work(args, host: str, port: int, echo=print) -> int:
    """One worker process: ask the oracle for trials until it says stop, log each as a child run."""
    from . import tracking
    from .search import prepare_data, search_callbacks
    from .tuner import LeNetHyperModel, Progress, gc_frozen, make_tuner

    _watch_supervisor()
    _set_threads(args.threads)
    tuner_id = args.tuner_id or socket.gethostname()
    joined = join_study(args.study, space_path=args.space, parent_run_id=args.parent_run_id, echo=echo)
    settings = joined.settings
    ds, (x_tr, y_tr), (x_val, y_val) = prepare_data(settings, args.data_dir)
    theirs = joined.parent.data.tags.get(f"{schema.DATA_PREFIX}digest")
    if theirs and theirs != ds.provenance.digest:
        raise SearchError(f"this machine's {settings.dataset} data ({ds.provenance.resolved}, from "
                          f"{ds.provenance.source}) is not the chief's ({joined.parent.data.tags.get(schema.DATA_PREFIX + 'source')}); "
                          "give --data-dir the same files")
    tracker = tracking.StudyTracker(joined.study, joined.uri, parent_run_id=joined.parent.info.run_id,
                                    search_id=joined.search_id, worker=tuner_id)
    os.environ.update(KERASTUNER_TUNER_ID=tuner_id, KERASTUNER_ORACLE_IP=host, KERASTUNER_ORACLE_PORT=str(port))
    log_dir = Path(args.log_dir)
    echo(f"{tuner_id}: study {joined.study!r} (parent run {tracker.parent_run_id}), oracle {_hostport(host, port)}, "
         f"{args.threads or 'default'} TensorFlow thread(s), MLflow {joined.uri}")
    tuner = make_tuner(
        settings.tuner, hypermodel=LeNetHyperModel(settings), hyperparameters=joined.space.hyperparameters(),
        settings=settings, tracker=tracker, progress=Progress(None, echo=echo),
        directory=str(log_dir / TUNER_DIRNAME), project_name=joined.study,
        overwrite=False,  # never: the folder may be the chief's
    )
    _patch_worker_tuner(tuner, tracker, echo)
    _wait_port(host, port)
    with gc_frozen():  # keras-tuner's two collections per trial then skip the libraries and the data
        tuner.search(x_tr, y_tr, validation_data=(x_val, y_val), callbacks=search_callbacks(log_dir, joined.study),
                     verbose=0)
    echo(f"{tuner_id}: the oracle has no more trials; done")
    return 0


def _patch_worker_tuner(tuner, tracker, echo) -> None:
    """Two guards on a worker's tuner instance (keras-tuner's classes stay as they are)."""
    from keras_tuner.src.engine.trial import TrialStatus

    create_trial = tuner.oracle.create_trial

    def create_trial_patient(tuner_id):
        trial = create_trial(tuner_id)
        if trial.status == TrialStatus.IDLE:  # Hyperband waits for a bracket: keras-tuner asks again at once
            time.sleep(1.0)
        return trial

    tuner.oracle.create_trial = create_trial_patient

    run_trial = tuner.run_trial

    def run_trial_once(trial, *args, **kwargs):
        # A trial whose run finished but whose process died before telling the oracle comes back to its
        # worker: report the recorded result instead of training (and logging) it a second time.
        flt = (f"tags.`{schema.SEARCH_ID}` = '{tracker.search_id}' and tags.`{schema.TRIAL_ID}` = "
               f"'{trial.trial_id}' and tags.`{schema.TRIAL_STATUS}` = 'COMPLETED' and attributes.status = 'FINISHED'")
        done = tracker.client.search_runs([tracker.experiment_id], filter_string=flt, max_results=1)
        if done and "best_val_accuracy" in done[0].data.metrics:
            echo(f"trial {trial.trial_id} already finished (run {done[0].info.run_id}): reporting it, not re-running")
            return {schema.OBJECTIVE: done[0].data.metrics["best_val_accuracy"]}
        return run_trial(trial, *args, **kwargs)

    tuner.run_trial = run_trial_once


def _supervise_remote(args, host: str, port: int, n: int) -> int:
    """`lenet-study worker --workers N` on a worker machine: N processes, restarted when they die."""
    from . import tracking

    joined = join_study(args.study, space_path=args.space, parent_run_id=args.parent_run_id)
    tracker = tracking.StudyTracker(joined.study, joined.uri, parent_run_id=joined.parent.info.run_id,
                                    search_id=joined.search_id)
    threads = args.threads or max(1, cpu_cores() // n)
    base = args.tuner_id or socket.gethostname()
    log_dir = Path(args.log_dir).resolve()
    space_path = str(Path(joined.space.path).resolve())

    def make_cmd(w: WorkerProcess) -> list[str]:
        cmd = [sys.executable, "-m", "study.cli", "worker", "--oracle", _hostport(host, port), "--study",
               joined.study, "--space", space_path, "--parent-run-id", tracker.parent_run_id,
               "--tuner-id", w.tuner_id, "--threads", str(w.threads), "--log-dir", str(log_dir)]
        return cmd + (["--data-dir", str(args.data_dir)] if args.data_dir else [])

    pool = WorkerPool(make_cmd, {**os.environ, "MLFLOW_TRACKING_URI": joined.uri})
    folder = log_dir / TUNER_DIRNAME / joined.study
    for i in range(n):
        pool.add(f"{base}-{i}", threads, folder / f"{base}-{i}.log")
    print(f"{n} worker(s) for study {joined.study!r}, {threads} TensorFlow thread(s) each; "
          f"their output: {folder}/{base}-<i>.log")
    try:
        while pool.alive() or any(w.state == "running" for w in pool.workers):
            if _TERMINATING.is_set():
                raise KeyboardInterrupt
            for w in pool.exited():
                if w.last_rc == 0:
                    w.state = "done"
                    print(f"{w.tuner_id}: done")
                    continue
                died = f"{w.tuner_id} died ({_exit_text(w.last_rc)})"
                _report_invalid(host, port, kill_worker_runs(tracker, w.tuner_id))
                if w.last_rc == USER_ERROR_EXIT or w.restarts >= MAX_RESTARTS:
                    w.state = "error" if w.last_rc == USER_ERROR_EXIT else "gave_up"
                    print(f"{died}; not restarted: {_tail(w.log_path, 1)}")
                    continue
                w.restarts += 1
                pool.start(w)
                print(f"{died}; restarted ({w.restarts}/{MAX_RESTARTS})")
            time.sleep(POLL_S)
    except KeyboardInterrupt:
        print("interrupted: stopping the workers; their trials go back to the chief")
        raise
    finally:
        # Trials still running go back to the chief (a stopped worker marks its own run KILLED).
        pending = []
        with contextlib.suppress(Exception):
            pending = [r.data.tags.get(schema.TRIAL_ID) for w in pool.workers
                       for r in _running_child_runs(tracker, w.tuner_id)]
        pool.terminate()
        with contextlib.suppress(Exception):
            for w in pool.workers:
                kill_worker_runs(tracker, w.tuner_id)
            _report_invalid(host, port, [t for t in pending if t])
    return 0 if all(w.state == "done" for w in pool.workers) else 1


def _report_invalid(host: str, port: int, trial_ids: list[str], timeout: float = 10.0) -> None:
    """Give a dead worker's trials back to the chief as INVALID: keras-tuner retries them or counts them
    failed. Short time-outs (keras-tuner's own client waits up to an hour for a chief that is gone)."""
    if not trial_ids:
        return
    import grpc
    from keras_tuner.src import protos
    from keras_tuner.src.engine.trial import Trial, TrialStatus

    service = protos.get_service()
    with grpc.insecure_channel(_hostport(host, port)) as channel:
        stub = protos.get_service_grpc().OracleStub(channel)
        for trial_id in trial_ids:
            with contextlib.suppress(grpc.RpcError):
                trial = Trial.from_proto(stub.GetTrial(service.GetTrialRequest(trial_id=trial_id), timeout=timeout).trial)
                if trial.status == TrialStatus.RUNNING:
                    trial.status = TrialStatus.INVALID
                    stub.EndTrial(service.EndTrialRequest(trial=trial.to_proto()), timeout=timeout)


# --------------------------------------------------------------------------- benchmark: worker scaling


BENCH_WORKERS_SPACE = """\
# Worker-scaling benchmark: identical trials (only the weight seed differs), fixed cost each.
study:
  dataset: {dataset}
  tuner: random
  max_trials: {trials}
  epochs: {epochs}
  patience: 0
  seed: 1
  val_fraction: 0.1
  test_eval: best
  train_samples: {train_samples}
space:
  seed: {{int: [1, 100000]}}
  activation: {{fixed: relu}}
  pooling: {{fixed: max}}
  batch_size: {{fixed: 64}}
"""


def _trial_span(uri: str, study: str) -> tuple[float, int]:
    """Seconds from the first trial's start to the last trial's end, and the trials finished, from MLflow."""
    from . import tracking

    client = tracking.client(uri)
    exp = client.get_experiment_by_name(study)
    runs = client.search_runs([exp.experiment_id], f"tags.`{schema.ROLE}` = '{schema.ROLE_TRIAL}'",
                              max_results=1000)
    done = [r for r in runs if r.info.status == "FINISHED"]
    if not done:
        return float("nan"), 0
    return (max(r.info.end_time for r in done) - min(r.info.start_time for r in done)) / 1000.0, len(done)


def bench_workers(args, echo=print) -> dict[str, float]:
    """Trials per hour: 1 worker with every core vs one worker per core with one thread each."""
    import tempfile

    from .space import load_space

    cores = cpu_cores()
    trials = max(4, args.trials + (-args.trials) % 2) if cores >= 2 else max(2, args.trials)
    train_samples = args.train_samples or 20000
    data_dir = args.data_dir or os.environ.get("LENET_DATA_DIR")
    sides = [(1, cores), (max(2, cores), 1)]
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="lenet-bench-workers-") as tmp_name:
        tmp = Path(tmp_name)
        path = tmp / "bench-workers.yaml"
        path.write_text(BENCH_WORKERS_SPACE.format(dataset=args.dataset, trials=trials, epochs=args.epochs,
                                                   train_samples=train_samples))
        space = load_space(path)
        uri = f"sqlite:///{tmp}/mlflow.db"
        for n, threads in sides:
            name = f"bench-{n}x{threads}"
            t0 = time.perf_counter()
            lines: list[str] = []
            launch(space, space.settings, workers=n, threads=threads, study=name, data_dir=data_dir,
                   log_dir=tmp / "logs", tracking_uri=uri, command="bench --workers", echo=lines.append)
            total = time.perf_counter() - t0
            span, finished = _trial_span(uri, name)
            data_line = next((line for line in lines if line.startswith("study ")), "")
            per_hour = finished / span * 3600 if span == span and span > 0 else float("nan")
            figures[f"{n}x{threads}_span_s"] = span
            figures[f"{n}x{threads}_total_s"] = total
            figures[f"{n}x{threads}_trials_per_hour"] = per_hour
            echo(f"{n} worker(s) x {threads} thread(s): {finished} trials x {args.epochs} epochs: trials "
                 f"{span:.1f} s (first start to last end) -> {per_hour:.0f} trials/hour; whole command "
                 f"{total:.1f} s with start-up and test evaluation  [{data_line.split(': ', 1)[-1]}]")
    one, many = sides
    ratio = figures[f"{many[0]}x{many[1]}_trials_per_hour"] / figures[f"{one[0]}x{one[1]}_trials_per_hour"]
    figures["ratio"] = ratio
    echo(f"worker scaling: {ratio:.2f}x trials/hour with {many[0]} workers x {many[1]} thread vs "
         f"1 worker x {one[1]} threads; target at least 1.6x")
    return figures


if __name__ == "__main__":  # python -m study.distributed _guard PARENT_PID -- CMD...
    if len(sys.argv) >= 4 and sys.argv[1] == "_guard" and sys.argv[3] == "--":
        sys.exit(_guard(int(sys.argv[2]), sys.argv[4:]))
    sys.exit("usage: python -m study.distributed _guard PARENT_PID -- COMMAND...")
