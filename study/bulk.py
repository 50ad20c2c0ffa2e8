"""A whole experiment in a few queries, for stores that are databases: every run as one DataFrame, the
metric histories of all its runs, and runs copied in bulk (the report benchmark's large stores).

MLflow's client reads one run at a time: `get_metric_history` per run and metric, and `search_runs`
builds an entity for every run, param, tag and metric before `mlflow.search_runs` turns them into a
frame. At 1,000 trials that made `load_study` take 10 s. When the tracking URI is a database
(SQLAlchemy URL: sqlite, postgresql, mysql, mssql), these functions read MLflow's own tables (runs,
params, tags, latest_metrics, metrics) with SQLAlchemy Core instead, one query per table, and give the
values the client gives (a NaN metric is stored as 0 with is_nan set, as MLflow reads it). For any other
store (a tracking server over HTTP, the old file store) `sql_*` return None and `runs_frame` /
`history_frame` ask the client, as they do with bulk=False. tests/test_report_load.py checks that both
ways read the same study.

This module is part of the door to MLflow: `tracking` re-exports it, and nothing else queries the store.
`metric_histories` is the client's way, one run at a time.
"""

from __future__ import annotations

import contextlib
import logging
import urllib.parse
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from . import schema
from .lazy import lazy
from .store import client, scoped_uri

mlflow = lazy("mlflow")
pd = lazy("pandas")
sqlalchemy = lazy("sqlalchemy")

log = logging.getLogger("study.bulk")

DATABASE_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")
# MLflow's tables that hold a run's record, by its run_uuid column.
RUN_TABLES = ("runs", "params", "tags", "metrics", "latest_metrics")
_ACTIVE_RUNS = "SELECT run_uuid FROM runs WHERE experiment_id = :experiment_id AND lifecycle_stage = 'active'"


def is_database(uri: str) -> bool:
    """Whether the tracking URI names a database MLflow's SQLAlchemy store serves (sqlite:///..., postgresql://...)."""
    scheme = urllib.parse.urlsplit(uri).scheme.lower().split("+")[0]
    return scheme in DATABASE_SCHEMES


@contextlib.contextmanager
def _engine(uri: str) -> Iterator[Any]:
    engine = sqlalchemy.create_engine(uri)
    try:
        yield engine
    finally:
        engine.dispose()


def _read(conn, sql, **params) -> dict[str, Any]:
    """The query's rows as {column: NumPy object array}. The statement is compiled with its values
    inline (an experiment id and metric names) and run on the driver's own cursor: SQLAlchemy's Row
    objects, and pandas' row-wise constructor that inspects each, cost more than the query itself
    (8 s for a million rows here)."""
    binds = [sqlalchemy.bindparam(name, value, expanding=isinstance(value, list),
                                  type_=sqlalchemy.Integer if isinstance(value, int) else sqlalchemy.String)
             for name, value in params.items()]
    statement = sqlalchemy.text(sql).bindparams(*binds)
    compiled = statement.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True})
    cursor = conn.connection.cursor()
    try:
        cursor.execute(str(compiled))
        keys = [d[0] for d in cursor.description]
        rows = cursor.fetchall()
    finally:
        cursor.close()
    table = np.array(rows, dtype=object).reshape(len(rows), len(keys))
    return {key: table[:, i] for i, key in enumerate(keys)}


def _with_nan(values, is_nan):
    """Metric values as floats, NaN where MLflow stored a NaN (as 0 with is_nan set)."""
    out = values.astype(float)
    out[is_nan.astype(bool)] = np.nan
    return out


def sql_runs_frame(uri: str, experiment_id: str):
    """Every active run of an experiment as `mlflow.search_runs` returns it (run_id, experiment_id, status,
    artifact_uri, start_time, end_time, metrics.*, params.*, tags.*; newest first), in four queries; None
    when the store is not a database or its tables cannot be read as MLflow's."""
    if not is_database(uri):
        return None
    try:
        with _engine(uri) as engine, engine.connect() as conn:
            exp = int(experiment_id)
            runs = _read(conn, "SELECT run_uuid, experiment_id, status, artifact_uri, start_time, end_time FROM runs "
                               "WHERE experiment_id = :experiment_id AND lifecycle_stage = 'active'", experiment_id=exp)
            parts = {kind: _read(conn, f"SELECT run_uuid, key, value{', is_nan' if kind == 'latest_metrics' else ''} "
                                       f"FROM {kind} WHERE run_uuid IN ({_ACTIVE_RUNS})", experiment_id=exp)
                     for kind in ("params", "tags", "latest_metrics")}
    except Exception as exc:  # noqa: BLE001 - another schema or driver: the client reads it instead
        log.info("reading %s in bulk failed (%s); reading it through the MLflow client", uri, exc)
        return None
    return _assemble(runs, parts)


