"""An isolation study's phase 2: each scientific value's best nuisance configuration trained again with fresh seeds.

After the grid (study/isolation.py's phase 1, judged on validation only), `retrain_best` picks each value's
best nuisance trial by validation accuracy and trains its configuration once per retrain seed (the same
seeds for every value, so the retrains pair across values by seed), each as its own child run (ROLE_RETRAIN,
TRIAL_KIND retrain, TRIAL_ID schema.retrain_trial_id) evaluated on the test set: the only runs of the study
that read it. Retrains already FINISHED in the store for this search, of the value's current best
configuration, are kept, not trained again, so a study interrupted here resumes where it stopped (and one
resumed with more trials retrains a value whose best has changed). Seed-major: every value gets a seed
before any gets the next, so an interrupted phase 2 holds complete pairs. finish.finish_study calls it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from . import schema, tracking
from .cost import trained_cost
from .lazy import lazy
from .model import LeNetConfig, count_params

keras = lazy("keras")
tuner_module = lazy("study.tuner")


@dataclass(frozen=True)
class Retrained:
    """Phase 2's outcome: per value (ISOLATION_VALUE text, the file's order), its best nuisance trial's run
    and validation accuracy, and the test accuracy of each retrain seed."""

    best_runs: dict[str, object]
    best_val: dict[str, float]
    test: dict[str, dict[int, float]]

    def chosen(self) -> str | None:
        """The value whose best nuisance trial scored highest on validation (selection never reads test)."""
        return max(self.best_val, key=self.best_val.get) if self.best_val else None


def value_order(hyperparameters) -> list[str]:
    """The scientific values (ISOLATION_VALUE texts) in the file's order, read from the compiled grid knob."""
    for hp in hyperparameters.space:
        if hp.name == schema.ISOLATION:
            return list(dict.fromkeys(str(name).split(" ")[1] for name in hp.values))
    return []


def best_nuisance_runs(tracker) -> dict[str, object]:
    """Each value's best completed nuisance run of this search, by validation accuracy (ties: lower point)."""
    latest: dict[str, object] = {}
    for run in tracker.trial_runs():  # newest first: the latest completed run of each trial
        tags, params = run.data.tags, run.data.params
        if (run.info.status == schema.RUN_FINISHED and tags.get(schema.TRIAL_STATUS) == schema.COMPLETED
                and schema.ISOLATION_VALUE in params and schema.BEST_VAL_ACCURACY in run.data.metrics):
            latest.setdefault(tags.get(schema.TRIAL_ID), run)
    best: dict[str, object] = {}

    def key(run):
        return (run.data.metrics[schema.BEST_VAL_ACCURACY], -int(run.data.params.get(schema.ISOLATION_POINT, 0)))

    for run in latest.values():
        value = run.data.params[schema.ISOLATION_VALUE]
        if value not in best or key(run) > key(best[value]):
            best[value] = run
    return best


