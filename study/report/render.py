"""Rendering: report.md and its self-contained report.html, and `write_report`, which writes them with the figures.

`write_report` lives here rather than in `__init__` because writing the
report is the last step of rendering it (figures to PNG, markdown, HTML,
stale files out) and keeps `__init__` a list of re-exports with no logic.
The figures, their headings and alt texts come from the registry
`registry.FIGURES`; nothing here spells a figure's file name.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import os
import re
import urllib.parse
from pathlib import Path
from typing import Any

import markdown
import numpy as np

from .. import schema
from ..files import folder_name
from .effects import EFFECT_METRICS, effects_table, equivalence_margin, magnitude, variant_differences
from .figures import plot_importance, plot_pareto
from .isolation import best_configurations, is_isolation, isolation_effects, nuisance_knobs, retrain_summary
from .factorial import design_checks, design_sentence, factorial_effects, is_factorial
from .registry import (EFFECTS_SECTION, FACTORIAL_SECTION, FIGURES, ISOLATION_SECTION, SEARCH_SECTION, VARIANTS_SECTION,
                       figure_spec, save_figures)
from .findings import findings_markdown
from .importance import knob_importance
from .load import COMPLETED, FAILED, RUNNING, StudyRuns, is_missing, load_study
from .tables import COSTS, failed_trials, leaderboard, measured, pareto_front, replication_table, varied_knobs

REPORT_MD, REPORT_HTML = "report.md", "report.html"


def _fmt(value: Any, kind: str = "") -> str:
    if is_missing(value):
        return "—"
    if kind == "acc":
        return f"{float(value):.4f}"
    if kind == "signed":
        return f"{float(value):+.4f}"
    if kind == "int":
        return f"{int(round(float(value))):,}"
    if kind == "s":
        return f"{float(value):.1f}"
    if kind == "ms":
        return f"{float(value):.2f}"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _cell(value: Any) -> str:
    text = re.sub(r"\s+", " ", str(value)).strip()
    if len(text) > 300:
        text = text[:297] + "..."
    return text.replace("|", "\\|")


def _md_table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


# --------------------------------------------------------------------------- sections


def _settings_section(runs: StudyRuns) -> list[str]:
    params = runs.parent_params
    tags = runs.parent_tags
    lines = ["## Study settings", ""]
    earlier = (f" Child runs of earlier searches (before `search --fresh`) are left out: "
               f"{runs.n_earlier_search_runs}." if runs.n_earlier_search_runs else "")
    lines.append(
        f"From parent run [`{runs.parent_run_id}`]({runs.parent_run_url}) "
        f"(started {runs.parent['start_time']:%Y-%m-%d %H:%M UTC}, status {runs.parent['status']}), the latest "
        f"of {len(runs.parents)} parent run(s) (invocations) of this search.{earlier}"
    )
    lines.append("")
    if params:
        lines.append(_md_table(["param", "value"], [[k, f"`{v}`"] for k, v in sorted(params.items())]))
    else:
        lines.append("The parent run records no params.")
    named = [
        ("space file", schema.SPACE_FILE), ("space digest", schema.SPACE_DIGEST), ("git commit", schema.GIT_COMMIT),
        ("command", schema.COMMAND), ("search id", schema.SEARCH_ID),
    ]
    rows = [[label, f"`{tags[key]}`"] for label, key in named if key in tags]
    skip = {key for _, key in named} | {schema.ROLE, schema.STUDY}
    rows += [[key, f"`{value}`"] for key, value in sorted(tags.items())
             if key.startswith("lenet.") and key not in skip and not key.startswith(schema.DATA_PREFIX)]
    if rows:
        lines += ["", _md_table(["tag", "value"], rows)]
    return lines + [""]


def _provenance_section(runs: StudyRuns) -> list[str]:
    lines = ["## Data provenance", ""]
    data_tags = {k[len(schema.DATA_PREFIX):]: v for k, v in runs.parent_tags.items() if k.startswith(schema.DATA_PREFIX)}
    order = ("name", "resolved", "source", "n_train", "n_test", "digest", "note")
    keys = [k for k in order if k in data_tags] + sorted(set(data_tags) - set(order))
    if data_tags:
        lines.append(f"Parent run tags `{schema.DATA_PREFIX}*`:")
        lines += ["", _md_table(["field", "value"], [[k, f"`{data_tags[k]}`"] for k in keys])]
    else:
        lines.append(f"No `{schema.DATA_PREFIX}*` tags on the parent run.")
    lines.append("")
    if runs.datasets:
        lines.append("Dataset inputs of the parent run (MLflow dataset lineage):")
        rows = []
        for d in runs.datasets:
            rows.append([d["name"], d["context"] or "—", f"`{d['digest']}`", d["source_type"],
                         f"`{d['source']}`", f"`{d['profile']}`" if d["profile"] else "—"])
        lines += ["", _md_table(["dataset", "context", "digest", "source type", "source", "profile"], rows)]
    else:
        lines.append("The parent run logged no dataset input.")
    return lines + [""]


def _summary_line(runs: StudyRuns) -> str:
    t = runs.trials
    counts = {s: int((t["state"] == s).sum()) for s in (COMPLETED, FAILED, RUNNING)}
    best = runs.completed.sort_values("best_val_accuracy", ascending=False).iloc[0]
    dup = runs.n_child_runs - len(t)
    dup_note = f" ({dup} older duplicate run(s) of the same trial ids ignored)" if dup else ""
    return (
        f"{len(t)} trials{dup_note}: {counts[COMPLETED]} completed, {counts[FAILED]} failed or NaN, "
        f"{counts[RUNNING]} running or interrupted. Best validation accuracy "
        f"{best['best_val_accuracy']:.4f} ("
        + (f"{best['variant']}, " if not is_missing(best["variant"]) else "")
        + f"trial {best['trial_id']})."
    )


# The leaderboard's cost columns beside "params": column, header, format; "not measured" where a run lacks it.
_COST_COLUMNS = ((schema.INFERENCE_MS, "ms/image (batch 1)", "ms"), (schema.INFERENCE_IPS, "images/s (batch 256)", "int"),
                 (schema.EPOCH_SECONDS, "s/epoch", "s"))
NOT_MEASURED = "not measured"


def _leaderboard_section(runs: StudyRuns, top: int) -> list[str]:
    board = leaderboard(runs, top)
    knobs = varied_knobs(runs)
    show_variant = board["variant"].notna().any()
    costs = [c for c in _COST_COLUMNS if board[c[0]].notna().any()]
    missing = [header for column, header, _ in _COST_COLUMNS if (column, header, _) not in costs]
    header = ["#", "trial"] + (["variant", "seed"] if show_variant else []) + knobs + [
        "val acc", "test acc", "params"] + [h for _, h, _ in costs] + ["epochs run", "time (s)", "run id"]
    rows = []
    for _, r in board.iterrows():
        row = [r["rank"], r["trial_id"]] + ([_fmt(r["variant"]), _fmt(r["seed"])] if show_variant else [])
        row += [_fmt(r[k]) for k in knobs]
        row += [_fmt(r["best_val_accuracy"], "acc"), _fmt(r["test_accuracy"], "acc"), _fmt(r["param_count"], "int")]
        row += [NOT_MEASURED if is_missing(r[c]) else _fmt(r[c], kind) for c, _, kind in costs]
        row += [_fmt(r["epochs_run"], "int"), _fmt(r["wall_time_s"], "s"), f"`{r['run_id']}`"]
        rows.append(row)
    cost_note = ("Cost: inference through the model's compiled predict function on the machine that trained it "
                 "(median of 5 rounds after a warm-up), training seconds per epoch from the fit's time.")
    if missing:
        cost_note += f" {NOT_MEASURED.capitalize()} in these runs: {', '.join(missing)} (recorded before it was)."
    lines = [f"## Leaderboard (top {len(board)} by validation accuracy)", "",
             "Ranked by best validation accuracy; test accuracy only where the trial was evaluated on test. "
             + cost_note, "",
             _md_table(header, rows), "", "### Reproduce a trial", "",
             "`lenet-study train --run RUN_ID` retrains the config recorded in that run's params; "
             "the knob list beside it is the same config spelled out.", "", "```"]
    for _, r in board.iterrows():
        lines.append(f"# {r['rank']}. trial {r['trial_id']}: val {r['best_val_accuracy']:.4f}")
        lines.append(r["command"])
        lines.append(f"#   knobs: {r['knobs']}")
    lines += ["```", ""]
    return lines


def _replication_section(runs: StudyRuns) -> list[str]:
    table = replication_table(runs)
    if table.empty:
        return []
    lines = [
        f"## {VARIANTS_SECTION}", "",
        "### Replication: reported figure vs measured TEST accuracy", "",
        "The tutorials' figures are de facto test/held-out figures, so they are set beside the measured "
        "**test** accuracy: the mean over seed replicates with its 95% confidence interval (a t interval over "
        "the seeds taken on the logit scale, so that it stays between 0 and 100% however few and spread out the "
        "seeds are; none with one seed; `interval` names the method), and whether the tutorial's figure falls "
        "inside that interval. Difference = measured test mean − reported. Both only where the variant ran on "
        "the dataset its tutorial measured (a figure about another dataset is shown in parentheses with that "
        "dataset, and not compared). "
        "Validation accuracy is the best epoch's, on the validation split carved from the training set.", "",
    ]
    rows = []
    for _, r in table.iterrows():
        rows.append([
            r["variant"], _fmt(r["measured_dataset"]), f"{r['n']}" + (f" (+{r['n_failed']} failed)" if r["n_failed"] else ""),
            _fmt(r["seeds"]), _claim(r), _fmt(r["reported_as"]),
            _mean_ci(r["test_mean"], r["test_ci_low"], r["test_ci_high"]), _yes_no(r["claim_in_ci"]),
            _fmt(r["difference"], "signed"), _mean_ci(r["val_mean"], r["val_ci_low"], r["val_ci_high"]),
            _fmt(r["test_ci_method"]), _fmt(r["params_doc"], "int"), _fmt(r["params_measured"], "int"), r["note"] or "",
        ])
    lines.append(_md_table(
        ["variant", "dataset", "n", "seeds", "reported", "reported as", "measured TEST mean [95% CI]",
         "reported inside the CI", "difference (test − reported)", "measured val mean [95% CI]", "interval",
         "params (doc)", "params (measured)", "note"],
        rows))
    return lines + [""]


def _mean_ci(mean: Any, low: Any, high: Any) -> str:
    if is_missing(mean):
        return "—"
    return f"{mean:.4f}" + ("" if is_missing(low) else f" [{low:.4f}, {high:.4f}]")


def _yes_no(value: Any) -> str:
    return "—" if value is None or is_missing(value) else ("yes" if value else "no")


def _claim(r) -> str:
    """The tutorial's figure; in parentheses, with its dataset, when this study measured another one."""
    if is_missing(r["reported"]) or r["claim_applies"]:
        return _fmt(r["reported"], "acc")
    return f"({_fmt(r['reported'], 'acc')} on {r['dataset']})"


