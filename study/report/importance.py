"""Knob effects on validation accuracy: each knob's importance in a finished search, and the per-knob means
with 95% intervals that the knob figures draw. Numbers only: nothing here draws, or reads the store
except the parent run's space file through `StudyRuns.space_file`.

Importance comes from Optuna's fANOVA evaluator (`optuna.importance.FanovaImportanceEvaluator`), run on
an in-memory Optuna study rebuilt from the loaded runs: one `optuna.trial.create_trial` per completed
full-budget trial, its knob values as params and its best validation accuracy as the value, with the
distributions of the space file the study logged (choice -> CategoricalDistribution, float and int ->
FloatDistribution / IntDistribution with its log sampling), or inferred from the trials' values when the
file is missing. A knob with a `when:` condition is left out of the trials where it does not apply, so
fANOVA, which takes the knobs every trial has, does not assess it (the table says so).

Why not PED-ANOVA, Optuna's default evaluator: it compares the knobs' distribution among the top 10% of
trials with all trials, which takes far more trials than a search here runs. On made-up searches where
activation alone sets the accuracy, it ranked first a conditional knob with no effect at 30 trials
(momentum, 0.89 of the importance) and still gave it 0.43 at 60, while fANOVA, on the same 30 trials,
ranked activation first in all 20 resamples (the "strong" search of tests/test_importance.py).

Which trials: completed ones (failed trials have no accuracy); a Hyperband study's shorter trials measure
another thing (a model trained 1 or 3 epochs), so only those trained the full budget (its final rung)
count; trials stopped at chance (stop reason at_chance) count with the accuracy they reached, a real
outcome of their configuration. Under MIN_TRIALS such trials, or with one varied knob, there is no
importance, only a one-line note (so is there without Optuna, a dev dependency).

Stability: fANOVA runs on N_RESAMPLES bootstrap resamples of those trials, its forest seeded with the
resample's number, so the interval covers the forest's randomness too. Each knob gets the median share
of importance, its 5th-95th percentile, how often it ranks first and its median rank.
"""

from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from .. import schema
from ..knobs import AUTO_AUGMENT, AUTO_AUGMENT_DEFAULT
from ..lazy import lazy, load
from ..model import format_widths, parse_widths
from ..space import Space, SpaceError, parse_space
from .cores import fork_map
from .load import FAILED, KNOB_TYPES, KNOBS, RUNNING, StudyRuns, is_missing
from .stats import ACCURACY_BOUNDS, mean_interval

pd = lazy("pandas")
optuna = lazy("optuna")  # a dev dependency: the report says so in one line when it is missing
optuna_dists = lazy("optuna.distributions")
scipy_stats = lazy("scipy.stats")

MIN_TRIALS = 8  # fewer full-budget trials: no importance, a one-line note instead
N_RESAMPLES = 20  # bootstrap resamples of the trials, a fANOVA forest on each
FANOVA_TREES = 16  # trees per fANOVA forest (Optuna's default: 64), so that N_RESAMPLES forests stay cheap
MAX_RESAMPLE = 100  # trials drawn per resample: a larger study is resampled m-out-of-n (wider intervals)
PERCENTILES = (5.0, 95.0)  # the interval of importance over the resamples
OPTUNA_MISSING = ("Knob importance needs Optuna (`optuna.importance`), which is not installed here: "
                  "`make report` installs it with the `dev` extra, as does `pip install -e '.[dev]'`.")
_BUDGET = f"{schema.HYPERBAND_PREFIX}epochs"  # a Hyperband trial's epochs budget


class Importance(NamedTuple):
    """Knob importance of one study. `table`: one row per varied knob (IMPORTANCE_COLUMNS), by decreasing
    median, NaN for a knob fANOVA could not assess; empty, with `note` saying why, when there is no
    importance. `caption`: which evaluator, on which trials, how the interval is made."""

    table: pd.DataFrame
    caption: str
    note: str | None
    n_trials: int
    knobs: list[str]


IMPORTANCE_COLUMNS = ["knob", "importance", "low", "high", "p_first", "median_rank", "n_resamples"]


def _empty(caption: str, note: str, n_trials: int = 0, knobs: list[str] | None = None) -> Importance:
    return Importance(pd.DataFrame(columns=IMPORTANCE_COLUMNS), caption, note, n_trials, knobs or [])


# --------------------------------------------------------------------------- which trials


