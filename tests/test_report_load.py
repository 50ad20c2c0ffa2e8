"""Reports that scale: a database store is read in a few queries (study/bulk.py) and gives the very frames
the MLflow client gives, run by run; runs copied in bulk read back like their sources; the notebooks
reuse the study the report loaded. The store is tests/test_report.py's."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from test_report import build_store

from study import bulk, report, schema, tracking
from study.report.load import RunHistories


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return build_store(tmp_path_factory.mktemp("mlflow-load"))


def _same_columns(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[sorted(frame.columns)].reset_index(drop=True)


@pytest.mark.parametrize("experiment", ["documented", "lenet", "broken", "scratch"])
def test_the_bulk_runs_frame_is_mlflow_search_runs(store, experiment):
    exp = store.experiments[experiment]
    assert bulk.sql_runs_frame(store.uri, exp) is not None  # the database path ran (no silent fallback)
    fast = tracking.runs_frame(store.uri, exp)
    slow = tracking.runs_frame(store.uri, exp, bulk=False)  # mlflow.search_runs
    assert set(fast.columns) == set(slow.columns)
    assert list(fast["run_id"]) == list(slow["run_id"])  # MLflow's order: newest first
    pd.testing.assert_frame_equal(_same_columns(fast), _same_columns(slow))


@pytest.mark.parametrize("study", ["documented", "lenet"])
def test_load_study_reads_the_same_study_in_bulk_as_run_by_run(store, study):
    fast = report.load_study(study, store.uri)
    slow = report.load_study(study, store.uri, bulk=False)  # a get_metric_history call per run and metric
    pd.testing.assert_frame_equal(_same_columns(fast.trials), _same_columns(slow.trials))
    pd.testing.assert_frame_equal(_same_columns(fast.parents), _same_columns(slow.parents))
    assert list(fast.histories) == list(slow.histories) and len(fast.histories) > 0
    for run_id in slow.histories:
        pd.testing.assert_frame_equal(fast.histories[run_id], slow.histories[run_id])
    assert (fast.n_child_runs, fast.n_earlier_search_runs) == (slow.n_child_runs, slow.n_earlier_search_runs)


def test_histories_keep_nan_points_as_nan(store):
    nan_run = store.runs["d2l-sigmoid/2"]  # its val_accuracy history is [0.1, NaN]
    frame = tracking.history_frame(store.uri, store.experiments["documented"], [nan_run])
    values = frame[frame["metric"] == "val_accuracy"].sort_values("step")["value"].to_numpy()
    assert values[0] == pytest.approx(0.1) and np.isnan(values[1])


def test_run_histories_slice_one_frame_per_run():
    frame = pd.DataFrame({"run_id": ["b", "a", "b", "a", "c"], "metric": ["loss", "loss", "loss", "accuracy", "loss"],
                          "step": [1, 0, 0, 0, 0], "value": [0.5, 0.9, 0.7, 0.3, 1.0]})
    histories = RunHistories(frame, ["a", "b", "d"])  # c was not asked for; d logged nothing
    assert list(histories) == ["a", "b", "d"] and len(histories) == 3
    assert histories["a"].to_dict("list") == {"step": [0, 0], "metric": ["accuracy", "loss"], "value": [0.3, 0.9]}
    assert histories["b"]["step"].tolist() == [0, 1] and histories["b"]["value"].tolist() == [0.7, 0.5]
    assert histories["d"].empty and list(histories["d"].columns) == ["step", "metric", "value"]
    assert "c" not in histories and histories.get("c") is None
    with pytest.raises(KeyError):
        histories["c"]


def test_copied_runs_read_back_as_more_trials_with_their_sources_values(store, tmp_path):
    shutil.copy(store.root / "mlflow.db", tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    before = report.load_study("lenet", uri)
    sources = [store.runs["lenet/04"], store.runs["lenet/03"]]  # a completed and a failed trial
    copies = [tracking.RunCopy(source, f"trial {tid}: copy", {schema.TRIAL_ID: tid}, shift_ms=1_000_000 * (i + 1))
              for i, (source, tid) in enumerate(zip(sources * 2, ["04a", "03a", "04b", "03b"]))]
    done = []
    new_ids = tracking.copy_runs(uri, copies, chunk=3, progress=lambda n, total: done.append((n, total)))
    assert done == [(3, 4), (4, 4)] and len(set(new_ids)) == 4
    after = report.load_study("lenet", uri)
    assert len(after.trials) == len(before.trials) + 4
    t = after.trials.set_index("trial_id")
    original = before.trials.set_index("trial_id").loc["04"]
    for tid in ("04a", "04b"):
        copy = t.loc[tid]
        assert copy["state"] == "completed" and copy["run_id"] in new_ids
        for column in ("best_val_accuracy", "param_count", "c5_units", "learning_rate", "activation", "parent_run_id"):
            assert copy[column] == original[column]
        pd.testing.assert_frame_equal(after.histories[copy["run_id"]], before.histories[original["run_id"]])
    assert t.loc["03a", "state"] == "failed" and t.loc["03a", "failure_reason"] == t.loc["03", "failure_reason"]
    # Moved in time as asked: the copies end after the originals, in order.
    assert t.loc["04a", "end_time"] - original["end_time"] == pd.Timedelta(seconds=1000)
    assert list(after.trials["trial_id"])[-4:] == ["04a", "03a", "04b", "03b"]
    names = {r.info.run_id: r.info.run_name for r in tracking.client(uri).search_runs([store.experiments["lenet"]])}
    assert names[t.loc["04a", "run_id"]] == "trial 04a: copy"


def test_a_store_that_is_not_a_database_is_read_through_the_client():
    assert bulk.sql_runs_frame("http://127.0.0.1:1", "0") is None and bulk.sql_history_frame("file:///tmp/x", "0") is None
    assert bulk.is_database("sqlite:///x.db") and bulk.is_database("postgresql+psycopg://u@h/db")
    assert not bulk.is_database("http://10.0.0.1:5000") and not bulk.is_database("file:///tmp/mlruns")


@pytest.mark.slow
def test_the_notebooks_reuse_the_loaded_study_and_never_read_the_store_again(store, tmp_path):
    shutil.copy(store.root / "mlflow.db", tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    runs = report.load_study("lenet", uri)
    (tmp_path / "mlflow.db").unlink()  # a notebook that loaded the study again would fail now
    paths = report.run_notebooks("lenet", out_root=tmp_path / "out", tracking_uri=uri, log_to_mlflow=False, runs=runs)
    assert [p.name for p in paths] == ["compare_variants.html", "search_results.html"]
    html = (tmp_path / "out" / "lenet" / "search_results.html").read_text()
    assert f"{len(runs.trials)} trials, {len(runs.completed)} completed" in html
    assert not (tmp_path / "mlflow.db").exists()


def test_open_study_reads_the_saved_study_else_the_store(store, tmp_path):
    runs = report.load_study("documented", store.uri)
    path = report.save_runs(runs, tmp_path / "runs.pickle")
    again = report.open_study("documented", "sqlite:///nowhere/mlflow.db", path)
    pd.testing.assert_frame_equal(again.trials, runs.trials)
    assert list(again.histories) == list(runs.histories)
    # Another study's file, or none: read from the store.
    assert report.open_study("lenet", store.uri, path).study == "lenet"
    assert report.open_study("lenet", store.uri, tmp_path / "missing.pickle").study == "lenet"
