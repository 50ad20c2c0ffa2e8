"""One study, one chief: the lock a search holds while it runs.

`StudyLock` is the file `<log_dir>/.keras-tuner/.<study>.lock` (beside the study's tuner folder, so
`--fresh` never removes it; no study name starts with '.', so it never names a study's folder). It
holds the process id, the host, the start time and a lease that a daemon thread renews while the
study runs; it is written whole (created with a link, renewed with a rename). Another start of the
same study is refused while the holder lives: on this host, while its process exists; on another
host (a shared --log-dir), until its lease runs out. Only the single-process search and the chief
take it; the chief's workers join the study they were started for.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid
from pathlib import Path

from .errors import SearchError
from .files import write_atomic
from .paths import tuner_root

LEASE_S = 120.0  # a holder on another host that has not renewed for this long is gone
RENEW_S = 30.0


def lock_path(log_dir: str | os.PathLike, study: str) -> Path:
    return tuner_root(log_dir) / f".{study}.lock"


def _read(path: Path) -> dict | None:
    """The holder's record; {} when the file is unreadable, None when there is no file."""
    try:
        return json.loads(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def holder_alive(info: dict, now: float | None = None) -> bool:
    """Whether the process that wrote `info` still holds the study: on this host while its process
    exists, on another host while its lease runs."""
    if info.get("host") == socket.gethostname() and isinstance(info.get("pid"), int):
        return _pid_alive(info["pid"])
    renewed = info.get("renewed")
    if not isinstance(renewed, (int, float)):
        return False
    return (now or time.time()) - renewed < float(info.get("lease_s", LEASE_S))


class StudyLock:
    """`with StudyLock(log_dir, study):` the study is this process's until the block ends, whatever ends it."""

    def __init__(self, log_dir: str | os.PathLike, study: str, lease_s: float = LEASE_S, renew_s: float = RENEW_S):
        self.study = study
        self.path = lock_path(log_dir, study)
        self.lease_s = lease_s
        self.renew_s = renew_s
        self.token = uuid.uuid4().hex
        self.started = time.time()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _record(self) -> str:
        return json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": self.started,
                           "renewed": time.time(), "lease_s": self.lease_s, "token": self.token})

    def acquire(self) -> "StudyLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(5):
            if self._create():
                self._thread = threading.Thread(target=self._renew, name=f"lease {self.study}", daemon=True)
                self._thread.start()
                return self
            info = _read(self.path)
            if info is None:
                continue  # released meanwhile
            if holder_alive(info) or (not info and self._young()):
                raise SearchError(self._refusal(info))
            self._break(info)
        raise SearchError(f"study {self.study!r}: could not take {self.path} (other starts keep taking it); "
                          "run the same command again")

    def _create(self) -> bool:
        """Create the lock file with its whole record in one step (a hard link to a written file)."""
        tmp = self.path.with_name(f"{self.path.name}.{self.token}.tmp")
        write_atomic(tmp, self._record())
        try:
            os.link(tmp, self.path)
            return True
        except FileExistsError:
            return False
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)

    def _young(self) -> bool:
        """An unreadable lock file written within the lease: someone is starting the study right now."""
        try:
            return time.time() - self.path.stat().st_mtime < self.lease_s
        except OSError:
            return False

    def _break(self, stale: dict) -> None:
        """Remove a stale holder's file, and only that one: moved aside first, then checked."""
        aside = self.path.with_name(f"{self.path.name}.{self.token}.stale")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        if _read(aside) != stale:  # another start took the study between our read and the move: give it back
            with contextlib.suppress(OSError):
                os.link(aside, self.path)
        with contextlib.suppress(OSError):
            os.unlink(aside)

    def _refusal(self, info: dict) -> str:
        if not info:
            return (f"study {self.study!r} is being started by another process ({self.path} is being written); "
                    "wait for it to end, or stop it")
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.get("started", 0)))
        return (f"study {self.study!r} is already running: process {info.get('pid')} on host {info.get('host')} "
                f"holds {self.path} (since {since}); wait for it to end, or stop it, then run the same command again")

    def _mine(self) -> bool:
        info = _read(self.path)
        return bool(info) and info.get("token") == self.token

    def _renew(self) -> None:
        while not self._stop.wait(self.renew_s):
            if not self._mine():
                return
            with contextlib.suppress(OSError):  # a full disk: the study itself says so
                write_atomic(self.path, self._record())

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._mine():
            with contextlib.suppress(OSError):
                self.path.unlink()

    def __enter__(self) -> "StudyLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
