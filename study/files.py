"""A study's files: a name that is one folder, state written whole, and a full disk told apart.

Standard library only, so every module can use it (the search, the reports, the MLflow door,
keras-tuner's compatibility layer). A study name becomes a folder in several places
(`logs/.keras-tuner/<study>/`, `logs/<study>/`, `reports/<study>/`, the experiment's artifact
folder) and part of the registered model's name, so a new study's name must pass `name_problem`;
`folder_name` maps any name (one already in a store, from before the rule) to a safe folder name.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import uuid
from pathlib import Path

NAME_MAX = 100  # far below file systems' 255 bytes per name and MLflow's 500 characters per experiment name
NAME_RULE = f"letters, digits, '-', '_' and '.', starting with a letter or digit, at most {NAME_MAX} characters"
_NAME = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._-]{{0,{NAME_MAX - 1}}}")


def shown(name: str, limit: int = 40) -> str:
    """A user's name for a one-line message: quoted, escaped, and cut when long."""
    if len(name) <= limit:
        return repr(name)
    return f"{name[:limit]!r}... ({len(name)} characters)"


def name_problem(name: str | None) -> str | None:
    """Why `name` cannot name a study (one folder inside its parent, whatever it contains), or None."""
    if name and _NAME.fullmatch(name):
        return None
    return f"{shown(name or '')}: use {NAME_RULE}"


def folder_name(name: str) -> str:
    """A folder name for any study name: the name itself when it passes `name_problem`, else its safe
    characters plus a digest of the whole name (never '.', '..', empty, a path or too long)."""
    if name_problem(name) is None:
        return name
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).lstrip(".-")[:NAME_MAX - 9] or "study"
    return f"{safe}-{hashlib.sha256(name.encode('utf-8', 'surrogatepass')).hexdigest()[:8]}"


def write_atomic(path: str | os.PathLike, text: str) -> None:
    """Replace `path` with `text` whole or not at all: a temporary file in the same folder, flushed to
    the disk, then renamed over it. A full disk or a kill mid-write leaves the old file as it was."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies, as for open(path, "w")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.filename is None:  # fsync and write do not say which file
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise
    with contextlib.suppress(OSError):  # the rename itself, on the disk (not every file system allows it)
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)


_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
# What libraries that do not raise OSError say instead: h5py (checkpoints), SQLite (the MLflow store).
_FULL_TEXTS = ("No space left on device", "errno = 28", "Disk quota exceeded", "database or disk is full")


def causes(exc: BaseException | None):
    """`exc`, then what caused it (raise ... from, or an error while handling another), each once."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def is_disk_full(exc: BaseException) -> bool:
    """Whether `exc`, or what caused it, is a device (or quota) with no space left."""
    return any((isinstance(e, OSError) and e.errno in _FULL_ERRNOS) or any(t in str(e) for t in _FULL_TEXTS)
               for e in causes(exc))


def full_path(exc: BaseException) -> str | None:
    """The file a disk-full error was writing, when it says."""
    for e in causes(exc):
        if isinstance(e, OSError) and e.filename:
            return os.fsdecode(e.filename)
    return None
