"""Ablation studies: a `study.kind: ablation` space file, compiled into a grid study over arms x seeds.

One job: read an ablation file's `baseline:` and `ablate:` sections, check them, and compile them into
an ordinary `space.Space`, so that the grid tuner, resume, `--workers`, tracking, run names and the
progress line run an ablation as they run any study.

    study:
      kind: ablation
      dataset: mnist
      seeds: 5          # every arm is trained with seeds 0..4: the seeds pair the arms
      epochs: 10
    baseline: {variant: small-kernel}      # a documented variant, knob values, or both
    ablate:                                # one knob changed at a time; each alternative is an arm
      activation: [sigmoid, tanh]
      kernel_size: [5]

compiles to the grid `seed` x `arm`, arm one of "baseline", "activation=sigmoid", "activation=tanh",
"kernel_size=5" (`arm_name`), with the baseline's values as fixed knobs, tuner grid, max_trials arms x
seeds, and every trial evaluated on the test set. The seed varies slowest: every arm runs with seed 0
before any runs with seed 1, so an interrupted ablation holds complete pairs. `resolve_config` reads the
arm back (`parse_arm`): the baseline's configuration with that one knob changed (momentum, which acts
only under sgd, is reset to 0 when an arm moves the optimizer away from sgd). Arms' names and their
reading live in spacefile.py beside `resolve_config`; space.load_space makes the compiled grid a Space.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import model as m
from . import schema
from .spacefile import (ABLATABLE, BASELINE, BASELINE_KEYS, SET_BY_STUDY, SpaceError, StudySettings, check_value,
                        hp_value, resolve_config, study_settings, value_text)
from .spacefile import arm_name, parse_arm  # noqa: F401  (re-exported: an arm's name and its reading, beside the kind)
from .variants import VARIANTS

SECTIONS = ("study", "baseline", "ablate")
# Settings an ablation compiles itself (max_trials too: arms x seeds).
COMPILED = {"tuner": "grid", "test_eval": "all"}


@dataclass(frozen=True)
class Ablation:
    """What an ablation file asked for: its baseline, its alternatives and its seeds; the arms it compiles
    to ("baseline" first, then one per alternative in the file's order) and each arm's configuration
    (seed 0, on the file's settings)."""

    baseline: dict[str, Any]
    ablate: dict[str, tuple]
    seeds: int
    arms: tuple[str, ...]
    configs: dict[str, m.LeNetConfig]

    def values_of(self, knob: str) -> list[tuple[str, Any]]:
        """Every value the file gives `knob`, with its key: ("baseline.<knob>", v), ("ablate.<knob>", v)..."""
        named = [(f"baseline.{knob}", self.baseline[knob])] if knob in self.baseline else []
        return named + [(f"ablate.{knob}", value) for value in self.ablate.get(knob, ())]

    def describe(self, space) -> str:
        """The ablation as `lenet-study space` prints it; `space`: the space.Space it was compiled into."""
        s, base = space.settings, self.configs[BASELINE]
        baseline = " ".join(f"{k}={v if k == 'variant' else value_text(k, v)}" for k, v in self.baseline.items())
        stopping = f"EarlyStopping patience {base.patience}" if base.patience else "EarlyStopping off"
        unit = "epoch" if base.epochs == 1 else "epochs"
        width = max(len(arm) for arm in self.arms)
        epochs = sum(config.epochs for config in self.configs.values())
        lines = [
            f"ablation {space.path} (study {space.name!r}, sha256 {space.digest[:12]})",
            f"  baseline: {baseline} ({base.epochs} {unit}, {stopping})",
            f"  arms: {len(self.arms)}, the baseline and {len(self.arms) - 1} with one knob changed:",
            *(f"    {arm:<{width}}  {m.count_params(self.configs[arm]):>9,} params"
              + (f", {self.configs[arm].epochs} epochs" if self.configs[arm].epochs != base.epochs else "")
              for arm in self.arms),
            f"  seeds: {self.seeds} (0 to {self.seeds - 1}), every arm trained with each: the seeds pair the arms",
            f"  trials: {len(self.arms) * self.seeds} ({len(self.arms)} arms x {self.seeds} seeds), "
            f"{epochs * self.seeds} epochs at most, every trial evaluated on the test set",
            s.grid_line(),
        ]
        return "\n".join(lines)


def _not_a_knob(where: str, knob: Any, allowed: tuple[str, ...]) -> SpaceError:
    why = f" ({SET_BY_STUDY[knob]})" if knob in SET_BY_STUDY else ""
    return SpaceError(f"{where}: not a knob an ablation can set{why}; allowed: {', '.join(allowed)}")


def _study_section(path: Path, doc: dict):
    """The checked settings, with what an ablation compiles (max_trials is set once the arms are known)."""
    study = doc.get("study") or {}
    for key, value in COMPILED.items():
        if key in study and study[key] != value:
            raise SpaceError(f"{path}: study.{key}: {study[key]!r} is not allowed; an ablation runs every arm x "
                             f"seed, so it is {value}: leave {key} out")
    if "max_trials" in study:
        raise SpaceError(f"{path}: study.max_trials: an ablation runs arms x seeds trials; leave it out "
                         "(--max-trials runs fewer)")
    if "seeds" not in study:
        raise SpaceError(f"{path}: study.seeds: missing; an ablation needs an integer of at least 2: every arm "
                         "is trained with each seed, which pairs them")
    if study.get("final_epochs"):
        raise SpaceError(f"{path}: study.final_epochs: an ablation measures its arms and trains no final model; "
                         "leave it out")
    return study_settings(path, doc, **COMPILED)


def _baseline(path: Path, raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict) or not raw:
        got = "missing" if raw is None else f"got {raw!r}"
        raise SpaceError(f"{path}: baseline: expected variant: <name> ({', '.join(VARIANTS)}) and/or knob values "
                         f"such as {{activation: relu, kernel_size: 3}}; {got}")
    for knob, value in raw.items():
        if knob not in BASELINE_KEYS:
            raise _not_a_knob(f"{path}: baseline.{knob}", knob, BASELINE_KEYS)
        check_value(f"{path}: baseline.{knob}", knob, value)
    return dict(raw)


def compile_ablation(path: Path, doc: dict) -> tuple[StudySettings, dict[str, dict], Ablation]:
    """Check an ablation file (read by space.load_space) and compile it into a grid over seed x arm: its
    settings (max_trials arms x seeds), its knobs (the baseline's fixed, then seed, then arm) and the
    Ablation it asked for, which space.load_space makes into a Space."""
    extra = set(doc) - set(SECTIONS)
    if "space" in extra:
        raise SpaceError(f"{path}: space: an ablation has no space section: it changes one knob of its "
                         "baseline at a time, listed under ablate")
    if extra:
        raise SpaceError(f"{path}: unknown section {sorted(extra)[0]!r}; an ablation's sections: {', '.join(SECTIONS)}")
    settings = _study_section(path, doc)
    baseline = _baseline(path, doc.get("baseline"))
    raw = doc.get("ablate")
    if not isinstance(raw, dict) or not raw:
        raise SpaceError(f"{path}: ablate: expected the knobs to change with their alternatives, "
                         f"e.g. activation: [sigmoid, tanh]; knobs: {', '.join(ABLATABLE)}")
    fixed = {knob: hp_value(knob, value) for knob, value in baseline.items()}
    try:
        base = resolve_config({**fixed, "seed": 0}, settings)
    except m.ConfigError as exc:
        raise SpaceError(f"{path}: baseline: makes no LeNet-5: {exc}") from None
    configs = {BASELINE: base}
    ablate: dict[str, tuple] = {}
    for knob, alternatives in raw.items():
        where = f"{path}: ablate.{knob}"
        if knob not in ABLATABLE:
            raise _not_a_knob(where, knob, ABLATABLE)
        if not isinstance(alternatives, list) or not alternatives:
            raise SpaceError(f"{where}: expected a list of alternatives to the baseline's "
                             f"{value_text(knob, getattr(base, knob))}, got {alternatives!r}")
        for value in alternatives:
            check_value(where, knob, value)
            arm = arm_name(knob, value)
            if arm in configs:
                raise SpaceError(f"{where}: {value!r} is listed twice; list each alternative once")
            try:
                config = resolve_config({**fixed, "seed": 0, schema.ARM: arm}, settings)
            except m.ConfigError as exc:
                raise SpaceError(f"{where}: {value!r} makes no LeNet-5 from this baseline: {exc}") from None
            if config == base:
                raise SpaceError(f"{where}: {value!r} is the baseline's own value "
                                 f"({value_text(knob, getattr(base, knob))}); list only alternatives to it")
            configs[arm] = config
        ablate[knob] = tuple(alternatives)
    arms = tuple(configs)
    knobs = {knob: {"type": "fixed", "value": value} for knob, value in baseline.items()}
    knobs["seed"] = {"type": "choice", "values": list(range(settings.seeds))}  # before the arm: it varies slowest
    knobs[schema.ARM] = {"type": "choice", "values": list(arms)}
    return (dataclasses.replace(settings, max_trials=len(arms) * settings.seeds), knobs,
            Ablation(baseline, ablate, settings.seeds, arms, configs))
