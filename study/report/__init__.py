"""Reports: read a study's runs from the MLflow store and turn them into figures and tables.

Reports never train. `load_study` reads one study (an MLflow experiment named
after it, see `schema.py`) into pandas: the parent runs, one row per trial
(child run) and the per-epoch metric histories. The table functions
(`replication_table`, `best_so_far`, `pareto_front`, `leaderboard`,
`failed_trials`) and the `plot_*` functions work on that object only, so the
notebooks in `reports/` call the very same code. `write_report` writes
`reports/<study>/` (PNG figures, `report.md`, a self-contained `report.html`)
and attaches the files to the study's parent run under "report";
`run_notebooks` executes the two notebooks headlessly for one study and
renders them to HTML beside the report.

One job per module: `load` (the store, through `study.tracking`), `tables`,
`figures` (data + drawing of each figure, and the FIGURES registry), `render`
(report.md / report.html and `write_report`), `notebooks`. This module only
re-exports, so `from study import report; report.X` works for all of them.
"""

from .figures import (
    FIGURES,
    FigureSpec,
    KnobInfo,
    ParallelCoordinatesInfo,
    ParetoInfo,
    VariantCurves,
    figures,
    knob_info,
    learning_curves_info,
    parallel_coordinates_info,
    pareto_info,
    plot_best_so_far,
    plot_knob,
    plot_learning_curves,
    plot_parallel_coordinates,
    plot_pareto,
    plot_variant_accuracy,
    variant_accuracy_info,
)
from .load import (COMPLETED, FAILED, KNOBS, RUNNING, ReportError, RunHistories, StudyRuns, list_studies, load_study,
                   open_study, save_runs)
from .notebooks import NOTEBOOK_DIR, NOTEBOOKS, inject_parameters, run_notebooks
from .render import render_html, render_markdown, write_report
from .tables import (
    best_so_far,
    failed_trials,
    knob_list,
    leaderboard,
    pareto_front,
    replication_table,
    reproduce_command,
    varied_knobs,
)

__all__ = [
    "COMPLETED", "FAILED", "FIGURES", "KNOBS", "NOTEBOOKS", "NOTEBOOK_DIR", "RUNNING",
    "FigureSpec", "KnobInfo", "ParallelCoordinatesInfo", "ParetoInfo", "ReportError", "StudyRuns", "VariantCurves",
    "best_so_far", "failed_trials", "figures", "inject_parameters", "knob_info", "knob_list", "leaderboard",
    "learning_curves_info", "list_studies", "load_study", "open_study", "parallel_coordinates_info", "pareto_front",
    "pareto_info", "RunHistories", "save_runs",
    "plot_best_so_far", "plot_knob", "plot_learning_curves", "plot_parallel_coordinates", "plot_pareto",
    "plot_variant_accuracy", "render_html", "render_markdown", "replication_table", "reproduce_command",
    "run_notebooks", "varied_knobs", "variant_accuracy_info", "write_report",
]
