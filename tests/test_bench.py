"""`make bench` at toy size: both sides run in every round and the figures printed are the ones returned.

The figures themselves are never asserted: they belong to `make bench` on a quiet machine.
"""

from __future__ import annotations

import re
from argparse import Namespace

import numpy as np
import pytest
from conftest import ROOT, SMOKE

from study import tuner
from study.bench import BenchError, bench_tracking, run_bench


@pytest.mark.slow
def test_tracking_benchmark_alternates_bare_and_tracked_and_prints_their_ratio():
    args = Namespace(data_dir=None, dataset="mnist-5k", trials=2, epochs=1, train_samples=300, rounds=2,
                     only="tracking")
    lines: list[str] = []
    fit_model = tuner.fit_model
    figures = bench_tracking(args, echo=lines.append)
    rounds = [line for line in lines if line.startswith("round ")]
    assert [line.split(":")[0] for line in rounds] == ["round 1", "round 2"]
    # Both sides trained: their model.fit time is part of, and smaller than, their wall time.
    assert 0 < figures["bare_fit_s"] < figures["bare_s"] and 0 < figures["tracked_fit_s"] < figures["tracked_s"]
    assert tuner.fit_model is fit_model  # the timing wrapper is gone afterwards
    assert any(line.startswith("around model.fit: ") for line in lines)
    assert figures["ratio"] == pytest.approx(figures["tracked_s"] / figures["bare_s"])
    assert f"{figures['ratio']:.3f}x bare" in lines[-1]


def test_benchmark_refuses_bad_sizes_in_one_line():
    base = dict(data_dir=None, dataset="mnist-5k", epochs=1, train_samples=300, only="tracking")
    with pytest.raises(BenchError, match=r"^bench: --rounds 0: give at least 1$"):
        run_bench(Namespace(**base, trials=2, rounds=0))
    with pytest.raises(BenchError, match=r"^bench: at most 3 trials"):
        run_bench(Namespace(**base, trials=4, rounds=1))


# --------------------------------------------------------------------------- throughput, search, time to accuracy


def _args(**values) -> Namespace:
    from study.bench import DEFAULTS

    return Namespace(**{**DEFAULTS, **values})


