"""An isolation study's report (study/report/isolation.py) on a synthetic store written as study/retrain.py and
study/tuner.py write one: nuisance trials by value and point, retrains by value and seed, each effect known by hand."""

from __future__ import annotations

import numpy as np
import pytest
from mlflow.entities import Param
from mlflow.tracking import MlflowClient
from test_report import Store, _parent, _trial

from study import report, schema
from study.report import isolation as iso
from study.report.findings import findings
from study.report.registry import figures
from study.report.render import render_markdown
from study.spacefile import isolation_name, resolve_config

VALUES = ("adam", "sgd", "rmsprop")
POINTS = ({"learning_rate": 0.001, "momentum": 0.5}, {"learning_rate": 0.01, "momentum": 0.9},
          {"learning_rate": 0.1, "momentum": 0.1})
# validation accuracy per (value, point): adam best at point 0, sgd at point 1, rmsprop at point 0 (a tie with
# point 2, broken by the lower point); sgd's point 2 failed.
VAL = {("adam", 0): 0.985, ("adam", 1): 0.980, ("adam", 2): 0.95,
       ("sgd", 0): 0.970, ("sgd", 1): 0.982, ("sgd", 2): None,
       ("rmsprop", 0): 0.984, ("rmsprop", 1): 0.975, ("rmsprop", 2): 0.984}
# retrain test accuracy per value, seeds 1-3: sgd 0.5 pp below adam at every seed, rmsprop within ±0.02 pp of it
TEST = {"adam": [0.9900, 0.9890, 0.9910], "sgd": [0.9850, 0.9835, 0.9865], "rmsprop": [0.9898, 0.9891, 0.9909]}


def _changes(value, point):
    return {"optimizer": value, "learning_rate": POINTS[point]["learning_rate"],
            **({"momentum": POINTS[point]["momentum"]} if value == "sgd" else {})}


@pytest.fixture(scope="module")
def isolation_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("isolation-store")
    store = Store(uri=f"sqlite:///{root}/mlflow.db", root=root)
    client = MlflowClient(tracking_uri=store.uri)
    exp = client.create_experiment("iso", artifact_location=(root / "artifacts").as_uri())
    parent = _parent(client, exp, "iso", start=0, end=9000)
    client.log_batch(parent, params=[Param("kind", "isolation"), Param("seeds", "3"), Param("trials_per_value", "3"),
                                     Param("equivalence_margin", "0.2")])
    start, trial = 0, 0
    for point in range(3):  # point-major, as the grid runs
        for value in VALUES:
            name = isolation_name(point, _changes(value, point))
            config = resolve_config({schema.ISOLATION: name, "seed": 0})
            acc = VAL[value, point]
            kwargs = (dict(acc=None, status="FAILED", trial_status="FAILED", stop="error", failure="boom")
                      if acc is None else dict(acc=acc))
            run = _trial(client, exp, parent, str(trial), config, start=start, end=start + 50, param_count=56930,
                         **kwargs)
            client.log_batch(run, params=[Param(schema.ISOLATION, name), Param(schema.ISOLATION_VALUE,
                                                                               f"optimizer={value}"),
                                          Param(schema.ISOLATION_POINT, str(point))])
            client.set_tag(run, schema.TRIAL_KIND, schema.KIND_NUISANCE)
            start, trial = start + 100, trial + 1
    best_point = {"adam": 0, "sgd": 1, "rmsprop": 0}
    for i, seed in enumerate((1, 2, 3)):
        for value in VALUES:
            name = isolation_name(best_point[value], _changes(value, best_point[value]))
            config = resolve_config({schema.ISOLATION: name, "seed": seed})
            test = TEST[value][i]
            run = _trial(client, exp, parent, schema.retrain_trial_id(f"optimizer={value}", seed), config,
                         start=start, end=start + 50, acc=test + 0.001, test=test, param_count=56930)
            client.log_batch(run, params=[Param(schema.ISOLATION, name), Param(schema.ISOLATION_VALUE,
                                                                               f"optimizer={value}"),
                                          Param(schema.ISOLATION_POINT, str(best_point[value]))])
            client.set_tag(run, schema.ROLE, schema.ROLE_RETRAIN)
            client.set_tag(run, schema.TRIAL_KIND, schema.KIND_RETRAIN)
            start += 100
    return report.load_study("iso", store.uri)


