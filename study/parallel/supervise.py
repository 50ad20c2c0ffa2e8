"""Process supervision: start worker processes, watch them, restart the ones that die, stop them all.

One worker command line (`worker_command`), one pool (`WorkerPool`) and one
restart policy (`Supervisor`), used both by the chief's local workers and by
`lenet-study worker --workers N` on another machine. A worker that exits 0 is
done; one that exits with USER_ERROR_EXIT (a one-line user error) is not
restarted; any other death is reported to the caller (which gives its trial
back to the oracle) and restarted, at most MAX_RESTARTS times.

Also here: SIGTERM taken as Ctrl-C, a worker's watch on its supervisor, and the
small guard process (`python -m study.parallel.supervise _guard`) that stops a
server's process group when its owner dies without cleaning up.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..devices import cpu_cores  # noqa: F401 - chief and worker take it from here
from ..errors import SearchError

MAX_RESTARTS = 3  # per worker process
USER_ERROR_EXIT = 2  # what `lenet-study` returns for a one-line user error: not worth a restart
POLL_S = 0.5
SUPERVISOR_ENV = "LENET_SUPERVISOR_PID"


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


def exit_text(rc: int | None) -> str:
    if rc is None:
        return "still running"
    if rc < 0:
        try:
            return f"killed by {signal.Signals(-rc).name}"
        except ValueError:
            return f"killed by signal {-rc}"
    return f"exit code {rc}"


def tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text[-lines:])


# --------------------------------------------------------------------------- signals


TERMINATING = threading.Event()


@contextlib.contextmanager
def sigterm_as_interrupt(exit_after: float | None = None):
    """SIGTERM takes the Ctrl-C path, so runs are marked KILLED and children stopped.

    Python drops an exception raised while it runs a weakref callback ("Exception ignored"),
    so the flag TERMINATING is set as well for loops to check; with exit_after, the process
    also ends that many seconds later whatever it is doing (a supervisor cleans up after it).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_sigterm(signum, frame):
        if exit_after is not None and not TERMINATING.is_set():
            timer = threading.Timer(exit_after, os._exit, args=(128 + signal.SIGTERM,))
            timer.daemon = True
            timer.start()
        TERMINATING.set()
        raise KeyboardInterrupt

    before = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)
        TERMINATING.clear()


def watch_supervisor() -> None:
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


# --------------------------------------------------------------------------- workers


def worker_command(*, oracle: str, study: str, space_path: str | Path, log_dir: str | Path,
                   data_dir: str | None = None, parent_run_id: str | None = None) -> Callable[["WorkerProcess"], list[str]]:
    """The one `lenet-study worker` command line, for a given worker (its tuner id and thread budget)."""

    def argv(w: WorkerProcess) -> list[str]:
        cmd = [sys.executable, "-m", "study.cli", "worker", "--oracle", oracle, "--study", study,
               "--space", str(Path(space_path).resolve()), "--tuner-id", w.tuner_id, "--threads", str(w.threads),
               "--log-dir", str(Path(log_dir).resolve())]
        if parent_run_id:
            cmd += ["--parent-run-id", parent_run_id]
        return cmd + (["--data-dir", str(data_dir)] if data_dir else [])

    return argv


@dataclass
class WorkerProcess:
    tuner_id: str
    threads: int
    log_path: Path
    gpu: str | None = None  # its CUDA_VISIBLE_DEVICES (devices.gpu_assignment); None: the environment's
    proc: subprocess.Popen | None = None
    restarts: int = 0
    state: str = "running"  # running | done | gave_up | error
    last_rc: int | None = None

    # What the Supervisor and the chief say about a worker; a Ray worker (cluster.RayWorker) says the same.
    def exit_text(self) -> str:
        return exit_text(self.last_rc)

    def last_line(self) -> str:
        return tail(self.log_path, 1)

    @property
    def output(self) -> str:
        return str(self.log_path)

    def describe(self) -> str:
        return f"{self.tuner_id} (pid {self.proc.pid}{'' if self.gpu is None else f', GPU {self.gpu}'})"


