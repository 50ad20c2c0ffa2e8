"""Where a study's files are: its tuner folder under --log-dir, and the file an SQLite store URI names.

The single-process search, its lock, the chief and the workers all find a study's keras-tuner state in
`<log_dir>/.keras-tuner/<study>/`; the store's checks, the chief's tracking server and the report
benchmark all read the database file out of a `sqlite:///PATH` URI. Standard library only.
"""

from __future__ import annotations

import os
from pathlib import Path

TUNER_DIRNAME = ".keras-tuner"  # under --log-dir: one folder per study, keras-tuner's `directory`
SQLITE_PREFIX = "sqlite:///"


def tuner_root(log_dir: str | os.PathLike) -> Path:
    """<log_dir>/.keras-tuner: the `directory` keras-tuner keeps every study's folder in."""
    return Path(log_dir) / TUNER_DIRNAME


def study_folder(log_dir: str | os.PathLike, study: str) -> Path:
    """The study's tuner folder, <log_dir>/.keras-tuner/<study>/ (what a resume reads)."""
    return tuner_root(log_dir) / study


def sqlite_file(uri: str) -> Path | None:
    """The database file of a `sqlite:///PATH` tracking URI (PATH as written; ":memory:" included), else None."""
    return Path(uri[len(SQLITE_PREFIX):]) if uri.startswith(SQLITE_PREFIX) else None
