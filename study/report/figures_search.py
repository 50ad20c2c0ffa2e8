"""The search's figures: best so far, one plot per knob, parallel coordinates and the Pareto fronts (each an
info function and a `plot_*` function, as in `figures.py`, which re-exports them). Accuracy is drawn as
validation error on a log axis zoomed to the competitive trials (`drawing.error_axis`): the trials
beyond it sit in a band at the top, counted in the figure."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .. import schema
from ..lazy import lazy
from .drawing import (ErrorRange, accuracy_percent, beyond_label, error_axis, error_locator, error_range, figure,
                      legend_below, minor_error_locator, percent, relabel, to_error)
from .importance import marginal_means
from .load import COMPLETED, FAILED, KNOB_TYPES, StudyRuns, is_missing
from .tables import best_so_far, pareto_front, varied_knobs

pd = lazy("pandas")
matplotlib = lazy("matplotlib")
mpl_cm = lazy("matplotlib.cm")
mpl_colors = lazy("matplotlib.colors")
mpl_ticker = lazy("matplotlib.ticker")

_LOG_KNOBS = {"learning_rate"}  # always drawn on a log axis; others only when they span 100x


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


def _time_unit(seconds: float) -> tuple[float, str]:
    if seconds >= 2 * 3600:
        return 3600.0, "h"
    if seconds >= 600:
        return 60.0, "min"
    return 1.0, "s"


def _trials_on_error_axis(ax, x, errors, rng: ErrorRange, label: str = "completed trial", edge: bool = True,
                          **style) -> int:
    """Trials as points at their error, those above the axis' cut (`edge`: also drawn, as open triangles in
    its top band, `_at_edge`); returns how many are above the cut."""
    x, errors = np.asarray(x, dtype=float), np.asarray(errors, dtype=float)
    out = rng.beyond(errors)
    style = {"s": 18, "color": "0.6", **style}
    ax.scatter(x[~out], errors[~out], label=label, **style)
    if edge:
        _at_edge(ax, x, errors, rng, style["color"], style["s"])
    return int(out.sum())


def _at_edge(ax, x, errors, rng: ErrorRange, colour, size: float = 18, label: str | None = None) -> None:
    """The points above the axis' cut as open triangles in its top band (not at their value)."""
    out = rng.beyond(np.asarray(errors, dtype=float))
    if out.any():
        ax.scatter(np.asarray(x, dtype=float)[out], np.full(out.sum(), rng.edge), marker="^", facecolors="none",
                   edgecolors=colour, s=size * 1.6, zorder=3, label=label or beyond_label(rng))


