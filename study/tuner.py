"""keras-tuner adapter: hyperparameters → LeNetConfig, and tuners that track each trial in MLflow.

`build_model(hp)` is the thin adapter the keras-tuner guide asks for: it reads
hyperparameters into a `LeNetConfig` and calls the pure builder.
`LeNetHyperModel.fit` applies the per-trial training recipe (batch size,
epochs, EarlyStopping). The tracked tuners override `run_trial` to open one
MLflow child run per trial and `on_trial_end` to print progress.
"""

from __future__ import annotations

import contextlib
import gc
import math
import time
import warnings
from dataclasses import dataclass
from typing import Any

import keras
import keras_tuner as kt

from . import kt_compat, pruning, schema
from .budget import TimeBudget
from .cost import steady_seconds_per_epoch, timed_fit, trained_cost
from .errors import StudyError
from .factorial import run_label as factorial_run_label
from .factorial import run_params as factorial_run_params
from .files import is_disk_full
from .kt_compat import ResumableGridOracle, TrialStatus
from .model import ConfigError, LeNetConfig, build_lenet, count_params
from .progress import Progress
from .spacefile import StudySettings, parse_isolation, resolve_config
from .tpe import TPEOracle
from .tracking import StoreUnavailable, StudyTracker, summarise
from .variants import VARIANTS


# Hyperband continues a trial from another's checkpoint, which holds optimizer slots the freshly
# compiled model has not built yet; only the weights matter, so the warning is noise.
warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")


# keras-tuner prints a traceback for every failed trial; ours record the reason in MLflow and the
# progress line, so tracebacks only with `lenet-study -v` (cli sets it back on).
set_debug = kt_compat.set_debug
set_debug(False)


class TensorBoard(keras.callbacks.TensorBoard):
    """keras.callbacks.TensorBoard without the per-batch scalar calls it makes when update_freq="epoch".

    Keras's callback hands every batch's loss and accuracy to `tf.summary.scalar` even when no batch
    writer is open, so nothing is written, yet each batch pays about 0.15 ms for it: 2% of a LeNet-5
    training step on a 2-core CPU, where the TensorFlow backend runs batch hooks synchronously.
    Epoch summaries, the graph, profiling and update_freq="batch" are unchanged. The class keeps the
    name TensorBoard: keras-tuner recognises the callback by that name to give each trial its own
    folder and HParams data.
    """

    def on_train_batch_end(self, batch, logs=None):
        super().on_train_batch_end(batch, logs if self.update_freq != "epoch" else None)


@contextlib.contextmanager
def gc_frozen():
    """Keep the objects alive now (TensorFlow, MLflow, the data: about half a million) out of the
    garbage collector's scans until the block ends.

    keras-tuner runs two full collections before building each model (`clear_session()` and
    `gc.collect()` in `Tuner._try_build`); each walked every one of those objects, 0.3-0.4 s on a
    2-core CPU. Frozen, a collection only looks at what the trials created.
    """
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def hp_values(hp: kt.HyperParameters) -> dict[str, Any]:
    """The active values of a trial's hyperparameters (inactive conditional knobs left out)."""
    # Hyperband's tuner/epochs, tuner/initial_epoch, tuner/trial_id... are values outside the space.
    return {name: value for name, value in hp.values.items() if name.startswith(schema.HYPERBAND_PREFIX) or hp.is_active(name)}


def config_from_hp(hp: kt.HyperParameters, settings: StudySettings | None = None) -> LeNetConfig:
    """Read keras-tuner hyperparameters into a config; knobs the space does not name keep defaults."""
    return resolve_config(hp_values(hp), settings)


# Batches per call into TensorFlow in every trial: measured on a 2-core CPU, batch 32
# trained 1.6x faster with 16 and batch 128 1.17x (`make bench ARGS="--only throughput"` measures it
# again; on a loaded machine its ratios are noisy). Callbacks still run per epoch; an epoch's last,
# partial execution runs the batches that are left.
STEPS_PER_EXECUTION = 16


