"""Findings: the sentences report.md opens with, generated from the numbers; nothing in them is typed by hand.

Each finding is one sentence built from a table the report already computes
(`effects_table`, `knob_importance`, `replication_table`, `variant_differences`,
the parent run's metrics), carries its interval (or says why there is none)
and names the figure it rests on. The wording follows one rule, `stats.verdict`:
a difference is "higher" or "lower" only when its 95% interval excludes 0;
"equivalent within ±M pp" only when two one-sided tests place it inside the
margin M the study declared (`study.equivalence_margin`); otherwise it reads
"inconclusive: an effect up to X pp could hide at n = K" (X the minimum
detectable effect at 80% power), never a winner and never "no effect".

`findings(runs)` returns them in the order report.md shows them: the search's
answer and its knob importance, an ablation's effects, the documented
variants' replication and which of their differences are real.
`findings_markdown` renders them as the report's opening section; `include_findings`
copies that section into the docs' results page for the committed studies
(`lenet-study report --results docs/results.md`).
"""

from __future__ import annotations

import math
import os
import re
import shutil
from pathlib import Path
from typing import Any, NamedTuple

from .. import schema
from ..files import folder_name, write_atomic
from ..knobs import NUISANCE_FOR
from .effects import effects_table, variant_differences
from .factorial import design_sentence, factor_levels, factorial_effects, is_factorial
from .importance import knob_importance
from .isolation import best_configurations, nuisance_knobs, retrain_summary, top_comparisons
from .load import StudyRuns, is_missing
from .tables import replication_table

FINDINGS_SECTION = "Findings"
# The table of an ablation's report that the results page copies beside its findings.
COPIED_EFFECTS = "### Test accuracy (higher is better)"
# An importance ranking reads "stable" when the first knob is first in at least this share of the resamples.
STABLE_FIRST = 0.8


class Finding(NamedTuple):
    text: str  # one or two sentences, Markdown
    figure: str | None = None  # the figure file it rests on (beside report.md), if any


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def _pp(x: float) -> str:
    return f"{100 * x:+.2f} pp"


def _ci_pp(low: float, high: float) -> str:
    return f"95% CI {100 * low:+.2f} to {100 * high:+.2f} pp"


def _ci_pct(low: float, high: float) -> str:
    return f"95% CI {100 * low:.2f}-{100 * high:.2f}%"


def _finite(*xs: Any) -> bool:
    return all(not is_missing(x) and math.isfinite(float(x)) for x in xs)


# --------------------------------------------------------------------------- a search's answer


def _search_findings(runs: StudyRuns) -> list[Finding]:
    out: list[Finding] = []
    if not runs.has_search or not runs.isolation_trials.empty:  # an isolation study's answer is its own
        return out
    done = runs.completed
    searched = done[done["arm"].isna()]  # a documented recipe a search space reaches is one of its points
    if searched.empty:
        return out
    best = searched.sort_values(schema.BEST_VAL_ACCURACY, ascending=False).iloc[0]
    test = runs.parent.get(f"metrics.{schema.TEST_ACCURACY}")
    final_epochs = runs.parent_params.get("final_epochs")
    answer = (f"The search's best of {len(searched)} completed trials (trial {best['trial_id']}) reached validation "
              f"accuracy {best[schema.BEST_VAL_ACCURACY]:.4f}")
    if _finite(test):
        trained = (f"trained {final_epochs} epochs as the study's final run" if final_epochs not in (None, "", "0")
                   else "the best trial's model")
        answer += f"; the study's model ({trained}) reaches **{_pct(float(test))} test**"
    out.append(Finding(answer + ", one seed: a single run, no interval.", "best_so_far.png"))

    imp = knob_importance(runs)
    if imp.note is not None:  # no importance (too few trials, no Optuna): its section says why, once
        return out
    table = imp.table.dropna(subset=["importance"])
    if table.empty:
        return out
    top = table.iloc[0]
    stable = top["p_first"] >= STABLE_FIRST
    text = (f"**{top['knob']}** matters most for validation accuracy among the knobs searched: fANOVA share "
            f"{top['importance']:.2f} (5-95% over {int(top['n_resamples'])} resamples {top['low']:.2f}-{top['high']:.2f}), "
            f"first in {top['p_first']:.0%} of the resamples ({'a stable' if stable else 'not a stable'} ranking; "
            f"{imp.n_trials} full-budget trials).")
    if len(table) > 1:
        rest = "; ".join(f"{r.knob} {r.importance:.2f} ({r.low:.2f}-{r.high:.2f})" for r in table.iloc[1:4].itertuples())
        text += f" Next: {rest}."
    low = table[table["high"] < 0.05]
    if len(low):
        text += f" Negligible (95th percentile of the share below 0.05): {', '.join(low['knob'])}."
    out.append(Finding(text, "importance.png"))
    return out


