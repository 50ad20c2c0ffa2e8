"""The temporary `mlflow server` a parallel study puts in front of a local SQLite store.

Several processes writing one SQLite file at once hit "database is locked":
with the default store, the chief starts `mlflow server` on loopback for the
length of the search and every process (chief and workers) logs through it, one
write at a time. Artifacts still go straight to ./mlruns beside the database.
The server runs under a guard process (supervise.guard) that stops it if the
chief dies without cleaning up. `keep_alive` restarts a server that stops during
the search on the same port and database (the MLflow calls that failed meanwhile
are retried by tracking.RetryingClient), at most MAX_RESTARTS times.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from ..errors import SearchError
from ..store import NoAnswer, wait_http
from .net import LOOPBACK, free_port, hostport
from .supervise import exit_text, guarded, tail

MAX_RESTARTS = 3  # restarts of a tracking server that stopped during one search
RESTART_READY_S = 60.0  # how long a restarted server may take to answer


class LocalTrackingServer:
    """`mlflow server` on loopback in front of a local SQLite file, for the length of one search."""

    def __init__(self, db_path: Path, artifact_root: Path, log_path: Path, host: str = LOOPBACK):
        self.db_path = db_path.resolve()
        self.artifact_root = artifact_root.resolve()
        self.log_path = log_path
        self.host = host
        self.port = free_port(host)
        self.proc: subprocess.Popen | None = None
        self.restarts = 0
        self.gave_up: str | None = None  # why keep_alive stopped restarting it
        self._stopping = threading.Event()
        self._lock = threading.Lock()

    @property
    def uri(self) -> str:
        return f"http://{hostport(self.host, self.port)}"

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
                guarded(cmd), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                start_new_session=True,  # Ctrl-C reaches this process only; the server stops last
            )
        return self

    def _alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise SearchError(f"the MLflow tracking server stopped at start ({exit_text(self.proc.returncode)}); "
                              f"see {self.log_path}: {tail(self.log_path)}")

    def wait_ready(self, timeout: float = 180.0) -> None:
        try:
            wait_http(self.uri, timeout, alive=self._alive)
        except NoAnswer:
            raise SearchError(f"the MLflow tracking server did not answer on {self.uri} within {timeout:.0f} s; "
                              f"see {self.log_path}") from None

    def keep_alive(self, echo=print, max_restarts: int = MAX_RESTARTS, poll_s: float = 0.5) -> None:
        """Until stop(): a server that stopped is started again on the same port and database, at most
        max_restarts times (then `gave_up` says why), from a daemon thread."""

        def watch():
            while not self._stopping.wait(poll_s):
                with self._lock:
                    if self._stopping.is_set() or self.proc is None or self.proc.poll() is None:
                        continue
                    died = f"the MLflow tracking server on {self.uri} stopped"  # (its guard's exit code says nothing)
                    if self.restarts >= max_restarts:
                        self.gave_up = (f"{died} {self.restarts + 1} times; see {self.log_path}: nothing is lost; "
                                        "run the same command again")
                        return
                    self.restarts += 1
                    self.start()
                echo(f"{died}; started again on the same port ({self.restarts}/{max_restarts})")
                with contextlib.suppress(SearchError):  # it stopped again: the next round sees it
                    self.wait_ready(RESTART_READY_S)

        threading.Thread(target=watch, name="tracking-server-keep-alive", daemon=True).start()

    def stop(self, timeout: float = 20.0) -> None:
        self._stopping.set()  # keep_alive restarts it no more
        with self._lock:
            if self.proc is None or self.proc.poll() is not None:
                return
            self.proc.terminate()  # the guard stops the server's process group, then exits
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
