"""Isolation studies (study/isolation.py, study/retrain.py): a `kind: isolation` file compiles to a grid over
scientific values x nuisance points (the same points for every value), bad files get one line naming the
file and key, and a tiny isolation study runs its grid on validation only, retrains each value's best with
fresh seeds on test, and resumes without training a retrain twice."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from study import schema
from study.cli import main as cli_main
from study.model import ConfigError
from study.space import SpaceError, load_space, resolve_config
from study.spacefile import isolation_name, parse_isolation
from study.variants import VARIANTS

ROOT = Path(__file__).resolve().parents[1]
# 2 values x 2 points of 1 epoch on 300 real digits, 2 retrain seeds: 8 short trainings.
TINY = ("study:\n  kind: isolation\n  dataset: mnist-5k\n  train_samples: 300\n  val_fraction: 0.25\n"
        "  epochs: 1\n  patience: 1\n  trials_per_value: 2\n  seeds: 2\n  equivalence_margin: 0.5\n"
        "baseline: {batch_size: 64}\nscientific:\n  optimizer: [adam, sgd]\n"
        "nuisance:\n  learning_rate: {float: [1.0e-3, 1.0e-1], sampling: log}\n"
        "  momentum: {float: [0.0, 0.9], when: {optimizer: sgd}}\n")
OPTIMIZERS = ("study:\n  kind: isolation\n  epochs: 5\n  trials_per_value: 12\n  seeds: 3\n  seed: 7\n"
              "baseline: {variant: small-kernel}\nscientific:\n  optimizer: [adam, sgd, rmsprop, nadam]\n"
              "nuisance:\n  learning_rate: {float: [1.0e-4, 3.0e-1], sampling: log}\n"
              "  momentum: {float: [0.0, 0.95], when: {optimizer: sgd}}\n  dropout: {float: [0.0, 0.5]}\n")


def _write(folder: Path, text: str, name: str = "iso.yaml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


# --------------------------------------------------------------------------- compiling


def test_every_value_gets_the_same_nuisance_points_and_the_when_knob_only_its_value(tmp_path):
    space = load_space(_write(tmp_path, OPTIMIZERS))
    iso, settings = space.isolation, space.settings
    assert (settings.kind, settings.tuner, settings.test_eval) == ("isolation", "grid", "best")
    assert settings.max_trials == space.size() == 4 * 12
    assert list(space.knobs) == ["variant", "seed", schema.ISOLATION]
    assert space.knobs["seed"] == {"type": "fixed", "value": 7}
    assert iso.retrain_seeds == (8, 9, 10)  # fresh: not the search's seed, the same for every value
    assert len(iso.points) == 12
    for value in iso.values:
        assert len(iso.names[value]) == 12
        for i, name in enumerate(iso.names[value]):
            point, changes = parse_isolation(name)
            config = iso.configs[name]
            assert point == i and changes["optimizer"] == value == config.optimizer
            assert config.learning_rate == iso.points[i]["learning_rate"]  # the same point for every value
            assert config.dropout == iso.points[i]["dropout"]
            assert config.seed == 7 and config.kernel_size == VARIANTS["small-kernel"].config.kernel_size
            # momentum is drawn for sgd alone; the other optimizers never see it
            assert ("momentum" in changes) == (value == "sgd")
            assert config.momentum == (iso.points[i]["momentum"] if value == "sgd" else 0.0)
    # log sampling: inside the range, spread over its decades rather than bunched at the top
    rates = [p["learning_rate"] for p in iso.points]
    assert all(1e-4 <= r <= 0.3 for r in rates)
    assert sum(r < 5.5e-3 for r in rates) >= 4 and sum(r < 1e-3 for r in rates) >= 2  # 5.5e-3: the log midpoint
    assert len(set(rates)) == 12 and all(0 <= p["momentum"] <= 0.95 for p in iso.points)
    # point-major: every value at point 0 before any at point 1, so an interruption leaves whole points
    order = space.knobs[schema.ISOLATION]["values"]
    assert [parse_isolation(n)[0] for n in order[:4]] == [0] * 4
    assert [parse_isolation(n)[1]["optimizer"] for n in order[:4]] == ["adam", "sgd", "rmsprop", "nadam"]
    # deterministic: the same file draws the same points
    assert load_space(_write(tmp_path, OPTIMIZERS, "again.yaml")).isolation.points == iso.points


def test_a_trial_name_reads_back_as_its_configuration():
    name = isolation_name(3, {"optimizer": "sgd", "learning_rate": 0.00123, "momentum": 0.5, "batch_size": 64})
    assert name == "#03 optimizer=sgd learning_rate=0.00123 momentum=0.5 batch_size=64"
    assert parse_isolation(name) == (3, {"optimizer": "sgd", "learning_rate": 0.00123, "momentum": 0.5,
                                         "batch_size": 64})
    config = resolve_config({schema.ISOLATION: name, "seed": 4})
    assert (config.optimizer, config.learning_rate, config.momentum, config.batch_size, config.seed) == (
        "sgd", 0.00123, 0.5, 64, 4)
    for bad in ("optimizer=sgd", "#x optimizer=sgd", "#01", "#01 optimizer", "#01 seed=3", "#01 momentum=high"):
        with pytest.raises(ConfigError):
            parse_isolation(bad)


def test_the_space_command_prints_values_nuisance_points_retrains_and_totals(tmp_path, capsys):
    path = _write(tmp_path, TINY)
    assert cli_main(["space", str(path)]) == 0
    out = capsys.readouterr().out
    for words in ("isolation ", "scientific: optimizer: adam, sgd (2 values", "learning_rate  float [0.001, 0.1] log",
                  "momentum       float [0.0, 0.9] (only for sgd)", "points: 2 (scrambled Halton, seed 0)",
                  "#00 learning_rate=", "#01 learning_rate=", "phase 1: 4 trials (2 values x 2 points)",
                  "no test set", "retrained with seeds 1, 2", "4 runs, each evaluated on the test set",
                  "total: 8 trainings"):
        assert words in out, out


HEAD = "study:\n  kind: isolation\n  trials_per_value: 3\n  seeds: 2\n"
SCI = "scientific:\n  optimizer: [adam, sgd]\n"
NUI = "nuisance:\n  learning_rate: {float: [1.0e-4, 1.0e-1], sampling: log}\n"
BAD_ISOLATIONS = [
    (HEAD + "scientific:\n  optimiser: [adam, sgd]\n" + NUI, ["scientific.optimiser", "not a knob", "allowed: activation"]),
    (HEAD + SCI + "nuisance:\n  learning_rat: {float: [0.001, 0.1]}\n", ["nuisance.learning_rat", "not a knob"]),
    (HEAD + SCI + "nuisance:\n  optimizer: {choice: [adam, sgd]}\n",
     ["nuisance.optimizer", "is the scientific knob", "not both"]),
    ("study:\n  kind: isolation\n  trials_per_value: 0\n  seeds: 2\n" + SCI + NUI,
     ["study.trials_per_value: 0 is not allowed", "at least 1"]),
    ("study:\n  kind: isolation\n  seeds: 2\n" + SCI + NUI, ["study.trials_per_value: missing", "at least 1"]),
    ("study:\n  kind: isolation\n  trials_per_value: 2\n" + SCI + NUI, ["study.seeds: missing", "at least 2"]),
    ("study:\n  kind: isolation\n  trials_per_value: 2\n  seeds: 1\n" + SCI + NUI,
     ["study.seeds: 1 is not allowed", "at least 2", "pairs the values"]),
    (HEAD + "  equivalence_margin: 0\n" + SCI + NUI, ["study.equivalence_margin: 0 is not allowed", "above 0"]),
    (HEAD + "  equivalence_margin: -0.2\n" + SCI + NUI, ["study.equivalence_margin", "above 0"]),
    (HEAD + "scientific:\n  optimizer: [adam]\n" + NUI, ["scientific.optimizer", "at least 2 values"]),
    (HEAD + "scientific:\n  optimizer: [adam, adam]\n" + NUI, ["scientific.optimizer", "listed twice"]),
    (HEAD + "scientific:\n  optimizer: [adam, sgd]\n  activation: [relu, tanh]\n" + NUI,
     ["scientific:", "one scientific knob per isolation study", "a file of its own"]),
    (HEAD + "scientific:\n  optimizer: [adam, lion]\n" + NUI, ["scientific.optimizer", "'lion' is not allowed"]),
    (HEAD + "scientific:\n  seed: [1, 2]\n" + NUI, ["scientific.seed", "study.seed"]),
    (HEAD + SCI, ["nuisance:", "expected the knobs tuned for each value"]),
    (HEAD + NUI, ["scientific:", "expected one knob"]),
    (HEAD + SCI + "nuisance:\n  learning_rate: {float: [0.1, 0.001]}\n", ["nuisance.learning_rate.float", "reversed"]),
    (HEAD + SCI + "nuisance:\n  learning_rate: {float: [0.0, 0.1], sampling: log}\n",
     ["nuisance.learning_rate.float", "0.0 is outside the allowed range"]),
    (HEAD + SCI + "nuisance:\n  dropout: {float: [0.0, 0.5], sampling: log}\n",
     ["nuisance.dropout.sampling", "log sampling needs min > 0"]),
    (HEAD + SCI + "nuisance:\n  learning_rate: {float: [0.001, 0.1], sampling: reverse_log}\n",
     ["nuisance.learning_rate.sampling", "allowed: linear, log"]),
    (HEAD + SCI + "nuisance:\n  momentum: {float: [0.0, 0.9], when: {optimizer: lion}}\n",
     ["nuisance.momentum.when.optimizer", "'lion' is not among the scientific values"]),
    (HEAD + SCI + "nuisance:\n  momentum: {float: [0.0, 0.9], when: {activation: relu}}\n",
     ["nuisance.momentum.when", "the scientific knob only"]),
    (HEAD + SCI + "nuisance:\n  momentum: {float: [0.0, 0.9]}\n",
     ["scientific.optimizer", "'adam' with nuisance point #00 makes no LeNet-5", "momentum"]),
    (HEAD + SCI + "nuisance:\n  activation: {float: [0.0, 0.9]}\n", ["nuisance.activation", "categorical; use choice"]),
    (HEAD + SCI + "nuisance:\n  batch_size: {int: [16, 128], step: 16}\n", ["nuisance.batch_size", "unknown key 'step'"]),
    (HEAD + "  tuner: random\n" + SCI + NUI, ["study.tuner", "'random' is not allowed", "grid"]),
    (HEAD + "  test_eval: all\n" + SCI + NUI, ["study.test_eval", "only its retrains read the test set"]),
    (HEAD + "  max_trials: 9\n" + SCI + NUI, ["study.max_trials", "values x trials_per_value"]),
    (HEAD + "  final_epochs: 9\n" + SCI + NUI, ["study.final_epochs", "leave it out"]),
    (HEAD + "baseline: {optimizer: adam}\n" + SCI + NUI, ["scientific.optimizer", "also fixed under baseline"]),
    (HEAD + "baseline: {learning_rate: 0.01}\n" + SCI + NUI, ["nuisance.learning_rate", "also fixed under baseline"]),
    (HEAD + SCI + NUI + "space:\n  activation: {choice: [relu]}\n", ["space:", "no space section"]),
    (HEAD + SCI + NUI + "ablate:\n  activation: [relu]\n", ["unknown section 'ablate'", "study, baseline, scientific"]),
    ("study:\n  trials_per_value: 3\nspace:\n  activation: {choice: [relu]}\n",
     ["study.trials_per_value", "only a kind: isolation"]),
    (HEAD + "scientific:\n  augment: [none, flip-shift]\n" + NUI, ["scientific.augment", "mirrors images"]),
]


@pytest.mark.parametrize("text, words", BAD_ISOLATIONS, ids=[w[0] + f"-{i}" for i, (_, w) in enumerate(BAD_ISOLATIONS)])
def test_bad_isolations_name_the_file_the_key_and_what_is_allowed(tmp_path, text, words):
    path = _write(tmp_path, text)
    with pytest.raises(SpaceError) as err:
        load_space(path)
    message = str(err.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    for word in words:
        assert word in message, message


def test_the_cli_refuses_a_bad_isolation_in_one_line_before_anything_starts(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    path = _write(tmp_path, HEAD + SCI + "nuisance:\n  optimizer: {choice: [adam]}\n")
    for argv in (["space", str(path)], ["search", str(path)]):
        assert cli_main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "nuisance.optimizer: optimizer is the scientific knob" in err[0]
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "logs").exists()


# --------------------------------------------------------------------------- a tiny isolation study, end to end


def _runs(study_runs, folder: Path, study: str = "tiny"):
    client, parents, children = study_runs(f"sqlite:///{folder}/mlflow.db", study)
    exp = client.get_experiment_by_name(study)
    every = client.search_runs([exp.experiment_id], max_results=1000)
    retrains = [r for r in every if r.data.tags.get(schema.ROLE) == schema.ROLE_RETRAIN]
    return parents, children, retrains


@pytest.mark.slow
def test_a_tiny_isolation_study_retrains_each_values_best_on_test_and_resumes_without_training_twice(
        tmp_path, run_study, study_runs, monkeypatch, interrupted_at_fit):
    path = _write(tmp_path, TINY, "tiny.yaml")
    # Interrupted (Ctrl-C) in phase 2, while training its second retrain: the grid and one retrain are kept.
    restore = interrupted_at_fit(6)
    with pytest.raises(KeyboardInterrupt):
        run_study(tmp_path, path)
    parents, children, retrains = _runs(study_runs, tmp_path)
    assert len(children) == 4 and all(c.info.status == "FINISHED" for c in children)
    assert sorted(r.info.status for r in retrains) == ["FINISHED", "KILLED"]

    restore()
    result, lines = run_study(tmp_path, path)
    assert lines[0].startswith("study 'tiny': isolation on mnist-5k")
    assert any("retrain: each value's best configuration with seeds 1, 2: 3 run(s) (1 already finished, kept)"
               in line for line in lines), lines
    assert not [line for line in lines if line.startswith("[") and not line.startswith("[retrain")]  # grid done
    assert len([line for line in lines if line.startswith("[retrain")]) == 3
    assert result.completed == 4 and result.test_accuracy is not None

    parents, children, retrains = _runs(study_runs, tmp_path)
    # Phase 1: every value at every point, seed 0, judged on validation only: no nuisance trial read the test set.
    assert len(children) == 4
    points = {(c.data.params[schema.ISOLATION_VALUE], c.data.params[schema.ISOLATION_POINT]) for c in children}
    assert points == {(v, p) for v in ("optimizer=adam", "optimizer=sgd") for p in ("0", "1")}
    for c in children:
        assert c.data.tags[schema.TRIAL_KIND] == schema.KIND_NUISANCE and c.data.params["seed"] == "0"
        assert schema.TEST_ACCURACY not in c.data.metrics
        assert c.info.run_name.endswith(c.data.params[schema.ISOLATION])
    by_point = {}
    for c in children:
        by_point.setdefault(c.data.params[schema.ISOLATION_POINT], {})[c.data.params["optimizer"]] = c.data.params
    for p in by_point.values():  # the same nuisance point for both values; momentum for sgd only
        assert p["adam"]["learning_rate"] == p["sgd"]["learning_rate"]
        assert p["adam"]["momentum"] == "0.0"
    # Phase 2: each value's best (by validation) with seeds 1 and 2, on test, none trained twice.
    done = [r for r in retrains if r.info.status == "FINISHED"]
    assert len(done) == 4 and len({r.data.tags[schema.TRIAL_ID] for r in done}) == 4
    assert {(r.data.params[schema.ISOLATION_VALUE], r.data.params["seed"]) for r in done} == {
        (v, s) for v in ("optimizer=adam", "optimizer=sgd") for s in ("1", "2")}
    for r in done:
        assert r.data.tags[schema.TRIAL_KIND] == schema.KIND_RETRAIN
        assert 0 <= r.data.metrics[schema.TEST_ACCURACY] <= 1
        mine = [c for c in children if c.data.params[schema.ISOLATION_VALUE] == r.data.params[schema.ISOLATION_VALUE]]
        best = max(mine, key=lambda c: (c.data.metrics[schema.BEST_VAL_ACCURACY],
                                        -int(c.data.params[schema.ISOLATION_POINT])))
        assert r.data.params[schema.ISOLATION] == best.data.params[schema.ISOLATION]
        assert r.data.params["learning_rate"] == best.data.params["learning_rate"]
    assert {p.data.params["kind"] for p in parents} == {"isolation"}
    assert math.isfinite(parents[0].data.metrics.get(schema.TEST_ACCURACY, math.nan)) or len(parents) == 2

    again, lines = run_study(tmp_path, path)  # finished: nothing runs, nothing is read or logged
    assert again.finished_before and not any(line.startswith("[") for line in lines)

    from study.report import write_report  # the report reads what the study wrote
    from study.report.cores import PROCESSES_ENV

    monkeypatch.setenv(PROCESSES_ENV, "1")  # no forking of this process, which has TensorFlow's threads running
    out = write_report("tiny", tmp_path / "reports", f"sqlite:///{tmp_path}/mlflow.db", log_to_mlflow=False)
    text = (out / "report.md").read_text()
    assert (out / "isolation.png").exists() and "## Isolation" in text and "### Retrains on the test set" in text
    assert "| optimizer=adam |" in text and "mean of 2 retrain seeds" in text


@pytest.mark.slow
def test_a_tiny_isolation_study_with_two_workers(tmp_path, study_runs):
    path = _write(tmp_path, TINY, "tiny.yaml")
    env = {k: v for k, v in os.environ.items()
           if k not in ("MLFLOW_TRACKING_URI", "LENET_DATA_DIR") and not k.startswith("KERASTUNER_")}
    env.update(PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "study.cli", "search", str(path), "--workers", "2"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    parents, children, retrains = _runs(study_runs, tmp_path)
    assert len(parents) == 1 and parents[0].data.params["workers"] == "2"
    assert sorted((c.data.params[schema.ISOLATION_VALUE], c.data.params[schema.ISOLATION_POINT]) for c in children) == [
        ("optimizer=adam", "0"), ("optimizer=adam", "1"), ("optimizer=sgd", "0"), ("optimizer=sgd", "1")]
    assert {c.data.tags[schema.WORKER] for c in children} <= {"worker0", "worker1"}
    assert all(schema.TEST_ACCURACY not in c.data.metrics for c in children)
    assert sorted((r.data.params[schema.ISOLATION_VALUE], r.data.params["seed"]) for r in retrains) == [
        ("optimizer=adam", "1"), ("optimizer=adam", "2"), ("optimizer=sgd", "1"), ("optimizer=sgd", "2")]
    assert all(r.info.status == "FINISHED" and schema.TEST_ACCURACY in r.data.metrics for r in retrains)


def test_seed_comes_from_the_file_not_the_command_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    path = _write(tmp_path, TINY)
    assert cli_main(["search", str(path), "--seed", "3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--seed:" in err[0] and "isolation study" in err[0] and "study.seed (0)" in err[0]
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "logs").exists()


# --------------------------------------------------------------------------- phase 2's bookkeeping, with a fake store


def _run(trial_id, value, point, val=None, seed=None, test=None, status="FINISHED"):
    from types import SimpleNamespace

    name = isolation_name(point, {"optimizer": value, "learning_rate": 0.001 * (point + 1)})
    params = {schema.ISOLATION: name, schema.ISOLATION_VALUE: f"optimizer={value}", schema.ISOLATION_POINT: str(point),
              "seed": str(seed if seed is not None else 0)}
    metrics = {**({schema.BEST_VAL_ACCURACY: val} if val is not None else {}),
               **({schema.TEST_ACCURACY: test} if test is not None else {})}
    return SimpleNamespace(info=SimpleNamespace(status=status, run_id=f"run-{trial_id}"),
                           data=SimpleNamespace(params=params, metrics=metrics,
                                                tags={schema.TRIAL_ID: trial_id, schema.TRIAL_STATUS: "COMPLETED"}))


def test_phase_two_keeps_finished_retrains_of_the_current_best_and_retrains_the_rest(monkeypatch):
    from types import SimpleNamespace

    from study import retrain
    from study.spacefile import StudySettings

    trials = [_run("0", "adam", 0, 0.90), _run("1", "sgd", 0, 0.80), _run("2", "adam", 1, 0.95),
              _run("3", "sgd", 1, 0.80)]  # adam's best moved to point 1; sgd's tie goes to point 0
    retrains = [_run("r", "adam", 0, seed=1, test=0.9), _run("r", "sgd", 0, seed=1, test=0.8),
                _run("r", "sgd", 0, seed=2, test=0.7)]
    tracker = SimpleNamespace(trial_runs=lambda: trials, retrain_runs=lambda: retrains)
    trained = []

    def fake_retrain(opened, source, value, seed, n_of, echo):
        trained.append((value, seed, source.data.params[schema.ISOLATION_POINT]))
        return 0.5

    monkeypatch.setattr(retrain, "_retrain", fake_retrain)
    lines = []
    settings = StudySettings(kind="isolation", tuner="grid", seeds=2, trials_per_value=2, seed=0)
    done = retrain.retrain_best(SimpleNamespace(tracker=tracker), settings,
                                ["optimizer=adam", "optimizer=sgd", "optimizer=nadam"], lines.append)
    # adam's old retrain (point 0) is stale: both seeds again at point 1; sgd's two are kept. Seed-major.
    assert trained == [("optimizer=adam", 1, "1"), ("optimizer=adam", 2, "1")]
    assert done.test == {"optimizer=adam": {1: 0.5, 2: 0.5}, "optimizer=sgd": {1: 0.8, 2: 0.7}}
    assert done.chosen() == "optimizer=adam"  # chosen on validation, never on test
    assert "retrain: no completed trial for optimizer=nadam: nothing to retrain for it" in lines
    assert "2 run(s) (2 already finished, kept)" in lines[1]


@pytest.mark.parametrize("name, knob, values", [("optimizers", "optimizer", ("adam", "sgd", "rmsprop", "nadam")),
                                                ("activations", "activation", ("relu", "tanh", "sigmoid"))])
def test_the_shipped_isolation_studies(name, knob, values):
    space = load_space(ROOT / "search_spaces" / f"{name}.yaml")
    iso, settings = space.isolation, space.settings
    assert (iso.knob, iso.values, settings.dataset, settings.epochs) == (knob, values, "mnist", 5)
    assert 8 <= settings.trials_per_value <= 10 and settings.seeds == 3 and settings.equivalence_margin == 0.2
    assert "learning_rate" in [n.knob for n in iso.nuisance] and iso.baseline == {"variant": "small-kernel"}
    assert space.size() == len(values) * settings.trials_per_value
