"""Cost beside accuracy in the report: the leaderboard's parameter, latency and time-per-epoch columns,
the Pareto fronts against parameters and against latency, and studies recorded before latency was
measured ("not measured"). The store is tests/test_report.py's, with costs logged on the search's trials."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient
from test_report import build_store

from study import report, schema
from study.report.tables import dominated

# trial -> (ms per image at batch 1, images/s at batch 256, s per epoch); 07 was not measured.
# Validation accuracy (tests/test_report.py's SEARCH): 00 .960, 01 .970, 02 .955, 04 .980, 06 .975, 07 .940, 08 .978.
COSTS = {"00": (1.2, 9000.0, 20.0), "01": (0.9, 12000.0, 18.0), "02": (0.5, 30000.0, 9.0),
         "04": (2.0, 5000.0, 40.0), "06": (0.8, 15000.0, 16.0), "08": (1.5, 8000.0, 30.0)}
HOST = "trainer-1"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    store = build_store(tmp_path_factory.mktemp("mlflow-cost"))
    client = MlflowClient(store.uri)
    for trial, (ms, ips, per_epoch) in COSTS.items():
        run_id = store.runs[f"lenet/{trial}"]
        client.log_batch(run_id, metrics=[Metric(schema.INFERENCE_MS, ms, 0, 0), Metric(schema.INFERENCE_IPS, ips, 0, 0),
                                          Metric(schema.EPOCH_SECONDS, per_epoch, 0, 0)])
        client.set_tag(run_id, schema.HOST, HOST)
    return store


@pytest.fixture(scope="module")
def search(store):
    return report.load_study("lenet", store.uri)


def test_dominated_is_the_brute_force_answer_with_ties():
    rng = np.random.default_rng(0)
    for n in (0, 1, 2, 7, 60):
        cost = rng.integers(0, 6, n).astype(float)  # many ties on both axes
        acc = rng.integers(0, 6, n).astype(float)
        no_worse = (acc[None, :] >= acc[:, None]) & (cost[None, :] <= cost[:, None])
        better = (acc[None, :] > acc[:, None]) | (cost[None, :] < cost[:, None])
        np.testing.assert_array_equal(dominated(cost, acc), (no_worse & better).any(axis=1))


def test_loaded_trials_carry_their_cost_and_host(search):
    t = search.trials.set_index("trial_id")
    assert t.loc["02", schema.INFERENCE_MS] == pytest.approx(0.5)
    assert t.loc["04", schema.INFERENCE_IPS] == pytest.approx(5000.0)
    assert t.loc["06", schema.EPOCH_SECONDS] == pytest.approx(16.0)
    assert np.isnan(t.loc["07", schema.INFERENCE_MS]) and pd.isna(t.loc["07", "host"])
    assert t.loc["00", "host"] == HOST


def test_the_latency_front_and_the_parameter_front(search):
    front = report.pareto_front(search, schema.INFERENCE_MS)
    # 01 (0.9 ms, .970) loses to 06 (0.8 ms, .975), 00 (1.2 ms, .960) too; 07 has no latency.
    assert list(front["trial_id"]) == ["02", "06", "08", "04"]
    assert list(front[schema.INFERENCE_MS]) == [0.5, 0.8, 1.5, 2.0]
    assert list(report.pareto_front(search)["trial_id"]) == ["07", "06", "04"]  # by parameters, as before


def test_the_leaderboard_shows_parameters_and_latency_and_says_not_measured(store, search, tmp_path):
    board = report.leaderboard(search).set_index("trial_id")
    assert board.loc["02", schema.INFERENCE_MS] == pytest.approx(0.5) and board.loc["04", "param_count"] > 0
    out = report.write_report("lenet", out_root=tmp_path, tracking_uri=store.uri, log_to_mlflow=False)
    md = (out / "report.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| # | trial |"))
    assert "| params | ms/image (batch 1) | images/s (batch 256) | s/epoch |" in header
    row_07 = next(line for line in md.splitlines() if line.startswith("| ") and "| 07 |" in line)
    assert row_07.split(" | ").count("not measured") == 3
    row_02 = next(line for line in md.splitlines() if line.startswith("| ") and "| 02 |" in line)
    assert "| 0.50 | 30,000 | 9.0 |" in row_02
    assert "### Pareto front: validation accuracy vs inference latency (ms per image, batch 1)" in md
    assert "### Pareto front: validation accuracy vs parameters" in md


def test_the_pareto_figure_has_a_latency_panel(search):
    fig = report.plot_pareto(search)
    params, latency = fig.axes
    assert len(params.collections[0].get_offsets()) == 7  # every completed trial
    points = latency.collections[0].get_offsets()
    assert len(points) == 6 and sorted(points[:, 0]) == [0.5, 0.8, 0.9, 1.2, 1.5, 2.0]
    assert sorted(latency.collections[1].get_offsets()[:, 0]) == [0.5, 0.8, 1.5, 2.0]  # the front
    assert "latency" in latency.get_xlabel() and latency.get_title().splitlines()[0].endswith(f"on {HOST}")


def test_a_study_recorded_before_latency_still_renders_and_says_not_measured(store, tmp_path):
    doc = report.load_study("documented", store.uri)  # no cost metrics at all
    fig = report.plot_pareto(doc)
    assert len(fig.axes) == 1 and "not measured" in fig.axes[0].get_title()
    assert report.pareto_front(doc, schema.INFERENCE_MS).empty
    out = report.write_report("documented", out_root=tmp_path, tracking_uri=store.uri, log_to_mlflow=False)
    md = (out / "report.md").read_text()
    assert "Not measured in these runs: ms/image (batch 1), images/s (batch 256), s/epoch" in md
    header = next(line for line in md.splitlines() if line.startswith("| # | trial |"))
    assert "ms/image" not in header and "| params |" in header
    assert ("### Pareto front: validation accuracy vs inference latency (ms per image, batch 1)\n\n"
            "Not measured: no completed trial of this study recorded it.") in md
