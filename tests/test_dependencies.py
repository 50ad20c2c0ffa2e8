"""Every third-party module that study/ imports is a declared base dependency, declared once, with a known-good
lower bound and an upper bound at the next major version (a fresh install must not take a release that changes
defaults or migrates the store under a study)."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _name(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _imported_top_level_modules() -> set[str]:
    found = set()
    for path in (ROOT / "study").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - {"study", "__future__"}


def test_every_imported_third_party_module_is_a_declared_base_dependency():
    declared = {_name(r) for r in PROJECT["dependencies"]}
    owners = packages_distributions()
    undeclared = {}
    for module in sorted(_imported_top_level_modules()):
        dists = {d.lower().replace("_", "-") for d in owners.get(module, [module])}
        if not dists & declared:
            undeclared[module] = sorted(dists)
    assert undeclared == {}, f"imported by study/ but not in pyproject's dependencies: {undeclared}"


def test_each_dependency_is_declared_once_with_both_bounds():
    every = PROJECT["dependencies"] + [r for extra in PROJECT["optional-dependencies"].values() for r in extra]
    names = [_name(r) for r in PROJECT["dependencies"]]
    assert sorted({n for n in names if names.count(n) > 1}) == []
    unbounded = [r for r in every if not (">=" in r and "<" in r.replace("<=", ""))]
    assert unbounded == []
