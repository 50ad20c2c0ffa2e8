"""What the benchmarks share: their one-line error, a freshly seeded trial model, and the order of sides."""

from __future__ import annotations

from ..errors import StudyError
from ..lazy import lazy

keras = lazy("keras")
tuner_module = lazy("study.tuner")  # the trial's model; importing keras-tuner starts TensorFlow


class BenchError(StudyError):
    """A benchmark asked for something it cannot do: `lenet-study` prints `lenet-study: error: <message>`
    and exits with 2, as for any StudyError."""


def fresh_trial_model(config, input_shape, n_train: int):
    """The model a trial trains, built as keras-tuner builds one: a cleared session, the config's seed."""
    keras.backend.clear_session()
    keras.utils.set_random_seed(config.seed)
    return tuner_module.build_trial_model(config, input_shape, n_train)


def round_order(sides, round_index: int) -> tuple:
    """The sides in the order round `round_index` (from 0) runs them: as given, then reversed, alternating,
    so that neither side always runs first on a machine whose speed drifts."""
    return tuple(sides) if round_index % 2 == 0 else tuple(reversed(tuple(sides)))
