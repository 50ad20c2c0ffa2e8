"""Heavy packages imported on first use: the one way a module of `study` defers an import.

`lenet-study space FILE`, `--help` and every refusal of bad input must answer in a fraction of a
second, while importing TensorFlow takes seconds and MLflow, pandas or SciPy one or two (measured on
a 2-core CPU: TensorFlow/keras-tuner 6 s, MLflow 2.5 s, SciPy's stats 1.5 s, pandas 0.6 s). So a
module names such a package at its top as

    keras = lazy("keras")

and the package is imported when an attribute is first read (`keras.layers`), not when the module is.
Only heavy packages go through here (HEAVY lists them), and the three modules of this package that
subclass keras-tuner's classes as they are imported (`study.tuner`, `study.kt_compat`, `study.tpe`): the modules
that must stay light (the CLI, the search's set-up, the workers' flags) reach those through
`lazy("study.tuner")` and the like. Every other import is an
ordinary one at its module's top; tests/test_layers.py checks both, and counts these lazy imports when
it looks for import cycles.

A `LazyModule` is a stand-in, not the module: nothing is put in `sys.modules` before the import
(`'tensorflow' in sys.modules` stays a true answer), every attribute read and write goes to the module
itself (so `monkeypatch.setattr(study.tuner, ...)` is seen through it), and an import that fails raises
where the attribute is read, as a plain import would have.
"""

from __future__ import annotations

import importlib
from types import ModuleType

# Third-party packages that go through `lazy` wherever they are used: each takes a good share of the CLI's
# start-up or more to import (from 50 ms for grpc and mlxtend's data to seconds); tests/test_layers.py
# keeps in-function imports of them out.
HEAVY = ("tensorflow", "keras", "keras_tuner", "mlflow", "optuna", "pandas", "scipy", "matplotlib", "sqlalchemy",
         "nbclient", "nbconvert", "nbformat", "jupyter_client", "grpc", "mlxtend", "ray")


class LazyModule:
    """A module by name, imported when one of its attributes is first read or written."""

    __slots__ = ("_lazy_name",)

    def __init__(self, name: str):
        object.__setattr__(self, "_lazy_name", name)

    def __getattr__(self, attr: str):
        return getattr(load(self), attr)

    def __setattr__(self, attr: str, value) -> None:
        setattr(load(self), attr, value)

    def __delattr__(self, attr: str) -> None:
        delattr(load(self), attr)

    def __dir__(self):
        return dir(load(self))

    def __repr__(self) -> str:
        return f"<lazy module {self._lazy_name!r}>"


def lazy(name: str) -> LazyModule:
    """The module `name` (absolute: "mlflow.entities", "study.tuner"), imported on first use."""
    return LazyModule(name)


def load(module: LazyModule | ModuleType | str) -> ModuleType:
    """The module itself, imported now if it is not yet: to start a slow import early (the chief overlaps
    TensorFlow's with its workers' start), or to ask whether an optional package is installed (ImportError)."""
    if isinstance(module, ModuleType):
        return module
    name = module if isinstance(module, str) else object.__getattribute__(module, "_lazy_name")
    # Each time, not cached: importlib answers from sys.modules at once, and a test that takes a package
    # away (sys.modules["optuna"] = None) is seen.
    return importlib.import_module(name)