def importance_trials(runs: StudyRuns) -> tuple[pd.DataFrame, list[str]]:
    """The trials importance is computed on, and what was left out or kept, as phrases for a caption."""
    trials = runs.trials
    said = []
    for state, what in ((FAILED, "failed (no accuracy)"), (RUNNING, "still running or interrupted")):
        n = int((trials["state"] == state).sum())
        if n:
            said.append(f"{n} {what} left out")
    done = runs.completed
    if _BUDGET in done.columns:
        budget = pd.to_numeric(done[_BUDGET], errors="coerce")
        if budget.notna().any():
            full = _full_budget(runs, budget)
            short = budget.notna() & (budget < full)
            said.append(f"Hyperband: only its final rung, tuner/epochs = {full}; "
                        f"{int(short.sum())} shorter trial(s) left out")
            done = done[~short]
    chance = int((done["stop_reason"] == schema.STOP_CHANCE).sum())
    if chance:
        said.append(f"{chance} trial(s) stopped at chance ({schema.STOP_CHANCE}) kept with the accuracy they "
                    "reached, a real outcome of their configuration")
    return done.reset_index(drop=True), said


def _full_budget(runs: StudyRuns, budget: pd.Series) -> int:
    """A Hyperband study's full epochs budget: its `epochs` setting (the final rung's budget)."""
    try:
        return int(runs.parent_params["epochs"])
    except (KeyError, ValueError):
        return int(budget.max())


def importance_knobs(trials: pd.DataFrame) -> list[str]:
    """Knobs with more than one value among `trials`, in LeNetConfig order."""
    return [k for k in KNOBS if k in trials.columns and trials[k].dropna().nunique() > 1]


# --------------------------------------------------------------------------- the space, as Optuna distributions


def study_space(runs: StudyRuns) -> tuple[Space | None, str]:
    """The space file the study logged, parsed, and a phrase naming where the distributions come from."""
    found = runs.space_file
    if found is None:
        return None, "distributions inferred from the trials' values (no space file on the parent run)"
    name, data = found
    try:
        space = parse_space(data, Path(name))
    except SpaceError as exc:
        return None, f"distributions inferred from the trials' values (the logged space file: {exc})"
    return space, f"distributions from the space file `{name}` logged on the parent run"


def _key(knob: str, value: Any, dataset: str | None = None) -> Any:
    """A knob's value as the trials hold it, for a categorical distribution (a space value, or a trial's)."""
    if knob == "dense_units":
        return format_widths(parse_widths(value))
    if knob == "augment" and value == "auto":
        return AUTO_AUGMENT.get(dataset or "mnist", AUTO_AUGMENT_DEFAULT)
    kind = KNOB_TYPES.get(knob)
    if kind is float:
        return str(float(value))
    if kind is int:
        return str(int(value))
    return str(value)


def _numeric_bounds(values: pd.Series, low: float, high: float) -> tuple[float, float]:
    v = values.astype(float)
    return min(low, float(v.min())), max(high, float(v.max()))


def knob_distributions(runs: StudyRuns, trials: pd.DataFrame, knobs: list[str], space: Space | None):
    """knob -> (Optuna distribution, condition) for the trials: the space's spec where it has one that
    is not fixed, else inferred from the values (float; int with more than 4 values; else categorical).
    condition: None, or (parent knob, allowed parent values as `_key`s) from the spec's `when:`."""
    dataset = runs.parent_params.get("dataset")
    out = {}
    for knob in knobs:
        values = trials[knob].dropna()
        spec = space.knobs.get(knob) if space else None
        kind = KNOB_TYPES.get(knob)
        condition = None
        if spec and spec.get("when"):
            parent, allowed = next(iter(spec["when"].items()))
            condition = (parent, {_key(parent, v, dataset) for v in allowed})
        if spec and spec["type"] in ("float", "int") and kind in (float, int):
            low, high = _numeric_bounds(values, spec["min"], spec["max"])
            log = spec.get("sampling") == "log"  # Optuna has no reverse_log: drawn linear
            dist = (optuna_dists.FloatDistribution(low, high, log=log) if kind is float
                    else optuna_dists.IntDistribution(int(low), int(high), log=log))
        elif spec and spec["type"] == "choice":
            choices = list(dict.fromkeys(_key(knob, v, dataset) for v in spec["values"]))
            seen = [_key(knob, v) for v in values]
            dist = optuna_dists.CategoricalDistribution(choices + [v for v in dict.fromkeys(seen) if v not in choices])
        elif kind is float or (kind is int and values.nunique() > 4):
            low, high = _numeric_bounds(values, math.inf, -math.inf)
            log = low > 0 and high / low >= 100
            dist = (optuna_dists.FloatDistribution(low, high, log=log) if kind is float
                    else optuna_dists.IntDistribution(int(low), int(high)))
        else:
            seen = sorted({_key(knob, v) for v in values}, key=_sort_key)
            dist = optuna_dists.CategoricalDistribution(seen)
        out[knob] = (dist, condition)
    return out


def _sort_key(value: str):
    try:
        return (0, float(value), "")
    except ValueError:
        return (1, 0.0, value)