@pytest.mark.slow
def test_throughput_benchmark_counts_the_flops_and_the_same_optimizer_steps_on_every_side():
    from study.bench import bench_throughput

    lines: list[str] = []
    figures = bench_throughput(_args(dataset="mnist-5k", train_samples=600, epochs=1, rounds=1), echo=lines.append)
    # C1 28x28x6x25, C3 10x10x16x150, C5 120x400, F6 120x84, output 84x10 multiply-adds, x2 FLOPs x3 passes.
    assert figures["flops_per_image"] == (117_600 + 240_000 + 48_000 + 10_080 + 840) * 6
    assert any(line.startswith("FLOPs per training image: 416,520 multiply-adds") and line.endswith("= 2.50 MFLOP")
               for line in lines)
    assert any(line.startswith("FLOP limit: ") for line in lines) and figures["flop_limit"] > 1e9
    n = 540  # 600 digits less the 10% validation split
    for batch in (32, 128):
        assert figures[f"steps_{batch}"] == -(-n // batch)
        assert f"batch {batch}: {-(-n // batch)} optimizer steps per epoch on every side" in "\n".join(lines)
        assert figures[f"ratio_{batch}"] == pytest.approx(figures[f"study_{batch}"] / figures[f"bare_{batch}"])
        assert figures[f"fraction_{batch}"] == pytest.approx(
            figures[f"study_{batch}"] * figures["flops_per_image"] / figures["flop_limit"])
        summary = next(line for line in lines if line.startswith(f"batch {batch}: study "))
        assert f"study {figures[f'study_{batch}']:,.0f} images/s, bare {figures[f'bare_{batch}']:,.0f}: " \
               f"{figures[f'ratio_{batch}']:.2f}x (median of the rounds' ratios " \
               f"{figures[f'round_ratio_{batch}']:.2f}x; target at least" in summary
        assert f"study on tf.data {figures[f'tfdata_{batch}']:,.0f} images/s" in summary
        assert any(line.startswith(f"batch {batch}: images per CPU-second") and
                   f"study/bare {figures[f'cpu_ratio_{batch}']:.2f}x" in line for line in lines)


def test_optuna_draws_the_spaces_knobs_with_their_ranges_and_conditions():
    import optuna

    from study.bench.peer import optuna_values
    from study.model import ConfigError
    from study.space import load_space, resolve_config

    space = load_space(ROOT / "search_spaces" / "lenet.yaml")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    optimizers, built = set(), 0
    for _ in range(40):
        values, _ = optuna_values(study.ask(), space.knobs)
        optimizers.add(values["optimizer"])
        assert ("momentum" in values) == (values["optimizer"] == "sgd")  # a `when` knob only under its parent
        assert set(values) == {k for k in space.knobs if k != "momentum"} | ({"momentum"} & set(values))
        spec = space.knobs["learning_rate"]
        assert spec["min"] <= values["learning_rate"] <= spec["max"]
        assert values["dense_units"] in {"84", "60", "120,84"}  # keras-tuner's form of a list of widths
        try:  # resolved as the study's trials resolve theirs; some knob combinations leave no feature map
            built += resolve_config(values, space.settings).learning_rate == values["learning_rate"]
        except ConfigError as exc:
            assert "leaves no spatial extent" in str(exc)
    assert optimizers == set(space.knobs["optimizer"]["values"]) and built >= 20


def _fake_search(uri, side, seed, vals, test, pruned=()):
    """A search's record as the benchmark reads it back: a parent run and one finished child run per trial."""
    import uuid

    from study import schema, tracking
    from study.bench.searches import STUDY
    from study.tracking import TrialSummary

    tracker = tracking.StudyTracker(STUDY, uri, search_id=uuid.uuid4().hex[:12])
    tracker.start_parent(f"fake {side} {seed}", {"seed": seed}, {})
    for i, val in enumerate(vals):
        run_id = tracker.start_trial(str(i), {"seed": seed})
        if i in pruned:
            tracker.client.set_tag(run_id, schema.BENCH_OPTUNA_STATE, "PRUNED")
        tracker.finish_trial(run_id, TrialSummary(best_val_accuracy=val, epochs_run=1), {})
    tracker.log_parent_metrics({schema.BEST_VAL_ACCURACY: max(vals), schema.TEST_ACCURACY: test})
    tracker.end_parent()
    return tracker.parent_run_id


def test_search_benchmark_pairs_three_searches_per_seed_from_their_runs_and_ends_with_the_quality_line(
        tmp_path, monkeypatch):
    """The orchestration with fakes for the searches (nothing trains): every seed runs all three, in a rotating
    order, each with the budget; what the statistics, the figure and the table use is read back from the store."""
    from types import SimpleNamespace

    from study import schema
    from study.bench import searches

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    calls = []
    val = {"lenet-study": [0.90, 0.97, 0.95], "optuna": [0.93, 0.99, 0.96, 0.94], "random": [0.91, 0.92]}
    test = {"lenet-study": 0.98, "optuna": 0.97, "random": 0.96}

    def fake_run_search(request, echo):
        side = "random" if request.settings.tuner == "random" else "lenet-study"
        calls.append((request.settings.seed, side, request.settings.time_budget, len(request.space.start_with)))
        run_id = _fake_search(uri, side, request.settings.seed, val[side], test[side] + request.settings.seed / 1000)
        return SimpleNamespace(parent_run_id=run_id, best_val_accuracy=max(val[side]),
                               test_accuracy=test[side] + request.settings.seed / 1000)

    def fake_run_optuna(space, settings, data_dir, budget, *, study, uri, tags, log_dir, started, echo):
        calls.append((settings.seed, "optuna", budget, len(space.start_with)))
        run_id = _fake_search(uri, "optuna", settings.seed, val["optuna"], test["optuna"], pruned={1})
        from study import tracking
        for key, value in tags.items():
            tracking.client(uri).set_tag(run_id, key, value)
        return SimpleNamespace(parent_run_id=run_id, best_val=0.96, test=test["optuna"])

    monkeypatch.setattr(searches, "run_search", fake_run_search)
    monkeypatch.setattr(searches, "run_optuna", fake_run_optuna)
    lines: list[str] = []
    out = searches.bench_search(_args(seeds=3, budget=30.0, out=str(tmp_path / "out")), echo=lines.append)
    # Seed by seed, all three, the first one rotating; the same budget; only random goes without start_with.
    assert [c[:2] for c in calls] == [(0, "lenet-study"), (0, "optuna"), (0, "random"), (1, "optuna"), (1, "random"),
                                      (1, "lenet-study"), (2, "random"), (2, "lenet-study"), (2, "optuna")]
    assert {c[2] for c in calls} == {30.0} and {c[3] for c in calls if c[1] == "random"} == {0}
    assert {c[3] for c in calls if c[1] != "random"} == {2}
    # Optuna's pruned trial (0.99 at its pruning) is not a candidate: its best so far stays 0.93, then 0.96.
    optuna = out["found"]["optuna"][0]
    assert optuna.trials == 4 and np.isnan(optuna.values[1]) and np.nanmax(optuna.values) == 0.96
    assert lines[-1] == ("search quality over 3 seeds: lenet-study 0.9810 vs optuna 0.9700 vs random 0.9610; "
                         "P(ours > optuna) = 1.00 [1.00, 1.00]")
    assert any(line.startswith("expected max validation accuracy of n random trials (Dodge et al. 2019; median over "
                               "seeds): n=1 0.9150, n=2 0.9200") for line in lines)
    assert out["figure"].stat().st_size > 0
    rows = out["table"].read_text().splitlines()
    assert len(rows) == 10 and rows[1].startswith("0,lenet-study,0.9700,0.9800,3,3,")
    assert schema.BENCH_SIDE in searches.tracking.client(uri).get_run(optuna.parent_run_id).data.tags


@pytest.mark.slow
def test_search_benchmark_runs_three_tracked_searches_per_seed_and_ends_with_the_quality_line(tmp_path, monkeypatch):
    """2 seeds x 3 searches at toy size (the smoke space: 100 digits, 1 epoch, a final run of 1 epoch): each a
    parent run in one experiment, the figure and the table written, the last line as documented. Each search
    trains a few tiny batches per trial; its budget, not the machine, bounds it."""
    from mlflow.tracking import MlflowClient

    from study import schema
    from study.bench import bench_search
    from study.bench.searches import STUDY

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    space = tmp_path / "smoke-final.yaml"  # the smoke space, with the chosen configuration trained again
    space.write_text(SMOKE.read_text().replace("  epochs: 1\n", "  epochs: 1\n  final_epochs: 1\n"))
    lines: list[str] = []
    out = bench_search(_args(space=str(space), seeds=2, budget=60.0, train_samples=100, out=str(tmp_path / "out")),
                       echo=lines.append)
    m = out["medians"]
    assert lines[-1] == (f"search quality over 2 seeds: lenet-study {m['lenet-study']:.4f} vs optuna {m['optuna']:.4f} "
                         f"vs random {m['random']:.4f}; P(ours > optuna) = {out['beats']['optuna'].text()}")
    assert re.fullmatch(r"search quality over 2 seeds: lenet-study \d\.\d{4} vs optuna \d\.\d{4} vs random "
                        r"\d\.\d{4}; P\(ours > optuna\) = \d\.\d\d \[\d\.\d\d, \d\.\d\d\]", lines[-1])
    assert any(line.startswith("P(ours > random) on a seed") and "paired Wilcoxon" in line for line in lines)
    assert any("Optuna 5" in line and "constant_liar=True" in line for line in lines)
    assert any(line.startswith("expected max validation accuracy of n random trials") for line in lines)
    assert out["figure"].stat().st_size > 0 and out["figure"].name == "search_quality.png"
    rows = out["table"].read_text().splitlines()
    assert len(rows) == 1 + 6 and rows[0].startswith("seed,search,best_val_accuracy,test_accuracy")
    # One experiment, one parent run per search, tagged with its search and seed; every final model read test once.
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    exp = client.get_experiment_by_name(STUDY)
    parents = client.search_runs([exp.experiment_id], filter_string=f"tags.`{schema.ROLE}` = '{schema.ROLE_STUDY}'")
    assert sorted((p.data.tags[schema.BENCH_SIDE], p.data.tags[schema.BENCH_SEED]) for p in parents) == sorted(
        (side, seed) for side in schema.BENCH_SIDES for seed in ("0", "1"))
    assert all(schema.TEST_ACCURACY in p.data.metrics and p.data.tags.get(schema.FINAL_RUN_ID) for p in parents)
    for side, runs in out["found"].items():
        for searched in runs:
            assert searched.trials >= 1 and len(searched.times) == searched.trials
            assert searched.best_val == pytest.approx(np.nanmax(searched.values))


@pytest.mark.slow
def test_time_to_accuracy_races_a_studys_best_trial_against_the_recipe(tmp_path, monkeypatch, run_study):
    from conftest import store_uri

    from study.bench import bench_time_to_accuracy

    run_study(tmp_path, final_epochs=1)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store_uri(tmp_path))
    lines: list[str] = []
    figures = bench_time_to_accuracy(_args(study="smoke", threshold=0.3, max_epochs=2, train_samples=1000),
                                     echo=lines.append)
    assert figures["ours_reached"] and figures["ours_epochs"] == 1  # the smoke trials train 1 epoch
    assert 1 <= figures["recipe_epochs"] <= 2
    assert figures["ratio"] == pytest.approx(figures["ours_s"] / figures["recipe_s"])
    assert any(line.startswith("[lenet-study] the best trial run ") and "of study 'smoke'" in line for line in lines)
    assert [line.split(":")[0] for line in lines if line.startswith("[lenet-study] epoch")] == ["[lenet-study] epoch 1"]
    assert lines[-1].startswith(f"time to accuracy: lenet-study {figures['ours_s']:.1f} s vs subclass-relu "
                                f"{figures['recipe_s']:.1f} s: {figures['ratio']:.2f} of the recipe's time")
    # The search trained its choice once more (final_epochs): the note names that run, and --run races it.
    note = next(line for line in lines if line.startswith("note: that search also trained its choice 1 epochs"))
    final_run = note.split("--run ")[1].split()[0]
    lines.clear()
    bench_time_to_accuracy(_args(run=final_run, threshold=0.3, max_epochs=1, train_samples=1000), echo=lines.append)
    assert any(line.startswith(f"[lenet-study] run {final_run}: ") for line in lines)


