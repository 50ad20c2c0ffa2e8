"""The knob table: the values each knob of a LeNet-5 may take.

One table that `LeNetConfig` (model.py) checks every config against and that space files (spacefile.py,
space.py, ablation.py), `lenet-study train`'s flags and a study's settings read: the choices of each
categorical knob, the range of each numeric one (`KNOB_RANGES`), the knobs that act only under another
knob's value (`KNOB_REQUIRES`), and which augmentations suit which dataset. Standard library only.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

ACTIVATIONS = ("sigmoid", "tanh", "relu")
POOLINGS = ("avg", "max")
PADDINGS = ("same", "valid")
KERNEL_SIZES = (3, 5)
C5_KINDS = ("conv", "dense")
OUTPUTS = ("softmax", "sigmoid", "logits")
LOSSES = ("crossentropy", "mse")
OPTIMIZERS = ("sgd", "adam", "nadam", "rmsprop")
# How raw 0-255 pixels are mapped before C1, inside the model.
INPUT_SCALINGS = {"unit": (1 / 255.0, 0.0), "symmetric": (2 / 255.0, -1.0), "raw": (1.0, 0.0)}
# Training-time augmentation, as named levels: (translation as a fraction of the side, rotation in
# turns, zoom as a fraction, horizontal flip). Keras preprocessing layers, active only in training.
# "flip-shift" is for Fashion-MNIST: a mirrored digit is another symbol (space.py refuses it on digits).
AUGMENTS: dict[str, tuple[float, float, float, bool]] = {
    "none": (0.0, 0.0, 0.0, False),
    "shift": (0.1, 0.0, 0.0, False),
    "shift-rotate": (0.1, 0.04, 0.0, False),
    "shift-rotate-zoom": (0.1, 0.04, 0.1, False),
    "flip-shift": (0.1, 0.0, 0.0, True),
}
# Learning-rate schedules over the whole fit (steps = epochs x batches per epoch):
#   constant; cosine: linear warm-up over the first `warmup` fraction of steps to learning_rate, then
#   cosine decay to 0; onecycle: linear rise from learning_rate/25 over 30% of the steps, then cosine
#   decay to learning_rate/25,000 (Smith's one-cycle, Keras's CosineDecay); plateau: halve the rate
#   when val_loss has not improved for an epoch (keras.callbacks.ReduceLROnPlateau, added by the fit).
LR_SCHEDULES = ("constant", "cosine", "onecycle", "plateau")

# Augment levels that mirror images: a mirrored digit is another symbol, so only Fashion-MNIST takes them.
FLIP_AUGMENTS = tuple(name for name, (_, _, _, flip) in AUGMENTS.items() if flip)
FLIP_DATASETS = ("fashion_mnist",)
# `augment: auto` in a space file: each dataset's usual augmentation, resolved before the config is
# built (the trial's logged parameter is the level it resolved to). Digits are shifted and rotated;
# clothes are shifted and mirrored (a rotated shirt is rare in the data, a mirrored one common).
AUTO_AUGMENT = {"fashion_mnist": "flip-shift"}
AUTO_AUGMENT_DEFAULT = "shift-rotate"


@dataclass(frozen=True)
class Range:
    """The values a numeric knob may take: [low, high], either end open, whole numbers only if `integer`."""

    low: float
    high: float
    integer: bool = False
    low_open: bool = False
    high_open: bool = False

    def holds(self, value: Any) -> bool:
        kind = numbers.Integral if self.integer else numbers.Real
        if isinstance(value, bool) or not isinstance(value, kind) or not math.isfinite(value):
            return False
        above = self.low < value if self.low_open else self.low <= value
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def __str__(self) -> str:
        return f"{'(' if self.low_open else '['}{self.low}, {self.high}{')' if self.high_open else ']'}"

    def allowed(self) -> str:
        return f"{'an integer' if self.integer else 'a number'} in {self}"


# The values every numeric knob may take: one table that LeNetConfig and space files both read, and the
# study's epochs, patience and seed (StudySettings) too. Values inside run; a diverging learning rate is
# a result (a NaN trial), so its bound is far above any useful rate.
KNOB_RANGES = {
    "c1_filters": Range(1, 512, integer=True),
    "c3_filters": Range(1, 512, integer=True),
    "c5_units": Range(1, 4096, integer=True),
    "dense_units": Range(1, 4096, integer=True),  # each width
    "learning_rate": Range(0, 1_000_000, low_open=True),
    "momentum": Range(0.0, 1.0, high_open=True),
    "batch_size": Range(1, 65536, integer=True),
    "epochs": Range(1, 10_000, integer=True),
    "patience": Range(0, 10_000, integer=True),
    "seed": Range(0, 2**31 - 1, integer=True),
    "dropout": Range(0.0, 0.9),
    "warmup": Range(0.0, 0.5),
    "weight_decay": Range(0.0, 0.1),
    "label_smoothing": Range(0.0, 0.5),
}
# Knobs that act only under another knob's value: knob -> (that knob, its values, what to say when it is
# set without them). A zero value is always allowed (it is the knob switched off).
KNOB_REQUIRES = {
    "momentum": ("optimizer", ("sgd",), "only sgd takes momentum"),
    "label_smoothing": ("loss", ("crossentropy",), "only the crossentropy loss takes it"),
}
# The tuning playbook's nuisance knobs of a scientific one: to compare the knob's values fairly, these are
# tuned for each value (an isolation study does); an ablation arm that changes the knob keeps them at the
# baseline's values, and its findings say so. The learning rate is a different knob under each optimizer,
# batch size, schedule and activation; momentum belongs to sgd.
NUISANCE_FOR = {
    "optimizer": ("learning_rate", "momentum"),
    "batch_size": ("learning_rate",),
    "lr_schedule": ("learning_rate",),
    "activation": ("learning_rate",),
}
