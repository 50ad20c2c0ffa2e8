"""What every kind of space file shares: its text read strictly, its `study:` section, each knob value
checked on its own, an ablation's arms written as text, and a trial's values resolved into a LeNetConfig.

The one place a space file's text is parsed (no key twice, no aliases). A plain search's file is then
validated by study/space.py, an ablation's by study/ablation.py; both check their knobs' values here
(`check_value`, against the knob table in knobs.py and the config's field types) and their `study:`
section (`study_settings`). `resolve_config` turns one trial's values (keras-tuner's, or an arm) into
the config it trains, for the tuner and the checks alike. `SpaceError` is every space-file error: one
line naming the file and key.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from . import schema
from .budget import DURATION_EXAMPLES, parse_duration
from .data import DATASETS
from .errors import StudyError
from .knobs import (ACTIVATIONS, AUGMENTS, AUTO_AUGMENT, AUTO_AUGMENT_DEFAULT, C5_KINDS, INPUT_SCALINGS, KERNEL_SIZES,
                    KNOB_RANGES, LOSSES, LR_SCHEDULES, OPTIMIZERS, OUTPUTS, PADDINGS, POOLINGS)
from .model import (ConfigError, LeNetConfig, field_types, format_widths, params_to_fields, parse_widths,
                    scalar_type)
from .pruning import PRUNERS
from .variants import VARIANTS

TUNERS = ("random", "bayesian", "tpe", "hyperband", "grid")
TEST_EVALS = ("best", "all")
KINDS = ("search", "ablation", "isolation", "factorial")  # compiled by study/ablation.py, isolation.py, factorial.py
# The kinds compiled into a grid: kind -> (the test_eval they set, why, as check_settings says it).
GRID_KINDS = {
    "ablation": ("all", "an ablation runs every arm x seed (a grid) and evaluates each on the test set"),
    "isolation": ("best", "an isolation study runs every value x nuisance point (a grid), selects on validation "
                          "only, and only its retrains read the test set"),
    "factorial": ("all", "a factorial study runs every run of its design x replicate (a grid) and evaluates each "
                         "on the test set"),
}

# knob -> int, float or str (None for dense_units, a list); the builder's config defines them.
KNOB_KINDS = {name: scalar_type(tp) for name, tp in field_types(LeNetConfig).items()}
# The values each categorical knob may take; numeric knobs are checked against knobs.KNOB_RANGES.
ALLOWED_VALUES: dict[str, tuple] = {
    "activation": ACTIVATIONS,
    "pooling": POOLINGS,
    "c1_padding": PADDINGS,
    "kernel_size": KERNEL_SIZES,
    "c5": C5_KINDS,
    "output": OUTPUTS,
    "loss": LOSSES,
    "optimizer": OPTIMIZERS,
    "input_scaling": tuple(INPUT_SCALINGS),
    "augment": tuple(AUGMENTS) + ("auto",),
    "lr_schedule": LR_SCHEDULES,
    "batch_norm": (False, True),
    "variant": tuple(VARIANTS),
}
KNOBS = tuple(KNOB_KINDS) + ("variant",)

# An ablation's arms: the baseline, or one knob changed ("<knob>=<value>", schema.ARM's values).
BASELINE = schema.ARM_BASELINE  # the arm that changes nothing
# Knobs an ablation sets itself: the seeds pair the arms, the study's epochs cap every arm.
SET_BY_STUDY = {"seed": "study.seeds sets the seeds", "epochs": "study.epochs sets the epochs"}
BASELINE_KEYS = tuple(k for k in KNOBS if k not in SET_BY_STUDY)  # variant included
ABLATABLE = tuple(k for k in BASELINE_KEYS if k != "variant")


class SpaceError(StudyError, ValueError):
    """A space file that cannot be used; the message names the file, the key and what is allowed."""


class _SpaceLoader(yaml.SafeLoader):
    """yaml.safe_load's loader, stricter: a key given twice is an error (YAML keeps the last one: a
    second `study:` section would silently reset the study), and so is an alias (`*name`), which can
    expand a few lines into gigabytes ("billion laughs"); a space file writes its values out."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, f"alias *{event.anchor}: aliases are not allowed in a space file; write the value out",
                event.start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, Hashable):
                continue  # SafeLoader's own error names it
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first at line {seen[key]}); a key may appear once",
                    key_node.start_mark)
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def read_space_file(path: Path) -> tuple[bytes, dict]:
    """A space file's bytes and its YAML mapping (SpaceError when unreadable, not YAML, or not a mapping)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SpaceError(f"{path}: cannot read the space file ({exc.strerror or exc})") from None
    return data, parse_space_yaml(data, path)


def parse_space_yaml(data: bytes, path: Path) -> dict:
    """A space file's bytes as its YAML mapping; `path` names it in messages (SpaceError when not YAML or
    not a mapping)."""
    try:
        doc = yaml.load(data, Loader=_SpaceLoader) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise SpaceError(f"{path}: not valid YAML{at}: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(doc, dict):
        raise SpaceError(f"{path}: expected a mapping with 'study' and 'space' sections")
    return doc


# --------------------------------------------------------------------------- knob values


def hp_value(knob: str, value: Any):
    """A knob's value as keras-tuner holds it: a scalar (a list of dense widths travels as "120,84")."""
    if knob == "dense_units":
        return format_widths(parse_widths(value))
    return value


