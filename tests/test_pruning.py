"""Stopping unpromising trials early (`study.prune: median`, study/pruning.py): Optuna's MedianPruner asked
about a running trial's curve against the finished trials' curves, which travel with the trials' results
through the oracle; a pruned trial is recorded with stop reason `pruned` and does not set the median."""

from __future__ import annotations

import pytest
import yaml

from conftest import ROOT, SMOKE, store_uri
from study import schema
from study.pruning import MedianStop, curve_metrics, curve_of
from study.spacefile import SpaceError

FINISHED = [{0: 0.5, 1: 0.80}, {0: 0.6, 1: 0.85}, {0: 0.7, 1: 0.90}, {0: 0.8, 1: 0.92}, {0: 0.9, 1: 0.95}]


def test_a_curve_round_trips_through_the_trials_metrics_and_a_pruned_one_sets_no_median():
    metrics = curve_metrics({0: 0.6, 1: 0.9}, pruned=False)
    assert metrics == {"val_accuracy@epoch0": 0.6, "val_accuracy@epoch1": 0.9, "pruned": 0.0}
    assert curve_of({**metrics, "val_accuracy": 0.9, "loss": 0.3}) == {0: 0.6, 1: 0.9}
    assert curve_of(curve_metrics({0: 0.2}, pruned=True)) is None
    assert curve_of({"val_accuracy": 0.9}) is None  # a trial of a study that did not prune: no curve


@pytest.mark.parametrize("running, stops", [
    ({0: 0.65}, True),            # below the finished trials' median at epoch 0 (0.7)
    ({0: 0.75}, False),           # above it
    ({0: 0.70}, False),           # at it: Optuna prunes only below
    ({0: 0.75, 1: 0.84}, True),   # fine at epoch 0, below the median at epoch 1 (0.90), its best 0.84
    ({0: 0.95, 1: 0.10}, False),  # the best so far counts, as in Optuna: 0.95 at epoch 0 is above 0.90
])
def test_a_trial_stops_when_its_best_so_far_is_below_the_finished_trials_median_at_that_epoch(running, stops):
    assert MedianStop().should_stop(FINISHED, running) is stops


def test_nothing_is_pruned_before_five_trials_finished_nor_within_the_warm_up():
    assert MedianStop().should_stop(FINISHED[:4], {0: 0.1}) is False  # Optuna's default: 5 startup trials
    assert MedianStop(startup_trials=2).should_stop(FINISHED[:4], {0: 0.1}) is True
    assert MedianStop(warmup_epochs=1).should_stop(FINISHED, {0: 0.1}) is False
    assert MedianStop().should_stop(FINISHED, {}) is False


@pytest.mark.parametrize("extra, message", [
    ("prune: mean\n  tuner: random", "study.prune: 'mean' is not allowed; allowed: none, median"),
    ("prune: median\n  tuner: hyperband", "study.prune: 'median' is not allowed; Hyperband stops trials early "
                                          "itself (successive halving); leave prune out, or --prune none"),
    ("prune: median\n  tuner: random\n  executions_per_trial: 2", "study.prune: 'median' is not allowed; a trial is judged epoch by "
                                                 "epoch, which needs executions_per_trial: 1 (or --prune none)"),
])
def test_a_prune_setting_that_cannot_run_is_one_line_naming_the_file_and_key(tmp_path, extra, message):
    from study.space import load_space

    path = tmp_path / "prune.yaml"
    path.write_text(SMOKE.read_text().replace("tuner: random\n", f"{extra}\n", 1))
    with pytest.raises(SpaceError) as caught:
        load_space(path)
    assert str(caught.value) == f"{path}: {message}"


def test_a_grid_kind_refuses_to_prune_its_measurements(tmp_path):
    from study.space import load_space

    path = tmp_path / "ablation.yaml"
    doc = yaml.safe_load((ROOT / "search_spaces" / "ablation.yaml").read_text())
    doc["study"]["prune"] = "median"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(SpaceError) as caught:
        load_space(path)
    assert str(caught.value) == (f"{path}: study.prune: 'median' is not allowed; a kind: ablation study runs every "
                                 "trial to the end (each is a measurement); leave it out")