def _trial_params(row: dict, distributions: dict, dataset: str | None) -> tuple[dict, dict]:
    params, dists = {}, {}
    for knob, (dist, condition) in distributions.items():
        if is_missing(row[knob]):
            continue
        if condition and (is_missing(row.get(condition[0])) or _key(condition[0], row[condition[0]]) not in condition[1]):
            continue  # the knob does not apply to this trial (its `when:` does not hold)
        if isinstance(dist, optuna_dists.CategoricalDistribution):
            value = _key(knob, row[knob])
        elif isinstance(dist, optuna_dists.IntDistribution):
            value = int(row[knob])
        else:
            value = float(row[knob])
        params[knob], dists[knob] = value, dist
    return params, dists


# --------------------------------------------------------------------------- importance


def _optuna():
    """Optuna, or None when it is not installed."""
    try:
        return load(optuna)
    except ImportError:
        return None


def knob_importance(runs: StudyRuns, n_resamples: int = N_RESAMPLES, seed: int = 0) -> Importance:
    """Each varied knob's importance for validation accuracy (see the module's docstring); computed once
    per StudyRuns and these arguments (the figure and the report's table share it)."""
    key = ("importance", n_resamples, seed)
    if key not in runs.memo:
        runs.memo[key] = _knob_importance(runs, n_resamples, seed)
    return runs.memo[key]


def _knob_importance(runs: StudyRuns, n_resamples: int, seed: int) -> Importance:
    trials, said = importance_trials(runs)
    n = len(trials)
    knobs = importance_knobs(trials)
    if _optuna() is None:
        return _empty("", OPTUNA_MISSING, n, knobs)
    hyperband = next((s for s in said if s.startswith("Hyperband")), None)
    budget = "full-budget " if hyperband else ""
    if n < MIN_TRIALS:
        return _empty("", f"Knob importance is not computed: it needs at least {MIN_TRIALS} completed "
                          f"{budget}trials, and this search has {n}" + (f" ({hyperband})" if hyperband else "")
                      + ".", n, knobs)
    if len(knobs) < 2:
        return _empty("", f"Knob importance is not computed: {len(knobs)} knob(s) varied among the {n} "
                          f"completed {budget}trials, nothing to rank.", n, knobs)
    space, source = study_space(runs)
    dataset = runs.parent_params.get("dataset")
    distributions = knob_distributions(runs, trials, knobs, space)
    m = min(n, MAX_RESAMPLE)

    logger = logging.getLogger("optuna")
    level = logger.level
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # `normalize=False` is experimental
            draws = np.random.default_rng(seed).integers(0, n, (n_resamples, m))
            columns = list(dict.fromkeys(list(distributions) + [c[0] for _, c in distributions.values() if c]))
            rows = trials[[c for c in columns if c in trials.columns]].to_dict("records")
            values = trials[schema.BEST_VAL_ACCURACY].astype(float).to_numpy()
            frozen = {}  # only the trials some resample draws (a 10,000-trial study: at most n_resamples * m)
            for i in np.unique(draws):
                params, dists = _trial_params(rows[i], distributions, dataset)
                frozen[i] = optuna.trial.create_trial(params=params, distributions=dists, value=float(values[i]))

            def resample(r: int) -> np.ndarray:
                study = optuna.create_study(direction="maximize")
                study.add_trials([frozen[i] for i in draws[r]])
                evaluator = optuna.importance.FanovaImportanceEvaluator(n_trees=FANOVA_TREES, seed=seed + r)
                raw = optuna.importance.get_param_importances(study, evaluator=evaluator, normalize=False)
                total = sum(raw.values())
                return np.array([(raw[k] / total if total > 0 else 0.0) if k in raw else np.nan for k in knobs])

            shares = np.vstack(fork_map(resample, n_resamples))  # one forest per resample, on every core
    finally:
        logger.setLevel(level)

    table = _summarise(knobs, shares).sort_values("importance", ascending=False, na_position="last",
                                                  kind="stable").reset_index(drop=True)
    return Importance(table, _caption(n, m, n_resamples, source, said, distributions), None, n, knobs)


def _summarise(knobs: list[str], shares: np.ndarray) -> pd.DataFrame:
    """Per knob: median share, percentile interval, share of resamples where it ranks first (ties split),
    median rank (1 = most important), over the resamples where fANOVA assessed the knob."""
    firsts = np.zeros_like(shares)
    ranks = np.full_like(shares, np.nan)
    for r, row in enumerate(shares):
        assessed = ~np.isnan(row)
        if not assessed.any():
            continue
        ranks[r, assessed] = scipy_stats.rankdata(-row[assessed], method="average")
        top = row[assessed].max()
        if top > 0:
            winners = assessed & (row == top)
            firsts[r, winners] = 1.0 / winners.sum()
    rows = []
    for j, knob in enumerate(knobs):
        col = shares[:, j]
        ok = ~np.isnan(col)
        if not ok.any():  # a knob that applies to some trials only
            rows.append([knob, np.nan, np.nan, np.nan, np.nan, np.nan, 0])
            continue
        low, high = np.percentile(col[ok], PERCENTILES)
        rows.append([knob, float(np.median(col[ok])), float(low), float(high),
                     float(firsts[ok, j].mean()), float(np.median(ranks[ok, j])), int(ok.sum())])
    return pd.DataFrame(rows, columns=IMPORTANCE_COLUMNS)