def build_model(hp: kt.HyperParameters):
    """keras-tuner's model-building function. With an empty HyperParameters it builds tf2-classic."""
    return build_lenet(config_from_hp(hp))


def build_trial_model(config: LeNetConfig, input_shape: tuple[int, ...] | None = None, n_train: int | None = None):
    """The model a trial trains: the pure builder with the trial's execution settings (steps per
    execution, and the batches per epoch that size a cosine or one-cycle schedule)."""
    steps = math.ceil(n_train / config.batch_size) if n_train else None
    shape = {"input_shape": input_shape} if input_shape else {}
    return build_lenet(config, **shape, steps_per_epoch=steps, steps_per_execution=STEPS_PER_EXECUTION)


class LeNetHyperModel(kt.HyperModel):
    """build(hp) through the pure builder; fit(hp, model, ...) with the trial's own recipe."""

    def __init__(self, settings: StudySettings | None = None, input_shape: tuple[int, ...] | None = None,
                 n_train: int | None = None):
        super().__init__(name="lenet5")
        self.settings = settings
        self.input_shape = input_shape  # the data's image shape; None: the builder's default (28x28x1)
        self.n_train = n_train  # training images per epoch (sizes learning-rate schedules)

    def build(self, hp):
        return build_trial_model(config_from_hp(hp, self.settings), self.input_shape, self.n_train)

    def fit(self, hp, model, *args, **kwargs):
        chance = self.settings.stop_at_chance if self.settings is not None else 0
        return fit_model(model, config_from_hp(hp, self.settings), *args, stop_at_chance=chance, **kwargs)


class StopAtChance(keras.callbacks.Callback):
    """Stop a fit whose validation accuracy is still below schema.CHANCE_ACCURACY after `epochs` epochs
    (a sigmoid/SGD network stuck at 11% for 9 epochs taught the search nothing)."""

    def __init__(self, epochs: int):
        super().__init__()
        self.epochs = epochs

    def on_epoch_end(self, epoch, logs=None):
        val = (logs or {}).get("val_accuracy")
        if epoch + 1 >= self.epochs and val is not None and val < schema.CHANCE_ACCURACY:
            self.model.stop_training = True


def fit_model(model, config: LeNetConfig, *args, callbacks=None, stop_at_chance: int = 0, **kwargs):
    """model.fit with the config's recipe: batch size, epochs, EarlyStopping(val_loss, patience), the
    reduce-on-plateau schedule; with stop_at_chance=N, a fit still at chance after N epochs stops."""
    callbacks = list(callbacks or [])
    if config.patience > 0:
        callbacks.append(
            keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.patience, restore_best_weights=True)
        )
    if config.lr_schedule == "plateau":
        callbacks.append(keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=1,
                                                           min_lr=config.learning_rate / 100, verbose=0))
    if stop_at_chance:
        callbacks.append(StopAtChance(stop_at_chance))
    kwargs.setdefault("epochs", config.epochs)  # Hyperband passes its own epochs
    kwargs.setdefault("verbose", 0)
    # Timed (History.fit_seconds): a trial records its training seconds per epoch (cost.seconds_per_epoch).
    return timed_fit(model, *args, batch_size=config.batch_size, callbacks=callbacks, **kwargs)


def is_recipe(config: LeNetConfig, variant: str) -> bool:
    """Whether `config` is the documented variant's recipe (its epochs capped and its seed aside)."""
    recipe = VARIANTS[variant].config
    return config.replace(epochs=recipe.epochs, seed=recipe.seed) == recipe


class DiskFull(StudyError, kt.errors.FatalError):
    """No space left where the study writes: keras-tuner stops the search (a FatalError) instead of
    failing every trial that follows; the search says so in one line (search.no_space_as_error)."""


