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
entry there.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from .. import schema
from ..lazy import lazy
from .effects import effects_table
from .importance import Importance, knob_importance, marginal_means
from .load import COMPLETED, FAILED, KNOB_TYPES, StudyRuns, is_missing
from .tables import best_so_far, pareto_front, replication_table, varied_knobs, variant_order

pd = lazy("pandas")
matplotlib = lazy("matplotlib")
mpl_agg = lazy("matplotlib.backends.backend_agg")
mpl_colors = lazy("matplotlib.colors")
mpl_cm = lazy("matplotlib.cm")
mpl_figure = lazy("matplotlib.figure")
mpl_ticker = lazy("matplotlib.ticker")

_LOG_KNOBS = {"learning_rate"}  # always drawn on a log axis; others only when they span 100x


def _figure(width: float = 8.0, height: float = 5.0, ncols: int = 1):
    fig = mpl_figure.Figure(figsize=(width, height), layout="constrained")
    mpl_agg.FigureCanvasAgg(fig)
    axes = fig.subplots(1, ncols)
    return fig, axes


def _label(row: pd.Series) -> str:
    return str(row["variant"]) if not is_missing(row.get("variant")) else f"trial {row['trial_id']}"


def _is_categorical(values: pd.Series, knob: str) -> bool:
    kind = KNOB_TYPES.get(knob)
    if kind is float:
        return False
    if kind is int:
        return values.nunique() <= 4
    return True


def _sorted_categories(values: pd.Series) -> list:
    uniq = list(values.dropna().unique())
    try:
        return sorted(uniq, key=float)
    except (TypeError, ValueError):
        return sorted(uniq, key=str)


def _use_log(values: pd.Series, knob: str) -> bool:
    v = values.dropna().astype(float)
    if v.empty or (v <= 0).any():
        return False
    return knob in _LOG_KNOBS or v.max() / v.min() >= 100


# --------------------------------------------------------------------------- documented variants


def variant_accuracy_info(runs: StudyRuns) -> pd.DataFrame:
    """The replication table's variants with at least one completed trial."""
    table = replication_table(runs)
    return table[table["n"] > 0].reset_index(drop=True)


def plot_variant_accuracy(runs: StudyRuns):
    """Validation and test accuracy per documented variant: mean bars, 95% CI error bars, n, and the tutorial's
    figure where it was measured on the same dataset (a note names the claims left out, and why)."""
    table = variant_accuracy_info(runs)
    if table.empty:
        return None
    fig, ax = _figure(max(7.5, 1.6 * len(table) + 2.5), 5.5)
    x = np.arange(len(table))
    width = 0.38
    has_test = table["test_mean"].notna().any()
    offset = width / 2 if has_test else 0.0
    # Error bars from the replication table's intervals (asymmetric where a bootstrap gave them; none at n = 1).
    def reach(mean, bound):
        return (mean - bound).abs().fillna(0)

    val_lo, val_hi = reach(table["val_mean"], table["val_ci_low"]), reach(table["val_mean"], table["val_ci_high"])
    test_lo, test_hi = reach(table["test_mean"], table["test_ci_low"]), reach(table["test_mean"], table["test_ci_high"])
    ax.bar(x - offset, table["val_mean"], width, yerr=[val_lo, val_hi], capsize=4,
           color="C0", label="validation (best epoch)")
    if has_test:
        ax.bar(x + offset, table["test_mean"], width, yerr=[test_lo, test_hi], capsize=4,
               color="C1", label="test")
    applies = table["claim_applies"].astype(bool) & table["reported"].notna()
    reported = table["reported"].where(applies)
    if applies.any():
        ax.scatter(x[applies] + offset, reported[applies], marker="D", color="black",
                   zorder=5, label="reported by the tutorial (same dataset)")
    left_out = table[table["reported"].notna() & ~applies]
    not_drawn = ("\nnot drawn, measured by the tutorial on another dataset: " + "; ".join(
        f"{r.variant} {r.reported:.4f} ({r.dataset})" for r in left_out.itertuples())) if not left_out.empty else ""
    values = pd.concat([table["val_mean"] - val_lo, table["test_mean"] - test_lo, reported]).dropna()
    # Zoom in on the top of the axis only when every bar is high (say so on the label), else start at 0.
    low = math.floor((values.min() - 0.03) * 20) / 20 if len(values) and values.min() >= 0.5 else 0.0
    top = min(1.0, (pd.concat([table["val_mean"] + val_hi, table["test_mean"] + test_hi, reported]).max()))
    ax.set_ylim(low, top + (top - low) * 0.08)
    for xi, n in zip(x, table["n"]):
        ax.annotate(f"n={n}", (xi, low), xytext=(0, 4), textcoords="offset points", ha="center",
                    va="bottom", fontsize=8, color="white", fontweight="bold")
    ax.set_xticks(x, table["variant"], rotation=15, ha="right")
    ax.set_ylabel(f"accuracy (axis starts at {low:.2f})" if low > 0 else "accuracy")
    ax.set_title(f"Documented variants (study '{runs.study}')\nmean over seeds; error bars: 95% CI of the mean"
                 + not_drawn)
    ax.grid(axis="y", alpha=0.3)
    fig.legend(loc="outside lower center", ncols=3, fontsize=9)
    return fig


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
    """Per-epoch `metric` of every documented variant: mean over replicates, band = min..max."""
    info = learning_curves_info(runs, metric)
    if not any(not v.curves.empty for v in info):
        return None
    fig, ax = _figure(9.0, 5.0)
    for i, (name, curves) in enumerate(info):
        if curves.empty:
            continue
        epochs = curves.index.to_numpy() + 1
        color = f"C{i % 10}"
        ax.plot(epochs, curves.mean(axis=1), marker="o", ms=3, color=color,
                label=f"{name} (n={curves.shape[1]})")
        if curves.shape[1] > 1:
            ax.fill_between(epochs, curves.min(axis=1), curves.max(axis=1), color=color, alpha=0.2, lw=0)
    ax.xaxis.set_major_locator(mpl_ticker.MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    pretty = metric.replace("val_", "validation ").replace("_", " ")
    ax.set_ylabel(pretty)
    ax.set_title(f"{pretty.capitalize()} per epoch of each documented variant\nmean over seed replicates; band: min to max")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9)
    return fig


