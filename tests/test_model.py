"""The builder, the documented variants and the keras-tuner adapter."""

from __future__ import annotations

import keras
import keras_tuner as kt
import numpy as np
import pytest

from study.model import ConfigError, LeNetConfig, build_lenet, count_params, probabilities
from study.tuner import build_model, config_from_hp
from study.variants import VARIANTS, get_variant, UnknownVariant

# Per-layer parameter counts from documented-variants.md.
DOCUMENTED_LAYERS = {
    "tf2-classic": [156, 2416, 48120, 10164, 850],
    "tf2-classic-mse": [156, 2416, 48120, 10164, 850],
    "subclass-relu": [156, 2416, 48120, 10164, 850],
    "d2l-sigmoid": [156, 2416, 30840, 10164, 850],
    "conv-head-relu": [156, 2416, 48120, 10164, 850],
    "small-kernel": [60, 880, 48120, 7260, 610],
}
DOCUMENTED_TOTALS = {"tf2-classic": 61706, "subclass-relu": 61706, "d2l-sigmoid": 44426,
                     "conv-head-relu": 61706, "small-kernel": 56930}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_variant_layers_and_parameter_counts_match_the_document(name):
    model = build_lenet(VARIANTS[name].config)
    counts = [layer.count_params() for layer in model.layers if layer.count_params()]
    assert counts == DOCUMENTED_LAYERS[name]
    assert model.count_params() == VARIANTS[name].params == count_params(VARIANTS[name].config)
    if name in DOCUMENTED_TOTALS:
        assert model.count_params() == DOCUMENTED_TOTALS[name]
    assert model.output_shape == (None, 10)


def test_variant_architectures_follow_the_table():
    def kinds(name):
        m = build_lenet(VARIANTS[name].config)
        return {layer.name: layer for layer in m.layers}

    classic = kinds("tf2-classic")
    assert isinstance(classic["S2"], keras.layers.AveragePooling2D)
    assert isinstance(classic["C5"], keras.layers.Conv2D) and classic["C5"].output.shape[1:3] == (1, 1)
    assert classic["C1"].output.shape[1:] == (28, 28, 6)  # same padding
    d2l = kinds("d2l-sigmoid")
    assert d2l["C1"].output.shape[1:] == (24, 24, 6)  # valid padding
    assert d2l["output"].activation.__name__ == "sigmoid"
    assert isinstance(d2l["C5"], keras.layers.Dense)
    small = kinds("small-kernel")
    assert small["C1"].kernel_size == (3, 3)
    assert small["output"].activation.__name__ == "linear"
    assert small["F6"].units == 60


def test_build_model_with_empty_hyperparameters_is_tf2_classic():
    hp = kt.HyperParameters()
    assert config_from_hp(hp) == LeNetConfig() == VARIANTS["tf2-classic"].config
    model = build_model(hp)
    assert model.count_params() == 61706
    defaults = LeNetConfig().to_params()
    assert defaults == {
        "activation": "sigmoid", "pooling": "avg", "c1_padding": "same", "kernel_size": "5", "c5": "conv",
        "c5_units": "120", "dense_units": "84", "output": "softmax", "loss": "crossentropy",
        "optimizer": "adam", "learning_rate": "0.001", "momentum": "0.0", "input_scaling": "unit",
        "batch_size": "32", "epochs": "10", "patience": "0", "seed": "0",
    }


def test_build_model_reads_hyperparameters_and_variants():
    hp = kt.HyperParameters()
    hp.Fixed("variant", "small-kernel")
    hp.Fixed("learning_rate", 0.01)
    config = config_from_hp(hp)
    assert config == VARIANTS["small-kernel"].config.replace(learning_rate=0.01)
    hp = kt.HyperParameters()
    hp.Choice("optimizer", ["adam", "sgd"])
    hp.Float("momentum", 0.0, 0.9, parent_name="optimizer", parent_values=["sgd"])
    assert config_from_hp(hp).momentum == 0.0  # momentum inactive under adam