@pytest.mark.slow
def test_report_benchmark_grows_a_real_study_and_times_its_report(tmp_path, monkeypatch, run_study):
    from conftest import store_uri

    from study import report
    from study.bench import bench_report

    run_study(tmp_path, final_epochs=1)  # 2 trials and a final run (not a trial: never copied)
    uri = store_uri(tmp_path)
    parent = report.load_study("smoke", uri).parent_run_id
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    lines: list[str] = []
    figures = bench_report(_args(study="smoke", sizes=(3, 8), rounds=1), echo=lines.append)
    assert "store of 3 trials: 1 copies of the study's 2 trials" in "\n".join(lines)
    assert "store of 8 trials: 6 copies of the study's 2 trials" in "\n".join(lines)
    for size in (3, 8):
        assert figures[f"report_s_{size}"] > figures[f"load_s_{size}"] > 0
        assert figures[f"report_cpu_s_{size}"] > 0
        assert any(line.startswith(f"       {size} trials: {figures[f'report_s_{size}']:.1f} s, "
                                   f"{figures[f'report_cpu_s_{size}']:.1f} CPU-s (load_study") for line in lines)
    assert figures["notebooks_s_8"] > 0 and any("with its two notebooks, 8 trials:" in line for line in lines)
    assert figures["ratio"] == pytest.approx(figures["report_s_8"] / figures["report_s_3"])
    assert re.fullmatch(r"report speed: 8 trials \d+\.\d\dx the 3-trial report \(target at most 1\.3x: (met|NOT met); "
                        r"\d+\.\d\dx in CPU-s\)", lines[-1])
    # The study's own store is left as it was: no copies, and no report attached to its parent run.
    assert len(report.load_study("smoke", uri).trials) == 2
    from mlflow.tracking import MlflowClient

    assert "report" not in {a.path for a in MlflowClient(uri).list_artifacts(parent)}


