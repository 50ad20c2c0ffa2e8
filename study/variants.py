"""The documented LeNet-5 variants (docs: documented-variants.md) as named configs.

Each variant carries its architecture and training recipe as a `LeNetConfig`,
the dataset its tutorial used, the figure the tutorial reports and, where the
tutorial measured that figure on the wrong split, a note saying so.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import StudyError
from .model import LeNetConfig


@dataclass(frozen=True)
class Variant:
    name: str
    config: LeNetConfig
    dataset: str
    recipe: str  # the tutorial's recipe in one line
    params: int  # parameter count the document gives
    reported: float | None  # the tutorial's headline accuracy
    reported_as: str  # what that figure is, in the tutorial's words
    split_note: str | None = None  # set where the figure was measured on the wrong split


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant(
            "tf2-classic",
            LeNetConfig(),
            "mnist",
            "x/255, one-hot categorical CE, Adam lr 0.001, batch 32, 10 epochs",
            61706,
            0.9876,
            "val accuracy after epoch 10 (0.9886 best, epoch 9)",
            "validated on the test set: its 'val accuracy' is a test figure chosen after looking at it",
        ),
        Variant(
            "tf2-classic-mse",
            LeNetConfig(loss="mse", optimizer="nadam", learning_rate=0.01, epochs=5),
            "mnist",
            "tf2-classic net, manual loop: x/255, one-hot MSE, Nadam lr 0.01, batch 32, 5 epochs",
            61706,
            0.9814,
            "test categorical accuracy",
        ),
        Variant(
            "subclass-relu",
            LeNetConfig(
                activation="relu", pooling="max", c5="dense", optimizer="sgd", learning_rate=0.01,
                epochs=80, patience=5,
            ),
            "mnist",
            "x/255, sparse CE, SGD lr 0.01, batch 32, up to 80 epochs, EarlyStopping(val_loss, patience 5)",
            61706,
            0.9862,
            "best val accuracy (epoch 8 of 9 reported)",
            "validated on the test set: its 'val accuracy' is a test figure chosen after looking at it",
        ),
        Variant(
            "d2l-sigmoid",
            LeNetConfig(
                pooling="max", c1_padding="valid", c5="dense", output="sigmoid", optimizer="sgd",
                learning_rate=0.9, input_scaling="raw", epochs=5,
            ),
            "fashion_mnist",
            "raw 0-255 input, sparse CE on a sigmoid output, SGD lr 0.9, batch 32, 5 epochs",
            44426,
            0.7966,
            "test accuracy on Fashion-MNIST",
        ),
        Variant(
            "conv-head-relu",
            LeNetConfig(activation="relu", pooling="max", optimizer="rmsprop", epochs=5),
            "mnist",
            "x/255, one-hot categorical CE, RMSprop lr 0.001, batch 32, 5 epochs",
            61706,
            None,
            "none reported",
        ),
        Variant(
            "small-kernel",
            LeNetConfig(
                activation="relu", pooling="max", c1_padding="valid", kernel_size=3, c5="dense",
                dense_units=(60,), output="logits", input_scaling="symmetric", batch_size=128, epochs=50,
            ),
            "mnist",
            "2x/255-1, categorical CE from logits, Adam lr 0.001, batch 128, 50 epochs",
            56930,
            0.98,
            "'0.98 after 2 epochs'",
            "its test loop evaluated on the training set: a training-set figure",
        ),
    )
}


class UnknownVariant(StudyError, KeyError):
    """A variant name that is not documented (a KeyError: VARIANTS has no such key); one line for the user."""

    def __str__(self) -> str:
        return f"unknown variant {self.args[0]!r}; known: {', '.join(VARIANTS)}"


def get_variant(name: str) -> Variant:
    try:
        return VARIANTS[name]
    except KeyError:
        raise UnknownVariant(name) from None