class StoreLost(StoreUnavailable, kt.errors.FatalError):
    """The MLflow store stayed away while a trial ran (tracking.StoreUnavailable, one line for the user).
    A keras-tuner FatalError: the search stops and the trial is neither COMPLETED nor FAILED but stays
    RUNNING in the oracle, which hands it out again when the study resumes."""


@contextlib.contextmanager
def store_loss_stops_the_search():
    """Around a trial's MLflow calls: StoreUnavailable becomes StoreLost, so that keras-tuner stops the
    search and runs the trial again on resume instead of counting it failed."""
    try:
        yield
    except StoreLost:
        raise
    except StoreUnavailable as exc:
        raise StoreLost(exc.uri, exc.reason) from exc


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}"[:500]


def knob_text(config: LeNetConfig) -> str:
    """The knobs that tell trials apart, in one short line."""
    parts = [
        config.activation, f"{config.pooling}pool", config.c1_padding, f"k{config.kernel_size}",
        *([f"maps={config.c1_filters},{config.c3_filters}"] if (config.c1_filters, config.c3_filters) != (6, 16) else []),
        f"C5={config.c5}", "dense=" + ",".join(map(str, config.dense_units)),
        f"{config.optimizer} lr={config.learning_rate:.2g}",
    ]
    if config.optimizer == "sgd" and config.momentum:
        parts.append(f"m={config.momentum:.2f}")
    parts.append(f"bs={config.batch_size}")
    # Knobs most studies leave at their usual value, shown only when they differ from it.
    for name, usual in (("input_scaling", "unit"), ("output", "softmax"), ("loss", "crossentropy")):
        if getattr(config, name) != usual:
            parts.append(f"{name}={getattr(config, name)}")
    if config.augment != "none":
        parts.append(f"aug={config.augment}")
    if config.batch_norm:
        parts.append("bn")
    if config.dropout:
        parts.append(f"drop={config.dropout:.2g}")
    if config.lr_schedule != "constant":
        parts.append(config.lr_schedule)
    if config.weight_decay:
        parts.append(f"wd={config.weight_decay:.2g}")
    if config.label_smoothing:
        parts.append(f"ls={config.label_smoothing:.2g}")
    return " ".join(parts)


ALL_TRIALS = 1_000_000  # get_best_trials' count for "every completed trial"


