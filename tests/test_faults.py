"""Nothing lost, nothing mixed: names that are paths, --fresh, a full disk, a study started twice, a resume
with other settings. Each fault ends in one line (exit code 2) and leaves what was recorded as it was."""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import copy_study
from study import schema
from study.cli import main as cli_main
from study.files import NAME_RULE, folder_name, shown

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "search_spaces" / "smoke.yaml"
STUDY_FILES = {"logs", "mlflow.db", "mlruns", "smoke.yaml"}  # what a study in its own folder leaves there


# --------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def finished(finished_study):
    """The finished smoke study (2 trials) in its own folder: smoke.yaml, logs/, mlflow.db, mlruns/. Copy it."""
    return finished_study[0]


def enter(folder: Path, monkeypatch) -> Path:
    """`folder` as the current directory, its ./mlflow.db as the store (by its absolute path: MLflow keeps
    one database engine per URI for the whole process)."""
    monkeypatch.chdir(folder)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{folder}/mlflow.db")
    return folder


@pytest.fixture
def work(tmp_path, monkeypatch):
    """An empty project folder as the current directory, with its own store."""
    (tmp_path / "project").mkdir()
    return enter(tmp_path / "project", monkeypatch)


def search(capsys, *args) -> tuple[int, list[str], str]:
    """`lenet-study search ...` in this process: (exit code, stderr lines, stdout)."""
    code = cli_main(["search", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.err.strip().splitlines(), captured.out


def snapshot(folder: Path, skip: tuple[str, ...] = ()) -> dict[str, bytes | None]:
    """Every path below `folder` (files with their bytes), leaving out those under `skip`."""
    out = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if not any(rel == s or rel.startswith(s + "/") for s in skip):
            out[rel] = path.read_bytes() if path.is_file() and not path.is_symlink() else None
    return out


def runs(folder: Path, study: str = "smoke"):
    """(parents, trial runs) of a study in the store under `folder`."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{folder}/mlflow.db")
    every = client.search_runs([client.get_experiment_by_name(study).experiment_id], max_results=1000)
    return ([r for r in every if r.data.tags.get(schema.ROLE) == schema.ROLE_STUDY],
            [r for r in every if r.data.tags.get(schema.ROLE) == schema.ROLE_TRIAL])


def assert_each_trial_finished_once(folder: Path, trial_ids: set[str]) -> None:
    _, children = runs(folder)
    finished = [c.data.tags[schema.TRIAL_ID] for c in children if c.info.status == "FINISHED"]
    assert sorted(finished) == sorted(trial_ids)
    assert not [c for c in children if c.info.status == "RUNNING"]


def assert_state_parses(folder: Path) -> None:
    """Every state file keras-tuner wrote parses, and no temporary file is left."""
    tuner_dir = folder / "logs" / ".keras-tuner" / "smoke"
    files = list(tuner_dir.rglob("*.json"))
    assert tuner_dir / "oracle.json" in files and any(f.name == "trial.json" for f in files)
    for path in files:
        json.loads(path.read_text())
    assert not list(tuner_dir.rglob("*.tmp"))


# --------------------------------------------------------------------------- names


BAD_NAMES = [".", "..", "x" * 300, "a/b", "../escape", "a\\b", "a\x00b", ".hidden", "-dash"]


@pytest.mark.parametrize("name", BAD_NAMES, ids=lambda n: repr(n[:12]))
def test_a_study_name_that_is_not_one_folder_is_refused_in_one_line(name, work, capsys):
    for extra in ([], ["--workers", "2"]):
        code, err, _ = search(capsys, SMOKE, f"--name={name}", "--fresh", *extra)
        assert code == 2
        assert err == [f"lenet-study: error: --name {shown(name)}: use {NAME_RULE}"]
    assert [p.name for p in work.parent.rglob("*")] == ["project"]  # nothing in the project folder or beside it


def test_a_worker_checks_its_study_name_and_tuner_id(work, capsys):
    for flag, name in (("--study", ".."), ("--tuner-id", "../../x")):
        args = ["worker", "--oracle", "127.0.0.1:9", "--study", "smoke", f"{flag}={name}"]
        assert cli_main(args) == 2
        assert capsys.readouterr().err.strip().splitlines() == [f"lenet-study: error: {flag} {shown(name)}: use {NAME_RULE}"]
    assert not list(work.iterdir())


@pytest.mark.parametrize("name", BAD_NAMES + ["smoke"], ids=lambda n: repr(n[:12]))
def test_any_name_already_in_a_store_maps_to_one_folder(name, tmp_path):
    from study.report.render import study_dir

    out = study_dir(tmp_path / "reports", name)
    assert out.parent == tmp_path / "reports" and out.name not in (".", "..") and len(out.name) <= 100
    assert (out.name == name) == (name == "smoke")
    assert len({folder_name(n) for n in BAD_NAMES}) == len(BAD_NAMES)  # no two names share a folder
    assert "/" not in schema.registered_model_name(name) and ":" not in schema.registered_model_name(name)


def test_the_report_of_a_study_named_dotdot_stays_in_reports(finished, tmp_path):
    from mlflow.tracking import MlflowClient

    from study.report import write_report

    folder = copy_study(finished, tmp_path / "copy")
    client = MlflowClient(f"sqlite:///{folder}/mlflow.db")
    client.rename_experiment(client.get_experiment_by_name("smoke").experiment_id, "..")  # named before the rule
    before = snapshot(folder, skip=("mlflow.db", "mlruns"))
    out = write_report("..", out_root=folder / "reports", tracking_uri=f"sqlite:///{folder}/mlflow.db")
    assert out == folder / "reports" / folder_name("..") and (out / "report.md").is_file()
    assert snapshot(folder, skip=("mlflow.db", "mlruns", "reports")) == before


# --------------------------------------------------------------------------- --fresh


@pytest.mark.slow
def test_fresh_starts_the_study_over_and_removes_nothing_else(finished, tmp_path, monkeypatch, capsys):
    folder = copy_study(finished, tmp_path / "copy")
    enter(folder, monkeypatch)
    for path in ("logs/.keras-tuner/other/oracle.json", "logs/.keras-tuner/smoke-2/oracle.json",
                 "logs/other/events", "logs/notes.txt", "reports/smoke/report.md"):
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_text(path)
    old_search = (folder / "logs/.keras-tuner/smoke/search_id").read_text()
    others = snapshot(folder, skip=("logs/.keras-tuner/smoke", "logs/smoke", "mlflow.db", "mlruns"))
    code, err, out = search(capsys, "smoke.yaml", "--fresh")
    assert code == 0, err
    assert "done: 2 trial(s) completed" in out
    assert snapshot(folder, skip=("logs/.keras-tuner/smoke", "logs/smoke", "mlflow.db", "mlruns")) == others
    assert (folder / "logs/.keras-tuner/smoke/search_id").read_text() != old_search


def test_fresh_never_follows_a_link_out_of_the_tuner_folder(work, capsys):
    shutil.copy(SMOKE, work / "smoke.yaml")
    victim = work.parent / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me")
    (work / "logs" / ".keras-tuner").mkdir(parents=True)
    (work / "logs" / ".keras-tuner" / "smoke").symlink_to(victim, target_is_directory=True)
    code, err, _ = search(capsys, "smoke.yaml", "--fresh")
    assert code == 2 and len(err) == 1
    assert err[0].startswith("lenet-study: error: --fresh: logs/.keras-tuner/smoke is not study 'smoke''s own folder")
    assert (victim / "precious.txt").read_text() == "keep me"
    assert not (work / "mlflow.db").exists()  # refused before the study was opened


# --------------------------------------------------------------------------- a full disk


def _fail_once(monkeypatch, target, name: str, when):
    """Make target.name raise ENOSPC the first time when(args) holds."""
    real = getattr(target, name)
    failed = []

    def fake(*args, **kwargs):
        if not failed and when(*args):
            failed.append(args)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(*args, **kwargs)

    monkeypatch.setattr(target, name, fake)
    return failed


def _completing_trial_1(fd) -> bool:
    """A write of trial_1/trial.json that records it COMPLETED (oracle.end_trial), about to be synced."""
    path = os.readlink(f"/proc/self/fd/{fd}")
    return "/trial_1/.trial.json." in path and '"status": "COMPLETED"' in Path(path).read_text()


def _trial_1_checkpoint(model, filepath, *args) -> bool:
    return "trial_1" in str(filepath)


@pytest.mark.slow
@pytest.mark.parametrize("where", ["trial.json", "checkpoint"])
def test_a_full_disk_stops_the_study_in_one_line_and_the_same_command_resumes_it(where, work, monkeypatch, capsys):
    import keras

    shutil.copy(SMOKE, work / "smoke.yaml")
    if where == "trial.json":  # the tuner's state, written as fsync reports a full disk
        failed = _fail_once(monkeypatch, os, "fsync", _completing_trial_1)
    else:  # a checkpoint, written during trial 1's fit
        failed = _fail_once(monkeypatch, keras.Model, "save_weights", _trial_1_checkpoint)
    code, err, _ = search(capsys, "smoke.yaml")
    assert failed and code == 2
    # The file, when the error says (state files do); else the log folder (h5py's error names no file).
    held = "logs/.keras-tuner/smoke/trial_1/trial.json" if where == "trial.json" else work / "logs"
    assert err == [f"lenet-study: error: no space left on the device holding {held}: "
                   "free some space and run the same command again to resume"]
    assert_state_parses(work)
    (parent,), children = runs(work)
    assert parent.info.status == "FAILED"
    status = {c.data.tags[schema.TRIAL_ID]: c.info.status for c in children}
    # Trial 1 finished before its record could be written, or its fit was stopped: it runs again, or not.
    assert status == {"0": "FINISHED", "1": "FINISHED" if where == "trial.json" else "KILLED"}

    code, err, out = search(capsys, "smoke.yaml")
    assert code == 0, err
    assert "done: 2 trial(s) completed, 0 failed" in out
    assert ("trial 1 already finished" in out) == (where == "trial.json")  # trained once, not twice
    assert_state_parses(work)
    assert_each_trial_finished_once(work, {"0", "1"})
    assert sorted(p.info.status for p in runs(work)[0]) == ["FAILED", "FINISHED"]
    assert {p.name for p in work.iterdir()} == STUDY_FILES
    assert {p.name for p in (work / "logs").iterdir()} == {".keras-tuner", "smoke"}
    assert {p.name for p in (work / "logs" / ".keras-tuner").iterdir()} == {"smoke"}  # the lock is gone


@pytest.mark.slow
def test_no_trial_starts_on_a_device_with_almost_no_space_left(work, monkeypatch, capsys):
    shutil.copy(SMOKE, work / "smoke.yaml")
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda path: real(path)._replace(free=2**20))
    code, err, _ = search(capsys, "smoke.yaml")
    assert code == 2
    assert err == [f"lenet-study: error: no space left on the device holding {work / 'logs'}: free some space "
                   "and run the same command again to resume"]
    (parent,), children = runs(work)
    assert parent.info.status == "FAILED" and not children


# --------------------------------------------------------------------------- one study, one chief


@pytest.mark.slow
def test_a_second_start_of_a_running_study_is_refused_naming_the_holder(work, capsys):
    from study.lock import lock_path

    shutil.copy(SMOKE, work / "smoke.yaml")
    first = subprocess.Popen([sys.executable, "-m", "study.cli", "search", "smoke.yaml"], cwd=work,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lock = lock_path(work / "logs", "smoke")
    try:
        deadline = time.monotonic() + 300  # a guard against a hang, not a measurement
        while not (work / "logs" / "smoke").exists():  # its first trial is training: its run is RUNNING
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.1)
        for extra in ([], ["--workers", "2"], ["--fresh"]):
            code, err, _ = search(capsys, "smoke.yaml", *extra)
            assert code == 2 and len(err) == 1
            assert err[0].startswith(f"lenet-study: error: study 'smoke' is already running: process {first.pid} "
                                     f"on host {socket.gethostname()} holds logs/.keras-tuner/.smoke.lock (since ")
        out, err = first.communicate(timeout=600)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == 0, err
    assert "done: 2 trial(s) completed" in out
    parents, children = runs(work)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"  # the refused starts opened nothing
    assert [c.info.status for c in children] == ["FINISHED", "FINISHED"]  # nothing marked KILLED
    assert_each_trial_finished_once(work, {"0", "1"})
    assert not lock.exists()


def test_a_stale_lock_does_not_block_the_study(finished, tmp_path, monkeypatch, capsys):
    from study.lock import lock_path

    folder = copy_study(finished, tmp_path / "copy", finished=False)  # the search the lock's holder ran was killed
    enter(folder, monkeypatch)
    gone = subprocess.Popen(["true"])
    gone.wait()
    lock = lock_path(folder / "logs", "smoke")
    lock.write_text(json.dumps({"pid": gone.pid, "host": socket.gethostname(), "started": time.time(),
                                "renewed": time.time(), "lease_s": 120, "token": "a killed search"}))
    code, err, out = search(capsys, "smoke.yaml")
    assert code == 0, err
    assert "resuming: 2 trial(s) already finished are kept" in out
    assert_each_trial_finished_once(folder, {"0", "1"})
    assert not lock.exists()


def test_a_holder_on_another_host_blocks_until_its_lease_runs_out(tmp_path):
    from study.lock import StudyLock, lock_path
    from study.search import SearchError

    lock = lock_path(tmp_path / "logs", "smoke")
    lock.parent.mkdir(parents=True)
    record = {"pid": 4242, "host": "elsewhere.invalid", "started": time.time(), "renewed": time.time(),
              "lease_s": 120, "token": "theirs"}
    lock.write_text(json.dumps(record))
    with pytest.raises(SearchError, match="process 4242 on host elsewhere.invalid holds"):
        StudyLock(tmp_path / "logs", "smoke").acquire()
    assert json.loads(lock.read_text())["token"] == "theirs"
    lock.write_text(json.dumps({**record, "renewed": time.time() - 121}))
    with StudyLock(tmp_path / "logs", "smoke") as mine:
        held = json.loads(lock.read_text())
        assert held["token"] == mine.token and held["pid"] == os.getpid()
    assert not lock.exists()
    assert sorted(p.name for p in lock.parent.iterdir()) == []  # no temporary or set-aside file left


# --------------------------------------------------------------------------- resume with other settings


def test_a_resume_with_another_seed_is_refused_before_anything_is_written(finished, tmp_path, monkeypatch, capsys):
    folder = copy_study(finished, tmp_path / "copy")
    enter(folder, monkeypatch)
    before = snapshot(folder, skip=("mlflow.db",))
    code, err, _ = search(capsys, "smoke.yaml", "--seed", "1", "--max-trials", "3")
    assert code == 2
    assert err == ["lenet-study: error: study 'smoke' has trials run with other settings: seed 0 → 1; resume it as "
                   "it was, start it over with --fresh, or run this as another --name"]
    assert len(runs(folder)[0]) == 1 and snapshot(folder, skip=("mlflow.db",)) == before


def test_a_resume_with_an_edited_space_file_is_refused(finished, tmp_path, monkeypatch, capsys):
    from study.space import load_space

    folder = copy_study(finished, tmp_path / "copy")
    enter(folder, monkeypatch)
    old = load_space(folder / "smoke.yaml").digest
    space = folder / "smoke.yaml"
    space.write_text(space.read_text().replace("choice: [max, avg]", "choice: [avg, max]"))
    new = load_space(space).digest
    code, err, _ = search(capsys, "smoke.yaml", "--workers", "2")
    assert code == 2
    assert err == [f"lenet-study: error: study 'smoke' has trials run with other settings: space file smoke.yaml "
                   f"(sha256 {old[:12]} → {new[:12]}); resume it as it was, start it over with --fresh, or run this "
                   "as another --name"]
    parents, children = runs(folder)
    assert len(parents) == 1 and all(c.info.status == "FINISHED" for c in children)