# --------------------------------------------------------------------------- search


def _time_unit(seconds: float) -> tuple[float, str]:
    if seconds >= 2 * 3600:
        return 3600.0, "h"
    if seconds >= 600:
        return 60.0, "min"
    return 1.0, "s"


def plot_best_so_far(runs: StudyRuns):
    """Best validation accuracy so far against trial number and against wall time (data: `best_so_far`)."""
    bsf = best_so_far(runs)
    done = bsf[bsf["state"] == COMPLETED]
    if done.empty:
        return None
    fig, (left, right) = _figure(12.0, 4.8, ncols=2)
    left.scatter(done["trial_number"], done["best_val_accuracy"], s=18, color="0.6", label="completed trial")
    left.step(bsf["trial_number"], bsf["best_so_far"], where="post", color="C3", lw=2, label="best so far")
    left.set_xlabel("trial number (in start order)")
    left.set_ylabel("best validation accuracy")
    left.set_title("Best so far by trial" + ("\n" if len(runs.parents) > 1 else ""))
    timed = bsf.dropna(subset=["elapsed_s"]).sort_values("elapsed_s")
    scale, unit = _time_unit(float(timed["elapsed_s"].max()) if len(timed) else 0.0)
    tdone = timed[timed["state"] == COMPLETED]
    right.scatter(tdone["elapsed_s"] / scale, tdone["best_val_accuracy"], s=18, color="0.6", label="completed trial")
    right.step(timed["elapsed_s"] / scale, timed["best_so_far_at_time"], where="post", color="C3", lw=2,
               label="best so far")
    right.set_xlabel(f"wall time at trial end ({unit})")
    gaps = "\n(from the study's start; idle time between invocations left out)" if len(runs.parents) > 1 else ""
    right.set_title(f"Best so far by wall time{gaps}")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=9)
    n_failed = int((bsf["state"] == FAILED).sum())
    note = f"; {n_failed} failed trial(s) not plotted" if n_failed else ""
    fig.suptitle(f"Study '{runs.study}': {len(done)} completed trials{note}")
    return fig


class KnobInfo(NamedTuple):
    """Completed trials with a value of `knob`, the best of them, the categories when the axis is
    categorical, and the mean accuracy with a 95% t-interval per category or per bin (`marginal_means`)."""

    knob: str
    trials: pd.DataFrame
    best: pd.Series | None
    categories: list | None  # None: a numeric axis
    log: bool
    intervals: pd.DataFrame | None = None