def _failed_section(runs: StudyRuns) -> list[str]:
    failed = failed_trials(runs)
    lines = ["## Failed and NaN trials", ""]
    if failed.empty:
        return lines + ["None.", ""]
    lines.append("Listed here, left out of every figure and table above.")
    lines.append("")
    rows = [[r["trial_number"], r["trial_id"], _fmt(r["variant"]), r["status"], _fmt(r["trial_status"]),
             _fmt(r["stop_reason"]), _fmt(r["failure_reason"]), f"`{r['run_id']}`"] for _, r in failed.iterrows()]
    lines.append(_md_table(["#", "trial", "variant", "run status", "trial status", "stop reason", "reason", "run id"], rows))
    return lines + [""]


FRONT_ROWS = 25  # rows of a Pareto front's table in report.md; a longer front is sampled along its length


def _spread(frame, n: int):
    """At most `n` rows of `frame`, evenly spaced from its first to its last."""
    if len(frame) <= n:
        return frame
    return frame.iloc[np.unique(np.linspace(0, len(frame) - 1, n).round().astype(int))]


def _pareto_section(runs: StudyRuns) -> list[str]:
    lines = []
    for cost, label in COSTS.items():
        if not measured(runs, cost):
            lines += [f"### Pareto front: validation accuracy vs {label}", "",
                      f"{NOT_MEASURED.capitalize()}: no completed trial of this study recorded it.", ""]
            continue
        front = pareto_front(runs, cost)
        shown = _spread(front, FRONT_ROWS)
        rows = [[r["trial_id"], _fmt(r["variant"]), _fmt(r["param_count"], "int"),
                 NOT_MEASURED if is_missing(r[schema.INFERENCE_MS]) else _fmt(r[schema.INFERENCE_MS], "ms"),
                 _fmt(r["best_val_accuracy"], "acc"), _fmt(r["test_accuracy"], "acc"), f"`{r['run_id']}`"]
                for _, r in shown.iterrows()]
        more = (f" {len(shown)} of its {len(front)} trials, spread along it from the cheapest to the most "
                "accurate." if len(shown) < len(front) else "")
        lines += [f"### Pareto front: validation accuracy vs {label}", ""] + ([more.strip(), ""] if more else []) + [
                  _md_table(["trial", "variant", "params", "ms/image (batch 1)", "val acc", "test acc", "run id"], rows),
                  ""]
    return lines