class TrackedMixin(kt_compat.DeclaredSpace):
    """Wraps keras-tuner's run_trial in an MLflow child run; placed before a keras-tuner tuner class."""

    def __init__(self, *args, tracker: StudyTracker, settings: StudySettings, progress: Progress | None = None,
                 **kwargs):
        self.tracker = tracker
        self.settings = settings
        self.progress = progress
        self._last: dict[str, Any] = {}
        self.pruner = pruning.pruner_for(settings.prune)  # None unless study.prune names one
        self._curve: dict[int, float] = {}  # the running trial's validation accuracy per epoch
        self._pruned = False
        super().__init__(*args, **kwargs)

    def on_epoch_end(self, trial, model, epoch, logs=None):
        """keras-tuner's hook after each epoch: with a pruner, stop the trial once the pruner says its curve falls
        below the finished trials' (their curves come from the oracle: this process's, a worker's, a resumed
        study's earlier trials)."""
        super().on_epoch_end(trial, model, epoch, logs=logs)
        value = (logs or {}).get(schema.OBJECTIVE)
        if self.pruner is None or value is None or not math.isfinite(value):
            return
        self._curve[int(epoch)] = float(value)
        finished = self.oracle.get_best_trials(num_trials=ALL_TRIALS)  # the completed ones, over gRPC for a worker
        curves = [c for c in (pruning.curve_of(pruning.trial_metrics(t)) for t in finished) if c]
        if self.pruner.should_stop(curves, self._curve):
            model.stop_training = True
            self._pruned = True

    def run_trial(self, trial, *args, **kwargs):
        """The trial trained in its own child run. A store that stays away (StoreUnavailable), even after
        the training, stops the search (StoreLost): its run is marked KILLED if the store lets it, and the
        trial, still RUNNING for keras-tuner, is trained and logged again when the study resumes."""
        self._curve, self._pruned = {}, False
        try:
            with store_loss_stops_the_search():
                histories = self._run_tracked_trial(trial, *args, **kwargs)
            if self.pruner is None:
                return histories
            # The curve goes to the oracle with the trial's result, where the next trials' pruning reads it.
            return kt_compat.trial_results(histories, self.oracle.objective,
                                           pruning.curve_metrics(self._curve, self._pruned))
        except StoreLost:
            if self._last.get("run_id"):
                self.tracker.kill_trial(self._last["run_id"])
            raise

    def _run_tracked_trial(self, trial, *args, **kwargs):
        hp = trial.hyperparameters
        values = hp_values(hp)
        variant, arm = values.get("variant"), values.get(schema.ARM)
        started = time.monotonic()
        self._last = {"label": trial_label(values), "epochs": 0, "val_acc": math.nan, "note": "", "t0": started}
        try:
            config = config_from_hp(hp, self.settings)
        except ConfigError as exc:
            run_id = self._last["run_id"] = self.tracker.start_trial(
                trial.trial_id, {k: v for k, v in values.items()}, variant, label=self._last["label"],
                values=dict(hp.values), arm=arm)
            self.tracker.fail_trial(run_id, f"impossible configuration: {exc}", schema.STOP_INVALID)
            self._last["note"] = "impossible configuration"
            raise kt.errors.FailedTrialError(str(exc)) from None
        params = config.to_params()
        params.update({k: v for k, v in values.items() if k.startswith(schema.HYPERBAND_PREFIX)})
        if variant and not is_recipe(config, variant):
            # The space changed the variant's recipe (an ablation): a new configuration, not the variant.
            params[schema.BASE_VARIANT] = variant
            variant = None
        if variant:
            params[schema.VARIANT] = variant
        if arm is not None:
            params[schema.ARM] = arm
        tags = None
        if values.get(schema.ISOLATION) is not None:  # an isolation study's nuisance trial: its value and point
            params.update(isolation_params(values[schema.ISOLATION]))
            tags = {schema.TRIAL_KIND: schema.KIND_NUISANCE}
        if values.get(schema.FACTORIAL) is not None:  # a factorial run: its replicate, row and coded levels
            params.update(factorial_run_params(values[schema.FACTORIAL]))
        self._last["label"] = trial_label(values, config)
        run_id = self._last["run_id"] = self.tracker.start_trial(trial.trial_id, params, variant,
                                                                 label=self._last["label"], values=dict(hp.values),
                                                                 arm=arm, tags=tags)
        # Seeds weights and shuffling; further executions continue the same stream.
        keras.utils.set_random_seed(config.seed)
        try:
            histories = super().run_trial(trial, *args, **kwargs)
        except kt.errors.FatalError:
            self.tracker.fail_trial(run_id, "fatal keras-tuner error", schema.STOP_ERROR)
            raise
        except Exception as exc:  # a failing trial is recorded and the study goes on
            if is_disk_full(exc):  # ...unless nothing more can be written: it stops, and runs again on resume
                with contextlib.suppress(Exception):
                    self.tracker.kill_trial(run_id)
                raise DiskFull(f"trial {trial.trial_id} stopped") from exc
            self.tracker.fail_trial(run_id, _one_line(exc), schema.STOP_ERROR,
                                    extra={"wall_time_s": time.monotonic() - started})
            self._last["note"] = _one_line(exc)[:80]
            raise kt.errors.FailedTrialError(_one_line(exc)) from exc
        except BaseException:  # Ctrl-C or a killed process: the run must not stay RUNNING
            self.tracker.kill_trial(run_id)
            raise
        if self._pruned:
            for history in histories:
                history.stop_reason = schema.STOP_PRUNED
        wall = time.monotonic() - started
        max_epochs = values.get("tuner/epochs", config.epochs)
        summary = summarise(histories, max_epochs)
        extra = {"param_count": count_params(config), "wall_time_s": wall}
        self._last.update(epochs=summary.epochs_run, val_acc=summary.best_val_accuracy, run_id=run_id,
                          pruned=self._pruned)
        if summary.nan:
            reason = "diverged: the loss became NaN"
            self.tracker.fail_trial(run_id, reason, schema.STOP_NAN, summary, extra)
            self._last["note"] = "NaN loss"
            raise kt.errors.FailedTrialError(reason)
        # Cost beside accuracy, measured here after the fit (outside wall_time_s): a failed measurement
        # leaves its metrics out and logs one line, the trial is kept.
        extra.update(trained_cost(histories, f"trial {trial.trial_id}"))
        self._last["fit_per_epoch"] = steady_seconds_per_epoch(histories)
        self.tracker.finish_trial(run_id, summary, extra)
        return histories

    def on_trial_end(self, trial):
        super().on_trial_end(trial)
        if self.progress is not None and self._last:
            status = schema.COMPLETED if trial.status == TrialStatus.COMPLETED else schema.FAILED
            self.progress.trial_done(
                trial.trial_id, self._last["label"], status, self._last["val_acc"], self._last["epochs"],
                time.monotonic() - self._last["t0"], self._last["note"], self._last.get("fit_per_epoch"),
                pruned=self._last.get("pruned", False),
            )
        self._last = {}


