"""What a trained model costs, measured where it trained: inference latency and throughput, training
seconds per epoch, and the host that measured them.

Training's side of "cost beside accuracy": nothing here knows MLflow or keras-tuner. The
tuner and the final run call `inference_cost` on the model they just fitted and `seconds_per_epoch` on
the fit's History objects (`tuner.fit_model` times each fit), and log the figures under schema's names.

Inference is timed with Keras's `predict_on_batch`: the model's compiled predict function (a
tf.function under the TensorFlow backend), one call per batch, the output fetched to NumPy. That is
what serving a batch costs, without `model.predict`'s per-call set-up (its data adapter and callbacks,
about 100 ms per call here, which would swamp a LeNet-5's 1 ms). Each batch size is warmed up first
(the first calls trace and compile), then timed in REPEATS rounds; the figure is the median round.
The whole measurement takes well under a second for a LeNet-5 on a 2-core CPU.
"""

from __future__ import annotations

import functools
import logging
import platform
import socket
import statistics
import time
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np

from . import schema
from .devices import cpu_cores
from .lazy import lazy

keras = lazy("keras")  # only for the epoch clock of a timed fit

log = logging.getLogger("study.cost")

LATENCY_BATCH, THROUGHPUT_BATCH = 1, 256
REPEATS = 5  # timed rounds per batch size; the median is reported
CALLS_PER_ROUND = {LATENCY_BATCH: 20, THROUGHPUT_BATCH: 2}  # calls in one timed round
WARMUP_CALLS = 2  # untimed calls per batch size first (the first one traces the predict function)


@dataclass(frozen=True)
class InferenceCost:
    """Median over REPEATS rounds: milliseconds per image one at a time, images per second in batches."""

    ms_per_image: float  # at batch LATENCY_BATCH
    images_per_s: float  # at batch THROUGHPUT_BATCH
    seconds: float  # what measuring took, warm-up included

    def metrics(self) -> dict[str, float]:
        return {schema.INFERENCE_MS: self.ms_per_image, schema.INFERENCE_IPS: self.images_per_s}


def _median_call_seconds(call, x, calls: int, repeats: int) -> float:
    rounds = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(calls):
            call(x)
        rounds.append((time.perf_counter() - started) / calls)
    return statistics.median(rounds)


def measure_inference(model, *, repeats: int = REPEATS) -> InferenceCost:
    """Time `model.predict_on_batch` at batch 1 and batch 256 on images of the model's input shape
    (random pixels in the raw 0-255 range the model takes; a LeNet-5's cost does not depend on them)."""
    started = time.perf_counter()
    shape = tuple(model.input_shape[1:])
    images = np.random.default_rng(0).uniform(0, 255, (THROUGHPUT_BATCH, *shape)).astype("float32")
    seconds = {}
    for batch in (LATENCY_BATCH, THROUGHPUT_BATCH):
        x = images[:batch]
        for _ in range(WARMUP_CALLS):
            model.predict_on_batch(x)
        seconds[batch] = _median_call_seconds(model.predict_on_batch, x, CALLS_PER_ROUND[batch], repeats)
    return InferenceCost(ms_per_image=seconds[LATENCY_BATCH] / LATENCY_BATCH * 1000.0,
                         images_per_s=THROUGHPUT_BATCH / seconds[THROUGHPUT_BATCH],
                         seconds=time.perf_counter() - started)


def inference_metrics(model, what: str) -> dict[str, float]:
    """`measure_inference(model).metrics()`, or {} and one log line when measuring fails: a trained trial
    is never lost to its latency measurement (`what` names it in the line, e.g. "trial 03")."""
    try:
        return measure_inference(model).metrics()
    except Exception as exc:  # noqa: BLE001 - any failure here leaves the trial as it was
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        log.warning("%s: inference latency not measured (%s: %s)", what, type(exc).__name__, reason)
        return {}


def trained_cost(histories: list, what: str, model=None) -> dict[str, float]:
    """The cost metrics of a trained trial: EPOCH_SECONDS of its fits, and the inference metrics of
    `model` (default: the model of the last fit, which its History holds). Never raises."""
    out = {}
    per_epoch = seconds_per_epoch(histories)
    if per_epoch is not None:
        out[schema.EPOCH_SECONDS] = per_epoch
    if model is None and histories:
        model = getattr(histories[-1], "model", None)
    if model is None:
        log.warning("%s: inference latency not measured (no trained model at hand)", what)
        return out
    return {**out, **inference_metrics(model, what)}


@functools.cache
def _epoch_clock_class():
    """A Keras callback that keeps the perf_counter reading at the end of each epoch (Keras imported on first
    use: this module does not need it otherwise)."""
    class EpochClock(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.ends: list[float] = []

        def on_epoch_end(self, epoch, logs=None):
            self.ends.append(time.perf_counter())

    return EpochClock


def timed_fit(model, *args, **kwargs):
    """model.fit(*args, **kwargs), with the seconds it took kept on the History it returns (`fit_seconds`),
    and each epoch's end, in seconds from the fit's start (`epoch_ends`)."""
    clock = _epoch_clock_class()()
    kwargs["callbacks"] = [*(kwargs.get("callbacks") or []), clock]
    started = time.perf_counter()
    history = model.fit(*args, **kwargs)
    if history is not None:
        history.fit_seconds = time.perf_counter() - started
        history.epoch_ends = [end - started for end in clock.ends]
    return history


def seconds_per_epoch(histories: Iterable[Any]) -> float | None:
    """Training seconds per epoch over a trial's fits (executions): their `fit_seconds` over the epochs
    they ran, validation and callbacks included, as is the first epoch's tracing. None when a fit was not
    timed or no epoch ran."""
    total, epochs = 0.0, 0
    for history in histories:
        fit_seconds = getattr(history, "fit_seconds", None)
        if fit_seconds is None:
            return None
        total += fit_seconds
        epochs += len(getattr(history, "epoch", None) or [])
    return total / epochs if epochs else None


def steady_seconds_per_epoch(histories: Iterable[Any]) -> float | None:
    """Seconds per epoch once a fit runs: the median epoch after each fit's first, which also traces and
    compiles the model (on a small subsample or in 2-epoch trials that first epoch is most of a fit). What a
    longer fit of the same configuration pays per epoch; None when no fit ran two epochs."""
    durations = []
    for history in histories:
        ends = getattr(history, "epoch_ends", None) or []
        durations += [b - a for a, b in zip(ends, ends[1:])]
    return statistics.median(durations) if durations else None


@functools.lru_cache(maxsize=1)
def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux, else platform.processor()) and the cores this
    process sees, e.g. "Intel(R) Xeon(R) Processor, 2 cores"."""
    name = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "Hardware", "cpu model") and value.strip():
                    name = value.strip()
                    break
    except OSError:
        pass
    name = name or platform.processor() or platform.machine() or "unknown CPU"
    return f"{name}, {cpu_cores()} cores"


def host_tags() -> dict[str, str]:
    """The machine a run trains and measures on: schema.HOST (host name), schema.HOST_CPU (cpu_model)."""
    return {schema.HOST: socket.gethostname() or "unknown", schema.HOST_CPU: cpu_model()}