# --------------------------------------------------------------------------- effects and differences


def _signed(value: Any, metric: str) -> str:
    """A difference in the unit the report reads it in: accuracy in percentage points, time in s, parameters."""
    if is_missing(value):
        return "—"
    if metric in (schema.TEST_ACCURACY, schema.BEST_VAL_ACCURACY):
        return f"{100 * float(value):+.2f} pp"
    if metric == "param_count":
        return f"{int(round(float(value))):+,}"
    return f"{float(value):+.1f} s"


def _ci(low: Any, high: Any, metric: str) -> str:
    return "—" if is_missing(low) else f"[{_signed(low, metric)}, {_signed(high, metric)}]"


def _level(metric: str, value: Any) -> str:
    if metric in (schema.TEST_ACCURACY, schema.BEST_VAL_ACCURACY):
        return _fmt(value, "acc")
    return _fmt(value, "int" if metric == "param_count" else "s")


def _mde(value: Any, metric: str) -> str:
    """A minimum detectable effect in its table's unit (pp, s, or a count of parameters)."""
    if is_missing(value):
        return "—"
    return f"{float(value):,.0f}" if metric == "param_count" else magnitude(metric)(float(value))


def _power_text(runs: StudyRuns, accuracy_only: bool = False) -> str:
    """What the MDE column and the verdicts mean, and the study's equivalence margin (or that it has none)."""
    margin = equivalence_margin(runs)
    applies = " (accuracy only: time and parameters have no margin)" if accuracy_only else ""
    text = ("MDE, the minimum detectable effect: the true difference a two-sided paired t test at 5% finds 4 "
            "times in 5 (80% power) at this n, given the observed SD of the paired differences (statsmodels' "
            "TTestPower; with few seeds that SD, and so the MDE, is itself rough). The verdict: \"better\" or "
            "\"worse\" when the 95% interval excludes 0; ")
    if margin is None:
        text += ("otherwise \"inconclusive: an effect up to MDE could hide at n = K\". The study declared no "
                 "equivalence margin (`equivalence_margin` in the space file's `study:` section, in percentage "
                 "points, set before the study runs), so no difference is called equivalent: an interval that "
                 "includes 0 never means \"no effect\".")
    else:
        text += (f"\"equivalent within ±{margin:.2f} pp\" when two one-sided tests at 5% (statsmodels' "
                 f"ttost_paired) put the difference inside the margin the study declared, ±{margin:g} percentage "
                 f"points{applies}: the 90% interval lies within it; otherwise \"inconclusive: an effect up to "
                 "MDE could hide at n = K\". An interval that includes 0 alone never means \"no effect\".")
    return text


