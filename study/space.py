"""Search spaces as data: `search_spaces/*.yaml` → validated keras-tuner HyperParameters.

A space file has two sections:

    study:          # the study's defaults; `lenet-study search` flags override them
      dataset: mnist
      tuner: hyperband
      ...
    space:          # one entry per knob that the tuner chooses
      activation: {choice: [relu, tanh, sigmoid]}
      learning_rate: {float: [1.0e-4, 1.0e-2], sampling: log}
      momentum: {float: [0.0, 0.95], when: {optimizer: sgd}}
      kernel_size: {fixed: 5}
    start_with:     # optional (random and bayesian tuners): configurations tried first, in order
      - {activation: relu, learning_rate: 0.003}

A `start_with` entry names values of the space's knobs (each allowed by the
knob's spec); the knobs it leaves out take their first choice or minimum.

Knobs are the fields of `LeNetConfig` plus `variant` (a documented variant
whose recipe the trial starts from). Knobs not in the file keep their
defaults, so every trial still resolves every knob (see `resolve_config`).

A `study.kind: ablation` file has `baseline:` and `ablate:` instead of `space:`;
study/ablation.py compiles it into the same Space (a grid over arms x seeds).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import model as m
from .spacefile import SpaceError, parse_space_yaml, read_space_file
from .variants import VARIANTS

TUNERS = ("random", "bayesian", "hyperband", "grid")
TEST_EVALS = ("best", "all")
KINDS = ("search", "ablation")  # an ablation file is compiled by study/ablation.py

# knob -> int, float or str (None for dense_units, a list); the builder's config defines them.
_KNOB_KINDS = {name: m.scalar_type(tp) for name, tp in m.field_types(m.LeNetConfig).items()}
# The values each categorical knob may take; numeric knobs are checked by LeNetConfig.
ALLOWED_VALUES: dict[str, tuple] = {
    "activation": m.ACTIVATIONS,
    "pooling": m.POOLINGS,
    "c1_padding": m.PADDINGS,
    "kernel_size": m.KERNEL_SIZES,
    "c5": m.C5_KINDS,
    "output": m.OUTPUTS,
    "loss": m.LOSSES,
    "optimizer": m.OPTIMIZERS,
    "input_scaling": tuple(m.INPUT_SCALINGS),
    "augment": tuple(m.AUGMENTS) + ("auto",),
    "lr_schedule": m.LR_SCHEDULES,
    "batch_norm": (False, True),
    "variant": tuple(VARIANTS),
}
# Augment levels that mirror images: a mirrored digit is another symbol, so only Fashion-MNIST takes them.
FLIP_AUGMENTS = tuple(name for name, (_, _, _, flip) in m.AUGMENTS.items() if flip)
FLIP_DATASETS = ("fashion_mnist",)
# `augment: auto` in a space file: each dataset's usual augmentation, resolved before the config is
# built (the trial's logged parameter is the level it resolved to). Digits are shifted and rotated;
# clothes are shifted and mirrored (a rotated shirt is rare in the data, a mirrored one common).
AUTO_AUGMENT = {"fashion_mnist": "flip-shift"}
AUTO_AUGMENT_DEFAULT = "shift-rotate"
KNOBS = tuple(_KNOB_KINDS) + ("variant",)
KNOB_TYPES = ("choice", "int", "float", "fixed")
SPEC_KEYS = set(KNOB_TYPES) | {"sampling", "step", "when"}
SAMPLINGS = ("linear", "log", "reverse_log")


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
    kind: str = "search"  # or "ablation": arms x seeds (study/ablation.py)
    seeds: int = 1  # an ablation trains every arm with seeds 0..seeds-1
    # Differences in accuracy within ± this many percentage points count as equivalent (0.2: ±0.2 pp), tested
    # by the reports (two one-sided tests) on every paired effect; declared before the study. None: no margin.
    equivalence_margin: float | None = None
    description: str = ""

    def override(self, **changes: Any) -> "StudySettings":
        changes = {k: v for k, v in changes.items() if v is not None}
        settings = dataclasses.replace(self, **changes)
        _check_settings(settings, "command line")
        return settings

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
        changes = m.params_to_fields(cls, params, skip=("description",))
        return dataclasses.replace(base or cls(), **changes)


@dataclass(frozen=True)
class Space:
    path: Path
    name: str  # the file's stem: the default study name
    digest: str  # sha256 of the file's bytes
    knobs: dict[str, dict]  # knob -> normalised spec
    settings: StudySettings
    text: str
    start_with: tuple[dict, ...] = ()  # configurations the tuner tries first (knob -> value)
    ablation: Any = None  # an ablation.Ablation when the file is `kind: ablation` (knobs: its compiled grid)

    def start_values(self) -> list[dict[str, Any]]:
        """Each start_with entry as complete keras-tuner values: the space's defaults (first choice,
        minimum), overridden by the entry."""
        defaults = self.hyperparameters().values
        return [{**defaults, **{k: _hp_value(k, v) for k, v in entry.items()}} for entry in self.start_with]

    def hyperparameters(self):
        """A fresh keras_tuner.HyperParameters holding this space (conditions included)."""
        import keras_tuner as kt

        hp = kt.HyperParameters()
        for knob, spec in self.knobs.items():
            kwargs = {}
            if spec.get("when"):
                parent, values = next(iter(spec["when"].items()))
                kwargs = {"parent_name": parent, "parent_values": list(values)}
            kind = spec["type"]
            if kind == "choice":
                hp.Choice(knob, [_hp_value(knob, v) for v in spec["values"]], **kwargs)
            elif kind == "fixed":
                hp.Fixed(knob, _hp_value(knob, spec["value"]), **kwargs)
            elif kind == "int":
                hp.Int(knob, spec["min"], spec["max"], step=spec.get("step") or 1,
                       sampling=spec.get("sampling", "linear"), **kwargs)
            else:
                hp.Float(knob, spec["min"], spec["max"], step=spec.get("step"),
                         sampling=spec.get("sampling", "linear"), **kwargs)
        return hp

    def size(self) -> int | None:
        """How many distinct configurations the space holds (None if a knob is continuous)."""
        total = 1
        for knob, spec in self.knobs.items():
            n = _spec_size(spec)
            if n is None:
                return None
            total *= n
        return total

    def describe(self) -> str:
        if self.ablation is not None:
            return self.ablation.describe(self)
        lines = [f"space {self.path} (study {self.name!r}, sha256 {self.digest[:12]})"]
        width = max((len(k) for k in self.knobs), default=5)
        for knob, spec in self.knobs.items():
            lines.append(f"  {knob:<{width}}  {_spec_text(spec)}")
        size = self.size()
        lines.append(f"  size: {size:,} configurations" if size else "  size: continuous (a float/int range without step)")
        fixed = [k for k in KNOBS if k not in self.knobs]
        if fixed:
            lines.append("  not searched (defaults, or the variant's recipe): " + ", ".join(fixed))
        s = self.settings
        lines.append(
            f"  study: dataset={s.dataset} tuner={s.tuner} max_trials={s.max_trials} epochs={s.epochs} "
            f"patience={s.patience} executions_per_trial={s.executions_per_trial} seed={s.seed} "
            f"val_fraction={s.val_fraction} test_eval={s.test_eval}"
            + (f" train_samples={s.train_samples}" if s.train_samples else "")
            + (f" stop_at_chance={s.stop_at_chance}" if s.stop_at_chance else "")
            + (f" final_epochs={s.final_epochs}" if s.final_epochs else "")
            + (f" equivalence_margin={s.equivalence_margin} pp" if s.equivalence_margin is not None else "")
        )
        for i, entry in enumerate(self.start_with):
            lines.append(f"  start_with[{i}]: " + " ".join(f"{k}={_hp_value_text(v)}" for k, v in entry.items()))
        return "\n".join(lines)


def _hp_value(knob: str, value: Any):
    # keras-tuner values are scalars: a list of dense widths travels as "120,84".
    if knob == "dense_units":
        return m.format_widths(m.parse_widths(value))
    return value


def _spec_size(spec: dict) -> int | None:
    if spec["type"] == "choice":
        return len(spec["values"])
    if spec["type"] == "fixed":
        return 1
    step = spec.get("step")
    if step and spec.get("sampling", "linear") != "linear":  # a factor, as keras-tuner counts it
        return int(math.log(spec["max"] / spec["min"], step) + 1e-8) + 1
    if spec["type"] == "int":
        return (spec["max"] - spec["min"]) // (step or 1) + 1
    if step:
        return int(math.floor((spec["max"] - spec["min"]) / step + 1e-9)) + 1
    return None


def _spec_text(spec: dict) -> str:
    kind = spec["type"]
    if kind == "choice":
        text = "choice " + ", ".join(str(_hp_value_text(v)) for v in spec["values"])
    elif kind == "fixed":
        text = f"fixed {_hp_value_text(spec['value'])}"
    else:
        text = f"{kind} [{spec['min']}, {spec['max']}]"
        if spec.get("step"):
            text += f" step {spec['step']}"
        if spec.get("sampling", "linear") != "linear":
            text += f" {spec['sampling']}"
    if spec.get("when"):
        parent, values = next(iter(spec["when"].items()))
        text += f"  (only when {parent} is {' or '.join(map(str, values))})"
    return text


def _hp_value_text(value):
    return "[" + ", ".join(map(str, value)) + "]" if isinstance(value, (list, tuple)) else value


def _check_value(where: str, knob: str, value: Any) -> None:
    """One value of one knob, as LeNetConfig checks it on its own (model.KNOB_RANGES); combinations are
    the trials' business (an impossible shape is a FAILED trial, not a bad space file)."""
    if knob == "batch_norm" and not isinstance(value, bool):
        raise SpaceError(f"{where}: {value!r} is not allowed; allowed: true, false")
    allowed = ALLOWED_VALUES.get(knob, ())
    if knob in ALLOWED_VALUES and (value not in allowed or type(value) not in {type(a) for a in allowed}):
        raise SpaceError(f"{where}: {value!r} is not allowed; allowed: {', '.join(map(str, allowed))}")
    if knob == "dense_units":
        try:
            widths = m.parse_widths(value)
        except m.ConfigError:
            raise SpaceError(f"{where}: {value!r} is not a list of dense widths such as [120, 84]") from None
        if not all(m.KNOB_RANGES[knob].holds(w) for w in widths):
            raise SpaceError(f"{where}: {value!r} has a width outside the allowed range {m.KNOB_RANGES[knob]}")
        return
    if knob in ALLOWED_VALUES or knob == "dense_units":
        return
    kind = _KNOB_KINDS[knob]
    if kind is int and (not isinstance(value, int) or isinstance(value, bool)):
        raise SpaceError(f"{where}: {value!r} is not an integer")
    if kind is float and (not isinstance(value, (int, float)) or isinstance(value, bool)):
        raise SpaceError(f"{where}: {value!r} is not a number")
    if knob in m.KNOB_RANGES and not m.KNOB_RANGES[knob].holds(value):
        raise SpaceError(f"{where}: {value!r} is outside the allowed range {m.KNOB_RANGES[knob]}")


