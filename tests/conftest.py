"""Shared test set-up: quiet TensorFlow, never touch the user's MLflow store or the network, and the
fixtures several test files use (a tiny study run into a temporary store, the runs of a study by role)."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "search_spaces" / "smoke.yaml"


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