def _effects_section(runs: StudyRuns, figure_names: list[str]) -> list[str]:
    table = effects_table(runs)
    lines = [f"## {EFFECTS_SECTION}", ""]
    if table.empty:
        return lines + ["No completed trial of the baseline arm: no effect can be computed.", ""]
    lines += [
        "Each arm against the baseline arm, **paired by seed**: the mean difference (arm − baseline) over the "
        "seeds both completed, with its 95% confidence interval and the method that gave it (a paired t "
        "interval; a seeded BCa bootstrap only for 10 or more pairs whose differences a Shapiro-Wilk test finds "
        "far from normal; no interval with one pair). Accuracy differences are in percentage points (pp); for "
        "training time and parameters, lower is better. " + _power_text(runs, accuracy_only=True), "",
    ]
    lines += _figure_lines(runs, EFFECTS_SECTION, figure_names)
    for metric in EFFECT_METRICS:
        rows = []
        for _, r in table[table["metric"] == metric.column].iterrows():
            left_out = f"seeds {r['unpaired']} unpaired, left out" if r["unpaired"] else ""
            rows.append([r["arm"], _level(metric.column, r["baseline_mean"]), _level(metric.column, r["arm_mean"]),
                         _signed(r["difference"], metric.column), _ci(r["ci_low"], r["ci_high"], metric.column),
                         r["n"], _mde(r["mde"], metric.column), r["method"], r["verdict"], left_out])
        better = "higher" if metric.higher_is_better else "lower"
        lines += [f"### {metric.label.capitalize()} ({better} is better)", "",
                  _md_table(["arm", "baseline", "arm mean", "difference", "95% CI", "n", "MDE", "method", "verdict",
                             "note"], rows), ""]
    return lines