def _wide(index, long: dict, values, missing, dtype) -> dict[str, Any]:
    """{key: one value per run of `index`} from (run_uuid, key, value) rows; `missing` where a run has none."""
    if not len(values):
        return {}
    rows = index.get_indexer(long["run_uuid"])
    keep = rows >= 0
    key_codes, keys = pd.factorize(long["key"][keep])
    grid = np.full((len(index), len(keys)), missing, dtype=dtype)
    grid[rows[keep], key_codes] = values[keep]
    return {key: grid[:, i] for i, key in enumerate(keys)}


def _assemble(runs: dict, parts: dict):
    # MLflow's order: newest first, then by run id.
    order = np.lexsort((runs["run_uuid"].astype(str), -runs["start_time"].astype("int64")))
    runs = {key: values[order] for key, values in runs.items()}
    index = pd.Index(runs["run_uuid"].astype(str))

    def times(ms):
        return pd.to_datetime(pd.Series(ms, dtype="float64"), unit="ms", utc=True).to_numpy()

    out = {
        "run_id": runs["run_uuid"],
        "experiment_id": np.array([str(e) for e in runs["experiment_id"]], dtype=object),
        "status": runs["status"],
        "artifact_uri": runs["artifact_uri"],
        "start_time": times(runs["start_time"]),
        "end_time": times(runs["end_time"]),
    }
    metrics = parts["latest_metrics"]
    values = _with_nan(metrics["value"], metrics["is_nan"]) if len(metrics["value"]) else metrics["value"]
    for prefix, long, vals, missing, dtype in (
            ("metrics.", metrics, values, np.nan, float),
            ("params.", parts["params"], parts["params"]["value"], None, object),
            ("tags.", parts["tags"], parts["tags"]["value"], None, object)):
        out.update({prefix + key: column for key, column in _wide(index, long, vals, missing, dtype).items()})
    return pd.DataFrame(out)


def sql_history_frame(uri: str, experiment_id: str, metrics: Iterable[str] = schema.HISTORY_METRICS):
    """Every logged point of `metrics` in every active run of the experiment, as DataFrame(run_id, metric,
    step, value), in one query (in get_metric_history's order within a run and metric); None when the
    store is not a database or its tables cannot be read as MLflow's."""
    if not is_database(uri):
        return None
    sql = (f"SELECT run_uuid, key, step, value, is_nan FROM metrics WHERE run_uuid IN ({_ACTIVE_RUNS}) "
           "AND key IN :keys ORDER BY run_uuid, key, timestamp, step, value")
    try:
        with _engine(uri) as engine, engine.connect() as conn:
            rows = _read(conn, sql, experiment_id=int(experiment_id), keys=list(metrics))
    except Exception as exc:  # noqa: BLE001
        log.info("reading the histories of %s in bulk failed (%s); reading them through the MLflow client", uri, exc)
        return None
    values = _with_nan(rows["value"], rows["is_nan"]) if len(rows["value"]) else np.zeros(0)
    return pd.DataFrame({"run_id": rows["run_uuid"], "metric": rows["key"],
                         "step": rows["step"].astype("int64"), "value": values.astype(float)})


def runs_frame(uri: str, experiment_id: str, max_results: int = 100_000, bulk: bool = True):
    """Every run of an experiment as MLflow's own DataFrame (`mlflow.search_runs`: params.*, metrics.*,
    tags.* columns), read from the store at `uri`: from a database store's tables in four queries
    (`sql_runs_frame`), else (or with bulk=False) through `mlflow.search_runs`."""
    frame = sql_runs_frame(uri, experiment_id) if bulk else None
    if frame is not None:
        return frame
    with scoped_uri(uri):
        return mlflow.search_runs(experiment_ids=[experiment_id], max_results=max_results)


def metric_histories(c, run_id: str, metrics: Iterable[str] = schema.HISTORY_METRICS) -> list[tuple[int, str, float]]:
    """(step, metric, value) for every logged point of `metrics` in one run."""
    return [(int(m.step), metric, float(m.value)) for metric in metrics for m in c.get_metric_history(run_id, metric)]


def history_frame(uri: str, experiment_id: str, run_ids: Iterable[str],
                  metrics: Iterable[str] = schema.HISTORY_METRICS, bulk: bool = True):
    """DataFrame(run_id, metric, step, value) of every logged point of `metrics` in the runs `run_ids` of
    an experiment: one query on a database store (`sql_history_frame`), else (or with bulk=False) one
    `get_metric_history` call per run and metric."""
    run_ids, metrics = list(run_ids), list(metrics)
    frame = sql_history_frame(uri, experiment_id, metrics) if bulk else None
    if frame is not None:
        return frame[frame["run_id"].isin(set(run_ids))].reset_index(drop=True)
    c = client(uri)
    rows = pd.DataFrame([(run_id, metric, step, value) for run_id in run_ids
                         for step, metric, value in metric_histories(c, run_id, metrics)],
                        columns=["run_id", "metric", "step", "value"])
    return rows.astype({"step": "int64", "value": float})


