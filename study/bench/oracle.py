"""What the oracle costs (`make bench ARGS="--only oracle"`): each keras-tuner oracle the study uses, served by
the real chief over gRPC to simulated workers, at 100 and 1,000 finished trials.

For each tuner (random, bayesian, tpe, hyperband, grid) and each size (`--sizes`, default 100,1000) the oracle is
built as a study builds it (tuner.make_tuner over search_spaces/lenet.yaml, or `--space`: the start_with
configurations, the Bayesian third of random points, the grid's resumable order; max_trials the size plus
what is measured), brought to that many finished trials, then served by study.parallel.chief.ChiefServer
(keras-tuner's servicer, one request at a time, oracle.json saved after every ended trial) on loopback.
Bringing it there: random, hyperband and grid answer that many real proposals in this process (create,
update, end, as over gRPC but without the network); the Bayesian oracle, whose proposal fits a Gaussian
process over every finished trial (about half a second a trial at 300), and the TPE oracle, which gives
Optuna every finished trial for each proposal, are given pre-made finished trials instead (random points of the space with made-up scores, replayed into the oracle's state as a resumed study's
trials are): their next proposals then cost what they cost at that size. Hyperband runs its schedule again
and again (hyperband_iterations) so that it reaches the size.

Simulated workers request, report and end trials without training, as keras-tuner's tuner does for each
trial (CreateTrial, GetTrial, UpdateTrial with the objective, EndTrial; an IDLE answer, Hyperband waiting
for a round, is asked again 10 ms later). They run as threads of one separate process (so that they do not
share the chief's interpreter), or as threads of this one (`mode="threads"`, the tests). Two measurements:
By default the Bayesian oracle is measured at 100 and 300 finished trials (BAYESIAN_SIZES): one proposal at
1,000 took minutes here; `--sizes 100,1000` measures it there too.
- latency: one worker, requests one after another: the median milliseconds of each request (no queueing);
- throughput: WORKERS workers at once: finished trials per second from the first request to the last end;
  the chief serves one request at a time, so this is its capacity, and 30 s x that is the largest number of
  workers it could keep busy with 30-second trials (each needs one trial per 30 s).
Figures are printed (CPU named beside them) and returned; nothing is asserted. No target: it says past how
many workers an oracle becomes the bottleneck.
"""

from __future__ import annotations

import contextlib
import io
import math
import multiprocessing
import random
import statistics
import tempfile
import threading
import time
import warnings
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

from ..cost import cpu_model
from ..lazy import lazy
from ..parallel.chief import ChiefServer
from ..schema import OBJECTIVE
from ..search import load_space_with_overrides

kt_compat = lazy("study.kt_compat")
tuner_module = lazy("study.tuner")

TUNERS = ("random", "bayesian", "tpe", "hyperband", "grid")
SIZES = (100, 1000)
# The Bayesian oracle's proposal at 1,000 finished trials took 100-210 s here (2 cores, loaded): by default it is
# measured at 100 and 300; `--sizes` sets the sizes of every oracle, the Bayesian one's included.
BAYESIAN_SIZES = (100, 300)
# Brought to size by replaying pre-made finished trials, not by proposals (each proposal of theirs reads every
# finished trial: a thousand of them would take minutes).
REPLAYED = ("bayesian", "tpe")
WORKERS = 8  # simulated workers for the throughput
TRIAL_SECONDS = 30.0  # the trial length the "workers kept busy" column assumes
# Trials per measurement: (latency with one worker, throughput with WORKERS), per tuner.
WINDOWS = {"bayesian": (1, 3), "tpe": (3, 10)}
DEFAULT_WINDOW = (20, 100)
IDLE_WAIT_S = 0.01
DEFAULT_SPACE = Path(__file__).resolve().parents[2] / "search_spaces" / "lenet.yaml"
REQUESTS = ("create", "get", "update", "end")


