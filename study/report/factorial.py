"""A factorial screening study's report: main effects and two-knob interactions from a two-level design.

Pure functions of a loaded `StudyRuns` (study/factorial.py compiles the design; every run records its coded
levels as params, schema.LEVEL_PREFIX + factor), and the figures drawn from them:
- `factor_names`, `design_frame`: the factors in the file's order and the completed runs of the complete
  replicates, one row per run with its coded levels (a replicate missing a run is left out: a design with a
  hole is not the design);
- `design_checks`: the design as recorded, checked balanced (every column sums to 0) and orthogonal (every
  pair of columns, interactions included, has a zero product), with its resolution computed from its
  columns and its alias chains (`study.factorial.alias_chains`);
- `factorial_effects`: an OLS fit (statsmodels' formula interface) of a response on the coded levels, with
  the replicate as a block when there are several: every main effect and one term per alias chain of
  two-knob interactions (a chain holding a main effect is that main effect's); each effect reported as
  high − low (2 x the coefficient) with its 95% interval, p-value, minimum detectable effect and, with the
  study's margin, the equivalence verdict (`stats.model_effect`). A saturated fit (no residual degrees of
  freedom: one replicate of a design with as many effects as runs) uses Lenth's pseudo standard error;
- `plot_halfnormal`, `plot_main_effects`, `plot_interaction`: the half-normal (Daniel) plot of the test
  accuracy effects with the significant ones named; the mean test error at each factor's two levels; and for
  each interaction whose interval excludes 0, the four cell means.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from .. import schema
from ..factorial import ROMAN, alias_chains, design_resolution
from ..lazy import lazy
from ..space import parse_space
from .drawing import error_axis, error_range, figure, legend_below, place_labels, to_error
from .effects import ACCURACY_METRICS, EFFECT_METRICS, STAT_COLUMNS, effect_row, equivalence_margin, magnitude
from .load import StudyRuns
from .stats import CONFIDENCE, lenth_pse, model_effect

pd = lazy("pandas")
patsy = lazy("patsy")
sm = lazy("statsmodels.api")
multitest = lazy("statsmodels.stats.multitest")
scipy_stats = lazy("scipy.stats")

LEVEL, REPLICATE, ROW = schema.LEVEL_PREFIX, schema.FACTORIAL_REPLICATE, schema.FACTORIAL_ROW
RESPONSES = tuple(m for m in EFFECT_METRICS if m.column != "param_count")  # test, validation, training time
EFFECT_COLUMNS = ["effect", "terms", "order", "metric", "label", "higher_is_better", "p_value", "p_holm",
                  *STAT_COLUMNS]


def is_factorial(runs: StudyRuns) -> bool:
    return ROW in runs.trials.columns and runs.trials[ROW].notna().any()


def factor_names(runs: StudyRuns) -> list[str]:
    """The factors in the file's order: the coded tokens of a run's name ("activation+ pooling-")."""
    if not is_factorial(runs):
        return []
    for name in runs.trials[schema.FACTORIAL].dropna():
        tokens = [t for t in str(name).split(" ")[2:] if "=" not in t and t[-1:] in "+-"]
        names = [t[:-1] for t in tokens]
        if all(f"{LEVEL}{n}" in runs.trials.columns for n in names):
            return names
    return sorted(c[len(LEVEL):] for c in runs.trials.columns if str(c).startswith(LEVEL))


def design_frame(runs: StudyRuns) -> tuple[pd.DataFrame, dict]:
    """The completed runs of the complete replicates: columns replicate, row, each factor's coded level (-1.0 /
    1.0) and the responses; and a count {"runs": design runs, "replicates": complete, "left_out": completed
    runs of incomplete replicates}."""
    names = factor_names(runs)
    columns = [REPLICATE, ROW, *names, *(m.column for m in RESPONSES)]
    if not names:
        return pd.DataFrame(columns=columns), {"runs": 0, "replicates": 0, "left_out": 0}
    trials = runs.trials[runs.trials[ROW].notna()]
    size = int(pd.to_numeric(trials[ROW]).max()) + 1
    runs_in_design = 2 ** int(math.ceil(math.log2(size)))  # rows are 0 .. runs-1; the last may not have run yet
    done = runs.completed[runs.completed[ROW].notna()].copy()
    if schema.TEST_ACCURACY in done.columns:
        done = done[done[schema.TEST_ACCURACY].notna()]
    frame = pd.DataFrame({REPLICATE: pd.to_numeric(done[REPLICATE]).astype(int),
                          ROW: pd.to_numeric(done[ROW]).astype(int),
                          **{n: pd.to_numeric(done[f"{LEVEL}{n}"]).astype(float) for n in names},
                          **{m.column: pd.to_numeric(done.get(m.column), errors="coerce") for m in RESPONSES}})
    frame = frame.drop_duplicates([REPLICATE, ROW], keep="last")
    counts = frame.groupby(REPLICATE)[ROW].nunique()
    complete = sorted(int(r) for r, c in counts.items() if c == runs_in_design)
    kept = frame[frame[REPLICATE].isin(complete)].sort_values([REPLICATE, ROW]).reset_index(drop=True)
    return kept[columns], {"runs": runs_in_design, "replicates": len(complete), "left_out": len(frame) - len(kept)}


def design_matrix(frame: pd.DataFrame, names: list[str]) -> np.ndarray:
    """The design's coded matrix (one row per design row) as the first complete replicate recorded it."""
    first = frame[frame[REPLICATE] == frame[REPLICATE].min()].sort_values(ROW)
    return first[names].to_numpy(dtype=float)


