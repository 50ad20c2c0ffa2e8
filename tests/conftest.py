"""Shared test set-up: quiet TensorFlow, never touch the user's MLflow store or the network, and the
fixtures several test files use (a tiny study run into a temporary store, one finished smoke study built
once per test run that tests read or copy, the runs of a study by role)."""

import contextlib
import os
import shutil
import sqlite3
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "search_spaces" / "smoke.yaml"


@pytest.fixture(scope="session", autouse=True)
def _mlflow_tables_from_a_template(tmp_path_factory):
    """MLflow builds a new SQLite store's tables by running its Alembic migrations, about 6 s each time
    (measured here), and the tests make dozens of stores. The first new store's tables are built that way
    into a template; every later new SQLite store in this process gets a copy of them (SQLite's backup
    API), the same schema at the same revision. Processes a test starts build their own, as users' do."""
    import sqlalchemy
    from mlflow.store.db import utils
    from mlflow.store.model_registry import sqlalchemy_store as registry

    original = utils._initialize_tables
    template = tmp_path_factory.mktemp("mlflow-tables") / "tables.db"

    def initialize(engine):
        if engine.dialect.name != "sqlite":
            return original(engine)
        if not template.exists():
            original(sqlalchemy.create_engine(f"sqlite:///{template}"))
        raw = engine.raw_connection()
        try:
            with contextlib.closing(sqlite3.connect(template)) as source:
                source.backup(raw.driver_connection)
        finally:
            raw.close()

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(utils, "_initialize_tables", initialize)
        patch.setattr(registry, "_initialize_tables", initialize)
        yield


def store_uri(folder: Path) -> str:
    """A temporary SQLite MLflow store in `folder`."""
    return f"sqlite:///{folder}/mlflow.db"


@pytest.fixture(scope="session")
def run_study():
    """run_study(folder, space_path=SMOKE, fresh=False, **setting overrides) -> (SearchResult, printed lines):
    one single-process study logged to a temporary store and log folder under `folder`."""
    from study.search import StudyRequest, run_search
    from study.space import load_space

    def run(folder: Path, space_path: Path = SMOKE, fresh: bool = False, **overrides):
        space = load_space(space_path)
        request = StudyRequest(space, space.settings.override(**overrides), tracking_uri=store_uri(folder),
                               log_dir=folder / "logs", fresh=fresh, command="pytest")
        lines: list[str] = []
        return run_search(request, echo=lines.append), lines

    return run


@pytest.fixture
def interrupted_at_fit(monkeypatch):
    """interrupted_at_fit(n) -> restore(): from now on, the n-th training of this process raises
    KeyboardInterrupt (Ctrl-C while it trains); restore() puts the real training back."""
    import study.tuner as tuner_module

    real_fit = tuner_module.fit_model

    def interrupt(n: int):
        fits = []

        def fit_then_interrupt(*args, **kwargs):
            fits.append(1)
            if len(fits) == n:
                raise KeyboardInterrupt
            return real_fit(*args, **kwargs)

        monkeypatch.setattr(tuner_module, "fit_model", fit_then_interrupt)
        return lambda: monkeypatch.setattr(tuner_module, "fit_model", real_fit)

    return interrupt


@pytest.fixture(scope="session")
def study_runs():
    """study_runs(uri, study) -> (client, parents, children): the parent and child runs of a study."""
    from mlflow.tracking import MlflowClient

    from study import schema

    def runs(uri: str, study: str):
        client = MlflowClient(uri)
        exp = client.get_experiment_by_name(study)
        every = client.search_runs([exp.experiment_id], max_results=1000)
        parents = [r for r in every if r.data.tags.get(schema.ROLE) == schema.ROLE_STUDY]
        children = [r for r in every if r.data.tags.get(schema.ROLE) == schema.ROLE_TRIAL]
        return client, parents, children

    return runs


@pytest.fixture(scope="session")
def finished_study(tmp_path_factory, run_study):
    """(folder, result, printed lines): the smoke study (2 trials of 1 epoch on 300 digits) finished once per
    test run, in its own folder: smoke.yaml, logs/, mlflow.db, mlruns/. Read it; to change it, `copy_study`."""
    base = tmp_path_factory.mktemp("finished")
    shutil.copy(SMOKE, base / "smoke.yaml")
    result, lines = run_study(base, space_path=base / "smoke.yaml")
    return base, result, lines


def copy_study(src: Path, dst: Path, finished: bool = True) -> Path:
    """A copy of a study's folder whose store points at the copy's own artifacts and files. finished=False:
    without the record that its search finished, as a search stopped before its end (killed, crashed) leaves
    it, so that running it again resumes instead of saying it is finished."""
    shutil.copytree(src, dst, symlinks=True)
    if not finished:
        for record in dst.glob("logs/.keras-tuner/*/finished.json"):
            record.unlink()
    con = sqlite3.connect(dst / "mlflow.db")
    with con:
        for (table,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
            for column in [row[1] for row in con.execute(f'PRAGMA table_info("{table}")')]:
                con.execute(f'UPDATE "{table}" SET "{column}" = replace("{column}", ?, ?) '
                            f'WHERE typeof("{column}") = \'text\'', (str(src), str(dst)))
    con.close()
    return dst
