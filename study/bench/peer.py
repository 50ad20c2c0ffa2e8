"""Optuna's side of the search benchmark: TPE with a MedianPruner on the study's space, tracked as a study is.

The knobs and ranges are read from the `Space` (a `when` knob only when its parent takes one of its values;
the space's start_with configurations enqueued first, as the study tries them first). Every Optuna trial
resolves its values with `resolve_config` and trains with `build_trial_model` + `fit_model` as a study's
trial does, reporting validation accuracy after each epoch to the pruner. It keeps the study's time-budget
rule (study/budget.py's `TimeBudget`, on the same clock): a trial starts only while it and the final run
still fit in the budget. Then its best configuration is trained as the study trains its final run
(`retrain.train_into_run`: final_epochs, the same split) and that model alone reads the test set.
Every trial is a child run and the search one parent run in the MLflow store, as for the study's searches.
"""

from __future__ import annotations

import inspect
import math
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from .. import retrain, schema, tracking
from ..budget import TimeBudget
from ..cost import steady_seconds_per_epoch
from ..data import prepare_data
from ..lazy import lazy
from ..model import ConfigError
from ..finish import OpenedStudy
from ..spacefile import hp_value, resolve_config
from .common import fresh_trial_model

keras = lazy("keras")
optuna = lazy("optuna")
tuner_module = lazy("study.tuner")  # the trial's fit; importing keras-tuner starts TensorFlow



def optuna_values(trial, knobs: dict[str, dict]) -> tuple[dict, list[str]]:
    """A trial's values for the space's knobs, drawn through Optuna's suggest API (keras-tuner's value forms:
    dense widths as "120,84"), and notes on samplings Optuna has no equivalent of (spacefile.hp_value: the
    one place values get keras-tuner's scalar form)."""
    values: dict = {}
    notes: list[str] = []
    for knob, spec in knobs.items():
        if spec.get("when"):
            parent, allowed = next(iter(spec["when"].items()))
            if parent not in values or str(values[parent]) not in {str(hp_value(parent, v)) for v in allowed}:
                continue
        kind = spec["type"]
        if kind == "fixed":
            values[knob] = hp_value(knob, spec["value"])
        elif kind == "choice":
            values[knob] = trial.suggest_categorical(knob, [hp_value(knob, v) for v in spec["values"]])
        else:
            sampling, step = spec.get("sampling", "linear"), spec.get("step")
            log = sampling == "log" and not step
            if sampling == "reverse_log" or (sampling == "log" and step):
                notes.append(f"{knob}: {sampling} sampling{' with a step' if step else ''} has no Optuna "
                             "equivalent: sampled linearly")
            if kind == "int":
                values[knob] = trial.suggest_int(knob, spec["min"], spec["max"], step=step or 1, log=log)
            else:
                values[knob] = trial.suggest_float(knob, spec["min"], spec["max"], step=step, log=log)
    return values, notes



def optuna_defaults() -> str:
    """Optuna's version and the defaults of the sampler and pruner the benchmark uses, as one line."""
    sampler = optuna.samplers.TPESampler()
    tpe = {name: p.default for name, p in inspect.signature(optuna.samplers.TPESampler).parameters.items()
           if name in ("n_startup_trials", "constant_liar", "multivariate", "group")}
    # multivariate=None means "the version's default" (Optuna 5: on); the sampler's estimator knows what it chose.
    chosen = getattr(getattr(sampler, "_parzen_estimator_parameters", None), "multivariate", None)
    if chosen is not None:
        tpe["multivariate"] = chosen
    pruner = {name: p.default for name, p in inspect.signature(optuna.pruners.MedianPruner).parameters.items()}
    text = lambda d: ", ".join(f"{k}={v}" for k, v in d.items())  # noqa: E731
    return f"Optuna {optuna.__version__}: TPESampler defaults ({text(tpe)}), MedianPruner defaults ({text(pruner)})"