def _normalise_knob(source: str, knob: str, raw: Any, earlier: dict[str, dict]) -> dict:
    where = f"{source}: space.{knob}"
    if knob not in KNOBS:
        raise SpaceError(f"{where}: unknown knob; allowed: {', '.join(KNOBS)}")
    if not isinstance(raw, dict):
        raise SpaceError(f"{where}: expected a mapping such as {{choice: [...]}}, got {raw!r}")
    unknown = set(raw) - SPEC_KEYS
    if unknown:
        raise SpaceError(f"{where}: unknown key {sorted(unknown)[0]!r}; allowed: {', '.join(sorted(SPEC_KEYS))}")
    kinds = [k for k in KNOB_TYPES if k in raw]
    if len(kinds) != 1:
        raise SpaceError(f"{where}: give exactly one of {', '.join(KNOB_TYPES)}")
    kind = kinds[0]
    spec: dict[str, Any] = {"type": kind}
    body = raw[kind]
    if kind == "choice":
        if not isinstance(body, list) or not body:
            raise SpaceError(f"{where}.choice: expected a non-empty list of values")
        for value in body:
            _check_value(f"{where}.choice", knob, value)
        if _KNOB_KINDS.get(knob) is float:  # keras-tuner's Choice takes one type: 1 and 0.1 are both floats
            body = [float(v) for v in body]
        keys = [_hp_value(knob, v) for v in body]
        if len(set(map(str, keys))) != len(keys):
            raise SpaceError(f"{where}.choice: values repeat")
        spec["values"] = body
    elif kind == "fixed":
        _check_value(f"{where}.fixed", knob, body)
        spec["value"] = body
    else:
        if knob in ALLOWED_VALUES or knob == "dense_units":
            raise SpaceError(f"{where}: {knob} is categorical; use choice or fixed")
        if kind == "int" and _KNOB_KINDS[knob] is not int:
            raise SpaceError(f"{where}: {knob} is a {_KNOB_KINDS[knob].__name__}; use float")
        if not (isinstance(body, list) and len(body) == 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in body)):
            raise SpaceError(f"{where}.{kind}: expected [min, max], got {body!r}")
        low, high = body
        if kind == "int" and not all(isinstance(v, int) for v in body):
            raise SpaceError(f"{where}.int: bounds must be integers, got {body!r}")
        if not low < high:
            raise SpaceError(f"{where}.{kind}: range [{low}, {high}] is empty or reversed; need min < max")
        sampling = raw.get("sampling", "linear")
        if sampling not in SAMPLINGS:
            raise SpaceError(f"{where}.sampling: {sampling!r} is not one of {', '.join(SAMPLINGS)}")
        if sampling != "linear" and low <= 0:
            raise SpaceError(f"{where}.sampling: {sampling} sampling needs min > 0, got {low}")
        step = raw.get("step")
        positive = isinstance(step, (int, float)) and not isinstance(step, bool) and 0 < step < math.inf
        if step is not None and not positive:
            raise SpaceError(f"{where}.step: {step!r} must be a positive number")
        if step is not None and kind == "int" and not isinstance(step, int):
            raise SpaceError(f"{where}.step: {step!r} must be a whole number for an int knob")
        if step is not None and sampling != "linear" and step <= 1:
            raise SpaceError(f"{where}.step: {step!r} must be above 1 with {sampling} sampling "
                             "(each value is the one before times step)")
        for value in body:
            _check_value(f"{where}.{kind}", knob, value)
        spec.update(min=low, max=high, sampling=sampling, step=step)
    if "sampling" in raw and kind in ("choice", "fixed"):
        raise SpaceError(f"{where}.sampling: only int and float knobs take sampling")
    when = raw.get("when")
    if when is not None:
        if not (isinstance(when, dict) and len(when) == 1):
            raise SpaceError(f"{where}.when: expected one parent knob, e.g. {{optimizer: sgd}}")
        parent, values = next(iter(when.items()))
        values = values if isinstance(values, list) else [values]
        if parent not in earlier:
            raise SpaceError(f"{where}.when: {parent!r} must be a knob listed above {knob}")
        parent_spec = earlier[parent]
        if parent_spec["type"] not in ("choice", "fixed"):
            raise SpaceError(f"{where}.when: parent {parent!r} must be a choice or fixed knob")
        parent_values = parent_spec["values"] if parent_spec["type"] == "choice" else [parent_spec["value"]]
        for value in values:
            if value not in parent_values:
                raise SpaceError(
                    f"{where}.when.{parent}: {value!r} is not among its values "
                    f"({', '.join(map(str, parent_values))})"
                )
        spec["when"] = {parent: values}
    return spec