def isolation_params(name: str) -> dict[str, str]:
    """The params that name an isolation trial's scientific value and nuisance point: ISOLATION_VALUE (its first
    knob, "optimizer=sgd") and ISOLATION_POINT ("3"), besides the ISOLATION text itself."""
    point, _ = parse_isolation(name)
    return {schema.ISOLATION: name, schema.ISOLATION_VALUE: name.split(" ")[1], schema.ISOLATION_POINT: str(point)}


def trial_label(values: dict[str, Any], config: LeNetConfig | None = None) -> str:
    """A trial's short label in progress lines: an ablation's arm and seed; the documented variant and seed
    when the trial is that variant's recipe, else its knobs; its raw values when no configuration could be
    built from them."""
    if config is not None and values.get(schema.ARM) is not None:
        return f"{values[schema.ARM]} seed={config.seed}"
    if values.get(schema.ISOLATION) is not None:  # "#03 optimizer=sgd learning_rate=0.00123": value and point
        return str(values[schema.ISOLATION])
    if values.get(schema.FACTORIAL) is not None:  # "r1 #05 activation+ optimizer-": replicate, row and levels
        return factorial_run_label(values[schema.FACTORIAL])
    if config is None:
        return " ".join(f"{k}={v:.2g}" if isinstance(v, float) else f"{k}={v}"
                        for k, v in values.items() if not k.startswith(schema.HYPERBAND_PREFIX))
    variant = values.get("variant")
    return f"{variant} seed={config.seed}" if variant and is_recipe(config, variant) else knob_text(config)


def hp_label(hp: kt.HyperParameters, settings: StudySettings | None = None) -> str:
    """trial_label for a trial's hyperparameters, whether or not they make a possible configuration."""
    try:
        config = config_from_hp(hp, settings)
    except ConfigError:
        config = None
    return trial_label(hp_values(hp), config)


@dataclass(frozen=True)
class TrialCounts:
    """The one count of a study's trials. INVALID trials are not finished: keras-tuner runs them again."""

    completed: int
    failed: int

    @property
    def finished(self) -> int:
        return self.completed + self.failed


def trial_counts(oracle) -> TrialCounts:
    statuses = [t.status for t in oracle.trials.values()]
    return TrialCounts(statuses.count(TrialStatus.COMPLETED), statuses.count(TrialStatus.FAILED))


class TrackedRandomSearch(TrackedMixin, kt.RandomSearch):
    pass