@dataclass
class OracleRow:
    """One oracle at one size: how it got there, its latency per request and its capacity."""

    tuner: str
    finished: int
    filled: str  # "proposals" or "replayed"
    fill_s: float
    latency_ms: dict  # request -> median milliseconds, one worker
    create_p95_ms: float
    trials: int  # finished in the throughput measurement
    seconds: float
    trials_per_s: float
    idle: int  # IDLE answers during the throughput measurement
    workers_busy: float  # with TRIAL_SECONDS trials: TRIAL_SECONDS x trials_per_s

    def cells(self) -> list[str]:
        lat = self.latency_ms
        return [self.tuner, f"{self.finished:,}", self.filled, _figure(self.trials_per_s),
                f"{lat['create']:.1f} (p95 {self.create_p95_ms:.1f})",
                f"{lat['get']:.1f} / {lat['update']:.1f} / {lat['end']:.1f}", str(self.idle),
                _figure(self.workers_busy)]


def _figure(value: float) -> str:
    """1,941 / 97.8 / 0.86 / 0.029: three significant figures below 100, whole numbers above."""
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


HEADER = ["oracle", "finished", "brought there by", "trials/s", "create ms (median, p95)",
          "get / update / end ms", "idle answers", f"workers kept busy ({TRIAL_SECONDS:.0f} s trials)"]


# --------------------------------------------------------------------------- the oracle, at a size


def study_oracle(tuner: str, space_path: str, size: int, window: int, directory: Path):
    """The tuner's oracle as a study builds it, with room for `size` + `window` trials (and Hyperband's
    schedule repeated until then)."""
    space, settings = load_space_with_overrides(space_path, tuner=tuner, max_trials=size + window + 10, prune="none")
    made = tuner_module.make_tuner(
        tuner, hypermodel=tuner_module.LeNetHyperModel(settings), hyperparameters=space.hyperparameters(),
        settings=settings, tracker=None, progress=None, directory=str(directory), project_name=f"bench-{tuner}",
        overwrite=True, start=space.start_values())
    oracle = made.oracle
    oracle.verbose = 0  # keras-tuner's Display would print every trial
    if tuner == "hyperband":
        schedule = kt_compat.hyperband_schedule_size(oracle) or 1
        oracle.hyperband_iterations = (size + window) // schedule + 2
    return oracle


def fill_by_proposals(oracle, size: int, rng: random.Random) -> None:
    """`size` finished trials, each proposed by the oracle and ended in this process (no network)."""
    done = 0
    while done < size:
        trial = oracle.create_trial("fill")
        if trial.status != kt_compat.TrialStatus.RUNNING:
            raise RuntimeError(f"the oracle stopped proposing after {done} trials ({trial.status})")
        oracle.update_trial(trial.trial_id, {OBJECTIVE: made_up_score(trial.hyperparameters.values, rng)})
        trial.status = kt_compat.TrialStatus.COMPLETED
        oracle.end_trial(trial)
        done += 1


def made_up_score(values: dict, rng: random.Random) -> float:
    """A validation accuracy for a pre-made trial: a smooth, fixed function of its values (each choice its own
    offset, each number a wave over its log) squashed into 0.90-0.99, plus a little noise; a surface the
    Gaussian process can fit, as a study's are, rather than pure noise."""
    total = 0.0
    for name, value in values.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            total += math.sin(3 * math.log10(abs(value) + 1e-4) + zlib.crc32(name.encode()) % 7)
        else:
            total += (zlib.crc32(f"{name}={value}".encode()) % 1000) / 500 - 1
    return 0.9 + 0.09 / (1 + math.exp(-total / 2)) + rng.gauss(0, 0.002)


def fill_by_replay(oracle, size: int, rng: random.Random) -> None:
    """`size` pre-made finished trials (random points of the space, made_up_score) in the oracle's state."""
    for i in range(size):
        values = kt_compat.random_values(oracle)
        if values is None:
            break
        trial = kt_compat.new_trial(oracle.hyperparameters, f"{i:04d}", values, kt_compat.TrialStatus.COMPLETED,
                                    OBJECTIVE, made_up_score(values, rng))
        kt_compat.replay_trials(oracle, [trial])  # one by one: the next random point avoids the ones before
    oracle.save()


# --------------------------------------------------------------------------- simulated workers


