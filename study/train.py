"""Train one configuration outside a search: a documented variant, or a trial of a study (`--run`).

`lenet-study train --run RUN_ID` is the reproduce command the reports print for each trial. It
retrains the trial as its study trained it: the study's data, subsample, validation split and seed
(the settings its parent run recorded, `StudySettings.from_params`), the trial's knobs and seed, its
epochs (a Hyperband trial: its budget, tuner/epochs) and the study's stop_at_chance; then it prints
the figures the trial recorded beside the new ones. It records nothing in MLflow.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from . import schema, tracking
from .data import prepare_data
from .errors import StudyError
from .knobs import KNOB_RANGES
from .lazy import lazy
from .model import ConfigError, LeNetConfig
from .spacefile import StudySettings
from .variants import get_variant

keras = lazy("keras")
tuner_module = lazy("study.tuner")  # the trial's model and fit; importing keras-tuner starts TensorFlow


class TrainError(StudyError):
    """A run or flag `train` cannot use; one line for the user."""


@dataclass
class TrainPlan:
    """What `train` trains and what to set beside it: the config and the data settings, and for a run
    the figures it recorded, the digest of its study's data, and how its study trained it."""

    what: str  # "variant small-kernel" or "trial 3 of study 'lenet' (run ...)"
    config: LeNetConfig
    settings: StudySettings
    trial: bool = False  # a trial (or final) run: its recorded figures are set beside the new ones
    recorded: dict[str, float] = field(default_factory=dict)
    data_digest: str | None = None
    stop_at_chance: int = 0
    # A Hyperband trial's (tuner/epochs, tuner/initial_epoch): model.fit ran its budget, while
    # config.epochs (the study's maximum) sized a learning-rate schedule.
    hyperband: tuple[int, int] | None = None
    final: bool = False  # a final run: trained after the search, which cleared the session before seeding
    notes: list[str] = field(default_factory=list)


def plan_for(variant: str | None = None, run_id: str | None = None, tracking_uri: str | None = None) -> TrainPlan:
    """The plan for a documented variant (its recipe and dataset, split seeded by its seed), or for a
    trial run (see the module docstring)."""
    if variant:
        v = get_variant(variant)
        return TrainPlan(f"variant {v.name}", v.config, StudySettings(dataset=v.dataset, seed=v.config.seed))
    c = tracking.client(tracking.check_store(tracking_uri, must_exist=True))
    try:
        run = c.get_run(run_id)
    except Exception:
        raise TrainError(f"run {run_id!r} not found in {tracking.tracking_uri(tracking_uri)}") from None
    params, tags = run.data.params, run.data.tags
    if tags.get(schema.ROLE) == schema.ROLE_STUDY:
        raise TrainError(f"run {run_id} is a study's parent run, not a trial: give a trial's run id (the "
                         "report's leaderboard lists them)")
    if "activation" not in params:
        raise TrainError(f"run {run_id} is not a trial run (it has no knob parameters)")
    try:
        config = LeNetConfig.from_params(params)
    except ConfigError as exc:
        raise TrainError(f"run {run_id}: its configuration cannot be built ({exc})") from None
    parent_id = tags.get(schema.PARENT_RUN_ID)
    parent = c.get_run(parent_id) if parent_id else None
    notes = []
    if parent is not None:
        settings = StudySettings.from_params(parent.data.params)
    else:
        settings = StudySettings(dataset=params.get("dataset") or "mnist")
        notes.append("its study's settings are not recorded: the default split (val_fraction 0.1, seed 0)")
    study = tags.get(schema.STUDY, "?")
    what = f"trial {tags.get(schema.TRIAL_ID, '?')} of study {study!r} (run {run_id})"
    budget, start = (params.get(f"{schema.HYPERBAND_PREFIX}{key}") for key in ("epochs", "initial_epoch"))
    hyperband = (int(float(budget)), int(float(start or 0))) if budget is not None else None
    if settings.executions_per_trial > 1:
        notes.append(f"its recorded figures are the mean of {settings.executions_per_trial} executions; this is one")
    final = tags.get(schema.ROLE) == schema.ROLE_FINAL  # trained after the search, without the chance stop
    metrics = run.data.metrics
    recorded = {k: metrics[k] for k in (schema.BEST_VAL_ACCURACY, schema.TEST_ACCURACY) if k in metrics}
    digest = parent.data.tags.get(f"{schema.DATA_PREFIX}digest") if parent is not None else None
    return TrainPlan(what, config, settings, True, recorded, digest, 0 if final else settings.stop_at_chance,
                     hyperband, final, notes)


