"""Report speed (`make bench ARGS="--only report"`): the report of a study grown to 1,000 and 10,000 trials
by copying its real runs, against the same study at about the size of the default one (23 trials).

The source is a small real study: search_spaces/lenet.yaml (`--space`) run here on mnist-5k (400 training
digits, 1 epoch, 6 trials, no final run; `--dataset`, `--train-samples`, `--epochs`, `--max-trials`) in a
temporary SQLite store, or with `--study NAME` that study in the store ($MLFLOW_TRACKING_URI, else
./mlflow.db; an SQLite store). For each size of `--sizes` (default 23,1000,10000; the first is the
baseline) a copy of the store is built whose study holds that many trials: its trial runs copied round
robin with their params, tags, metric histories and metrics (real values; each copy a new trial id and
later in time; `tracking.copy_runs`, in SQL) and every run's artifacts moved into the copy's own folder.
Building is printed as it goes and never timed. Then `lenet-study report STUDY --no-notebooks` runs on
each store as its own process, imports included as a user runs it (after one untimed run), `--rounds`
times (default 3; the median counts), and once with the notebooks on the second size; `load_study` alone
is timed in this process too. Beside wall time, the CPU seconds each report process used: on a machine
other processes share, wall time swings with their load, CPU time much less.
Targets: the second size's report at most 1.3x the baseline's, 10,000 trials at most 10 s.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .. import schema, tracking
from ..paths import sqlite_file
from ..report import load_study
from ..search import StudyRequest, load_space_with_overrides, run_search
from .common import BenchError

SIZES = (23, 1000, 10000)
RATIO_TARGET, SECONDS_TARGET, SECONDS_TARGET_SIZE = 1.3, 10.0, 10000
DEFAULT_SPACE = "search_spaces/lenet.yaml"
SOURCE = dict(dataset="mnist-5k", train_samples=400, epochs=1, max_trials=6)  # the study run here, seconds
_REPO = Path(__file__).resolve().parents[2]


def parse_sizes(text: str) -> tuple[int, ...]:
    """"23,1000,10000" -> (23, 1000, 10000): whole numbers of trials, at least 1 each, one or more."""
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 1:
        raise ValueError(f"--sizes {text}: give trial counts separated by commas, each at least 1, e.g. 23,1000,10000")
    return sizes


def _sqlite_path(uri: str) -> Path:
    db = sqlite_file(uri)
    if db is None or uri == "sqlite:///:memory:":
        raise BenchError(f"bench: the report benchmark copies an SQLite store; {uri} is not one")
    return db


def _run_source_study(args, tmp: Path, echo) -> tuple[str, str]:
    """A small real study in a temporary store: (uri, study)."""
    space_path = args.space or str(_REPO / DEFAULT_SPACE)
    space, settings = load_space_with_overrides(
        space_path, dataset=args.dataset or SOURCE["dataset"], train_samples=args.train_samples or SOURCE["train_samples"],
        epochs=args.epochs or SOURCE["epochs"], max_trials=args.max_trials or SOURCE["max_trials"], final_epochs=0)
    uri = f"sqlite:///{tmp}/source/mlflow.db"
    (tmp / "source").mkdir()
    echo(f"source: {Path(space_path).name}, {settings.max_trials} trials of {settings.epochs} epoch(s) on "
         f"{settings.dataset} ({settings.train_samples} training images), in a temporary store")
    result = run_search(StudyRequest(space, settings, study="bench-report", data_dir=args.data_dir,
                                     log_dir=tmp / "source" / "logs", tracking_uri=uri, command="bench --only report"),
                        echo=lambda line: echo(f"[source] {line}"))
    return uri, result.study


def build_store(source_uri: str, study: str, size: int, folder: Path, echo=print) -> tuple[str, int]:
    """A copy of the source store in `folder` whose study holds `size` trials (copies of its latest
    search's trial runs, round robin, each one later by the study's span); (its URI, the copies made)."""
    folder.mkdir(parents=True)
    shutil.copy(_sqlite_path(source_uri), folder / "mlflow.db")
    uri = f"sqlite:///{folder}/mlflow.db"
    runs = load_study(study, uri)
    tracking.relocate_artifacts(uri, runs.experiment_id, (folder / "artifacts").as_uri())
    trials = runs.trials.sort_values("trial_number")
    starts = trials["start_time"].dropna()
    ends = trials["end_time"].dropna()
    span_ms = int(((ends.max() if len(ends) else starts.max()) - starts.min()).total_seconds() * 1000) + 1000
    n_copies = max(0, size - len(trials))
    copies = []
    for i in range(n_copies):
        row = trials.iloc[i % len(trials)]
        round_ = i // len(trials) + 1
        trial_id = f"{row['trial_id']}.{round_}"
        copies.append(tracking.RunCopy(row["run_id"], f"trial {trial_id}: copy {round_} of trial {row['trial_id']}",
                                       {schema.TRIAL_ID: trial_id}, shift_ms=round_ * span_ms))
    started = time.perf_counter()
    step = max(1000, n_copies // 10)

    def progress(done, total):
        if done % step == 0 or done == total:
            echo(f"  {size:,} trials: {done:,}/{total:,} runs copied ({time.perf_counter() - started:.1f} s)")

    tracking.copy_runs(uri, copies, progress=progress)
    if size < len(trials):
        echo(f"  the study has {len(trials)} trials, more than {size}: that store keeps them all")
    return uri, n_copies


def _report_seconds(uri: str, study: str, out: Path, notebooks: bool) -> tuple[float, float]:
    """`lenet-study report STUDY` on the store at `uri`, as its own process: (its wall time, the CPU
    seconds it and its children used: steadier than wall time when other processes share the cores)."""
    import resource  # POSIX only: here, not at the top, so that the CLI still starts without it

    command = [sys.executable, "-m", "study.cli", "report", study, "--out", str(out)]
    command += [] if notebooks else ["--no-notebooks"]
    env = dict(os.environ, MLFLOW_TRACKING_URI=uri,
               PYTHONPATH=os.pathsep.join(p for p in (str(_REPO), os.environ.get("PYTHONPATH")) if p))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise BenchError(f"bench: `lenet-study report {study}` failed on {uri}: {last}")
    return seconds, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _load_seconds(uri: str, study: str) -> float:
    started = time.perf_counter()
    load_study(study, uri)
    return time.perf_counter() - started


def bench_report(args, echo=print) -> dict[str, float]:
    """Report wall time at each size, load_study's share, the notebooks' run, and the ratios to the targets."""
    sizes = args.sizes or SIZES
    rounds = args.rounds or 3
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="lenet-bench-report-") as tmp_name:
        tmp = Path(tmp_name)
        if args.study:
            source_uri, study = tracking.check_store(must_exist=True), args.study
            _sqlite_path(source_uri)
        else:
            source_uri, study = _run_source_study(args, tmp, echo)
        source = load_study(study, source_uri)
        counts = source.trials["state"].value_counts()
        echo(f"source: study {study!r}, {len(source.trials)} trials ({counts.get('completed', 0)} completed, "
             f"{counts.get('failed', 0)} failed) in {source_uri}")
        stores = {}
        for size in sizes:
            started = time.perf_counter()
            stores[size], n_copies = build_store(source_uri, study, size, tmp / f"store-{size}", echo)
            echo(f"store of {size:,} trials: {n_copies:,} copies of the study's {len(source.trials)} trials, "
                 f"built in {time.perf_counter() - started:.1f} s (not timed)")
        out = tmp / "reports"
        _report_seconds(stores[sizes[0]], study, out, notebooks=False)  # warm: the disk cache, .pyc files
        times: dict[int, list[tuple[float, float]]] = {size: [] for size in sizes}
        for round_ in range(rounds):
            for size in sizes:
                times[size].append(_report_seconds(stores[size], study, out, notebooks=False))
            echo(f"round {round_ + 1}: " + ", ".join(f"{size:,} trials {times[size][-1][0]:.1f} s "
                                                     f"({times[size][-1][1]:.1f} CPU-s)" for size in sizes))
        for size in sizes:
            _load_seconds(stores[size], study)  # warm, in this process
            figures[f"load_s_{size}"] = _load_seconds(stores[size], study)
            figures[f"report_s_{size}"] = statistics.median(wall for wall, _ in times[size])
            figures[f"report_cpu_s_{size}"] = statistics.median(cpu for _, cpu in times[size])
        echo(f"`lenet-study report {study} --no-notebooks`, a process each, median of {rounds} run(s):")
        for size in sizes:
            echo(f"  {size:>6,} trials: {figures[f'report_s_{size}']:.1f} s, {figures[f'report_cpu_s_{size}']:.1f} "
                 f"CPU-s (load_study {figures[f'load_s_{size}']:.2f} s of it, timed in this process)")
        with_notebooks = sizes[1] if len(sizes) > 1 else sizes[0]
        wall, cpu = _report_seconds(stores[with_notebooks], study, out, notebooks=True)
        figures[f"notebooks_s_{with_notebooks}"], figures[f"notebooks_cpu_s_{with_notebooks}"] = wall, cpu
        echo(f"`lenet-study report {study}` with its two notebooks, {with_notebooks:,} trials: {wall:.1f} s, "
             f"{cpu:.1f} CPU-s (one run)")
    base = figures[f"report_s_{sizes[0]}"]
    verdicts = []
    if len(sizes) > 1:
        figures["ratio"] = figures[f"report_s_{sizes[1]}"] / base
        figures["cpu_ratio"] = figures[f"report_cpu_s_{sizes[1]}"] / figures[f"report_cpu_s_{sizes[0]}"]
        verdicts.append(f"{sizes[1]:,} trials {figures['ratio']:.2f}x the {sizes[0]:,}-trial report (target at most "
                        f"{RATIO_TARGET}x: {'met' if figures['ratio'] <= RATIO_TARGET else 'NOT met'}; "
                        f"{figures['cpu_ratio']:.2f}x in CPU-s)")
    for size in sizes[2:]:
        seconds = figures[f"report_s_{size}"]
        target = (f" (target at most {SECONDS_TARGET:.0f} s: {'met' if seconds <= SECONDS_TARGET else 'NOT met'})"
                  if size == SECONDS_TARGET_SIZE else "")
        verdicts.append(f"{size:,} trials {seconds:.1f} s, {seconds / base:.2f}x{target}; "
                        f"{figures[f'report_cpu_s_{size}']:.1f} CPU-s")
    echo("report speed: " + "; ".join(verdicts or [f"{sizes[0]:,} trials {base:.1f} s"]))
    return figures
