"""Search spaces as data: every shipped file loads; bad files give errors naming file and key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import keras_tuner as kt
import pytest

from study.model import LeNetConfig
from study.space import SpaceError, StudySettings, load_space, resolve_config
from study.variants import VARIANTS

ROOT = Path(__file__).resolve().parents[1]
SPACE_FILES = sorted((ROOT / "search_spaces").glob("*.yaml"))


def test_the_three_documented_spaces_are_shipped():
    assert {p.name for p in SPACE_FILES} >= {"lenet.yaml", "documented.yaml", "smoke.yaml"}


@pytest.mark.parametrize("path", SPACE_FILES, ids=lambda p: p.name)
def test_every_space_file_loads_and_builds_hyperparameters(path):
    space = load_space(path)
    hp = space.hyperparameters()
    assert isinstance(hp, kt.HyperParameters)
    assert {h.name for h in hp.space} == set(space.knobs)
    # The default trial (first choice of each knob) must be a buildable LeNet.
    config = resolve_config({k: v for k, v in hp.values.items() if hp.is_active(k)}, space.settings)
    assert isinstance(config, LeNetConfig)


def test_lenet_space_covers_the_issue_knobs():
    space = load_space(ROOT / "search_spaces/lenet.yaml")
    for knob in ("activation", "pooling", "c1_padding", "kernel_size", "c5", "dense_units", "optimizer",
                 "learning_rate", "batch_size"):
        assert knob in space.knobs
    assert space.knobs["kernel_size"]["values"] == [5, 3]
    assert space.knobs["learning_rate"]["sampling"] == "log"
    assert space.knobs["momentum"]["when"] == {"optimizer": ["sgd"]}
    hp = space.hyperparameters()
    hp.values["optimizer"] = "adam"
    assert not hp.is_active("momentum")
    hp.values["optimizer"] = "sgd"
    assert hp.is_active("momentum")
    assert space.settings.tuner == "tpe" and space.settings.final_epochs > space.settings.epochs
    assert space.settings.prune == "median" and space.settings.time_budget is not None
    for knob in ("augment", "batch_norm", "dropout", "lr_schedule", "weight_decay", "label_smoothing"):
        assert knob in space.knobs
    # It starts from the best known configurations, each a buildable LeNet-5 with every knob named.
    assert len(space.start_with) == 2 and all(set(entry) == set(space.knobs) - {"momentum"} for entry in space.start_with)
    for values in space.start_values():
        assert isinstance(resolve_config(values, space.settings), LeNetConfig)


def test_the_fashion_study_searches_wider_maps_from_a_pair_that_differs_only_there():
    from study.model import count_params

    space = load_space(ROOT / "search_spaces/lenet-fashion.yaml")
    lenet = load_space(ROOT / "search_spaces/lenet.yaml")
    assert space.settings.dataset == "fashion_mnist" and space.settings.tuner == lenet.settings.tuner
    assert space.settings.final_epochs > space.settings.epochs
    assert space.knobs["c1_filters"]["values"] == [16, 6] and space.knobs["c3_filters"]["values"] == [32, 16]
    assert "c1_filters" not in lenet.knobs  # the MNIST study keeps LeNet-5's widths
    wide, narrow = (resolve_config(values, space.settings) for values in space.start_values())
    assert (wide.c1_filters, wide.c3_filters, narrow.c1_filters, narrow.c3_filters) == (16, 32, 6, 16)
    assert narrow == wide.replace(c1_filters=6, c3_filters=16)
    assert count_params(narrow) < count_params(wide) == 120_886


def test_documented_space_is_every_variant_with_five_seeds():
    space = load_space(ROOT / "search_spaces/documented.yaml")
    assert space.knobs["variant"]["values"] == list(VARIANTS)
    # the same five seeds for every variant (the report pairs variants by seed), and a budget that runs them all
    assert space.knobs["seed"]["values"] == [0, 1, 2, 3, 4]
    assert space.size() == len(VARIANTS) * 5 == space.settings.max_trials
    config = resolve_config({"variant": "subclass-relu", "seed": 1}, space.settings)
    # The variant's own recipe, epochs capped by the study (80 → 10), patience as documented.
    assert config == VARIANTS["subclass-relu"].config.replace(epochs=10, seed=1)
    assert config.patience == 5


def test_size_counts_discrete_configurations(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("space:\n  activation: {choice: [relu, tanh]}\n  batch_size: {int: [32, 128], step: 32}\n"
                    "  kernel_size: {fixed: 3}\n")
    assert load_space(path).size() == 2 * 4 * 1


BAD_SPACES = [
    ("space:\n  activaton: {choice: [relu]}\n", ["space.activaton", "unknown knob", "activation"]),
    ("space:\n  activation: {choice: []}\n", ["space.activation.choice", "non-empty"]),
    ("space:\n  activation: {choice: [relu, swish]}\n", ["space.activation.choice", "'swish'", "sigmoid, tanh, relu"]),
    ("space:\n  learning_rate: {float: [0.1, 0.001]}\n", ["space.learning_rate.float", "reversed", "min < max"]),
    ("space:\n  learning_rate: {float: [0.0, 0.1], sampling: log}\n", ["space.learning_rate.sampling", "min > 0"]),
    ("space:\n  batch_size: {int: [32, 64.5]}\n", ["space.batch_size.int", "integers"]),
    ("space:\n  batch_size: {choice: [32, big]}\n", ["space.batch_size.choice", "'big'", "not an integer"]),
    ("space:\n  learning_rate: {int: [1, 2]}\n", ["space.learning_rate", "use float"]),
    ("space:\n  activation: {float: [0, 1]}\n", ["space.activation", "categorical"]),
    ("space:\n  momentum: {float: [0, 0.9], when: {optimizer: sgd}}\n", ["space.momentum.when", "listed above"]),
    ("space:\n  optimizer: {choice: [adam]}\n  momentum: {float: [0, 0.9], when: {optimizer: sgd}}\n",
     ["space.momentum.when.optimizer", "'sgd'", "adam"]),
    ("space:\n  activation: {choice: [relu], smapling: log}\n", ["space.activation", "'smapling'"]),
    ("space:\n  variant: {choice: [lenet-6]}\n", ["space.variant.choice", "tf2-classic"]),
    ("space:\n  dense_units: {choice: [[84], [0]]}\n", ["space.dense_units.choice", "[0]"]),
    ("study:\n  tuner: genetic\nspace:\n  activation: {choice: [relu]}\n", ["study.tuner", "hyperband"]),
    ("study:\n  epochs: 0\nspace:\n  activation: {choice: [relu]}\n", ["study.epochs", "at least 1"]),
    ("study:\n  dataset: cifar10\nspace:\n  activation: {choice: [relu]}\n", ["study.dataset", "mnist-5k"]),
    ("study:\n  trails: 3\nspace:\n  activation: {choice: [relu]}\n", ["study.trails", "unknown setting"]),
    ("study:\n  tuner: grid\nspace:\n  learning_rate: {float: [0.001, 0.1]}\n", ["study.tuner", "discrete"]),
    ("space: [1, 2]\n", ["space:", "mapping of knobs"]),
    ("space:\n  activation: {choice: [relu]\n", ["not valid YAML", "line"]),
    ("spaces:\n  activation: {choice: [relu]}\n", ["unknown section 'spaces'"]),
    # the modern knobs
    ("space:\n  augment: {choice: [none, mirror]}\n", ["space.augment.choice", "'mirror'", "shift-rotate"]),
    ("space:\n  augment: {choice: [none, flip-shift]}\n", ["space.augment", "'flip-shift' mirrors", "fashion_mnist"]),
    ("space:\n  lr_schedule: {fixed: step}\n", ["space.lr_schedule.fixed", "'step'", "onecycle, plateau"]),
    ("space:\n  batch_norm: {choice: [true, maybe]}\n", ["space.batch_norm.choice", "'maybe'", "true, false"]),
    ("space:\n  dropout: {float: [0.0, 0.95]}\n", ["space.dropout.float", "0.95", "[0.0, 0.9]"]),
    ("space:\n  weight_decay: {choice: [0.0, 1.5]}\n", ["space.weight_decay.choice", "1.5", "[0.0, 0.1]"]),
    ("space:\n  label_smoothing: {fixed: -0.1}\n", ["space.label_smoothing.fixed", "-0.1"]),
    ("space:\n  c1_filters: {choice: [6, 0]}\n", ["space.c1_filters.choice", "0", "[1, 512]"]),
    ("space:\n  c3_filters: {int: [16, 1024]}\n", ["space.c3_filters", "1024", "[1, 512]"]),
    ("study:\n  stop_at_chance: -1\nspace:\n  activation: {choice: [relu]}\n", ["study.stop_at_chance", "0 (off)"]),
    ("study:\n  final_epochs: two\nspace:\n  activation: {choice: [relu]}\n", ["study.final_epochs", "integer"]),
    # the equivalence margin, in percentage points of accuracy
    ("study:\n  equivalence_margin: 0\nspace:\n  activation: {choice: [relu]}\n",
     ["study.equivalence_margin: 0 is not allowed", "percentage points", "above 0 and below 100", "leave it out"]),
    ("study:\n  equivalence_margin: -0.2\nspace:\n  activation: {choice: [relu]}\n",
     ["study.equivalence_margin: -0.2 is not allowed", "above 0"]),
    ("study:\n  equivalence_margin: 100\nspace:\n  activation: {choice: [relu]}\n",
     ["study.equivalence_margin: 100 is not allowed", "below 100"]),
    ("study:\n  equivalence_margin: 0.2 pp\nspace:\n  activation: {choice: [relu]}\n",
     ["study.equivalence_margin: '0.2 pp' is not allowed", "need a number"]),
    ("study:\n  equivalence_margin: .nan\nspace:\n  activation: {choice: [relu]}\n",
     ["study.equivalence_margin: nan is not allowed"]),
    ("study:\n  equivalence_margin: true\nspace:\n  activation: {choice: [relu]}\n",
     ["study.equivalence_margin: True is not allowed"]),
]


def test_equivalence_margin_is_a_study_setting_in_percentage_points(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("study:\n  equivalence_margin: 0.2\nspace:\n  activation: {choice: [relu, tanh]}\n")
    space = load_space(path)
    assert space.settings.equivalence_margin == 0.2
    params = space.settings.to_params()  # as the parent run records it, and a worker or a report reads it back
    assert params["equivalence_margin"] == "0.2" and StudySettings.from_params(params) == space.settings
    assert StudySettings().to_params()["equivalence_margin"] == "None"
    assert StudySettings.from_params(StudySettings().to_params()).equivalence_margin is None
    assert "equivalence_margin=0.2 pp" in space.describe()
    assert "equivalence_margin" not in load_space(ROOT / "search_spaces/lenet.yaml").describe()
    ablation = tmp_path / "a.yaml"  # an ablation declares it the same way
    ablation.write_text("study:\n  kind: ablation\n  seeds: 3\n  equivalence_margin: 0.25\n"
                        "baseline: {variant: small-kernel}\nablate:\n  activation: [tanh]\n")
    assert "equivalence_margin=0.25 pp" in load_space(ablation).describe()


def test_a_mirroring_augment_is_for_fashion_mnist_only(tmp_path, capsys):
    from study.cli import main as cli_main
    from study.search import load_space_with_overrides

    path = tmp_path / "fashion.yaml"
    path.write_text("study:\n  dataset: fashion_mnist\nspace:\n  augment: {choice: [none, flip-shift]}\n")
    space = load_space(path)
    assert space.knobs["augment"]["values"] == ["none", "flip-shift"]
    assert resolve_config({"augment": "flip-shift"}, space.settings).augment == "flip-shift"
    # The same file pointed at digits by a flag: refused before anything starts, in one line.
    assert cli_main(["search", str(path), "--dataset", "mnist-5k", "--log-dir", str(tmp_path / "logs")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("mirrors images, which turns digits into other symbols; it is allowed on fashion_mnist "
                        "only, not on mnist-5k") and "\n" not in err and "with --dataset mnist-5k" in err
    with pytest.raises(SpaceError):
        load_space_with_overrides(str(path), dataset="mnist")


def test_modern_knobs_and_settings_in_a_space_file(tmp_path):
    path = tmp_path / "modern.yaml"
    path.write_text("study:\n  stop_at_chance: 2\n  final_epochs: 12\nspace:\n"
                    "  augment: {choice: [none, shift-rotate]}\n  batch_norm: {choice: [false, true]}\n"
                    "  dropout: {float: [0.0, 0.5]}\n  lr_schedule: {choice: [constant, cosine, onecycle, plateau]}\n"
                    "  weight_decay: {choice: [0.0, 0.0001]}\n  label_smoothing: {fixed: 0.1}\n")
    space = load_space(path)
    assert (space.settings.stop_at_chance, space.settings.final_epochs) == (2, 12)
    from study.space import StudySettings

    back = StudySettings.from_params(space.settings.to_params())  # as a worker reads the chief's settings
    assert (back.stop_at_chance, back.final_epochs) == (2, 12)
    hp = space.hyperparameters()
    config = resolve_config({k: v for k, v in hp.values.items() if hp.is_active(k)}, space.settings)
    assert (config.augment, config.batch_norm, config.lr_schedule, config.label_smoothing) == ("none", False, "constant", 0.1)
    hp.values.update(batch_norm=1, augment="shift-rotate")
    config = resolve_config({k: v for k, v in hp.values.items() if hp.is_active(k)}, space.settings)
    assert config.batch_norm is True and config.augment == "shift-rotate"


@pytest.mark.parametrize("text, words", BAD_SPACES, ids=[w[0] for _, w in BAD_SPACES])
def test_bad_spaces_name_the_file_the_key_and_what_is_allowed(tmp_path, text, words):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(SpaceError) as err:
        load_space(path)
    message = str(err.value)
    assert message.startswith(str(path))
    assert "\n" not in message
    for word in words:
        assert word in message, message


def test_space_command_prints_the_space_or_a_one_line_error(tmp_path):
    ok = subprocess.run([sys.executable, "-m", "study.cli", "space", str(ROOT / "search_spaces/documented.yaml")],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "variant" in ok.stdout and "size: 30 configurations" in ok.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("space:\n  kernel_size: {choice: [3, 7]}\n")
    out = subprocess.run([sys.executable, "-m", "study.cli", "space", str(bad)], capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        f"lenet-study: error: {bad}: space.kernel_size.choice: 7 is not allowed; allowed: 3, 5"
    ]
    assert "Traceback" not in out.stderr
