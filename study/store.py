"""Where the MLflow store is, and what a study does when it does not answer.

The store a command names (`tracking_uri`, `check_store`: a scheme MLflow 3 keeps runs in, an existing
folder, a server that answers: `wait_http`), the client on it (`client`), MLflow's fluent API pointed at
it for one call (`scoped_uri`), the links into `mlflow ui`, and the outage layer: `RetryingClient`
retries every call of a study while the store does not answer (locked, read-only, unreachable, HTTP 5xx)
for up to STORE_RETRY_S, then the study stops with StoreUnavailable, one line for the user. `tracking`
(the only door to MLflow) builds on this and re-exports it.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import sys
import time
import urllib.parse
import urllib.request
from typing import Iterator

from .errors import SearchError, StudyError
from .files import causes, is_disk_full
from .lazy import lazy
from .paths import sqlite_file

mlflow = lazy("mlflow")
mlflow_exceptions = lazy("mlflow.exceptions")
mlflow_tracking = lazy("mlflow.tracking")
mlflow_tracking_utils = lazy("mlflow.tracking._tracking_service.utils")

log = logging.getLogger("study.store")

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
# How long one MLflow call of a study is retried while the store does not answer (locked, read-only,
# unreachable), with pauses growing from 0.5 s to 8 s; then the study stops with StoreUnavailable.
STORE_RETRY_S = 60.0


def tracking_uri(explicit: str | None = None) -> str:
    """The store in use: an explicit URI, else $MLFLOW_TRACKING_URI, else ./mlflow.db (MLflow 3's default)."""
    return explicit or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def local_artifact_root(uri: str) -> str | None:
    """For a local SQLite store, artifacts go to mlruns/ beside the database, as `mlflow ui` expects."""
    db = sqlite_file(uri)
    if db is not None:
        return (db.parent.resolve() / "mlruns").as_uri()
    return None


def client(uri: str | None = None):
    """An MlflowClient on the given store (see `tracking_uri`); MLflow's global URI is left alone."""
    return mlflow_tracking.MlflowClient(tracking_uri=tracking_uri(uri))


@contextlib.contextmanager
def scoped_uri(uri: str) -> Iterator[None]:
    """Point MLflow's fluent API at `uri` for a while, then put back exactly what was there
    (the module global and MLFLOW_TRACKING_URI). For the fluent calls that take no client."""
    previous = getattr(mlflow_tracking_utils, "_tracking_uri", None)
    previous_env = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)
        if previous_env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = previous_env


# --------------------------------------------------------------------------- a store that goes away


class StoreUnavailable(StudyError, RuntimeError):
    """The MLflow store did not answer for STORE_RETRY_S: the study stops in one line; what it has is
    kept (runs, tuner state), and the same command resumes it."""

    def __init__(self, uri: str, reason: str):
        self.uri, self.reason = uri, reason
        super().__init__(f"the MLflow store {uri} is unavailable ({reason}): nothing is lost; run the same "
                         "command again once it answers")


def _http_reason(text: str) -> str:
    """The gist of a failed HTTP call's message (MLflow quotes urllib3's whole story)."""
    for pattern, fmt in ((r"too many (\d{3}) error responses", "HTTP {}"), (r"\[Errno -?\d+\] ([^'\")]+)", "{}"),
                         (r"(timed out|timeout)", "timed out")):
        found = re.search(pattern, text, re.IGNORECASE)
        if found:
            return fmt.format(found.group(1).strip())
    return " ".join(text.split())[:160]


def unavailable_reason(exc: BaseException) -> str | None:
    """Why the store did not answer, when `exc` means it did not (a call worth retrying), else None.

    Retried: a SQLite/SQLAlchemy/PostgreSQL OperationalError (database locked, read-only, cannot be
    opened, connection lost), a refused or broken connection, a time-out, an HTTP 5xx from a server.
    Not retried: a bad request, a run or experiment that does not exist, a full disk (files.is_disk_full)."""
    if is_disk_full(exc):
        return None
    chain = list(causes(exc))
    for e in chain:
        if type(e).__name__ == "OperationalError":  # sqlite3's, SQLAlchemy's (its .orig: the driver's own)
            return " ".join(str(getattr(e, "orig", None) or e).split("\n")[0].split())[:160]
    for e in chain:
        if isinstance(e, (ConnectionError, TimeoutError)) or (
                type(e).__module__.startswith(("requests", "urllib3"))
                and type(e).__name__ in ("ConnectionError", "Timeout", "ConnectTimeout", "ReadTimeout",
                                         "MaxRetryError", "RetryError", "ProtocolError")):
            return _http_reason(str(e))
        if isinstance(e, mlflow_exceptions.MlflowException):
            if e.error_code == "TEMPORARILY_UNAVAILABLE":
                return _http_reason(e.message)
            if e.message.startswith("API request to") and " failed with " in e.message:
                return _http_reason(e.message)  # MLflow's words for a connection error, time-out or 5xx
            if isinstance(e, mlflow_exceptions.RestException) and e.get_http_status_code() >= 500:
                return f"HTTP {e.get_http_status_code()}: {_http_reason(e.message)}"
    return None


