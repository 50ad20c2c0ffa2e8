"""What every figure draws with (`figure`: a matplotlib Figure on an Agg canvas, never pyplot; `legend_below`), and what
keeps the figures readable where the action is: accuracy drawn as error on a log axis zoomed to the
competitive trials, and text labels placed where they overlap nothing.

MNIST results live between 98% and 99.5% accuracy, beside trials stuck at chance (10%): on an accuracy
axis from 0.1 to 1.0 every trial worth seeing sits in a flat band at the top. Drawn as error (1 − accuracy)
on a log axis, 0.8% and 1.6% are as far apart as 8% and 16%, and the axis stops at ZOOM times the best
error (or higher, when what the figure is about lies there): worse trials are drawn in a band at its top and
counted, so the figure says what it leaves out. `error_axis` sets the scale, limits and ticks (error on
the left, the same ticks as accuracy on the right); `place_labels` puts each label at the first of a
fixed list of spots around its point where it overlaps no other label, point or legend and stays
inside the axes (deterministic: no dependency, no random layout).
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import numpy as np

from ..lazy import lazy

mpl_agg = lazy("matplotlib.backends.backend_agg")
mpl_figure = lazy("matplotlib.figure")
mpl_text = lazy("matplotlib.text")
mpl_ticker = lazy("matplotlib.ticker")
mpl_transforms = lazy("matplotlib.transforms")

ZOOM = 10.0  # the error axis reaches 10x the best error (one decade); worse trials go to a band at its top
FLOOR = 1e-4  # where an accuracy of 1.0 is drawn: a log axis has no 0% error


def to_error(accuracy) -> np.ndarray:
    """1 − accuracy as floats (NaN stays NaN; 0 or less becomes FLOOR)."""
    err = 1.0 - np.asarray(accuracy, dtype=float)
    return np.where(np.isnan(err), np.nan, np.maximum(err, FLOOR))


class ErrorRange(NamedTuple):
    """An error axis: its limits, and the error above which points are drawn in a band at the top, at
    height `edge` (`cut` None: every point fits, no band)."""

    low: float
    high: float
    cut: float | None
    edge: float | None = None

    def clip(self, errors) -> np.ndarray:
        """Errors as drawn: those above `cut` in the top band."""
        err = np.asarray(errors, dtype=float)
        return err if self.cut is None else np.where(err > self.cut, self.edge, err)

    def beyond(self, errors) -> np.ndarray:
        """Which errors are above `cut` (drawn in the top band)."""
        err = np.asarray(errors, dtype=float)
        return np.zeros(err.shape, bool) if self.cut is None else err > self.cut


def error_range(errors, keep=()) -> ErrorRange:
    """The axis for `errors`: from just under the best to ZOOM x the best, or up to the largest of `keep`
    (values the figure is about, e.g. means or final epochs) when that is higher; never above 100%. Past
    the cut, a band for the points beyond it."""
    err = np.asarray(errors, dtype=float)
    err = err[np.isfinite(err)]
    if err.size == 0:
        return ErrorRange(0.001, 1.0, None)
    kept = np.asarray(keep, dtype=float)
    kept = kept[np.isfinite(kept)]
    best, worst = float(err.min()), float(max(err.max(), kept.max() if kept.size else 0.0))
    cut = max(best * ZOOM, float(kept.max()) if kept.size else best)
    top = min(worst, cut)
    if top <= best:  # one value: a small span around it
        best, top = best / 1.5, top * 1.5
    span = math.log10(top / best)
    pad = max(0.05 * span, 0.03)  # in decades
    if worst <= cut:
        return ErrorRange(best / 10 ** pad, min(top * 10 ** pad, 1.0), None)
    band = max(0.1 * span, 0.06)
    return ErrorRange(best / 10 ** pad, cut * 10 ** (2 * pad + band), cut, cut * 10 ** (pad + band / 2))


def percent(value: float) -> str:
    """0.0125 -> "1.25%", 0.5 -> "50%" (three significant digits, no trailing zeros)."""
    return f"{float(f'{100 * value:.3g}'):g}%"


def accuracy_percent(error: float) -> str:
    """The accuracy of an error, with as many decimals as `percent(error)` shows: 0.0125 -> "98.75%"."""
    shown = percent(error)[:-1]
    decimals = len(shown.partition(".")[2])
    return f"{100 - float(shown):.{decimals}f}%"


def error_locator(rng: ErrorRange):
    """Ticks at 1-2-5 (1-1.5-2-3-5-7 on a short axis; evenly spaced on one too short for those), none in the
    top band: its points are not at their value."""
    top = rng.cut if rng.cut is not None else rng.high
    decades = math.log10(top / rng.low)
    if decades < 0.45:  # too narrow for ticks at 1-2-5 (and a log axis is nearly linear here)
        locator = mpl_ticker.MaxNLocator(nbins=5, steps=[1, 2, 2.5, 5, 10])
    else:
        locator = mpl_ticker.LogLocator(subs=(1.0, 1.5, 2.0, 3.0, 5.0, 7.0) if decades < 1.3 else (1.0, 2.0, 5.0))
    return mpl_ticker.FixedLocator([t for t in locator.tick_values(rng.low, top) if rng.low <= t <= top * 1.0001])


def minor_error_locator(rng: ErrorRange):
    top = rng.cut if rng.cut is not None else rng.high
    return mpl_ticker.FixedLocator([t for t in mpl_ticker.LogLocator(subs="all").tick_values(rng.low, top) if rng.low <= t <= top * 1.0001])


def error_axis(ax, rng: ErrorRange, what: str = "validation error", axis: str = "y", accuracy_side: bool = True):
    """Draw `axis` of `ax` as error on a log scale over `rng`: ticks in percent, and (`accuracy_side`) the
    same ticks as accuracy on the opposite side."""
    target = ax.yaxis if axis == "y" else ax.xaxis
    (ax.set_yscale if axis == "y" else ax.set_xscale)("log")
    (ax.set_ylim if axis == "y" else ax.set_xlim)(rng.low, rng.high)
    target.set_major_locator(error_locator(rng))
    target.set_major_formatter(mpl_ticker.FuncFormatter(lambda v, _: percent(v)))
    target.set_minor_locator(minor_error_locator(rng))
    target.set_minor_formatter(mpl_ticker.NullFormatter())
    target.set_label_text(f"{what} (log scale)")
    if rng.cut is not None:  # the band above it holds the points beyond the cut, not to scale
        (ax.axhline if axis == "y" else ax.axvline)(rng.cut, color="0.5", lw=0.8, ls=":", zorder=1)
    if accuracy_side:
        identity = (lambda v: v, lambda v: v)
        side = (ax.secondary_yaxis("right", functions=identity) if axis == "y"
                else ax.secondary_xaxis("top", functions=identity))
        other = side.yaxis if axis == "y" else side.xaxis
        other.set_major_locator(error_locator(rng))
        other.set_major_formatter(mpl_ticker.FuncFormatter(lambda v, _: accuracy_percent(v)))
        other.set_minor_locator(minor_error_locator(rng))
        other.set_minor_formatter(mpl_ticker.NullFormatter())
        other.set_label_text("accuracy")
    return ax


def beyond_label(rng: ErrorRange, n: int | None = None, what: str = "trial") -> str:
    """Legend text of the points drawn in the top band (`n` of them, when given)."""
    count = f"{n} {what}{'s' if n != 1 else ''}" if n is not None else f"{what}s"
    return f"{count} above {percent(rng.cut)} error (in the band at the top)"


def figure(width: float = 8.0, height: float = 5.0, ncols: int = 1, nrows: int = 1):
    """A matplotlib Figure (constrained layout) on its own Agg canvas, never pyplot, and its `nrows` x `ncols`
    axes (one row: a single axes or a 1-d array, as fig.subplots gives them)."""
    fig = mpl_figure.Figure(figsize=(width, height), layout="constrained")
    mpl_agg.FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols)
    return fig, axes



def legend_below(fig, ncols: int = 3) -> None:
    """One legend for every axes of the figure, below them (entries with the same label once)."""
    entries = {}
    for ax in fig.axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    fig.legend(entries.values(), entries.keys(), loc="outside lower center", ncols=ncols, fontsize=9)


# --------------------------------------------------------------------------- labels that overlap nothing

# Offsets tried around a point, in points, nearest first: right, left, above, below, then the diagonals,
# then twice and three times as far (with a thin line back to the point).
_DIRECTIONS = ((1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (1, -1), (-1, 1), (-1, -1))
_RADII = (6, 16, 28)


def join_labels(texts: Sequence[str], most: int = 3) -> str:
    """One label for points drawn on top of each other: "trial 06", "trial 00" -> "trials 06, 00"; past
    `most` of them, how many more ("trials 18, 18.1, 18.2 +7")."""
    if len(texts) == 1:
        return texts[0]
    more = f" +{len(texts) - most}" if len(texts) > most else ""
    if all(t.startswith("trial ") for t in texts):
        return "trials " + ", ".join(t[len("trial "):] for t in texts[:most]) + more
    return ", ".join(texts[:most]) + more


def text_extent(text, renderer=None):
    """The window extent of a Text's or an Annotation's text alone (an Annotation's own extent also covers
    its line back to the point)."""
    text.get_window_extent(renderer)  # an Annotation places its text here
    return mpl_text.Text.get_window_extent(text, renderer)


def _hits(box, boxes: np.ndarray) -> bool:
    """Whether `box` overlaps any row (x0, y0, x1, y1) of `boxes`."""
    return bool(len(boxes)) and bool(np.any((box.x0 < boxes[:, 2]) & (boxes[:, 0] < box.x1)
                                             & (box.y0 < boxes[:, 3]) & (boxes[:, 1] < box.y1)))


def _squares(px: np.ndarray, half: float) -> np.ndarray:
    return np.column_stack([px[:, 0] - half, px[:, 1] - half, px[:, 0] + half, px[:, 1] + half]) if len(px) else \
        np.empty((0, 4))


def _along(polyline: np.ndarray, step: float = 3.0) -> np.ndarray:
    """Points every `step` pixels along a polyline (display coordinates)."""
    out = [polyline[:1]]
    for a, b in zip(polyline[:-1], polyline[1:]):
        n = max(1, int(np.hypot(*(b - a)) // step))
        out.append(a + (b - a) * (np.arange(1, n + 1)[:, None] / n))
    return np.concatenate(out)


def place_labels(ax, points: Sequence[tuple[float, float]], texts: Sequence[str], lines=(), avoid=(),
                 most: int | None = None, fontsize: float = 8, marker_px: float = 8.0,
                 draw: bool = True) -> tuple[list, list[str]]:
    """Annotate each point (data coordinates) with its text at the first spot, of a fixed list around it,
    where the label stays inside the axes and overlaps no label placed before, none of `points`, no line
    of `lines` (polylines, data coordinates) and no legend; and, where some spot allows it, none of `avoid`
    either (more points: the other trials). Points drawn within a few pixels of each other share one label
    (`join_labels`); at most `most` labels, in the order of `points`. Call it last, once everything else is
    on the figure: it lays the figure out to measure the text (not when `draw` is False: done already, since
    the last change; `relabel` when something changes the layout afterwards). Returns the annotations and
    the texts of the points left unlabelled."""
    fig = ax.figure
    if draw:
        fig.draw_without_rendering()  # lays the figure out (constrained layout): text extents are final
    renderer = fig.canvas.get_renderer()
    to_px = ax.transData.transform
    px = to_px(np.asarray(points, dtype=float).reshape(-1, 2))
    groups: list[tuple[tuple[float, float], np.ndarray, list[str]]] = []
    for p, q, text in zip(points, px, texts):
        near = next((g for g in groups if np.all(np.abs(g[1] - q) <= 3)), None)
        if near is None:
            groups.append((p, q, [text]))
        else:
            near[2].append(text)
    half = marker_px / 2 * fig.dpi / 72
    on_lines = [_along(to_px(np.asarray(line, dtype=float).reshape(-1, 2))) for line in lines]
    hard = np.vstack([_squares(px, half), _squares(np.concatenate(on_lines), 1.0) if on_lines else np.empty((0, 4)),
                      *[[tuple(legend.get_window_extent(renderer).extents)]
                        for legend in [*fig.legends, ax.get_legend()] if legend is not None]])
    soft = _squares(to_px(np.asarray(avoid, dtype=float).reshape(-1, 2)), half * 0.6)
    frame = ax.get_window_extent(renderer)
    left_out, annotations = [text for _, _, group in groups[most:] for text in group] if most is not None else [], []
    scale = fig.dpi / 72  # points to pixels
    for point, (px_x, px_y), group in groups[:most]:
        text = join_labels(group)
        probe = ax.text(0, 0, text, fontsize=fontsize, transform=ax.transAxes)  # measured once: spots computed
        size = probe.get_window_extent(renderer)
        probe.remove()
        spot = next((
            (dx, dy, radius) for strict in (True, False) for radius in _RADII for dx, dy in _DIRECTIONS
            if _fits(_spot_box(px_x, px_y, dx, dy, radius * scale, size.width, size.height).padded(1.5), frame,
                     hard, soft if strict else None)), None)
        if spot is None:
            left_out += group
            continue
        dx, dy, radius = spot
        ann = ax.annotate(
            text, point, xytext=(dx * radius, dy * radius), textcoords="offset points", fontsize=fontsize,
            ha={1: "left", -1: "right", 0: "center"}[dx], va={1: "bottom", -1: "top", 0: "center"}[dy],
            arrowprops={"arrowstyle": "-", "lw": 0.5, "color": "0.4", "shrinkA": 0, "shrinkB": 3}
            if radius > _RADII[0] else None)
        ann.set_in_layout(False)  # the layout measured above stays as it is
        box = _spot_box(px_x, px_y, dx, dy, radius * scale, size.width, size.height).padded(1.5)
        hard = np.vstack([hard, [box.extents]])
        annotations.append(ann)
    return annotations, left_out


def _spot_box(x: float, y: float, dx: int, dy: int, offset: float, width: float, height: float):
    """The box (pixels) of a text `width` x `height` placed `offset` pixels from (x, y) in direction (dx, dy),
    aligned as `place_labels` aligns it (left of its anchor when right of the point, and so on)."""
    ax_, ay_ = x + dx * offset, y + dy * offset
    x0 = ax_ if dx > 0 else ax_ - width if dx < 0 else ax_ - width / 2
    y0 = ay_ if dy > 0 else ay_ - height if dy < 0 else ay_ - height / 2
    return mpl_transforms.Bbox.from_bounds(x0, y0, width, height)


def _fits(box, frame, hard: np.ndarray, soft: np.ndarray | None) -> bool:
    inside = frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
    return inside and not _hits(box, hard) and (soft is None or not _hits(box, soft))


def relabel(fig, jobs, then=None, attempts: int = 3) -> list[list[str]]:
    """`place_labels(ax, points, texts, **options)` for each (ax, points, texts, options) of `jobs`, then
    `then(left_outs)`, which may retitle the axes; placed again (up to `attempts` times) while that moves
    the axes, since a layout change would move the labels off their measured spots. Returns each job's
    left-out texts."""
    fig.draw_without_rendering()
    for attempt in range(attempts):
        # one layout for every axes: labels are out of the layout, placing some moves nothing
        placed = [place_labels(ax, points, texts, draw=False, **options) for ax, points, texts, options in jobs]
        where = [ax.get_position().bounds for ax, *_ in jobs]
        left_outs = [left_out for _, left_out in placed]
        if then is not None:
            then(left_outs)
        fig.draw_without_rendering()
        moved = not np.allclose([ax.get_position().bounds for ax, *_ in jobs], where, atol=1e-6)
        if not moved or attempt == attempts - 1:
            break
        for annotations, _ in placed:
            for ann in annotations:
                ann.remove()
    return left_outs
