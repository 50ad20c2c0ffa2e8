"""Knob importance and the knob figures' intervals, on made-up searches logged to a temporary MLflow store
as the search logs them (a parent run with its space file, one child run per trial): accuracy that
depends on one knob and not at all on others, a Hyperband study whose short trials say otherwise, a
search with too few trials, and a report made without Optuna."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from study import report, schema
from study.model import LeNetConfig
from study.report import cores, importance as imp

SPACE = """\
study: {dataset: mnist, tuner: random, max_trials: 30, epochs: 4}
space:
  activation: {choice: [relu, tanh, sigmoid]}
  pooling: {choice: [max, avg]}
  learning_rate: {float: [1.0e-4, 1.0e-2], sampling: log}
  optimizer: {choice: [adam, sgd]}
  momentum: {float: [0.0, 0.9], when: {optimizer: sgd}}
"""
# The accuracy a trial reaches: set by its activation alone (plus a little noise).
BY_ACTIVATION = {"relu": 0.98, "tanh": 0.95, "sigmoid": 0.90}


def _run(client, exp, *, tags, params, metrics, parent=None, status="FINISHED", t=0):
    tags = dict(tags, **({schema.PARENT_RUN_ID: parent} if parent else {}))
    run_id = client.create_run(exp, start_time=1_700_000_000_000 + t * 1000, tags=tags).info.run_id
    client.log_batch(run_id, metrics=[Metric(k, float(v), 1_700_000_000_000 + t * 1000, 0) for k, v in metrics.items()],
                     params=[Param(k, str(v)) for k, v in params.items()])
    client.set_terminated(run_id, status=status, end_time=1_700_000_000_000 + t * 1000 + 500)
    return run_id


def _study(client, root: Path, name: str, trials: list[dict], *, tuner="random", space: str | None = SPACE):
    """A study `name` whose trials are dicts of LeNetConfig changes plus `acc` (None: failed), and
    optionally `budget` (Hyperband's tuner/epochs) and `stop` (stop reason)."""
    exp = client.create_experiment(name, artifact_location=(root / "artifacts" / name).as_uri())
    parent = _run(client, exp, tags={schema.ROLE: schema.ROLE_STUDY, schema.STUDY: name, schema.SEARCH_ID: "s"},
                  params={"tuner": tuner, "epochs": 4, "dataset": "mnist", "objective": schema.OBJECTIVE},
                  metrics={})
    if space is not None:
        path = root / f"{name}.yaml"
        path.write_text(space)
        client.log_artifact(parent, str(path), schema.SPACE_DIR)
    for i, t in enumerate(trials):
        t = dict(t)
        acc, budget, stop = t.pop("acc"), t.pop("budget", None), t.pop("stop", schema.STOP_MAX_EPOCHS)
        params = LeNetConfig(epochs=4, **t).to_params()
        if budget is not None:
            params.update({"tuner/epochs": budget, "tuner/initial_epoch": 0, "tuner/bracket": 1, "tuner/round": 0})
        tags = {schema.ROLE: schema.ROLE_TRIAL, schema.TRIAL_ID: f"{i:02d}", schema.SEARCH_ID: "s",
                schema.STOP_REASON: stop,
                schema.TRIAL_STATUS: schema.FAILED if acc is None else schema.COMPLETED}
        metrics = {} if acc is None else {schema.BEST_VAL_ACCURACY: acc, "epochs_run": budget or 4,
                                          "param_count": 61706}
        _run(client, exp, tags=tags, params=params, metrics=metrics, parent=parent, t=i + 1,
             status="FAILED" if acc is None else "FINISHED")


def _random_trials(n: int, seed: int, accuracy=None) -> list[dict]:
    rng = np.random.default_rng(seed)
    acts = list(BY_ACTIVATION)
    out = []
    for i in range(n):
        optimizer = str(rng.choice(["adam", "sgd"]))
        t = dict(activation=acts[i % 3], pooling=str(rng.choice(["max", "avg"])),
                 learning_rate=float(np.exp(rng.uniform(np.log(1e-4), np.log(1e-2)))), optimizer=optimizer,
                 momentum=float(rng.uniform(0, 0.9)) if optimizer == "sgd" else 0.0)
        t["acc"] = (accuracy or (lambda t: BY_ACTIVATION[t["activation"]]))(t) + float(rng.normal(0, 0.002))
        out.append(t)
    return out


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("importance-store")
    uri = f"sqlite:///{root}/mlflow.db"
    client = MlflowClient(uri)
    strong = _random_trials(30, seed=1) + [dict(activation="relu", acc=None, stop=schema.STOP_NAN)]  # failed
    _study(client, root, "strong", strong)
    # Hyperband: 10 full-budget trials where activation matters, 20 two-epoch trials where only pooling does.
    full = [dict(t, budget=4) for t in _random_trials(10, seed=2)]
    short = [dict(t, budget=2) for t in _random_trials(
        20, seed=3, accuracy=lambda t: 0.97 if t["pooling"] == "max" else 0.80)]
    _study(client, root, "hyperband", full + short, tuner="hyperband",
           space=SPACE.replace("tuner: random", "tuner: hyperband"))
    _study(client, root, "few", _random_trials(7, seed=4))
    nospace = _random_trials(12, seed=5)
    nospace[2]["stop"], nospace[2]["acc"] = schema.STOP_CHANCE, 0.1135  # a sigmoid trial still at chance: kept
    _study(client, root, "nospace", nospace, space=None)
    _study(client, root, "oldspace", _random_trials(2, seed=6), space=SPACE + "retired_section: {}\n")
    return uri


def _row(table: pd.DataFrame, knob: str) -> pd.Series:
    return table[table["knob"] == knob].iloc[0]


def test_the_knob_that_sets_accuracy_ranks_first_and_a_null_knob_is_near_zero(store):
    runs = report.load_study("strong", store)
    result = report.knob_importance(runs)
    assert result.note is None and result.n_trials == 30  # the failed trial is left out
    assert result.knobs == ["activation", "pooling", "optimizer", "learning_rate", "momentum"]
    table = result.table
    print(table.to_string())
    act = _row(table, "activation")
    assert table["knob"].iloc[0] == "activation" and act["median_rank"] == 1
    assert act["p_first"] >= 0.8 and act["importance"] >= 0.6 and act["n_resamples"] == imp.N_RESAMPLES
    for null in ("pooling", "optimizer"):
        row = _row(table, null)
        assert row["low"] < 0.01 and row["importance"] < 0.15 and row["high"] < act["low"], row.to_dict()
    # momentum applies to sgd trials only: fANOVA (the knobs every trial has) does not assess it.
    assert np.isnan(_row(table, "momentum")["importance"]) and table["knob"].iloc[-1] == "momentum"
    caption = result.caption
    for needle in ("on the 30 completed trials", "1 failed (no accuracy) left out", "space file `strong.yaml`",
                   f"{imp.N_RESAMPLES} bootstrap resamples", "Not assessed", "momentum (only when optimizer is sgd)"):
        assert needle in caption, needle
    assert report.knob_importance(runs) is result  # computed once for the figure and the table


def test_distributions_come_from_the_logged_space(store):
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    runs = report.load_study("strong", store)
    trials, _ = imp.importance_trials(runs)
    space, source = imp.study_space(runs)
    assert space is not None and "strong.yaml" in source
    dists = imp.knob_distributions(runs, trials, ["activation", "learning_rate", "momentum"], space)
    assert dists["activation"] == (CategoricalDistribution(["relu", "tanh", "sigmoid"]), None)
    assert dists["learning_rate"] == (FloatDistribution(1e-4, 1e-2, log=True), None)
    assert dists["momentum"][1] == ("optimizer", {"sgd"})


def test_the_default_space_maps_onto_the_values_its_trials_log(tmp_path):
    """lenet.yaml's choices as the runs hold them: `auto` augment resolved, dense widths as "120,84",
    booleans and floats as text; every value of its start_with trials lies in its distribution."""
    import dataclasses

    from study.space import load_space, resolve_config

    path = Path(__file__).resolve().parents[1] / "search_spaces" / "lenet.yaml"
    space = load_space(path)
    trials = []
    for values in space.start_values():
        config = dataclasses.asdict(resolve_config(values, space.settings))
        config.pop("epochs")
        trials.append(dict(config, acc=0.99))
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    _study(MlflowClient(uri), tmp_path, "lenet", trials, space=path.read_text())
    runs = report.load_study("lenet", uri)
    done, _ = imp.importance_trials(runs)
    knobs = [k for k in space.knobs if k in imp.KNOBS]
    dists = imp.knob_distributions(runs, done, knobs, imp.study_space(runs)[0])
    choices = {k: list(d.choices) for k, (d, _) in dists.items() if hasattr(d, "choices")}
    assert choices["augment"] == ["shift-rotate", "shift"] and choices["dense_units"] == ["84", "60", "120,84"]
    assert choices["batch_norm"] == ["True", "False"] and choices["weight_decay"] == ["0.0", "0.0001", "0.001"]
    assert choices["kernel_size"] == ["5", "3"] and dists["learning_rate"][0].log
    for _, row in done.iterrows():
        params, used = imp._trial_params(row, dists, "mnist")
        assert "momentum" not in params and set(params) == set(knobs) - {"momentum"}  # both trials use adam
        for knob, value in params.items():
            assert used[knob]._contains(used[knob].to_internal_repr(value)), (knob, value)


def test_without_a_space_file_the_distributions_are_inferred_and_said_so(store):
    runs = report.load_study("nospace", store)
    result = report.knob_importance(runs, n_resamples=4)
    assert result.note is None and "inferred from the trials' values (no space file" in result.caption
    assert "momentum (only when" not in result.caption  # no space, no `when:`: momentum is 0.0 under adam
    assert result.n_trials == 12 and "1 trial(s) stopped at chance (at_chance) kept" in result.caption
    assert set(result.table["knob"]) == set(result.knobs) and result.table["importance"].notna().all()


def test_a_logged_space_file_that_no_longer_parses_is_named_and_inferred_around(store):
    space, source = imp.study_space(report.load_study("oldspace", store))
    assert space is None and source == ("distributions inferred from the trials' values (the logged space file: "
                                        "oldspace.yaml: unknown section 'retired_section'; allowed: study, space, "
                                        "start_with)")


def test_hyperband_short_trials_are_left_out(store):
    runs = report.load_study("hyperband", store)
    trials, said = imp.importance_trials(runs)
    assert len(trials) == 10 and set(pd.to_numeric(trials["tuner/epochs"])) == {4}
    result = report.knob_importance(runs)
    assert result.n_trials == 10
    assert "on the 10 completed trials (Hyperband: only its final rung, tuner/epochs = 4; 20 shorter trial(s) " \
           "left out)" in result.caption
    # On the full-budget trials activation matters, not pooling (which alone sets the short trials' accuracy).
    assert _row(result.table, "activation")["p_first"] >= 0.8
    assert _row(result.table, "pooling")["p_first"] <= 0.1


def test_too_few_trials_give_one_line_and_no_figure(store, tmp_path):
    runs = report.load_study("few", store)
    result = report.knob_importance(runs)
    assert result.table.empty and result.note == (
        f"Knob importance is not computed: it needs at least {imp.MIN_TRIALS} completed trials, and this "
        "search has 7.")
    assert report.plot_importance(runs) is None
    out = report.write_report("few", out_root=tmp_path, tracking_uri=store, log_to_mlflow=False)
    md = (out / "report.md").read_text()
    assert "### Knob importance\n\n" + result.note + "\n" in md
    assert not (out / "importance.png").exists()


def test_report_has_the_figure_and_table(store, tmp_path):
    out = report.write_report("strong", out_root=tmp_path, tracking_uri=store, log_to_mlflow=False)
    assert (out / "importance.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "report.md").read_text()
    assert "### Knob importance" in md and "![Importance of each knob" in md and "(importance.png)" in md
    table = md.split("### Knob importance")[1]
    assert "| knob | importance: median [5–95%] | ranks first | median rank |" in table
    assert "|---|---|---|---|\n| activation | 1.00 [" in table and "| momentum | — (not assessed) | — | — |" in table


def test_report_without_optuna_says_so_in_one_line(store, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)  # `import optuna` now raises ImportError
    runs = report.load_study("strong", store)
    assert report.knob_importance(runs).note == imp.OPTUNA_MISSING
    out = report.write_report("strong", out_root=tmp_path, tracking_uri=store, log_to_mlflow=False)
    md = (out / "report.md").read_text()
    assert "### Knob importance\n\n" + imp.OPTUNA_MISSING + "\n" in md
    assert md.count(imp.OPTUNA_MISSING) == 1 and "pip install -e '.[dev]'" in md
    assert not (out / "importance.png").exists() and (out / "knob_activation.png").exists()


# --------------------------------------------------------------------------- marginal intervals


def test_t_interval_against_the_formula():
    values = [0.91, 0.93, 0.97, 0.95]
    mean, low, high = imp.t_interval(values)
    # mean 0.94, sample sd 0.025820, t(0.975, 3) = 3.182446
    half = 3.182446 * 0.0258199 / 2
    assert mean == pytest.approx(0.94) and low == pytest.approx(0.94 - half, abs=1e-6)
    assert high == pytest.approx(0.94 + half, abs=1e-6)
    assert np.isnan(imp.t_interval([0.9])[1]) and imp.t_interval([0.9, 0.9]) == (0.9, 0.9, 0.9)


def test_marginal_intervals_contain_the_category_means(store):
    runs = report.load_study("strong", store)
    info = report.knob_info(runs, "activation")
    m = info.intervals.set_index("value")
    done = runs.completed
    for act in BY_ACTIVATION:
        mine = done.loc[done["activation"] == act, "best_val_accuracy"]
        assert m.loc[act, "n"] == len(mine) and m.loc[act, "mean"] == pytest.approx(mine.mean())
        assert m.loc[act, "low"] < mine.mean() < m.loc[act, "high"]
    # relu and tanh are 0.03 apart with noise 0.002: their intervals do not overlap.
    assert m.loc["tanh", "high"] < m.loc["relu", "low"]


def test_marginal_bins_of_a_numeric_knob(store):
    runs = report.load_study("strong", store)
    info = report.knob_info(runs, "learning_rate")
    bins = info.intervals
    assert len(bins) == imp.MAX_BINS and bins["n"].sum() == len(info.trials)
    assert (bins["x_low"] <= bins["x"]).all() and (bins["x"] <= bins["x_high"]).all()
    assert (bins["x_high"].iloc[:-1].to_numpy() <= bins["x_low"].iloc[1:].to_numpy()).all()
    assert ((bins["low"] <= bins["mean"]) & (bins["mean"] <= bins["high"])).all()
    fig = report.plot_knob(runs, "learning_rate")
    assert "equal-count bins" in fig.axes[0].get_title()


# --------------------------------------------------------------------------- on every core (report/cores.py)


@pytest.fixture
def two_cores(monkeypatch):
    """fork_map forks two processes whatever cores this machine gives the tests."""
    from study import devices

    monkeypatch.setattr(devices, "cpu_cores", lambda: 2)
    monkeypatch.delenv(cores.PROCESSES_ENV, raising=False)


def test_fork_map_keeps_order_and_runs_in_child_processes(two_cores, monkeypatch):
    import os

    assert cores.processes(20) == 2 and cores.processes(1) == 1
    results = cores.fork_map(lambda i: (i * i, os.getpid()), 7)
    assert [square for square, _ in results] == [i * i for i in range(7)]
    assert os.getpid() not in {pid for _, pid in results}
    monkeypatch.setenv(cores.PROCESSES_ENV, "1")
    assert cores.processes(20) == 1
    assert {pid for _, pid in cores.fork_map(lambda i: (i, os.getpid()), 3)} == {os.getpid()}


def test_importance_is_the_same_forked_or_not(store, two_cores, monkeypatch):
    forked = imp._knob_importance(report.load_study("strong", store), imp.N_RESAMPLES, 0)
    monkeypatch.setenv(cores.PROCESSES_ENV, "1")
    alone = imp._knob_importance(report.load_study("strong", store), imp.N_RESAMPLES, 0)
    pd.testing.assert_frame_equal(forked.table, alone.table)
    assert forked.caption == alone.caption


def test_report_figures_drawn_in_children_bring_the_importance_back(store, two_cores, tmp_path, monkeypatch):
    """write_report draws and writes its figures in forked processes; the importance a child computes for
    importance.png comes back, so report.md's table does not compute it a second time in this process."""
    calls = []
    compute = imp._knob_importance
    monkeypatch.setattr(imp, "_knob_importance", lambda *a: calls.append(1) or compute(*a))
    runs = report.load_study("strong", store)
    out = report.write_report("strong", out_root=tmp_path, tracking_uri=store, log_to_mlflow=False, runs=runs)
    assert calls == []  # computed in a child only
    assert ("importance", imp.N_RESAMPLES, 0) in runs.memo
    names = sorted(p.name for p in out.glob("*.png"))
    assert "importance.png" in names and "knob_activation.png" in names
    assert all((out / n).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for n in names)
    md = (out / "report.md").read_text()
    assert "|---|---|---|---|\n| activation | 1.00 [" in md.split("### Knob importance")[1]
    assert all(f"({n})" in md for n in names)


def test_report_children_never_read_the_store(store, two_cores, tmp_path, monkeypatch):
    """The space file importance.png needs is read before the fork: a forked child must not use the
    store connections it inherits (SQLite forbids it)."""
    import os

    from study import tracking

    parent = os.getpid()
    read_in = []
    real = tracking.space_file
    monkeypatch.setattr(tracking, "space_file", lambda *a: read_in.append(os.getpid()) or real(*a))
    runs = report.load_study("strong", store)
    report.write_report("strong", out_root=tmp_path, tracking_uri=store, log_to_mlflow=False, runs=runs)
    assert read_in == [parent]


def test_fork_map_raises_what_a_child_raises_and_never_nests(two_cores):
    def boom(i):
        if i == 2:
            raise ValueError("figure 2 failed")
        return cores.processes(5)  # inside a child: no processes of processes

    with pytest.raises(ValueError, match="figure 2 failed"):
        cores.fork_map(boom, 4)
    assert cores.fork_map(lambda i: cores.processes(5), 3) == [1, 1, 1]


def test_fork_map_does_not_hang_when_a_child_dies(two_cores):
    import os
    import signal
    from concurrent.futures.process import BrokenProcessPool

    with pytest.raises(BrokenProcessPool):
        cores.fork_map(lambda i: os.kill(os.getpid(), signal.SIGKILL) if i == 1 else i, 3)