def simulate_workers(address: str, workers: int, trials: int, seed: int = 0) -> dict:
    """`workers` threads that together finish `trials` trials on the chief at `address`, as keras-tuner's tuner
    asks for each (create, get, update with the objective, end), without training. Returns each request's
    latencies (seconds), the IDLE answers, the trials finished, and the seconds from the first request to
    the last end."""
    lock = threading.Lock()
    claimed = [0]
    latencies: dict[str, list[float]] = {name: [] for name in REQUESTS}
    ends: list[float] = []
    idle = [0]
    errors: list[str] = []
    rng = random.Random(seed)

    def timed(name, call, *args):
        started = time.perf_counter()
        out = call(*args)
        with lock:
            latencies[name].append(time.perf_counter() - started)
        return out

    def work(i: int) -> None:
        try:
            with kt_compat.oracle_stub(address) as stub:
                while True:
                    with lock:
                        if claimed[0] >= trials:
                            return
                        claimed[0] += 1
                    trial = timed("create", kt_compat.remote_create_trial, stub, f"sim{i}")
                    if trial.status == kt_compat.TrialStatus.IDLE:
                        with lock:
                            claimed[0] -= 1
                            idle[0] += 1
                        time.sleep(IDLE_WAIT_S)
                        continue
                    if trial.status != kt_compat.TrialStatus.RUNNING:
                        return  # STOPPED
                    timed("get", kt_compat.remote_get_trial, stub, trial.trial_id)
                    with lock:
                        score = rng.uniform(0.9, 0.995)
                    timed("update", kt_compat.remote_update_trial, stub, trial.trial_id, {OBJECTIVE: score})
                    trial.status = kt_compat.TrialStatus.COMPLETED
                    timed("end", kt_compat.remote_end_trial, stub, trial)
                    with lock:
                        ends.append(time.perf_counter())
        except Exception as exc:  # noqa: BLE001 - reported to the caller, which raises it
            errors.append(f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}")

    started = time.perf_counter()
    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"latencies": latencies, "idle": idle[0], "finished": len(ends), "errors": errors,
            "seconds": (max(ends) - started) if ends else float("nan")}


def _load_process(conn) -> None:
    """A separate process of simulated workers: runs each (address, workers, trials, seed) it is sent."""
    with quiet_keras_tuner():  # for the life of the process
        while True:
            job = conn.recv()
            if job is None:
                return
            conn.send(simulate_workers(*job))


class LoadGenerator:
    """Simulated workers in threads of one separate process (mode "process") or of this one ("threads")."""

    def __init__(self, mode: str = "process"):
        self.mode = mode
        self._conn = self._proc = None
        if mode == "process":
            ctx = multiprocessing.get_context("spawn")  # gRPC's threads in this process do not survive a fork
            self._conn, child = ctx.Pipe()
            self._proc = ctx.Process(target=_load_process, args=(child,), daemon=True)
            self._proc.start()

    def run(self, address: str, workers: int, trials: int, seed: int = 0) -> dict:
        if self.mode != "process":
            out = simulate_workers(address, workers, trials, seed)
        else:
            self._conn.send((address, workers, trials, seed))
            out = self._conn.recv()
        if out["errors"]:
            raise RuntimeError(f"simulated workers failed: {out['errors'][0]}")
        return out

    def close(self) -> None:
        if self._proc is not None:
            with contextlib.suppress(Exception):
                self._conn.send(None)
            self._proc.join(10)
            if self._proc.is_alive():
                self._proc.terminate()


# --------------------------------------------------------------------------- the benchmark


