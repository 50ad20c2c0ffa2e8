"""The LeNet-5 family: a frozen config holding every knob and a pure builder.

`build_lenet(config)` knows nothing of keras-tuner or MLflow: it turns a
`LeNetConfig` into a compiled Keras model. Training knobs (batch size, epochs,
EarlyStopping patience, seed) live in the same config so that one object, or
the flat parameter dict of an MLflow run, rebuilds a trial exactly.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import StudyError
from .knobs import (ACTIVATIONS, AUGMENTS, C5_KINDS, INPUT_SCALINGS, KERNEL_SIZES, KNOB_RANGES, KNOB_REQUIRES, LOSSES,
                    LR_SCHEDULES, OPTIMIZERS, OUTPUTS, PADDINGS, POOLINGS)
from .lazy import lazy

keras = lazy("keras")  # importing it starts TensorFlow (seconds); the CLI's checks need none of it

ONECYCLE_RISE = 0.3  # onecycle's rise: this fraction of the steps (knobs.LR_SCHEDULES)

INPUT_SHAPE = (28, 28, 1)  # LeNet-5's input on MNIST; build_lenet takes the data's own shape
NUM_CLASSES = 10


class ConfigError(StudyError, ValueError):
    """A knob value, or a combination of them, that cannot make a LeNet-5."""


def check_knob(name: str, value: Any) -> None:
    """Raise ConfigError when `value` is outside numeric knob `name`'s KNOB_RANGES entry (dense_units: any
    of its widths); other knobs pass. The check of one knob on its own, for configs and space files alike."""
    allowed = KNOB_RANGES.get(name)
    if allowed is None:
        return
    values = value if name == "dense_units" else (value,)
    if not all(allowed.holds(v) for v in values):
        need = "each width must be" if name == "dense_units" else "must be"
        raise ConfigError(f"{name}: {value!r} {need} {allowed.allowed()}")


def field_types(cls) -> dict[str, Any]:
    """name -> resolved type of each field of a dataclass (`from __future__ import annotations` leaves the
    annotations as strings): int, float, str, `int | None`, `tuple[int, ...]`. The one reader of field types."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def scalar_type(tp: Any) -> type | None:
    """int, float, str or bool for a field type (`int | None` -> int); None for anything else."""
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        tp = args[0] if len(args) == 1 else None
    return tp if tp in (int, float, str, bool) else None