def design_checks(runs: StudyRuns) -> dict:
    """The recorded design checked: balanced (each factor's column sums to 0 in every replicate), orthogonal
    (every two columns of main effects and two-knob interactions that are not aliased have a zero product),
    its resolution (None: full factorial) and alias chains, computed from the runs' coded levels."""
    names = factor_names(runs)
    frame, count = design_frame(runs)
    if frame.empty:
        return {"balanced": None, "orthogonal": None, "resolution": None, "chains": (), **count}
    balanced = all(float(np.abs(g[names].to_numpy().sum(axis=0)).max()) == 0 for _, g in frame.groupby(REPLICATE))
    matrix = design_matrix(frame, names)
    chains = alias_chains(matrix, tuple(names))
    heads = [c[0] for c in chains]
    cols = np.column_stack([_column(matrix, names, e) for e in heads])
    gram = cols.T @ cols
    orthogonal = bool(np.allclose(gram - np.diag(np.diag(gram)), 0))
    return {"balanced": balanced, "orthogonal": orthogonal, "resolution": design_resolution(matrix),
            "chains": chains, **count}


def _column(matrix: np.ndarray, names: list[str], effect: str) -> np.ndarray:
    out = np.ones(matrix.shape[0])
    for name in effect.split(":"):
        out = out * matrix[:, names.index(name)]
    return out


def design_sentence(runs: StudyRuns) -> str:
    """The design as the runs recorded it, in one sentence: its size, resolution, replicates and aliases."""
    checks = design_checks(runs)
    k, n = len(factor_names(runs)), checks["runs"]
    if not checks["replicates"]:
        return f"No complete replicate of the {n}-run design of {k} factors has finished yet: nothing is fitted."
    resolution = checks["resolution"]
    kind = ("a full factorial" if resolution is None
            else f"a 2^({k}-{k - int(round(np.log2(n)))}) design of resolution {ROMAN.get(resolution, resolution)}")
    aliased = [c for c in checks["chains"] if len(c) > 1]
    if not aliased:
        aliases = ("every main effect and two-knob interaction is estimated clear of the others"
                   + ("" if resolution is None else " (each aliased only with interactions of three or more knobs, "
                                                    "assumed negligible)"))
    else:
        aliases = (f"{len(aliased)} alias chains, each estimated as one sum and reported under all its names: "
                   + "; ".join(" = ".join(c) for c in aliased))
    left = f"; {checks['left_out']} runs of incomplete replicates left out" if checks["left_out"] else ""
    return (f"{kind}: {k} factors in {n} runs, {checks['replicates']} complete replicate"
            f"{'s' if checks['replicates'] != 1 else ''}{left}; {aliases}.")