def _isolation_section(runs: StudyRuns, figure_names: list[str]) -> list[str]:
    """An isolation study: its figure, each value's best nuisance configuration, its retrains on test, and each
    value against the first listed, paired by retrain seed."""
    metric = schema.TEST_ACCURACY
    knobs = ", ".join(f"`{k}`" for k in nuisance_knobs(runs)) or "none"
    lines = [f"## {ISOLATION_SECTION}", "",
             f"Each scientific value with its nuisance knobs ({knobs}) tuned: every value was tried at the same "
             "quasi-random nuisance points and judged on validation accuracy only; each value's best configuration "
             "was then trained again with fresh seeds, the same for every value, and only those retrains read the "
             "test set.", ""]
    lines += _figure_lines(runs, ISOLATION_SECTION, figure_names)
    best = best_configurations(runs)
    lines += ["### Each value's best nuisance configuration", "",
              _md_table(["value", "best trial", "point", "nuisance knobs", "val accuracy", "trials"],
                        [[r.value, r.trial_id, f"#{r.point:02d}", r.nuisance, _fmt(r.val_accuracy, "acc"), r.n_trials]
                         for r in best.itertuples()]), ""]
    summary = retrain_summary(runs)
    lines += ["### Retrains on the test set", "",
              _md_table(["value", "test accuracy (mean)", "95% CI", "n", "seeds"],
                        [[r.value, _fmt(r.test_mean, "acc"),
                          "—" if is_missing(r.ci_low) else f"[{r.ci_low:.4f}, {r.ci_high:.4f}]", r.n, r.seeds]
                         for r in summary.itertuples()]), ""]
    table = isolation_effects(runs)
    if not table.empty:
        reference = table["reference"].iloc[0]
        lines += [f"### Against {reference} (test accuracy, paired by seed)", "",
                  f"Each value's retrains against {reference}'s, **paired by seed**: the mean difference over the "
                  "seeds both completed, with its 95% confidence interval. " + _power_text(runs), "",
                  _md_table(["value", reference, "value mean", "difference", "95% CI", "n", "MDE", "method",
                             "verdict"],
                            [[r["value"], _level(metric, r["reference_mean"]), _level(metric, r["value_mean"]),
                              _signed(r["difference"], metric), _ci(r["ci_low"], r["ci_high"], metric), r["n"],
                              _mde(r["mde"], metric), r["method"], r["verdict"]] for _, r in table.iterrows()]), ""]
    return lines