def _check_settings(s: StudySettings, where: str) -> None:
    from .data import DATASETS

    def bad(key, allowed):
        raise SpaceError(f"{where}: study.{key}: {getattr(s, key)!r} is not allowed; {allowed}")

    if s.dataset not in DATASETS:
        bad("dataset", "allowed: " + ", ".join(DATASETS))
    if s.tuner not in TUNERS:
        bad("tuner", "allowed: " + ", ".join(TUNERS))
    if s.kind not in KINDS:
        bad("kind", "allowed: " + ", ".join(KINDS))
    if not isinstance(s.seeds, int) or isinstance(s.seeds, bool) or s.seeds < (2 if s.kind == "ablation" else 1):
        bad("seeds", "need an integer of at least 2: an ablation trains every arm with each seed, which pairs them"
            if s.kind == "ablation" else "need an integer of at least 1")
    if s.kind == "search" and s.seeds != 1:
        bad("seeds", "only a kind: ablation study repeats its trials over seeds; a search varies space.seed")
    if s.kind == "ablation" and (s.tuner, s.test_eval) != ("grid", "all"):
        key = "tuner" if s.tuner != "grid" else "test_eval"
        bad(key, "an ablation runs every arm x seed (a grid) and evaluates each on the test set")
    if s.test_eval not in TEST_EVALS:
        bad("test_eval", "allowed: " + ", ".join(TEST_EVALS))
    for key in ("max_trials", "executions_per_trial"):
        value = getattr(s, key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            bad(key, "need an integer of at least 1")
    # The trials' own epochs, patience and seed: the knobs' ranges (model.KNOB_RANGES).
    epochs, patience, seed = (m.KNOB_RANGES[key] for key in ("epochs", "patience", "seed"))
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
    margin = s.equivalence_margin
    if margin is not None and (not isinstance(margin, (int, float)) or isinstance(margin, bool) or not 0 < margin < 100):
        bad("equivalence_margin", "need a number of percentage points of accuracy above 0 and below 100 "
            "(0.2 means differences within ±0.2 pp are equivalent), or leave it out")


def _spec_values(spec: dict) -> list:
    """The values a spec names: its choices, its fixed value, or its range's ends."""
    if spec["type"] == "choice":
        return list(spec["values"])
    return [spec["value"]] if spec["type"] == "fixed" else [spec["min"], spec["max"]]


def _values_reaching(knob: str, spec: dict, knobs: dict[str, dict]) -> list:
    """The values of `knob` the trials may give the one that `spec` describes: those its `when` names,
    else the space's own, else the documented variants' it starts from, else the default."""
    when = spec.get("when") or {}
    if knob in when:
        return list(when[knob])
    if knob in knobs:
        return _spec_values(knobs[knob])
    default = getattr(m.LeNetConfig(), knob)
    variant = knobs.get("variant")
    if "variant" not in when and variant is None:
        return [default]
    names = when.get("variant") or _spec_values(variant)
    values = [getattr(VARIANTS[name].config, knob) for name in names]
    return values + [default] if variant and variant.get("when") else values  # without a variant: the default


def _check_requires(source: str, knobs: dict[str, dict]) -> None:
    """A knob that acts only under another knob's value (model.KNOB_REQUIRES: momentum under sgd) set where
    that knob can have another value: every such trial would fail, so the space file is refused."""
    for knob, (parent, needed, rule) in m.KNOB_REQUIRES.items():
        spec = knobs.get(knob)
        if spec is None or not any(_spec_values(spec)):  # only 0: the knob stays off
            continue
        wrong = [v for v in _values_reaching(parent, spec, knobs) if v not in needed]
        if wrong:
            raise SpaceError(f"{source}: space.{knob}: {rule}, and {parent} can be {wrong[0]} here; "
                             f"add when: {{{parent}: {needed[0]}}} to {knob}, or fix {parent} to {needed[0]}")


START_WITH_TUNERS = ("random", "bayesian")


def _start_with(source: str, raw: Any, knobs: dict[str, dict], settings: StudySettings) -> tuple[dict, ...]:
    """The validated start_with entries: mappings of the space's knobs to values their specs allow."""
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(entry, dict) and entry for entry in raw):
        raise SpaceError(f"{source}: start_with: expected a list of mappings such as {{activation: relu}}")
    if settings.tuner not in START_WITH_TUNERS:
        raise SpaceError(f"{source}: start_with: the {settings.tuner} tuner chooses its own trials; "
                         f"start_with works with {' and '.join(START_WITH_TUNERS)}")
    for i, entry in enumerate(raw):
        for knob, value in entry.items():
            where = f"{source}: start_with[{i}].{knob}"
            spec = knobs.get(knob)
            if spec is None:
                raise SpaceError(f"{where}: not a knob of this space; its knobs: {', '.join(knobs)}")
            if spec["type"] in ("choice", "fixed"):
                allowed = spec["values"] if spec["type"] == "choice" else [spec["value"]]
                if str(_hp_value(knob, value)) not in {str(_hp_value(knob, a)) for a in allowed}:
                    raise SpaceError(f"{where}: {value!r} is not among its values "
                                     f"({', '.join(str(_hp_value_text(a)) for a in allowed)})")
            else:
                _check_value(where, knob, value)
                if not spec["min"] <= value <= spec["max"]:
                    raise SpaceError(f"{where}: {value!r} is outside its range [{spec['min']}, {spec['max']}]")
    return tuple(dict(entry) for entry in raw)


