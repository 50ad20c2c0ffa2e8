"""Parallel trials (study/parallel/): keras-tuner's chief/worker mode, every trial tracked once.

Real processes on loopback only: `lenet-study search --workers 2` on the smoke space
(a few hundred digits, 1 epoch), with its own MLflow tracking server in front of
SQLite; a worker killed mid-trial; the same study logged to a PostgreSQL-backed
`mlflow server` started here (skipped where PostgreSQL is not installed; .ci/run installs it).
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from study import schema
from study.cli import main as cli_main
from study.model import LeNetConfig
from study.parallel.net import parse_address
from study.parallel.supervise import parse_workers
from study.search import SearchError
from study.space import StudySettings, load_space

pytestmark = pytest.mark.slow  # real processes: chief, workers, tracking servers, PostgreSQL

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "search_spaces" / "smoke.yaml"
STUDY = "dist"
# 4 trials (the smoke space's 2 x 2 configurations), oracle seed 1: the same trial ids get the same knobs.
SEARCH = ["search", str(SMOKE), "--workers", "2", "--max-trials", "4", "--seed", "1", "--name", STUDY]


def _env(**extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("MLFLOW_TRACKING_URI", "LENET_DATA_DIR") and not k.startswith("KERASTUNER_")}
    env.update(PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(ROOT), **extra)
    return env


def _cli(args, cwd, timeout=240, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "study.cli", *args], cwd=cwd, env=_env(**env),
                          capture_output=True, text=True, timeout=timeout)


def _port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for cmdline in glob.glob("/proc/[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            args = Path(cmdline).read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if text in args and "pytest" not in args:
                found.append(args)
    return found


def _assert_tracked_once(study_runs, uri: str, n_trials: int = 4, workers=("worker0", "worker1"),
                         n_workers: str = "2"):
    """One parent run, every trial exactly once as its child, each naming its worker; nothing RUNNING."""
    client, parents, children = study_runs(uri, STUDY)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    parent = parents[0]
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    ids = sorted(c.data.tags[schema.TRIAL_ID] for c in children)
    assert ids == [str(i) for i in range(n_trials)], ids  # every trial, none twice
    assert all(c.info.status == "FINISHED" and c.data.tags[schema.TRIAL_STATUS] == "COMPLETED" for c in children)
    assert {c.data.tags[schema.WORKER] for c in children} <= set(workers)
    assert parent.data.params["workers"] == n_workers
    assert parent.data.metrics["n_trials_completed"] == n_trials and 0 <= parent.data.metrics["test_accuracy"] <= 1
    assert "best_model.keras" in {f.path for f in client.list_artifacts(parent.info.run_id)}
    return parent, children


@pytest.fixture(scope="module")
def sqlite_study(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("two-workers")
    started = time.monotonic()
    proc = _cli(SEARCH, cwd=tmp)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return tmp, proc.stdout, time.monotonic() - started


# --------------------------------------------------------------------------- fast checks


def test_addresses_and_worker_counts():
    assert parse_address(None) == ("127.0.0.1", 0)
    assert parse_address("10.0.0.5") == ("10.0.0.5", 0)
    assert parse_address("10.0.0.5:7000") == ("10.0.0.5", 7000)
    assert parse_address(":7000") == ("127.0.0.1", 7000)
    assert parse_address("[::1]:7000") == ("::1", 7000)
    with pytest.raises(SearchError, match="HOST:PORT"):
        parse_address("chief", need_port=True)
    with pytest.raises(SearchError, match="port"):
        parse_address("chief:http")
    assert parse_workers("3") == 3 and parse_workers("auto") >= 1 and parse_workers(0) == 0
    with pytest.raises(SearchError, match="number or 'auto'"):
        parse_workers("many")


def test_worker_reads_the_chiefs_settings_back_from_the_parent_run():
    space = load_space(SMOKE)
    settings = space.settings.override(max_trials=7, epochs=3, seed=5)
    params = {"tuner": "random", "max_trials": "7", "epochs": "3", "patience": "1", "dataset": "mnist-5k",
              "executions_per_trial": "1", "seed": "5", "val_fraction": "0.25", "test_eval": "best",
              "train_samples": "400", "hyperband_factor": "3", "data_resolved": "mnist-5k"}
    assert StudySettings.from_params(params, base=space.settings) == settings
    assert StudySettings.from_params({**params, "train_samples": "all"}, base=space.settings).train_samples is None
    assert StudySettings.from_params(settings.to_params(), base=space.settings) == settings  # the round trip


def test_search_refuses_what_cannot_work(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert cli_main(["search", str(SMOKE), "--workers", "0"]) == 2
    assert "--workers 0 runs the chief only: give --oracle-bind" in capsys.readouterr().err
    # Remote workers could not write to a SQLite file on this machine.
    assert cli_main(["search", str(SMOKE), "--workers", "1", "--oracle-bind", "0.0.0.0:7000"]) == 2
    assert "remote workers cannot write to the local store" in capsys.readouterr().err
    assert cli_main(["search", str(SMOKE), "--workers", "two"]) == 2
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "logs").exists()
    # A worker needs the study's tracking server.
    assert cli_main(["worker", "--oracle", "127.0.0.1:7000", "--study", "smoke"]) == 2
    assert "set MLFLOW_TRACKING_URI=http://" in capsys.readouterr().err


# --------------------------------------------------------------------------- a local 2-worker study


def test_two_workers_track_every_trial_once_under_one_parent(sqlite_study, study_runs):
    tmp, out, seconds = sqlite_study
    parent, children = _assert_tracked_once(study_runs, f"sqlite:///{tmp}/mlflow.db")
    print(f"2-worker smoke study: {seconds:.1f} s; workers used: "
          f"{sorted({c.data.tags[schema.WORKER] for c in children})}")
    # Artifacts went to ./mlruns beside mlflow.db, as in a single-process study.
    assert parent.info.artifact_uri.startswith((tmp / "mlruns").as_uri())
    assert (tmp / "logs" / ".keras-tuner" / STUDY / "tuner0.json").exists()  # a plain search can resume it
    # TensorBoard: one folder per trial, whichever worker ran it.
    assert sorted(p.name for p in (tmp / "logs" / STUDY).iterdir()) == ["0", "1", "2", "3"]
    # The champion was registered through the temporary tracking server, into the same SQLite store.
    champion = MlflowClient(f"sqlite:///{tmp}/mlflow.db").get_model_version_by_alias(f"lenet-{STUDY}", "champion")
    assert champion.tags[schema.TRIAL_ID] == parent.data.tags[schema.BEST_TRIAL_ID]
    assert f"as models:/lenet-{STUDY}@champion" in out


def test_one_progress_view_and_worker_logs(sqlite_study):
    tmp, out, _ = sqlite_study
    lines = [line for line in out.splitlines() if line.startswith("[")]
    assert [line.split("]")[0] for line in lines] == ["[1/4", "[2/4", "[3/4", "[4/4"]
    assert sorted(re.search(r"trial (\d+) ", line).group(1) for line in lines) == ["0", "1", "2", "3"]
    assert all(re.search(r"\[worker[01]\] \| val_acc 0\.\d+ \| 1 ep", line) for line in lines), lines
    assert "oracle (keras-tuner chief) listening on 127.0.0.1:" in out
    assert "View run" not in out  # MLflow's links would point at the temporary tracking server
    assert out.rstrip().splitlines()[-1].startswith("done: 4 trial(s) completed, 0 failed")
    folder = tmp / "logs" / ".keras-tuner" / STUDY
    for i in (0, 1):
        assert "the oracle has no more trials; done" in (folder / f"worker{i}.log").read_text()


def test_tracking_server_and_workers_are_gone_afterwards(sqlite_study):
    tmp, out, _ = sqlite_study
    port = int(re.search(r"tracking server http://127\.0\.0\.1:(\d+)", out).group(1))
    assert not _port_open(port)
    assert not _processes_mentioning(str(tmp))


# --------------------------------------------------------------------------- a process killed mid-study


def _study_killing(tmp_path, kill) -> tuple[str, object]:
    """The 2-worker smoke study (3 epochs: a trial runs for a few seconds, long enough to be caught
    RUNNING), with kill(output so far) called every 0.2 s until it kills something and says what;
    returns (the study's output, what was killed) once the study has ended well."""
    proc = subprocess.Popen([sys.executable, "-m", "study.cli", *SEARCH, "--epochs", "3"], cwd=tmp_path,
                            env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    killed = None
    try:
        deadline = time.monotonic() + 180
        while killed is None and time.monotonic() < deadline and proc.poll() is None:
            killed = kill("".join(lines))
            time.sleep(0.2)
        assert killed is not None, "nothing to kill: " + "".join(lines)[-3000:]
        assert proc.wait(240) == 0, "".join(lines)[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    reader.join(10)
    return "".join(lines), killed


def test_a_worker_killed_mid_trial_is_restarted_and_the_study_completes(tmp_path, study_runs):
    def kill_worker0(text):
        uri = (m := re.search(r"tracking server (http://127\.0\.0\.1:\d+)", text)) and m.group(1)
        pid = (m := re.search(r"worker0 \(pid (\d+)\)", text)) and int(m.group(1))
        if uri and pid:
            client = MlflowClient(uri)
            exp = client.get_experiment_by_name(STUDY)
            flt = f"tags.`{schema.WORKER}` = 'worker0' and attributes.status = 'RUNNING'"
            if exp and client.search_runs([exp.experiment_id], flt):
                # Freeze it, check its trial is still running, then kill: no race with the trial's end.
                os.kill(pid, signal.SIGSTOP)
                running = client.search_runs([exp.experiment_id], flt)
                if running:
                    os.kill(pid, signal.SIGKILL)
                    return running[0].data.tags[schema.TRIAL_ID]
                os.kill(pid, signal.SIGCONT)
        return None

    out, killed = _study_killing(tmp_path, kill_worker0)
    assert re.search(rf"worker0 died \(killed by SIGKILL\); its run for trial {killed} marked KILLED; restarted", out)
    client, parents, children = study_runs(f"sqlite:///{tmp_path}/mlflow.db", STUDY)
    assert [p.info.status for p in parents] == ["FINISHED"]
    assert not [c for c in children if c.info.status == "RUNNING"]
    dead = [c for c in children if c.info.status == "KILLED"]
    assert [(c.data.tags[schema.TRIAL_ID], c.data.tags[schema.WORKER]) for c in dead] == [(killed, "worker0")]
    assert dead[0].data.tags[schema.TRIAL_STATUS] == "KILLED"
    # keras-tuner retried the killed trial; the study reached its budget with each trial finished once.
    finished = sorted(c.data.tags[schema.TRIAL_ID] for c in children if c.info.status == "FINISHED")
    assert finished == ["0", "1", "2", "3"]
    assert parents[0].data.metrics["n_trials_completed"] == 4
    assert len([line for line in out.splitlines() if line.startswith("[")]) == 4


def test_a_tracking_server_killed_mid_study_is_started_again_and_nothing_is_lost(tmp_path, study_runs):
    def kill_server(text):
        port = (m := re.search(r"tracking server http://127\.0\.0\.1:(\d+)", text)) and m.group(1)
        if port and "[1/4]" in text:  # a trial logged, the others running: kill what serves the port
            for cmdline in glob.glob("/proc/[0-9]*/cmdline"):
                with contextlib.suppress(OSError):
                    args = Path(cmdline).read_bytes().replace(b"\0", b" ").decode(errors="replace")
                    if "uvicorn" in args and f"--port {port}" in args:
                        os.kill(int(cmdline.split("/")[2]), signal.SIGKILL)
                        return port
        return None

    out, port = _study_killing(tmp_path, kill_server)
    assert re.search(rf"the MLflow tracking server on http://127\.0\.0\.1:{port} stopped; started again on the "
                     r"same port \(1/3\)", out), out[-3000:]
    assert "Traceback" not in out
    _assert_tracked_once(study_runs, f"sqlite:///{tmp_path}/mlflow.db")
    assert len([line for line in out.splitlines() if line.startswith("[")]) == 4
    assert not _port_open(int(port)) and not _processes_mentioning(str(tmp_path))


# --------------------------------------------------------------------------- PostgreSQL behind `mlflow server`


def _pg_bindir() -> Path | None:
    candidates = []
    if shutil.which("pg_ctl"):
        candidates.append(Path(shutil.which("pg_ctl")).resolve().parent)
    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
    return next((d for d in candidates if (d / "initdb").exists() and (d / "pg_ctl").exists()), None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited: {log.read_text()[-2000:]}")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2):
            return
        time.sleep(0.5)
    raise RuntimeError(f"mlflow server did not start: {log.read_text()[-2000:]}")


@pytest.fixture(scope="module")
def postgres_mlflow():
    """A throwaway PostgreSQL cluster and an `mlflow server` on it, both on loopback; gone at teardown."""
    bindir = _pg_bindir()
    if bindir is None:  # tests install nothing; .ci/run installs PostgreSQL before `make test-all`
        pytest.skip("PostgreSQL is not installed here (no initdb/pg_ctl): apt-get install postgresql")
    # SQLAlchemy 2.1 reaches postgresql:// through psycopg 3.
    pytest.importorskip("psycopg", reason="psycopg is missing: pip install -e '.[dev]'")
    # Not under pytest's tmp_path: the postgres user must reach it (pytest's folders are private to root).
    base = Path(tempfile.mkdtemp(prefix="lenet-pg-"))
    as_postgres = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        shutil.chown(base, "postgres", "postgres")
        as_postgres = ["runuser", "-u", "postgres", "--"]
    data, pg_port, port = base / "data", _free_port(), _free_port()
    server = None
    try:
        subprocess.run([*as_postgres, str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust",
                        "--no-sync", "-E", "UTF8"], check=True, capture_output=True, timeout=120)
        subprocess.run([*as_postgres, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(base / "postgres.log"),
                        "-w", "-t", "60", "-o",
                        f"-c listen_addresses=127.0.0.1 -p {pg_port} -k {base} -c fsync=off", "start"],
                       check=True, capture_output=True, timeout=120)
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=pg_port, user="postgres", dbname="postgres",
                             autocommit=True) as conn:
            conn.execute("CREATE DATABASE mlflow")
        log = base / "mlflow-server.log"
        with open(log, "wb") as out:
            server = subprocess.Popen(
                [sys.executable, "-m", "mlflow", "server",
                 "--backend-store-uri", f"postgresql://postgres@127.0.0.1:{pg_port}/mlflow",
                 "--artifacts-destination", str(base / "artifacts"),  # served through the server
                 "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                env={**_env(), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
            )
        _wait_http(f"http://127.0.0.1:{port}/health", server, log)
        yield f"http://127.0.0.1:{port}"
    finally:
        if server is not None and server.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
        subprocess.run([*as_postgres, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(base, ignore_errors=True)


def test_postgresql_backed_server_ends_with_the_same_runs_as_sqlite(postgres_mlflow, sqlite_study, tmp_path,
                                                                   study_runs):
    """The set-up the README gives for several machines, on loopback: a chief serving the oracle and a
    `lenet-study worker --workers 2` joining it, both logging to a PostgreSQL-backed `mlflow server`."""
    port = _free_port()
    chief = subprocess.Popen(
        [sys.executable, "-m", "study.cli", *SEARCH[:3], "0", *SEARCH[4:], "--oracle-bind", f"127.0.0.1:{port}"],
        cwd=tmp_path, env=_env(MLFLOW_TRACKING_URI=postgres_mlflow), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    try:
        worker = _cli(["worker", "--oracle", f"127.0.0.1:{port}", "--study", STUDY, "--workers", "2",
                       "--tuner-id", "pg"], cwd=tmp_path, MLFLOW_TRACKING_URI=postgres_mlflow)
        out, _ = chief.communicate(timeout=120)
    finally:
        if chief.poll() is None:
            chief.kill()
    assert worker.returncode == 0, worker.stdout[-3000:] + worker.stderr[-3000:]
    assert chief.returncode == 0, out[-3000:]
    assert "tracking server" not in out and not (tmp_path / "mlflow.db").exists()  # no local server: the given one
    assert f"workers join with: MLFLOW_TRACKING_URI={postgres_mlflow} lenet-study worker --oracle 127.0.0.1:{port}" in out
    assert "pg-0: done" in worker.stdout and "pg-1: done" in worker.stdout
    pg_parent, pg_children = _assert_tracked_once(study_runs, postgres_mlflow, workers={"pg-0", "pg-1"},
                                                  n_workers="0")
    _, sq_children = _assert_tracked_once(study_runs, f"sqlite:///{sqlite_study[0]}/mlflow.db")

    def knobs(children):
        return {c.data.tags[schema.TRIAL_ID]: LeNetConfig.from_params(c.data.params) for c in children}

    assert knobs(pg_children) == knobs(sq_children)


def test_a_worker_refuses_a_space_file_that_is_not_the_chiefs(postgres_mlflow, tmp_path, monkeypatch, capsys):
    client = MlflowClient(postgres_mlflow)
    exp = client.create_experiment("refuse")
    client.create_run(exp, tags={schema.ROLE: schema.ROLE_STUDY, schema.STUDY: "refuse", schema.SEARCH_ID: "x",
                                 schema.SPACE_DIGEST: "0" * 64, schema.ORACLE: "127.0.0.1:9"})
    monkeypatch.setenv("MLFLOW_TRACKING_URI", postgres_mlflow)
    assert cli_main(["worker", "--oracle", "127.0.0.1:9", "--study", "refuse", "--space", str(SMOKE)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"lenet-study: error: {SMOKE}: not the chief's space file") and "\n" not in err
