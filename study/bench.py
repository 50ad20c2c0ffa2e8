"""Benchmarks (`make bench`): figures printed, never asserted in tests.

Tracking overhead: the same trials run once through the tracked search
(keras-tuner + EarlyStopping + TensorBoard + MLflow child runs, the test-set
evaluation and the best-model upload) and once as bare `model.fit` calls, in
one process; the ratio of the wall times is the price of tracking.
Target: at most 5% on top of bare training.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

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
    acts = (ACTIVATIONS * ((args.trials // len(ACTIVATIONS)) + 1))[: args.trials]
    if len(set(acts)) < len(acts):
        raise SystemExit("bench: at most 3 trials (one per activation)")
    path = tmp / "bench.yaml"
    path.write_text(BENCH_SPACE.format(
        dataset=args.dataset, trials=args.trials, epochs=args.epochs, activations="[" + ", ".join(acts) + "]",
        train_samples=f"train_samples: {args.train_samples}" if args.train_samples else "",
    ))
    return path


def bench_tracking(args, echo=print) -> dict[str, float]:
    import keras

    from .model import build_lenet
    from .search import prepare_data, run_search
    from .space import load_space
    from .tuner import fit_model

    if args.data_dir:
        os.environ["LENET_DATA_DIR"] = args.data_dir
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        space = load_space(_bench_space(tmp, args))
        settings = space.settings

        # Bare: the same configs, data preparation included, plain model.fit.
        t0 = time.perf_counter()
        ds, (x_tr, y_tr), (x_val, y_val) = prepare_data(settings, None)
        hp = space.hyperparameters()
        from .space import resolve_config

        configs = [resolve_config({**hp.values, "activation": act}, settings)
                   for act in space.knobs["activation"]["values"]]
        for config in configs:
            keras.backend.clear_session()
            keras.utils.set_random_seed(config.seed)
            model = build_lenet(config)
            fit_model(model, config, x_tr, y_tr, validation_data=(x_val, y_val))
        bare = time.perf_counter() - t0
        echo(f"bare model.fit: {len(configs)} trials x {settings.epochs} epochs on {len(y_tr):,} "
             f"{ds.provenance.resolved} digits: {bare:.1f} s")

        # Creating a new MLflow store (its SQL schema) happens once per store, not per study.
        from .tracking import client

        uri = f"sqlite:///{tmp}/mlflow.db"
        t0 = time.perf_counter()
        client(uri).search_experiments()
        echo(f"new MLflow store, once per store (not counted): {time.perf_counter() - t0:.1f} s")

        t0 = time.perf_counter()
        run_search(space, settings, tracking_uri=uri, log_dir=tmp / "logs", command="bench", echo=lambda line: None)
        tracked = time.perf_counter() - t0
        echo(f"tracked search (keras-tuner, EarlyStopping, TensorBoard, MLflow, test eval, model upload): "
             f"{tracked:.1f} s")
        ratio = tracked / bare
        echo(f"tracking overhead: {ratio:.3f}x bare ({(ratio - 1) * 100:+.1f}%); target at most +5%")
        return {"bare_s": bare, "tracked_s": tracked, "ratio": ratio}


def run_bench(args) -> int:
    if args.only in (None, "tracking"):
        print("== tracking overhead: same trials, tracked search vs bare model.fit, one process")
        bench_tracking(args)
    if args.only in (None, "workers"):
        from .distributed import bench_workers

        print("== worker scaling: the same trials, 1 worker x 2 threads vs 2 workers x 1 thread")
        bench_workers(args)
    return 0