def check_space_for_dataset(space: "Space", settings: StudySettings, where: str | None = None) -> None:
    """Knob values that make no sense on the study's dataset: a mirroring augment on digits."""
    if settings.dataset in FLIP_DATASETS:
        return
    if space.ablation is not None:  # the baseline's and the arms' values, each under its own key
        named = space.ablation.values_of("augment")
    else:
        spec = space.knobs.get("augment") or {"type": "choice", "values": []}
        named = [("space.augment", v) for v in (spec["values"] if spec["type"] == "choice" else [spec["value"]])]
    for key, value in named:
        if value in FLIP_AUGMENTS:
            raise SpaceError(f"{where or space.path}: {key}: {value!r} mirrors images, which turns digits into "
                             f"other symbols; it is allowed on {', '.join(FLIP_DATASETS)} only, not on "
                             f"{settings.dataset}")


def load_space(path: str | Path) -> Space:
    """Read and validate a space file; raise SpaceError naming the file and key. A `kind: ablation` file
    is compiled by study/ablation.py into the same Space (a grid over arms x seeds)."""
    path = Path(path)
    return _space_from(path, *read_space_file(path))


def parse_space(data: bytes, path: str | Path) -> Space:
    """A space file's bytes, validated as `load_space` does; `path` names it in messages (e.g. the copy a
    study logged on its parent run, which reports read back)."""
    path = Path(path)
    return _space_from(path, data, parse_space_yaml(data, path))


