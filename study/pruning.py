"""Stopping unpromising trials early (`study.prune: median`): Optuna's MedianPruner on the trials' curves.

After each epoch a trial's validation accuracy is compared with the finished trials' at the same epoch: once
`startup_trials` trials have finished (pruned ones do not count), a trial whose best validation accuracy so
far is below their median at that epoch stops there (stop reason `pruned`). The rule is Optuna's
MedianPruner with its defaults (5 startup trials, no warm-up epochs), the one the search benchmark's Optuna
peer uses, applied by Optuna's own code: each decision builds a throwaway in-memory Optuna study from the
finished trials' curves (a few milliseconds for a hundred trials) and asks the pruner.

A curve travels with its trial: the tuner reports it to the oracle among the trial's metrics (CURVE_PREFIX +
epoch, and PRUNED_METRIC 1.0 when the trial was pruned), so the oracle's finished trials hold every curve,
whether this process ran them, a worker did, or an earlier run of a resumed study. Nothing here knows
keras-tuner, TensorFlow or MLflow.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from . import schema
from .lazy import lazy

optuna = lazy("optuna")

PRUNERS = ("none", "median")
CURVE_PREFIX = f"{schema.OBJECTIVE}@epoch"  # a trial's metric "val_accuracy@epoch0": its first epoch's value
PRUNED_METRIC = "pruned"  # 1.0 on a trial the pruner stopped


def curve_metrics(curve: Mapping[int, float], pruned: bool) -> dict[str, float]:
    """A trial's curve as metrics for its oracle: one per epoch, and the mark of a pruned trial."""
    out = {f"{CURVE_PREFIX}{epoch}": float(value) for epoch, value in curve.items()}
    out[PRUNED_METRIC] = 1.0 if pruned else 0.0
    return out


def trial_metrics(trial) -> dict[str, float]:
    """A keras-tuner trial's metrics as its oracle holds them (`trial.metrics`): each metric's last value."""
    tracker = trial.metrics
    return {name: tracker.get_last_value(name) for name in tracker.metrics}


def curve_of(metrics: Mapping[str, float], pruned_too: bool = False) -> dict[int, float] | None:
    """The curve a finished trial reported (epoch -> validation accuracy), or None when it has none or was
    pruned (as in Optuna, a pruned trial does not set the median) unless `pruned_too`."""
    if metrics.get(PRUNED_METRIC, 0.0) and not pruned_too:
        return None
    curve = {int(name[len(CURVE_PREFIX):]): float(value) for name, value in metrics.items()
             if name.startswith(CURVE_PREFIX) and name[len(CURVE_PREFIX):].isdigit() and math.isfinite(value)}
    return curve or None


class MedianStop:
    """Optuna's MedianPruner (`startup_trials`: finished trials before any is pruned; `warmup_epochs`: epochs
    a trial always runs), asked about a running trial's curve against the finished trials' curves."""

    def __init__(self, startup_trials: int = 5, warmup_epochs: int = 0):
        self.startup_trials, self.warmup_epochs = startup_trials, warmup_epochs

    def should_stop(self, finished: Iterable[Mapping[int, float]], running: Mapping[int, float]) -> bool:
        if not running:
            return False
        verbosity = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "A new study created in memory" per epoch
        try:
            study = optuna.create_study(direction="maximize", pruner=optuna.pruners.MedianPruner(
                n_startup_trials=self.startup_trials, n_warmup_steps=self.warmup_epochs))
            for curve in finished:
                study.add_trial(optuna.trial.create_trial(value=max(curve.values()), intermediate_values=dict(curve)))
            trial = study.ask()
            for epoch, value in sorted(running.items()):
                trial.report(float(value), epoch)
            return bool(trial.should_prune())
        finally:
            optuna.logging.set_verbosity(verbosity)


def pruner_for(prune: str) -> MedianStop | None:
    """The pruner a study's `prune` setting names; None for "none"."""
    return MedianStop() if prune == "median" else None
