"""Worker scaling (`make bench ARGS="--only workers"`): trials per hour with one worker per core.

The same trials (identical but for the weight seed, a fixed cost each) run with 1 worker using every core
and with one worker per core using one TensorFlow thread each (`study.parallel`); trials per hour of both,
from the trial runs' start and end times in MLflow, and their ratio.
Target: at least 1.6x.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from .. import schema, tracking
from ..devices import cpu_cores
from ..parallel.chief import launch
from ..search import StudyRequest
from ..space import load_space

BENCH_WORKERS_SPACE = """\
# Worker-scaling benchmark: identical trials (only the weight seed differs), fixed cost each.
study:
  dataset: {dataset}
  tuner: random
  max_trials: {trials}
  epochs: {epochs}
  patience: 0
  seed: 1
  val_fraction: 0.1
  test_eval: best
  train_samples: {train_samples}
space:
  seed: {{int: [1, 100000]}}
  activation: {{fixed: relu}}
  pooling: {{fixed: max}}
  batch_size: {{fixed: 64}}
"""


def _trial_span(uri: str, study: str) -> tuple[float, int]:
    """Seconds from the first trial's start to the last trial's end, and the trials finished, from MLflow."""
    c = tracking.client(uri)
    runs = tracking.trial_runs(c, c.get_experiment_by_name(study).experiment_id, max_results=1000)
    done = [r for r in runs if r.info.status == schema.RUN_FINISHED]
    if not done:
        return float("nan"), 0
    return (max(r.info.end_time for r in done) - min(r.info.start_time for r in done)) / 1000.0, len(done)


def bench_workers(args, echo=print) -> dict[str, float]:
    """Trials per hour: 1 worker with every core vs one worker per core with one thread each."""
    cores = cpu_cores()
    trials = max(4, args.trials + (-args.trials) % 2) if cores >= 2 else max(2, args.trials)
    train_samples = args.train_samples or 20000
    data_dir = args.data_dir or os.environ.get("LENET_DATA_DIR")
    sides = [(1, cores), (max(2, cores), 1)]
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="lenet-bench-workers-") as tmp_name:
        tmp = Path(tmp_name)
        path = tmp / "bench-workers.yaml"
        path.write_text(BENCH_WORKERS_SPACE.format(dataset=args.dataset, trials=trials, epochs=args.epochs,
                                                   train_samples=train_samples))
        space = load_space(path)
        uri = f"sqlite:///{tmp}/mlflow.db"
        for n, threads in sides:
            name = f"bench-{n}x{threads}"
            t0 = time.perf_counter()
            lines: list[str] = []
            launch(StudyRequest(space, space.settings, study=name, data_dir=data_dir, log_dir=tmp / "logs",
                                tracking_uri=uri, command="bench --workers", workers=n, threads=threads),
                   echo=lines.append)
            total = time.perf_counter() - t0
            span, finished = _trial_span(uri, name)
            data_line = next((line for line in lines if line.startswith("study ")), "")
            per_hour = finished / span * 3600 if span == span and span > 0 else float("nan")
            figures[f"{n}x{threads}_span_s"] = span
            figures[f"{n}x{threads}_total_s"] = total
            figures[f"{n}x{threads}_trials_per_hour"] = per_hour
            echo(f"{n} worker(s) x {threads} thread(s): {finished} trials x {args.epochs} epochs: trials "
                 f"{span:.1f} s (first start to last end) -> {per_hour:.0f} trials/hour; whole command "
                 f"{total:.1f} s with start-up and test evaluation  [{data_line.split(': ', 1)[-1]}]")
    one, many = sides
    ratio = figures[f"{many[0]}x{many[1]}_trials_per_hour"] / figures[f"{one[0]}x{one[1]}_trials_per_hour"]
    figures["ratio"] = ratio
    echo(f"worker scaling: {ratio:.2f}x trials/hour with {many[0]} workers x {many[1]} thread vs "
         f"1 worker x {one[1]} threads; target at least 1.6x")
    return figures
