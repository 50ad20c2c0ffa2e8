"""The report's CPU-bound pieces on every core: `fork_map(fn, n)` runs fn(0) ... fn(n - 1) in forked
processes, one per core, and returns the results in order.

A report spends most of its time in work that is the same for 23 trials as for 10,000: encoding the
PNG figures (matplotlib's layout, drawing and zlib, 0.1-0.4 s each, 20 figures for a search) and
fitting one fANOVA forest per bootstrap resample of the knob importance. Those pieces are independent,
so they run side by side. The children are forked, so they see the figures and trials the parent
already holds without pickling them; only `fn`'s results travel back (pickled: keep them small).

Sequential, in this process, where forking is not possible or not worth it: one core (as the
scheduler gives this process, `devices.cpu_cores`), fewer than two items, no `fork` start method
(Windows), inside one of fork_map's own children (no processes of processes), or inside a daemonic
process (a multiprocessing pool's worker may not have children). `LENET_REPORT_PROCESSES=1` asks for
sequential too (any N caps the processes at N).

The children run in a `concurrent.futures.ProcessPoolExecutor`: an exception in fn is raised here,
and a child that dies (killed, out of memory) raises BrokenProcessPool instead of hanging the report.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Callable

from .. import devices

PROCESSES_ENV = "LENET_REPORT_PROCESSES"

_TASK: Callable[[int], Any] | None = None  # fn of the running fork_map, inherited by the forked children
_IN_CHILD = False  # set in fork_map's children


def _mark_child() -> None:
    global _IN_CHILD
    _IN_CHILD = True


def _run(i: int) -> Any:
    return _TASK(i)


def processes(n_items: int) -> int:
    """How many processes `fork_map` uses for `n_items` items (1: this process alone)."""
    limit = devices.cpu_cores()  # looked up at each call (a test may set the cores)
    cap = os.environ.get(PROCESSES_ENV, "").strip()
    if cap.isdigit() and int(cap) >= 1:
        limit = min(limit, int(cap))
    if (_IN_CHILD or "fork" not in multiprocessing.get_all_start_methods()
            or multiprocessing.current_process().daemon):
        limit = 1
    return max(1, min(limit, n_items))


def fork_map(fn: Callable[[int], Any], n_items: int) -> list[Any]:
    """[fn(0), ..., fn(n_items - 1)], computed in forked processes when `processes` says so."""
    global _TASK
    n_proc = processes(n_items)
    if n_proc == 1:
        return [fn(i) for i in range(n_items)]
    _TASK = fn
    # A process that trained (a test run, a study that reports) holds TensorFlow objects whose finalisers call
    # into TensorFlow's runtime, which a forked child must not: a child that collected one of them died of a
    # segmentation fault. Collected here, then frozen, the parent's objects are never collected in a child.
    gc.collect()
    already_frozen = gc.get_freeze_count() > 0
    gc.freeze()
    try:
        with ProcessPoolExecutor(n_proc, mp_context=multiprocessing.get_context("fork"),
                                 initializer=_mark_child) as pool:
            return list(pool.map(_run, range(n_items)))
    finally:
        _TASK = None
        if not already_frozen:
            gc.unfreeze()