def plot_best_so_far(runs: StudyRuns):
    """Best validation error so far (lowest, on a log axis zoomed to the competitive trials) against trial
    number and against wall time (data: `best_so_far`)."""
    bsf = best_so_far(runs)
    done = bsf[bsf["state"] == COMPLETED]
    if done.empty:
        return None
    fig, (left, right) = figure(12.0, 5.2, ncols=2)
    rng = error_range(to_error(done["best_val_accuracy"]))
    n_out = _trials_on_error_axis(left, done["trial_number"], to_error(done["best_val_accuracy"]), rng)
    left.step(bsf["trial_number"], to_error(bsf["best_so_far"]), where="post", color="C3", lw=2, label="best so far")
    left.set_xlabel("trial number (in start order)")
    left.set_title("Best so far by trial" + ("\n" if len(runs.parents) > 1 else ""))
    timed = bsf.dropna(subset=["elapsed_s"]).sort_values("elapsed_s")
    scale, unit = _time_unit(float(timed["elapsed_s"].max()) if len(timed) else 0.0)
    tdone = timed[timed["state"] == COMPLETED]
    _trials_on_error_axis(right, tdone["elapsed_s"] / scale, to_error(tdone["best_val_accuracy"]), rng)
    right.step(timed["elapsed_s"] / scale, to_error(timed["best_so_far_at_time"]), where="post", color="C3", lw=2,
               label="best so far")
    right.set_xlabel(f"wall time at trial end ({unit})")
    gaps = "\n(from the study's start; idle time between invocations left out)" if len(runs.parents) > 1 else ""
    right.set_title(f"Best so far by wall time{gaps}")
    for ax in (left, right):
        error_axis(ax, rng, "best validation error")
        ax.grid(alpha=0.3)
    right.set_ylabel("")
    legend_below(fig)
    n_failed = int((bsf["state"] == FAILED).sum())
    note = f"; {n_failed} failed trial(s) not plotted" if n_failed else ""
    edge = f"; {n_out} above {percent(rng.cut)} error in the band at the top" if n_out else ""
    fig.suptitle(f"Study '{runs.study}': {len(done)} completed trials{note}{edge}")
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
    """Validation error (log axis, zoomed to the competitive trials) against one knob's values (completed
    trials; the best one starred), with the mean and its 95% t-interval per value, or per equal-count bin of
    a numeric knob (a mean dragged above the zoom by trials at chance sits in the top band)."""
    info = knob_info(runs, knob)
    done, best, cats, means = info.trials, info.best, info.categories, info.intervals
    if done.empty:
        return None
    fig, ax = figure(7.0, 5.0)
    err = to_error(done["best_val_accuracy"])
    rng = error_range(err)
    if cats is not None:
        groups = [err[(done[knob] == c).to_numpy()] for c in cats]
        ax.boxplot(groups, positions=range(len(cats)), widths=0.5, showfliers=False,
                   medianprops={"color": "C1"})
        x = np.array([cats.index(v) for v in done[knob]], dtype=float)
        x += np.random.default_rng(0).uniform(-0.12, 0.12, len(x))
        ax.set_xticks(range(len(cats)), [f"{c}\n(n={len(g)})" for c, g in zip(cats, groups)])
        best_x = cats.index(best[knob])
    else:
        x = done[knob].astype(float)
        if info.log:
            ax.set_xscale("log")
        best_x = float(best[knob])
    n_out = _trials_on_error_axis(ax, x, err, rng, label="completed trial", s=16, color="C0", alpha=0.7, zorder=3)
    ax.scatter([best_x], to_error([best["best_val_accuracy"]]), marker="*", s=180, color="C3",
               zorder=4, label=f"best: trial {best['trial_id']}")
    how = _draw_means(ax, means, rng, categorical=cats is not None)
    error_axis(ax, rng, "best validation error")
    ax.set_xlabel(knob)
    edge = f"\n{n_out} of them above {percent(rng.cut)} error: in the band at the top" if n_out else ""
    ax.set_title(f"{knob}: validation error of {len(done)} completed trials{edge}\n{how}", fontsize=10)
    ax.grid(alpha=0.3)
    legend_below(fig, ncols=2)
    return fig


def _draw_means(ax, means: pd.DataFrame, rng: ErrorRange, categorical: bool) -> str:
    """The means and 95% t-intervals of `marginal_means` on a knob's error axis (a mean above its cut: an
    open diamond in the top band, without its interval); returns what the title says."""
    if means is None or means.empty:
        return "too few trials for binned means"
    m = means.dropna(subset=["mean"])
    mean, low, high = to_error(m["mean"]), to_error(m["high"]), to_error(m["low"])  # accuracy up = error down
    err = np.nan_to_num(np.vstack([mean - low, high - mean]).clip(min=0))  # one trial: a mean without an interval
    out = rng.beyond(mean)
    x = m["x"].to_numpy(dtype=float) + (0.3 if categorical else 0.0)
    style = {"fmt": "D", "ms": 5, "color": "black", "capsize": 4, "zorder": 5}
    if categorical:
        ax.errorbar(x[~out], mean[~out], yerr=err[:, ~out], label="mean, 95% t-interval", **style)
        how = "black: mean with its 95% t-interval per value (none for n=1); box: quartiles"
    else:
        xerr = np.vstack([m["x"] - m["x_low"], m["x_high"] - m["x"]])
        ax.errorbar(x[~out], mean[~out], yerr=err[:, ~out], xerr=xerr[:, ~out], elinewidth=1.2,
                    label="bin mean, 95% t-interval", **style)
        how = (f"black: mean of {len(m)} equal-count bins with its 95% t-interval "
               "(horizontal bar: the bin's values)")
    if out.any():
        ax.scatter(x[out], np.full(out.sum(), rng.edge), marker="D", s=30, facecolors="white", edgecolors="black",
                   zorder=5, label="mean in the band at the top")
    return how


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
        elif name == "best_val_accuracy":  # by error on a log scale, the best on top: 99.2% and 98.4% stay apart
            t = pd.Series(-np.log10(to_error(col)), index=col.index)
            lo, hi = float(t.min()), float(t.max())
            positions[name] = (t - lo) / (hi - lo) if hi > lo else t * 0 + 0.5
            shown = [lo, hi] if hi > lo else [lo]
            ticks[name] = [((v - lo) / (hi - lo) if hi > lo else 0.5, accuracy_percent(10 ** -v)) for v in shown]
        else:
            vals = col.astype(float)
            log = _use_log(runs.completed[name], name)
            t = np.log10(vals) if log else vals
            lo, hi = float(t.min()), float(t.max())
            positions[name] = (t - lo) / (hi - lo) if hi > lo else t * 0 + 0.5
            shown = [lo, hi] if hi > lo else [lo]
            ticks[name] = [((v - lo) / (hi - lo) if hi > lo else 0.5, f"{10 ** v if log else v:.4g}") for v in shown]
    return ParallelCoordinatesInfo(axes_names, positions, ticks, done["best_val_accuracy"].astype(float))