# --------------------------------------------------------------------------- an ablation's effects


def _effect_findings(runs: StudyRuns) -> list[Finding]:
    table = effects_table(runs)
    if table.empty:
        return []
    metric = schema.TEST_ACCURACY
    rows = table[(table["metric"] == metric) & (table["n"] > 0)]
    if rows.empty:
        metric = schema.BEST_VAL_ACCURACY
        rows = table[(table["metric"] == metric) & (table["n"] > 0)]
    if rows.empty:
        return []
    label = "test accuracy" if metric == schema.TEST_ACCURACY else "validation accuracy"
    base = rows["baseline_mean"].dropna()
    out = []
    if len(base):
        out.append(Finding(f"Baseline {label}: {_pct(float(base.iloc[0]))} (mean over its seeds); each arm changes "
                           "one knob of it and is compared seed by seed (paired).", "effects.png"))
    held = held_nuisance(runs, rows["arm"])
    real = rows[rows["outcome"].isin(["better", "worse"])].sort_values("difference")
    for r in real.itertuples():
        way = "raises" if r.difference > 0 else "lowers"
        at = f" at the baseline's {held[r.arm]}" if r.arm in held else ""
        out.append(Finding(f"**{r.arm}**{at} {way} {label} by {abs(100 * r.difference):.2f} points "
                           f"({_ci_pp(r.ci_low, r.ci_high)}, {r.method}, n = {r.n}).", "effects.png"))
    if held:
        out.append(Finding("Held fixed where the tuning playbook would tune them: " + "; ".join(
            f"{arm} keeps the baseline's {values}" for arm, values in held.items())
            + ". These are nuisance knobs of the knob the arm changes, so each such effect holds at the baseline's "
              "values, not at the changed knob's best; an isolation study (`kind: isolation`) tunes them for each "
              "value and compares the values at their best."))
    same = rows[rows["outcome"] == "equivalent"]
    if len(same):
        margin = float(same["margin"].iloc[0])
        listed = "; ".join(f"{r.arm} {_pp(r.difference)} (90% CI {100 * r.eq_low:+.2f} to {100 * r.eq_high:+.2f}, "
                           f"n = {r.n})" for r in same.sort_values("difference").itertuples())
        out.append(Finding(f"Equivalent within ±{100 * margin:.2f} pp on {label}, the margin the study declared "
                           f"(two one-sided tests at 5%: the 90% interval lies inside it): {listed}.", "effects.png"))
    open_ = rows[rows["outcome"] == "inconclusive"]
    if len(open_):
        margins = open_["margin"].dropna()
        why = (f"not shown within ±{100 * float(margins.iloc[0]):.2f} pp" if len(margins)
               else "no equivalence margin declared")
        listed = "; ".join(f"{r.arm} {_pp(r.difference)} ({100 * r.ci_low:+.2f} to {100 * r.ci_high:+.2f}): "
                           f"an effect up to {100 * r.mde:.2f} pp could hide at n = {r.n}"
                           for r in open_.sort_values("difference").itertuples())
        out.append(Finding(f"Inconclusive on {label} (the 95% interval includes 0; {why}): {listed}.",
                           "effects.png"))
    identical = rows[rows["outcome"] == "identical"]
    if len(identical):
        out.append(Finding(f"The same {label} at every seed as the baseline (a difference of exactly 0): "
                           + ", ".join(identical["arm"]) + "."))
    single = rows[rows["outcome"] == "none"]
    if len(single):
        out.append(Finding("Without an interval (one paired seed): " + ", ".join(single["arm"]) + "."))
    time_rows = table[(table["metric"] == "wall_time_s") & table["outcome"].isin(["better", "worse"])]
    costly = time_rows[time_rows["difference"] > 0].sort_values("difference", ascending=False)
    if len(costly):
        listed = "; ".join(f"{r.arm} {r.difference:+.1f} s ({r.ci_low:+.1f} to {r.ci_high:+.1f})"
                           for r in costly.itertuples())
        out.append(Finding(f"Training time per trial, where the interval excludes 0 and the arm is slower: {listed}."))
    return out


