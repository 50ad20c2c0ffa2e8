"""Factorial screening studies: a `study.kind: factorial` space file, compiled into a grid study over the runs
of a two-level fractional factorial design, replicated over seeds.

One job here: read such a file's `baseline:` and `factors:` sections, build the design (pydoe's
`fracfact_by_res`: the fewest runs that reach the requested resolution; a full factorial when the factors are
few enough), verify its resolution from its own columns, work out its generators and alias structure, check
that every run makes a LeNet-5, and compile it into an ordinary `space.Space`, so that the grid tuner,
resume, `--workers`, tracking, run names and the progress line run it as they run any study.

    study:
      kind: factorial
      dataset: mnist
      epochs: 5
      resolution: 5            # 3, 4 or 5
      seeds: 2                 # whole replicates of the design, each with its own seed
    baseline: {variant: small-kernel, c1_padding: same}
    factors:                   # two levels each: low, high
      activation: [tanh, relu]
      optimizer:               # a level may set several knobs
        - {optimizer: sgd, learning_rate: 0.03, momentum: 0.9}
        - {optimizer: adam, learning_rate: 0.001}

Replicate r (0 .. seeds-1) trains every run of the design with seed study.seed + r, in an order shuffled with
that seed; replicates run one after another, so an interrupted study holds whole replicates first. One grid
knob, schema.FACTORIAL, holds each run as text (`run_name`): "r1 #05 activation+ optimizer- seed=1
activation=relu optimizer=sgd learning_rate=0.03 momentum=0.9": the replicate, the design row, the coded
levels, then the seed and every knob it sets. Every run is evaluated on the test set (as an ablation's arms
are): the analysis (study/report/factorial.py) fits the effects on the runs themselves.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import model as m
from . import schema
from .lazy import lazy
from .spacefile import (BASELINE_KEYS, SpaceError, StudySettings, check_sections, check_value, compiled_study_section,
                        hp_value, parse_factorial_run, read_baseline, resolve_config, value_text)

pydoe = lazy("pydoe")  # the designs; loaded only for a factorial file

SECTIONS = ("study", "baseline", "factors")
COMPILED = {"tuner": "grid", "test_eval": "all"}
RESOLUTIONS = (3, 4, 5)
MAX_RUNS = 256  # the largest design (per replicate) a study may ask for
# Knobs a factor's level may set: the baseline's, less the variant (a recipe) and dense_units (a list, which a
# run's name cannot carry).
SETTABLE = tuple(k for k in BASELINE_KEYS if k not in ("variant", "dense_units"))
FACTOR_NAME = re.compile(r"^[a-z][a-z0-9_]*$")  # a factor's name is a column of the analysis' formula
ROMAN = {3: "III", 4: "IV", 5: "V", 6: "VI", 7: "VII", 8: "VIII"}


@dataclass(frozen=True)
class Factor:
    """One factor: its name and its two levels, each the knobs it sets ({knob: value}); low first (coded -1)."""

    name: str
    low: dict[str, Any]
    high: dict[str, Any]

    def level(self, code: int) -> dict[str, Any]:
        return self.high if code > 0 else self.low

    def short_text(self, code: int) -> str:
        """A level in a few characters (figures' ticks): the value of the knob the factor is named after, else
        its first knob's "knob=value"."""
        level = self.level(code)
        if self.name in level:
            return value_text(self.name, level[self.name])
        knob, value = next(iter(level.items()))
        return f"{knob}={value_text(knob, value)}"

    def level_text(self, code: int) -> str:
        level = self.level(code)
        if list(level) == [self.name]:
            return value_text(self.name, level[self.name])
        return "{" + ", ".join(f"{k}={value_text(k, v)}" for k, v in level.items()) + "}"


@dataclass(frozen=True)
class Design:
    """A two-level design: its coded matrix (runs x factors, -1/+1), its resolution computed from its
    columns (None: a full factorial, no defining relation), its generators ("E = ABCD", by factor name) and
    its alias chains among main effects and two-factor interactions (each a tuple of effect names, "a" or
    "a:b"; an effect aliased with nothing is a chain of one)."""

    matrix: np.ndarray
    names: tuple[str, ...]
    resolution: int | None
    generators: tuple[str, ...]
    chains: tuple[tuple[str, ...], ...]

    @property
    def runs(self) -> int:
        return int(self.matrix.shape[0])

    @property
    def full(self) -> bool:
        return self.resolution is None

    def resolution_text(self) -> str:
        return "full factorial" if self.full else f"resolution {ROMAN.get(self.resolution, self.resolution)}"

    def aliased(self) -> list[tuple[str, ...]]:
        """The chains of two or more effects: effects the design cannot tell apart."""
        return [c for c in self.chains if len(c) > 1]


def effect_column(matrix: np.ndarray, names: tuple[str, ...], effect: str) -> np.ndarray:
    """The contrast column of an effect ("a", or "a:b" for an interaction) in a coded design."""
    column = np.ones(matrix.shape[0])
    for name in effect.split(":"):
        column = column * matrix[:, names.index(name)]
    return column


def design_resolution(matrix: np.ndarray) -> int | None:
    """The resolution of a coded two-level design, from its columns: the length of the shortest word of its
    defining relation (the fewest columns whose product is constant); None for a full factorial (no word).
    A design with a constant column, or two columns equal up to sign, has resolution 1 or 2."""
    k = matrix.shape[1]
    for size in range(1, k + 1):
        for subset in itertools.combinations(range(k), size):
            product = np.prod(matrix[:, subset], axis=1)
            if np.all(product == product[0]):
                return size
    return None


def _generators(matrix: np.ndarray, names: tuple[str, ...]) -> tuple[str, ...]:
    """The generators of a regular fraction: a set of base columns forming a full factorial in the design's
    runs, and every other column written as a product of them ("e = -a:b:c")."""
    runs, k = matrix.shape
    base_size = int(round(np.log2(runs)))
    if 2 ** base_size != runs or base_size >= k:
        return ()
    for base in itertools.combinations(range(k), base_size):
        if len({tuple(row) for row in matrix[:, base]}) == runs:
            break
    else:
        return ()
    out = []
    for j in (j for j in range(k) if j not in base):
        for size in range(1, base_size + 1):
            match = next((s for s in itertools.combinations(base, size)
                          if abs(float(np.prod(matrix[:, s], axis=1) @ matrix[:, j])) == runs), None)
            if match is not None:
                sign = "" if float(np.prod(matrix[:, match], axis=1) @ matrix[:, j]) > 0 else "-"
                out.append(f"{names[j]} = {sign}{':'.join(names[i] for i in match)}")
                break
    return tuple(out)


def alias_chains(matrix: np.ndarray, names: tuple[str, ...]) -> tuple[tuple[str, ...], ...]:
    """The main effects and two-factor interactions grouped by contrast column (equal up to sign): each group
    is one estimable effect, a chain of the effects it cannot tell apart; main effects first, in order."""
    effects = list(names) + [f"{a}:{b}" for a, b in itertools.combinations(names, 2)]
    groups: dict[tuple, list[str]] = {}
    for effect in effects:
        column = effect_column(matrix, names, effect)
        key = tuple((column * column[0]).astype(int))  # the same chain whatever the sign
        groups.setdefault(key, []).append(effect)
    return tuple(tuple(g) for g in groups.values())


def build_design(names: tuple[str, ...], resolution: int) -> Design:
    """The fewest-run two-level design for these factors at `resolution` or better (pydoe's fracfact_by_res),
    its resolution checked from its columns. ValueError when none fits in MAX_RUNS runs."""
    k = len(names)
    try:
        matrix = np.asarray(pydoe.fracfact_by_res(k, resolution), dtype=float)
    except ValueError as exc:
        raise ValueError(f"pydoe builds no design for {k} factors at resolution {resolution} ({exc})") from None
    if matrix.shape[0] > MAX_RUNS:
        raise ValueError(f"{k} factors at resolution {resolution} need {matrix.shape[0]} runs, more than "
                         f"{MAX_RUNS}")
    matrix = np.where(matrix > 0, 1.0, -1.0)
    found = design_resolution(matrix)
    if found is not None and found < resolution:
        raise ValueError(f"the design pydoe returned for {k} factors at resolution {resolution} has resolution "
                         f"{found} when computed from its columns")
    return Design(matrix, names, found, _generators(matrix, names), alias_chains(matrix, names))


# --------------------------------------------------------------------------- a run as text


def run_name(replicate: int, row: int, codes: dict[str, int], seed: int, knobs: dict[str, Any]) -> str:
    """One run of a replicate as one text (schema.FACTORIAL's values): "r1 #05 activation+ optimizer- seed=1
    activation=relu optimizer=sgd learning_rate=0.03 momentum=0.9"."""
    coded = [f"{name}{'+' if code > 0 else '-'}" for name, code in codes.items()]
    values = [f"{k}={value_text(k, v)}" for k, v in knobs.items()]
    return " ".join([f"r{replicate}", f"#{row:02d}", *coded, f"seed={seed}", *values])


def run_label(name: str) -> str:
    """The short label of a run (progress lines, run names): its replicate, row and coded levels."""
    return " ".join(t for t in str(name).split(" ") if "=" not in t)


def parse_run(name: str) -> tuple[int, int, dict[str, int], int, dict[str, Any]]:
    """A run's replicate, design row, coded levels (factor -> -1/+1), seed and knob values, from its name
    (`run_name`); ConfigError for anything else."""
    knobs = parse_factorial_run(name)  # checks the form
    tokens = str(name).split(" ")
    codes = {t[:-1]: 1 if t.endswith("+") else -1 for t in tokens[2:] if "=" not in t}
    if "seed" not in knobs or not codes or not all(t[-1:] in "+-" for t in tokens[2:] if "=" not in t):
        raise m.ConfigError(f"factorial: {name!r} names no seed or a coded level not ending in + or -")
    seed = knobs.pop("seed")
    return int(tokens[0][1:]), int(tokens[1][1:]), codes, seed, knobs


def run_params(name: str) -> dict[str, str]:
    """The params that place a run in its design: FACTORIAL (the text), FACTORIAL_REPLICATE, FACTORIAL_ROW and
    each factor's coded level (schema.LEVEL_PREFIX + factor: "-1" or "1")."""
    replicate, row, codes, _, _ = parse_run(name)
    return {schema.FACTORIAL: name, schema.FACTORIAL_REPLICATE: str(replicate), schema.FACTORIAL_ROW: str(row),
            **{schema.LEVEL_PREFIX + f: str(c) for f, c in codes.items()}}


# --------------------------------------------------------------------------- the file


@dataclass(frozen=True)
class Factorial:
    """What a factorial file asked for and what it compiles to: the baseline, the factors, the design, the
    replicates' seeds and run order, and each run's configuration (by name)."""

    baseline: dict[str, Any]
    factors: tuple[Factor, ...]
    design: Design
    seeds: tuple[int, ...]
    order: tuple[str, ...]  # every run's name, replicate by replicate, each shuffled with its seed
    configs: dict[str, m.LeNetConfig]

    def values_of(self, knob: str) -> list[tuple[str, Any]]:
        """Every value the file gives `knob`, with its key (the dataset checks read them)."""
        named = [(f"baseline.{knob}", self.baseline[knob])] if knob in self.baseline else []
        return named + [(f"factors.{f.name}", level[knob]) for f in self.factors for level in (f.low, f.high)
                        if knob in level]

    def describe(self, space) -> str:
        """The factorial study as `lenet-study space` prints it; `space`: the space.Space it was compiled into."""
        s, d = space.settings, self.design
        base = next(iter(self.configs.values()))
        baseline = " ".join(f"{k}={v if k == 'variant' else value_text(k, v)}" for k, v in self.baseline.items())
        stopping = f"EarlyStopping patience {base.patience}" if base.patience else "EarlyStopping off"
        width = max(len(f.name) for f in self.factors)
        k, runs = len(self.factors), d.runs
        size = (f"2^{k} = {runs} runs" if d.full else f"2^({k}-{k - int(round(np.log2(runs)))}) = {runs} runs")
        aliased = d.aliased()
        lines = [
            f"factorial {space.path} (study {space.name!r}, sha256 {space.digest[:12]})",
            f"  baseline (fixed): {baseline or 'the defaults'} ({base.epochs} epochs, {stopping})",
            f"  factors: {k}, two levels each (low -1, high +1):",
            *(f"    {f.name:<{width}}  -1: {f.level_text(-1)}   +1: {f.level_text(1)}" for f in self.factors),
            f"  design: {size}, {d.resolution_text()} (computed from its columns; pydoe fracfact_by_res, "
            f"resolution {s.resolution} asked)",
            "  generators: " + ("; ".join(d.generators) if d.generators else "none (every combination runs)"),
        ]
        if not aliased:
            lines.append("  aliases: none among main effects and two-factor interactions: every one is estimated "
                         "on its own" + ("" if d.full else " (each is aliased with interactions of three or more "
                                                            "factors only, assumed negligible)"))
        else:
            mains = [c for c in aliased if any(":" not in e for e in c)]
            lines.append(f"  aliases: {len(aliased)} chains of effects the design cannot tell apart "
                         f"({len(mains)} involving a main effect); each is estimated as one sum:")
            lines += [f"    {' = '.join(chain)}" for chain in aliased]
        lines += [
            f"  replicates: {len(self.seeds)}, seeds {', '.join(map(str, self.seeds))}: each the whole design, its "
            "runs shuffled with its seed, one replicate after another",
            f"  trials: {len(self.order)} ({runs} runs x {len(self.seeds)} replicates), "
            f"{sum(c.epochs for c in self.configs.values())} epochs at most, every trial evaluated on the test set",
            s.grid_line(),
        ]
        return "\n".join(lines)


def _study_section(path: Path, doc: dict) -> StudySettings:
    return compiled_study_section(
        path, doc, COMPILED,
        why="a factorial study runs every run of its design x replicate (tuner grid) and evaluates each on the "
            "test set",
        trials="a factorial study runs its design's runs x seeds",
        required={"resolution": "a factorial study needs 3, 4 or 5: the design's resolution (5: every two-factor "
                                "interaction estimated on its own)"},
        no_final="a factorial study measures its runs and trains no final model")


def _not_settable(where: str, knob: Any) -> SpaceError:
    why = {"seed": " (study.seeds sets the replicates' seeds)", "epochs": " (study.epochs sets it)",
           "variant": " (a recipe: put it under baseline)", "dense_units": " (a list: put it under baseline)"}
    return SpaceError(f"{where}: not a knob a factor can set{why.get(knob, '')}; allowed: {', '.join(SETTABLE)}")


def _factors(path: Path, raw: Any, baseline: dict) -> tuple[Factor, ...]:
    example = "e.g. activation: [tanh, relu]"
    if not isinstance(raw, dict) or len(raw) < 2:
        raise SpaceError(f"{path}: factors: expected at least 2 factors, each with its two levels, {example}")
    out: list[Factor] = []
    owner: dict[str, str] = {}
    for name, levels in raw.items():
        where = f"{path}: factors.{name}"
        if not isinstance(name, str) or not FACTOR_NAME.match(name):
            raise SpaceError(f"{where}: a factor's name is lowercase letters, digits and _ (a knob's name, or a "
                             "name of your own for a factor whose levels set several knobs)")
        if not isinstance(levels, list) or len(levels) != 2:
            count = f"{len(levels)} levels" if isinstance(levels, list) else repr(levels)
            raise SpaceError(f"{where}: expected exactly two levels [low, high], got {count}; a two-level design "
                             "screens each factor at two levels")
        parsed = []
        for i, level in enumerate(levels):
            at = f"{where}[{i}]"
            if isinstance(level, dict):
                if not level:
                    raise SpaceError(f"{at}: an empty level; give the knobs it sets, e.g. {{optimizer: adam}}")
                knobs = dict(level)
            else:
                if name not in SETTABLE:
                    raise (_not_settable(where, name) if name in BASELINE_KEYS or name in ("seed", "epochs")
                           else SpaceError(f"{where}: {name!r} is not a knob; a factor named after a knob takes "
                                           f"its two values ({example}), a factor of another name takes two "
                                           f"mappings of knobs ({{optimizer: adam, learning_rate: 0.001}}); "
                                           f"knobs: {', '.join(SETTABLE)}"))
                knobs = {name: level}
            for knob, value in knobs.items():
                if knob not in SETTABLE:
                    raise _not_settable(f"{at}.{knob}", knob)
                check_value(f"{at}.{knob}", knob, value)
            parsed.append(knobs)
        low, high = parsed
        if {k: value_text(k, v) for k, v in low.items()} == {k: value_text(k, v) for k, v in high.items()}:
            raise SpaceError(f"{where}: both levels are the same; a factor needs two different levels")
        for knob in {*low, *high}:
            if knob in baseline:
                raise SpaceError(f"{where}: {knob} is also fixed under baseline; a knob is either fixed or set by a "
                                 "factor: remove it from baseline")
            if knob in owner:
                raise SpaceError(f"{where}: {knob} is also set by factor {owner[knob]}; each knob belongs to one "
                                 "factor")
            owner[knob] = name
        out.append(Factor(name, low, high))
    return tuple(out)


def compile_factorial(path: Path, doc: dict) -> tuple[StudySettings, dict[str, dict], Factorial]:
    """Check a factorial file (read by space.load_space) and compile it into one grid knob over replicate x
    design run: its settings (max_trials runs x seeds), its knobs (the baseline's fixed, then
    schema.FACTORIAL) and the Factorial it asked for."""
    check_sections(path, doc, SECTIONS, {"space", "ablate", "scientific", "nuisance"},
                   "a factorial study has no such section: its knobs go under factors, each with two levels",
                   "a factorial study")
    settings = _study_section(path, doc)
    baseline = read_baseline(path, doc.get("baseline"))
    factors = _factors(path, doc.get("factors"), baseline)
    names = tuple(f.name for f in factors)
    try:
        design = build_design(names, settings.resolution)
    except ValueError as exc:
        raise SpaceError(f"{path}: study.resolution: {settings.resolution} cannot be reached for {len(names)} "
                         f"factors within {MAX_RUNS} runs: {exc}; ask a lower resolution or fewer factors") from None
    fixed = {k: hp_value(k, v) for k, v in baseline.items()}
    seeds = tuple(range(settings.seed, settings.seed + settings.seeds))
    configs: dict[str, m.LeNetConfig] = {}
    order: list[str] = []
    for replicate, seed in enumerate(seeds):
        rows = np.random.default_rng(seed).permutation(design.runs)
        for row in rows:
            codes = {f.name: int(c) for f, c in zip(factors, design.matrix[row])}
            knobs = {k: v for f in factors for k, v in f.level(codes[f.name]).items()}
            name = run_name(replicate, int(row), codes, seed, knobs)
            try:
                config = resolve_config({**fixed, schema.FACTORIAL: name}, settings)
                m.feature_map_sizes(config)
            except m.ConfigError as exc:
                levels = ", ".join(f"{f.name}={f.level_text(codes[f.name])}" for f in factors)
                raise SpaceError(f"{path}: factors: run #{int(row):02d} of the design ({levels}) makes no LeNet-5 "
                                 f"from this baseline: {exc}; a design with a hole cannot be analysed: change a "
                                 "level or the baseline") from None
            configs[name] = config
            order.append(name)
    knobs = {k: {"type": "fixed", "value": v} for k, v in baseline.items()}
    knobs[schema.FACTORIAL] = {"type": "choice", "values": order}
    compiled = Factorial(baseline, factors, design, seeds, tuple(order), configs)
    return dataclasses.replace(settings, max_trials=len(order)), knobs, compiled