class _QuietStoreErrors(logging.Filter):
    """MLflow's SQL store logs a traceback for every OperationalError; RetryingClient says it in one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("SQLAlchemy database error")


class RetryingClient:
    """An MlflowClient whose every call is retried while the store does not answer (`unavailable_reason`),
    for up to STORE_RETRY_S, with pauses growing from 0.5 s to 8 s; then StoreUnavailable. The one place
    a study's MLflow calls are retried: StudyTracker talks to the store through it.

    MLflow's own HTTP client retries a call for about 4 minutes and waits 120 s for an answer; for an
    HTTP store that is cut (unless the user set them) to no retries and 30 s, so that this budget holds."""

    def __init__(self, inner, uri: str):
        self._inner = inner
        self._uri = uri
        self._single_try = False
        store_log = logging.getLogger("mlflow.store.db.utils")
        if not any(isinstance(f, _QuietStoreErrors) for f in store_log.filters):
            store_log.addFilter(_QuietStoreErrors())
        if uri.startswith("http"):
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")

    def __getattr__(self, name: str):
        attr = getattr(self._inner, name)
        if not callable(attr):
            return attr

        @functools.wraps(attr)
        def retried(*args, **kwargs):
            return self.call(attr, *args, **kwargs)

        return retried

    @contextlib.contextmanager
    def single_try(self) -> Iterator[None]:
        """Calls in the block get one try (a store that does not answer: StoreUnavailable at once): for
        closing calls on the way out of a failure, which must not hold the user up."""
        before, self._single_try = self._single_try, True
        try:
            yield
        finally:
            self._single_try = before

    def call(self, fn, *args, **kwargs):
        """fn(*args, **kwargs), retried while the store does not answer."""
        deadline = time.monotonic() + (0.0 if self._single_try else STORE_RETRY_S)
        pause, told = 0.5, False
        while True:
            try:
                result = fn(*args, **kwargs)
            except Exception as exc:
                reason = unavailable_reason(exc)
                if reason is None:
                    raise
                if time.monotonic() + pause > deadline:
                    raise StoreUnavailable(self._uri, reason) from exc
                if not told:
                    log.warning("the MLflow store %s does not answer (%s); trying again for up to %.0f s",
                                self._uri, reason, STORE_RETRY_S)
                    told = True
                time.sleep(pause)
                pause = min(pause * 2, 8.0)
            else:
                if told:
                    log.warning("the MLflow store %s answers again", self._uri)
                return result


UI_HOST = "http://127.0.0.1:5000"  # where `make ui` serves a local store


def ui_command(uri: str, host: str, port: int) -> list[str]:
    """`mlflow ui` on the store at `uri`, from this Python environment."""
    return [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", host, "--port", str(port)]


def ui_link(uri: str, experiment_id: str) -> str:
    """The MLflow UI's runs table of an experiment (MLflow 3.17 opens its GenAI view without the flag)."""
    base = uri if uri.startswith("http") else UI_HOST
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"


def run_link(experiment_id: str, run_id: str, host: str = UI_HOST) -> str:
    return f"{host.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


# --------------------------------------------------------------------------- the store a command names


# What a tracking URI may name: a database MLflow 3 keeps runs in (it has left file stores behind), or
# an MLflow tracking server.
STORE_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql", "http", "https")
STORE_FORMS = ("sqlite:///path/to/mlflow.db, http(s)://host:port (an MLflow server), "
               "postgresql://user:password@host:port/db, mysql://... or mssql://...")
# How long a command waits for a tracking server that does not answer (MLflow's own client retries
# for about two minutes before it says anything).
STORE_WAIT_S = 12.0


class StoreURIError(StudyError, ValueError):
    """A tracking URI this project cannot use, or a store that is not there yet; one line for the user."""


def check_store(uri: str | None = None, *, must_exist: bool = False, wait_s: float | None = None) -> str:
    """The store a command is about to use (see `tracking_uri`), checked before MLflow touches it: a
    scheme of STORE_SCHEMES; for SQLite an existing folder, and with `must_exist` an existing file (a
    command that only reads must not leave an empty mlflow.db behind); a server that answers within
    `wait_s` (default STORE_WAIT_S). Returns the URI; raises StoreURIError or NoAnswer."""
    named = uri or os.environ.get("MLFLOW_TRACKING_URI")
    what = "MLFLOW_TRACKING_URI" if named and not uri else "tracking URI"
    uri = tracking_uri(uri)
    scheme = urllib.parse.urlsplit(uri).scheme.lower().split("+")[0]
    if scheme in ("", "file"):
        raise StoreURIError(f"{what} {uri!r}: MLflow 3 keeps no runs in a file store (a plain path or file:); "
                            f"use {STORE_FORMS}")
    if scheme not in STORE_SCHEMES:
        raise StoreURIError(f"{what} {uri!r}: not a store this project can use; allowed: {STORE_FORMS}")
    if scheme == "sqlite" and uri.startswith("sqlite:///") and uri != "sqlite:///:memory:":
        db = sqlite_file(uri)
        if not db.parent.is_dir():
            raise StoreURIError(f"{what} {uri!r}: the folder {db.parent} does not exist; create it first")
        if must_exist and not db.is_file():
            raise StoreURIError(f"no MLflow store at {db} ({what} {uri}) yet: run `make search` first, or set "
                                "MLFLOW_TRACKING_URI to the store that holds the study")
    if scheme in ("http", "https"):
        wait_http(uri, STORE_WAIT_S if wait_s is None else wait_s)
    return uri


class NoAnswer(SearchError):
    """A server that did not answer within the time given."""


def wait_http(uri: str, timeout: float = 180.0, *, alive=None, what: str = "MLflow tracking server") -> None:
    """Until an MLflow tracking server at `uri` answers /health (MLflow's client retries with long
    back-offs). `alive()`, when given, is asked between tries and may raise to stop waiting."""
    if not uri.startswith("http"):
        return
    deadline = time.monotonic() + timeout
    while True:
        if alive is not None:
            alive()
        try:
            with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() >= deadline:
            raise NoAnswer(f"no {what} answers on {uri} (waited {timeout:.0f} s)")
        time.sleep(0.3)