def held_nuisance(runs: StudyRuns, arms) -> dict[str, str]:
    """arm -> "learning_rate=0.001, momentum=0.0": for each arm that changes a knob with nuisance knobs
    (knobs.NUISANCE_FOR) the arm left at the baseline's values, those values as the baseline's trials logged them."""
    base = runs.arm_trials[runs.arm_trials["arm"] == schema.ARM_BASELINE]
    out = {}
    for arm in dict.fromkeys(arms):
        knob, sep, _ = str(arm).partition("=")
        nuisance = [k for k in NUISANCE_FOR.get(knob, ()) if sep and k in base.columns and base[k].notna().any()
                    and not str(arm).startswith(f"{k}=")]
        if knob == "optimizer" and "momentum" in nuisance and not str(arm).endswith("=sgd"):
            nuisance.remove("momentum")  # only sgd takes momentum
        if nuisance:
            out[arm] = ", ".join(f"{k}={base[k].dropna().iloc[0]:g}" if isinstance(base[k].dropna().iloc[0], float)
                                 else f"{k}={base[k].dropna().iloc[0]}" for k in nuisance)
    return out


# --------------------------------------------------------------------------- a factorial study's effects


def _factorial_findings(runs: StudyRuns) -> list[Finding]:
    """The design in one sentence; the main effects and interactions on test accuracy whose 95% interval
    excludes 0, largest first, with how many chance alone would give and how many survive Holm's correction;
    the equivalent and the inconclusive ones; the largest effects on training time."""
    if not is_factorial(runs):
        return []
    out = [Finding("Design: " + design_sentence(runs), "halfnormal.png")]
    table = factorial_effects(runs)
    rows = table[table["metric"] == schema.TEST_ACCURACY]
    if rows.empty:
        return out
    levels = factor_levels(runs)
    real = rows[(rows["ci_low"] > 0) | (rows["ci_high"] < 0)]
    real = real.reindex(real["difference"].abs().sort_values(ascending=False).index)
    for r in real.itertuples():
        stats_text = f"{_ci_pp(r.ci_low, r.ci_high)}, p {_p(r.p_value)}, Holm-adjusted p {_p(r.p_holm)}"
        if r.order == 1:
            low, high = levels.get(r.terms, ("−1", "+1"))
            way = "raises" if r.difference > 0 else "lowers"
            out.append(Finding(f"**{r.effect}** ({low} → {high}) {way} test accuracy by {abs(100 * r.difference):.2f} "
                               f"points on average over the other factors ({stats_text}).", "main_effects.png"))
        else:
            a, b = r.terms.split(":")
            aliases = f" (aliased with {', '.join(r.effect.split(' = ')[1:])})" if " = " in r.effect else ""
            out.append(Finding(f"**{r.terms}** interaction{aliases}: {_pp(r.difference)}: {a}'s effect on test "
                               f"accuracy is {abs(200 * r.difference):.2f} points {'larger' if r.difference > 0 else 'smaller'} "
                               f"at {b}'s high level than at its low level ({stats_text}).",
                               f"interaction_{a}_{b}.png"))
    m = len(rows)
    holm = int((rows["p_holm"] < 0.05).sum())
    out.append(Finding(f"{len(real)} of {m} effects on test accuracy have a 95% interval that excludes 0; chance "
                       f"alone would give about {0.05 * m:.1f}; {holm} remain significant after Holm's correction "
                       "for testing them all at once.", "halfnormal.png"))
    same = rows[rows["outcome"] == "equivalent"]
    if len(same):
        margin = float(same["margin"].iloc[0])
        out.append(Finding(f"Equivalent to no effect within ±{100 * margin:.2f} pp, the margin the study declared "
                           f"(two one-sided tests at 5%): {', '.join(same['effect'])}."))
    open_ = rows[rows["outcome"] == "inconclusive"]
    if len(open_):
        low, high = 100 * float(open_["mde"].min()), 100 * float(open_["mde"].max())
        upto = f"{high:.2f}" if f"{low:.2f}" == f"{high:.2f}" else f"{low:.2f}-{high:.2f}"
        mains = open_[open_["order"] == 1]
        named = "; ".join(f"{r.effect} {_pp(r.difference)} ({100 * r.ci_low:+.2f} to {100 * r.ci_high:+.2f})"
                          for r in mains.itertuples())
        rest = len(open_) - len(mains)
        listed = (f"the main effects of {named}" if len(mains) else "") + (
            f"{' and ' if len(mains) else ''}{rest} interaction{'s' if rest != 1 else ''}" if rest else "")
        out.append(Finding(f"Inconclusive (the 95% interval includes 0, not shown equivalent): {listed}; "
                           f"effects up to {upto} pp could hide (the minimum detectable effect at 80% power, "
                           f"n = {int(open_['n'].iloc[0])} runs).", "main_effects.png" if len(mains) else None))
    time_rows = table[(table["metric"] == "wall_time_s") & (table["p_holm"] < 0.05) & (table["order"] == 1)]
    if len(time_rows):
        time_rows = time_rows.reindex(time_rows["difference"].abs().sort_values(ascending=False).index)
        listed = "; ".join(f"{r.effect} {r.difference:+.1f} s ({r.ci_low:+.1f} to {r.ci_high:+.1f})"
                           for r in time_rows.itertuples())
        out.append(Finding(f"Training time per run, main effects significant after Holm's correction: {listed}."))
    return out


