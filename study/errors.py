"""The errors a user is meant to read: each says in one line what cannot be done and what to do instead.

Every one derives from `StudyError`, which `lenet-study` prints as `lenet-study: error: <message>` (exit
2, no traceback unless -v). Each is defined beside the code that raises it (ConfigError in model.py,
SpaceError in spacefile.py, DataError in data.py, ...), some with a second base where callers catch that
(a ValueError for a bad value); the ones raised at several layers live here.
"""

from __future__ import annotations


class StudyError(Exception):
    """Something the user asked for that cannot be done; the message, one line, says why."""


class SearchError(StudyError, RuntimeError):
    """A study that cannot run as asked (its name, its lock, its tuner folder, its workers); one line for the user."""
