"""Notebooks: execute reports/compare_variants.ipynb and reports/search_results.ipynb headlessly for one study.

Each notebook runs on a private kernel spec (ipykernel on this very
interpreter, nothing registered globally) with the study injected into its
"parameters" cell, and is rendered to HTML beside the report; the stored
notebooks are not modified. The study is loaded once: the notebooks read the
loaded `StudyRuns` from a file in the kernels' temporary folder (parameter
`runs_file`, `load.open_study`) rather than from the store again.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from ..lazy import lazy
from .load import ReportError, StudyRuns, load_study, save_runs
from .render import study_dir

# The notebooks' machinery, imported when a notebook runs (nbconvert alone takes over half a second).
nbformat = lazy("nbformat")
nbclient = lazy("nbclient")
nbclient_exceptions = lazy("nbclient.exceptions")
nbconvert = lazy("nbconvert")
jupyter_kernelspec = lazy("jupyter_client.kernelspec")
jupyter_manager = lazy("jupyter_client.manager")

NOTEBOOKS = ("compare_variants", "search_results")
_REPO_ROOT = Path(__file__).resolve().parents[2]  # study/report/notebooks.py -> the repository
NOTEBOOK_DIR = _REPO_ROOT / "reports"
_KERNEL = "lenet-study"


class _DropMessage(logging.Filter):
    def __init__(self, text: str):
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


def _kernel_spec_dir(tmp: Path) -> Path:
    """A private kernel spec that runs ipykernel on this very interpreter (nothing registered globally)."""
    spec = tmp / "kernels" / _KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "lenet-study (this interpreter)",
        "language": "python",
    }))
    return tmp / "kernels"


def inject_parameters(nb, **values: Any):
    """Replace the source of the cell tagged "parameters" (or insert one first) with `values`."""
    source = "\n".join(f"{k} = {v!r}" for k, v in values.items())
    for cell in nb.cells:
        if cell.cell_type == "code" and "parameters" in cell.get("metadata", {}).get("tags", []):
            cell.source = source
            return nb
    nb.cells.insert(0, nbformat.v4.new_code_cell(source, metadata={"tags": ["parameters"]}))
    return nb


def run_notebooks(study: str, out_root: str | os.PathLike = "reports", tracking_uri: str | None = None,
                  log_to_mlflow: bool = True, timeout: int = 600, runs: StudyRuns | None = None) -> list[Path]:
    """Execute reports/compare_variants.ipynb and reports/search_results.ipynb for `study` headlessly
    and write their HTML renderings into reports/<study>/. The stored notebooks are not modified.
    `runs`: the study already loaded (default: `load_study`); the notebooks read it from a file
    (`save_runs`, their `runs_file` parameter) instead of loading the study again."""
    if runs is None:
        runs = load_study(study, tracking_uri)  # fail early, with the same one-line errors as write_report
    uri = runs.tracking_uri
    out = study_dir(out_root, study)
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_REPO_ROOT), env.get("PYTHONPATH")) if p)
    env["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    written = []
    with tempfile.TemporaryDirectory(prefix="lenet-kernel-") as tmp:
        kernels = _kernel_spec_dir(Path(tmp))
        runs_file = save_runs(runs, Path(tmp) / "runs.pickle")
        for name in NOTEBOOKS:
            source = NOTEBOOK_DIR / f"{name}.ipynb"
            if not source.is_file():
                raise ReportError(f"notebook {source} is missing")
            nb = inject_parameters(nbformat.read(source, as_version=4), study=study, tracking_uri=uri,
                                   runs_file=str(runs_file))
            specs = jupyter_kernelspec.KernelSpecManager(kernel_dirs=[str(kernels)])
            km = jupyter_manager.KernelManager(kernel_name=_KERNEL, kernel_spec_manager=specs)
            if os.name == "posix":  # local sockets in the temp dir: no TCP ports, no plain-text warning
                km.transport = "ipc"
                km.ip = str(Path(tmp) / f"{name}-ipc")
            client = nbclient.NotebookClient(nb, km=km, timeout=timeout, kernel_name=_KERNEL,
                                            resources={"metadata": {"path": os.getcwd()}})
            try:
                client.execute(env=env, cleanup_kc=True)  # shut the kernel down even though we made its manager
            except nbclient_exceptions.CellExecutionError as exc:
                first = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
                raise ReportError(f"notebook {source.name} failed for study {study!r}: {first}") from exc
            finally:
                if km.has_kernel:
                    km.shutdown_kernel(now=True)
            exporter = nbconvert.HTMLExporter()
            quiet = _DropMessage("Alternative text is missing")  # plots in outputs carry no alt text
            exporter.log.addFilter(quiet)
            try:
                body, _ = exporter.from_notebook_node(nb)
            finally:
                exporter.log.removeFilter(quiet)
            target = out / f"{name}.html"
            target.write_text(body, encoding="utf-8")
            written.append(target)
    if log_to_mlflow:
        runs.attach(written)
    return written
