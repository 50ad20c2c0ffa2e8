"""Isolation studies: a `study.kind: isolation` space file, compiled into a grid study over value x nuisance point.

The tuning playbook's isolation study: compare the values of one *scientific* knob, each with the
*nuisance* knobs tuned for it, the rest *fixed* (the baseline). One job here: read such a file's
`baseline:`, `scientific:` and `nuisance:` sections, check them, and compile them into an ordinary
`space.Space`, so that the grid tuner, resume, `--workers`, tracking, run names and the progress line run
it as they run any study.

    study:
      kind: isolation
      dataset: mnist
      epochs: 5
      trials_per_value: 12     # nuisance configurations tried for each scientific value
      seeds: 3                 # fresh seeds for each value's best configuration, paired across values
    baseline: {variant: small-kernel}
    scientific:
      optimizer: [adam, sgd, rmsprop, nadam]
    nuisance:
      learning_rate: {float: [1.0e-4, 3.0e-1], sampling: log}
      momentum: {float: [0.0, 0.95], when: {optimizer: sgd}}

Phase 1, the compiled grid: `trials_per_value` quasi-random nuisance points (a scrambled Halton sequence
seeded with study.seed, one dimension per nuisance knob; log ranges mapped through log space; values
rounded to 3 significant digits), the SAME points for every value: a knob with `when:` is drawn (from its
own dimension) for the values it names only. One grid knob, schema.ISOLATION, holds each trial's
configuration as text (spacefile.isolation_name: "#03 optimizer=sgd learning_rate=0.00123
momentum=0.52"), point-major, so an interrupted study holds every value at the same points; every trial
is trained with seed study.seed and judged on validation only. Phase 2 (study/retrain.py, after the grid):
each value's best point by validation accuracy is trained again with seeds study.seed+1 ..
study.seed+seeds (the same seeds for every value: they pair the values), each its own run, evaluated on
test: only they read the test set.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import model as m
from . import schema
from .lazy import lazy
from .spacefile import (ALLOWED_VALUES, BASELINE_KEYS, KNOB_KINDS, SpaceError, StudySettings, check_sections,
                        check_value, compiled_study_section, hp_value, isolation_name, read_baseline, resolve_config,
                        value_text)

qmc = lazy("scipy.stats.qmc")  # the nuisance points; loaded only for an isolation file

SECTIONS = ("study", "baseline", "scientific", "nuisance")
COMPILED = {"tuner": "grid", "test_eval": "best"}  # test_eval unused: only the retrains read the test set
# Knobs a value or a nuisance point may set: the baseline's, less the variant (a recipe, not a knob) and
# dense_units (a list, which a trial's name cannot carry).
SETTABLE = tuple(k for k in BASELINE_KEYS if k not in ("variant", "dense_units"))
NUISANCE_TYPES = ("float", "int", "choice")
NUISANCE_SAMPLINGS = ("linear", "log")
SIGNIFICANT = 3  # digits a drawn number keeps: the trial's name, its params and the plan show the same value


@dataclass(frozen=True)
class Nuisance:
    """One nuisance knob: its kind (float, int, choice), range or choices, sampling, and the scientific values
    it applies to (`when`; None: all)."""

    knob: str
    kind: str
    low: float = 0.0
    high: float = 0.0
    choices: tuple = ()
    sampling: str = "linear"
    when: tuple | None = None

    def applies(self, value: Any) -> bool:
        return self.when is None or value in self.when

    def draw(self, u: float) -> Any:
        """The knob's value at u in [0, 1): log ranges through log space, numbers rounded to SIGNIFICANT digits."""
        if self.kind == "choice":
            return self.choices[min(int(u * len(self.choices)), len(self.choices) - 1)]
        if self.kind == "int":
            if self.sampling == "log":
                x = round(math.exp(math.log(self.low) + u * (math.log(self.high) - math.log(self.low))))
            else:
                x = int(self.low + math.floor(u * (self.high - self.low + 1)))
            return int(min(max(x, self.low), self.high))
        if self.sampling == "log":
            x = math.exp(math.log(self.low) + u * (math.log(self.high) - math.log(self.low)))
        else:
            x = self.low + u * (self.high - self.low)
        return float(min(max(float(f"{x:.{SIGNIFICANT}g}"), self.low), self.high))

    def text(self) -> str:
        body = (f"choice {', '.join(map(str, self.choices))}" if self.kind == "choice"
                else f"{self.kind} [{self.low}, {self.high}]" + (" log" if self.sampling == "log" else ""))
        return body + (f" (only for {' or '.join(map(str, self.when))})" if self.when is not None else "")


