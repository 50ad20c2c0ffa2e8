"""Nothing lost, nothing mixed: a study whose MLflow store goes away, and a study whose tuner state is damaged.

Each case is a smoke study of seconds (mnist-5k, 2 tiny trials). The store "goes away" through
SQLAlchemy itself: every write raises sqlite3.OperationalError("attempt to write a readonly
database"), as a database made read-only (or locked past SQLite's busy time-out) does, and MLflow's
own error path turns it into its exception. The retry budget is cut to a second or a few. Every case
ends by counting: each planned trial FINISHED exactly once, no run left RUNNING.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

from study import schema, tracking
from study import store as mlflow_store
from study.cli import main as cli_main
from study.search import SearchError

from conftest import SMOKE, copy_study, store_uri


class StoreFaults:
    """While `down` is set, or for the next `fail_next` writes, every INSERT/UPDATE/DELETE on any SQLite
    store fails as on a read-only database."""

    def __init__(self):
        self.down = False
        self.fail_next = 0
        self.failed = 0

    def __call__(self, conn, cursor, statement, parameters, context, executemany):
        if not statement.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE")):
            return
        if self.down or self.fail_next > 0:
            self.fail_next = max(0, self.fail_next - 1)
            self.failed += 1
            raise sqlite3.OperationalError("attempt to write a readonly database")


@pytest.fixture
def faults(monkeypatch):
    store = StoreFaults()
    event.listen(Engine, "before_cursor_execute", store)
    monkeypatch.setattr(mlflow_store, "STORE_RETRY_S", 1.0)
    yield store
    event.remove(Engine, "before_cursor_execute", store)


def break_store_when_trial_logs(monkeypatch, faults: StoreFaults, nth: int, *, fail_next: int = 0) -> None:
    """The store goes away just as the nth trial, trained, logs its result (finish_trial)."""
    finish_trial = tracking.StudyTracker.finish_trial
    calls = []

    def finish_trial_then_break(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == nth:
            faults.fail_next, faults.down = fail_next, not fail_next
        return finish_trial(self, *args, **kwargs)

    monkeypatch.setattr(tracking.StudyTracker, "finish_trial", finish_trial_then_break)


def each_trial_finished_once(study_runs, folder: Path, n: int, study: str = "smoke"):
    """Every planned trial FINISHED exactly once (one run, COMPLETED) and no run left RUNNING."""
    client, parents, children = study_runs(store_uri(folder), study)
    finished = Counter(c.data.tags[schema.TRIAL_ID] for c in children if c.info.status == "FINISHED")
    assert finished == {str(i): 1 for i in range(n)}, finished
    assert all(c.data.tags[schema.TRIAL_STATUS] == schema.COMPLETED for c in children if c.info.status == "FINISHED")
    assert [r.info.run_id for r in parents + children if r.info.status == "RUNNING"] == []
    return client, parents, children


# --------------------------------------------------------------------------- which errors mean "store away"


def test_only_errors_that_mean_the_store_is_away_are_retried():
    from mlflow.exceptions import MlflowException, RestException

    locked = MlflowException("(sqlite3.OperationalError) database is locked", error_code="TEMPORARILY_UNAVAILABLE")
    locked.__cause__ = sqlite3.OperationalError("database is locked")
    assert tracking.unavailable_reason(locked) == "database is locked"
    refused = MlflowException("API request to http://127.0.0.1:9/api/2.0/mlflow/runs/create failed with exception "
                              "HTTPConnectionPool(host='127.0.0.1', port=9): Max retries exceeded (Caused by "
                              "NewConnectionError('...: Failed to establish a new connection: [Errno 111] "
                              "Connection refused'))")
    assert tracking.unavailable_reason(refused) == "Connection refused"
    assert tracking.unavailable_reason(MlflowException(
        "API request to http://h/api failed with exception ... too many 503 error responses")) == "HTTP 503"
    assert tracking.unavailable_reason(RestException({"error_code": "INTERNAL_ERROR", "message": "boom"}))
    # A bad request, a missing run, a plain bug, a full disk: not the store being away.
    assert tracking.unavailable_reason(RestException({"error_code": "INVALID_PARAMETER_VALUE", "message": "bad"})) is None
    assert tracking.unavailable_reason(MlflowException("Run 'x' not found", error_code="RESOURCE_DOES_NOT_EXIST")) is None
    assert tracking.unavailable_reason(ValueError("bug")) is None
    assert tracking.unavailable_reason(sqlite3.OperationalError("database or disk is full")) is None


def test_an_unreachable_server_is_retried_for_the_budget_then_told_in_one_line(monkeypatch):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once the socket is closed
    monkeypatch.setattr(mlflow_store, "STORE_RETRY_S", 1.0)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    uri = f"http://127.0.0.1:{port}"
    c = tracking.RetryingClient(tracking.client(uri), uri)
    with pytest.raises(tracking.StoreUnavailable) as err:
        c.get_experiment_by_name("smoke")
    assert str(err.value) == (f"the MLflow store {uri} is unavailable (Connection refused): nothing is lost; "
                              "run the same command again once it answers")


# --------------------------------------------------------------------------- the store away during a study


@pytest.mark.slow
def test_a_store_away_briefly_is_retried_and_nothing_is_lost(tmp_path, monkeypatch, faults, run_study, study_runs,
                                                             caplog):
    monkeypatch.setattr(mlflow_store, "STORE_RETRY_S", 10.0)
    break_store_when_trial_logs(monkeypatch, faults, 2, fail_next=2)  # the second trial's first two writes fail
    result, lines = run_study(tmp_path)
    assert faults.failed == 2
    assert (result.completed, result.failed) == (2, 0)
    each_trial_finished_once(study_runs, tmp_path, 2)
    said = [r.getMessage() for r in caplog.records if r.name == "study.store"]
    assert said == [f"the MLflow store {store_uri(tmp_path)} does not answer (attempt to write a readonly database); "
                    "trying again for up to 10 s", f"the MLflow store {store_uri(tmp_path)} answers again"]
    assert "Traceback" not in caplog.text and "SQLAlchemy database error" not in caplog.text


@pytest.mark.slow
@pytest.mark.parametrize("nth", [1, 2], ids=["first-trial", "second-trial"])
def test_a_store_away_for_longer_stops_in_one_line_and_the_resume_runs_each_trial_once(
        nth, tmp_path, monkeypatch, faults, capsys, study_runs):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store_uri(tmp_path))
    break_store_when_trial_logs(monkeypatch, faults, nth)
    assert cli_main(["search", str(SMOKE)]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == (
        f"lenet-study: error: the MLflow store {store_uri(tmp_path)} is unavailable (attempt to write a readonly "
        "database): nothing is lost; run the same command again once it answers")
    assert "Traceback" not in err
    # keras-tuner was not told the trained trial ended: it is still running in the oracle.
    oracle = json.loads((tmp_path / "logs" / ".keras-tuner" / "smoke" / "oracle.json").read_text())
    assert list(oracle["ongoing_trials"].values()) == [str(nth - 1)] and len(oracle["end_order"]) == nth - 1

    faults.down = False  # the store answers again
    assert cli_main(["search", str(SMOKE)]) == 0
    out = capsys.readouterr().out
    assert out.rstrip().splitlines()[-1].startswith("done: 2 trial(s) completed, 0 failed")
    _, parents, children = each_trial_finished_once(study_runs, tmp_path, 2)
    # The invocation that lost the store: its parent run and the trial's run ended KILLED (at the next start).
    assert sorted(p.info.status for p in parents) == ["FINISHED", "KILLED"]
    assert [c.data.tags[schema.TRIAL_ID] for c in children if c.info.status == "KILLED"] == [str(nth - 1)]


# --------------------------------------------------------------------------- damaged tuner state


@pytest.fixture
def copy_of(finished_study, tmp_path):
    """The 2-trial smoke study, copied for one case (store, artifacts and logs) as a search stopped before its
    end would leave it (its tuner state is what these cases damage)."""
    template, result, _ = finished_study
    return copy_study(template, tmp_path / "study", finished=False), result


def damage(path: Path, how: str) -> None:
    if how == "missing":
        path.unlink()
    elif how == "empty":
        path.write_bytes(b"")
    else:  # truncated: half of it, as a kill mid-write leaves it
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])


HOW = ["missing", "empty", "truncated"]


# Each file once in the everyday tier (the damage each is most likely to suffer); every other pair in test-all.
EVERYDAY = {("oracle.json", "truncated"), ("tuner0.json", "missing"), ("trial_1/trial.json", "truncated")}


@pytest.mark.parametrize("name, how", [
    pytest.param(name, how, marks=() if (name, how) in EVERYDAY else pytest.mark.slow, id=f"{name}-{how}")
    for name in ("oracle.json", "tuner0.json", "trial_1/trial.json") for how in HOW])
def test_a_damaged_tuner_file_is_rebuilt_from_the_store(name, how, copy_of, run_study, study_runs):
    folder, _ = copy_of
    damage(folder / "logs" / ".keras-tuner" / "smoke" / name, how)
    n = 3 if name == "oracle.json" else 2  # after a rebuilt oracle, one more trial: a new id, not an old one
    result, lines = run_study(folder, max_trials=n)
    assert (result.completed, result.failed) == (n, 0)
    _, parents, _ = each_trial_finished_once(study_runs, folder, n)
    assert [p.info.status for p in parents] == ["FINISHED", "FINISHED"]
    told = [line for line in lines if name in line]
    if name == "tuner0.json" and how == "missing":
        assert told == [f"{folder}/logs/.keras-tuner/smoke/tuner0.json was missing: written again"]
    else:
        assert len(told) == 1 and (" rebuilt " in told[0] or "written again" in told[0]), lines
    assert any("resuming: 2 trial(s) already finished are kept" in line for line in lines)


@pytest.mark.slow
def test_an_oracle_and_a_trial_file_both_damaged_are_rebuilt(copy_of, run_study, study_runs):
    folder, _ = copy_of
    state = folder / "logs" / ".keras-tuner" / "smoke"
    damage(state / "oracle.json", "truncated")
    damage(state / "trial_0" / "trial.json", "missing")
    result, lines = run_study(folder, max_trials=3)
    assert (result.completed, result.failed) == (3, 0)
    each_trial_finished_once(study_runs, folder, 3)


def test_a_trial_file_the_store_cannot_rebuild_is_refused_in_one_line(copy_of, run_study, study_runs):
    folder, _ = copy_of
    client, parents, children = study_runs(store_uri(folder), "smoke")
    for run in children:  # runs logged before the trial values were recorded
        if run.data.tags[schema.TRIAL_ID] == "1":
            client.delete_tag(run.info.run_id, schema.TRIAL_VALUES)
    path = folder / "logs" / ".keras-tuner" / "smoke" / "trial_1" / "trial.json"
    damage(path, "truncated")
    with pytest.raises(SearchError) as err:
        run_study(folder)
    assert str(err.value) == (f"{path} is truncated or not JSON, and the MLflow store holds no run of trial 1 "
                              f"(search {children[0].data.tags[schema.SEARCH_ID]}) to rebuild it from: start the "
                              "study over with --fresh (its runs stay in MLflow)")
    _, after, _ = study_runs(store_uri(folder), "smoke")
    assert len(after) == len(parents)  # refused before a parent run was created


def test_a_hyperband_oracle_cannot_be_rebuilt_and_is_refused(copy_of, study_runs):
    from study.space import load_space
    from study.state import repair_tuner_state

    folder, _ = copy_of
    state = folder / "logs" / ".keras-tuner" / "smoke"
    damage(state / "oracle.json", "empty")
    client, parents, children = study_runs(store_uri(folder), "smoke")
    tracker = tracking.StudyTracker("smoke", store_uri(folder), search_id=children[0].data.tags[schema.SEARCH_ID])
    with pytest.raises(SearchError, match=r"oracle.json is empty, and a Hyperband schedule cannot be rebuilt "
                                          r"from the trial files: start the study over with --fresh"):
        repair_tuner_state(state, tracker, load_space(SMOKE), "hyperband")
    assert (state / "tuner0.json").exists()  # nothing changed


@pytest.mark.parametrize("how", ["missing", "truncated"])
def test_a_damaged_best_checkpoint_gives_the_result_without_a_test_figure(how, copy_of, run_study, study_runs):
    folder, first = copy_of
    checkpoint = folder / "logs" / ".keras-tuner" / "smoke" / f"trial_{first.best_trial_id}" / "checkpoint.weights.h5"
    damage(checkpoint, how)
    result, lines = run_study(folder)
    assert result.best_trial_id == first.best_trial_id and result.test_accuracy is None
    _, parents, children = each_trial_finished_once(study_runs, folder, 2)
    said = [line for line in lines if "not evaluated on the test set" in line]
    assert len(said) == 1 and str(checkpoint) in said[0]
    assert ("is missing" if how == "missing" else "is damaged") in said[0]
    best_run = next(c for c in children if c.data.tags[schema.TRIAL_ID] == first.best_trial_id)
    assert said[0].endswith(f"`lenet-study train --run {best_run.info.run_id}` trains its configuration again")
    newest = max(parents, key=lambda p: p.info.start_time)
    assert newest.info.status == "FINISHED" and "test_accuracy" not in newest.data.metrics