class TrackedBayesianOptimization(TrackedMixin, kt.Tuner):
    """Bayesian optimisation: keras-tuner's Gaussian-process oracle with a cheaper acquisition search
    (kt_compat.BayesianOracle)."""


class TrackedTPE(TrackedMixin, kt.Tuner):
    """Optuna's TPE sampler proposing (study/tpe.py), everything else a study's."""


class TrackedHyperband(TrackedMixin, kt.Hyperband):
    pass


class TrackedGridSearch(TrackedMixin, kt.Tuner):
    pass


POSSIBLE_TRIES = 50  # proposals an oracle may make for one trial before an impossible one is run (and fails)


def start_with(tuner, values: list[dict[str, Any]], settings: StudySettings | None = None):
    """Make the tuner's oracle propose `values` (complete hyperparameter values) first, in order (a
    resumed study counts the trials it already has), then its own proposals, skipping those that make
    no possible LeNet-5 (e.g. valid padding, 5x5 kernels and a convolutional C5): keras-tuner would
    spend a trial of the budget on each. Random and Bayesian oracles only."""
    oracle = tuner.oracle
    if not hasattr(oracle, "populate_space"):  # a worker's oracle is the chief's, over gRPC
        return tuner
    own = oracle.populate_space

    def possible(response) -> bool:
        if response.get("status") != TrialStatus.RUNNING or not response.get("values"):
            return True
        try:
            resolve_config(response["values"], settings)
        except ConfigError:
            return False
        return True

    def populate_space(trial_id):
        tried = len([t for t in oracle.trials if t != trial_id])
        if tried < len(values):
            return {"status": TrialStatus.RUNNING, "values": dict(values[tried])}
        response = own(trial_id)
        # A Bayesian oracle's proposal is the acquisition's optimum, which can stay on an impossible
        # configuration: then a random possible point instead, as in its initial phase.
        for _ in range(POSSIBLE_TRIES):
            if possible(response):
                return response
            point = kt_compat.random_values(oracle)
            if point is None:
                break
            response = {"status": TrialStatus.RUNNING, "values": point}
        return response

    oracle.populate_space = populate_space
    return tuner


def keep_to_budget(tuner, budget: TimeBudget | None, next_epochs):
    """Make the tuner's oracle start a trial only while `budget` holds it and the final run after it;
    `next_epochs(n)`: the epochs of the study's n-th trial (from 0). Otherwise the oracle answers STOPPED,
    which ends keras-tuner's search here and, served to workers, tells each to stop. A trial waiting
    for a retry (keras-tuner hands those out first) is not asked about."""
    oracle = tuner.oracle
    if budget is None or not hasattr(oracle, "populate_space"):  # no budget, or a worker's client
        return tuner
    own = oracle.populate_space

    def populate_space(trial_id):
        # Asked before the oracle proposes anything: a proposal withdrawn would still be in Hyperband's brackets.
        if not budget.can_start(next_epochs(len(oracle.trials))):
            return {"status": TrialStatus.STOPPED, "values": None}
        budget.begin(trial_id)
        return own(trial_id)

    oracle.populate_space = populate_space
    return tuner


PROBE_BATCHES = 48  # batches of the timed probe fit (3 calls into TensorFlow of STEPS_PER_EXECUTION each)