@pytest.mark.parametrize(
    "change, check",
    [
        ({"activation": "relu"}, lambda m: m.get_layer("C1").activation.__name__ == "relu"),
        ({"pooling": "max"}, lambda m: isinstance(m.get_layer("S2"), keras.layers.MaxPooling2D)),
        ({"c1_padding": "valid", "c5": "dense"}, lambda m: m.get_layer("C1").output.shape[1] == 24),
        ({"kernel_size": 3}, lambda m: m.get_layer("C3").kernel_size == (3, 3)),
        ({"c5": "dense"}, lambda m: isinstance(m.get_layer("C5"), keras.layers.Dense)),
        ({"dense_units": (120, 84)}, lambda m: m.get_layer("F6").units == 120 and m.get_layer("F6_2").units == 84),
        ({"output": "logits"}, lambda m: m.get_layer("output").activation.__name__ == "linear"),
        ({"loss": "mse"}, lambda m: "mse" in m.loss.name),
        ({"optimizer": "sgd", "momentum": 0.9}, lambda m: isinstance(m.optimizer, keras.optimizers.SGD)
         and float(m.optimizer.momentum) == pytest.approx(0.9)),
        ({"optimizer": "rmsprop", "learning_rate": 0.05},
         lambda m: float(m.optimizer.learning_rate.numpy()) == pytest.approx(0.05)),
        ({"input_scaling": "symmetric"}, lambda m: float(m.get_layer("scale_symmetric").offset) == -1.0),
    ],
)
def test_each_knob_changes_the_model(change, check):
    assert check(build_lenet(LeNetConfig(**change)))


@pytest.mark.parametrize("scaling, lo, hi", [("unit", 0, 1), ("symmetric", -1, 1), ("raw", 0, 255)])
def test_input_scaling_lives_inside_the_model(scaling, lo, hi):
    model = build_lenet(LeNetConfig(input_scaling=scaling))
    scale = keras.Model(model.inputs, model.get_layer(f"scale_{scaling}").output)
    image = np.zeros((1, 28, 28, 1), dtype="uint8")
    image[0, :14] = 255
    out = scale.predict(image, verbose=0)
    assert out.min() == pytest.approx(lo) and out.max() == pytest.approx(hi)


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"c1_padding": "valid", "kernel_size": 5, "c5": "conv"}, ["C5", "no spatial extent", "c5=dense"]),
        ({"activation": "gelu"}, ["activation", "gelu", "relu"]),
        ({"dense_units": "a,b"}, ["dense_units"]),
        ({"optimizer": "adam", "momentum": 0.5}, ["momentum", "sgd"]),
        ({"learning_rate": 0}, ["learning_rate"]),
    ],
)
def test_impossible_configs_are_rejected_with_a_clear_message(kwargs, words):
    with pytest.raises(ConfigError) as err:
        LeNetConfig(**kwargs)
    for word in words:
        assert word in str(err.value)


def test_config_round_trips_through_mlflow_params():
    config = VARIANTS["small-kernel"].config.replace(dense_units=(120, 60), momentum=0.0, seed=3)
    assert LeNetConfig.from_params(config.to_params()) == config


def test_unknown_variant():
    with pytest.raises(UnknownVariant, match="known: tf2-classic"):
        get_variant("lenet-6")


def test_probabilities_for_every_output_kind():
    x = np.random.default_rng(0).integers(0, 255, (3, 28, 28, 1), dtype=np.uint8)
    for output in ("softmax", "sigmoid", "logits"):
        p = probabilities(build_lenet(LeNetConfig(output=output, activation="relu")), x)
        assert p.shape == (3, 10) and np.allclose(p.sum(axis=1), 1) and (p >= 0).all()


def test_a_short_fit_on_real_digits_lowers_the_loss():
    from study.data import load_dataset, subsample

    ds = subsample(load_dataset("mnist-5k"), 600, 100, seed=0)
    keras.utils.set_random_seed(0)
    config = LeNetConfig(activation="relu", pooling="max", batch_size=32)
    model = build_lenet(config)
    before = model.evaluate(ds.x_train, ds.y_train, verbose=0)[0]
    model.fit(ds.x_train, ds.y_train, epochs=3, batch_size=32, verbose=0)
    after, acc = model.evaluate(ds.x_train, ds.y_train, verbose=0)
    assert after < before * 0.7
    assert acc > 0.5


def test_saved_model_predicts_from_raw_pixels_without_side_information(tmp_path):
    from study.model import register_custom_objects

    x = np.random.default_rng(1).integers(0, 255, (4, 28, 28, 1), dtype=np.uint8)
    for config in (VARIANTS["small-kernel"].config, VARIANTS["tf2-classic-mse"].config):
        model = build_lenet(config)
        path = tmp_path / "m.keras"
        model.save(path)
        register_custom_objects()
        again = keras.models.load_model(path)
        np.testing.assert_allclose(again.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5)


def test_a_variant_with_changed_knobs_is_no_longer_the_variant():
    from study.tuner import is_recipe

    recipe = VARIANTS["d2l-sigmoid"].config
    assert is_recipe(recipe.replace(epochs=3, seed=1), "d2l-sigmoid")
    assert not is_recipe(recipe.replace(input_scaling="unit"), "d2l-sigmoid")
