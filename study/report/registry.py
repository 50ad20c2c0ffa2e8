"""The registry of the report's figures: FIGURES, the one list of them (file name, draw function, report.md
section and heading, alt text, and when the figure applies).

`figures(runs)` draws every figure that applies to a study, `save_figures(runs, folder)` draws and
writes them as PNG files on every core (what write_report does), its stale-file cleanup asks
`figure_spec` whose file a name is, and report.md is laid out from the same list. The drawing itself is
`figures.py`'s.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable, NamedTuple

from .figures import (plot_best_so_far, plot_effects, plot_importance, plot_knob, plot_learning_curves,
                      plot_parallel_coordinates, plot_pareto, plot_variant_accuracy)
from .cores import fork_map
from .factorial import interaction_items, is_factorial, plot_halfnormal, plot_interaction, plot_main_effects
from .isolation import is_isolation, plot_isolation
from .load import StudyRuns
from .tables import varied_knobs

VARIANTS_SECTION, SEARCH_SECTION = "Documented variants", "Search"  # report.md's "##" headings
EFFECTS_SECTION = "Effects"  # an ablation's arms against its baseline
ISOLATION_SECTION = "Isolation"  # an isolation study's values, each at its best over the nuisance knobs
FACTORIAL_SECTION = "Factorial screening"  # a factorial study's main effects and interactions


def _always(runs: StudyRuns) -> bool:
    return True


class FigureSpec(NamedTuple):
    """One figure of the report. A `name` with "{knob}" is one figure per varied knob (`draw(runs, knob)`)."""

    name: str  # file name in reports/<study>/
    draw: Callable[..., Any]  # draw(runs) or draw(runs, knob) -> Figure | None
    section: str  # VARIANTS_SECTION or SEARCH_SECTION
    heading: str | None  # its "###" heading in report.md (None: straight under the section)
    alt: str  # alt text ("{knob}" filled in)
    applies: Callable[[StudyRuns], bool] = _always
    intro: str = ""  # text under the heading; "{knobs}" = the knobs drawn
    items: Callable[[StudyRuns], list[str]] | None = None  # what "{knob}" stands for; None: the varied knobs

    @property
    def per_knob(self) -> bool:
        return "{knob}" in self.name

    def expand(self, runs: StudyRuns) -> list[tuple[str, tuple]]:
        """(file name, extra draw arguments) of each figure this entry makes for `runs`."""
        if not self.per_knob:
            return [(self.name, ())]
        return [(self.name.format(knob=knob), (knob,)) for knob in (self.items or varied_knobs)(runs)]

    def knob_of(self, file_name: str) -> str | None:
        """The knob a per-knob file name stands for ("" for a fixed name that matches; None: not this figure)."""
        head, _, tail = self.name.partition("{knob}")
        if not self.per_knob:
            return "" if file_name == self.name else None
        match = re.fullmatch(re.escape(head) + r"([A-Za-z0-9_]+)" + re.escape(tail), file_name)
        return match.group(1) if match else None

    def matches(self, file_name: str) -> bool:
        return self.knob_of(file_name) is not None

    def alt_for(self, file_name: str) -> str:
        return self.alt.format(knob=self.knob_of(file_name))


def _has_variants(runs: StudyRuns) -> bool:
    return not runs.variant_trials.empty


def _has_search(runs: StudyRuns) -> bool:
    return runs.has_search


def _is_ablation(runs: StudyRuns) -> bool:
    return not runs.arm_trials.empty


def _not_ablation(runs: StudyRuns) -> bool:
    """Knob plots read an ablation's one-knob arms, or a factorial's runs, unpaired: their own sections (Effects,
    Factorial screening) say it right."""
    return runs.arm_trials.empty and not is_factorial(runs)


FIGURES: tuple[FigureSpec, ...] = (
    FigureSpec("variant_accuracy.png", plot_variant_accuracy, VARIANTS_SECTION, None,
               "Error (1 − accuracy, log scale) of each documented variant", _has_variants),
    FigureSpec("variant_learning_curves.png", plot_learning_curves, VARIANTS_SECTION, None,
               "Validation error per epoch of each variant, log scale", _has_variants),
    FigureSpec("best_so_far.png", plot_best_so_far, SEARCH_SECTION, "Best so far",
               "Best validation error so far, log scale", _has_search),
    # knob importance (drawn or, when it cannot be computed, a one-line note in report.md)
    FigureSpec("importance.png", plot_importance, SEARCH_SECTION, "Knob importance",
               "Importance of each knob for validation accuracy", _has_search),
    FigureSpec("knob_{knob}.png", plot_knob, SEARCH_SECTION, "One axis plot per varied knob",
               "validation error (log scale) against {knob}", _not_ablation,
               intro="Knobs with more than one value among completed trials: {knobs}."),
    FigureSpec("parallel_coordinates.png", plot_parallel_coordinates, SEARCH_SECTION,
               "Top trials across the knobs", "Parallel coordinates", _not_ablation),
    FigureSpec("pareto.png", plot_pareto, SEARCH_SECTION, "Accuracy against cost: parameters and inference latency",
               "Pareto fronts: validation error against parameters and against inference latency"),
    # ablation studies
    FigureSpec("effects.png", plot_effects, EFFECTS_SECTION, None,
               "Effect of each arm against the baseline, with 95% confidence intervals", _is_ablation),
    FigureSpec("isolation.png", plot_isolation, ISOLATION_SECTION, None,
               "Validation error of every nuisance trial by scientific value, each value's best, and its retrains' "
               "test error with 95% confidence intervals (log scale)", is_isolation),
    # factorial studies
    FigureSpec("halfnormal.png", plot_halfnormal, FACTORIAL_SECTION, "Half-normal plot",
               "Half-normal (Daniel) plot of the effects on test accuracy, the ones whose interval excludes 0 named",
               is_factorial),
    FigureSpec("main_effects.png", plot_main_effects, FACTORIAL_SECTION, "Main effects",
               "Mean test error at each factor's two levels (log scale)", is_factorial),
    FigureSpec("interaction_{knob}.png", plot_interaction, FACTORIAL_SECTION, "Interactions",
               "Interaction plot {knob}: mean test error in the four cells (log scale)", is_factorial,
               intro="One plot for each two-knob interaction whose 95% interval on test accuracy excludes 0: {knobs}.",
               items=interaction_items),
)


def figure_spec(file_name: str) -> FigureSpec | None:
    """The registry entry a file name belongs to, if any."""
    return next((spec for spec in FIGURES if spec.matches(file_name)), None)


def _jobs(runs: StudyRuns) -> list[tuple[FigureSpec, str, tuple]]:
    """(entry, file name, extra draw arguments) of every figure that applies to this study, in FIGURES order."""
    return [(spec, name, args) for spec in FIGURES if spec.applies(runs) for name, args in spec.expand(runs)]


def figures(runs: StudyRuns) -> dict[str, Any]:
    """file name -> Figure for every figure that applies to this study, in FIGURES order."""
    drawn = ((name, spec.draw(runs, *args)) for spec, name, args in _jobs(runs))
    return {name: fig for name, fig in drawn if fig is not None}


def save_figures(runs: StudyRuns, folder: Path, dpi: int) -> list[str]:
    """Draw every figure that applies to this study and write it to folder/<file name> as a PNG; the file
    names written, in FIGURES order. Each figure is drawn and encoded in one of `cores.fork_map`'s
    processes, one per core: what a child computes for the study on the way (the knob importance, in
    `runs.memo`) is brought back, so report.md's tables use it without computing it again."""
    jobs = _jobs(runs)
    # The one thing a figure reads from the store (importance.png: the logged space file) is read here,
    # before the fork: a child must not use the connections to the store it inherits.
    runs.space_file  # noqa: B018 - a cached property, read for its side effect

    def draw_and_save(i: int) -> tuple[str | None, dict]:
        spec, name, args = jobs[i]
        known = set(runs.memo)
        fig = spec.draw(runs, *args)
        if fig is not None:
            fig.savefig(folder / name, dpi=dpi)
        return (name if fig is not None else None), {k: v for k, v in runs.memo.items() if k not in known}

    written = []
    for name, memo in fork_map(draw_and_save, len(jobs)):
        runs.memo.update(memo)
        if name is not None:
            written.append(name)
    return written