def check_value(where: str, knob: str, value: Any) -> None:
    """One value of one knob, as LeNetConfig checks it on its own (knobs.KNOB_RANGES); combinations are
    the trials' business (an impossible shape is a FAILED trial, not a bad space file)."""
    if knob == "batch_norm" and not isinstance(value, bool):
        raise SpaceError(f"{where}: {value!r} is not allowed; allowed: true, false")
    allowed = ALLOWED_VALUES.get(knob, ())
    if knob in ALLOWED_VALUES and (value not in allowed or type(value) not in {type(a) for a in allowed}):
        raise SpaceError(f"{where}: {value!r} is not allowed; allowed: {', '.join(map(str, allowed))}")
    if knob == "dense_units":
        try:
            widths = parse_widths(value)
        except ConfigError:
            raise SpaceError(f"{where}: {value!r} is not a list of dense widths such as [120, 84]") from None
        if not all(KNOB_RANGES[knob].holds(w) for w in widths):
            raise SpaceError(f"{where}: {value!r} has a width outside the allowed range {KNOB_RANGES[knob]}")
        return
    if knob in ALLOWED_VALUES or knob == "dense_units":
        return
    kind = KNOB_KINDS[knob]
    if kind is int and (not isinstance(value, int) or isinstance(value, bool)):
        raise SpaceError(f"{where}: {value!r} is not an integer")
    if kind is float and (not isinstance(value, (int, float)) or isinstance(value, bool)):
        raise SpaceError(f"{where}: {value!r} is not a number")
    if knob in KNOB_RANGES and not KNOB_RANGES[knob].holds(value):
        raise SpaceError(f"{where}: {value!r} is outside the allowed range {KNOB_RANGES[knob]}")


# --------------------------------------------------------------------------- the study: section