def _p(value: float) -> str:
    """A p-value after its relation: "= 0.0123", "< 0.0001"."""
    return "unknown" if not _finite(value) else ("< 0.0001" if value < 1e-4 else f"= {value:.4f}")


# --------------------------------------------------------------------------- an isolation study's values


def _isolation_findings(runs: StudyRuns) -> list[Finding]:
    best = best_configurations(runs)
    if best.empty:
        return []
    knobs = ", ".join(nuisance_knobs(runs)) or "no nuisance knob"
    top, comparisons = top_comparisons(runs)
    if top is None:
        leader = best.sort_values("val_accuracy", ascending=False, kind="stable").iloc[0]
        return [Finding(f"No retrain evaluated on the test set yet; on validation, **{leader.value}** scored "
                        f"highest ({_pct(leader.val_accuracy)}, trial {leader.trial_id}, {leader.nuisance}), with "
                        f"{knobs} tuned for each value.", "isolation.png")]
    summary = retrain_summary(runs).set_index("value")
    r = summary.loc[top]
    interval = f", {_ci_pct(r.ci_low, r.ci_high)}" if _finite(r.ci_low, r.ci_high) else ""
    chosen = best.set_index("value").loc[top]
    out = [Finding(f"**{top}** has the highest test accuracy with {knobs} tuned for each value: "
                   f"{_pct(r.test_mean)} (mean of {int(r.n)} retrain seeds{interval}), at its best nuisance "
                   f"configuration {chosen.nuisance} (trial {chosen.trial_id}, chosen on validation).",
                   "isolation.png")]
    for value, effect in comparisons:
        if effect.n == 0:
            out.append(Finding(f"{top} against {value}: no retrain seed in common, no paired comparison."))
            continue
        ci = f", {_ci_pp(effect.low, effect.high)}" if effect.interval.has_interval else ""
        out.append(Finding(f"{top} against {value}: {_pp(effect.estimate)} test accuracy (paired by seed{ci}, "
                           f"n = {effect.n}): {effect.verdict}.", "isolation.png"))
    return out