@dataclass(frozen=True)
class Isolation:
    """What an isolation file asked for and what it compiles to: the scientific knob and its values, the
    nuisance knobs, the points (knob -> value, every knob drawn), each trial's name and configuration (by
    value, point-major), and the retrains' seeds."""

    baseline: dict[str, Any]
    knob: str
    values: tuple
    nuisance: tuple[Nuisance, ...]
    points: tuple[dict[str, Any], ...]
    names: dict[Any, tuple[str, ...]]  # value -> its trials' names, one per point
    configs: dict[str, m.LeNetConfig]  # trial name -> configuration
    retrain_seeds: tuple[int, ...]

    def value_name(self, value: Any) -> str:
        """A scientific value as runs record it (schema.ISOLATION_VALUE): "optimizer=sgd"."""
        return f"{self.knob}={value_text(self.knob, value)}"

    def values_of(self, knob: str) -> list[tuple[str, Any]]:
        """Every value the file gives `knob`, with its key (the dataset checks read them)."""
        named = [(f"baseline.{knob}", self.baseline[knob])] if knob in self.baseline else []
        named += [(f"scientific.{knob}", v) for v in self.values] if knob == self.knob else []
        return named + [(f"nuisance.{knob}", p[knob]) for p in self.points if knob in p]

    def describe(self, space) -> str:
        """The isolation study as `lenet-study space` prints it; `space`: the space.Space it was compiled into."""
        s = space.settings
        base = next(iter(self.configs.values()))
        baseline = " ".join(f"{k}={v if k == 'variant' else value_text(k, v)}" for k, v in self.baseline.items())
        baseline = baseline or "the defaults"
        stopping = f"EarlyStopping patience {base.patience}" if base.patience else "EarlyStopping off"
        n_values, n_points, n_seeds = len(self.values), len(self.points), len(self.retrain_seeds)
        width = max(len(n.knob) for n in self.nuisance)
        epochs = sum(c.epochs for c in self.configs.values())
        lines = [
            f"isolation {space.path} (study {space.name!r}, sha256 {space.digest[:12]})",
            f"  baseline (fixed): {baseline} ({base.epochs} epochs, {stopping})",
            f"  scientific: {self.knob}: {', '.join(value_text(self.knob, v) for v in self.values)} "
            f"({n_values} values, each compared at its best over the nuisance knobs)",
            "  nuisance:",
            *(f"    {n.knob:<{width}}  {n.text()}" for n in self.nuisance),
            f"  points: {n_points} (scrambled Halton, seed {s.seed}), the same for every value:",
            *(f"    #{i:02d} " + " ".join(f"{k}={value_text(k, v)}" for k, v in p.items())
              for i, p in enumerate(self.points)),
            f"  phase 1: {n_values * n_points} trials ({n_values} values x {n_points} points), seed {s.seed}, "
            "selected on validation accuracy only (no test set)",
            f"  phase 2: each value's best point retrained with seeds {', '.join(map(str, self.retrain_seeds))} "
            f"(paired across values): {n_values * n_seeds} runs, each evaluated on the test set",
            f"  total: {n_values * (n_points + n_seeds)} trainings, "
            f"{epochs + n_values * n_seeds * base.epochs} epochs at most",
            s.grid_line(),
        ]
        return "\n".join(lines)


def _not_settable(where: str, knob: Any) -> SpaceError:
    why = {"seed": " (study.seed seeds the search, study.seeds the retrains)", "epochs": " (study.epochs sets it)",
           "variant": " (a recipe: put it under baseline)", "dense_units": " (a list: put it under baseline)"}
    return SpaceError(f"{where}: not a knob an isolation study can vary{why.get(knob, '')}; "
                      f"allowed: {', '.join(SETTABLE)}")