def probe_trial_cost(config: LeNetConfig, train: tuple, val: tuple, input_shape=None, clock=time.monotonic
                     ) -> tuple[float, float]:
    """(set-up seconds, seconds per epoch) of a trial of `config` on this machine, before any trial ran.

    The same slice of the training data (PROBE_BATCHES batches at most) and the same share of the validation
    set, fitted twice for one epoch as a trial fits: the first fit builds and traces the model, the second
    reuses it. The second, scaled to the whole split, is the seconds per epoch; what the first took beyond
    it is the set-up each trial pays again (a few seconds on a 2-core CPU for the whole probe)."""
    (x, y), (xv, yv) = train, val
    share = min(1.0, PROBE_BATCHES * config.batch_size / len(y))
    n, nv = max(1, round(share * len(y))), max(1, round(share * len(yv)))
    config = config.replace(epochs=1, patience=0)
    keras.backend.clear_session()
    keras.utils.set_random_seed(config.seed)
    started = clock()
    model = build_trial_model(config, input_shape, len(y))
    data = dict(validation_data=(xv[:nv], yv[:nv]))
    fit_model(model, config, x[:n], y[:n], **data)
    first = clock() - started
    started = clock()
    fit_model(model, config, x[:n], y[:n], **data)
    second = clock() - started
    keras.backend.clear_session()
    return max(0.0, first - second), second / share


def make_tuner(tuner: str, *, hypermodel: LeNetHyperModel, hyperparameters: kt.HyperParameters,
               settings: StudySettings, tracker: StudyTracker, progress: Progress | None, directory: str,
               project_name: str, overwrite: bool, max_consecutive_failed_trials: int = 10,
               start: list[dict[str, Any]] | None = None):
    """The study's tracked tuner; `start`: configurations to try first (Space.start_values)."""
    start = list(start or [])
    common = dict(
        objective=kt.Objective(schema.OBJECTIVE, direction="max"),
        hyperparameters=hyperparameters,
        tune_new_entries=False,
        # keras-tuner treats seed 0 as "no seed" (`seed or random.randint(...)`): shift by one.
        seed=settings.seed + 1,
        max_consecutive_failed_trials=max_consecutive_failed_trials,
    )
    tkw = dict(
        hypermodel=hypermodel, tracker=tracker, settings=settings, progress=progress,
        directory=directory, project_name=project_name, overwrite=overwrite,
        executions_per_trial=settings.executions_per_trial,
    )
    if tuner == "random":
        return start_with(TrackedRandomSearch(max_trials=settings.max_trials, **common, **tkw), start, settings)
    if tuner == "bayesian":
        # keras-tuner's default, 3 random points per dimension, would spend a small budget on random
        # trials only; a third of the budget (the start_with configurations among them) then the GP.
        initial = max(3, len(start), settings.max_trials // 3)
        oracle = kt_compat.BayesianOracle(max_trials=settings.max_trials, num_initial_points=initial, **common)
        return start_with(TrackedBayesianOptimization(oracle=oracle, **tkw), start, settings)
    if tuner == "tpe":
        return start_with(TrackedTPE(oracle=TPEOracle(max_trials=settings.max_trials, **common), **tkw), start,
                          settings)
    if tuner == "hyperband":
        t = TrackedHyperband(max_epochs=settings.epochs, factor=settings.hyperband_factor, **common, **tkw)
        # Hyperband's budget is max_epochs x factor; max_trials caps it as well.
        t.oracle.max_trials = settings.max_trials
        return t
    oracle = ResumableGridOracle(max_trials=settings.max_trials, **common)
    return TrackedGridSearch(oracle=oracle, **tkw)


def planned_trial_epochs(tuner, settings: StudySettings, total: int | None) -> list[int]:
    """The epochs each planned trial trains, in order: Hyperband's schedule, else the study's epochs."""
    schedule = kt_compat.hyperband_trial_epochs(tuner.oracle) if settings.tuner == "hyperband" else None
    if schedule is not None:
        return schedule[:total] if total else schedule
    return [settings.epochs] * (total or 0)


def expected_trials(tuner, settings: StudySettings, space_size: int | None) -> int | None:
    """How many trials the study will run, for the progress line."""
    scheduled = kt_compat.hyperband_schedule_size(tuner.oracle) if settings.tuner == "hyperband" else None
    if scheduled is not None:
        return min(scheduled, settings.max_trials)
    if settings.tuner == "grid" and space_size:
        return min(space_size, settings.max_trials)
    return settings.max_trials
