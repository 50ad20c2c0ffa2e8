"""The search benchmark's figure, `search_quality.png`: anytime curves over seeds and the expected maximum.

Three panels, each drawn with the report's helpers (study/report/drawing.py: accuracy as error on a log
axis): each search's best validation accuracy so far against wall time and against trials (median over
seeds, the interquartile band shaded), and Dodge et al.'s expected maximum validation accuracy of n random
trials (median over seeds) beside the other searches' median best. `QualityCurves` is the data; `draw_quality`
only draws it.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..report.drawing import error_axis, error_range, figure, legend_below, to_error
from .compare import Band

COLORS = {"lenet-study": "tab:blue", "optuna": "tab:orange", "random": "tab:green"}


class QualityCurves(NamedTuple):
    """Per search (its name): the band against wall time (s) and against trials; the random search's expected
    maximum against n; each search's final best validation accuracy, median over seeds; the seeds."""

    by_time: dict[str, Band]
    by_trials: dict[str, Band]
    expected_max: Band
    best_val: dict[str, float]
    seeds: int


def _band(ax, band: Band, name: str, rng) -> None:
    ok = np.isfinite(band.median)
    if not ok.any():
        return
    x = band.grid[ok]
    ax.fill_between(x, rng.clip(to_error(band.low[ok])), rng.clip(to_error(band.high[ok])), color=COLORS.get(name),
                    alpha=0.2, lw=0, step="post")
    ax.step(x, rng.clip(to_error(band.median[ok])), where="post", color=COLORS.get(name), lw=1.6, label=name)


def draw_quality(curves: QualityCurves, path: str | Path) -> Path:
    """Draw `curves` into `path` (PNG); returns the path."""
    bands = [*curves.by_time.values(), *curves.by_trials.values(), curves.expected_max]
    errors = np.concatenate([to_error(b.median) for b in bands] + [to_error(b.high) for b in bands])
    # The axis is about the medians and their bands; the first, worst trials go to the band at the top.
    rng = error_range(errors, keep=to_error([min(curves.best_val.values(), default=np.nan)]) * 3)
    fig, axes = figure(15.0, 5.0, ncols=3)
    for ax, by, xlabel in ((axes[0], curves.by_time, "wall time since the search started (s)"),
                           (axes[1], curves.by_trials, "trials (every trial: completed, pruned or failed)")):
        for name, band in by.items():
            _band(ax, band, name, rng)
        error_axis(ax, rng, "best validation error so far", accuracy_side=ax is axes[1])
        ax.set_xlabel(xlabel)
    axes[0].set_title(f"best so far against time: median, quartiles over {curves.seeds} seeds", fontsize=10)
    axes[1].set_title("best so far against trials", fontsize=10)
    ax = axes[2]
    band = curves.expected_max
    ok = np.isfinite(band.median)
    if ok.any():
        ax.fill_between(band.grid[ok], rng.clip(to_error(band.low[ok])), rng.clip(to_error(band.high[ok])),
                        color=COLORS["random"], alpha=0.2, lw=0)
        ax.plot(band.grid[ok], rng.clip(to_error(band.median[ok])), color=COLORS["random"], marker=".",
                label="random")
    for name, value in curves.best_val.items():
        if name != "random" and np.isfinite(value):
            ax.axhline(float(rng.clip(to_error([value]))[0]), color=COLORS.get(name), ls="--", lw=1,
                       label=f"{name}: its best, median")
    error_axis(ax, rng, "expected best validation error")
    ax.set_xlabel("n random trials")
    ax.set_title("expected maximum of n random trials (Dodge et al. 2019)", fontsize=10)
    legend_below(fig, ncols=5)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path