@dataclass(frozen=True)
class StudySettings:
    """A study's defaults, from the `study:` section; CLI flags override them."""

    dataset: str = "mnist"
    tuner: str = "hyperband"
    max_trials: int = 20
    epochs: int = 10
    patience: int = 3
    executions_per_trial: int = 1
    seed: int = 0
    val_fraction: float = 0.1
    hyperband_factor: int = 3
    train_samples: int | None = None  # a stratified subsample for quick studies; None = all
    test_eval: str = "best"  # evaluate on test: the best trial only, or every finished trial
    stop_at_chance: int = 0  # stop a trial still at chance validation accuracy after this many epochs; 0 = off
    final_epochs: int = 0  # after the search, train the best configuration this many epochs (its own run); 0 = off
    kind: str = "search"  # or "ablation": arms x seeds (study/ablation.py); "isolation" (study/isolation.py)
    seeds: int = 1  # an ablation trains every arm with seeds 0..seeds-1; an isolation retrains each value's best
    trials_per_value: int = 0  # an isolation: nuisance configurations tried for each scientific value
    resolution: int = 0  # a factorial: the design's resolution (3, 4 or 5); 0 for other kinds
    # Differences in accuracy within ± this many percentage points count as equivalent (0.2: ±0.2 pp), tested
    # by the reports (two one-sided tests) on every paired effect; declared before the study. None: no margin.
    equivalence_margin: float | None = None
    # Seconds one invocation of the study may take, start to end (the file writes "15m", "45s", "1h"): trials
    # start only while the time left holds one more and the final run (study/budget.py). None: no budget.
    time_budget: float | None = None
    # Stop a trial whose validation accuracy falls below the finished trials' median at the same epoch
    # (Optuna's MedianPruner, study/pruning.py): "median", or "none".
    prune: str = "none"
    description: str = ""

    def override(self, **changes: Any) -> "StudySettings":
        changes = {k: v for k, v in changes.items() if v is not None}
        settings = dataclasses.replace(self, **changes)
        check_settings(settings, "command line")
        return settings

    def grid_line(self) -> str:
        """The settings a grid kind's plan prints (`lenet-study space` of an ablation, isolation or factorial)."""
        return (f"  study: dataset={self.dataset} epochs={self.epochs} seed={self.seed} "
                f"val_fraction={self.val_fraction} executions_per_trial={self.executions_per_trial}"
                + (f" train_samples={self.train_samples}" if self.train_samples else "")
                + (f" stop_at_chance={self.stop_at_chance}" if self.stop_at_chance else "")
                + (f" equivalence_margin={self.equivalence_margin} pp" if self.equivalence_margin is not None else ""))

    def to_params(self) -> dict[str, str]:
        """Flat string parameters, as logged on a study's parent run; `from_params` reverses it.
        The description goes to the run's note instead."""
        out = {}
        for f in dataclasses.fields(self):
            if f.name == "description":
                continue
            value = getattr(self, f.name)
            out[f.name] = "all" if f.name == "train_samples" and value is None else str(value)
        return out

    @classmethod
    def from_params(cls, params: dict[str, Any], base: "StudySettings | None" = None) -> "StudySettings":
        """The settings a parent run recorded (see `to_params`), over `base` for what it did not record."""
        changes = params_to_fields(cls, params, skip=("description",))
        return dataclasses.replace(base or cls(), **changes)


