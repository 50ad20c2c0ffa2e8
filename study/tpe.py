"""`tuner: tpe`: Optuna's TPE sampler as a keras-tuner oracle.

keras-tuner's oracles are random search, a Gaussian process, Hyperband and a grid. On the search benchmark
(docs/benchmarks.md), with trials ended by a time budget after 20-30 of them, its Gaussian process either
scattered its proposals like random ones (beta 2.6) or kept refining one region (beta 1.0), and Optuna's
TPE found better configurations on the same seeds. This oracle keeps everything else of a study (keras-tuner's
trials, resume, workers and Ray, MLflow tracking, start_with, pruning, the time budget) and asks Optuna's
TPESampler, with its defaults, for each proposal.

Each proposal builds a throwaway in-memory Optuna study from the oracle's trials, as they stand: finished
ones with their score, pruned ones (study/pruning.py) as PRUNED with their curve, failed ones as FAIL, and
the ones still running as RUNNING (Optuna 5's constant liar keeps workers apart); then it asks for a trial,
drawing every active hyperparameter through Optuna's suggest API in the space's order, so that a
conditional knob (momentum when the optimizer is SGD) is drawn only when its parent allows it. The oracle
holds no state of its own beyond keras-tuner's: a resumed study proposes from the trials it reloaded. The
sampler is seeded with the study's seed and the number of trials so far, so a study's proposals repeat.
"""

from __future__ import annotations

import math

import keras_tuner as kt

from . import pruning
from .lazy import lazy

optuna = lazy("optuna")

HP = kt.engine.hyperparameters
TrialStatus = kt.engine.trial.TrialStatus


def distribution(hp):
    """The Optuna distribution of a keras-tuner hyperparameter (None for a Fixed one, which is not drawn)."""
    dists = optuna.distributions
    if isinstance(hp, HP.Fixed):
        return None
    if isinstance(hp, HP.Boolean):
        return dists.CategoricalDistribution([True, False])
    if isinstance(hp, HP.Choice):
        return dists.CategoricalDistribution(list(hp.values))
    log = hp.sampling == "log" and not hp.step  # Optuna has no log scale with a step, nor a reversed log
    if isinstance(hp, HP.Int):
        return dists.IntDistribution(hp.min_value, hp.max_value, log=log, step=1 if log else (hp.step or 1))
    return dists.FloatDistribution(hp.min_value, hp.max_value, log=log, step=None if log else hp.step)


def draw(trial, hp):
    """One hyperparameter's value, drawn by an Optuna trial through its suggest API."""
    dist = distribution(hp)
    if dist is None:
        return hp.value
    if isinstance(dist, optuna.distributions.CategoricalDistribution):
        return trial.suggest_categorical(hp.name, list(dist.choices))
    if isinstance(dist, optuna.distributions.IntDistribution):
        return trial.suggest_int(hp.name, dist.low, dist.high, step=dist.step, log=dist.log)
    return trial.suggest_float(hp.name, dist.low, dist.high, step=dist.step, log=dist.log)


def suggest(trial, space) -> dict:
    """Values for every active hyperparameter of `space` (keras-tuner HyperParameters), drawn by `trial` in the
    space's order: a conditional one only when its parent's value allows it."""
    hps = kt.HyperParameters()
    for hp in space.space:
        hps.merge([hp])
        if hps.is_active(hp):
            hps.values[hp.name] = draw(trial, hp)
    return hps.values


class TPEOracle(kt.Oracle):
    """A keras-tuner oracle whose proposals come from Optuna's TPESampler (its defaults), objective maximised."""

    def populate_space(self, trial_id):
        verbosity = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        try:
            study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(
                seed=(self.seed or 0) * 100_003 + len(self.trials)))
            for trial in self.trials.values():
                if trial.trial_id != trial_id:
                    past = self._as_optuna(trial)
                    if past is not None:
                        study.add_trial(past)
            values = suggest(study.ask(), self.hyperparameters)
        finally:
            optuna.logging.set_verbosity(verbosity)
        return {"status": TrialStatus.RUNNING, "values": values}

    def _as_optuna(self, trial):
        """A keras-tuner trial as an Optuna FrozenTrial (None when its values no longer fit the space)."""
        states = optuna.trial.TrialState
        params, dists = {}, {}
        values = trial.hyperparameters.values
        for hp in self.hyperparameters.space:
            dist = distribution(hp)
            if dist is None or hp.name not in values or not trial.hyperparameters.is_active(hp.name):
                continue
            params[hp.name], dists[hp.name] = values[hp.name], dist
        metrics = pruning.trial_metrics(trial)
        curve = pruning.curve_of(metrics, pruned_too=True) or {}
        score = trial.score
        state, value = states.FAIL, None  # failed, invalid, or finished without a score
        if trial.status == TrialStatus.COMPLETED and metrics.get(pruning.PRUNED_METRIC):
            state = states.PRUNED
        elif trial.status == TrialStatus.COMPLETED and score is not None and math.isfinite(score):
            state, value = states.COMPLETE, float(score)
        elif trial.status == TrialStatus.RUNNING:  # another worker's, for the constant liar
            state = states.RUNNING
        try:
            return optuna.trial.create_trial(state=state, value=value, params=params, distributions=dists,
                                             intermediate_values=curve if state == states.PRUNED else None)
        except ValueError:  # a value outside today's space (a resumed study whose space changed)
            return None

