"""Benchmarks (`make bench`, `lenet-study bench`): figures printed and returned, never asserted in tests.

One module per benchmark, each with its target in its docstring:
- `tracking`: what keras-tuner + MLflow + TensorBoard add to a study (target: at most +5%);
- `workers`: trials per hour with one worker per core (target: at least 1.6x);
- `throughput`: images/s of a trial's fit against a bare Keras fit (target: 1.5x at batch 32, 1.15x at 128);
- `searches` (with `peer`, `compare`, `quality_figure`): the study's search against Optuna's TPE and random search,
  same budget, over seeds (target: P(ours > optuna) at least 0.5, our median at least Optuna's);
- `time_to_accuracy`: seconds to 0.9876 test accuracy, the study's best against subclass-relu (target: 0.20x);
- `report`: the report of a study grown to 1,000 and 10,000 trials by copying real runs (targets: 1,000 at
  most 1.3x the 23-trial report, 10,000 at most 10 s);
- `oracle`: each keras-tuner oracle served by the chief to simulated workers at 100 and 1,000 finished
  trials: trials/s, latency per request, workers it keeps busy (no target: where it becomes the bottleneck).

`lenet-study bench` runs tracking and workers (minutes); `--only NAME` runs one, the last five only so.
"""

from __future__ import annotations

from argparse import Namespace

from ..budget import DURATION_EXAMPLES, parse_duration
from .common import BenchError
from .oracle import bench_oracle
from .report import bench_report, parse_sizes
from .searches import bench_search
from .throughput import bench_throughput
from .time_to_accuracy import bench_time_to_accuracy
from .tracking import bench_tracking
from .workers import bench_workers

__all__ = ["BenchError", "bench_oracle", "bench_report", "bench_search", "bench_throughput", "bench_time_to_accuracy", "bench_tracking",
           "bench_workers", "run_bench"]

# The search benchmark's default setting: 10 seeds x 3 searches of 100 s on mnist-5k (3,600 training digits),
# trials of 2 epochs: about 50 minutes plus start-up on a 2-core CPU (docs/benchmarks.md).
SEARCH_BUDGET_S = 100.0
# name -> (its header line, the benchmark, whether it runs without --only, defaults for the flags it reads)
# Tracking and workers define their own trials: 3 epochs on mnist unless told; the others read their
# epochs and dataset from their space, study or run.
BENCHMARKS = {
    "tracking": ("tracking overhead: the same trials as a tracked search and as a bare script, in one process",
                 bench_tracking, True, dict(epochs=3, dataset="mnist")),
    "workers": ("worker scaling: the same trials, 1 worker x 2 threads vs 2 workers x 1 thread", bench_workers,
                True, dict(epochs=3, dataset="mnist")),
    "throughput": ("throughput: images/s of a trial's fit against a bare Keras fit, in one process",
                   bench_throughput, False, dict(epochs=1, dataset="mnist")),
    "search": ("search quality: lenet-study against Optuna (TPE, MedianPruner) and random search, same space, same "
               "wall-clock budget, over seeds", bench_search, False, dict(seeds=10, budget=SEARCH_BUDGET_S,
                                                                          dataset="mnist-5k", epochs=2)),
    "time-to-accuracy": ("time to accuracy: the study's best configuration against the subclass-relu recipe",
                         bench_time_to_accuracy, False, {}),
    "report": ("report speed: a study grown to 1,000 and 10,000 trials by copying its real runs, against ~23 trials",
               bench_report, False, {}),
    "oracle": ("oracle cost: each keras-tuner oracle served by the chief over gRPC to simulated workers, at 100 and "
               "1,000 finished trials", bench_oracle, False, {}),
}
# Every flag of `lenet-study bench`, for callers that build the arguments themselves (tests, scripts).
DEFAULTS = dict(only=None, data_dir=None, dataset=None, trials=3, epochs=None, train_samples=None, rounds=3,
                space=None, budget=None, max_trials=None, study=None, run=None, threshold=None, max_epochs=None,
                sizes=None, seeds=None, out=None)


def check_args(args) -> None:
    """Every value a benchmark cannot use, refused in one line before anything loads."""
    for flag, value, low in (("--rounds", args.rounds, 1), ("--epochs", args.epochs, 1),
                             ("--train-samples", args.train_samples, 1), ("--max-trials", args.max_trials, 1),
                             ("--max-epochs", args.max_epochs, 1)):
        if value is not None and value < low:
            raise BenchError(f"bench: {flag} {value}: give at least {low}")
    if args.seeds is not None and (isinstance(args.seeds, bool) or not isinstance(args.seeds, int) or args.seeds < 2):
        raise BenchError(f"bench: --seeds {args.seeds}: give at least 2 (the statistics pair searches over seeds)")
    if args.budget is not None and not isinstance(args.budget, float):
        try:
            args.budget = parse_duration(args.budget)
        except ValueError:
            raise BenchError(f"bench: --budget {args.budget}: give a duration {DURATION_EXAMPLES}") from None
    if isinstance(args.sizes, str):
        try:
            args.sizes = parse_sizes(args.sizes)
        except ValueError as exc:
            raise BenchError(f"bench: {exc}") from None
    if args.threshold is not None and not 0 < args.threshold <= 1:
        raise BenchError(f"bench: --threshold {args.threshold:g}: give a test accuracy in (0, 1]")


def run_bench(args) -> int:
    args = Namespace(**{**DEFAULTS, **vars(args)})
    check_args(args)
    for name, (header, bench, by_default, defaults) in BENCHMARKS.items():
        if args.only == name or (args.only is None and by_default):
            print(f"== {header}")
            bench(Namespace(**{**vars(args), **{k: v for k, v in defaults.items() if getattr(args, k) is None}}))
    return 0