def _factorial_section(runs: StudyRuns, figure_names: list[str]) -> list[str]:
    """A factorial study: its design as recorded (balance, orthogonality, aliases), the figures, and every
    effect on test accuracy, validation accuracy and training time."""
    checks = design_checks(runs)
    lines = [f"## {FACTORIAL_SECTION}", "", design_sentence(runs), ""]
    if checks["replicates"]:
        lines += [f"Checked from the runs' recorded coded levels: the design is "
                  f"{'balanced' if checks['balanced'] else 'NOT balanced'} (every factor at each level in half the "
                  f"runs of every replicate) and {'orthogonal' if checks['orthogonal'] else 'NOT orthogonal'} "
                  "(the contrast columns of the estimated effects have zero products).", ""]
    lines += _figure_lines(runs, FACTORIAL_SECTION, figure_names)
    table = factorial_effects(runs)
    if table.empty:
        return lines
    method = table["method"].iloc[0]
    lines += ["### Effects", "",
              "Each effect is the high level's mean minus the low level's (twice the coefficient of an OLS fit on "
              "the coded levels, statsmodels' formula interface, with the replicate as a block when there are "
              f"several; {method}), estimated from every run. An interaction a:b is the difference a's effect "
              "makes between b's levels, halved. Many effects are tested at once: at 5% each, one null effect "
              "in twenty has an interval that excludes 0 by chance, so the table also gives Holm's adjusted "
              "p-value. " + _power_text(runs, accuracy_only=True).replace(
                  "a two-sided paired t test at 5% finds 4 times in 5 (80% power) at this n, given the observed SD "
                  "of the paired differences (statsmodels' TTestPower; with few seeds that SD, and so the MDE, is "
                  "itself rough)",
                  "a two-sided t test of the effect at 5% finds 4 times in 5 (80% power), given its standard "
                  "error and degrees of freedom"), ""]
    for metric in dict.fromkeys(table["metric"]):
        mine = table[table["metric"] == metric]
        better = "higher" if bool(mine["higher_is_better"].iloc[0]) else "lower"
        rows = [[r["effect"], _signed(r["difference"], metric), _ci(r["ci_low"], r["ci_high"], metric),
                 _p(r["p_value"]), _p(r["p_holm"]), _mde(r["mde"], metric), r["verdict"]] for _, r in mine.iterrows()]
        lines += [f"### {str(mine['label'].iloc[0]).capitalize()} ({better} is better)", "",
                  _md_table(["effect (high − low)", "estimate", "95% CI", "p", "p (Holm)", "MDE", "verdict"], rows),
                  ""]
    return lines


def _p(value: Any) -> str:
    if is_missing(value):
        return "—"
    return "< 0.0001" if float(value) < 1e-4 else f"{float(value):.4f}"


