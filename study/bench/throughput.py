"""Throughput (`make bench ARGS="--only throughput"`): images per second of a trial's fit against a bare Keras fit.

Sides, one process, the same 61,706-parameter LeNet-5 (relu, max pooling, C5 a convolution, Adam, no
augmentation) and the same training split:
- study: the model a trial trains (`build_trial_model`: STEPS_PER_EXECUTION batches per call into
  TensorFlow) fitted through `fit_model`, on NumPy arrays;
- bare: `build_lenet(config)` with Keras's default of one batch per call, `model.fit(x, y, batch_size,
  epochs)` with no callbacks;
- tf.data: the study's model fed from a cached, shuffled, prefetched `tf.data.Dataset` instead of arrays.
verbose=0 on every side: the progress bar is not what is compared. Each side's model is built and warmed up
by an untimed fit (which traces its training function), then every round times one `model.fit` of
`--epochs` epochs per side, the order alternating; the figure is the median over rounds. Also printed:
each round's ratio, images per CPU-second of the process (the work each side does: steadier than wall
time when other processes share the cores), FLOPs per training image (from the layers) and the fraction
of the machine's FLOP limit reached, and the optimizer steps and samples each side counted per epoch (the
last, partial batch included).
Target: the study's fit at least 1.5x the bare fit's images/s at batch 32, 1.15x at batch 128.
"""

from __future__ import annotations

import math
import os
import re
import statistics
import subprocess
import time

from ..data import prepare_data
from ..lazy import lazy
from ..model import LeNetConfig, build_lenet, count_params
from ..spacefile import StudySettings
from .common import fresh_trial_model, round_order

keras = lazy("keras")
tensorflow = lazy("tensorflow")
tuner_module = lazy("study.tuner")  # the trial's fit; importing keras-tuner starts TensorFlow

BATCH_SIZES = (32, 128)
TARGETS = {32: 1.5, 128: 1.15}  # study / bare images per second
SIDES = ("study", "bare", "tf.data")


def _config():
    # tf2-classic's architecture with relu and max pooling: 61,706 parameters, Adam, constant learning rate.
    return LeNetConfig(activation="relu", pooling="max", patience=0)


# --------------------------------------------------------------------------- FLOPs


