"""Figures: for each figure, the data behind it and a `plot_*` function that only draws it.

Split as in Optuna's visualization package: an info function computes what a
figure shows (a DataFrame or a small NamedTuple; the tables of `tables.py` and `effects.py`
where one already exists: `replication_table`, `best_so_far`, `pareto_front`,
`effects_table` for an ablation's forest plot),
and `plot_*(runs, ...)` draws that and returns a `matplotlib.figure.Figure`,
or None when there is nothing to draw. Figures are drawn on Figure objects
with an Agg canvas, never through pyplot, so no global backend or figure
state is touched and nothing needs a display.

Which figures a report has, under which heading and when, is `registry.py`'s
job (FIGURES); a new figure is an info and a `plot_*` function here plus one
entry there. The search's figures live in `figures_search.py` (re-exported here);
what every figure draws with (error axes zoomed where the action is, labels that
overlap nothing) in `drawing.py`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from .. import schema
from ..lazy import lazy
from .drawing import ErrorRange, error_axis, error_range, figure, percent, to_error
from .effects import effects_table
from .figures_search import (  # the search's figures, imported from here by registry.py and the package
    KnobInfo, ParallelCoordinatesInfo, ParetoInfo, knob_info, parallel_coordinates_info, pareto_info, plot_best_so_far,
    plot_knob, plot_parallel_coordinates, plot_pareto)
from .importance import Importance, knob_importance
from .load import StudyRuns
from .tables import replication_table, variant_order

pd = lazy("pandas")
mpl_ticker = lazy("matplotlib.ticker")

# --------------------------------------------------------------------------- documented variants


def variant_accuracy_info(runs: StudyRuns) -> pd.DataFrame:
    """The replication table's variants with at least one completed trial."""
    table = replication_table(runs)
    return table[table["n"] > 0].reset_index(drop=True)


def plot_variant_accuracy(runs: StudyRuns):
    """Validation and test error per documented variant on a log axis (accuracy on the right): means,
    95% CI error bars, n, and the tutorial's figure where it was measured on the same dataset (a note
    names the claims left out, and why). Points, not bars: a bar's length means nothing on a log axis."""
    table = variant_accuracy_info(runs)
    if table.empty:
        return None
    width = max(7.5, 1.4 * len(table) + 2.5)
    fig, ax = figure(width, 5.5)
    x = np.arange(len(table))
    has_test = table["test_mean"].notna().any()
    offset = 0.12 if has_test else 0.0
    applies = table["claim_applies"].astype(bool) & table["reported"].notna()
    reported = to_error(table["reported"].where(applies))
    means = {kind: to_error(table[f"{kind}_mean"]) for kind in ("val", "test")}
    # The replication table's intervals as errors (asymmetric where a bootstrap gave them; none at n = 1).
    lows = {kind: to_error(table[f"{kind}_ci_high"]) for kind in means}
    highs = {kind: to_error(table[f"{kind}_ci_low"]) for kind in means}
    points = np.concatenate([means["val"], means["test"], reported])
    # Down to the intervals' low ends, unless two seeds' t-interval reaches far below every mean.
    ends = np.concatenate([lows["val"], lows["test"]])
    rng = error_range(np.concatenate([points, ends[ends >= np.nanmin(points) / 3]]),
                      keep=np.concatenate([points, highs["val"], highs["test"]]))
    styles = {"val": (-offset, "o", "C0", "validation (best epoch)"), "test": (offset, "s", "C1", "test")}
    for kind in ("val", "test") if has_test else ("val",):
        shift, marker, colour, label = styles[kind]
        mean = means[kind]
        err = np.nan_to_num(np.vstack([mean - lows[kind], highs[kind] - mean]).clip(min=0))
        ax.errorbar(x + shift, mean, yerr=err, fmt=marker, ms=7, color=colour, capsize=4, label=label)
    if applies.any():
        ax.scatter(x[applies] + offset, reported[applies], marker="D", s=40, color="black", zorder=5,
                   label="reported by the tutorial (same dataset)")
    left_out = table[table["reported"].notna() & ~applies]
    not_drawn = "" if left_out.empty else "\n" + _wrap(
        ["not drawn, measured by the tutorial on another dataset:"]
        + [f"{r.variant} {r.reported:.4f} ({r.dataset})" for r in left_out.itertuples()], int(width * 10))
    error_axis(ax, rng, "error")
    ax.set_xticks(x, [f"{v}\n(n={n})" for v, n in zip(table["variant"], table["n"])])
    ax.set_xlim(-0.6, len(table) - 0.4)
    ax.set_title(f"Documented variants (study '{runs.study}')\nmean over seeds; error bars: 95% CI of the mean"
                 + not_drawn)
    ax.grid(axis="y", alpha=0.3)
    fig.legend(loc="outside lower center", ncols=3, fontsize=9)
    return fig