def test_retrains_are_read_apart_from_the_nuisance_trials(isolation_runs):
    runs = isolation_runs
    assert len(runs.trials) == 9 and len(runs.isolation_trials) == 8  # one nuisance trial failed
    assert len(runs.retrains) == 9 and runs.retrains[schema.ISOLATION_VALUE].notna().all()
    assert runs.trials[schema.TEST_ACCURACY].isna().all()  # no nuisance trial read the test set
    assert iso.value_order(runs) == ["optimizer=adam", "optimizer=sgd", "optimizer=rmsprop"]
    assert iso.nuisance_knobs(runs) == ["learning_rate", "momentum"]


def test_each_values_best_nuisance_configuration(isolation_runs):
    best = iso.best_configurations(isolation_runs).set_index("value")
    assert list(best["point"]) == [0, 1, 0]  # rmsprop's tie between points 0 and 2: the lower point
    assert list(best["val_accuracy"]) == [0.985, 0.982, 0.984]
    assert list(best["n_trials"]) == [3, 2, 3]
    assert best.loc["optimizer=sgd", "nuisance"] == "learning_rate=0.01 momentum=0.9"
    assert best.loc["optimizer=adam", "nuisance"] == "learning_rate=0.001"


def test_retrain_summary_and_effects_against_the_first_value_paired_by_seed(isolation_runs):
    summary = iso.retrain_summary(isolation_runs).set_index("value")
    for value in VALUES:
        row = summary.loc[f"optimizer={value}"]
        assert row["n"] == 3 and row["seeds"] == "1,2,3"
        assert row["test_mean"] == pytest.approx(np.mean(TEST[value]))
        assert row["ci_low"] < row["test_mean"] < row["ci_high"]
    effects = iso.isolation_effects(isolation_runs).set_index("value")
    assert list(effects.index) == ["optimizer=sgd", "optimizer=rmsprop"]
    assert set(effects["reference"]) == {"optimizer=adam"}
    sgd, rms = effects.loc["optimizer=sgd"], effects.loc["optimizer=rmsprop"]
    assert sgd["difference"] == pytest.approx(-0.005) and sgd["n"] == 3 and sgd["outcome"] == "worse"
    assert sgd["ci_high"] < 0 and np.isfinite(sgd["mde"])
    assert rms["difference"] == pytest.approx(np.mean(TEST["rmsprop"]) - np.mean(TEST["adam"]))
    assert rms["outcome"] == "equivalent" and rms["equivalent"] is True and rms["margin"] == pytest.approx(0.002)


def test_the_isolation_figure_and_its_place_in_the_report(isolation_runs):
    drawn = figures(isolation_runs)
    assert "isolation.png" in drawn and "effects.png" not in drawn
    fig = iso.plot_isolation(isolation_runs)
    left, right = fig.axes[0], fig.axes[1]
    assert left.get_yscale() == "log" and right.get_yscale() == "log"
    assert [t.get_text() for t in left.get_xticklabels()] == ["optimizer=adam", "optimizer=sgd", "optimizer=rmsprop"]
    # phase 1: the 8 completed nuisance trials faint, the 3 bests highlighted
    assert [len(c.get_offsets()) for c in left.collections] == [8, 3]
    assert "Isolation study 'iso'" in fig.get_suptitle() and "learning_rate, momentum" in fig.get_suptitle()

    text = render_markdown(isolation_runs, list(drawn))
    assert "## Isolation" in text and "![" in text and "(isolation.png)" in text
    assert "| optimizer=sgd | 4 | #01 | learning_rate=0.01 momentum=0.9 | 0.9820 | 2 |" in text
    assert "### Against optimizer=adam (test accuracy, paired by seed)" in text
    assert "| optimizer=sgd | 0.9900 | 0.9850 | -0.50 pp |" in text


def test_findings_say_which_value_is_best_and_by_how_much(isolation_runs):
    said = [f.text for f in findings(isolation_runs)]
    assert said[0].startswith("**optimizer=adam** has the highest test accuracy with learning_rate, momentum tuned "
                              "for each value: 99.00% (mean of 3 retrain seeds, 95% CI")
    assert "learning_rate=0.001 (trial 0, chosen on validation)" in said[0]
    sgd = next(s for s in said if s.startswith("optimizer=adam against optimizer=sgd"))
    assert "+0.50 pp test accuracy" in sgd and "better" in sgd
    rms = next(s for s in said if s.startswith("optimizer=adam against optimizer=rmsprop"))
    assert "equivalent within ±0.20 pp" in rms
    assert not any("The search's best" in s for s in said)  # the isolation's answer, not a search's
