"""Tracking overhead (`make bench ARGS="--only tracking"`): what keras-tuner + MLflow + TensorBoard cost a study.

The same trials run through the tracked search (keras-tuner + EarlyStopping + TensorBoard + MLflow child
runs, the test-set evaluation and the best-model upload) and as a bare script does them (`model.fit` per
configuration, the best evaluated on the test set and saved), in one process. Both sides run in every
round, their order alternating, since a shared machine's speed drifts by more than the target between
minutes; the ratio of the summed wall times is the price of tracking.
Target: at most 5% on top of the bare script.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import tempfile
import time
from pathlib import Path

from ..data import prepare_data
from ..lazy import lazy
from ..model import build_lenet
from ..search import StudyRequest, run_search
from ..space import load_space
from ..spacefile import resolve_config
from ..tracking import client
from .common import BenchError, fresh_trial_model, round_order

# Both sides train through tuner.fit_model, read from the module at each call: _timed_fits replaces it.
tuner_module = lazy("study.tuner")

BENCH_SPACE = """\
study:
  dataset: {dataset}
  tuner: grid
  max_trials: {trials}
  epochs: {epochs}
  patience: 0
  seed: 0
  val_fraction: 0.1
  test_eval: best
  {train_samples}
space:
  activation: {{choice: {activations}}}
  pooling: {{fixed: max}}
  batch_size: {{fixed: 64}}
"""

ACTIVATIONS = ["relu", "tanh", "sigmoid"]


def _bench_space(tmp: Path, args) -> Path:
    if args.trials > len(ACTIVATIONS):
        raise BenchError("bench: at most 3 trials (one per activation)")
    acts = ACTIVATIONS[: args.trials]
    path = tmp / "bench.yaml"
    path.write_text(BENCH_SPACE.format(
        dataset=args.dataset, trials=args.trials, epochs=args.epochs, activations="[" + ", ".join(acts) + "]",
        train_samples=f"train_samples: {args.train_samples}" if args.train_samples else "",
    ))
    return path


def _bare_study(configs, settings, tmp: Path) -> None:
    """What a script without tuner or tracker does with the same trials: load the data, fit each
    configuration, evaluate the best (by validation accuracy) on the test set once and save it."""
    ds, (x_tr, y_tr), (x_val, y_val) = prepare_data(settings, None)
    best, best_acc = None, -1.0
    with tuner_module.gc_frozen():  # as run_search does once its data is loaded
        for config in configs:
            model = fresh_trial_model(config, ds.input_shape, len(y_tr))  # the same model a trial trains
            history = tuner_module.fit_model(model, config, x_tr, y_tr, validation_data=(x_val, y_val))
            acc = max(history.history["val_accuracy"])
            if acc > best_acc:
                best, best_acc = model, acc
        best.evaluate(ds.x_test, ds.y_test, verbose=0, batch_size=512)
        best.save(tmp / "bare_best.keras")


@contextlib.contextmanager
def _timed_fits(seconds: list[float]):
    """Add the wall time of every `study.tuner.fit_model` call (both sides train through it) to `seconds`."""
    fit = tuner_module.fit_model

    def timed(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return fit(*args, **kwargs)
        finally:
            seconds.append(time.perf_counter() - t0)

    tuner_module.fit_model = timed
    try:
        yield
    finally:
        tuner_module.fit_model = fit


def bench_tracking(args, echo=print) -> dict[str, float]:
    """Rounds of (bare, tracked), the order alternating, in one process; ratios of the summed times.

    Each side's time is also split into model.fit and the rest: the fits are the same work on both
    sides (plus the trial callbacks on the tracked one) and carry the machine's noise; the rest is
    what the study does around them, which is where tracking costs show without that noise.
    """
    if args.data_dir:
        os.environ["LENET_DATA_DIR"] = args.data_dir
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        space = load_space(_bench_space(tmp, args))
        settings = space.settings
        hp = space.hyperparameters()
        configs = [resolve_config({**hp.values, "activation": act}, settings)
                   for act in space.knobs["activation"]["values"]]

        # Not counted: TensorFlow's first fit in a process (thread pools, kernels) and the creation of a
        # new MLflow store's tables, which happens once per store, not per study.
        ds, (x_tr, y_tr), (x_val, y_val) = prepare_data(settings, None)
        tuner_module.fit_model(build_lenet(configs[0]), configs[0].replace(epochs=1), x_tr[:512], y_tr[:512],
                               validation_data=(x_val[:128], y_val[:128]))
        uri = f"sqlite:///{tmp}/mlflow.db"
        t0 = time.perf_counter()
        client(uri).search_experiments()
        echo(f"{len(configs)} trials x {settings.epochs} epochs on {len(y_tr):,} {ds.provenance.resolved} digits; "
             f"new MLflow store (once per store, not counted): {time.perf_counter() - t0:.1f} s")
        del ds, x_tr, y_tr, x_val, y_val

        times: dict[str, list[float]] = {"bare": [], "tracked": []}
        fits: dict[str, list[float]] = {"bare": [], "tracked": []}
        for r in range(args.rounds):
            for side in round_order(("bare", "tracked"), r):
                fit_times: list[float] = []
                t0 = time.perf_counter()
                with _timed_fits(fit_times):
                    if side == "bare":
                        _bare_study(configs, settings, tmp)
                    else:
                        run_search(StudyRequest(space, settings, study=f"bench-{r + 1}", tracking_uri=uri,
                                                log_dir=tmp / "logs", command="bench"), echo=lambda line: None)
                times[side].append(time.perf_counter() - t0)
                fits[side].append(sum(fit_times))
            echo(f"round {r + 1}: bare {times['bare'][-1]:.1f} s (model.fit {fits['bare'][-1]:.1f} s), "
                 f"tracked {times['tracked'][-1]:.1f} s (model.fit {fits['tracked'][-1]:.1f} s): "
                 f"{times['tracked'][-1] / times['bare'][-1]:.3f}x")
        bare, tracked = sum(times["bare"]), sum(times["tracked"])
        bare_fit, tracked_fit = sum(fits["bare"]), sum(fits["tracked"])
        ratio = tracked / bare
        median = statistics.median(t / b for t, b in zip(times["tracked"], times["bare"]))
        around = (tracked - tracked_fit) - (bare - bare_fit)
        echo(f"bare (model.fit, test evaluation of the best, model.save): {bare:.1f} s in {args.rounds} round(s)")
        echo(f"tracked (keras-tuner, EarlyStopping, TensorBoard, MLflow runs, test evaluation, model upload): "
             f"{tracked:.1f} s")
        echo(f"around model.fit: bare {bare - bare_fit:.1f} s, tracked {tracked - tracked_fit:.1f} s: "
             f"{around / args.rounds:+.1f} s per study ({around / bare * 100:+.1f}% of bare); "
             f"inside model.fit (the same fits, plus the trial callbacks): {(tracked_fit / bare_fit - 1) * 100:+.1f}%")
        echo(f"tracking overhead: {ratio:.3f}x bare ({(ratio - 1) * 100:+.1f}%; median of rounds "
             f"{(median - 1) * 100:+.1f}%); target at most +5%")
        return {"bare_s": bare, "tracked_s": tracked, "bare_fit_s": bare_fit, "tracked_fit_s": tracked_fit,
                "ratio": ratio, "median_ratio": median}