def _terms(chains) -> list[tuple[str, tuple[str, ...]]]:
    """(term, chain) for each estimable effect: a main effect's chain is named by its main effect; a chain of
    two-knob interactions by its first."""
    out = []
    for chain in chains:
        mains = [e for e in chain if ":" not in e]
        out.append((mains[0] if mains else chain[0], chain))
    return out


def factorial_effects(runs: StudyRuns, confidence: float = CONFIDENCE, margin_pp: float | None = None) -> pd.DataFrame:
    """Every estimable effect on every response (test accuracy, validation accuracy, training time): one row
    per effect and response, main effects first then interactions, each in the design's order. `effect`: its
    alias chain written out ("a:b = c:d"); `terms`: the term fitted; `difference`: high − low (the metric's
    unit, accuracy as a fraction), with the columns of `effects.effect_row`, the OLS p-value and the p-value
    after Holm's correction over the response's effects (many effects are tested at once: at 5% each, about
    one in twenty null effects has an interval that excludes 0)."""
    names = factor_names(runs)
    frame, count = design_frame(runs)
    if frame.empty or not names:
        return pd.DataFrame(columns=EFFECT_COLUMNS)
    margin_pp = equivalence_margin(runs) if margin_pp is None else margin_pp
    chains = alias_chains(design_matrix(frame, names), tuple(names))
    terms = _terms(chains)
    model = Model(frame, names, [t for t, _ in terms])
    rows = []
    for metric in RESPONSES:
        y = frame[metric.column]
        if y.isna().any():
            continue
        fitted = model.fit(y)
        margin = margin_pp / 100 if margin_pp is not None and metric.column in ACCURACY_METRICS else None
        p_values = np.array([fitted[t][3] for t, _ in terms])
        holm = np.full(len(terms), np.nan)
        finite = np.isfinite(p_values)
        if finite.any():  # Holm's step-down correction over this response's effects
            holm[finite] = multitest.multipletests(p_values[finite], method="holm")[1]
        for (term, chain), p_holm in zip(terms, holm):
            estimate, se, df, p = fitted[term]
            effect = model_effect(estimate, se, df, len(frame), margin, higher_is_better=metric.higher_is_better,
                                  confidence=confidence, method=fitted["method"], describe=magnitude(metric.column))
            rows.append({"effect": " = ".join(chain), "terms": term, "order": term.count(":") + 1,
                         "metric": metric.column, "label": metric.label, "higher_is_better": metric.higher_is_better,
                         "p_value": p, "p_holm": float(p_holm), **effect_row(effect)})
    table = pd.DataFrame(rows, columns=EFFECT_COLUMNS)
    rank = {m.column: i for i, m in enumerate(RESPONSES)}
    return table.sort_values(["metric", "order"], key=lambda c: c.map(rank) if c.name == "metric" else c,
                             kind="stable").reset_index(drop=True)


class Model:
    """The model matrix of a design's runs, built once from a formula (patsy, statsmodels' formula interface):
    the intercept, the replicate as a block when there are several, and one column per term (a main effect, or
    "a:b" for a chain of two-knob interactions); `fit` regresses any response of those runs on it."""

    def __init__(self, frame: pd.DataFrame, names: list[str], terms: list[str]):
        alias = {n: f"x{i}" for i, n in enumerate(names)}  # formula-safe names, whatever the factors are called
        data = frame.rename(columns=alias).assign(_block=frame[REPLICATE].astype(str))
        self.terms = list(terms)
        self.columns = [":".join(alias[p] for p in t.split(":")) for t in terms]
        block = ["C(_block)"] if frame[REPLICATE].nunique() > 1 else []
        self.formula = " + ".join(["1", *block, *self.columns])
        self.matrix = patsy.dmatrix(self.formula, data, return_type="dataframe")
        self.values = self.matrix.to_numpy(dtype=float)
        self.at = np.array([self.matrix.columns.get_loc(c) for c in self.columns], dtype=int)

    def fit(self, y) -> dict:
        """OLS of `y` (one value per run, in the frame's order): term -> (effect = 2 x coefficient, its standard
        error, residual df, p-value), and "method". Saturated (no residual df): the effects against Lenth's
        pseudo standard error instead."""
        model = sm.OLS(np.asarray(y, dtype=float), self.values).fit()  # arrays: no pandas wrapping per term
        effects = 2 * model.params[self.at]
        out: dict = {}
        if model.df_resid >= 1:  # (a saturated fit has no standard errors: bse would divide by 0)
            ses, ps = 2 * model.bse[self.at], model.pvalues[self.at]
            out["method"] = "OLS t"
            for i, term in enumerate(self.terms):
                out[term] = (float(effects[i]), float(ses[i]), float(model.df_resid), float(ps[i]))
            return out
        pse, df = lenth_pse(effects)
        out["method"] = "Lenth PSE t"
        for term, estimate in zip(self.terms, effects):
            p = float(2 * scipy_stats.t.sf(abs(estimate) / pse, df)) if pse > 0 else math.nan
            out[term] = (float(estimate), pse, df, p)
        return out