@pytest.mark.slow
def test_report_benchmark_stores_read_back_like_their_source_run_by_run_too(tmp_path, run_study):
    from conftest import store_uri

    from study import report
    from study.bench.report import build_store

    run_study(tmp_path)
    source = report.load_study("smoke", store_uri(tmp_path))
    uri, copies = build_store(store_uri(tmp_path), "smoke", 7, tmp_path / "grown", echo=lambda line: None)
    assert copies == 5
    fast, slow = report.load_study("smoke", uri), report.load_study("smoke", uri, bulk=False)
    assert len(fast.trials) == 7 and len(fast.histories) == 7
    import pandas as pd

    pd.testing.assert_frame_equal(fast.trials[sorted(fast.trials.columns)], slow.trials[sorted(slow.trials.columns)])
    for run_id in slow.histories:
        pd.testing.assert_frame_equal(fast.histories[run_id], slow.histories[run_id])
    # Copies keep their source's values: each copy's knobs and accuracy are one of the real trials'.
    real = {tuple(r) for r in source.trials[["activation", "pooling", "best_val_accuracy"]].itertuples(index=False)}
    assert {tuple(r) for r in fast.trials[["activation", "pooling", "best_val_accuracy"]].itertuples(index=False)} == real
    assert fast.trials["trial_id"].is_unique and fast.trials["start_time"].is_monotonic_increasing
    assert all(str(a).startswith((tmp_path / "grown" / "artifacts").as_uri()) for a in fast.parents["artifact_uri"])