def knob_info(runs: StudyRuns, knob: str) -> KnobInfo:
    done = runs.completed.dropna(subset=[knob])
    if done.empty:
        return KnobInfo(knob, done, None, None, False)
    best = done.loc[done["best_val_accuracy"].astype(float).idxmax()]
    cats = _sorted_categories(done[knob]) if _is_categorical(done[knob], knob) else None
    log = cats is None and _use_log(done[knob], knob)
    return KnobInfo(knob, done, best, cats, log, marginal_means(done, knob, cats, log))


def plot_knob(runs: StudyRuns, knob: str):
    """Validation accuracy against one knob's values (completed trials; the best one starred), with the
    mean and its 95% t-interval per value, or per equal-count bin of a numeric knob."""
    info = knob_info(runs, knob)
    done, best, cats, means = info.trials, info.best, info.categories, info.intervals
    if done.empty:
        return None
    fig, ax = _figure(7.0, 4.5)
    acc = done["best_val_accuracy"].astype(float)
    rng = np.random.default_rng(0)
    if cats is not None:
        groups = [acc[done[knob] == c].to_numpy() for c in cats]
        ax.boxplot(groups, positions=range(len(cats)), widths=0.5, showfliers=False,
                   medianprops={"color": "C1"})
        for i, g in enumerate(groups):
            ax.scatter(i + rng.uniform(-0.12, 0.12, len(g)), g, s=16, color="C0", alpha=0.7, zorder=3)
        ax.set_xticks(range(len(cats)), [f"{c}\n(n={len(g)})" for c, g in zip(cats, groups)])
        best_x = cats.index(best[knob])
    else:
        ax.scatter(done[knob].astype(float), acc, s=20, color="C0", alpha=0.8)
        if info.log:
            ax.set_xscale("log")
        best_x = float(best[knob])
    ax.scatter([best_x], [best["best_val_accuracy"]], marker="*", s=180, color="C3",
               zorder=4, label=f"best: trial {best['trial_id']}")
    how = _draw_means(ax, means, categorical=cats is not None)
    ax.set_xlabel(knob)
    ax.set_ylabel("best validation accuracy")
    ax.set_title(f"{knob}: validation accuracy of {len(done)} completed trials\n{how}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=9)
    return fig


def _draw_means(ax, means: pd.DataFrame, categorical: bool) -> str:
    """The means and 95% t-intervals of `marginal_means` on a knob's axis; returns what the title says."""
    if means is None or means.empty:
        return "too few trials for binned means"
    m = means.dropna(subset=["mean"])
    err = np.vstack([m["mean"] - m["low"], m["high"] - m["mean"]]).clip(min=0)
    err = np.nan_to_num(err)  # one trial: a mean without an interval
    if categorical:
        ax.errorbar(m["x"] + 0.3, m["mean"], yerr=err, fmt="D", ms=5, color="black", capsize=4, zorder=5,
                    label="mean, 95% t-interval")
        return "black: mean with its 95% t-interval per value (none for n=1); box: quartiles"
    xerr = np.vstack([m["x"] - m["x_low"], m["x_high"] - m["x"]])
    ax.errorbar(m["x"], m["mean"], yerr=err, xerr=xerr, fmt="D", ms=5, color="black", capsize=4, zorder=5,
                elinewidth=1.2, label="bin mean, 95% t-interval")
    return (f"black: mean of {len(m)} equal-count bins with its 95% t-interval "
            "(horizontal bar: the bin's values)")


class ParallelCoordinatesInfo(NamedTuple):
    """The top trials on one vertical axis per varied knob plus validation accuracy, positions in 0..1."""

    axes: list[str]
    positions: dict[str, pd.Series]  # axis -> position of each trial (indexed like `accuracy`)
    ticks: dict[str, list[tuple[float, str]]]  # axis -> (position, label)
    accuracy: pd.Series  # best_val_accuracy of the top trials, best first


def parallel_coordinates_info(runs: StudyRuns, top: int = 15) -> ParallelCoordinatesInfo | None:
    """None when no knob varied."""
    knobs = varied_knobs(runs)
    if not knobs:
        return None
    done = runs.completed.sort_values("best_val_accuracy", ascending=False, kind="stable").head(top)
    axes_names = knobs + ["best_val_accuracy"]
    positions, ticks = {}, {}
    for name in axes_names:
        col = done[name]
        if name != "best_val_accuracy" and _is_categorical(runs.completed[name].dropna(), name):
            cats = _sorted_categories(runs.completed[name])
            span = max(len(cats) - 1, 1)
            pos = {c: (i / span if len(cats) > 1 else 0.5) for i, c in enumerate(cats)}
            positions[name] = col.map(lambda v: pos.get(v, np.nan)).astype(float)
            ticks[name] = [(p, str(c)) for c, p in pos.items()]
        else:
            vals = col.astype(float)
            log = name != "best_val_accuracy" and _use_log(runs.completed[name], name)
            t = np.log10(vals) if log else vals
            lo, hi = float(t.min()), float(t.max())
            positions[name] = (t - lo) / (hi - lo) if hi > lo else t * 0 + 0.5
            shown = [lo, hi] if hi > lo else [lo]
            ticks[name] = [((v - lo) / (hi - lo) if hi > lo else 0.5, f"{10 ** v if log else v:.4g}") for v in shown]
    return ParallelCoordinatesInfo(axes_names, positions, ticks, done["best_val_accuracy"].astype(float))


def plot_parallel_coordinates(runs: StudyRuns, top: int = 15):
    """The top trials across the varied knobs and validation accuracy, coloured by accuracy."""
    info = parallel_coordinates_info(runs, top)
    if info is None:
        return None
    axes_names, acc = info.axes, info.accuracy
    fig, ax = _figure(max(8.0, 1.4 * len(axes_names) + 2), 5.5)
    norm = mpl_colors.Normalize(vmin=float(acc.min()),
                                vmax=float(acc.max()) if acc.max() > acc.min() else float(acc.min()) + 1e-9)
    cmap = matplotlib.colormaps["viridis"]
    xs = np.arange(len(axes_names))
    for rank, (idx, a) in enumerate(acc.items()):
        ys = [info.positions[n].loc[idx] for n in axes_names]
        ax.plot(xs, ys, color=cmap(norm(a)), lw=3.0 if rank == 0 else 1.3, alpha=0.9, zorder=3 if rank == 0 else 2)
    for i, name in enumerate(axes_names):
        ax.axvline(i, color="0.3", lw=1)
        for y, label in info.ticks[name]:
            ax.annotate(label, (i, y), xytext=(-4, 0), textcoords="offset points", ha="right", va="center",
                        fontsize=8, color="0.15", bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8})
    ax.set_xticks(xs, [n.replace("best_val_accuracy", "val accuracy") for n in axes_names], rotation=20, ha="right")
    ax.set_yticks([])
    ax.set_ylim(-0.06, 1.06)
    ax.set_xlim(-0.6, len(axes_names) - 0.6)
    for spine in ("left", "right", "top"):
        ax.spines[spine].set_visible(False)
    fig.colorbar(mpl_cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="best validation accuracy")
    ax.set_title(f"Top {len(acc)} trials by validation accuracy (thick line: best)")
    return fig