def _space_from(path: Path, data: bytes, doc: dict) -> Space:
    if study_kind(path, doc) == "ablation":
        from .ablation import load_ablation

        return load_ablation(path, data, doc)
    extra = set(doc) - {"study", "space", "start_with"}
    if extra & {"baseline", "ablate"}:
        raise SpaceError(f"{path}: {sorted(extra)[0]}: only an ablation takes baseline and ablate; add kind: "
                         "ablation to the study section, or give the knobs to search under space")
    if extra:
        raise SpaceError(f"{path}: unknown section {sorted(extra)[0]!r}; allowed: study, space, start_with")
    settings = study_settings(path, doc)

    raw_space = doc.get("space")
    if not isinstance(raw_space, dict) or not raw_space:
        raise SpaceError(f"{path}: space: expected a mapping of knobs, e.g. activation: {{choice: [relu, tanh]}}")
    knobs: dict[str, dict] = {}
    for knob, raw in raw_space.items():
        knobs[str(knob)] = _normalise_knob(str(path), str(knob), raw, knobs)
    _check_requires(str(path), knobs)
    if settings.tuner == "grid" and any(_spec_size(s) is None for s in knobs.values()):
        raise SpaceError(f"{path}: study.tuner: grid needs every knob discrete (choice, fixed, int, or float with step)")
    start_with = _start_with(str(path), doc.get("start_with"), knobs, settings)
    space = Space(
        path=path,
        name=path.stem,
        digest=hashlib.sha256(data).hexdigest(),
        knobs=knobs,
        settings=settings,
        text=data.decode("utf-8", errors="replace"),
        start_with=start_with,
    )
    check_space_for_dataset(space, settings)
    return space


