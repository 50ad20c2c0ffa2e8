"""The package's layers (docs/design.md, "Layers, bottom up"), read from the source with `ast`: no import cycle,
imports only pointing down, in-package imports at module top, heavy packages only through study/lazy.py, no
`_private` name shared between modules, and every user-facing error a StudyError. Nothing here imports
TensorFlow; one test starts the CLI in a subprocess to see that its light commands do not either."""

from __future__ import annotations

import ast
import builtins
import subprocess
import sys
from pathlib import Path

import pytest

from study.lazy import HEAVY, LazyModule, lazy, load

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "study"

# Bottom up; a module may import from its own layer and the ones below it. A package name covers its modules.
LAYERS = (
    ("leaves", ("study", "study.errors", "study.lazy", "study.paths", "study.knobs", "study.files", "study.devices",
                "study.quiet", "study.schema", "study.budget", "study.progress", "study.pruning", "study.kt_compat", "study.tpe")),
    ("builder and data", ("study.model", "study.variants", "study.data", "study.cost")),
    ("space and study kinds", ("study.spacefile", "study.ablation", "study.isolation", "study.factorial", "study.space")),
    ("tracking", ("study.store", "study.bulk", "study.tracking")),
    ("search", ("study.tuner", "study.state", "study.lock", "study.retrain", "study.finish", "study.search")),
    ("parallel, report and tools", ("study.parallel", "study.report", "study.bench", "study.predict", "study.train")),
    ("cli", ("study.cli",)),
)
# Modules that import a heavy package at their top because they subclass its classes as they load; every
# other module reaches them through study.lazy.
HEAVY_MODULES = {"study.tuner", "study.kt_compat", "study.tpe"}
# The helpers of study/lazy.py whose first argument names a module.
LAZY_CALLS = {"lazy", "load"}


def _module_files() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = _module_files()
TREES = {name: ast.parse(path.read_text(encoding="utf-8"), str(path)) for name, path in MODULES.items()}


def _resolve(current: str, level: int, module: str | None, name: str | None = None) -> str | None:
    """The study module an import names (`from . import x` -> study.x when x is a module), else None."""
    if level:
        base = current.split(".") if MODULES[current].name == "__init__.py" else current.split(".")[:-1]
        base = base[:len(base) - (level - 1)]
        full = ".".join(base + ([module] if module else []))
    else:
        full = module or ""
    if full.split(".")[0] != "study":
        return None
    if name and f"{full}.{name}" in MODULES:
        return f"{full}.{name}"
    while full and full not in MODULES:
        full = full.rpartition(".")[0]
    return full or None


class Imports(ast.NodeVisitor):
    """Every import of a module, with whether it sits inside a function: (line, target, in_function, names);
    target is the study module or, for anything else, the top-level package. `lazy("...")` and
    `load("...")` count as imports at the place they are called."""

    def __init__(self, module: str):
        self.module = module
        self.found: list[tuple[int, str, bool, list[str], bool]] = []  # ..., via the lazy helper
        self.depth = 0

    def _add(self, node, target, names, via_lazy=False):
        self.found.append((node.lineno, target, self.depth > 0, names, via_lazy))

    def visit_FunctionDef(self, node):
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_AsyncFunctionDef = visit_FunctionDef
    visit_Lambda = visit_FunctionDef

    def visit_Import(self, node):
        for alias in node.names:
            self._add(node, _resolve(self.module, 0, alias.name) or alias.name.split(".")[0], [])

    def visit_ImportFrom(self, node):
        if node.level or (node.module or "").split(".")[0] == "study":
            for alias in node.names:
                self._add(node, _resolve(self.module, node.level, node.module, alias.name), [alias.name])
        else:
            self._add(node, (node.module or "").split(".")[0], [alias.name for alias in node.names])

    def visit_Call(self, node):
        func = node.func
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
        if (name in LAZY_CALLS and node.args and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)):
            text = node.args[0].value
            self._add(node, _resolve(self.module, 0, text) or text.split(".")[0], [], via_lazy=True)
        self.generic_visit(node)


IMPORTS = {}
for _name, _tree in TREES.items():
    _visitor = Imports(_name)
    _visitor.visit(_tree)
    IMPORTS[_name] = _visitor.found