def flops_per_image(model) -> tuple[int, dict[str, int]]:
    """Training FLOPs per image (multiply-adds of the convolutions and dense layers x 2 FLOPs x 3 for forward
    and backward), and the multiply-adds of each such layer. Pooling, activations and the optimizer are left out."""
    macs: dict[str, int] = {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            _, h, w, c_out = layer.output.shape
            kh, kw = layer.kernel_size
            macs[layer.name] = h * w * c_out * kh * kw * layer.input.shape[-1]
        elif isinstance(layer, keras.layers.Dense):
            macs[layer.name] = layer.input.shape[-1] * layer.units
    return sum(macs.values()) * 2 * 3, macs


def _cpu_mhz() -> tuple[float, str]:
    """The clock: lscpu's "CPU max MHz" when it gives one, else /proc/cpuinfo's first "cpu MHz"."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        found = re.search(r"^CPU max MHz:\s*([\d.]+)", out, re.M)
        if found and float(found.group(1)) > 0:
            return float(found.group(1)), "lscpu's CPU max MHz"
    except (OSError, subprocess.SubprocessError):
        pass
    with open("/proc/cpuinfo") as f:
        found = re.search(r"^cpu MHz\s*:\s*([\d.]+)", f.read(), re.M)
    return (float(found.group(1)), "/proc/cpuinfo cpu MHz") if found else (float("nan"), "no clock found")


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            found = re.search(r"^flags\s*:(.*)$", f.read(), re.M)
    except OSError:
        return set()
    return set(found.group(1).split()) if found else set()


def flop_limit() -> tuple[float, int, str]:
    """The machine's fp32 FLOP/s limit, its cores, and one line saying how the limit was computed."""
    cores = len(os.sched_getaffinity(0))
    mhz, clock_from = _cpu_mhz()
    flags = _cpu_flags()
    if "avx512f" in flags:
        per_cycle, isa = 64, "avx512f: 2 FMA units x 16 fp32 lanes x 2"
    elif {"avx2", "fma"} <= flags:
        per_cycle, isa = 32, "avx2+fma: 2 FMA units x 8 fp32 lanes x 2"
    else:
        per_cycle, isa = 8, "no avx2+fma: 8 assumed"
    limit = cores * mhz * 1e6 * per_cycle
    return limit, cores, (f"FLOP limit: {cores} cores (os.sched_getaffinity, each CPU counted as a core) x {mhz:.0f} MHz "
                   f"({clock_from}) x {per_cycle} fp32 FLOP/cycle/core ({isa}; assumed: two FMA units per core, "
                   f"no turbo) = {limit / 1e9:.1f} GFLOP/s")


# --------------------------------------------------------------------------- sides


class _Side:
    """One side's model and fit; `fit()` returns (seconds, CPU seconds of the process, optimizer steps, samples
    in the epoch's accuracy)."""

    def __init__(self, name: str, config, input_shape, x, y):
        self.name, self.config, self.n = name, config, len(y)
        if name == "bare":
            self.model = build_lenet(config, input_shape)
            self.steps_per_execution = 1
            self._fit = lambda data: self.model.fit(*data, batch_size=config.batch_size, epochs=config.epochs,
                                                    verbose=0)
        else:
            self.model = fresh_trial_model(config, input_shape, len(y))
            self.steps_per_execution = tuner_module.STEPS_PER_EXECUTION
            self._fit = lambda data: tuner_module.fit_model(self.model, config, *data)
        self.data = (x, y)
        if name == "tf.data":
            self.data = (tensorflow.data.Dataset.from_tensor_slices((x, y)).cache().shuffle(len(y), seed=config.seed)
                         .batch(config.batch_size).prefetch(tensorflow.data.AUTOTUNE),)
            # fit_model would pass batch_size, which Keras ignores (with a warning) for a batched dataset;
            # with this config it adds no callback either, so the fit is the same.
            self._fit = lambda data: self.model.fit(*data, epochs=config.epochs, shuffle=False, verbose=0)

    def warm_up(self) -> None:
        """An untimed fit that traces the training function (a partial execution and a partial batch included);
        for tf.data also one pass that fills the cache."""
        batches = 2 * self.steps_per_execution + 1
        if self.name == "tf.data":
            for _ in self.data[0]:
                pass
            self.model.fit(self.data[0].take(batches), epochs=1, shuffle=False, verbose=0)
            return
        x, y = self.data
        n = min(self.n, self.config.batch_size * batches - self.config.batch_size // 2)
        self.model.fit(x[:n], y[:n], batch_size=self.config.batch_size, epochs=1, verbose=0)

    def fit(self) -> tuple[float, float, int, int]:
        before = int(self.model.optimizer.iterations.numpy())
        t0, cpu0 = time.perf_counter(), time.process_time()
        self._fit(self.data)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        counted = next(v for v in self.model.metrics_variables if v.path == "accuracy/count")
        return seconds, cpu, int(self.model.optimizer.iterations.numpy()) - before, int(counted.numpy())


def _check_steps(batch: int, n: int, epochs: int, steps: dict[str, int], counted: dict[str, int]) -> str:
    """Every side ran ceil(n / batch) optimizer steps per epoch and counted all n images in the epoch's
    accuracy; otherwise the images/s compared would not be the same work."""
    expected = math.ceil(n / batch) * epochs
    if set(steps.values()) != {expected} or set(counted.values()) != {n}:
        raise RuntimeError(f"batch {batch}: optimizer steps {steps} (expected {expected} each), "
                           f"samples in the epoch's accuracy {counted} (expected {n} each)")
    partial = n % batch
    return (f"batch {batch}: {expected // epochs:,} optimizer steps per epoch on every side (= ceil({n:,} / {batch})"
            + (f": the last, partial batch of {partial} images trains on every side" if partial else "")
            + f"); the last epoch's accuracy counted all {n:,} images on every side")


def bench_throughput(args, echo=print) -> dict[str, float]:
    """Images/s of the study's fit, the bare fit and the study's fit on tf.data, at batch 32 and 128."""
    settings = StudySettings(dataset=args.dataset, train_samples=args.train_samples)
    ds, (x, y), _ = prepare_data(settings, args.data_dir)
    epochs = args.epochs
    base = _config().replace(epochs=epochs)
    flops, macs = flops_per_image(fresh_trial_model(base, ds.input_shape, len(y)))
    limit, cores, limit_line = flop_limit()
    echo(f"LeNet-5 relu, max pooling, C5 conv, Adam: {count_params(base):,} parameters; {len(y):,} "
         f"{ds.provenance.resolved} training images; {epochs} epoch(s) per timed fit, {args.rounds} round(s), "
         f"sides alternating; study: steps_per_execution={tuner_module.STEPS_PER_EXECUTION}, bare: 1")
    echo(f"FLOPs per training image: {sum(macs.values()):,} multiply-adds ("
         + ", ".join(f"{name} {n:,}" for name, n in macs.items())
         + f") x 2 FLOPs x 3 (forward + backward) = {flops / 1e6:.2f} MFLOP")
    echo(limit_line)
    figures: dict[str, float] = {"flops_per_image": flops, "flop_limit": limit}
    for batch in BATCH_SIZES:
        config = base.replace(batch_size=batch)
        sides = {name: _Side(name, config, ds.input_shape, x, y) for name in SIDES}
        for side in sides.values():
            side.warm_up()
        rates: dict[str, list[float]] = {name: [] for name in SIDES}
        cpu_rates: dict[str, list[float]] = {name: [] for name in SIDES}  # images per CPU-second
        steps: dict[str, int] = {}
        counted: dict[str, int] = {}
        for r in range(args.rounds):
            for name in round_order(SIDES, r):
                seconds, cpu, steps[name], counted[name] = sides[name].fit()
                rates[name].append(len(y) * epochs / seconds)
                cpu_rates[name].append(len(y) * epochs / cpu)
            echo(f"batch {batch} round {r + 1}: " + ", ".join(f"{name} {rates[name][-1]:,.0f} images/s" for name in SIDES)
                 + f": study/bare {rates['study'][-1] / rates['bare'][-1]:.2f}x")
        echo(_check_steps(batch, len(y), epochs, steps, counted))
        med = {name: statistics.median(rates[name]) for name in SIDES}
        ratio, data_ratio = med["study"] / med["bare"], med["tf.data"] / med["study"]
        # Each round's sides ran minutes apart at most: the steadier figure on a machine whose speed drifts.
        round_ratio = statistics.median(s / b for s, b in zip(rates["study"], rates["bare"]))
        # Images per CPU-second of this process: the work each side does, whatever else takes the cores.
        cpu_ratio = statistics.median(cpu_rates["study"]) / statistics.median(cpu_rates["bare"])
        fraction = med["study"] * flops / limit
        target = TARGETS[batch]
        echo(f"batch {batch}: study {med['study']:,.0f} images/s, bare {med['bare']:,.0f}: {ratio:.2f}x "
             f"(median of the rounds' ratios {round_ratio:.2f}x; target at least {target}x: "
             f"{'met' if ratio >= target else 'NOT met'}); study on tf.data "
             f"{med['tf.data']:,.0f} images/s ({data_ratio:.2f}x the study on arrays); the study's fit runs "
             f"{med['study'] * flops / 1e9:.1f} GFLOP/s = {fraction:.1%} of the limit (bare {med['bare'] * flops / limit:.1%})")
        echo(f"batch {batch}: images per CPU-second of this process (steadier when other processes share the "
             f"cores): study {statistics.median(cpu_rates['study']):,.0f}, bare {statistics.median(cpu_rates['bare']):,.0f}, "
             f"tf.data {statistics.median(cpu_rates['tf.data']):,.0f}: study/bare {cpu_ratio:.2f}x, tf.data/study "
             f"{statistics.median(cpu_rates['tf.data']) / statistics.median(cpu_rates['study']):.2f}x; the study's "
             f"fit does {statistics.median(cpu_rates['study']) * flops / 1e9:.1f} GFLOP per CPU-second = "
             f"{statistics.median(cpu_rates['study']) * flops / (limit / cores):.1%} of one core's limit")
        figures.update({f"study_{batch}": med["study"], f"bare_{batch}": med["bare"], f"tfdata_{batch}": med["tf.data"],
                        f"ratio_{batch}": ratio, f"round_ratio_{batch}": round_ratio, f"tfdata_ratio_{batch}": data_ratio,
                        f"fraction_{batch}": fraction, f"cpu_ratio_{batch}": cpu_ratio,
                        f"steps_{batch}": steps["study"] / epochs})
        del sides
    return figures
