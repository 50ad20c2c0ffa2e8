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
study/ablation.py compiles it into the same Space (a grid over arms x seeds). A
`study.kind: isolation` file has `baseline:`, `scientific:` and `nuisance:`;
study/isolation.py compiles it into a grid over scientific values x nuisance points. A
`study.kind: factorial` file has `baseline:` and `factors:`; study/factorial.py compiles
it into a grid over replicates x the runs of a two-level fractional factorial design. What
both kinds share (reading the file, the `study:` section, one knob value checked on
its own, `resolve_config`) is study/spacefile.py's.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import ablation, factorial, isolation
from .budget import format_duration
from .knobs import FLIP_AUGMENTS, FLIP_DATASETS, KNOB_REQUIRES
from .lazy import lazy
from .model import LeNetConfig
from .spacefile import (ALLOWED_VALUES, KINDS, KNOB_KINDS, KNOBS, SpaceError, StudySettings, check_value, hp_value,
                        parse_space_yaml, read_space_file, study_settings)
from .spacefile import resolve_config  # noqa: F401  (re-exported: a space's trials resolve through study.space)
from .variants import VARIANTS

kt = lazy("keras_tuner")  # a Space's HyperParameters only; importing keras-tuner starts TensorFlow

KNOB_TYPES = ("choice", "int", "float", "fixed")
SPEC_KEYS = set(KNOB_TYPES) | {"sampling", "step", "when"}
SAMPLINGS = ("linear", "log", "reverse_log")


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
    isolation: Any = None  # an isolation.Isolation when the file is `kind: isolation` (knobs: its compiled grid)
    factorial: Any = None  # a factorial.Factorial when the file is `kind: factorial` (knobs: its compiled grid)

    def start_values(self) -> list[dict[str, Any]]:
        """Each start_with entry as complete keras-tuner values: the space's defaults (first choice,
        minimum), overridden by the entry."""
        defaults = self.hyperparameters().values
        return [{**defaults, **{k: hp_value(k, v) for k, v in entry.items()}} for entry in self.start_with]

    def hyperparameters(self):
        """A fresh keras_tuner.HyperParameters holding this space (conditions included)."""
        hp = kt.HyperParameters()
        for knob, spec in self.knobs.items():
            kwargs = {}
            if spec.get("when"):
                parent, values = next(iter(spec["when"].items()))
                kwargs = {"parent_name": parent, "parent_values": list(values)}
            kind = spec["type"]
            if kind == "choice":
                hp.Choice(knob, [hp_value(knob, v) for v in spec["values"]], **kwargs)
            elif kind == "fixed":
                hp.Fixed(knob, hp_value(knob, spec["value"]), **kwargs)
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
        if self.isolation is not None:
            return self.isolation.describe(self)
        if self.factorial is not None:
            return self.factorial.describe(self)
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
            + (f" time_budget={format_duration(s.time_budget)}" if s.time_budget else "")
        )
        for i, entry in enumerate(self.start_with):
            lines.append(f"  start_with[{i}]: " + " ".join(f"{k}={_hp_value_text(v)}" for k, v in entry.items()))
        return "\n".join(lines)


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
            check_value(f"{where}.choice", knob, value)
        if KNOB_KINDS.get(knob) is float:  # keras-tuner's Choice takes one type: 1 and 0.1 are both floats
            body = [float(v) for v in body]
        keys = [hp_value(knob, v) for v in body]
        if len(set(map(str, keys))) != len(keys):
            raise SpaceError(f"{where}.choice: values repeat")
        spec["values"] = body
    elif kind == "fixed":
        check_value(f"{where}.fixed", knob, body)
        spec["value"] = body
    else:
        if knob in ALLOWED_VALUES or knob == "dense_units":
            raise SpaceError(f"{where}: {knob} is categorical; use choice or fixed")
        if kind == "int" and KNOB_KINDS[knob] is not int:
            raise SpaceError(f"{where}: {knob} is a {KNOB_KINDS[knob].__name__}; use float")
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
            check_value(f"{where}.{kind}", knob, value)
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
    default = getattr(LeNetConfig(), knob)
    variant = knobs.get("variant")
    if "variant" not in when and variant is None:
        return [default]
    names = when.get("variant") or _spec_values(variant)
    values = [getattr(VARIANTS[name].config, knob) for name in names]
    return values + [default] if variant and variant.get("when") else values  # without a variant: the default


def _check_requires(source: str, knobs: dict[str, dict]) -> None:
    """A knob that acts only under another knob's value (knobs.KNOB_REQUIRES: momentum under sgd) set where
    that knob can have another value: every such trial would fail, so the space file is refused."""
    for knob, (parent, needed, rule) in KNOB_REQUIRES.items():
        spec = knobs.get(knob)
        if spec is None or not any(_spec_values(spec)):  # only 0: the knob stays off
            continue
        wrong = [v for v in _values_reaching(parent, spec, knobs) if v not in needed]
        if wrong:
            raise SpaceError(f"{source}: space.{knob}: {rule}, and {parent} can be {wrong[0]} here; "
                             f"add when: {{{parent}: {needed[0]}}} to {knob}, or fix {parent} to {needed[0]}")


START_WITH_TUNERS = ("random", "bayesian", "tpe")


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
                if str(hp_value(knob, value)) not in {str(hp_value(knob, a)) for a in allowed}:
                    raise SpaceError(f"{where}: {value!r} is not among its values "
                                     f"({', '.join(str(_hp_value_text(a)) for a in allowed)})")
            else:
                check_value(where, knob, value)
                if not spec["min"] <= value <= spec["max"]:
                    raise SpaceError(f"{where}: {value!r} is outside its range [{spec['min']}, {spec['max']}]")
    return tuple(dict(entry) for entry in raw)


def check_space_for_dataset(space: "Space", settings: StudySettings, where: str | None = None) -> None:
    """Knob values that make no sense on the study's dataset: a mirroring augment on digits."""
    if settings.dataset in FLIP_DATASETS:
        return
    compiled = space.ablation or space.isolation or space.factorial
    if compiled is not None:  # each value under its own key
        named = compiled.values_of("augment")
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


# The kinds compiled into a grid by their own module: kind -> its compile function (which returns the settings,
# the grid's knobs and what the file asked for, kept on the Space under the kind's name).
COMPILED_KINDS = {"ablation": ablation.compile_ablation, "isolation": isolation.compile_isolation,
                  "factorial": factorial.compile_factorial}


def _space_from(path: Path, data: bytes, doc: dict) -> Space:
    kind = study_kind(path, doc)
    if kind in COMPILED_KINDS:
        settings, knobs, compiled = COMPILED_KINDS[kind](path, doc)
        space = Space(path=path, name=path.stem, digest=hashlib.sha256(data).hexdigest(), knobs=knobs,
                      settings=settings, text=data.decode("utf-8", errors="replace"), **{kind: compiled})
        check_space_for_dataset(space, settings)
        return space
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
