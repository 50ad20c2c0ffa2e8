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
        "batch_size": "32", "epochs": "10", "patience": "0", "seed": "0", "c1_filters": "6", "c3_filters": "16",
        # the modern knobs, off by default
        "augment": "none", "batch_norm": "False", "dropout": "0.0", "lr_schedule": "constant", "warmup": "0.1",
        "weight_decay": "0.0", "label_smoothing": "0.0",
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


# --------------------------------------------------------------------------- the modern knobs


def test_modern_knobs_round_trip_through_params_and_keep_every_variant_exact():
    config = LeNetConfig(activation="relu", pooling="max", augment="shift-rotate", batch_norm=True, dropout=0.25,
                         lr_schedule="cosine", warmup=0.05, weight_decay=1e-4, label_smoothing=0.1)
    assert LeNetConfig.from_params(config.to_params()) == config
    for v in VARIANTS.values():  # off by default: the documented recipes are untouched
        assert (v.config.augment, v.config.batch_norm, v.config.dropout, v.config.lr_schedule) == ("none", False, 0.0, "constant")
        assert build_lenet(v.config).count_params() == v.params


def test_batch_norm_sits_between_each_convolution_and_its_activation():
    model = build_lenet(LeNetConfig(activation="relu", batch_norm=True))
    names = [layer.name for layer in model.layers]
    for conv in ("C1", "C3", "C5"):
        i = names.index(conv)
        assert names[i + 1:i + 3] == [f"{conv}_bn", f"{conv}_relu"]
        assert model.get_layer(conv).use_bias is False and model.get_layer(conv).activation.__name__ == "linear"
    assert model.count_params() == count_params(LeNetConfig(activation="relu", batch_norm=True)) == 61706 - 142 + 4 * 142


@pytest.mark.parametrize("change", [{}, {"c5": "dense", "kernel_size": 3, "c1_padding": "valid"}, {"batch_norm": True}])
def test_conv_widths_set_the_feature_maps_of_c1_and_c3(change):
    config = LeNetConfig(activation="relu", c1_filters=16, c3_filters=32, **change)
    model = build_lenet(config)
    assert model.get_layer("C1").filters == 16 and model.get_layer("C3").filters == 32
    assert model.get_layer("C3").kernel.shape[2] == 16  # C3 sees every C1 map
    assert model.count_params() == count_params(config) > count_params(config.replace(c1_filters=6, c3_filters=16))
    assert LeNetConfig.from_params(config.to_params()) == config


def test_augmentation_and_dropout_act_in_training_only():
    config = LeNetConfig(activation="relu", augment="shift-rotate-zoom", dropout=0.5, seed=3)
    model = build_lenet(config)
    names = [layer.name for layer in model.layers]
    assert names[:3] == ["aug_translate", "aug_rotate", "aug_zoom"] and "F6_dropout" in names and "output_dropout" in names
    x = np.random.default_rng(0).integers(0, 255, (4, 28, 28, 1)).astype("float32")
    inference = [model(x, training=False).numpy() for _ in range(2)]
    np.testing.assert_allclose(inference[0], inference[1])  # deterministic outside training
    assert not np.allclose(model(x, training=True).numpy(), inference[0])  # augmented and dropped in training
    assert model.count_params() == 61706  # augmentation and dropout hold no parameters


def test_learning_rate_schedules_follow_the_steps_of_the_fit():
    from study.model import make_optimizer

    base = LeNetConfig(learning_rate=0.01, epochs=10)
    lr = keras.optimizers.schedules.LearningRateSchedule
    schedule = make_optimizer(base.replace(lr_schedule="cosine"), steps_per_epoch=10)._learning_rate
    assert isinstance(schedule, lr)
    values = [float(schedule(step)) for step in (0, 5, 10, 55, 100)]
    assert values[0] == 0.0 and values[1] == pytest.approx(0.005) and values[2] == pytest.approx(0.01)
    assert values[3] == pytest.approx(0.005, rel=0.02) and values[4] == pytest.approx(0.0, abs=1e-6)
    onecycle = make_optimizer(base.replace(lr_schedule="onecycle"), steps_per_epoch=10)._learning_rate
    assert float(onecycle(0)) == pytest.approx(0.01 / 25) and float(onecycle(30)) == pytest.approx(0.01)
    assert float(onecycle(100)) == pytest.approx(0.01 / 25_000, rel=0.01)
    assert float(make_optimizer(base.replace(lr_schedule="plateau")).learning_rate) == pytest.approx(0.01)
    with pytest.raises(ConfigError, match="needs the number of batches per epoch"):
        make_optimizer(base.replace(lr_schedule="cosine"))