def _wrap(parts: list[str], width: int) -> str:
    """The parts joined ("; " after the first), in lines of at most `width` characters (about 10 title
    characters an inch) broken between parts only, never inside one."""
    lines = [parts[0]]
    for i, part in enumerate(parts[1:]):
        glue = " " if i == 0 else "; "
        if len(lines[-1]) + len(glue) + len(part) <= width:
            lines[-1] += glue + part
        else:
            lines[-1] += glue.rstrip()
            lines.append(part)
    return "\n".join(lines)


class VariantCurves(NamedTuple):
    """One variant's per-epoch curves: index = step, one column per run (empty when none was logged)."""

    variant: str
    curves: pd.DataFrame


def _curves(runs: StudyRuns, trials: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Columns = run ids, index = step, values = `metric`."""
    series = {}
    for run_id in trials["run_id"]:
        h = runs.histories.get(run_id)
        if h is None or h.empty:
            continue
        s = h[h["metric"] == metric].set_index("step")["value"]
        if not s.empty:
            series[run_id] = s
    return pd.DataFrame(series)


def learning_curves_info(runs: StudyRuns, metric: str = "val_accuracy") -> list[VariantCurves]:
    """Per documented variant (in VARIANTS order), the `metric` curves of its completed trials."""
    trials = runs.variant_trials
    return [VariantCurves(name, _curves(runs, trials[trials["variant"] == name], metric))
            for name in variant_order(trials["variant"])]


def plot_learning_curves(runs: StudyRuns, metric: str = "val_accuracy"):
    """Per-epoch error (1 − `metric`) of every documented variant on a log axis: mean over replicates,
    band = min..max. The axis reaches every variant's last epoch; where early epochs lie above it (a slow
    starter at chance), the title names the curves that leave the top."""
    info = learning_curves_info(runs, metric)
    if not any(not v.curves.empty for v in info):
        return None
    fig, ax = figure(9.0, 5.0)
    drawn, finals = [], []
    for name, curves in info:
        if not curves.empty:
            mean = to_error(curves.mean(axis=1))
            drawn.append((name, curves, mean))
            finals.append(mean[~np.isnan(mean)][-1:])
    bands = [to_error(c.to_numpy().ravel()) for _, c, _ in drawn]
    zoom = error_range(np.concatenate([m for _, _, m in drawn] + bands), keep=np.concatenate(finals))
    rng = ErrorRange(zoom.low, zoom.cut * 10 ** 0.02, None) if zoom.cut is not None else zoom  # lines run off the top
    for i, (name, curves) in enumerate(info):
        match = [d for d in drawn if d[0] == name]
        if not match:
            continue
        _, curves, mean = match[0]
        epochs = curves.index.to_numpy() + 1
        color = f"C{i % 10}"
        ax.plot(epochs, mean, marker="o", ms=3, color=color, label=f"{name} (n={curves.shape[1]})")
        if curves.shape[1] > 1:
            ax.fill_between(epochs, to_error(curves.max(axis=1)), to_error(curves.min(axis=1)), color=color,
                            alpha=0.2, lw=0)
    ax.xaxis.set_major_locator(mpl_ticker.MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    pretty = metric.replace("val_", "validation ").replace("_", " ")
    error_axis(ax, rng, pretty.replace("accuracy", "error"))
    above = [name for name, _, mean in drawn if zoom.cut is not None and np.nanmax(mean) > zoom.cut]
    cut = (f"\nabove {percent(zoom.cut)} error, off the top: early epochs of " + ", ".join(above)) if above else ""
    ax.set_title(f"{pretty.capitalize().replace('accuracy', 'error')} per epoch of each documented variant\n"
                 f"mean over seed replicates; band: min to max{cut}")
    ax.grid(alpha=0.3)
    fig.legend(loc="outside right upper", fontsize=9)
    return fig


# --------------------------------------------------------------------------- ablation


def effects_info(runs: StudyRuns) -> pd.DataFrame:
    """The rows of `effects_table` the forest plot shows: test accuracy, or validation accuracy when no arm
    has a test accuracy paired with the baseline's."""
    table = effects_table(runs)
    for metric in (schema.TEST_ACCURACY, schema.BEST_VAL_ACCURACY):
        rows = table[table["metric"] == metric]
        if (rows["n"] > 0).any():
            return rows.reset_index(drop=True)
    return table.iloc[0:0]