class ParetoInfo(NamedTuple):
    trials: pd.DataFrame  # completed trials with a parameter count and an accuracy
    front: pd.DataFrame  # `pareto_front` against parameters
    latency_trials: pd.DataFrame  # completed trials with an inference latency (empty: not measured)
    latency_front: pd.DataFrame  # `pareto_front` against inference latency


def pareto_info(runs: StudyRuns) -> ParetoInfo:
    done = runs.completed.dropna(subset=["best_val_accuracy"])
    return ParetoInfo(done.dropna(subset=["param_count"]), pareto_front(runs),
                      done.dropna(subset=[schema.INFERENCE_MS]), pareto_front(runs, schema.INFERENCE_MS))


def _draw_front(ax, done: pd.DataFrame, front: pd.DataFrame, cost: str, label: str) -> None:
    ax.scatter(done[cost], done["best_val_accuracy"], s=22, color="0.55", label="completed trial")
    ax.step(front[cost], front["best_val_accuracy"], where="post", color="C3", lw=1.2, alpha=0.7)
    ax.scatter(front[cost], front["best_val_accuracy"], s=60, color="C3", zorder=3,
               label=f"Pareto front ({len(front)} trials)")
    for _, row in front.head(12).iterrows():  # a front of thousands of trials would be unreadable
        ax.annotate(_label(row), (row[cost], row["best_val_accuracy"]), xytext=(5, -10),
                    textcoords="offset points", fontsize=8)
    values = done[cost].astype(float)
    if values.min() > 0 and values.max() / values.min() >= 10:
        ax.set_xscale("log")
    ax.set_xlabel(label)
    ax.set_ylabel("best validation accuracy")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=9)


