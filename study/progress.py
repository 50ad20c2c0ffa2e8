"""The progress line: one line per finished trial, with the best so far and the time left.

Fed by whoever sees trials end (the tuner in one process, the chief with workers); it knows no keras-tuner,
TensorFlow or MLflow. With a time budget it hands each trial's duration to the budget (study/budget.py).
"""

from __future__ import annotations

import math
import time

from . import schema
from .budget import TimeBudget, clock_text, format_duration


class Progress:
    """One line per finished trial: n of N, knobs, val accuracy, epochs, time, best, elapsed/remaining.

    The time left is counted in epochs: the epochs the plan still holds (`trial_epochs`, one entry per
    trial in the order the tuner runs them, plus `final_epochs`) times the seconds per epoch this
    process has measured so far, trial set-up included. Trials that stop early make it an upper bound.
    With a time budget (study/budget.py) the time left is at most the budget's: the study ends by then."""

    def __init__(self, total: int | None, done_before: int = 0, echo=print, budget: TimeBudget | None = None):
        self.total = total
        self.budget = budget  # with a time budget: fed each trial's duration, and it bounds the time left
        self.clock = budget.clock if budget is not None else time.monotonic
        self.done = done_before
        self.started = self.clock()
        self.finished_here = 0
        self.epochs_here = 0
        self.trial_epochs: list[int] = []
        self.final_epochs = 0
        self.best: tuple[float, str] | None = None
        self.echo = echo

    def epochs_left(self) -> int:
        return sum(self.trial_epochs[self.done:self.total]) + self.final_epochs

    def trial_done(self, trial_id: str, label: str, status: str, val_acc: float, epochs: int,
                   seconds: float, note: str = "", fit_per_epoch: float | None = None, pruned: bool = False) -> None:
        self.done += 1
        self.finished_here += 1
        if status == schema.COMPLETED and math.isfinite(val_acc) and (self.best is None or val_acc > self.best[0]):
            self.best = (val_acc, trial_id)
        elapsed = self.clock() - self.started
        n_of = f"{self.done}/{self.total}" if self.total else f"{self.done}"
        result = f"val_acc {val_acc:.4f}" if status == schema.COMPLETED else f"FAILED ({note})"
        if pruned:
            result += " (pruned)"
        best = f"best {self.best[0]:.4f} (trial {self.best[1]})" if self.best else "best -"
        self.epochs_here += max(0, epochs)
        if self.budget is not None:
            self.budget.record(trial_id, max(0, epochs), val_acc if status == schema.COMPLETED else None, seconds,
                               fit_per_epoch)
        remaining = ""
        left = self.epochs_left()
        estimate = elapsed / self.epochs_here * left if left and self.epochs_here else None
        if estimate is not None:
            remaining = f", ~{clock_text(estimate)} left ({left} epochs)"
        if self.budget is not None and (estimate is None or self.budget.left() < estimate):
            # The budget ends the study first: trials stop starting in time for the final run to end by then.
            remaining = f", ~{clock_text(self.budget.left())} left (time budget {format_duration(self.budget.seconds)})"
        self.echo(
            f"[{n_of}] trial {trial_id} {label} | {result} | {epochs} ep | {seconds:.1f} s | "
            f"{best} | elapsed {clock_text(elapsed)}{remaining}"
        )