# --------------------------------------------------------------------------- copies (benchmarks)


@dataclass(frozen=True)
class RunCopy:
    """One copy of a run: its source, the tags it changes (e.g. the trial id), its name, and how far its
    times move (milliseconds)."""

    source: str
    name: str
    tags: dict[str, str] = field(default_factory=dict)
    shift_ms: int = 0


def copy_runs(uri: str, copies: list[RunCopy], *, chunk: int = 1000,
              progress: Callable[[int, int], None] | None = None) -> list[str]:
    """Insert `copies` of existing runs into the database store at `uri`: every row of RUN_TABLES that
    holds a source run (its params, tags, metric histories and latest metrics, with their real values),
    under a new run id, with the copy's name, changed tags and shifted times. One transaction per `chunk`
    copies; `progress(done, total)` after each. Returns the new run ids. For building large stores
    quickly (MLflow's client would take a round trip per run); the store must be a database."""
    if not is_database(uri):
        raise ValueError(f"copy_runs needs a database store, not {uri}")
    sources = sorted({c.source for c in copies})
    new_ids: list[str] = []
    with _engine(uri) as engine:
        meta = sqlalchemy.MetaData()
        tables = {name: sqlalchemy.Table(name, meta, autoload_with=engine) for name in RUN_TABLES}
        with engine.connect() as conn:
            rows = {name: {} for name in RUN_TABLES}
            for name, table in tables.items():
                for row in conn.execute(sqlalchemy.select(table).where(table.c.run_uuid.in_(sources))).mappings():
                    rows[name].setdefault(row["run_uuid"], []).append(dict(row))
        for start in range(0, len(copies), chunk):
            batch = {name: [] for name in RUN_TABLES}
            for copy in copies[start:start + chunk]:
                new = uuid.uuid4().hex
                new_ids.append(new)
                for name in RUN_TABLES:
                    for row in rows[name].get(copy.source, []):
                        batch[name].append(_copied_row(name, row, copy, new))
                tag_keys = {r["key"] for r in rows["tags"].get(copy.source, [])}
                batch["tags"] += [{"key": k, "value": v, "run_uuid": new} for k, v in copy.tags.items()
                                  if k not in tag_keys]
            with engine.begin() as conn:
                for name in RUN_TABLES:
                    if batch[name]:
                        conn.execute(tables[name].insert(), batch[name])
            if progress:
                progress(min(start + chunk, len(copies)), len(copies))
    return new_ids


def _copied_row(table: str, row: dict, copy: RunCopy, new: str) -> dict:
    out = dict(row, run_uuid=new)
    if table == "runs":
        out["name"] = copy.name
        for key in ("start_time", "end_time"):
            if out.get(key) is not None:
                out[key] += copy.shift_ms
        if out.get("artifact_uri"):
            out["artifact_uri"] = out["artifact_uri"].replace(copy.source, new)
    elif table == "tags":
        if out["key"] == schema.RUN_NAME:
            out["value"] = copy.name
        elif out["key"] in copy.tags:
            out["value"] = copy.tags[out["key"]]
    elif table in ("metrics", "latest_metrics") and out.get("timestamp") is not None:
        out["timestamp"] += copy.shift_ms
    return out


def relocate_artifacts(uri: str, experiment_id: str, root: str) -> int:
    """Point every run of an experiment in the database store at `uri` to its own folder under `root`
    (<root>/<run id>/artifacts), so that a copy of a store writes its artifacts (the report's files) there
    and not into the store it was copied from. Returns the runs moved."""
    if not is_database(uri):
        raise ValueError(f"relocate_artifacts needs a database store, not {uri}")
    with _engine(uri) as engine, engine.begin() as conn:
        runs = sqlalchemy.table("runs", sqlalchemy.column("run_uuid"), sqlalchemy.column("artifact_uri"),
                                sqlalchemy.column("experiment_id"))
        ids = [r[0] for r in conn.execute(sqlalchemy.select(runs.c.run_uuid).where(runs.c.experiment_id == int(experiment_id)))]
        for run_id in ids:
            conn.execute(runs.update().where(runs.c.run_uuid == run_id)
                         .values(artifact_uri=f"{root.rstrip('/')}/{run_id}/artifacts"))
    return len(ids)