@dataclass
class PeerResult:
    """Optuna's search: its parent run, best validation accuracy, the test accuracy of its final model, and
    its trials by Optuna's state."""

    parent_run_id: str = ""
    best_val: float = math.nan
    test: float = math.nan
    trials: dict[str, int] = field(default_factory=dict)
    final_s: float = 0.0
    total_s: float = 0.0


class _EpochLog:
    """A Keras callback for one Optuna trial: keep each epoch's logs (the trial's history, pruned or not),
    report validation accuracy to the pruner and prune when it says so; stop at the end of an epoch once
    `out_of_time()` says the budget has no room left for more."""

    def __new__(cls, trial, out_of_time):
        class EpochLog(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.history: dict[str, list[float]] = {}

            def on_epoch_end(self, epoch, logs=None):
                for key, value in (logs or {}).items():
                    self.history.setdefault(key, []).append(float(value))
                trial.report(float((logs or {}).get("val_accuracy", math.nan)), step=epoch)
                if trial.should_prune():
                    raise optuna.TrialPruned()
                if out_of_time():
                    self.model.stop_training = True

        return EpochLog()


def run_optuna(space, settings, data_dir, budget_s: float, *, study: str, uri: str, tags: dict[str, str],
               log_dir: str | Path, started: float | None = None, echo=print) -> PeerResult:
    """Optuna's search within `budget_s` seconds from `started` (time.monotonic; default now), loading its data
    included, tracked in experiment `study` of the store `uri` (one parent run tagged `tags`, a child run per
    trial, the final run); its best configuration trained settings.final_epochs epochs (else the trials'
    epochs) and evaluated on the test set once."""
    started = time.monotonic() if started is None else started
    budget = TimeBudget(budget_s, settings.final_epochs or settings.epochs, started=started, where="--budget")
    ds, train, val = prepare_data(settings, data_dir)
    (x_tr, y_tr), (x_val, y_val) = train, val
    # The study's probe (search.calibrate_budget), so that both sides judge the final run's time alike: a
    # trial's set-up apart from its seconds per epoch, before any trial ran.
    try:
        first = resolve_config(dict((space.start_values() or [{}])[0]), settings)
    except ConfigError:
        first = resolve_config({}, settings)
    budget.calibrate(*tuner_module.probe_trial_cost(first, train, val, ds.input_shape, clock=budget.clock))
    tracker = tracking.StudyTracker(study, uri, search_id=uuid.uuid4().hex[:12])
    tracker.start_parent(f"{study}: optuna TPE, seed {settings.seed}, {time.strftime('%Y-%m-%d %H:%M:%S')}",
                         {**settings.to_params(), "sampler": "TPESampler", "pruner": "MedianPruner",
                          "optuna_version": optuna.__version__},
                         {**tags, schema.SPACE_FILE: str(space.path), schema.SPACE_DIGEST: space.digest})
    opened = OpenedStudy(study, Path(log_dir), Path(log_dir), tracker.search_id, False, ds, train, val, tracker)
    result = PeerResult(parent_run_id=tracker.parent_run_id)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    search = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=settings.seed),
                                 pruner=optuna.pruners.MedianPruner())
    for values in space.start_values():
        search.enqueue_trial(values, skip_if_exists=True)
    configs: dict[int, object] = {}
    notes_seen: set[str] = set()

    def out_of_time() -> bool:
        return budget.left() < budget.final_seconds()

    def objective(trial):
        values, notes = optuna_values(trial, space.knobs)
        for note in set(notes) - notes_seen:
            echo(f"note: {note}")
            notes_seen.add(note)
        try:
            config = resolve_config(values, settings)
        except ConfigError as exc:  # an impossible architecture: a failed trial, as in the study
            run_id = tracker.start_trial(str(trial.number), {k: str(v) for k, v in values.items()},
                                         label="impossible configuration")
            tracker.fail_trial(run_id, f"impossible configuration: {exc}", schema.STOP_INVALID)
            echo(f"trial {trial.number} | FAILED (impossible configuration: {str(exc)[:80]})")
            raise
        configs[trial.number] = config
        label = tuner_module.knob_text(config)
        run_id = tracker.start_trial(str(trial.number), config.to_params(), label=label)
        t0 = time.monotonic()
        budget.begin(str(trial.number))
        log = _EpochLog(trial, out_of_time)
        state, history = "COMPLETE", None
        try:
            model = fresh_trial_model(config, ds.input_shape, len(y_tr))
            history = tuner_module.fit_model(model, config, x_tr, y_tr, validation_data=(x_val, y_val),
                                             callbacks=[log, keras.callbacks.TerminateOnNaN()],
                                             stop_at_chance=settings.stop_at_chance)
        except optuna.TrialPruned:
            state = "PRUNED"
        except BaseException:
            tracker.kill_trial(run_id)
            raise
        summary = tracking.summarise([log.history], config.epochs)
        wall = time.monotonic() - t0
        val = summary.best_val_accuracy
        per_epoch = steady_seconds_per_epoch([history]) if history is not None else None
        budget.record(str(trial.number), summary.epochs_run, val if state == "COMPLETE" else None,
                      fit_per_epoch=per_epoch)
        tracker.client.set_tag(run_id, schema.BENCH_OPTUNA_STATE, state if not summary.nan else "FAIL")
        if summary.nan:  # diverged: Optuna records a failed trial
            tracker.fail_trial(run_id, "diverged: the loss became NaN", schema.STOP_NAN, summary, {"wall_time_s": wall})
        else:
            tracker.finish_trial(run_id, summary, {"wall_time_s": wall})
        echo(f"trial {trial.number} {label} | {'pruned at ' if state == 'PRUNED' else ''}val_acc {val:.4f} | "
             f"{summary.epochs_run} ep | {wall:.1f} s")
        if state == "PRUNED":
            raise optuna.TrialPruned()
        return math.nan if summary.nan else val

    def keep_to_budget(study_, _trial):
        if not budget.can_start(settings.epochs):
            study_.stop()

    with tracker.parent_status(), tuner_module.gc_frozen():
        if budget.can_start(settings.epochs):
            search.optimize(objective, catch=(ConfigError,), callbacks=[keep_to_budget])
        if budget.stopped:
            echo(budget.stopped)
        states = [t.state.name for t in search.trials]
        result.trials = {state.lower(): states.count(state) for state in ("COMPLETE", "PRUNED", "FAIL")}
        tracker.log_parent_metrics({schema.N_TRIALS_COMPLETED: result.trials["complete"],
                                    schema.N_TRIALS_FAILED: result.trials["fail"]})
        done = [t for t in search.trials if t.state.name == "COMPLETE" and t.value is not None
                and math.isfinite(t.value)]
        if not done:
            echo("no trial completed: nothing to evaluate on the test set")
        else:
            best = max(done, key=lambda t: t.value)
            result.best_val = float(best.value)
            tracker.log_parent_metrics({schema.BEST_VAL_ACCURACY: result.best_val})
            tracker.set_parent_tags({schema.BEST_TRIAL_ID: str(best.number)})
            config = configs[best.number].replace(epochs=settings.final_epochs or settings.epochs, patience=0)
            label = f"trial {best.number}'s configuration, {config.epochs} epochs: {tuner_module.knob_text(config)}"
            echo(f"final: training {label}")
            t0 = time.monotonic()
            run_id = tracker.start_trial(schema.FINAL_TRIAL_ID, config.to_params(), label=label, role=schema.ROLE_FINAL)
            _, summary, _, (test_acc, test_loss) = retrain.train_into_run(opened, run_id, config, "final run")
            result.final_s, result.test = time.monotonic() - t0, test_acc
            tracker.set_parent_tags({schema.FINAL_RUN_ID: run_id})
            tracker.log_parent_metrics({schema.TEST_ACCURACY: test_acc, schema.TEST_LOSS: test_loss})
            echo(f"final: val_accuracy {summary.best_val_accuracy:.4f}, test_accuracy {test_acc:.4f}, "
                 f"{result.final_s:.0f} s")
    result.total_s = time.monotonic() - started
    return result