def plot_parallel_coordinates(runs: StudyRuns, top: int = 15):
    """The top trials across the varied knobs and validation accuracy, that axis and the colours by log error
    (the best on top and yellow), so the best few stay apart when a poor trial makes the top 15."""
    info = parallel_coordinates_info(runs, top)
    if info is None:
        return None
    axes_names, acc = info.axes, info.accuracy
    fig, ax = figure(max(8.0, 1.4 * len(axes_names) + 2), 5.5)
    err = pd.Series(to_error(acc), index=acc.index)
    low, high = float(err.min()), float(err.max())
    norm = mpl_colors.LogNorm(vmin=low, vmax=high if high > low else low * 1.01)  # colour by error too
    cmap = matplotlib.colormaps["viridis_r"]  # the best yellow, as the line on top
    xs = np.arange(len(axes_names))
    for rank, (idx, e) in enumerate(err.items()):
        ys = [info.positions[n].loc[idx] for n in axes_names]
        ax.plot(xs, ys, color=cmap(norm(e)), lw=3.0 if rank == 0 else 1.3, alpha=0.9, zorder=3 if rank == 0 else 2)
    for i, name in enumerate(axes_names):
        ax.axvline(i, color="0.3", lw=1)
        for y, label in info.ticks[name]:
            ax.annotate(label, (i, y), xytext=(-4, 0), textcoords="offset points", ha="right", va="center",
                        fontsize=8, color="0.15", bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8})
    ax.set_xticks(xs, [n.replace("best_val_accuracy", "val accuracy\n(log error)") for n in axes_names], rotation=20,
                  ha="right")
    ax.set_yticks([])
    ax.set_ylim(-0.06, 1.06)
    ax.set_xlim(-0.6, len(axes_names) - 0.6)
    for spine in ("left", "right", "top"):
        ax.spines[spine].set_visible(False)
    bar = fig.colorbar(mpl_cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="best validation accuracy (log error)")
    bar.ax.invert_yaxis()  # the best on top, as on the accuracy axis
    ticks = ErrorRange(norm.vmin, norm.vmax, None)
    bar.ax.yaxis.set_major_locator(error_locator(ticks))
    bar.ax.yaxis.set_minor_locator(minor_error_locator(ticks))
    bar.ax.yaxis.set_major_formatter(mpl_ticker.FuncFormatter(lambda v, _: accuracy_percent(v)))
    bar.ax.yaxis.set_minor_formatter(mpl_ticker.NullFormatter())
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


PARETO_LABELS = 10  # labels per panel, the front's most accurate trials first (report.md's table lists them all)