def retrain_best(opened, settings, values: list[str], echo=print) -> Retrained:
    """Phase 2 for `opened` (finish.OpenedStudy): every value's best configuration with each retrain seed
    (study.seed+1 .. study.seed+seeds), skipping retrains this search already finished."""
    tracker = opened.tracker
    best = best_nuisance_runs(tracker)
    missing = [v for v in values if v not in best]
    values = [v for v in values if v in best] + [v for v in best if v not in values]
    seeds = list(range(settings.seed + 1, settings.seed + 1 + settings.seeds))
    test: dict[str, dict[int, float]] = {v: {} for v in values}
    for run in tracker.retrain_runs():
        value, seed = run.data.params.get(schema.ISOLATION_VALUE), run.data.params.get("seed")
        # Kept only when it retrained the value's current best: a study resumed with more trials may have found
        # a better point since, whose retrains replace it (same trial id: the report keeps the latest).
        source = run.data.params.get(schema.ISOLATION)
        current = value in best and source == best[value].data.params.get(schema.ISOLATION)
        if current and seed is not None and schema.TEST_ACCURACY in run.data.metrics:
            test[value].setdefault(int(seed), float(run.data.metrics[schema.TEST_ACCURACY]))
    todo = [(v, s) for s in seeds for v in values if s not in test[v]]
    if missing:
        echo(f"retrain: no completed trial for {', '.join(missing)}: nothing to retrain for it")
    kept = len(values) * len(seeds) - len(todo)
    echo(f"retrain: each value's best configuration with seeds {', '.join(map(str, seeds))}: {len(todo)} run(s)"
         + (f" ({kept} already finished, kept)" if kept else ""))
    for i, (value, seed) in enumerate(todo, 1):
        test[value][seed] = _retrain(opened, best[value], value, seed, f"{i}/{len(todo)}", echo)
    for value in values:
        scores = [test[value][s] for s in seeds if s in test[value]]
        if scores:
            echo(f"retrain: {value}: best trial {best[value].data.tags.get(schema.TRIAL_ID)} val_accuracy "
                 f"{best[value].data.metrics[schema.BEST_VAL_ACCURACY]:.4f}; test_accuracy mean "
                 f"{np.mean(scores):.4f} over {len(scores)} seed(s)")
    return Retrained({v: best[v] for v in values}, {v: float(best[v].data.metrics[schema.BEST_VAL_ACCURACY])
                                                   for v in values}, test)


def train_into_run(opened, run_id: str, config: LeNetConfig, what: str, callbacks=()):
    """`config` trained on the study's split into the child run `run_id` (started by the caller), then
    evaluated once on the test set; the run finishes with its summary, test figures and cost, or is marked
    KILLED if training fails. Returns (model, summary, wall seconds, (test accuracy, test loss))."""
    tracker, ds = opened.tracker, opened.ds
    (x_tr, y_tr), (x_val, y_val) = opened.train, opened.val
    started = time.monotonic()
    try:
        keras.backend.clear_session()
        keras.utils.set_random_seed(config.seed)
        model = tuner_module.build_trial_model(config, ds.input_shape, len(y_tr))
        history = tuner_module.fit_model(model, config, x_tr, y_tr, validation_data=(x_val, y_val),
                                         callbacks=list(callbacks))
        test_loss, test_acc = model.evaluate(ds.x_test, ds.y_test, verbose=0, batch_size=512)
    except BaseException:
        tracker.kill_trial(run_id)
        raise
    summary = tracking.summarise([history], config.epochs)
    wall = time.monotonic() - started
    cost = trained_cost([history], what, model)  # latency and seconds per epoch, as for every trial
    tracker.finish_trial(run_id, summary, {"param_count": count_params(config), "wall_time_s": wall,
                                           schema.TEST_ACCURACY: test_acc, schema.TEST_LOSS: test_loss, **cost})
    return model, summary, wall, (float(test_acc), float(test_loss))


def _retrain(opened, source, value: str, seed: int, n_of: str, echo) -> float:
    """One retrain: the source trial's configuration with `seed`, on the same split, its own run; test accuracy."""
    tracker = opened.tracker
    config = LeNetConfig.from_params(source.data.params).replace(seed=seed)
    trial_id = schema.retrain_trial_id(value, seed)
    source_trial = source.data.tags.get(schema.TRIAL_ID, "?")
    params = {**config.to_params(), schema.ISOLATION_VALUE: value,
              schema.ISOLATION: source.data.params.get(schema.ISOLATION, ""),
              schema.ISOLATION_POINT: source.data.params.get(schema.ISOLATION_POINT, "")}
    label = f"{value} seed={seed} (trial {source_trial}'s configuration)"
    run_id = tracker.start_trial(trial_id, params, label=label, role=schema.ROLE_RETRAIN,
                                 tags={schema.TRIAL_KIND: schema.KIND_RETRAIN})
    _, summary, wall, (test_acc, _) = train_into_run(opened, run_id, config, f"retrain {value} seed={seed}")
    echo(f"[retrain {n_of}] {label} | val_acc {summary.best_val_accuracy:.4f} | test_acc {test_acc:.4f} | "
         f"{summary.epochs_run} ep | {wall:.1f} s")
    return float(test_acc)
