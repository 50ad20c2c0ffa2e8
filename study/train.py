"""Train one configuration outside a search: a documented variant, or the knobs of an MLflow run.

This is the reproduce command the reports print for each trial
(`lenet-study train --run RUN_ID`). It prints per-epoch validation figures
and the test accuracy; it records nothing in MLflow.
"""

from __future__ import annotations

from . import schema
from .model import LeNetConfig
from .space import StudySettings


class TrainError(Exception):
    pass


def config_for(variant: str | None = None, run_id: str | None = None, tracking_uri: str | None = None):
    """The config (and the dataset it was trained on) of a variant or of a run."""
    if variant:
        from .variants import get_variant

        v = get_variant(variant)
        return v.config, v.dataset
    from . import tracking

    c = tracking.client(tracking_uri)
    try:
        run = c.get_run(run_id)
    except Exception:
        raise TrainError(f"run {run_id!r} not found in {tracking.tracking_uri(tracking_uri)}") from None
    params = run.data.params
    if "activation" not in params:
        raise TrainError(f"run {run_id} is not a trial run (it has no knob parameters)")
    dataset = params.get("dataset")
    parent = run.data.tags.get(schema.PARENT_RUN_ID)
    if parent:
        dataset = c.get_run(parent).data.params.get("dataset", dataset)
    return LeNetConfig.from_params(params), dataset or "mnist"


def train_one(variant=None, run_id=None, dataset=None, epochs=None, data_dir=None, save=None, echo=print):
    import keras

    from .data import prepare_data
    from .tuner import build_trial_model, fit_model, knob_text

    config, default_dataset = config_for(variant, run_id)
    if epochs:
        config = config.replace(epochs=epochs)
    settings = StudySettings(dataset=dataset or default_dataset, seed=config.seed)
    ds, (x_tr, y_tr), (x_val, y_val) = prepare_data(settings, data_dir)
    echo(f"training {knob_text(config)} for up to {config.epochs} epochs on {ds.provenance.resolved}")
    keras.utils.set_random_seed(config.seed)
    model = build_trial_model(config, ds.input_shape, len(y_tr))
    history = fit_model(model, config, x_tr, y_tr, validation_data=(x_val, y_val))
    for epoch, (acc, vacc) in enumerate(zip(history.history["accuracy"], history.history["val_accuracy"])):
        echo(f"epoch {epoch + 1}: accuracy {acc:.4f}  val_accuracy {vacc:.4f}")
    test_loss, test_acc = model.evaluate(ds.x_test, ds.y_test, verbose=0, batch_size=512)
    echo(f"test_accuracy {test_acc:.4f}  test_loss {test_loss:.4f}")
    if save:
        model.save(save)
        echo(f"saved {save}")
    return model, history, test_acc