# --------------------------------------------------------------------------- documented variants


def _replication_findings(runs: StudyRuns) -> list[Finding]:
    table = replication_table(runs)
    out = []
    for r in table.itertuples():
        if not r.n or is_missing(r.test_mean):
            continue
        measured = f"**{r.variant}**: {_pct(r.test_mean)} test"
        if _finite(r.test_ci_low, r.test_ci_high):
            measured += f" ({_ci_pct(r.test_ci_low, r.test_ci_high)}, n = {r.n})"
        else:
            measured += f" (n = {r.n}, no interval)"
        if is_missing(r.reported):
            out.append(Finding(measured + "; its tutorial reports no figure.", "variant_accuracy.png"))
        elif not r.claim_applies:
            out.append(Finding(measured + f"; its tutorial's {r.reported:.4f} is a {r.dataset} figure, not compared "
                               "here.", "variant_accuracy.png"))
        elif r.claim_in_ci is None:
            out.append(Finding(measured + f" against the tutorial's {_pct(r.reported)}: no interval to compare.",
                               "variant_accuracy.png"))
        else:
            where = ("inside the interval" if r.claim_in_ci else
                     f"outside the interval ({'above' if r.reported > r.test_ci_high else 'below'} it)")
            out.append(Finding(measured + f" against the tutorial's {_pct(r.reported)}: the claim falls {where}.",
                               "variant_accuracy.png"))
    return out


def _difference_findings(runs: StudyRuns) -> list[Finding]:
    table = variant_differences(runs)
    if table.empty:
        return []
    m = int(table["pairs"].iloc[0])
    real = table[table["real"]]
    strict = int(table["real_all_pairs"].sum())
    summary = (f"Of {len(table)} pairs of variants, {len(real)} differ measurably at 95% (paired by seed), "
               f"{strict} of them still at the Bonferroni level for all {m} at once")
    margins = table["margin"].dropna()
    if len(margins):
        summary += (f"; {int((table['outcome'] == 'equivalent').sum())} are equivalent within "
                    f"±{100 * float(margins.iloc[0]):.2f} pp, the margin the study declared")
    out = [Finding(summary + ".")]
    top = table["first"].iloc[0]
    mine = table[(table["first"] == top) | (table["second"] == top)]
    ahead = mine[mine["outcome"].isin(["better", "worse"]) & (mine["first"] == top)]
    behind = mine[mine["outcome"].isin(["better", "worse"]) & (mine["second"] == top)]
    level = mine[~mine["outcome"].isin(["better", "worse"])]
    text = f"**{top}** has the highest mean"
    if len(ahead):
        text += ("; it is ahead of " + ", ".join(f"{r.second} by {100 * r.difference:.2f} pp "
                                                 f"({100 * r.ci_low:+.2f} to {100 * r.ci_high:+.2f})"
                                                 for r in ahead.itertuples()))
    if len(behind):  # a higher mean overall, yet behind on the seeds both have
        text += ("; on the seeds it shares with them it is behind " + ", ".join(
            f"{r.first} by {100 * r.difference:.2f} pp ({100 * r.ci_low:+.2f} to {100 * r.ci_high:+.2f})"
            for r in behind.itertuples()))
    for r in level.itertuples():
        text += f"; against {r.second if r.first == top else r.first}: {r.verdict}"
    out.append(Finding(text + ".", "variant_accuracy.png"))
    return out


# --------------------------------------------------------------------------- all of them


def findings(runs: StudyRuns) -> list[Finding]:
    """Every finding of the study, in report order (see the module docstring)."""
    return (_search_findings(runs) + _effect_findings(runs) + _isolation_findings(runs) + _factorial_findings(runs)
            + _replication_findings(runs) + _difference_findings(runs))