def _study_section(path: Path, doc: dict) -> StudySettings:
    return compiled_study_section(
        path, doc, COMPILED,
        why="an isolation study runs every value x nuisance point (tuner grid) and only its retrains read the test set",
        trials="an isolation study runs values x trials_per_value trials",
        required={"trials_per_value": "an isolation study needs an integer of at least 1: the nuisance "
                                      "configurations tried for each scientific value",
                  "seeds": "an isolation study needs an integer of at least 2: each value's best configuration is "
                           "retrained with each, which pairs the values"},
        no_final="an isolation study retrains each value's best with study.seeds instead")


def _scientific(path: Path, raw: Any) -> tuple[str, tuple]:
    example = "e.g. optimizer: [adam, sgd]"
    if not isinstance(raw, dict) or not raw:
        raise SpaceError(f"{path}: scientific: expected one knob with the values to compare, {example}")
    if len(raw) > 1:
        raise SpaceError(f"{path}: scientific: {', '.join(map(str, raw))}: one scientific knob per isolation study "
                         "(its values are compared, each with the nuisance knobs tuned); study another knob in a "
                         "file of its own")
    knob, values = next(iter(raw.items()))
    where = f"{path}: scientific.{knob}"
    if knob not in SETTABLE:
        raise _not_settable(where, knob)
    if not isinstance(values, list) or len(values) < 2:
        raise SpaceError(f"{where}: expected a list of at least 2 values to compare, got {values!r}")
    for value in values:
        check_value(where, knob, value)
    if len({value_text(knob, v) for v in values}) != len(values):
        raise SpaceError(f"{where}: a value is listed twice; list each value once")
    return knob, tuple(values)


def _nuisance(path: Path, raw: Any, knob: str, values: tuple, baseline: dict) -> tuple[Nuisance, ...]:
    if not isinstance(raw, dict) or not raw:
        raise SpaceError(f"{path}: nuisance: expected the knobs tuned for each value, e.g. "
                         "learning_rate: {float: [1.0e-4, 1.0e-1], sampling: log}")
    out = []
    for name, spec in raw.items():
        where = f"{path}: nuisance.{name}"
        if name == knob:
            raise SpaceError(f"{where}: {name} is the scientific knob; a knob is either scientific (compared) or "
                             "nuisance (tuned for each value), not both")
        if name not in SETTABLE:
            raise _not_settable(where, name)
        if name in baseline:
            raise SpaceError(f"{where}: also fixed under baseline; a knob is either fixed or nuisance: remove one")
        if not isinstance(spec, dict):
            raise SpaceError(f"{where}: expected a mapping such as {{float: [min, max]}}, got {spec!r}")
        unknown = set(spec) - {*NUISANCE_TYPES, "sampling", "when"}
        if unknown:
            raise SpaceError(f"{where}: unknown key {sorted(unknown)[0]!r}; allowed: "
                             f"{', '.join(NUISANCE_TYPES)}, sampling, when")
        kinds = [k for k in NUISANCE_TYPES if k in spec]
        if len(kinds) != 1:
            raise SpaceError(f"{where}: give exactly one of {', '.join(NUISANCE_TYPES)}")
        kind, body = kinds[0], spec[kinds[0]]
        sampling = spec.get("sampling", "linear")
        when = spec.get("when")
        if when is not None:
            if not (isinstance(when, dict) and len(when) == 1 and knob in when):
                raise SpaceError(f"{where}.when: expected {{{knob}: <value or values>}}: a nuisance knob can depend "
                                 f"on the scientific knob only")
            named = when[knob] if isinstance(when[knob], list) else [when[knob]]
            for value in named:
                if value not in values:
                    raise SpaceError(f"{where}.when.{knob}: {value!r} is not among the scientific values "
                                     f"({', '.join(map(str, values))})")
            when = tuple(named)
        if kind == "choice":
            if not isinstance(body, list) or not body:
                raise SpaceError(f"{where}.choice: expected a non-empty list of values")
            for value in body:
                check_value(f"{where}.choice", name, value)
            if "sampling" in spec:
                raise SpaceError(f"{where}.sampling: only int and float knobs take sampling")
            out.append(Nuisance(name, kind, choices=tuple(body), when=when))
            continue
        if name in ALLOWED_VALUES:
            raise SpaceError(f"{where}: {name} is categorical; use choice")
        if kind == "int" and KNOB_KINDS[name] is not int:
            raise SpaceError(f"{where}: {name} is a {KNOB_KINDS[name].__name__}; use float")
        numeric = isinstance(body, list) and len(body) == 2 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in body)
        if not numeric or (kind == "int" and not all(isinstance(v, int) for v in body)):
            raise SpaceError(f"{where}.{kind}: expected [min, max], got {body!r}")
        low, high = body
        if not low < high:
            raise SpaceError(f"{where}.{kind}: range [{low}, {high}] is empty or reversed; need min < max")
        for value in body:
            check_value(f"{where}.{kind}", name, value)
        if sampling not in NUISANCE_SAMPLINGS:
            raise SpaceError(f"{where}.sampling: {sampling!r} is not allowed; allowed: {', '.join(NUISANCE_SAMPLINGS)}")
        if sampling == "log" and low <= 0:
            raise SpaceError(f"{where}.sampling: log sampling needs min > 0, got {low}")
        out.append(Nuisance(name, kind, low=low, high=high, sampling=sampling, when=when))
    return tuple(out)