def _caption(n, m, n_resamples, source, said, distributions) -> str:
    conditional = [f"{k} (only when {c[0]} is {' or '.join(sorted(c[1]))})" for k, (_, c) in distributions.items() if c]
    lo, hi = (f"{p:g}" for p in PERCENTILES)
    text = (
        f"Importance of each knob for validation accuracy ({schema.BEST_VAL_ACCURACY}) by fANOVA "
        f"(Optuna's `FanovaImportanceEvaluator`: a random forest of {FANOVA_TREES} trees fitted to the "
        f"accuracies, each knob's share of the variance it explains) on the {n} completed trials"
        + (f" ({'; '.join(said)})" if said else "") + ". "
        f"Repeated on {n_resamples} bootstrap resamples of "
        + (f"{m} of the {n} trials (m-out-of-n, so the intervals are wider than the data alone warrant)"
           if m < n else "the trials")
        + f", the forest seeded with the resample's number; importance is each knob's share of the total "
        f"per resample: the median, its {lo}th to {hi}th percentile, how often the knob ranks first and "
        f"its median rank. {source.capitalize()}."
    )
    if conditional:
        text += (f" Not assessed, as they apply to some trials only (fANOVA takes the knobs every trial has): "
                 f"{', '.join(conditional)}.")
    return text


# --------------------------------------------------------------------------- marginal means with intervals


def t_interval(values, confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): the mean and its two-sided Student t interval (`stats.mean_interval` held to
    its t interval). NaN bounds for one value; the mean itself when all values are equal."""
    interval = mean_interval(np.asarray(values, dtype=float), confidence, bootstrap=False)
    return interval.estimate, interval.low, interval.high


def accuracy_interval(values, confidence: float = 0.95) -> tuple[float, float, float, str]:
    """(mean, low, high, method) of accuracies: `t_interval` taken on the logit scale (`stats.mean_interval`
    with ACCURACY_BOUNDS), so the interval stays inside [0, 1] however few and spread out the values are."""
    interval = mean_interval(np.asarray(values, dtype=float), confidence, bootstrap=False, bounds=ACCURACY_BOUNDS)
    return interval.estimate, interval.low, interval.high, interval.method


MARGINAL_COLUMNS = ["value", "x", "x_low", "x_high", "n", "mean", "low", "high", "method"]
MAX_BINS, MIN_PER_BIN = 5, 3


def marginal_means(trials: pd.DataFrame, knob: str, categories: list | None, log: bool = False) -> pd.DataFrame:
    """Mean best validation accuracy with a 95% t-interval on the logit scale (`accuracy_interval`: inside
    [0, 1]; `method` names it): per value of a categorical knob (`value`, in `categories` order; x = its
    position), or per equal-count bin of a numeric one (at most MAX_BINS, at least MIN_PER_BIN trials each,
    in log space when `log`; x = the bin's median value, x_low / x_high its smallest and largest). Empty
    when a numeric knob has too few trials for two bins."""
    acc = trials[schema.BEST_VAL_ACCURACY].astype(float)
    rows = []
    if categories is not None:
        for i, c in enumerate(categories):
            mean, low, high, method = accuracy_interval(acc[trials[knob] == c])
            rows.append([c, float(i), np.nan, np.nan, int((trials[knob] == c).sum()), mean, low, high, method])
        return pd.DataFrame(rows, columns=MARGINAL_COLUMNS)
    x = trials[knob].astype(float)
    bins = min(MAX_BINS, len(x) // MIN_PER_BIN)
    if bins < 2 or x.nunique() < 2:
        return pd.DataFrame(columns=MARGINAL_COLUMNS)
    codes = pd.qcut(np.log(x) if log else x, bins, labels=False, duplicates="drop")
    for b in sorted(codes.dropna().unique()):
        inside = codes == b
        mean, low, high, method = accuracy_interval(acc[inside])
        xs = x[inside]
        rows.append([f"bin {int(b) + 1}", float(xs.median()), float(xs.min()), float(xs.max()), int(inside.sum()),
                     mean, low, high, method])
    return pd.DataFrame(rows, columns=MARGINAL_COLUMNS)
