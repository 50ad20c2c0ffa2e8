"""Ablation studies (study/ablation.py): a `kind: ablation` file compiles to a grid over arms x seeds, bad
files get one line naming the file and key, and a tiny ablation runs, resumes and runs with workers."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from study import schema
from study.ablation import BASELINE, arm_name, parse_arm
from study.cli import main as cli_main
from study.model import ConfigError, LeNetConfig
from study.search import load_space_with_overrides
from study.space import SpaceError, StudySettings, load_space, resolve_config
from study.variants import VARIANTS

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "search_spaces" / "ablation.yaml"
CARD_KNOBS = ("activation", "pooling", "c1_padding", "kernel_size", "c5", "dense_units", "optimizer", "learning_rate")
MODERN_KNOBS = ("augment", "batch_norm", "dropout", "lr_schedule", "weight_decay", "label_smoothing")
# 2 arms x 2 seeds of 1 epoch on 300 real digits: seconds.
TINY = ("study:\n  kind: ablation\n  dataset: mnist-5k\n  train_samples: 300\n  val_fraction: 0.25\n"
        "  seeds: 2\n  epochs: 1\nbaseline: {activation: relu, pooling: max, batch_size: 64}\n"
        "ablate:\n  activation: [tanh]\n")


def _write(folder: Path, text: str, name: str = "abl.yaml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


def _differences(config: LeNetConfig, base: LeNetConfig) -> set[str]:
    return {f.name for f in dataclasses.fields(LeNetConfig) if getattr(config, f.name) != getattr(base, f.name)}


# --------------------------------------------------------------------------- compiling


def test_the_shipped_ablation_changes_every_knob_of_the_card_and_the_modern_ones_one_at_a_time():
    space = load_space(SHIPPED)
    ablation, settings = space.ablation, space.settings
    assert (settings.kind, settings.tuner, settings.test_eval, settings.seeds) == ("ablation", "grid", "all", 5)
    assert ablation.baseline == {"variant": "small-kernel"}
    assert set(ablation.ablate) == set(CARD_KNOBS + MODERN_KNOBS)
    assert ablation.arms[0] == BASELINE and len(ablation.arms) == 1 + sum(map(len, ablation.ablate.values()))
    assert settings.max_trials == space.size() == len(ablation.arms) * 5
    # The hyperparameters: the baseline fixed, then the seed, then the arm (the arm varies fastest in the grid).
    assert list(space.knobs) == ["variant", "seed", schema.ARM]
    assert space.knobs["seed"]["values"] == [0, 1, 2, 3, 4]
    base = resolve_config({"variant": "small-kernel", "seed": 3, schema.ARM: BASELINE}, settings)
    assert base == VARIANTS["small-kernel"].config.replace(epochs=settings.epochs, seed=3)  # its 50 epochs capped
    assert settings.epochs < 50
    for arm in ablation.arms[1:]:
        config = resolve_config({"variant": "small-kernel", "seed": 3, schema.ARM: arm}, settings)
        (knob,) = _differences(config, base)  # exactly one knob differs from the baseline: the arm's
        assert arm.startswith(f"{knob}=") and arm_name(knob, getattr(config, knob)) == arm
        assert config.seed == 3


def test_arms_name_each_value_and_read_back_as_the_same_value():
    cases = {"activation=tanh": ("activation", "tanh"), "kernel_size=5": ("kernel_size", 5),
             "learning_rate=0.0003": ("learning_rate", 0.0003), "batch_norm=true": ("batch_norm", True),
             "dense_units=[120, 84]": ("dense_units", (120, 84)), "dense_units=[]": ("dense_units", ()),
             "weight_decay=1e-05": ("weight_decay", 1e-5)}
    for arm, (knob, value) in cases.items():
        assert arm_name(knob, value) == arm
        assert parse_arm(arm) == {knob: value}
    assert arm_name("dense_units", [84]) == arm_name("dense_units", 84) == "dense_units=[84]"
    assert arm_name("learning_rate", 1) == "learning_rate=1.0"  # a float knob written as an int
    assert parse_arm(BASELINE) == {}
    for bad in ("activation", "colour=red", "seed=3", "kernel_size=big", "batch_norm=maybe"):
        with pytest.raises(ConfigError):
            parse_arm(bad)


def test_a_baseline_of_knob_values_and_a_variant_with_changes(tmp_path):
    path = _write(tmp_path, "study:\n  kind: ablation\n  seeds: 3\n  epochs: 4\n  patience: 2\n"
                  "baseline: {activation: relu, dense_units: [120, 84], batch_norm: true}\n"
                  "ablate:\n  dense_units: [[84], []]\n  batch_norm: [false]\n  optimizer: [sgd]\n")
    space = load_space(path)
    assert space.ablation.arms == (BASELINE, "dense_units=[84]", "dense_units=[]", "batch_norm=false", "optimizer=sgd")
    assert space.settings.max_trials == 15 and space.size() == 15
    hp = space.hyperparameters()
    assert {h.name for h in hp.space} == {"activation", "dense_units", "batch_norm", "seed", schema.ARM}
    values = {k: v for k, v in hp.values.items()}
    base = resolve_config(values, space.settings)
    # Knob values start from the defaults with the study's epochs and patience.
    assert (base.activation, base.dense_units, base.batch_norm, base.epochs, base.patience) == ("relu", (120, 84), True, 4, 2)
    for arm in space.ablation.arms[1:]:
        config = resolve_config({**values, schema.ARM: arm}, space.settings)
        assert len(_differences(config, base)) == 1
    # A variant with some of its knobs changed is a baseline too.
    path = _write(tmp_path, "study:\n  kind: ablation\n  seeds: 2\n  epochs: 3\n"
                  "baseline: {variant: subclass-relu, learning_rate: 0.05}\nablate:\n  momentum: [0.9]\n", "v.yaml")
    space = load_space(path)
    config = resolve_config({"variant": "subclass-relu", "learning_rate": 0.05, "seed": 1, schema.ARM: "momentum=0.9"},
                            space.settings)
    assert config == VARIANTS["subclass-relu"].config.replace(learning_rate=0.05, momentum=0.9, epochs=3, seed=1)


def test_settings_carry_kind_and_seeds_to_the_parent_run_and_back():
    space = load_space(SHIPPED)
    params = space.settings.to_params()
    assert (params["kind"], params["seeds"]) == ("ablation", "5")
    assert StudySettings.from_params(params, base=space.settings) == space.settings  # as a worker reads them
    assert StudySettings.from_params(params).seeds == 5
    assert StudySettings.from_params({"tuner": "random"}).kind == "search"  # a parent run from before kinds
    # --max-trials runs fewer trials; another tuner is refused in one line.
    assert space.settings.override(max_trials=7).max_trials == 7
    with pytest.raises(SpaceError, match=r"^command line: study.tuner: 'random' is not allowed; an ablation runs"):
        space.settings.override(tuner="random")


def test_the_space_command_describes_arms_seeds_and_trials(capsys):
    assert cli_main(["space", str(SHIPPED)]) == 0
    out = capsys.readouterr().out
    space = load_space(SHIPPED)
    n = len(space.ablation.arms)
    assert out.startswith(f"ablation {SHIPPED} (study 'ablation', sha256 ")
    assert "baseline: variant=small-kernel (5 epochs, EarlyStopping off)" in out
    assert f"arms: {n}, the baseline and {n - 1} with one knob changed:" in out
    assert "    kernel_size=5 " in out and "41,282 params" in out  # each arm with its parameters
    assert "seeds: 5 (0 to 4)" in out and f"trials: {n * 5} ({n} arms x 5 seeds)" in out


# --------------------------------------------------------------------------- what an ablation file refuses

HEAD = "study:\n  kind: ablation\n  seeds: 3\n"
BASE = "baseline: {variant: small-kernel}\n"
BAD_ABLATIONS = [
    (HEAD + BASE + "ablate:\n  activaton: [tanh]\n", ["ablate.activaton", "not a knob", "allowed: activation"]),
    (HEAD + BASE + "ablate:\n  seed: [1]\n", ["ablate.seed", "study.seeds sets the seeds"]),
    (HEAD + BASE + "ablate:\n  variant: [tf2-classic]\n", ["ablate.variant", "not a knob", "activation"]),
    (HEAD + "baseline: {kernel: 3}\nablate:\n  activation: [tanh]\n", ["baseline.kernel", "not a knob", "kernel_size"]),
    (HEAD + BASE + "ablate:\n  activation: [swish]\n", ["ablate.activation", "'swish'", "allowed: sigmoid, tanh, relu"]),
    (HEAD + "baseline: {kernel_size: 7}\nablate:\n  activation: [tanh]\n", ["baseline.kernel_size", "7", "allowed: 3, 5"]),
    (HEAD + BASE + "ablate:\n  learning_rate: [0.0]\n", ["ablate.learning_rate", "0.0", "(0, 1000000]"]),
    (HEAD + BASE + "ablate:\n  activation: [tanh, relu]\n",
     ["ablate.activation", "'relu' is the baseline's own value (relu)", "only alternatives"]),
    (HEAD + BASE + "ablate:\n  kernel_size: [5, 5]\n", ["ablate.kernel_size", "listed twice"]),
    (HEAD + BASE + "ablate:\n  activation: tanh\n", ["ablate.activation", "list of alternatives", "relu"]),
    (HEAD + BASE + "space:\n  activation: {choice: [tanh]}\n", ["space:", "no space section", "ablate"]),
    (HEAD + BASE, ["ablate:", "expected the knobs to change", "activation: [sigmoid, tanh]"]),
    (HEAD + BASE + "ablate: {}\n", ["ablate:", "expected the knobs to change"]),
    ("study:\n  seeds: 3\nbaseline: {variant: small-kernel}\nablate:\n  activation: [tanh]\n",
     ["ablate:", "only an ablation takes baseline and ablate", "kind: ablation"]),
    ("space:\n  activation: {choice: [relu]}\nablate:\n  activation: [tanh]\n", ["ablate:", "kind: ablation"]),
    ("study:\n  seeds: 3\nspace:\n  activation: {choice: [relu]}\n", ["study.seeds", "only a kind: ablation"]),
    ("study:\n  kind: ablaton\nspace:\n  activation: {choice: [relu]}\n", ["study.kind", "'ablaton'", "search, ablation"]),
    ("study:\n  kind: ablation\n  seeds: 1\n" + BASE + "ablate:\n  activation: [tanh]\n",
     ["study.seeds: 1 is not allowed", "at least 2", "pairs them"]),
    ("study:\n  kind: ablation\n  seeds: 2.5\n" + BASE + "ablate:\n  activation: [tanh]\n",
     ["study.seeds: 2.5 is not allowed", "an integer of at least 2"]),
    ("study:\n  kind: ablation\n" + BASE + "ablate:\n  activation: [tanh]\n", ["study.seeds: missing", "at least 2"]),
    (HEAD + "  tuner: random\n" + BASE + "ablate:\n  activation: [tanh]\n", ["study.tuner", "'random'", "grid"]),
    (HEAD + "  max_trials: 9\n" + BASE + "ablate:\n  activation: [tanh]\n", ["study.max_trials", "arms x seeds"]),
    (HEAD + "  test_eval: best\n" + BASE + "ablate:\n  activation: [tanh]\n", ["study.test_eval", "all"]),
    (HEAD + "  final_epochs: 10\n" + BASE + "ablate:\n  activation: [tanh]\n", ["study.final_epochs", "no final model"]),
    (HEAD + "baseline: small-kernel\nablate:\n  activation: [tanh]\n",
     ["baseline:", "variant: <name> (tf2-classic", "knob values"]),
    (HEAD + "baseline: {variant: lenet-6}\nablate:\n  activation: [tanh]\n",
     ["baseline.variant", "'lenet-6'", "small-kernel"]),
    (HEAD + "ablate:\n  activation: [tanh]\n", ["baseline:", "variant: <name>"]),
    (HEAD + BASE + "ablate:\n  augment: [flip-shift]\n", ["ablate.augment", "'flip-shift' mirrors images", "fashion_mnist"]),
    (HEAD + "baseline: {augment: flip-shift}\nablate:\n  activation: [tanh]\n", ["baseline.augment", "mirrors images"]),
    (HEAD + BASE + "ablate:\n  momentum: [0.9]\n", ["ablate.momentum", "0.9", "only sgd takes momentum, not adam"]),
    (HEAD + "baseline: {c1_padding: valid, c5: conv, kernel_size: 3}\nablate:\n  kernel_size: [5]\n",
     ["ablate.kernel_size", "makes no LeNet-5 from this baseline", "no spatial extent"]),
    (HEAD + BASE + "start_with:\n  - {activation: relu}\nablate:\n  activation: [tanh]\n",
     ["unknown section 'start_with'", "study, baseline, ablate"]),
]


@pytest.mark.parametrize("text, words", BAD_ABLATIONS, ids=[w[0] + f"-{i}" for i, (_, w) in enumerate(BAD_ABLATIONS)])
def test_bad_ablations_name_the_file_the_key_and_what_is_allowed(tmp_path, text, words):
    path = _write(tmp_path, text)
    with pytest.raises(SpaceError) as err:
        load_space(path)
    message = str(err.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    for word in words:
        assert word in message, message


def test_the_cli_refuses_a_bad_ablation_in_one_line_before_anything_starts(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    path = _write(tmp_path, HEAD + BASE + "ablate:\n  activation: [relu]\n")
    for argv in (["space", str(path)], ["search", str(path)]):
        assert cli_main(argv) == 2
        err = capsys.readouterr().err
        assert err.strip().splitlines() == [
            f"lenet-study: error: {path}: ablate.activation: 'relu' is the baseline's own value (relu); "
            "list only alternatives to it"]
    good = _write(tmp_path, TINY, "tiny.yaml")
    assert cli_main(["search", str(good), "--tuner", "bayesian"]) == 2
    assert "study.tuner: 'bayesian' is not allowed; an ablation runs every arm x seed" in capsys.readouterr().err
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "logs").exists()


def test_a_mirroring_arm_is_for_fashion_mnist_only(tmp_path):
    path = _write(tmp_path, "study:\n  kind: ablation\n  dataset: fashion_mnist\n  seeds: 2\n"
                  "baseline: {variant: conv-head-relu}\nablate:\n  augment: [flip-shift, shift]\n")
    assert load_space(path).ablation.arms == (BASELINE, "augment=flip-shift", "augment=shift")
    with pytest.raises(SpaceError, match=r"with --dataset mnist: ablate.augment: 'flip-shift' mirrors images"):
        load_space_with_overrides(str(path), dataset="mnist")


# --------------------------------------------------------------------------- a tiny ablation, end to end


def _arm_runs(study_runs, folder: Path, study: str = "tiny"):
    client, parents, children = study_runs(f"sqlite:///{folder}/mlflow.db", study)
    return parents, children


@pytest.mark.slow
def test_a_tiny_ablation_runs_every_arm_with_every_seed_and_resumes_after_an_interruption(
        tmp_path, run_study, study_runs, monkeypatch, interrupted_at_fit):
    path = _write(tmp_path, TINY, "tiny.yaml")
    # Interrupted (Ctrl-C) while training its third trial: the first two are kept.
    restore = interrupted_at_fit(3)
    with pytest.raises(KeyboardInterrupt):
        run_study(tmp_path, path)
    parents, children = _arm_runs(study_runs, tmp_path)
    finished = {c.data.tags[schema.TRIAL_ID]: c for c in children if c.info.status == "FINISHED"}
    assert sorted(finished) == ["0", "1"]  # the seed varies slowest: both arms with seed 0 came first
    assert {(c.data.params[schema.ARM], c.data.params["seed"]) for c in finished.values()} == {
        (BASELINE, "0"), ("activation=tanh", "0")}
    assert [c.info.status for c in children if c.data.tags[schema.TRIAL_ID] == "2"] == ["KILLED"]

    restore()
    result, lines = run_study(tmp_path, path)
    assert any("resuming: 2 trial(s) already finished are kept" in line for line in lines)
    trained = [line for line in lines if line.startswith("[")]
    assert [line.split(" | ")[0] for line in trained] == ["[3/4] trial 2 baseline seed=1",
                                                          "[4/4] trial 3 activation=tanh seed=1"]
    assert result.completed == 4 and result.failed == 0
    assert lines[0].startswith("study 'tiny': ablation on mnist-5k")

    parents, children = _arm_runs(study_runs, tmp_path)
    done = [c for c in children if c.info.status == "FINISHED"]
    assert len(done) == 4 and len({c.data.tags[schema.TRIAL_ID] for c in done}) == 4  # none trained twice
    pairs = {(c.data.params[schema.ARM], int(c.data.params["seed"])): c for c in done}
    assert set(pairs) == {(arm, seed) for arm in (BASELINE, "activation=tanh") for seed in (0, 1)}
    for (arm, seed), run in pairs.items():
        assert run.data.tags[schema.ARM] == arm  # a param and a tag
        assert run.info.run_name.endswith(f": {arm} seed={seed}")
        assert 0 <= run.data.metrics[schema.TEST_ACCURACY] <= 1  # every arm evaluated on the test set
        base = LeNetConfig.from_params(pairs[BASELINE, seed].data.params)
        assert _differences(LeNetConfig.from_params(run.data.params), base) == (
            set() if arm == BASELINE else {"activation"})
    assert {p.data.params["kind"] for p in parents} == {"ablation"}
    assert {p.data.params["seeds"] for p in parents} == {"2"}
    assert all(p.info.run_name.startswith("tiny: ablation on mnist-5k") for p in parents)


@pytest.mark.slow
def test_a_tiny_ablation_with_two_workers(tmp_path, study_runs):
    path = _write(tmp_path, TINY, "tiny.yaml")
    env = {k: v for k, v in os.environ.items()
           if k not in ("MLFLOW_TRACKING_URI", "LENET_DATA_DIR") and not k.startswith("KERASTUNER_")}
    env.update(PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "study.cli", "search", str(path), "--workers", "2"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    parents, children = _arm_runs(study_runs, tmp_path)
    assert len(parents) == 1 and parents[0].data.params["workers"] == "2"
    assert sorted((c.data.tags[schema.ARM], c.data.params["seed"]) for c in children) == [
        ("activation=tanh", "0"), ("activation=tanh", "1"), (BASELINE, "0"), (BASELINE, "1")]
    assert all(c.data.params[schema.ARM] == c.data.tags[schema.ARM] for c in children)
    assert {c.data.tags[schema.WORKER] for c in children} <= {"worker0", "worker1"}
    assert all(c.info.status == "FINISHED" for c in children)
    progress = [line for line in proc.stdout.splitlines() if line.startswith("[")]
    assert len(progress) == 4 and all(" seed=" in line for line in progress), progress
