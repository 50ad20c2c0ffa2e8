"""`tuner: tpe` (study/tpe.py): Optuna's TPE sampler as a keras-tuner oracle. Proposals respect the space (a
conditional knob only under its parent's value), repeat for a seed, learn from finished and pruned trials,
and drive a real study like any other oracle."""

from __future__ import annotations

import math

import keras_tuner as kt
import pytest

from conftest import store_uri
from study import kt_compat, pruning, schema
from study.space import load_space
from study.tpe import TPEOracle

LENET = "search_spaces/lenet.yaml"


def _oracle(tmp_path, seed: int = 1, space: str = LENET) -> TPEOracle:
    oracle = TPEOracle(objective=kt.Objective(schema.OBJECTIVE, direction="max"), max_trials=100,
                       hyperparameters=load_space(space).hyperparameters(), tune_new_entries=False, seed=seed)
    oracle._set_project_dir(str(tmp_path / f"tpe-{seed}"), "p")
    return oracle


def _finish(oracle, score_of, n: int, pruned=lambda values: False) -> list[dict]:
    """`n` trials proposed by the oracle and ended with score_of(values), as a tuner would (no training)."""
    proposed = []
    for _ in range(n):
        trial = oracle.create_trial("t")
        values = dict(trial.hyperparameters.values)
        proposed.append(values)
        score = score_of(values)
        metrics = {schema.OBJECTIVE: score, **pruning.curve_metrics({0: score}, pruned=pruned(values))}
        oracle.update_trial(trial.trial_id, metrics)
        trial.status = kt_compat.TrialStatus.COMPLETED
        oracle.end_trial(trial)
    return proposed


def test_a_conditional_knob_is_drawn_only_under_its_parents_value(tmp_path):
    proposed = _finish(_oracle(tmp_path), lambda v: 0.5, 30)
    space = load_space(LENET)
    for values in proposed:
        assert ("momentum" in values) == (values["optimizer"] == "sgd")
        assert values["activation"] in ("relu", "tanh", "sigmoid")
        assert 3.0e-4 <= values["learning_rate"] <= 1.0e-2
    assert set(proposed[0]) - {"momentum"} == set(space.knobs) - {"momentum"}


def test_a_seed_repeats_its_proposals_and_another_seed_does_not(tmp_path):
    score = lambda v: 0.9 if v["activation"] == "relu" else 0.5  # noqa: E731
    first, again = _finish(_oracle(tmp_path / "a"), score, 14), _finish(_oracle(tmp_path / "b"), score, 14)
    other = _finish(_oracle(tmp_path / "c", seed=2), score, 14)
    assert first == again and first != other


def _score(values) -> float:
    """Known truth: relu and a learning rate near 3e-3 are best; sigmoid is stuck at chance."""
    if values["activation"] == "sigmoid":
        return 0.1
    base = 0.97 if values["activation"] == "relu" else 0.9
    return base - 0.02 * abs(math.log10(values["learning_rate"] / 3e-3))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_after_its_random_start_it_proposes_what_the_finished_trials_favour(tmp_path, seed):
    oracle = _oracle(tmp_path, seed)
    proposed = _finish(oracle, _score, 40)
    later = proposed[10:]  # TPE's 10 random start-up trials first (Optuna's default)
    relu = sum(v["activation"] == "relu" for v in later) / len(later)
    sigmoid = sum(v["activation"] == "sigmoid" for v in later) / len(later)
    # Random draws would give a third each; TPE leans to relu and away from sigmoid.
    assert relu >= 0.5 and sigmoid <= 0.15


def test_pruned_trials_are_given_to_optuna_as_pruned_with_their_curve(tmp_path):
    oracle = _oracle(tmp_path)
    _finish(oracle, _score, 6, pruned=lambda v: v["activation"] == "sigmoid")
    frozen = [oracle._as_optuna(t) for t in oracle.trials.values()]
    states = {t.trial_id: f.state.name for t, f in zip(oracle.trials.values(), frozen)}
    sigmoid = {t.trial_id for t in oracle.trials.values() if t.hyperparameters.values["activation"] == "sigmoid"}
    assert {k for k, s in states.items() if s == "PRUNED"} == sigmoid
    assert all(f.intermediate_values == {0: 0.1} for f in frozen if f.state.name == "PRUNED")
    assert all(f.value is not None for f in frozen if f.state.name == "COMPLETE")


def test_a_study_runs_with_the_tpe_tuner(tmp_path, run_study, study_runs):
    result, lines = run_study(tmp_path, tuner="tpe")
    assert result.completed == 2 and result.test_accuracy is not None
    _, parents, children = study_runs(store_uri(tmp_path), "smoke")
    assert parents[0].data.params["tuner"] == "tpe" and len(children) == 2
