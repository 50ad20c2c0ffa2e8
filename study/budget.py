"""A study's time budget: durations as a user writes them, and the rule that stops starting trials in time.

`study.time_budget` (or `--time-budget`) bounds one invocation of a study, from its start to its end: the
search starts a trial only while the time left holds that trial and the final run after it, both judged
from the seconds per epoch measured so far on this machine; then the final run trains and the study ends.
A slow machine runs fewer trials; nothing else changes.

`TimeBudget` knows no TensorFlow, keras-tuner or MLflow: the search feeds it what it measures (a probe
before the first trial, each trial's duration and epochs) and asks it whether the next trial fits. Every
reading comes from its `clock`, so tests drive it with a fake one.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Callable

from .errors import StudyError

# After the final run: the test set read once, the model logged to MLflow and registered (a few seconds on
# a 2-core CPU), kept free at the budget's end.
FINISH_RESERVE_S = 10.0
DURATION_EXAMPLES = "such as 45s, 15m, 1h or 1h30m (a number alone is seconds), above 0"
_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0}
_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?")


class BudgetError(StudyError):
    """A time budget the study cannot keep (too small for one trial and the final run); one line."""


def parse_duration(value) -> float:
    """Seconds in a duration as a space file or a flag gives it: "45s", "15m", "1h", "1h30m", "2.5m", or a
    number of seconds (90, "90"). ValueError for anything else, zero, a negative or an infinite value."""
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        try:
            seconds = float(text)
        except ValueError:
            match = _DURATION.fullmatch(text)
            if not text or match is None:
                raise ValueError(value) from None
            seconds = sum(float(part) * unit for part, unit in zip(match.groups(), _UNITS.values()) if part)
    else:
        raise ValueError(value)
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(value)
    return seconds


def format_duration(seconds: float) -> str:
    """Seconds as a duration parse_duration reads back, rounded up to the second: "14m", "3m10s", "1h0m5s"."""
    seconds = math.ceil(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m" + (f"{secs}s" if secs else "")
    if minutes:
        return f"{minutes}m" + (f"{secs}s" if secs else "")
    return f"{secs}s"


def clock_text(seconds: float) -> str:
    """M:SS (H:MM:SS past an hour), as the progress line shows times."""
    seconds = max(0, int(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
    return f"{seconds // 60}:{seconds % 60:02d}"


class TimeBudget:
    """`seconds` for one invocation of a study, counted on `clock` from `started`.

    Per trial the search pays a fixed set-up (building and tracing a model: `setup_s`, from the probe)
    and then a cost per epoch. Before any trial ends, the probe's seconds per epoch stand in; then the
    trials' own durations (from `begin` to `record`, on the clock: the oracle's proposal, logging and
    cost measurement included) less their set-up, over their epochs. The final run pays none of the
    search's own costs: it is reserved at the seconds per epoch the trials' fits took once running
    (`fit_per_epoch`, cost.steady_seconds_per_epoch: an epoch past the first, which traces the model and is
    paid once, in the set-up), the slower of the best trial's and their mean (it trains the best
    configuration, which may still change), else at the trials' rate, for `final_epochs`, plus its set-up
    and FINISH_RESERVE_S.
    Safe to call from the oracle's serving thread.
    """

    def __init__(self, seconds: float, final_epochs: int, *, clock: Callable[[], float] = time.monotonic,
                 started: float | None = None, where: str = "study.time_budget"):
        self.seconds = float(seconds)
        self.final_epochs = final_epochs
        self.clock = clock
        self.started = clock() if started is None else started
        self.where = where  # the file and key, or the flag, that set it (for messages)
        self.setup_s = 0.0
        self.probe_per_epoch: float | None = None
        self.trials: list[tuple[float, int, float | None]] = []  # (seconds, epochs, score) measured here
        self.fit_rates: list[tuple[float, float | None]] = []  # (fit seconds per epoch, score) of those trials
        self.stopped: str | None = None  # why the search stopped starting trials, once it did
        self._begun: dict[str, float] = {}
        self._lock = threading.Lock()

    # ----------------------------------------------------------------- what is measured

    def elapsed(self) -> float:
        return self.clock() - self.started

    def left(self) -> float:
        return self.seconds - self.elapsed()

    def calibrate(self, setup_s: float, per_epoch: float) -> None:
        """The probe's figures: a trial's fixed set-up and its seconds per epoch, before any trial ran."""
        self.setup_s = max(0.0, setup_s)
        self.probe_per_epoch = max(per_epoch, 1e-6)

    def begin(self, trial_id: str) -> None:
        with self._lock:
            self._begun[trial_id] = self.clock()

    def record(self, trial_id: str, epochs: int, score: float | None = None, seconds: float | None = None,
               fit_per_epoch: float | None = None) -> None:
        """A trial ended: its duration since `begin` (else `seconds`, measured by whoever ran it), its epochs,
        and the seconds per epoch its fit took past its first epoch, when measured."""
        with self._lock:
            began = self._begun.pop(trial_id, None)
            duration = self.clock() - began if began is not None else seconds
            if duration is not None and epochs > 0:
                self.trials.append((max(0.0, duration), epochs, score))
            if fit_per_epoch is not None and math.isfinite(fit_per_epoch) and fit_per_epoch > 0:
                self.fit_rates.append((fit_per_epoch, score))

    def seconds_per_epoch(self) -> float | None:
        """Seconds per epoch past a trial's set-up: the trials' so far (pooled), else the probe's."""
        with self._lock:
            trials = list(self.trials)
        if not trials:
            return self.probe_per_epoch
        seconds = sum(max(0.0, s - self.setup_s) for s, _, _ in trials)
        return max(seconds / sum(e for _, e, _ in trials), 1e-6)

    def trial_seconds(self, epochs: int) -> float:
        return self.setup_s + epochs * (self.seconds_per_epoch() or 0.0)

    def final_seconds(self) -> float:
        """What the end of the study needs: the final run (if any) and FINISH_RESERVE_S."""
        if not self.final_epochs:
            return FINISH_RESERVE_S
        rate = self.seconds_per_epoch() or 0.0
        with self._lock:
            scored = [t for t in self.trials if t[2] is not None and math.isfinite(t[2])]
            fits = list(self.fit_rates)
        if fits:
            rate = sum(r for r, _ in fits) / len(fits)
            best = [f for f in fits if f[1] is not None and math.isfinite(f[1])]
            if best:
                rate = max(rate, max(best, key=lambda f: f[1])[0])
        elif scored:
            seconds, epochs, _ = max(scored, key=lambda t: t[2])
            rate = max(rate, max(0.0, seconds - self.setup_s) / epochs)
        return self.setup_s + self.final_epochs * rate + FINISH_RESERVE_S

    # ----------------------------------------------------------------- the rule

    def can_start(self, epochs: int) -> bool:
        """Whether a trial of `epochs` epochs started now, and the final run after it, end within the budget.
        The first time it does not, `stopped` says why (the progress output and the parent run show it)."""
        if self.seconds_per_epoch() is None:  # nothing measured and no probe: nothing to judge by
            return True
        trial, final = self.trial_seconds(epochs), self.final_seconds()
        elapsed = self.elapsed()
        if elapsed + trial + final <= self.seconds:
            return True
        if self.stopped is None:
            with self._lock:
                fitted = len(self.trials)
            self.stopped = (f"time budget: {fitted} trial(s) fitted in {clock_text(elapsed)} of "
                            f"{clock_text(self.seconds)}; no more started: the next (~{clock_text(trial)}) and the "
                            f"final run (~{clock_text(final)}) would not fit in the {clock_text(self.left())} left")
        return False

    def check_first(self, epochs: int) -> None:
        """Refuse (BudgetError, one line) a budget that cannot hold even one trial and the final run."""
        trial, final = self.trial_seconds(epochs), self.final_seconds()
        elapsed = self.elapsed()
        if elapsed + trial + final <= self.seconds:
            return
        per_epoch = self.seconds_per_epoch() or 0.0
        final_text = f"the final run of {self.final_epochs} epochs" if self.final_epochs else "the study's end"
        raise BudgetError(
            f"{self.where} {format_duration(self.seconds)} is too small: one trial of {epochs} epoch(s) and "
            f"{final_text} need about {format_duration(trial + final)} here ({per_epoch:.2f} s per epoch measured "
            f"on this machine, {elapsed:.0f} s already spent starting); give at least "
            f"{format_duration(elapsed + trial + final)}")

    def estimate_trials(self, epochs: int) -> int:
        """How many trials of `epochs` epochs the time left holds before the final run, at today's rate."""
        per_trial = self.trial_seconds(epochs)
        room = self.left() - self.final_seconds()
        return max(0, int(room // per_trial)) if per_trial > 0 else 0

    def end_line(self) -> str:
        return f"time budget {format_duration(self.seconds)}: the study ended after {clock_text(self.elapsed())}"