def fit(frame: pd.DataFrame, names: list[str], terms: list[str], response: str) -> dict:
    """`Model(frame, names, terms).fit` of the frame's `response` column."""
    return Model(frame, names, terms).fit(frame[response])


def significant_interactions(runs: StudyRuns, table: pd.DataFrame | None = None) -> list[tuple[str, str]]:
    """The two-knob interactions (pairs of factors, the fitted term of their chain) whose test accuracy
    interval excludes 0, largest first."""
    table = factorial_effects(runs) if table is None else table
    mine = table[(table["metric"] == schema.TEST_ACCURACY) & (table["order"] == 2)
                 & (table["outcome"].isin(["better", "worse"]) | ((table["ci_low"] > 0) | (table["ci_high"] < 0)))]
    mine = mine.reindex(mine["difference"].abs().sort_values(ascending=False).index)
    return [tuple(t.split(":")) for t in mine["terms"]]


def interaction_items(runs: StudyRuns) -> list[str]:
    """The "<a>_<b>" of each interaction figure (`significant_interactions`)."""
    return [f"{a}_{b}" for a, b in significant_interactions(runs)] if is_factorial(runs) else []


# --------------------------------------------------------------------------- figures


def plot_halfnormal(runs: StudyRuns):
    """The half-normal (Daniel) plot of the test accuracy effects: |effect| in pp against half-normal quantiles;
    effects whose 95% interval excludes 0 drawn in red and named. None without a fitted design."""
    table = factorial_effects(runs)
    mine = table[table["metric"] == schema.TEST_ACCURACY]
    if mine.empty:
        return None
    size = (100 * mine["difference"].abs()).to_numpy()
    order = np.argsort(size)
    m = len(size)
    quantiles = scipy_stats.norm.ppf(0.5 + 0.5 * (np.arange(1, m + 1) - 0.5) / m)
    shown = mine.iloc[order]
    real = ((shown["ci_low"] > 0) | (shown["ci_high"] < 0)).to_numpy()
    fig, ax = figure(8.0, 5.5)
    ax.scatter(quantiles[~real], size[order][~real], s=22, color="0.45", label="effect (interval includes 0)")
    ax.scatter(quantiles[real], size[order][real], s=36, color="C3", label="effect whose 95% interval excludes 0")
    noise = size[order][~real]
    if len(noise) >= 2:  # the line the noise effects follow: slope = their robust scale
        slope = float(np.median(noise / quantiles[~real]))
        ax.plot([0, quantiles[-1]], [0, slope * quantiles[-1]], color="0.6", lw=1, ls="--",
                label="noise line (median |effect| / quantile)")
    texts = [_signed(r) for _, r in shown[real].iterrows()]
    points = list(zip(quantiles[real], size[order][real]))
    ax.set_xlabel("half-normal quantile")
    ax.set_ylabel("|effect| on test accuracy (pp, high − low)")
    ax.set_ylim(0, max(size.max() * 1.15, 1e-3))
    ax.grid(alpha=0.3)
    fig.suptitle(f"Factorial study '{runs.study}': half-normal plot of {m} effects on test accuracy")
    legend_below(fig, ncols=3)
    if texts:
        place_labels(ax, points, texts)
    return fig


def _signed(row) -> str:
    """A half-normal label: the effect's fitted term ("…" when it stands for an alias chain) and its sign."""
    sign = "+" if row["difference"] > 0 else "−"
    chain = "…" if " = " in str(row["effect"]) else ""
    return f"{row['terms']}{chain} ({sign}{100 * abs(row['difference']):.2f})"


