"""Benchmarks (`make bench`, `lenet-study bench`): figures printed and returned, never asserted in tests.

One module per benchmark, each with its target in its docstring:
- `tracking`: what keras-tuner + MLflow + TensorBoard add to a study (target: at most +5%);
- `workers`: trials per hour with one worker per core (target: at least 1.6x).

`lenet-study bench` runs tracking and workers; `--only NAME` runs one.
"""

from __future__ import annotations

from .common import BenchError
from .tracking import bench_tracking
from .workers import bench_workers

__all__ = ["BenchError", "bench_tracking", "bench_workers", "run_bench"]


def run_bench(args) -> int:
    if getattr(args, "rounds", 1) < 1:
        raise BenchError(f"bench: --rounds {args.rounds}: give at least 1")
    if args.only in (None, "tracking"):
        print("== tracking overhead: the same trials as a tracked search and as a bare script, in one process")
        bench_tracking(args)
    if args.only in (None, "workers"):
        print("== worker scaling: the same trials, 1 worker x 2 threads vs 2 workers x 1 thread")
        bench_workers(args)
    return 0