def check_settings(s: StudySettings, where: str) -> None:
    """Every setting of `s` that cannot run, refused in one line (SpaceError naming `where` and the key)."""

    def bad(key, allowed):
        raise SpaceError(f"{where}: study.{key}: {getattr(s, key)!r} is not allowed; {allowed}")

    if s.dataset not in DATASETS:
        bad("dataset", "allowed: " + ", ".join(DATASETS))
    if s.tuner not in TUNERS:
        bad("tuner", "allowed: " + ", ".join(TUNERS))
    if s.kind not in KINDS:
        bad("kind", "allowed: " + ", ".join(KINDS))
    paired = {"ablation": "an ablation trains every arm with each seed, which pairs them",
              "isolation": "an isolation study retrains each value's best with each seed, which pairs the values"}
    if not isinstance(s.seeds, int) or isinstance(s.seeds, bool) or s.seeds < (2 if s.kind in paired else 1):
        bad("seeds", f"need an integer of at least 2: {paired[s.kind]}" if s.kind in paired
            else "need an integer of at least 1")
    if s.kind == "isolation" and (not isinstance(s.trials_per_value, int) or isinstance(s.trials_per_value, bool)
                                  or s.trials_per_value < 1):
        bad("trials_per_value", "need an integer of at least 1: the nuisance configurations tried for each "
            "scientific value")
    if s.kind != "isolation" and s.trials_per_value:
        bad("trials_per_value", "only a kind: isolation study tries nuisance configurations per value; leave it out")
    if s.kind == "factorial" and s.resolution not in (3, 4, 5):
        bad("resolution", "need 3, 4 or 5: the resolution of the factorial design (3: main effects clear of each "
            "other; 4: also of two-factor interactions; 5: every two-factor interaction estimated on its own)")
    if s.kind != "factorial" and s.resolution:
        bad("resolution", "only a kind: factorial study has a design resolution; leave it out")
    if s.kind == "search" and s.seeds != 1:
        bad("seeds", "only a kind: ablation study repeats its trials over seeds; a search varies space.seed")
    if s.kind in GRID_KINDS and (s.tuner, s.test_eval) != ("grid", GRID_KINDS[s.kind][0]):
        key = "tuner" if s.tuner != "grid" else "test_eval"
        bad(key, GRID_KINDS[s.kind][1])
    if s.test_eval not in TEST_EVALS:
        bad("test_eval", "allowed: " + ", ".join(TEST_EVALS))
    for key in ("max_trials", "executions_per_trial"):
        value = getattr(s, key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            bad(key, "need an integer of at least 1")
    # The trials' own epochs, patience and seed: the knobs' ranges (knobs.KNOB_RANGES).
    epochs, patience, seed = (KNOB_RANGES[key] for key in ("epochs", "patience", "seed"))
    if not epochs.holds(s.epochs):
        bad("epochs", f"need an integer of at least 1 (at most {epochs.high})")
    if not patience.holds(s.patience):
        bad("patience", f"need an integer, 0 (off) to {patience.high}")
    if not seed.holds(s.seed):
        bad("seed", f"need {seed.allowed()}")
    if not isinstance(s.description, str):
        bad("description", "need a text (quote it)")
    if not isinstance(s.val_fraction, (int, float)) or not 0 < s.val_fraction < 1:
        bad("val_fraction", "need a number between 0 and 1")
    if not isinstance(s.hyperband_factor, int) or s.hyperband_factor < 2:
        bad("hyperband_factor", "need an integer of at least 2")
    if s.train_samples is not None and (not isinstance(s.train_samples, int) or s.train_samples < 20):
        bad("train_samples", "need an integer of at least 20, or leave it out")
    for key in ("stop_at_chance", "final_epochs"):
        value = getattr(s, key)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= epochs.high:
            bad(key, f"need an integer, 0 (off) to {epochs.high}")
    if s.prune not in PRUNERS:
        bad("prune", "allowed: " + ", ".join(PRUNERS))
    if s.prune != "none":
        if s.kind in GRID_KINDS:
            bad("prune", f"a kind: {s.kind} study runs every trial to the end (each is a measurement); leave it out")
        if s.tuner == "hyperband":
            bad("prune", "Hyperband stops trials early itself (successive halving); leave prune out, or --prune none")
        if s.executions_per_trial != 1:
            bad("prune", "a trial is judged epoch by epoch, which needs executions_per_trial: 1 (or --prune none)")
    budget = s.time_budget
    if budget is not None and (not isinstance(budget, (int, float)) or isinstance(budget, bool)
                               or not 0 < budget < math.inf):
        bad("time_budget", f"give a duration {DURATION_EXAMPLES}, or leave it out")
    margin = s.equivalence_margin
    if margin is not None and (not isinstance(margin, (int, float)) or isinstance(margin, bool) or not 0 < margin < 100):
        bad("equivalence_margin", "need a number of percentage points of accuracy above 0 and below 100 "
            "(0.2 means differences within ±0.2 pp are equivalent), or leave it out")


def time_budget_seconds(value: Any, where: str) -> float:
    """A time budget as written ("15m", "45s", "1h", a number of seconds) in seconds; SpaceError naming `where`
    (the file and key, or the flag) and what is allowed otherwise."""
    try:
        return parse_duration(value)
    except ValueError:
        raise SpaceError(f"{where}: {value!r} is not allowed; give a duration {DURATION_EXAMPLES}") from None


def compiled_study_section(path: Path, doc: dict, compiled: dict[str, Any], *, why: str, trials: str,
                           required: dict[str, str], no_final: str) -> StudySettings:
    """The `study:` section of a kind compiled into a grid (isolation, factorial): the settings the kind sets
    itself (`compiled`; `why` says so) and max_trials (`trials` says what runs instead) refused when given,
    the `required` keys (key -> what the kind needs) present, no final run (`no_final` says why); then checked
    as any study's (`study_settings`)."""
    study = doc.get("study") or {}
    if not isinstance(study, dict):
        raise SpaceError(f"{path}: study: expected a mapping of settings")
    for key, value in compiled.items():
        if key in study and study[key] != value:
            raise SpaceError(f"{path}: study.{key}: {study[key]!r} is not allowed; {why}: leave {key} out")
    if "max_trials" in study:
        raise SpaceError(f"{path}: study.max_trials: {trials}; leave it out (--max-trials runs fewer)")
    for key, need in required.items():
        if key not in study:
            raise SpaceError(f"{path}: study.{key}: missing; {need}")
    if study.get("final_epochs"):
        raise SpaceError(f"{path}: study.final_epochs: {no_final}; leave it out")
    return study_settings(path, doc, **compiled)


def check_sections(path: Path, doc: dict, sections: tuple[str, ...], misplaced: set[str], why: str,
                   kind: str) -> None:
    """A compiled kind's file holds only its `sections`: one of `misplaced` (another kind's) is refused with
    `why`, anything else as an unknown section naming the `kind`'s sections."""
    extra = set(doc) - set(sections)
    if extra & misplaced:
        raise SpaceError(f"{path}: {sorted(extra & misplaced)[0]}: {why}")
    if extra:
        raise SpaceError(f"{path}: unknown section {sorted(extra)[0]!r}; {kind}'s sections: {', '.join(sections)}")


def read_baseline(path: Path, raw: Any) -> dict[str, Any]:
    """An optional `baseline:` section (a variant and/or knob values), each value checked; {} when absent."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise SpaceError(f"{path}: baseline: expected variant: <name> ({', '.join(VARIANTS)}) and/or knob values "
                         f"such as {{activation: relu}}; got {raw!r}")
    for knob, value in raw.items():
        if knob not in BASELINE_KEYS:
            raise SpaceError(f"{path}: baseline.{knob}: not a knob a baseline can fix; allowed: "
                             f"{', '.join(BASELINE_KEYS)}")
        check_value(f"{path}: baseline.{knob}", knob, value)
    return dict(raw)


def study_settings(path: Path, doc: dict, **compiled: Any) -> StudySettings:
    """The `study:` section as checked settings; `compiled`: settings the file's kind sets itself."""
    study = doc.get("study") or {}
    if not isinstance(study, dict):
        raise SpaceError(f"{path}: study: expected a mapping of settings")
    allowed_settings = [f.name for f in dataclasses.fields(StudySettings)]
    for key in study:
        if key not in allowed_settings:
            raise SpaceError(f"{path}: study.{key}: unknown setting; allowed: {', '.join(allowed_settings)}")
    if study.get("time_budget") is not None:
        study = {**study, "time_budget": time_budget_seconds(study["time_budget"], f"{path}: study.time_budget")}
    settings = StudySettings(**{**study, **compiled})
    check_settings(settings, str(path))
    return settings


# --------------------------------------------------------------------------- arms and configs


def value_text(knob: str, value: Any) -> str:
    """A knob's value as an arm writes it: "relu", "5", "0.003", "true", "[120, 84]"."""
    if knob == "dense_units":
        return "[" + ", ".join(map(str, parse_widths(value))) + "]"
    kind = KNOB_KINDS.get(knob)
    if kind is bool:
        return "true" if value else "false"
    if kind is float:
        return repr(float(value))
    return str(value)


def arm_name(knob: str, value: Any) -> str:
    """The arm that sets `knob` to `value`: "<knob>=<value>" (schema.ARM's values)."""
    return f"{knob}={value_text(knob, value)}"


def parse_arm(arm: str) -> dict[str, Any]:
    """The change an arm makes, {knob: value} ({} for the baseline); ConfigError for anything else."""
    if arm == BASELINE:
        return {}
    knob, sep, text = str(arm).partition("=")
    if not sep or knob not in ABLATABLE:
        raise ConfigError(f"arm: {arm!r} is neither {BASELINE!r} nor '<knob>=<value>' of a knob")
    kind = KNOB_KINDS[knob]
    try:
        if knob == "dense_units":
            return {knob: parse_widths(text.strip("[]"))}
        if kind is bool:
            return {knob: {"true": True, "false": False}[text]}
        return {knob: kind(text) if kind in (int, float) else text}
    except (KeyError, ValueError):
        raise ConfigError(f"arm: {arm!r}: {text!r} is not a value of {knob}") from None


def isolation_name(point: int, changes: dict[str, Any]) -> str:
    """A nuisance trial of an isolation study as one text (schema.ISOLATION's values): its point's index and
    every knob it sets, the scientific one first: "#03 optimizer=sgd learning_rate=0.00123 momentum=0.52"."""
    return " ".join([f"#{point:02d}", *(arm_name(knob, value) for knob, value in changes.items())])


def parse_isolation(name: str) -> tuple[int, dict[str, Any]]:
    """An isolation trial's point index and knob values from its name (`isolation_name`); ConfigError else."""
    head, *parts = str(name).split(" ")
    if not head.startswith("#") or not head[1:].isdigit() or not parts or not all("=" in p for p in parts):
        raise ConfigError(f"isolation: {name!r} is not '#<point> <knob>=<value> ...'")
    changes: dict[str, Any] = {}
    for part in parts:
        changes.update(parse_arm(part))
    return int(head[1:]), changes


def parse_factorial_run(name: str) -> dict[str, Any]:
    """The seed and knob values a factorial run's name sets ("r1 #05 activation+ seed=1 activation=relu"; the
    format is study/factorial.py's `run_name`); ConfigError for anything else."""
    tokens = str(name).split(" ")
    values: dict[str, Any] = {}
    if len(tokens) < 3 or not tokens[0][1:].isdigit() or not tokens[1][1:].isdigit():
        raise ConfigError(f"factorial: {name!r} is not 'r<replicate> #<row> <factor>+|- ... seed=<n> "
                          "<knob>=<value> ...'")
    for token in tokens[2:]:
        if "=" not in token:
            continue  # a coded level: "activation+"
        if token.startswith("seed="):
            if not token[5:].isdigit():
                raise ConfigError(f"factorial: {name!r}: {token!r} is not seed=<n>")
            values["seed"] = int(token[5:])
        else:
            values.update(parse_arm(token))
    return values


def resolve_config(values: dict[str, Any], settings: StudySettings | None = None) -> LeNetConfig:
    """Turn one trial's hyperparameter values into a full LeNetConfig.

    Start from the variant's recipe when `variant` is set (its epochs capped by
    the study's), else from the defaults with the study's epochs and patience;
    then apply every other value the trial carries, and an ablation's `arm`
    ("<knob>=<value>") over them.
    """
    values = {k: v for k, v in values.items() if not k.startswith("tuner/")}  # Hyperband's own
    arm = values.pop("arm", None)  # an ablation's arm: the baseline, or one of its knobs changed
    if arm is not None:
        values.update(parse_arm(arm))
    isolation = values.pop(schema.ISOLATION, None)  # an isolation study's trial: a value and its nuisance point
    if isolation is not None:
        values.update(parse_isolation(isolation)[1])
    factorial = values.pop(schema.FACTORIAL, None)  # a factorial study's run: its seed and its factors' levels
    if factorial is not None:
        values.update(parse_factorial_run(factorial))
    variant = values.pop("variant", None)
    if variant is not None:
        base = VARIANTS[variant].config
        if settings is not None:
            base = base.replace(epochs=min(base.epochs, settings.epochs))
    else:
        base = LeNetConfig()
        if settings is not None:
            base = base.replace(epochs=settings.epochs, patience=settings.patience)
    changes = {}
    for key, value in values.items():
        if key not in KNOB_KINDS:
            continue
        if key == "dense_units":
            value = parse_widths(value)
        elif KNOB_KINDS[key] is bool:  # keras-tuner holds a Choice of [false, true] as 0 and 1
            value = bool(value)
        elif key == "augment" and value == "auto":
            value = AUTO_AUGMENT.get(settings.dataset if settings else "mnist", AUTO_AUGMENT_DEFAULT)
        changes[key] = value
    if "optimizer" in changes and changes["optimizer"] != "sgd" and "momentum" not in changes:
        changes["momentum"] = 0.0
    return base.replace(**changes)