class WorkerPool:
    """Starts worker processes, one TensorFlow thread budget each, their output in their own log file.

    `spawn` makes the process (subprocess.Popen by default; tests pass fakes)."""

    def __init__(self, make_cmd, env: dict[str, str], spawn=subprocess.Popen):
        self.make_cmd = make_cmd  # (WorkerProcess) -> argv
        self.env = env
        self.spawn = spawn
        self.workers: list[WorkerProcess] = []

    def add(self, tuner_id: str, threads: int, log_path: Path, gpu: str | None = None) -> WorkerProcess:
        w = WorkerProcess(tuner_id, threads, log_path, gpu)
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
        if w.gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = w.gpu
            # Workers may share a GPU: each takes memory as it needs it, not the whole card at start.
            env.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
        with open(w.log_path, "ab") as log:
            log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {w.tuner_id} start "
                      f"(restart {w.restarts}), {w.threads} thread(s)"
                      f"{'' if w.gpu is None else f', GPU {w.gpu}'}\n".encode())
            log.flush()
            w.proc = self.spawn(self.make_cmd(w), stdout=log, stderr=subprocess.STDOUT,
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

    def running(self) -> list[WorkerProcess]:
        return [w for w in self.workers if w.state == "running"]

    def output_hint(self, folder: Path) -> str:
        return f"their output: {folder}/worker<i>.log"

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


@dataclass
class WorkerEvent:
    worker: WorkerProcess
    kind: str  # done | restarted | gave_up | error
    message: str


class Supervisor:
    """The one restart policy over a WorkerPool.

    `on_death(worker)` is called for every worker that died (exit code not 0), before any restart:
    it gives the worker's trial back and returns a note for the message (e.g. "; its run for trial 3
    marked KILLED"). A user error (USER_ERROR_EXIT) is not restarted; other deaths are, at most
    `max_restarts` times per worker.
    """

    def __init__(self, pool: WorkerPool, on_death: Callable[[WorkerProcess], str] = lambda w: "",
                 max_restarts: int = MAX_RESTARTS):
        self.pool = pool
        self.on_death = on_death
        self.max_restarts = max_restarts

    def check(self) -> list[WorkerEvent]:
        events = []
        for w in self.pool.exited():
            if w.last_rc == 0:
                w.state = "done"
                events.append(WorkerEvent(w, "done", f"{w.tuner_id}: done"))
                continue
            died = f"{w.tuner_id} died ({w.exit_text()})" + self.on_death(w)
            if w.last_rc == USER_ERROR_EXIT:
                w.state = "error"
                events.append(WorkerEvent(w, "error", f"{died}: {w.last_line()}"))
            elif w.restarts >= self.max_restarts:
                w.state = "gave_up"
                events.append(WorkerEvent(w, "gave_up", f"{died}; not restarted again (already {w.restarts} "
                                                        f"times); see {w.output}"))
            else:
                w.restarts += 1
                self.pool.start(w)
                events.append(WorkerEvent(w, "restarted", f"{died}; restarted ({w.restarts}/{self.max_restarts}), "
                                                          f"see {w.output}"))
        return events


# --------------------------------------------------------------------------- the guard of a server process


def guard(parent_pid: int, cmd: list[str]) -> int:
    """Run cmd in its own process group; stop the group on SIGTERM/SIGINT or when parent_pid is gone."""
    child = subprocess.Popen(cmd, start_new_session=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())
    while child.poll() is None and not stop.is_set() and os.getppid() == parent_pid:
        stop.wait(1.0)
    if child.poll() is not None:
        # It died (killed, out of memory): what it started (mlflow server's uvicorn) would keep its port.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
            for _ in range(50):  # until the group is gone and the port free, for a restart on it
                os.killpg(child.pid, 0)
                time.sleep(0.1)
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


def guarded(cmd: list[str]) -> list[str]:
    """`cmd` run under this process's guard."""
    return [sys.executable, "-m", "study.parallel.supervise", "_guard", str(os.getpid()), "--", *cmd]


if __name__ == "__main__":  # python -m study.parallel.supervise _guard PARENT_PID -- CMD...
    if len(sys.argv) >= 4 and sys.argv[1] == "_guard" and sys.argv[3] == "--":
        sys.exit(guard(int(sys.argv[2]), sys.argv[4:]))
    sys.exit("usage: python -m study.parallel.supervise _guard PARENT_PID -- COMMAND...")