def plot_pareto(runs: StudyRuns):
    """Validation accuracy against parameter count and against inference latency (ms per image at batch 1,
    on the machine that trained each trial), each with its Pareto front (max accuracy, min cost) marked.
    One panel, parameters, when the study's runs predate latency measurement (the title says so)."""
    info = pareto_info(runs)
    if info.trials.empty:
        return None
    with_latency = not info.latency_trials.empty
    fig, axes = _figure(15.0 if with_latency else 8.5, 5.0, ncols=2 if with_latency else 1)
    left = axes[0] if with_latency else axes
    _draw_front(left, info.trials, info.front, "param_count", "parameters")
    left.set_title("Accuracy against model size")
    if with_latency:
        _draw_front(axes[1], info.latency_trials, info.latency_front, schema.INFERENCE_MS,
                    "inference latency (ms per image, batch 1)")
        hosts = sorted(set(info.latency_trials["host"].dropna())) if "host" in info.latency_trials else []
        where = f" on {hosts[0]}" if len(hosts) == 1 else f" on {len(hosts)} hosts" if hosts else ""
        axes[1].set_title(f"Accuracy against inference latency{where}")
        fig.suptitle("Pareto fronts: no trial on a front is beaten by another that is more accurate and cheaper")
    else:
        left.set_title("Accuracy against model size (front: no trial is both more accurate and smaller)\n"
                       "inference latency: not measured in this study's runs")
    return fig


# --------------------------------------------------------------------------- ablation (issue 11)


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


def plot_effects(runs: StudyRuns):
    """Forest plot: each arm's mean difference from the baseline in percentage points, 95% CI bars paired
    by seed, a line at 0; green/red where the interval excludes 0, grey where it does not (no measurable
    effect), a hollow marker where there is no interval (n = 1)."""
    info = effects_info(runs)
    if info.empty:
        return None
    fig, ax = _figure(9.0, max(3.2, 0.42 * len(info) + 2.0))
    ys = np.arange(len(info))[::-1]  # the first arm on top
    labelled = set()
    for y, r in zip(ys, info.itertuples()):
        if r.n == 0:
            ax.annotate("no paired seeds", (0, y), xytext=(6, 0), textcoords="offset points", va="center", fontsize=8)
            continue
        colour, label = _VERDICT_STYLE.get(r.verdict, ("0.45", "no measurable effect (interval includes 0)"))
        d = 100 * r.difference
        if math.isfinite(r.ci_low):
            err = [[max(0.0, d - 100 * r.ci_low)], [max(0.0, 100 * r.ci_high - d)]]
            ax.errorbar([d], [y], xerr=err, fmt="o", color=colour, capsize=4, ms=6,
                        label=None if label in labelled else label)
        else:
            label = "no interval (n = 1)"
            ax.plot([d], [y], "o", mfc="white", color="0.45", ms=6, label=None if label in labelled else label)
        labelled.add(label)
        ax.annotate(f"n={r.n}", (1.0, y), xycoords=("axes fraction", "data"), xytext=(4, 0),
                    textcoords="offset points", va="center", fontsize=8)
    ax.axvline(0.0, color="0.2", lw=1, ls="--", zorder=1)
    ax.set_yticks(ys, info["arm"])
    ax.set_ylim(-0.7, len(info) - 0.3)
    ax.set_xlabel(f"difference in {info['label'].iloc[0]} from the baseline (percentage points)")
    ax.set_title(f"Effect of each arm against the baseline (study '{runs.study}')\n"
                 "mean difference paired by seed, 95% confidence interval")
    ax.grid(axis="x", alpha=0.3)
    fig.legend(loc="outside lower center", ncols=2, fontsize=8)
    return fig


# --------------------------------------------------------------------------- knob importance (issue 11)


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
    fig, ax = _figure(9.0, max(3.2, 0.5 * len(table) + 2.0))
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
    ax.set_xlim(0, 1.02)
    ax.set_xlabel("share of importance (bar: median; whisker: 5th to 95th percentile)")
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(f"Knob importance for validation accuracy (fANOVA): {result.n_trials} completed full-budget "
                 f"trials,\n{int(table['n_resamples'].max())} bootstrap resamples", fontsize=10)
    return fig
