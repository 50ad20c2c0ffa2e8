"""Search quality (`make bench ARGS="--only search"`): this project's search against Optuna, same space, same time.

In one process, one after the other: the study's own search (`run_search` on the space file, in a temporary
MLflow store and log folder), then Optuna's seeded TPE sampler with a MedianPruner on the same knobs and
ranges, read from the `Space` (a `when` knob only when its parent takes one of its values; the space's
start_with configurations enqueued first, as the study tries them first). Every Optuna trial resolves its
values with `resolve_config` and trains with `build_trial_model` + `fit_model` as a study's trial does,
reporting validation accuracy after each epoch to the pruner. Optuna's budget is the study's wall time
(or `--budget`); when the space trains its chosen configuration longer (study.final_epochs), Optuna's
best configuration gets the same after its search, inside its budget: `optimize()` runs for the budget
minus the study's final training time. Both sides select on validation accuracy and evaluate one model on
the test set once. The last line:
`search quality: lenet-study VAL/TEST vs optuna VAL/TEST (same space, S s each)`.
Target: lenet-study's test accuracy at least Optuna's.
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .. import tracking
from ..data import prepare_data
from ..lazy import lazy
from ..model import ConfigError
from ..search import StudyRequest, load_space_with_overrides, run_search
from ..spacefile import hp_value, resolve_config
from .common import fresh_trial_model

keras = lazy("keras")
optuna = lazy("optuna")
tuner_module = lazy("study.tuner")  # the trial's fit; importing keras-tuner starts TensorFlow

DEFAULT_SPACE = "search_spaces/lenet.yaml"


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


@dataclass
class PeerResult:
    """Optuna's side: its best trial's validation accuracy, the test accuracy of the model it chose, counts."""

    best_val: float = math.nan
    test: float = math.nan
    trials: dict[str, int] = field(default_factory=dict)
    optimize_s: float = 0.0
    final_s: float = 0.0
    total_s: float = 0.0


def _epoch_report(trial, deadline: float):
    """A Keras callback for one Optuna trial: report validation accuracy after each epoch and prune when the
    pruner says so; keep the weights of the best epoch (as keras-tuner's checkpoint does); stop training
    at the end of the epoch that passes the search's deadline."""
    class EpochReport(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.epochs, self.best, self.best_weights = 0, -math.inf, None

        def on_epoch_end(self, epoch, logs=None):
            self.epochs = epoch + 1
            val = float((logs or {}).get("val_accuracy", math.nan))
            if val > self.best:
                self.best, self.best_weights = val, self.model.get_weights()
            trial.report(val, step=epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()
            if time.perf_counter() > deadline:
                self.model.stop_training = True

    return EpochReport()


def run_optuna(space, settings, data_dir, budget_s: float, final_s: float, echo=print) -> PeerResult:
    """Optuna's side within `budget_s` seconds from now, loading its data included: optimize() until the
    budget minus `final_s` (the time the study's final training took), then its best configuration trained
    settings.final_epochs epochs when that is above 0; the chosen model evaluated on the test set once."""
    started = time.perf_counter()
    ds, (x_tr, y_tr), (x_val, y_val) = prepare_data(settings, data_dir)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=settings.seed),
                                pruner=optuna.pruners.MedianPruner())
    for values in space.start_values():
        study.enqueue_trial(values, skip_if_exists=True)
    timeout = max(1.0, budget_s - final_s - (time.perf_counter() - started))
    deadline = time.perf_counter() + timeout
    configs: dict[int, object] = {}
    best: dict = {"val": -math.inf, "model": None}
    notes_seen: set[str] = set()

    def objective(trial):
        values, notes = optuna_values(trial, space.knobs)
        for note in set(notes) - notes_seen:
            echo(f"[optuna] note: {note}")
            notes_seen.add(note)
        try:
            config = resolve_config(values, settings)
        except ConfigError as exc:  # an impossible architecture: a failed trial, as in the study
            echo(f"[optuna] trial {trial.number} | FAILED (impossible configuration: {str(exc)[:80]})")
            raise
        configs[trial.number] = config
        t0 = time.perf_counter()
        model = fresh_trial_model(config, ds.input_shape, len(y_tr))
        report = _epoch_report(trial, deadline)
        try:
            history = tuner_module.fit_model(model, config, x_tr, y_tr, validation_data=(x_val, y_val),
                                callbacks=[report, keras.callbacks.TerminateOnNaN()],
                                stop_at_chance=settings.stop_at_chance)
        except optuna.TrialPruned:
            echo(f"[optuna] trial {trial.number} {tuner_module.knob_text(config)} | pruned at val_acc "
                 f"{report.best:.4f} | "
                 f"{report.epochs} ep | {time.perf_counter() - t0:.1f} s")
            raise
        val = max(history.history.get("val_accuracy", [math.nan]))
        if any(not math.isfinite(v) for v in history.history.get("loss", [])):
            val = math.nan  # diverged: Optuna records a failed trial
        echo(f"[optuna] trial {trial.number} {tuner_module.knob_text(config)} | val_acc {val:.4f} | "
             f"{len(history.history.get('loss', []))} ep | {time.perf_counter() - t0:.1f} s")
        if math.isfinite(val) and val > best["val"]:
            model.set_weights(report.best_weights)
            best.update(val=val, model=model)
        return val

    with tuner_module.gc_frozen():
        study.optimize(objective, timeout=timeout, catch=(ConfigError,))
        result = PeerResult(optimize_s=time.perf_counter() - started)
        states = [t.state.name for t in study.trials]
        result.trials = {state.lower(): states.count(state) for state in ("COMPLETE", "PRUNED", "FAIL")}
        if best["model"] is None:
            echo("[optuna] no trial completed: nothing to evaluate on the test set")
            result.total_s = time.perf_counter() - started
            return result
        result.best_val = study.best_value
        model = best["model"]
        if settings.final_epochs:
            t0 = time.perf_counter()
            config = configs[study.best_trial.number].replace(epochs=settings.final_epochs, patience=0)
            echo(f"[optuna] final: training trial {study.best_trial.number}'s configuration, {config.epochs} "
                 f"epochs: {tuner_module.knob_text(config)}")
            model = fresh_trial_model(config, ds.input_shape, len(y_tr))
            tuner_module.fit_model(model, config, x_tr, y_tr, validation_data=(x_val, y_val))
            result.final_s = time.perf_counter() - t0
        result.test = float(model.evaluate(ds.x_test, ds.y_test, verbose=0, batch_size=512)[1])
    result.total_s = time.perf_counter() - started
    return result


def bench_search(args, echo=print) -> dict[str, float]:
    """The study's search, then Optuna with the same space and wall-clock budget; val/test of both."""
    space_path = args.space or DEFAULT_SPACE
    space, settings = load_space_with_overrides(space_path, max_trials=args.max_trials, epochs=args.epochs,
                                                dataset=args.dataset, train_samples=args.train_samples)
    with tempfile.TemporaryDirectory(prefix="lenet-bench-search-") as tmp_name:
        tmp = Path(tmp_name)
        uri = f"sqlite:///{tmp}/mlflow.db"
        tracking.client(uri).search_experiments()  # a new store's tables: once per store, not part of a search
        echo(f"lenet-study: {space_path}, {settings.tuner} tuner, max_trials {settings.max_trials}, epochs "
             f"{settings.epochs}, final_epochs {settings.final_epochs}, on {settings.dataset} (temporary MLflow store)")
        t0 = time.perf_counter()
        ours = run_search(StudyRequest(space, settings, study="bench-search", data_dir=args.data_dir,
                                       log_dir=tmp / "logs", tracking_uri=uri, command="bench --only search"),
                          echo=lambda line: echo(f"[lenet-study] {line}"))
        ours_s = time.perf_counter() - t0
        final = tracking.final_run(tracking.client(uri), ours.parent_run_id)
        final_s = float(final.data.metrics.get("wall_time_s", 0.0)) if final is not None else 0.0
    budget = args.budget or ours_s
    our_val = ours.best_val_accuracy if ours.best_val_accuracy is not None else math.nan
    our_test = ours.test_accuracy if ours.test_accuracy is not None else math.nan
    echo(f"lenet-study: {ours.completed + ours.failed} trials ({ours.completed} completed, {ours.failed} failed) "
         f"in {ours_s:.0f} s" + (f", its final training {final_s:.0f} s of it" if final is not None else "")
         + f"; best val {our_val:.4f}, test {our_test:.4f}")
    if args.budget and ours_s > args.budget:
        echo(f"lenet-study took {ours_s:.0f} s, {ours_s - args.budget:.0f} s over the {args.budget:.0f} s budget "
             "(lower --max-trials or --epochs)")
    echo(f"optuna: TPE sampler (seed {settings.seed}), MedianPruner; budget {budget:.0f} s "
         + ("(--budget)" if args.budget else "(lenet-study's wall time)")
         + (f"; optimize() gets the budget minus lenet-study's final training ({final_s:.0f} s), then its best "
            f"configuration is trained {settings.final_epochs} epochs" if settings.final_epochs else "")
         + (f"; the space's {len(space.start_with)} start_with configuration(s) enqueued first"
            if space.start_with else ""))
    peer = run_optuna(space, settings, args.data_dir, budget, final_s if settings.final_epochs else 0.0, echo=echo)
    echo(f"optuna: {sum(peer.trials.values())} trials ({peer.trials.get('complete', 0)} completed, "
         f"{peer.trials.get('pruned', 0)} pruned, {peer.trials.get('fail', 0)} failed) in {peer.optimize_s:.0f} s"
         + (f", final training {peer.final_s:.0f} s" if settings.final_epochs else "")
         + f"; {peer.total_s:.0f} s in all; best val {peer.best_val:.4f}, test {peer.test:.4f}")
    met = our_test >= peer.test
    echo(f"target: lenet-study at least optuna on test: {'met' if met else 'NOT met'} "
         f"({our_test:.4f} vs {peer.test:.4f}, {our_test - peer.test:+.4f})")
    echo(f"search quality: lenet-study {our_val:.4f}/{our_test:.4f} vs optuna {peer.best_val:.4f}/{peer.test:.4f} "
         f"(same space, {budget:.0f} s each)")
    return {"ours_val": our_val, "ours_test": our_test, "ours_s": ours_s, "ours_final_s": final_s,
            "optuna_val": peer.best_val, "optuna_test": peer.test, "optuna_s": peer.total_s,
            "optuna_final_s": peer.final_s, "optuna_trials": float(sum(peer.trials.values())), "budget_s": budget}