_VERDICT_STYLE = {"better": ("C2", "better (interval above 0)"), "worse": ("C3", "worse (interval below 0)")}
OUTLIER_GAP = 4.0  # an arm reaching this many times further from 0 than all the rest is drawn off the axis


def _effects_window(info: pd.DataFrame) -> tuple[float, float, set[int]]:
    """The x range of the forest plot (percentage points, 0 included) and the rows drawn off it: the arms
    past the largest jump (at least OUTLIER_GAP x) in how far each arm's interval reaches from 0, among
    at most a third of the arms. One arm at -24 pp would otherwise squash 16 arms within 2 pp into a dot."""
    reach = 100 * info[["difference", "ci_low", "ci_high"]].abs().max(axis=1, skipna=True).fillna(0.0)
    order = list(reach[info["n"] > 0].sort_values(kind="stable").index)
    best, cut = 0.0, len(order)
    for j in range(max(1, len(order) - len(order) // 3), len(order)):
        ratio = reach[order[j]] / max(reach[order[j - 1]], 1e-9)
        if ratio >= OUTLIER_GAP and ratio > best:
            best, cut = ratio, j
    off = set(order[cut:])
    kept = info[(info["n"] > 0) & ~info.index.isin(off)]
    ends = 100 * pd.concat([kept["difference"], kept["ci_low"], kept["ci_high"]]).dropna()
    lo, hi = min(0.0, float(ends.min()) if len(ends) else 0.0), max(0.0, float(ends.max()) if len(ends) else 0.0)
    pad = 0.08 * (hi - lo) if hi > lo else 0.5
    return lo - pad, hi + pad, off


def plot_effects(runs: StudyRuns):
    """Forest plot: each arm's mean difference from the baseline in percentage points, 95% CI bars paired
    by seed, a line at 0; green/red where the interval excludes 0, grey otherwise (inconclusive, or equivalent
    within the study's margin: the table's verdict), a hollow marker where there is no interval (n = 1). An arm
    reaching far beyond all others (`_effects_window`) has its numbers written: an arrow at the axis' edge when
    its estimate is off the axis, else its interval drawn to the edges."""
    info = effects_info(runs)
    if info.empty:
        return None
    fig, ax = figure(9.0, max(3.2, 0.42 * len(info) + 2.0))
    ys = np.arange(len(info))[::-1]  # the first arm on top
    lo, hi, off = _effects_window(info)
    labelled = set()
    for i, y, r in zip(info.index, ys, info.itertuples()):
        if r.n == 0:
            ax.annotate("no paired seeds", (0, y), xytext=(6, 0), textcoords="offset points", va="center", fontsize=8)
            continue
        colour, label = _VERDICT_STYLE.get(r.verdict, ("0.45", "inconclusive or equivalent"))
        d = 100 * r.difference
        interval = f"[{100 * r.ci_low:+.1f}, {100 * r.ci_high:+.1f}]" if math.isfinite(r.ci_low) else ""
        if i in off and not lo <= d <= hi:  # the estimate itself off the axis: an arrow inside its edge
            left = d < lo
            edge = lo + 0.01 * (hi - lo) if left else hi - 0.01 * (hi - lo)
            ax.plot([edge], [y], "<" if left else ">", color=colour, ms=9, label=None if label in labelled else label)
            ax.annotate(f"{d:+.1f} pp {interval}: off the axis", (edge, y), xytext=(8 if left else -8, 0),
                        textcoords="offset points", ha="left" if left else "right", va="center", fontsize=8,
                        color=colour, bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.9})
        elif math.isfinite(r.ci_low):
            err = [[max(0.0, d - 100 * r.ci_low)], [max(0.0, 100 * r.ci_high - d)]]
            ax.errorbar([d], [y], xerr=err, fmt="o", color=colour, capsize=4, ms=6,
                        label=None if label in labelled else label)
            if i in off:  # only its interval runs off the axis: drawn to the edges, its ends written above
                ax.annotate(f"{interval} pp", (d, y), xytext=(0, 5), textcoords="offset points", ha="center",
                            va="bottom", fontsize=7, color=colour)
        else:
            label = "no interval (n = 1)"
            ax.plot([d], [y], "o", mfc="white", color="0.45", ms=6, label=None if label in labelled else label)
        labelled.add(label)
        ax.annotate(f"n={r.n}", (1.0, y), xycoords=("axes fraction", "data"), xytext=(4, 0),
                    textcoords="offset points", va="center", fontsize=8)
    ax.axvline(0.0, color="0.2", lw=1, ls="--", zorder=1)
    ax.set_xlim(lo, hi)
    ax.set_yticks(ys, info["arm"])
    ax.set_ylim(-0.7, len(info) - 0.3)
    ax.set_xlabel(f"difference in {info['label'].iloc[0]} from the baseline (percentage points)")
    zoom = (f"\naxis zoomed to the other arms: {len(off)} reaching far beyond them with its numbers written"
            if off else "")
    ax.set_title(f"Effect of each arm against the baseline (study '{runs.study}')\n"
                 f"mean difference paired by seed, 95% confidence interval{zoom}")
    ax.grid(axis="x", alpha=0.3)
    fig.legend(loc="outside lower center", ncols=2, fontsize=8)
    return fig


# --------------------------------------------------------------------------- knob importance


def importance_info(runs: StudyRuns) -> pd.DataFrame:
    """`knob_importance(runs).table`: per knob, fANOVA's median share of importance, its interval over
    the bootstrap resamples, how often it ranks first and its median rank."""
    return knob_importance(runs).table


def plot_importance(runs: StudyRuns):
    """Each knob's fANOVA importance for validation accuracy: bar = median over the bootstrap resamples,
    whisker = 5th to 95th percentile; None when `knob_importance` has a note instead (no Optuna, too few
    trials, one knob)."""
    result: Importance = knob_importance(runs)
    table = result.table
    if result.note is not None or table.empty:
        return None
    fig, ax = figure(9.0, max(3.2, 0.5 * len(table) + 2.0))
    y = np.arange(len(table))[::-1]  # the most important knob on top
    med = table["importance"].to_numpy(dtype=float)
    err = np.vstack([med - table["low"].to_numpy(dtype=float), table["high"].to_numpy(dtype=float) - med])
    ax.barh(y, np.nan_to_num(med), xerr=np.nan_to_num(err), height=0.6, color="C0", alpha=0.85, capsize=3)
    for yi, row in zip(y, table.itertuples()):
        text = ("not assessed: applies to some trials only" if np.isnan(row.importance)
                else f"{row.importance:.2f} [{row.low:.2f}-{row.high:.2f}]; first in {row.p_first:.0%}; "
                     f"median rank {row.median_rank:g}")
        ax.annotate(text, (1.0, yi), xycoords=("axes fraction", "data"), xytext=(8, 0), textcoords="offset points",
                    va="center", fontsize=8, color="0.2")  # beside the axes, right of every whisker
    ax.set_yticks(y, table["knob"])
    # Shares run from 0 to 1, but the axis stops past the longest whisker: small shares stay visible.
    reach = float(np.nanmax(np.concatenate([med, table["high"].to_numpy(dtype=float), [0.05]])))
    ax.set_xlim(0, min(1.02, math.ceil((reach + 0.03) * 10) / 10))
    ax.set_xlabel("share of importance (bar: median; whisker: 5th to 95th percentile)")
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(f"Knob importance for validation accuracy (fANOVA): {result.n_trials} completed full-budget "
                 f"trials,\n{int(table['n_resamples'].max())} bootstrap resamples", fontsize=10)
    return fig