@contextlib.contextmanager
def quiet_keras_tuner():
    """keras-tuner 1.4.8 prints a condition's value each time a trial is turned into a protocol buffer
    (`conditions.Parent.to_proto`: "sgd" for the space's momentum), and scikit-learn warns when the Bayesian
    oracle's Gaussian process fit sits at a bound; neither belongs in the benchmark's output. Process-wide
    (stdout and the warning filters are): only around the measurement, which prints nothing of its own."""
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _ms(values: list[float], q: float = 0.5) -> float:
    if not values:
        return float("nan")
    if q == 0.5:
        return statistics.median(values) * 1000
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def measure_oracle(tuner: str, size: int, load: LoadGenerator, *, space_path: str, windows: tuple[int, int],
                   workers: int, folder: Path, seed: int = 0) -> OracleRow:
    latency_n, throughput_n = windows
    oracle = study_oracle(tuner, space_path, size, latency_n + throughput_n, folder / f"{tuner}-{size}")
    rng = random.Random(seed)
    replayed = tuner in REPLAYED
    with quiet_keras_tuner():
        started = time.perf_counter()
        (fill_by_replay if replayed else fill_by_proposals)(oracle, size, rng)
        fill_s = time.perf_counter() - started
        chief = ChiefServer(oracle).start()
        try:
            one = load.run(chief.address, 1, latency_n, seed)
            many = load.run(chief.address, workers, throughput_n, seed + 1)
        finally:
            chief.stop()
    per_s = many["finished"] / many["seconds"] if many["finished"] else float("nan")
    return OracleRow(
        tuner=tuner, finished=size, filled="replayed" if replayed else "proposals", fill_s=fill_s,
        latency_ms={name: _ms(one["latencies"][name]) for name in REQUESTS},
        create_p95_ms=_ms(one["latencies"]["create"], 0.95),
        trials=many["finished"], seconds=many["seconds"], trials_per_s=per_s, idle=many["idle"],
        workers_busy=per_s * TRIAL_SECONDS if per_s == per_s else 0.0)


def table(rows: list[OracleRow]) -> list[str]:
    """The rows as a Markdown table, as docs/benchmarks.md shows it."""
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(row.cells()) + " |" for row in rows]
    return lines


def bench_oracle(args, echo=print, *, tuners=TUNERS, windows: dict | None = None, workers: int = WORKERS,
                 mode: str = "process") -> dict:
    """Every oracle at every size: the table printed, and {tuner: {size: OracleRow as a dict}} returned."""
    given = tuple(args.sizes) if getattr(args, "sizes", None) else None
    space_path = args.space or str(DEFAULT_SPACE)
    windows = {**{t: WINDOWS.get(t, DEFAULT_WINDOW) for t in tuners}, **(windows or {})}
    echo(f"oracles served by the chief (gRPC, loopback) to simulated workers, on {cpu_model()}; space "
         f"{Path(space_path).name}; latency: 1 worker, throughput: {workers} workers; the Bayesian and TPE oracles "
         f"brought to size by replaying pre-made finished trials, the others by their own proposals"
         + ("" if given else f"; the Bayesian one at {' and '.join(f'{n:,}' for n in BAYESIAN_SIZES)} finished "
                             "trials (its proposals take minutes at 1,000; --sizes 100,1000 measures it there)"))
    rows: list[OracleRow] = []
    load = LoadGenerator(mode)
    try:
        with tempfile.TemporaryDirectory(prefix="lenet-bench-oracle-") as tmp:
            for tuner in tuners:
                for size in given or (BAYESIAN_SIZES if tuner == "bayesian" else SIZES):
                    row = measure_oracle(tuner, size, load, space_path=space_path, windows=windows[tuner],
                                         workers=workers, folder=Path(tmp))
                    rows.append(row)
                    echo(f"{tuner} at {size:,} finished trials ({row.filled} in {row.fill_s:.1f} s): "
                         f"{_figure(row.trials_per_s)} trials/s with {workers} workers ({row.trials} trials in "
                         f"{row.seconds:.2f} s, {row.idle} idle answers); one worker: create "
                         f"{row.latency_ms['create']:.1f} ms, get {row.latency_ms['get']:.1f}, update "
                         f"{row.latency_ms['update']:.1f}, end {row.latency_ms['end']:.1f} (medians); keeps "
                         f"{_figure(row.workers_busy)} workers busy with {TRIAL_SECONDS:.0f}-second trials")
    finally:
        load.close()
    for line in table(rows):
        echo(line)
    slowest = min(rows, key=lambda r: r.trials_per_s)
    echo(f"oracle cost: the slowest, {slowest.tuner} at {slowest.finished:,} finished trials, serves "
         f"{_figure(slowest.trials_per_s)} trials/s: {_figure(slowest.workers_busy)} workers with {TRIAL_SECONDS:.0f}-second "
         f"trials ({cpu_model()})")
    out: dict = {}
    for row in rows:
        out.setdefault(row.tuner, {})[row.finished] = asdict(row)
    return out