def _differences_section(runs: StudyRuns) -> list[str]:
    table = variant_differences(runs)
    if table.empty:
        return []
    metric = table["metric"].iloc[0]
    m = int(table["pairs"].iloc[0])
    name = "test" if metric == schema.TEST_ACCURACY else "validation"
    lines = [
        "### Which differences are real", "",
        f"Each pair of variants on {name} accuracy, **paired by seed**: the mean difference (first − second, "
        "the first being the one with the higher mean) over the seeds both completed, with its 95% confidence "
        "interval (a paired t interval; a seeded BCa bootstrap only for 10 or more pairs whose differences a "
        "Shapiro-Wilk test finds far from normal). \"real\" when the interval excludes 0. "
        + _power_text(runs) + " Each 95% interval misses the true difference one "
        f"time in twenty, so among {m} intervals read at once some may exclude 0 by chance alone: the last column "
        f"says whether the interval still excludes 0 at the Bonferroni level for all {m} (confidence 1 − 0.05/{m}).",
        "",
    ]
    rows = []
    for _, r in table.iterrows():
        said = f"{r['first']} better" if r["verdict"] == "better" else r["verdict"]
        rows.append([r["first"], r["second"], _fmt(r["first_mean"], "acc"), _fmt(r["second_mean"], "acc"),
                     _signed(r["difference"], metric), _ci(r["ci_low"], r["ci_high"], metric), r["n"],
                     _mde(r["mde"], metric), r["method"], said, "yes" if r["real"] else "no",
                     "yes" if r["real_all_pairs"] else "no"])
    lines.append(_md_table(["first", "second", "first mean", "second mean", "difference", "95% CI", "n", "MDE",
                            "method", "verdict", "real (95%)", f"real for all {m} pairs at once"], rows))
    return lines + [""]



# knob importance (the table under importance.png, or the one line that says why there is none)
def _importance_section(runs: StudyRuns) -> list[str]:
    result = knob_importance(runs)
    if result.note is not None:
        return [result.note, ""]
    rows = []
    for r in result.table.itertuples():
        if is_missing(r.importance):
            rows.append([r.knob, "— (not assessed)", "—", "—"])
        else:
            rows.append([r.knob, f"{r.importance:.2f} [{r.low:.2f}–{r.high:.2f}]", f"{r.p_first:.0%}",
                         f"{r.median_rank:g}"])
    return [result.caption, "", _md_table(["knob", "importance: median [5–95%]", "ranks first", "median rank"],
                                          rows), ""]


# What report.md adds after a figure, keyed by the figure's draw function; and instead of a figure that
# applies to the study but was not drawn.
_AFTER_FIGURE = {plot_pareto: _pareto_section, plot_importance: _importance_section}
_INSTEAD_OF_FIGURE = {plot_importance: _importance_section}


def _img(name: str, alt: str) -> str:
    return f"![{alt}]({name})"


def _figure_lines(runs: StudyRuns, section: str, figure_names: list[str]) -> list[str]:
    """The figures of one section, in registry order, each under its heading."""
    lines = []
    for spec in FIGURES:
        mine = [n for n in figure_names if spec.section == section and spec.matches(n)]
        if not mine:
            if spec.section == section and spec.draw in _INSTEAD_OF_FIGURE and spec.applies(runs):
                lines += [f"### {spec.heading}", ""] + _INSTEAD_OF_FIGURE[spec.draw](runs)
            continue
        if spec.heading:
            lines += [f"### {spec.heading}", ""]
        if spec.intro:
            lines += [spec.intro.format(knobs=", ".join(f"`{spec.knob_of(n)}`" for n in mine)), ""]
        lines += [line for n in mine for line in (_img(n, spec.alt_for(n)), "")]
        if spec.draw in _AFTER_FIGURE:
            lines += _AFTER_FIGURE[spec.draw](runs)
    return lines


def render_markdown(runs: StudyRuns, figure_names: list[str], top: int = 10) -> str:
    lines = [
        f"# Study report: {runs.study}", "",
        f"Generated {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M UTC} from the MLflow store "
        f"`{runs.tracking_uri}` (reports read the store and never retrain). "
        f"MLflow UI (`make ui`): [experiment {runs.study} (id {runs.experiment_id})]({runs.experiment_url}).", "",
    ]
    lines += findings_markdown(runs, figure_names)  # the report opens with what the numbers say
    lines += [_summary_line(runs), ""]
    lines += _settings_section(runs)
    lines += _provenance_section(runs)
    if not runs.arm_trials.empty:  # an ablation's answer comes before its leaderboard
        lines += _effects_section(runs, figure_names)
    if is_isolation(runs):  # an isolation study's answer, too
        lines += _isolation_section(runs, figure_names)
    if is_factorial(runs):  # and a factorial study's
        lines += _factorial_section(runs, figure_names)
    lines += _leaderboard_section(runs, top)
    if not runs.variant_trials.empty:
        lines += _replication_section(runs)
        lines += _differences_section(runs)
        lines += _figure_lines(runs, VARIANTS_SECTION, figure_names)
    search = _figure_lines(runs, SEARCH_SECTION, figure_names)
    if search:
        lines += [f"## {SEARCH_SECTION}", ""] + search
    lines += _failed_section(runs)
    return "\n".join(lines) + "\n"


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1200px; margin: 2em auto;
       padding: 0 1em; color: #222; line-height: 1.45; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.88em; display: block; overflow-x: auto; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