def test_weight_decay_and_label_smoothing_reach_the_optimizer_and_the_loss():
    model = build_lenet(LeNetConfig(weight_decay=1e-3, label_smoothing=0.1))
    assert isinstance(model.optimizer, keras.optimizers.AdamW) and model.optimizer.weight_decay == pytest.approx(1e-3)
    sgd = build_lenet(LeNetConfig(optimizer="sgd", weight_decay=1e-3)).optimizer
    assert sgd.weight_decay == pytest.approx(1e-3)
    loss = model.loss
    y = np.array([3, 1])
    confident = np.eye(10)[[3, 1]] * 0.999 + 0.0001
    smoothed = float(loss(y, confident))
    plain = float(keras.losses.SparseCategoricalCrossentropy()(y, confident))
    assert smoothed > plain + 0.1  # smoothing penalises a near-one-hot output
    from study.model import register_custom_objects

    register_custom_objects()
    assert type(keras.losses.deserialize(keras.losses.serialize(loss))).__name__ == "SmoothedSparseCrossentropy"


@pytest.mark.parametrize("change, message", [
    ({"augment": "mirror"}, "augment: 'mirror' is not one of none, shift"),
    ({"lr_schedule": "step"}, "lr_schedule: 'step' is not one of constant, cosine"),
    ({"dropout": 0.95}, "dropout: 0.95 must be a number in [0.0, 0.9]"),
    ({"weight_decay": -1.0}, "weight_decay: -1.0 must be a number in [0.0, 0.1]"),
    ({"label_smoothing": 0.1, "loss": "mse"}, "label_smoothing: only the crossentropy loss"),
    ({"batch_norm": "yes"}, "batch_norm: 'yes' must be true or false"),
    ({"c1_filters": 0}, "c1_filters: 0 must be an integer in [1, 512]"),
    ({"c3_filters": 2.5}, "c3_filters: 2.5 must be an integer in [1, 512]"),
])
def test_modern_knobs_refuse_bad_values_in_one_line(change, message):
    with pytest.raises(ConfigError) as err:
        LeNetConfig(**change)
    assert message in str(err.value)


def test_steps_per_execution_trains_every_batch_including_the_last_partial_one():
    from study.tuner import STEPS_PER_EXECUTION, build_trial_model, fit_model

    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 255, (100, 28, 28, 1)).astype("float32"), rng.integers(0, 10, 100)
    config = LeNetConfig(activation="relu", batch_size=32, epochs=2, lr_schedule="cosine")
    model = build_trial_model(config, (28, 28, 1), n_train=len(y))
    assert model.steps_per_execution == STEPS_PER_EXECUTION > 1
    history = fit_model(model, config, x, y, validation_data=(x[:40], y[:40]))
    assert int(model.optimizer.iterations.numpy()) == 2 * 4  # ceil(100 / 32) batches per epoch, 3 full + 1 of 4
    assert len(history.history["val_accuracy"]) == 2
    # The cosine schedule was sized for those 8 steps: it has decayed to 0 at the end.
    assert float(model.optimizer.learning_rate.numpy()) == pytest.approx(0.0, abs=1e-6)


def test_the_progress_line_names_conv_widths_only_when_they_are_not_lenet5s():
    from study.tuner import knob_text

    assert "maps=" not in knob_text(LeNetConfig())
    assert "k5 maps=16,32 C5=conv" in knob_text(LeNetConfig(c1_filters=16, c3_filters=32))
