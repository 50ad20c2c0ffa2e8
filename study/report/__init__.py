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
`stats` (confidence intervals of means and of differences paired by seed),
`effects` (an ablation's arms against its baseline, pairs of variants),
`findings` (the sentences report.md opens with, generated from those numbers),
`importance` (knob importance by Optuna's fANOVA, and the knob figures' means
with intervals), `figures` (data + drawing of each figure), `registry` (FIGURES, which
figures a report has and where), `render` (report.md / report.html and `write_report`), `notebooks`,
`cores` (`fork_map`: the figures and the importance's forests on every core).
This module only re-exports, so `from study import report; report.X` works
for all of them.
"""

from .findings import FINDINGS_SECTION, Finding, findings, findings_markdown, findings_markers, include_findings
from .effects import (EFFECT_METRICS, EffectMetric, arm_order, effects_table, equivalence_margin, seed_means,
                      variant_differences)
from .figures import (
    KnobInfo,
    ParallelCoordinatesInfo,
    ParetoInfo,
    VariantCurves,
    effects_info,
    importance_info,
    knob_info,
    learning_curves_info,
    parallel_coordinates_info,
    pareto_info,
    plot_best_so_far,
    plot_effects,
    plot_importance,
    plot_knob,
    plot_learning_curves,
    plot_parallel_coordinates,
    plot_pareto,
    plot_variant_accuracy,
    variant_accuracy_info,
)
from .importance import Importance, importance_trials, knob_importance, marginal_means, t_interval
from .load import (COMPLETED, FAILED, KNOBS, RUNNING, ReportError, RunHistories, StudyRuns, list_studies, load_study,
                   open_study, save_runs)
from .registry import FIGURES, FigureSpec, figures
from .notebooks import NOTEBOOK_DIR, NOTEBOOKS, inject_parameters, run_notebooks
from .render import render_html, render_markdown, write_report
from .stats import (Effect, Interval, equivalence_test, mean_interval, minimum_detectable_effect, paired_difference,
                    paired_effect, verdict)
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
    # findings, statistics and effects
    "FINDINGS_SECTION", "Finding", "findings", "findings_markdown", "findings_markers", "include_findings",
    "EFFECT_METRICS", "EffectMetric", "Interval", "arm_order", "effects_info", "effects_table", "mean_interval",
    "paired_difference", "plot_effects", "seed_means", "variant_differences", "verdict",
    # the minimum detectable effect and equivalence beside every paired effect
    "Effect", "equivalence_margin", "equivalence_test", "minimum_detectable_effect", "paired_effect",
    # knob importance
    "Importance", "importance_info", "importance_trials", "knob_importance", "marginal_means", "plot_importance",
    "t_interval",
]