def params_to_fields(cls, params: dict[str, Any], *, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """The dataclass fields found in a flat dict of MLflow params (strings), typed: the inverse of
    `str(value)` for int, float, str and optional fields ("None", "all" or "" -> None); tuples of ints
    through parse_widths. Unknown keys are ignored."""
    out: dict[str, Any] = {}
    for name, tp in field_types(cls).items():
        raw = params.get(name)
        if raw is None or name in skip:
            continue
        optional = type(None) in getattr(tp, "__args__", ())
        if optional and str(raw) in ("None", "all", ""):
            out[name] = None
            continue
        kind = scalar_type(tp)
        if kind is int:
            out[name] = int(float(raw))
        elif kind is float:
            out[name] = float(raw)
        elif kind is bool:
            out[name] = str(raw).lower() in ("true", "1", "yes")
        elif kind is str:
            out[name] = str(raw)
        else:
            out[name] = parse_widths(raw)
    return out


def format_widths(widths: tuple[int, ...]) -> str:
    """Dense widths as a flat string ("120,84"; "" for none), for hp values and MLflow params."""
    return ",".join(str(w) for w in widths)


def parse_widths(value: Any) -> tuple[int, ...]:
    """Accept (84,), [120, 84], 84, "120,84" or "120-84" and return a tuple of positive ints."""
    if isinstance(value, (list, tuple)):
        items = list(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        items = [value]
    elif isinstance(value, str):
        text = value.replace("-", ",").strip()
        items = [part.strip() for part in text.split(",") if part.strip()] if text else []
    else:
        raise ConfigError(f"dense_units: {value!r} is not a list of widths such as [120, 84]")
    try:
        widths = tuple(int(item) for item in items)
    except (TypeError, ValueError):
        raise ConfigError(f"dense_units: {value!r} is not a list of widths such as [120, 84]") from None
    if any(w < 1 for w in widths):
        raise ConfigError(f"dense_units: {value!r} has a width below 1")
    return widths


@dataclass(frozen=True)
class LeNetConfig:
    """Every knob of a LeNet-5 variant and its training recipe.

    The defaults are the tf2-classic variant (documented-variants.md).
    """

    activation: str = "sigmoid"
    pooling: str = "avg"
    c1_padding: str = "same"
    kernel_size: int = 5
    c1_filters: int = 6  # feature maps of C1 (LeNet-5: 6)
    c3_filters: int = 16  # feature maps of C3 (LeNet-5: 16)
    c5: str = "conv"
    c5_units: int = 120
    dense_units: tuple[int, ...] = field(default=(84,))
    output: str = "softmax"
    loss: str = "crossentropy"
    optimizer: str = "adam"
    learning_rate: float = 0.001
    momentum: float = 0.0
    input_scaling: str = "unit"
    batch_size: int = 32
    epochs: int = 10
    patience: int = 0  # EarlyStopping patience on val_loss; 0 = train all epochs
    seed: int = 0
    # Modern knobs, all off by default: every documented variant keeps its parameters and recipe.
    augment: str = "none"  # a level of AUGMENTS
    batch_norm: bool = False  # after C1, C3 (and a conv C5), before the activation
    dropout: float = 0.0  # rate of a Dropout before each dense layer after C5
    lr_schedule: str = "constant"  # one of LR_SCHEDULES
    warmup: float = 0.1  # cosine's warm-up, a fraction of the steps
    weight_decay: float = 0.0  # decoupled weight decay (AdamW-style, any optimizer)
    label_smoothing: float = 0.0  # crossentropy only

    def __post_init__(self) -> None:
        object.__setattr__(self, "dense_units", parse_widths(self.dense_units))
        for name, allowed in (
            ("activation", ACTIVATIONS),
            ("pooling", POOLINGS),
            ("c1_padding", PADDINGS),
            ("kernel_size", KERNEL_SIZES),
            ("c5", C5_KINDS),
            ("output", OUTPUTS),
            ("loss", LOSSES),
            ("optimizer", OPTIMIZERS),
            ("input_scaling", tuple(INPUT_SCALINGS)),
            ("augment", tuple(AUGMENTS)),
            ("lr_schedule", LR_SCHEDULES),
        ):
            value = getattr(self, name)
            if value not in allowed:
                raise ConfigError(f"{name}: {value!r} is not one of {', '.join(map(str, allowed))}")
        for name in KNOB_RANGES:
            check_knob(name, getattr(self, name))
        if not isinstance(self.batch_norm, bool):
            raise ConfigError(f"batch_norm: {self.batch_norm!r} must be true or false")
        for name, (parent, values, rule) in KNOB_REQUIRES.items():
            if getattr(self, name) and getattr(self, parent) not in values:
                raise ConfigError(f"{name}: {rule}, not {getattr(self, parent)}")
        feature_map_sizes(self)  # rejects shapes with no spatial extent left

    def to_params(self) -> dict[str, str]:
        """Flat string parameters, as logged to MLflow; `from_params` reverses it."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = format_widths(value) if f.name == "dense_units" else str(value)
        return out

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> "LeNetConfig":
        """Rebuild a config from MLflow run parameters (unknown keys are ignored)."""
        return cls(**params_to_fields(cls, params))

    def replace(self, **changes: Any) -> "LeNetConfig":
        return dataclasses.replace(self, **changes)


def feature_map_sizes(config: LeNetConfig) -> list[tuple[str, int]]:
    """Side length after each convolution/pooling stage; raise ConfigError if one reaches 0."""
    k = config.kernel_size
    side = INPUT_SHAPE[0]
    stages = [("C1", k, config.c1_padding), ("S2", 2, "pool"), ("C3", k, "valid"), ("S4", 2, "pool")]
    if config.c5 == "conv":
        stages.append(("C5", k, "valid"))
    sizes = []
    for name, size, kind in stages:
        before = side
        if kind == "pool":
            side = side // 2
        elif kind == "valid":
            side = side - size + 1
        if side < 1:
            raise ConfigError(
                f"{name}: a {size}x{size} {'pooling' if kind == 'pool' else kind + ' convolution'} "
                f"on a {before}x{before} map leaves no spatial extent "
                f"(kernel_size={k}, c1_padding={config.c1_padding}, c5={config.c5}); "
                "use c1_padding=same, kernel_size=3 or c5=dense"
            )
        sizes.append((name, side))
    return sizes


def count_params(config: LeNetConfig) -> int:
    """Parameters, from the architecture alone (no TensorFlow needed). With batch_norm a convolution has no
    bias and its BatchNormalization holds 4 numbers per channel (2 trained, 2 moving statistics)."""
    k = config.kernel_size
    sizes = dict(feature_map_sizes(config))
    bias = 0 if config.batch_norm else 1
    norm = 4 if config.batch_norm else 0
    c1, c3 = config.c1_filters, config.c3_filters
    count = (k * k * 1 + bias + norm) * c1 + (k * k * c1 + bias + norm) * c3
    if config.c5 == "conv":
        count += (k * k * c3 + bias + norm) * config.c5_units
        width = sizes["C5"] ** 2 * config.c5_units
    else:
        count += (sizes["S4"] ** 2 * c3 + 1) * config.c5_units
        width = config.c5_units
    for units in config.dense_units + (NUM_CLASSES,):
        count += (width + 1) * units
        width = units
    return count


def _one_hot_mse_class():
    @keras.saving.register_keras_serializable(package="lenet_study")
    class OneHotMeanSquaredError(keras.losses.Loss):
        """Mean squared error between one-hot integer labels and the 10 outputs."""

        def __init__(self, name="one_hot_mse", reduction="sum_over_batch_size", **kwargs):
            super().__init__(name=name, reduction=reduction, **kwargs)

        def call(self, y_true, y_pred):
            ops = keras.ops
            labels = ops.reshape(ops.cast(y_true, "int32"), (-1,))
            target = ops.one_hot(labels, NUM_CLASSES)
            return ops.mean(ops.square(target - ops.cast(y_pred, target.dtype)), axis=-1)

    return OneHotMeanSquaredError


_LOSS_CLASS = None


def one_hot_mse():
    """The registered MSE-on-one-hot loss (labels stay integers everywhere else)."""
    global _LOSS_CLASS
    if _LOSS_CLASS is None:
        _LOSS_CLASS = _one_hot_mse_class()
    return _LOSS_CLASS()


def _smoothed_crossentropy_class():
    @keras.saving.register_keras_serializable(package="lenet_study")
    class SmoothedSparseCrossentropy(keras.losses.Loss):
        """Crossentropy against one-hot integer labels smoothed by `label_smoothing` (Keras's sparse
        crossentropy has no smoothing; its dense one has)."""

        def __init__(self, label_smoothing=0.0, from_logits=False, name="smoothed_crossentropy",
                     reduction="sum_over_batch_size", **kwargs):
            super().__init__(name=name, reduction=reduction, **kwargs)
            self.label_smoothing = float(label_smoothing)
            self.from_logits = bool(from_logits)

        def call(self, y_true, y_pred):
            ops = keras.ops
            labels = ops.reshape(ops.cast(y_true, "int32"), (-1,))
            target = ops.one_hot(labels, NUM_CLASSES)
            return keras.losses.categorical_crossentropy(
                target, y_pred, from_logits=self.from_logits, label_smoothing=self.label_smoothing)

        def get_config(self):
            return {**super().get_config(), "label_smoothing": self.label_smoothing,
                    "from_logits": self.from_logits}

    return SmoothedSparseCrossentropy


_SMOOTHED_CLASS = None


def smoothed_crossentropy(label_smoothing: float, from_logits: bool):
    global _SMOOTHED_CLASS
    if _SMOOTHED_CLASS is None:
        _SMOOTHED_CLASS = _smoothed_crossentropy_class()
    return _SMOOTHED_CLASS(label_smoothing=label_smoothing, from_logits=from_logits)


def register_custom_objects() -> None:
    """Make the project's own losses known to Keras, so saved models that use them load."""
    one_hot_mse()
    smoothed_crossentropy(0.0, False)


def learning_rate(config: LeNetConfig, steps_per_epoch: int | None = None):
    """The optimizer's learning rate: a number, or a schedule over config.epochs x steps_per_epoch steps."""
    lr = config.learning_rate
    if config.lr_schedule in ("constant", "plateau"):
        return lr
    if not steps_per_epoch:
        raise ConfigError(f"lr_schedule: {config.lr_schedule} needs the number of batches per epoch "
                          "(build_lenet(..., steps_per_epoch=N))")
    total = max(2, config.epochs * int(steps_per_epoch))
    schedules = keras.optimizers.schedules
    if config.lr_schedule == "cosine":
        warm = int(round(total * config.warmup))
        return schedules.CosineDecay(0.0 if warm else lr, max(1, total - warm), alpha=0.0,
                                     warmup_target=lr if warm else None, warmup_steps=warm)
    rise = int(round(total * ONECYCLE_RISE))
    return schedules.CosineDecay(lr / 25, max(1, total - rise), alpha=1 / 25_000,  # alpha: of the peak
                                 warmup_target=lr, warmup_steps=rise)


def make_optimizer(config: LeNetConfig, steps_per_epoch: int | None = None):
    lr = learning_rate(config, steps_per_epoch)
    decay = {"weight_decay": config.weight_decay} if config.weight_decay else {}
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate=lr, momentum=config.momentum, **decay)
    if config.optimizer == "adam":
        return (keras.optimizers.AdamW if decay else keras.optimizers.Adam)(learning_rate=lr, **decay)
    if config.optimizer == "nadam":
        return keras.optimizers.Nadam(learning_rate=lr, **decay)
    return keras.optimizers.RMSprop(learning_rate=lr, **decay)


def augmentation_layers(config: LeNetConfig) -> list:
    """The augment level's Keras preprocessing layers (active only in training), seeded by config.seed."""
    layers = keras.layers
    translate, rotate, zoom, flip = AUGMENTS[config.augment]
    out = []
    if flip:
        out.append(layers.RandomFlip("horizontal", seed=config.seed, name="aug_flip"))
    if translate:
        out.append(layers.RandomTranslation(translate, translate, fill_mode="constant", seed=config.seed,
                                            name="aug_translate"))
    if rotate:
        out.append(layers.RandomRotation(rotate, fill_mode="constant", seed=config.seed, name="aug_rotate"))
    if zoom:
        out.append(layers.RandomZoom(zoom, zoom, fill_mode="constant", seed=config.seed, name="aug_zoom"))
    return out


def build_lenet(config: LeNetConfig | None = None, input_shape: tuple[int, ...] = INPUT_SHAPE, *,
                steps_per_epoch: int | None = None, steps_per_execution: int = 1):
    """Return a compiled LeNet-5 for `config` (integer labels; raw 0-255 pixels of `input_shape`, the data's
    own image shape, 28x28x1 for every dataset here).

    `steps_per_epoch` (batches per epoch) sizes a cosine or one-cycle schedule; `steps_per_execution`
    runs that many batches per call into TensorFlow (faster on a CPU; callbacks still see every epoch)."""
    config = config or LeNetConfig()
    layers = keras.layers
    act = config.activation
    pool = layers.AveragePooling2D if config.pooling == "avg" else layers.MaxPooling2D
    k = config.kernel_size
    scale, offset = INPUT_SCALINGS[config.input_scaling]

    def conv(filters: int, padding: str, name: str) -> None:
        if not config.batch_norm:
            model.add(layers.Conv2D(filters, k, padding=padding, activation=act, name=name))
            return
        model.add(layers.Conv2D(filters, k, padding=padding, use_bias=False, name=name))
        model.add(layers.BatchNormalization(name=f"{name}_bn"))
        model.add(layers.Activation(act, name=f"{name}_{act}"))

    def dense(units: int, activation, name: str) -> None:
        if config.dropout:
            model.add(layers.Dropout(config.dropout, seed=config.seed, name=f"{name}_dropout"))
        model.add(layers.Dense(units, activation=activation, name=name))

    model = keras.Sequential(name="lenet5")
    model.add(keras.Input(shape=tuple(input_shape), name="pixels"))
    for layer in augmentation_layers(config):
        model.add(layer)
    model.add(layers.Rescaling(scale, offset, name=f"scale_{config.input_scaling}"))
    conv(config.c1_filters, config.c1_padding, "C1")
    model.add(pool(2, name="S2"))
    conv(config.c3_filters, "valid", "C3")
    model.add(pool(2, name="S4"))
    if config.c5 == "conv":
        conv(config.c5_units, "valid", "C5")
        model.add(layers.Flatten(name="flatten"))
    else:
        model.add(layers.Flatten(name="flatten"))
        model.add(layers.Dense(config.c5_units, activation=act, name="C5"))
    for i, width in enumerate(config.dense_units):
        dense(width, act, "F6" if i == 0 else f"F6_{i + 1}")
    dense(NUM_CLASSES, None if config.output == "logits" else config.output, "output")

    from_logits = config.output == "logits"
    if config.loss == "mse":
        loss = one_hot_mse()
    elif config.label_smoothing:
        loss = smoothed_crossentropy(config.label_smoothing, from_logits)
    else:
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits)
    model.compile(
        optimizer=make_optimizer(config, steps_per_epoch),
        loss=loss,
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        steps_per_execution=steps_per_execution,
    )
    return model


def probabilities(model, x):
    """Class probabilities whatever the output layer (softmax, sigmoid or logits)."""
    out = np.asarray(model.predict(x, verbose=0), dtype="float64")
    last = model.layers[-1]
    activation = getattr(getattr(last, "activation", None), "__name__", "")
    if activation in ("linear", ""):
        out = np.exp(out - out.max(axis=1, keepdims=True))
    return out / out.sum(axis=1, keepdims=True)