def plot_main_effects(runs: StudyRuns):
    """Each factor's mean test error at its low and high level (log error axis), one panel per factor, the
    grand mean dotted. None without a fitted design."""
    names = factor_names(runs)
    frame, _ = design_frame(runs)
    if frame.empty:
        return None
    levels = factor_levels(runs, short=True)
    ncols = min(4, len(names))
    nrows = int(math.ceil(len(names) / ncols))
    fig, axes = figure(3.2 * ncols, 2.8 * nrows + 0.8, ncols=ncols, nrows=nrows)
    axes = np.atleast_1d(axes).ravel()
    err = to_error(frame[schema.TEST_ACCURACY])
    means = {n: [float(np.mean(err[frame[n].to_numpy() == c])) for c in (-1.0, 1.0)] for n in names}
    rng = error_range(np.array([v for pair in means.values() for v in pair]))
    for ax, name in zip(axes, names):
        ax.plot([0, 1], rng.clip(np.array(means[name])), marker="o", color="C0")
        ax.axhline(float(np.mean(err)), color="0.6", ls=":", lw=1)
        error_axis(ax, rng, "test error" if ax is axes[0] else "", accuracy_side=False)
        low, high = levels.get(name, ("−1", "+1"))
        ax.set_xticks([0, 1], [f"− {low}", f"+ {high}"], fontsize=8)
        ax.set_xlim(-0.3, 1.3)
        ax.set_title(name, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    for ax in axes[len(names):]:
        ax.set_visible(False)
    fig.suptitle(f"Factorial study '{runs.study}': mean test error at each factor's two levels "
                 f"(each point the mean of {len(frame) // 2} runs; dotted: the mean of all {len(frame)})")
    return fig


def factor_levels(runs: StudyRuns, short: bool = False) -> dict[str, tuple[str, str]]:
    """factor -> (low, high) as the study's file wrote them (the space file its parent run logged; `short`: in a
    few characters, for ticks); {} when it cannot be read."""
    named = runs.space_file
    if named is None:
        return {}
    try:
        compiled = parse_space(named[1], named[0]).factorial
    except Exception:  # a file this version cannot read: levels shown as -1 / +1
        return {}
    if compiled is None:
        return {}
    text = (lambda f, c: f.short_text(c)) if short else (lambda f, c: f.level_text(c))
    return {f.name: (text(f, -1), text(f, 1)) for f in compiled.factors}


def plot_interaction(runs: StudyRuns, pair: str):
    """An interaction plot: mean test error at a's two levels, one line per level of b. `pair`: "<a>_<b>"
    (interaction_items). None when the pair is not among the significant interactions."""
    names = factor_names(runs)
    frame, _ = design_frame(runs)
    match = next(((a, b) for a, b in itertools.combinations(names, 2) if f"{a}_{b}" == pair), None)
    if frame.empty or match is None:
        return None
    a, b = match
    levels = factor_levels(runs, short=True)
    err = to_error(frame[schema.TEST_ACCURACY])
    cells = {(ca, cb): float(np.mean(err[(frame[a].to_numpy() == ca) & (frame[b].to_numpy() == cb)]))
             for ca in (-1.0, 1.0) for cb in (-1.0, 1.0)}
    rng = error_range(np.array(list(cells.values())))
    fig, ax = figure(7.5, 5.0)
    for cb, color in ((-1.0, "C0"), (1.0, "C1")):
        label = f"{b} {'−' if cb < 0 else '+'} {levels.get(b, ('−1', '+1'))[0 if cb < 0 else 1]}"
        ax.plot([0, 1], rng.clip(np.array([cells[(-1.0, cb)], cells[(1.0, cb)]])), marker="o", color=color,
                label=label)
    error_axis(ax, rng, "mean test error")
    low, high = levels.get(a, ("−1", "+1"))
    ax.set_xticks([0, 1], [f"{a} − {low}", f"{a} + {high}"])
    ax.set_xlim(-0.3, 1.3)
    ax.grid(axis="y", alpha=0.3)
    n = len(frame) // 4
    fig.suptitle(f"'{runs.study}': {a} × {b}, each point the mean of {n} runs")
    legend_below(fig, ncols=2)
    return fig