code, pre { background: #f6f6f6; font-size: 0.9em; }
pre { padding: 0.8em; overflow-x: auto; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
"""


# Link targets a report may point at: the MLflow UI, and figures beside it (no scheme).
_SAFE_SCHEMES = ("http", "https", "")


def _text_only_markdown():
    """A Markdown extension for text from the store (study and run names, tags, params, failure
    reasons): no raw HTML passes through, so `<script>` and `&` come out escaped like any other text,
    and a link only goes to http(s) or a file beside the report (never `javascript:`)."""
    class Links(markdown.treeprocessors.Treeprocessor):
        def run(self, root):
            for element in root.iter():
                for attribute in ("href", "src"):
                    target = element.get(attribute)
                    if target is not None and urllib.parse.urlsplit(target).scheme.lower() not in _SAFE_SCHEMES:
                        del element.attrib[attribute]

    class TextOnly(markdown.extensions.Extension):
        def extendMarkdown(self, md):
            md.preprocessors.deregister("html_block")
            md.inlinePatterns.deregister("html")
            md.treeprocessors.register(Links(md), "safe_links", 1)

    return TextOnly()


def render_html(markdown_text: str, folder: Path, title: str) -> str:
    """report.md as one self-contained HTML page (figures embedded as data URIs). Every character of the
    markdown's text is escaped on the way (see `_text_only_markdown`): what a store holds never becomes
    markup."""
    body = markdown.markdown(markdown_text, extensions=["tables", "fenced_code", _text_only_markdown()])

    def embed(match: re.Match) -> str:
        path = folder / html.unescape(match.group(2))
        if not path.is_file():
            return match.group(0)
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        return f'{match.group(1)}"data:image/png;base64,{data}"'

    body = re.sub(r'(<img[^>]*?src=)"([^":]+\.png)"', embed, body)
    return (f"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n")


# --------------------------------------------------------------------------- writing


FIGURE_DPI = 110


def study_dir(out_root: str | os.PathLike, study: str) -> Path:
    """reports/<study>/: one folder inside out_root whatever the name holds (files.folder_name)."""
    return Path(out_root) / folder_name(study)


def _is_generated(file_name: str) -> bool:
    """A file write_report owns in reports/<study>/ (removed before writing, so no stale figure stays)."""
    return file_name in (REPORT_MD, REPORT_HTML) or figure_spec(file_name) is not None


def write_report(study: str, out_root: str | os.PathLike = "reports", tracking_uri: str | None = None,
                 log_to_mlflow: bool = True, top: int = 10, runs: StudyRuns | None = None) -> Path:
    """Write reports/<study>/ (figures, report.md, report.html) and attach them to the parent run.
    `runs`: the study already loaded (default: `load_study(study, tracking_uri)`).

    Returns the folder. Raises ReportError (see `load_study`).
    """
    runs = runs if runs is not None else load_study(study, tracking_uri)
    out = study_dir(out_root, study)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.iterdir():
        if old.is_file() and _is_generated(old.name):
            old.unlink()
    names = save_figures(runs, out, FIGURE_DPI)
    written = [out / name for name in names]
    md = render_markdown(runs, names, top=top)
    (out / REPORT_MD).write_text(md, encoding="utf-8")
    (out / REPORT_HTML).write_text(render_html(md, out, f"Study report: {study}"), encoding="utf-8")
    written += [out / REPORT_MD, out / REPORT_HTML]
    if log_to_mlflow:
        runs.attach(written)
    return out
