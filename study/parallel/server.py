"""The temporary `mlflow server` a parallel study puts in front of a local SQLite store.

Several processes writing one SQLite file at once hit "database is locked":
with the default store, the chief starts `mlflow server` on loopback for the
length of the search and every process (chief and workers) logs through it, one
write at a time. Artifacts still go straight to ./mlruns beside the database.
The server runs under a guard process (supervise.guard) that stops it if the
chief dies without cleaning up.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

from ..search import SearchError
from .net import LOOPBACK, NoAnswer, free_port, hostport, wait_http
from .supervise import exit_text, guarded, tail


class LocalTrackingServer:
    """`mlflow server` on loopback in front of a local SQLite file, for the length of one search."""

    def __init__(self, db_path: Path, artifact_root: Path, log_path: Path, host: str = LOOPBACK):
        self.db_path = db_path.resolve()
        self.artifact_root = artifact_root.resolve()
        self.log_path = log_path
        self.host = host
        self.port = free_port(host)
        self.proc: subprocess.Popen | None = None

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