def _draw_front(ax, done: pd.DataFrame, front: pd.DataFrame, cost: str, label: str, rng: ErrorRange):
    """One panel: every trial, the front as a staircase; returns what `place_labels` needs for the front's
    labels and the counts the title gives."""
    err = to_error(done["best_val_accuracy"])
    n_out = _trials_on_error_axis(ax, done[cost], err, rng, s=22, color="0.55", edge=False)
    front_err = to_error(front["best_val_accuracy"])
    ax.step(front[cost], rng.clip(front_err), where="post", color="C3", lw=1.2, alpha=0.7)
    inside = ~rng.beyond(front_err)
    ax.scatter(front[cost][inside], front_err[inside], s=60, color="C3", zorder=3, label="Pareto front")
    _at_edge(ax, done[cost], err, rng, "0.55", 22)
    _at_edge(ax, front[cost], front_err, rng, "C3", 60, label="Pareto front trial in the band at the top")
    values = done[cost].astype(float)
    if values.min() > 0 and values.max() / values.min() >= 10:  # plain numbers at 1-2-5, not 2x10^0
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(mpl_ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_minor_formatter(mpl_ticker.NullFormatter())
    ax.xaxis.set_major_formatter(mpl_ticker.FuncFormatter(lambda v, _: f"{v:,.0f}" if cost == "param_count" else f"{v:g}"))
    ax.set_xlabel(label)
    error_axis(ax, rng, "best validation error")
    ax.grid(alpha=0.3)
    shown = front[inside].assign(error=front_err[inside]).sort_values("error", kind="stable")
    points = list(zip(shown[cost].astype(float), shown["error"]))
    costs = front[cost].to_numpy(dtype=float)  # the staircase as drawn: labels keep off it
    stairs = np.column_stack([np.repeat(costs, 2)[1:], np.repeat(rng.clip(front_err), 2)[:-1]])
    others = np.column_stack([done[cost].to_numpy(dtype=float), rng.clip(err)])
    options = {"lines": [stairs], "avoid": others, "most": PARETO_LABELS}
    return points, [_label(row) for _, row in shown.iterrows()], (len(front), n_out), options


def _front_title(counts, left_out: list[str], rng: ErrorRange) -> str:
    n_front, n_out = counts
    parts = [f"front: {n_front} trial{'s' if n_front != 1 else ''}"]
    if left_out:
        parts.append(f"{len(left_out)} unlabelled (report.md lists the front)")
    if n_out:
        parts.append(f"{n_out} trial(s) above {percent(rng.cut)} error in the band at the top")
    return "; ".join(parts)


def plot_pareto(runs: StudyRuns):
    """Validation error (log axis, zoomed to the competitive trials) against parameter count and against
    inference latency (ms per image at batch 1, on the machine that trained each trial), each with its Pareto
    front (min error, min cost) marked and its most accurate trials labelled where the labels overlap
    nothing. One panel, parameters, when the study's runs predate latency measurement (the title says so)."""
    info = pareto_info(runs)
    if info.trials.empty:
        return None
    with_latency = not info.latency_trials.empty
    fig, axes = figure(15.0 if with_latency else 8.5, 5.6, ncols=2 if with_latency else 1)
    panels = list(axes) if with_latency else [axes]
    rng = error_range(to_error(pd.concat([info.trials, info.latency_trials])["best_val_accuracy"]))
    drawn = [_draw_front(panels[0], info.trials, info.front, "param_count", "parameters", rng)]
    titles = ["Error against model size"]
    if with_latency:
        drawn.append(_draw_front(panels[1], info.latency_trials, info.latency_front, schema.INFERENCE_MS,
                                 "inference latency (ms per image, batch 1)", rng))
        hosts = sorted(set(info.latency_trials["host"].dropna())) if "host" in info.latency_trials else []
        where = f" on {hosts[0]}" if len(hosts) == 1 else f" on {len(hosts)} hosts" if hosts else ""
        titles.append(f"Error against inference latency{where}")
        fig.suptitle("Pareto fronts: no trial on a front is beaten by another that is more accurate and cheaper")
    else:
        titles[0] += " (front: no trial is both more accurate and smaller)"
    legend_below(fig)

    def retitle(left_outs):
        for ax, title, (_, _, counts, _), left_out in zip(panels, titles, drawn, left_outs):
            note = _front_title(counts, left_out, rng)
            if not with_latency:
                note += "\ninference latency: not measured in this study's runs"
            ax.set_title(f"{title}\n{note}", fontsize=10)

    retitle([[] for _ in panels])
    relabel(fig, [(ax, points, texts, options) for ax, (points, texts, _, options) in zip(panels, drawn)], retitle)
    return fig