def check_save(path: str) -> None:
    """--save: a .keras (or legacy .h5) file in a folder this process can write to, checked before
    training rather than after it (the folder is made if missing)."""
    target = Path(path)
    if target.suffix not in (".keras", ".h5"):
        raise TrainError(f"--save {path}: name a .keras file (Keras's format), e.g. model.keras")
    if target.is_dir():
        raise TrainError(f"--save {path}: a folder; name a .keras file in it")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=target.parent, prefix=".lenet-save-"):
            pass
    except OSError as exc:
        blocker = next((p for p in target.parents if p.exists() and not p.is_dir()), None)
        reason = f"{blocker} is a file, not a folder" if blocker else exc.strerror or str(exc)
        raise TrainError(f"--save {path}: cannot write there ({reason})") from None


def _check_flag(flag: str, knob: str, value: int | None) -> None:
    if value is not None and not KNOB_RANGES[knob].holds(value):
        raise TrainError(f"{flag} {value}: need {KNOB_RANGES[knob].allowed()}")


def _recorded(plan: TrainPlan, key: str, same_data: bool) -> str:
    if key in plan.recorded:
        return f" (the trial recorded {plan.recorded[key]:.4f}{'' if same_data else ', on its own data'})"
    return " (the study did not evaluate this trial on the test set)" if plan.trial else ""


def train_one(variant=None, run_id=None, dataset=None, epochs=None, data_dir=None, save=None, seed=None, echo=print,
              tracking_uri: str | None = None):
    """Train a variant or retrain a trial (see the module docstring); --epochs, --seed and --dataset
    override the plan. Returns (model, history, test accuracy)."""
    _check_flag("--epochs", "epochs", epochs)
    _check_flag("--seed", "seed", seed)
    if save:
        check_save(save)
    plan = plan_for(variant, run_id, tracking_uri)
    config, settings, notes = plan.config, plan.settings, list(plan.notes)
    fit_epochs = config.epochs
    if epochs:
        config, fit_epochs = config.replace(epochs=epochs), epochs
    elif plan.hyperband:
        fit_epochs, start = plan.hyperband
        notes.insert(0, f"a Hyperband trial: {fit_epochs} epochs, its budget (tuner/epochs)" + (
            f"; the study continued it from another trial's epoch {start}, here it starts from scratch" if start else ""))
    if seed is not None:
        config = config.replace(seed=seed)
    if dataset and dataset != settings.dataset:
        settings = settings.override(dataset=dataset)
    ds, (x_tr, y_tr), (x_val, y_val) = prepare_data(settings, data_dir)
    same_data = plan.data_digest in (None, ds.provenance.digest)
    if not same_data and settings.dataset == plan.settings.dataset:
        here = f"{ds.provenance.resolved}, digest {ds.provenance.digest}"
        raise TrainError(f"run {run_id}: its study trained on other data (digest {plan.data_digest}) than "
                         f"{settings.dataset} loads here ({here}); give --data-dir (or LENET_DATA_DIR) holding the "
                         "study's files, or --dataset to train on others")
    echo(f"training {plan.what}: {tuner_module.knob_text(config)}, {fit_epochs} epoch(s), seed {config.seed}, on "
         f"{ds.provenance.resolved} ({len(y_tr):,} train / {len(y_val):,} val: val_fraction {settings.val_fraction}, "
         f"split seed {settings.seed}" + (f", train_samples {settings.train_samples}" if settings.train_samples else "")
         + (f", stop_at_chance {plan.stop_at_chance}" if plan.stop_at_chance else "") + ")")
    for note in notes:
        echo(f"note: {note}")
    # In the order the study did it: a trial seeds, then keras-tuner clears the session and builds;
    # the final run clears the session first.
    if plan.final:
        keras.backend.clear_session()
    keras.utils.set_random_seed(config.seed)
    if not plan.final:
        keras.backend.clear_session()
    model = tuner_module.build_trial_model(config, ds.input_shape, len(y_tr))
    history = tuner_module.fit_model(model, config, x_tr, y_tr, validation_data=(x_val, y_val), epochs=fit_epochs,
                        stop_at_chance=plan.stop_at_chance)
    for epoch, (acc, vacc) in enumerate(zip(history.history["accuracy"], history.history["val_accuracy"])):
        echo(f"epoch {epoch + 1}: accuracy {acc:.4f}  val_accuracy {vacc:.4f}")
    best = max((v for v in history.history["val_accuracy"] if math.isfinite(v)), default=math.nan)
    echo(f"best val_accuracy {best:.4f}" + _recorded(plan, schema.BEST_VAL_ACCURACY, same_data))
    test_loss, test_acc = model.evaluate(ds.x_test, ds.y_test, verbose=0, batch_size=512)
    echo(f"test_accuracy {test_acc:.4f}{_recorded(plan, schema.TEST_ACCURACY, same_data)}  test_loss {test_loss:.4f}")
    if save:
        model.save(save)
        echo(f"saved {save}")
    return model, history, test_acc