def study_kind(path: Path, doc: dict) -> str:
    study = doc.get("study")
    kind = study.get("kind", "search") if isinstance(study, dict) else "search"
    if kind not in KINDS:
        raise SpaceError(f"{path}: study.kind: {kind!r} is not allowed; allowed: {', '.join(KINDS)}")
    return kind


def study_settings(path: Path, doc: dict, **compiled: Any) -> StudySettings:
    """The `study:` section as checked settings; `compiled`: settings the file's kind sets itself."""
    study = doc.get("study") or {}
    if not isinstance(study, dict):
        raise SpaceError(f"{path}: study: expected a mapping of settings")
    allowed_settings = [f.name for f in dataclasses.fields(StudySettings)]
    for key in study:
        if key not in allowed_settings:
            raise SpaceError(f"{path}: study.{key}: unknown setting; allowed: {', '.join(allowed_settings)}")
    settings = StudySettings(**{**study, **compiled})
    _check_settings(settings, str(path))
    return settings


def resolve_config(values: dict[str, Any], settings: StudySettings | None = None) -> m.LeNetConfig:
    """Turn one trial's hyperparameter values into a full LeNetConfig.

    Start from the variant's recipe when `variant` is set (its epochs capped by
    the study's), else from the defaults with the study's epochs and patience;
    then apply every other value the trial carries, and an ablation's `arm`
    ("<knob>=<value>") over them.
    """
    values = {k: v for k, v in values.items() if not k.startswith("tuner/")}  # Hyperband's own
    arm = values.pop("arm", None)  # an ablation's arm: the baseline, or one of its knobs changed
    if arm is not None:
        from .ablation import parse_arm

        values.update(parse_arm(arm))
    variant = values.pop("variant", None)
    if variant is not None:
        base = VARIANTS[variant].config
        if settings is not None:
            base = base.replace(epochs=min(base.epochs, settings.epochs))
    else:
        base = m.LeNetConfig()
        if settings is not None:
            base = base.replace(epochs=settings.epochs, patience=settings.patience)
    changes = {}
    for key, value in values.items():
        if key not in _KNOB_KINDS:
            continue
        if key == "dense_units":
            value = m.parse_widths(value)
        elif _KNOB_KINDS[key] is bool:  # keras-tuner holds a Choice of [false, true] as 0 and 1
            value = bool(value)
        elif key == "augment" and value == "auto":
            value = AUTO_AUGMENT.get(settings.dataset if settings else "mnist", AUTO_AUGMENT_DEFAULT)
        changes[key] = value
    if "optimizer" in changes and changes["optimizer"] != "sgd" and "momentum" not in changes:
        changes["momentum"] = 0.0
    return base.replace(**changes)