# Five configurations that learn, then one that cannot (sigmoid, plain SGD at 1e-4: at chance after an epoch).
PRUNED_SPACE = """
study:
  dataset: mnist-5k
  train_samples: 400
  tuner: random
  max_trials: 6
  epochs: 2
  patience: 0
  seed: 0
  val_fraction: 0.25
  prune: median
space:
  activation: {choice: [relu, sigmoid]}
  optimizer: {choice: [adam, sgd]}
  learning_rate: {float: [1.0e-4, 3.0e-3], sampling: log}
  batch_size: {fixed: 32}
start_with:
""" + "".join(f"  - {{activation: relu, optimizer: adam, learning_rate: {lr}}}\n"
              for lr in (0.003, 0.0025, 0.002, 0.0028, 0.0022)) + \
    "  - {activation: sigmoid, optimizer: sgd, learning_rate: 0.0001}\n"


@pytest.mark.slow
def test_a_trial_below_the_median_stops_after_its_first_epoch_and_says_so(tmp_path, run_study, study_runs):
    path = tmp_path / "pruned.yaml"
    path.write_text(PRUNED_SPACE)
    result, lines = run_study(tmp_path, path)
    assert result.completed == 6
    _, _, children = study_runs(store_uri(tmp_path), "pruned")
    by_trial = {r.data.tags[schema.TRIAL_ID]: r for r in children}
    stops = {t: r.data.tags[schema.STOP_REASON] for t, r in by_trial.items()}
    assert stops == {**{str(i): schema.STOP_MAX_EPOCHS for i in range(5)}, "5": schema.STOP_PRUNED}
    assert by_trial["5"].data.metrics["epochs_run"] == 1 and by_trial["5"].info.status == schema.RUN_FINISHED
    assert sum("(pruned) | 1 ep |" in line for line in lines) == 1


def test_hyperband_on_the_default_study_is_refused_in_one_line_until_pruning_is_off(tmp_path, monkeypatch, capsys):
    from study.cli import build_parser, study_request
    from study.cli import main as cli_main

    monkeypatch.chdir(ROOT)
    assert cli_main(["search", "--tuner", "hyperband", "--log-dir", str(tmp_path / "logs")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["lenet-study: error: command line: study.prune: 'median' is not allowed; Hyperband stops trials "
                   "early itself (successive halving); leave prune out, or --prune none"]
    args = build_parser().parse_args(["search", "--tuner", "hyperband", "--prune", "none"])
    assert study_request(args).settings.prune == "none"


def test_a_workers_client_reads_the_curves_the_finished_trials_sent_to_the_chief(tmp_path, monkeypatch):
    """Over gRPC, as a worker prunes: one client reports a trial with its curve (what TrackedMixin.run_trial
    returns), another reads it back from the chief with get_best_trials and the pruner judges against it."""
    import keras_tuner as kt
    from keras_tuner.src.distribute.oracle_client import OracleClient

    from study import kt_compat
    from study.parallel.chief import ChiefServer
    from study.pruning import trial_metrics

    hp = kt.HyperParameters()
    hp.Choice("units", [1, 2, 3, 4, 5, 6, 7, 8])
    oracle = kt.oracles.RandomSearchOracle(objective=kt.Objective(schema.OBJECTIVE, "max"), max_trials=10,
                                           hyperparameters=hp, seed=1)
    oracle._set_project_dir(str(tmp_path), "p")
    chief = ChiefServer(oracle).start()
    try:
        monkeypatch.setenv("KERASTUNER_ORACLE_IP", chief.host)
        monkeypatch.setenv("KERASTUNER_ORACLE_PORT", str(chief.port))
        monkeypatch.setenv("KERASTUNER_TUNER_ID", "worker0")
        reporter = OracleClient(oracle)
        for curve in FINISHED:
            trial = reporter.create_trial("worker0")
            reporter.update_trial(trial.trial_id, {schema.OBJECTIVE: max(curve.values()),
                                                   **curve_metrics(curve, pruned=False)})
            trial.status = kt_compat.TrialStatus.COMPLETED
            reporter.end_trial(trial)
        monkeypatch.setenv("KERASTUNER_TUNER_ID", "worker1")
        finished = OracleClient(oracle).get_best_trials(num_trials=1_000_000)
        curves = [curve_of(trial_metrics(t)) for t in finished]
        assert sorted(curves, key=lambda c: c[0]) == [pytest.approx(c) for c in FINISHED]  # float32 over gRPC
        assert MedianStop().should_stop(curves, {0: 0.65}) and not MedianStop().should_stop(curves, {0: 0.75})
    finally:
        chief.stop()