def findings_markdown(runs: StudyRuns, figure_names: list[str] | None = None, heading: str = "##") -> list[str]:
    """The Findings section as Markdown lines: one bullet per finding, naming its figure when the figure is
    among `figure_names` (None: every figure named); the results page's copy turns those names into links."""
    items = findings(runs)
    lines = [f"{heading} {FINDINGS_SECTION}", ""]
    if not items:
        return lines + ["No completed trial yet: nothing to report.", ""]
    for f in items:
        ref = ""
        if f.figure and (figure_names is None or f.figure in figure_names):
            ref = f" (figure: `{f.figure}`)"  # named, not linked: report.html links only to the MLflow UI
        lines.append(f"- {f.text}{ref}")
    return lines + ["", "Generated from the report's tables (intervals: `study/report/stats.py`); a difference whose "
                    "95% interval includes 0 is never a winner, nor read as no effect: it is equivalent only within "
                    "a margin declared before the study (two one-sided tests), otherwise inconclusive, with the "
                    "effect that could hide (the minimum detectable effect at 80% power).", ""]


# --------------------------------------------------------------------------- the results page's copy


def findings_markers(study: str) -> tuple[str, str]:
    """The comment lines that fence a study's findings in a Markdown page."""
    return f"<!-- findings: {study} -->", f"<!-- /findings: {study} -->"


def include_findings(page: str | Path, study: str, report_dir: str | Path,
                     figures_dir: str | Path | None = None) -> bool:
    """Copy the Findings section of `report_dir`/report.md (and an ablation's effects table on test accuracy)
    between the page's markers for `study` (`findings_markers`), written atomically. The figures it links are
    copied to `figures_dir` as "<study>_<figure>" (a folder kept in git, where report folders are not; beside the
    page, so that the docs site serves them) and linked there, relative to the page; without `figures_dir` the
    links point into `report_dir`. Returns False, changing nothing, when the page has no such block."""
    page, report_dir = Path(page), Path(report_dir)
    text = page.read_text(encoding="utf-8")
    start, end = findings_markers(study)
    if start not in text or end not in text or text.index(start) > text.index(end):
        return False
    md = (report_dir / "report.md").read_text(encoding="utf-8")
    head = f"## {FINDINGS_SECTION}\n"
    if head not in md:
        raise ValueError(f"{report_dir / 'report.md'}: no '## {FINDINGS_SECTION}' section")
    body = md.split(head, 1)[1].split("\n## ", 1)[0].strip("\n")
    if "\n## Effects\n" in md:  # an ablation: its effects table on test accuracy goes along, under its own heading
        effects = md.split("\n## Effects\n", 1)[1].split("\n## ", 1)[0]
        table = effects.split(f"\n{COPIED_EFFECTS}\n", 1)[1].split("\n### ", 1)[0] if COPIED_EFFECTS in effects else ""
        if table.strip():
            body += f"\n\n**Effects on test accuracy** (from the report's Effects section):\n{table.rstrip()}"

    def relink(match: re.Match) -> str:
        name = match.group(1)
        target = report_dir / name
        if figures_dir is not None and target.is_file():
            copy = Path(figures_dir) / f"{folder_name(study)}_{name}"
            copy.parent.mkdir(parents=True, exist_ok=True)
            tmp = copy.with_name(f".{copy.name}.tmp")
            shutil.copyfile(target, tmp)
            os.replace(tmp, copy)
            target = copy
        where = os.path.relpath(target.resolve(), page.resolve().parent).replace(os.sep, "/")
        return f"([{name}]({where}))"

    body = re.sub(r"\(figure: `([^`/:#]+\.png)`\)", relink, body)
    before, rest = text.split(start, 1)
    after = rest.split(end, 1)[1]
    # The command as typed from the project root when the page is under it (docs/results.md), else its name.
    where, here = page.resolve(), Path.cwd().resolve()
    shown = where.relative_to(here).as_posix() if where.is_relative_to(here) else page.name
    block = f"{start}\n_Generated by `lenet-study report {study} --results {shown}` from the study's runs._\n\n" \
            f"{body}\n{end}"
    write_atomic(page, before + block + after)
    return True
