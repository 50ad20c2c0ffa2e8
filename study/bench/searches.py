"""Search quality (`make bench ARGS="--only search"`): a study of searches, three searches per seed, same budget.

For each of `--seeds` seeds (default 10; seed s is the study's seed: the subsample, the validation split,
the weights and the oracles' draws), three searches get the same wall-clock budget (`--budget`), each kept
to it by the study's time-budget rule (study/budget.py: a trial starts only while it and the final run
still fit), one after the other in this process, in an order that rotates from seed to seed:
- `lenet-study`: the default study's design, `run_search` on search_spaces/lenet.yaml (`--space`): its
  tuner (TPE through keras-tuner), its pruning, its start_with configurations, its max_trials
  (`--max-trials`), its final run;
- `optuna`: Optuna's TPE sampler with a MedianPruner, Optuna's defaults (bench/peer.py);
- `random`: keras-tuner's random search over the same space through `run_search` (no start_with, no pruning:
  pure random draws trained in full, the baseline of Dodge et al.'s curve; max_trials unbounded, so the
  budget ends it).
Every search selects on validation accuracy and trains its chosen configuration as the study trains its
final run (final_epochs); that model alone reads the test set. Every search is one parent run with a
child run per trial in MLflow experiment `bench-search` of the usual store (tags schema.BENCH_*).

Recorded, then read back from the store: each search's best validation accuracy so far against wall time
and against trials (median and interquartile band over seeds: `search_quality.png`), the test accuracy of
each final model (`search_quality.csv`, one row per search), the expected maximum validation accuracy of n
random trials (Dodge et al. 2019, the without-replacement estimator), and P(ours beats optuna), P(ours beats
random) on a seed with bootstrap 95% CIs, plus paired Wilcoxon tests, all on the final models' test
accuracy. The last line:
`search quality over N seeds: lenet-study MEDIAN vs optuna MEDIAN vs random MEDIAN; P(ours > optuna) = p [lo, hi]`.
Target (docs/benchmarks.md): P(ours > optuna) at least 0.5 with our median at least Optuna's.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import schema, tracking
from ..budget import format_duration
from ..search import StudyRequest, load_space_with_overrides, run_search
from .compare import anytime_band, best_so_far, expected_max_curve, p_beat, paired_wilcoxon
from .peer import optuna_defaults, run_optuna
from .quality_figure import QualityCurves, draw_quality

DEFAULT_SPACE = "search_spaces/lenet.yaml"
STUDY = "bench-search"  # the MLflow experiment every search of the benchmark goes to
OURS, OPTUNA, RANDOM = schema.BENCH_SIDES
RANDOM_MAX_TRIALS = 100_000  # the random search runs until the budget stops it
FIGURE, TABLE = "search_quality.png", "search_quality.csv"
EXPECTED_MAX_AT = (1, 2, 4, 8, 16, 32, 64, 128)


@dataclass
class Searched:
    """One search of the benchmark: which, its seed, its parent run, when it started (epoch seconds), and what
    it reached."""

    side: str
    seed: int
    parent_run_id: str
    started_at: float
    seconds: float
    best_val: float = math.nan
    test: float = math.nan
    trials: int = 0
    stop: str = ""
    times: np.ndarray = dataclasses.field(default_factory=lambda: np.empty(0))  # each trial's end (s from start)
    values: np.ndarray = dataclasses.field(default_factory=lambda: np.empty(0))  # its val accuracy, NaN if not a candidate


def _finite(value) -> float:
    return float(value) if value is not None and math.isfinite(value) else math.nan


def _run_study_side(side: str, space, settings, args, uri: str, tmp: Path, tags: dict, echo) -> tuple[str, float, float, str]:
    """lenet-study's or random's search through run_search: (parent run id, best val, test, why it stopped)."""
    started = time.monotonic()
    request = StudyRequest(space, settings, study=STUDY, data_dir=args.data_dir, log_dir=tmp / f"{side}-{settings.seed}",
                           tracking_uri=uri, command="bench --only search", fresh=True, started=started)
    result = run_search(request, echo=echo)
    client = tracking.client(uri)
    for key, value in tags.items():
        client.set_tag(result.parent_run_id, key, value)
    stop = client.get_run(result.parent_run_id).data.tags.get(schema.SEARCH_STOP, "")
    return result.parent_run_id, _finite(result.best_val_accuracy), _finite(result.test_accuracy), stop


def _trials_of(client, searched: Searched) -> None:
    """Each trial's end (seconds since the search started) and its validation accuracy when it is a candidate
    for selection (completed; an Optuna trial that was pruned or failed is not), read from the store."""
    parent = client.get_run(searched.parent_run_id)
    runs = tracking.trial_runs(client, parent.info.experiment_id, parent.data.tags.get(schema.SEARCH_ID, ""))
    runs = sorted((r for r in runs if r.info.end_time), key=lambda r: r.info.end_time)
    candidate = [r.data.tags.get(schema.TRIAL_STATUS) == schema.COMPLETED
                 and r.data.tags.get(schema.BENCH_OPTUNA_STATE, "COMPLETE") == "COMPLETE" for r in runs]
    searched.times = np.array([r.info.end_time / 1000 - searched.started_at for r in runs])
    searched.values = np.array([r.data.metrics.get(schema.BEST_VAL_ACCURACY, math.nan) if ok else math.nan
                                for r, ok in zip(runs, candidate)], dtype=float)
    searched.trials = len(runs)


def curves(found: dict[str, list[Searched]], budget: float) -> QualityCurves:
    """The figure's data: anytime bands against time and trials, and the random search's expected maximum."""
    time_grid = np.linspace(0.0, budget, 121)
    most = max((s.trials for runs in found.values() for s in runs), default=0)
    trial_grid = np.arange(1, max(most, 1) + 1, dtype=float)
    by_time, by_trials = {}, {}
    for side, runs in found.items():
        by_time[side] = anytime_band([best_so_far(s.times, s.values, time_grid) for s in runs], time_grid, 1.0)
        # Past the trials a search ran it has no point: NaN there, not its last best. The band is drawn only
        # where every seed has one: a median over the seeds that happened to run longer rises where the
        # shorter seeds drop out, and a best-so-far curve must not.
        per_seed = []
        for s in runs:
            c = best_so_far(np.arange(1, s.trials + 1), s.values, trial_grid)
            c[trial_grid > s.trials] = np.nan
            per_seed.append(c)
        by_trials[side] = anytime_band(per_seed, trial_grid, 1.0)
    maxima = [expected_max_curve(s.values) for s in found.get(RANDOM, [])]
    longest = max((len(m) for m in maxima), default=0)
    n_grid = np.arange(1, max(longest, 1) + 1, dtype=float)
    padded = [np.concatenate([m, np.full(len(n_grid) - len(m), np.nan)]) for m in maxima]
    best_val = {side: float(np.nanmedian([s.best_val for s in runs])) if any(np.isfinite(s.best_val) for s in runs)
                else math.nan for side, runs in found.items()}
    return QualityCurves(by_time, by_trials, anytime_band(padded, n_grid), best_val,
                         max((len(runs) for runs in found.values()), default=0))


def _median(values) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.median(finite)) if finite else math.nan


def write_table(found: dict[str, list[Searched]], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["seed", "search", "best_val_accuracy", "test_accuracy", "trials", "candidates", "seconds",
                      "search_stop", "parent_run_id"])
        for side, runs in found.items():
            for s in runs:
                out.writerow([s.seed, side, f"{s.best_val:.4f}", f"{s.test:.4f}", s.trials,
                              int(np.isfinite(s.values).sum()), f"{s.seconds:.1f}", s.stop, s.parent_run_id])
    return path


def bench_search(args, echo=print) -> dict:
    """`--seeds` x three searches with the same `--budget`; prints each search, the statistics and the last line."""
    space_path = args.space or DEFAULT_SPACE
    space, base = load_space_with_overrides(space_path, max_trials=args.max_trials, epochs=args.epochs,
                                            dataset=args.dataset, train_samples=args.train_samples)
    budget, seeds = float(args.budget), list(range(base.seed, base.seed + args.seeds))
    uri = tracking.tracking_uri(None)
    bench_id = uuid.uuid4().hex[:12]
    out = Path(args.out or "reports") / STUDY
    random_space = dataclasses.replace(space, start_with=())
    echo(f"{len(seeds)} seeds x 3 searches of {format_duration(budget)} each (about "
         f"{format_duration(len(seeds) * 3 * budget)} in all): {space_path} on {base.dataset}"
         f"{f' ({base.train_samples} training samples)' if base.train_samples else ''}, trials of {base.epochs} "
         f"epoch(s), final runs of {base.final_epochs or base.epochs}; MLflow experiment {STUDY!r} in {uri} "
         f"(benchmark {bench_id})")
    echo(f"lenet-study: {base.tuner} tuner, max_trials {base.max_trials}, {len(space.start_with)} start_with, "
         f"prune {base.prune}; random: keras-tuner random search, no start_with, no pruning; "
         f"optuna: {optuna_defaults()}, "
         f"{len(space.start_with)} start_with enqueued")
    tracking.client(uri).search_experiments()  # a new store's tables (seconds): before any search's clock starts
    found: dict[str, list[Searched]] = {OURS: [], OPTUNA: [], RANDOM: []}
    with tempfile.TemporaryDirectory(prefix="lenet-bench-search-") as tmp_name:
        tmp = Path(tmp_name)
        for i, seed in enumerate(seeds):
            settings = base.override(seed=seed, time_budget=budget)
            order = (OURS, OPTUNA, RANDOM)[i % 3:] + (OURS, OPTUNA, RANDOM)[:i % 3]  # none always first
            for side in order:
                tags = {schema.BENCH_SIDE: side, schema.BENCH_SEED: str(seed), schema.BENCH_ID: bench_id}
                prefix = f"[seed {seed} {side}]"
                say = lambda line, prefix=prefix: echo(f"{prefix} {line}")  # noqa: E731
                started_at, started = time.time(), time.monotonic()
                if side == OPTUNA:
                    peer = run_optuna(space, settings, args.data_dir, budget, study=STUDY, uri=uri, tags=tags,
                                      log_dir=tmp / f"optuna-{seed}", started=started, echo=say)
                    run_id, val, test = peer.parent_run_id, peer.best_val, peer.test
                    stop = schema.STOP_TIME_BUDGET
                else:
                    side_space, side_settings = ((space, settings) if side == OURS else
                                                 (random_space, settings.override(tuner="random", prune="none",
                                                                                  max_trials=RANDOM_MAX_TRIALS)))
                    run_id, val, test, stop = _run_study_side(side, side_space, side_settings, args, uri, tmp, tags,
                                                              say)
                searched = Searched(side, seed, run_id, started_at, time.monotonic() - started, val, test, stop=stop)
                _trials_of(tracking.client(uri), searched)
                found[side].append(searched)
                echo(f"seed {seed} {side}: {searched.trials} trials in {searched.seconds:.0f} s "
                     f"(budget {budget:.0f} s{', stopped by ' + stop if stop else ''}); best val {val:.4f}, "
                     f"test {test:.4f}")
    return report(found, budget, out, echo)


def report(found: dict[str, list[Searched]], budget: float, out: Path, echo=print) -> dict:
    """The statistics over seeds, the figure and the table, and the last line."""
    tests = {side: [s.test for s in runs] for side, runs in found.items()}
    medians = {side: _median(values) for side, values in tests.items()}
    n = len(found[OURS])
    for side, runs in found.items():
        echo(f"{side}: test accuracy median {medians[side]:.4f} over {n} seeds (each: "
             + ", ".join(f"{s.test:.4f}" for s in runs) + f"); best val median {_median([s.best_val for s in runs]):.4f}; "
             f"trials median {np.median([s.trials for s in runs]):.0f}")
    beats = {other: p_beat(tests[OURS], tests[other]) for other in (OPTUNA, RANDOM)}
    for other, beat in beats.items():
        echo(f"P(ours > {other}) on a seed, test accuracy: {beat.text()} (bootstrap 95% CI over {beat.n} seeds; "
             f"a tie counts a half); paired Wilcoxon: {paired_wilcoxon(tests[OURS], tests[other]).text()}")
    figures = curves(found, budget)
    em = figures.expected_max
    shown = [k for k in EXPECTED_MAX_AT if k <= len(em.grid) and math.isfinite(em.median[k - 1])]
    if shown:
        echo("expected max validation accuracy of n random trials (Dodge et al. 2019; median over seeds): "
             + ", ".join(f"n={k} {em.median[k - 1]:.4f}" for k in shown)
             + f"; for comparison, the median best: lenet-study {figures.best_val.get(OURS, math.nan):.4f}, "
             f"optuna {figures.best_val.get(OPTUNA, math.nan):.4f}")
    figure = draw_quality(figures, out / FIGURE)
    table = write_table(found, out / TABLE)
    echo(f"figure: {figure}; table: {table}")
    echo(f"search quality over {n} seeds: lenet-study {medians[OURS]:.4f} vs optuna {medians[OPTUNA]:.4f} vs random "
         f"{medians[RANDOM]:.4f}; P(ours > optuna) = {beats[OPTUNA].text()}")
    return {"medians": medians, "beats": beats, "found": found, "figure": figure, "table": table}