def draw_points(nuisance: tuple[Nuisance, ...], n: int, seed: int) -> tuple[dict[str, Any], ...]:
    """n quasi-random points, one dimension per nuisance knob (scrambled Halton, seeded): knob -> value."""
    unit = np.asarray(qmc.Halton(d=len(nuisance), scramble=True, rng=seed).random(n))
    return tuple({n_.knob: n_.draw(float(unit[i, j])) for j, n_ in enumerate(nuisance)} for i in range(n))


def compile_isolation(path: Path, doc: dict) -> tuple[StudySettings, dict[str, dict], Isolation]:
    """Check an isolation file (read by space.load_space) and compile it into one grid knob over value x
    point: its settings (max_trials values x trials_per_value), its knobs (the baseline's fixed, the seed
    fixed at study.seed, then schema.ISOLATION) and the Isolation it asked for."""
    check_sections(path, doc, SECTIONS, {"space"}, "an isolation study has no space section: its knobs go under "
                   "scientific (compared) and nuisance (tuned for each value)", "an isolation study")
    settings = _study_section(path, doc)
    baseline = read_baseline(path, doc.get("baseline"))
    knob, values = _scientific(path, doc.get("scientific"))
    if knob in baseline:
        raise SpaceError(f"{path}: scientific.{knob}: also fixed under baseline; a knob is either fixed or "
                         "scientific: remove it from baseline")
    nuisance = _nuisance(path, doc.get("nuisance"), knob, values, baseline)
    points = draw_points(nuisance, settings.trials_per_value, settings.seed)
    fixed = {k: hp_value(k, v) for k, v in baseline.items()}
    by_knob = {n.knob: n for n in nuisance}
    names: dict[Any, list[str]] = {value: [] for value in values}
    configs: dict[str, m.LeNetConfig] = {}
    for i, point in enumerate(points):
        for value in values:
            changes = {knob: value, **{k: v for k, v in point.items() if by_knob[k].applies(value)}}
            name = isolation_name(i, changes)
            try:
                configs[name] = resolve_config({**fixed, "seed": settings.seed, schema.ISOLATION: name}, settings)
            except m.ConfigError as exc:
                raise SpaceError(f"{path}: scientific.{knob}: {value!r} with nuisance point #{i:02d} makes no "
                                 f"LeNet-5 from this baseline: {exc}") from None
            names[value].append(name)
    order = [name for i in range(len(points)) for name in (names[v][i] for v in values)]  # point-major
    knobs = {k: {"type": "fixed", "value": v} for k, v in baseline.items()}
    knobs["seed"] = {"type": "fixed", "value": settings.seed}
    knobs[schema.ISOLATION] = {"type": "choice", "values": order}
    seeds = tuple(range(settings.seed + 1, settings.seed + 1 + settings.seeds))
    compiled = Isolation(baseline, knob, values, nuisance, points, {v: tuple(n) for v, n in names.items()},
                         configs, seeds)
    return dataclasses.replace(settings, max_trials=len(order)), knobs, compiled
