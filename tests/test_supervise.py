"""Process supervision (study/parallel/supervise.py, chief.supervise_study) with fake processes, in milliseconds.

The real-process tests in test_distributed.py prove the whole thing once; these pin the restart
policy, the one worker command line, a dead worker's trial going back to the oracle, and when a
study counts as over.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import keras_tuner as kt
import pytest

from study.kt_compat import TrialStatus
from study.parallel import chief as chief_module
from study.parallel.supervise import (MAX_RESTARTS, USER_ERROR_EXIT, SUPERVISOR_ENV, Supervisor, WorkerPool,
                                      worker_command)


class FakeProcess:
    """A Popen look-alike: running until a test sets its exit code; terminate() ends it with SIGTERM."""

    pids = iter(range(10_000_000, 20_000_000))  # never a real pid: nothing is ever signalled

    def __init__(self, argv, env, log):
        self.argv, self.env, self.log = argv, env, log
        self.pid = next(self.pids)
        self.returncode = None
        self.terminated = False

    def poll(self):
        return self.returncode

    def terminate(self):
        self.terminated = True
        if self.returncode is None:
            self.returncode = -signal.SIGTERM

    def wait(self, timeout=None):
        return self.returncode


class Spawner:
    def __init__(self):
        self.started: list[FakeProcess] = []

    def __call__(self, argv, *, stdout, env, **kwargs):
        proc = FakeProcess(argv, env, stdout.name)
        self.started.append(proc)
        return proc


def _pool(tmp_path, n=2):
    spawn = Spawner()
    pool = WorkerPool(lambda w: ["lenet-study", "worker", "--tuner-id", w.tuner_id], {"BASE": "1"}, spawn=spawn)
    for i in range(n):
        pool.add(f"worker{i}", 1, tmp_path / f"worker{i}.log")
    return pool, spawn


def test_pool_starts_each_worker_with_its_thread_budget_and_its_own_log(tmp_path):
    pool, spawn = _pool(tmp_path)
    assert [p.argv[-1] for p in spawn.started] == ["worker0", "worker1"]
    env = spawn.started[0].env
    assert env["BASE"] == "1" and env["TF_NUM_INTRAOP_THREADS"] == env["OMP_NUM_THREADS"] == "1"
    assert env[SUPERVISOR_ENV].isdigit()
    assert "worker0 start (restart 0), 1 thread(s)" in (tmp_path / "worker0.log").read_text()


def test_a_dying_worker_is_restarted_at_most_max_restarts_times(tmp_path):
    pool, spawn = _pool(tmp_path, n=1)
    deaths = []
    supervisor = Supervisor(pool, on_death=lambda w: deaths.append(w.tuner_id) or "; its run for trial 3 marked KILLED")
    events = []
    for _ in range(MAX_RESTARTS + 1):
        spawn.started[-1].returncode = -signal.SIGKILL
        events += supervisor.check()
    assert [e.kind for e in events] == ["restarted"] * MAX_RESTARTS + ["gave_up"]
    assert events[0].message.startswith("worker0 died (killed by SIGKILL); its run for trial 3 marked KILLED; "
                                        "restarted (1/3)")
    assert "not restarted again (already 3 times)" in events[-1].message
    assert deaths == ["worker0"] * (MAX_RESTARTS + 1)  # every death gives the trial back, restarted or not
    assert len(spawn.started) == 1 + MAX_RESTARTS
    assert pool.workers[0].state == "gave_up" and supervisor.check() == []


def test_a_user_error_is_not_restarted_and_an_exit_0_is_done(tmp_path):
    pool, spawn = _pool(tmp_path)
    (tmp_path / "worker0.log").write_text("lenet-study: error: smoke.yaml: not the chief's space file\n")
    spawn.started[0].returncode = USER_ERROR_EXIT
    spawn.started[1].returncode = 0
    deaths = []
    events = Supervisor(pool, on_death=lambda w: deaths.append(w.tuner_id) or "").check()
    assert [(e.worker.tuner_id, e.kind) for e in events] == [("worker0", "error"), ("worker1", "done")]
    assert events[0].message == "worker0 died (exit code 2): lenet-study: error: smoke.yaml: not the chief's space file"
    assert deaths == ["worker0"] and len(spawn.started) == 2  # nothing restarted
    assert pool.running() == []


def test_terminate_stops_every_live_worker(tmp_path):
    pool, spawn = _pool(tmp_path)
    spawn.started[1].returncode = 0
    pool.terminate(timeout=0.1)
    assert spawn.started[0].terminated and not spawn.started[1].terminated
    assert pool.alive() == []


def test_one_worker_command_line_for_local_and_remote_workers(tmp_path):
    from study.parallel.supervise import WorkerProcess

    w = WorkerProcess("host-1", 2, tmp_path / "w.log")
    local = worker_command(oracle="127.0.0.1:7000", study="lenet", space_path="search_spaces/smoke.yaml",
                           log_dir="logs")(w)
    remote = worker_command(oracle="10.0.0.1:7000", study="lenet", space_path="search_spaces/smoke.yaml",
                            log_dir="logs", data_dir="/data", parent_run_id="abc")(w)
    assert local[:4] == [sys.executable, "-m", "study.cli", "worker"]
    assert local[local.index("--tuner-id") + 1] == "host-1" and local[local.index("--threads") + 1] == "2"
    assert Path(local[local.index("--space") + 1]).is_absolute() and Path(local[local.index("--log-dir") + 1]).is_absolute()
    assert "--parent-run-id" not in local and "--data-dir" not in local
    assert remote[remote.index("--parent-run-id") + 1] == "abc" and remote[-2:] == ["--data-dir", "/data"]


# --------------------------------------------------------------------------- the chief's loop


class FakeChief:
    def __init__(self):
        self.ended = []
        self.aborted = None
        self.done = False

    def end_trial(self, trial, note=""):
        self.ended.append((trial.trial_id, trial.status, note))
        return True

    def drain(self):
        return []

    def reclaim_lapsed(self):
        return []

    def all_trials_done(self):
        return self.done


class FakeOracle:
    def __init__(self, ongoing):
        self.ongoing_trials = ongoing
        self.tuner_ids = set(ongoing)


class FakeTracker:
    def __init__(self):
        self.killed = []

    def kill_running_children(self, worker=None):
        self.killed.append(worker)
        return ["3"] if worker == "worker0" else []


class FakeView:
    def drain(self, chief):
        chief.drain()


def _study(tmp_path, ongoing):
    pool, spawn = _pool(tmp_path)
    return pool, spawn, FakeChief(), FakeOracle(ongoing), FakeTracker()


def test_a_dead_workers_trial_goes_back_to_the_oracle_and_the_study_finishes(tmp_path):
    ongoing = {"worker0": kt.engine.trial.Trial(kt.HyperParameters(), trial_id="3")}
    pool, spawn, chief, oracle, tracker = _study(tmp_path, ongoing)
    spawn.started[0].returncode = -signal.SIGKILL
    lines = []

    def finish_when_restarted(*args):  # after the restart, the trials run out and both workers end
        if len(spawn.started) == 3:
            chief.done = True
            for proc in spawn.started[1:]:
                proc.returncode = 0

    chief.drain = lambda: finish_when_restarted() or []
    outcome = chief_module.supervise_study(chief, pool, oracle, tracker, FakeView(), n=2, remote_ok=False,
                                           echo=lines.append, poll_s=0)
    assert outcome == "done"
    assert chief.ended == [("3", TrialStatus.INVALID, "worker0 died (killed by SIGKILL)")]
    assert tracker.killed[0] == "worker0"
    assert lines == [f"worker0 died (killed by SIGKILL); its run for trial 3 marked KILLED; restarted (1/3), "
                     f"see {tmp_path / 'worker0.log'}"]


def test_workers_that_all_stop_early_end_the_study_with_a_reason(tmp_path):
    pool, spawn, chief, oracle, tracker = _study(tmp_path, {})
    for proc in spawn.started:
        proc.returncode = 0  # the oracle is not done, yet every worker left
    outcome = chief_module.supervise_study(chief, pool, oracle, tracker, FakeView(), n=2, remote_ok=False,
                                           echo=print, poll_s=0)
    assert outcome.startswith("every worker stopped before the study was done")


def test_a_user_error_in_a_worker_stops_the_study_with_its_line(tmp_path):
    pool, spawn, chief, oracle, tracker = _study(tmp_path, {})
    (tmp_path / "worker1.log").write_text("lenet-study: error: no such data\n")
    spawn.started[1].returncode = USER_ERROR_EXIT
    outcome = chief_module.supervise_study(chief, pool, oracle, tracker, FakeView(), n=2, remote_ok=False,
                                           echo=print, poll_s=0)
    assert outcome == "worker1 died (exit code 2): lenet-study: error: no such data"


def test_an_aborted_oracle_stops_every_worker(tmp_path):
    pool, spawn, chief, oracle, tracker = _study(tmp_path, {})
    chief.aborted = "3 consecutive trials failed"
    outcome = chief_module.supervise_study(chief, pool, oracle, tracker, FakeView(), n=2, remote_ok=False,
                                           echo=print, poll_s=0)
    assert outcome == "stopped: 3 consecutive trials failed"
    assert all(proc.terminated for proc in spawn.started)


def test_sigterm_stops_the_loop_as_ctrl_c(tmp_path):
    from study.parallel.supervise import TERMINATING

    pool, spawn, chief, oracle, tracker = _study(tmp_path, {})
    TERMINATING.set()
    try:
        with pytest.raises(KeyboardInterrupt):
            chief_module.supervise_study(chief, pool, oracle, tracker, FakeView(), n=2, remote_ok=False,
                                         echo=print, poll_s=0)
    finally:
        TERMINATING.clear()


# --------------------------------------------------------------------------- the temporary tracking server


class FakeServer:
    """A LocalTrackingServer that gave up restarting (or not)."""

    def __init__(self, gave_up=None):
        self.gave_up = gave_up


def test_a_tracking_server_that_cannot_be_started_again_stops_the_study_at_once(tmp_path):
    pool, spawn, chief, oracle, tracker = _study(tmp_path, {})
    view = FakeView()
    view.drain = lambda chief: pytest.fail("the store is gone: nothing may ask it")
    why = "the MLflow tracking server on http://127.0.0.1:5555 stopped 4 times; see x.log"
    outcome = chief_module.supervise_study(chief, pool, oracle, tracker, view, n=2, remote_ok=False, echo=print,
                                           poll_s=0, server=FakeServer(why))
    assert outcome == why
    assert all(proc.terminated for proc in spawn.started)


def test_a_tracking_server_that_stops_is_started_again_on_its_port_then_given_up(tmp_path, monkeypatch):
    import time

    from study.parallel import server as server_module

    class Server(server_module.LocalTrackingServer):
        def start(self):
            self.proc = FakeProcess(["mlflow", "server", "--port", str(self.port)], {}, None)
            self.ports = getattr(self, "ports", []) + [self.port]
            return self

        def wait_ready(self, timeout=0):
            pass

    lines = []
    server = Server(tmp_path / "mlflow.db", tmp_path / "mlruns", tmp_path / "server.log").start()
    server.keep_alive(lines.append, max_restarts=2, poll_s=0.01)

    def until(condition):
        for _ in range(500):  # up to 5 s: the keep-alive thread polls every 10 ms
            if condition():
                return
            time.sleep(0.01)
        pytest.fail(f"never happened; said: {lines}")

    try:
        for restart in (1, 2):
            server.proc.returncode = -signal.SIGKILL
            until(lambda: server.restarts == restart and server.proc.returncode is None)
        assert lines == [f"the MLflow tracking server on {server.uri} stopped; started again on the same port "
                         f"({i}/2)" for i in (1, 2)]
        assert server.ports == [server.port] * 3  # the same port each time: the workers' URI holds
        server.proc.returncode = 1
        until(lambda: server.gave_up)
        assert server.gave_up.startswith(f"the MLflow tracking server on {server.uri} stopped 3 times")
        assert server.gave_up.endswith("nothing is lost; run the same command again")
    finally:
        server.stop()