@pytest.mark.parametrize("argv, message", [
    (["--only", "nope"], "argument --only: invalid choice: 'nope'"),
    (["--only", "search", "--budget", "0"], "--budget 0: give a duration such as 45s, 15m, 1h or 1h30m"),
    (["--only", "search", "--budget", "soon"], "--budget soon: give a duration such as 45s"),
    (["--only", "search", "--seeds", "1"], "--seeds 1: give at least 2 (the statistics pair searches over seeds)"),
    (["--only", "search", "--seeds", "many"], "argument --seeds: invalid int value: 'many'"),
    (["--only", "search", "--epochs", "0"], "--epochs 0: give at least 1"),
    (["--only", "search", "--train-samples", "0"], "--train-samples 0: give at least 1"),
    (["--only", "throughput", "--rounds", "0"], "--rounds 0: give at least 1"),
    (["--only", "time-to-accuracy", "--threshold", "1.5"], "--threshold 1.5: give a test accuracy in (0, 1]"),
    pytest.param(["--only", "time-to-accuracy", "--study", "nothing"], "no search of study 'nothing' chose a best trial",
                 marks=pytest.mark.slow),  # it loads the data first
    (["--only", "report", "--sizes", "0,500"], "--sizes 0,500: give trial counts separated by commas, each at least 1"),
    (["--only", "report", "--sizes", "many"], "--sizes many: give trial counts separated by commas"),
])
def test_bench_refuses_bad_flags_in_one_line(argv, message, tmp_path, monkeypatch, capsys):
    from study.cli import main

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")  # an empty store
    try:
        code = main(["bench", *argv])
    except SystemExit as exc:  # argparse's own checks exit from inside parse_args
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("lenet-study: error: bench: ") and message in err


# --------------------------------------------------------------------------- the oracle's cost


def test_oracle_benchmark_serves_every_oracle_through_the_chief_and_tabulates_sane_rows(monkeypatch):
    from study.bench import oracle as bench

    study_oracle = bench.study_oracle

    def in_its_random_phase(tuner, *args):  # the machinery is tested here, not the Gaussian process's cost
        oracle = study_oracle(tuner, *args)
        if tuner == "bayesian":
            oracle.num_initial_points = 100
        return oracle

    monkeypatch.setattr(bench, "study_oracle", in_its_random_phase)
    lines: list[str] = []
    windows = {name: (2, 4) for name in bench.TUNERS}
    figures = bench.bench_oracle(_args(only="oracle", sizes=(5,)), echo=lines.append, windows=windows, workers=2,
                                 mode="threads")
    assert set(figures) == {"random", "bayesian", "tpe", "hyperband", "grid"}
    for tuner, by_size in figures.items():
        row = by_size[5]
        assert row["finished"] == 5 and row["filled"] == ("replayed" if tuner in bench.REPLAYED else "proposals")
        assert row["trials"] == 4  # every simulated trial was created, reported and ended through the chief
        assert row["seconds"] > 0 and row["trials_per_s"] == pytest.approx(4 / row["seconds"])
        assert all(value > 0 for value in row["latency_ms"].values()) and row["create_p95_ms"] > 0
        assert row["workers_busy"] == pytest.approx(row["trials_per_s"] * bench.TRIAL_SECONDS)
    table = [line for line in lines if line.startswith("|")]
    assert table[0].startswith("| oracle | finished | brought there by | trials/s |") and len(table) == 2 + 5
    assert lines[0].startswith("oracles served by the chief (gRPC, loopback) to simulated workers, on ")
    assert lines[-1].startswith("oracle cost: the slowest, ") and "sgd" not in lines  # keras-tuner's stray print


def test_the_oracle_reaches_its_size_by_proposals_or_by_replay(tmp_path):
    import random

    from study import kt_compat
    from study.bench import oracle as bench

    for tuner in ("random", "bayesian"):
        oracle = bench.study_oracle(tuner, str(bench.DEFAULT_SPACE), 7, 3, tmp_path / tuner)
        fill = bench.fill_by_replay if tuner == "bayesian" else bench.fill_by_proposals
        with bench.quiet_keras_tuner():
            fill(oracle, 7, random.Random(0))
        finished = [t for t in oracle.trials.values() if t.status == kt_compat.TrialStatus.COMPLETED]
        assert len(finished) == 7 and not oracle.ongoing_trials
        assert all(0.88 < t.score < 1.0 for t in finished)
        # The study's own start_with configurations come first when the oracle proposes.
        if tuner == "random":
            first = oracle.trials[min(oracle.trials)].hyperparameters.values
            assert first["batch_norm"] in (1, True) and first["lr_schedule"] == "cosine"