def _graph() -> dict[str, set[str]]:
    return {m: {t for _, t, _, _, _ in found if t in MODULES and t != m} for m, found in IMPORTS.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _layer(module: str) -> int:
    for i, (_, members) in enumerate(LAYERS):
        if any(module == m or (m != "study" and module.startswith(m + ".")) for m in members):
            return i
    raise AssertionError(f"{module} is in no layer: add it to LAYERS in {Path(__file__).name} (docs/design.md)")


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_counting_imports_in_functions_and_lazy_ones():
    cycles = _cycles(_graph())
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_imports_only_point_down():
    upward = [f"{m} ({LAYERS[_layer(m)][0]}) imports {t} ({LAYERS[_layer(t)][0]})"
              for m, targets in _graph().items() for t in sorted(targets) if _layer(t) > _layer(m)]
    assert not upward, "\n".join(upward)


def test_in_package_imports_are_at_module_top():
    inside = [f"{MODULES[m].relative_to(ROOT)}:{line} imports {t} inside a function"
              for m, found in IMPORTS.items() for line, t, in_function, _, via_lazy in found
              if t in MODULES and in_function and not via_lazy]
    assert not inside, "\n".join(inside)


def test_heavy_packages_load_only_through_the_lazy_helper():
    """No function imports TensorFlow, MLflow, pandas... itself; only the modules that subclass keras-tuner's
    classes import one at their top, and every other module reaches those through study.lazy."""
    problems = []
    for m, found in IMPORTS.items():
        for line, target, in_function, _, via_lazy in found:
            where = f"{MODULES[m].relative_to(ROOT)}:{line}"
            if target in HEAVY and not via_lazy:
                if in_function:
                    problems.append(f"{where} imports {target} inside a function: use study.lazy")
                elif m not in HEAVY_MODULES:
                    problems.append(f"{where} imports {target} at its top: use study.lazy")
            if target in HEAVY_MODULES and not via_lazy and m not in HEAVY_MODULES:
                problems.append(f"{where} imports {target}, which starts TensorFlow: use lazy({target!r})")
    assert not problems, "\n".join(problems)


def test_no_private_name_is_shared_between_modules():
    """`from .x import _y` and `x._y` across modules: a name another module needs is public."""
    shared = []
    for m, tree in TREES.items():
        module_names = set()  # names this module binds to study modules (imports and lazy stand-ins)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("study")):
                for alias in node.names:
                    target = _resolve(m, node.level, node.module, alias.name)
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        shared.append(f"{MODULES[m].relative_to(ROOT)}:{node.lineno} imports {alias.name} from {target}")
                    if target is not None and target.endswith("." + alias.name):  # `from . import tracking`
                        module_names.add(alias.asname or alias.name)
            elif isinstance(node, ast.Import):
                module_names |= {a.asname or a.name.split(".")[0] for a in node.names if a.name.startswith("study")}
            elif (isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)
                  and isinstance(node.value.func, ast.Name) and node.value.func.id == "lazy" and node.value.args
                  and isinstance(node.value.args[0], ast.Constant) and str(node.value.args[0].value).startswith("study")):
                module_names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in module_names
                    and node.attr.startswith("_") and not node.attr.startswith("__")):
                shared.append(f"{MODULES[m].relative_to(ROOT)}:{node.lineno} uses {node.value.id}.{node.attr}")
    assert not shared, "\n".join(shared)


def _is_exception_base(name: str) -> bool:
    builtin = getattr(builtins, name, None)
    return (isinstance(builtin, type) and issubclass(builtin, BaseException)) or name.endswith(("Error", "Exception"))


def _exception_classes() -> dict[str, tuple[str, list[str]]]:
    """name -> (where, base names) of every exception class the package defines."""
    classes = {}
    for m, tree in TREES.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                bases = [b.id if isinstance(b, ast.Name) else b.attr if isinstance(b, ast.Attribute) else "?"
                         for b in node.bases]
                classes[node.name] = (f"{MODULES[m].relative_to(ROOT)}:{node.lineno}", bases)
    exceptions = {}
    changed = True
    while changed:  # a class is an exception when a base is one (builtin, a library's, or ours)
        changed = False
        for name, (where, bases) in classes.items():
            if name not in exceptions and any(b in exceptions or (b not in classes and _is_exception_base(b))
                                              for b in bases):
                exceptions[name] = (where, bases)
                changed = True
    return exceptions


def test_every_user_facing_error_is_a_study_error():
    exceptions = _exception_classes()
    assert {"StudyError", "SearchError", "NoAnswer", "ConfigError", "SpaceError", "DataError", "UnknownVariant",
            "ReportError", "PredictError", "TrainError", "BenchError", "UsageError", "StoreUnavailable",
            "StoreURIError", "DiskFull", "StoreLost"} <= set(exceptions)

    def is_study_error(name, seen=()):
        return name == "StudyError" or any(b in exceptions and b not in seen and is_study_error(b, (*seen, name))
                                           for b in exceptions[name][1])

    outside = [f"{where}: {name}({', '.join(bases)})" for name, (where, bases) in exceptions.items()
               if not name.startswith("_") and not is_study_error(name)]
    assert not outside, "not a StudyError:\n" + "\n".join(outside)
    assert exceptions["StudyError"][1] == ["Exception"]
    # keras-tuner stops a search on its FatalError: the two that stop ours still are one.
    assert "FatalError" in exceptions["DiskFull"][1] and "FatalError" in exceptions["StoreLost"][1]


def test_the_light_commands_start_without_tensorflow_or_mlflow():
    """`lenet-study --help`, `space` and a refused bad flag load none of the heavy packages."""
    code = ("import sys\nfrom study.cli import main\n"
            "for argv in (['--help'], ['space', 'search_spaces/smoke.yaml'], ['bench', '--rounds', '0']):\n"
            "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
            f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({list(HEAVY)!r})))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout


def test_a_lazy_module_imports_on_first_use():
    json = lazy("json")
    assert isinstance(json, LazyModule) and json.dumps([1]) == "[1]" and load(json) is sys.modules["json"]
    missing = lazy("no_such_package_anywhere")  # nothing happens until it is used
    with pytest.raises(ImportError):
        missing.anything
