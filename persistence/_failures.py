"""What a storage failure means to the user: each apsw error as one clear :class:`StoreError`.

SQLite reports a lock held too long, a full disk, a read-only file or
folder and a damaged page as apsw exceptions whose text ("database is
locked", "database or disk is full") does not say which file, nor what to
do. The SQLite store turns every one of them into a :class:`StoreError`
naming the journal and the remedy, so the command line prints one line and
exits with the journal's exit code, and a run that was going on ends
``interrupted`` (resumable) rather than with a traceback.
"""

from __future__ import annotations

from pathlib import Path

import apsw

from ._store import StoreError


class CorruptDatabase(StoreError):
    """The journal is damaged; it was left where it is, unchanged.

    Every command that meets the damage says so, until ``--recover``
    (``recover=True``) repairs it or moves it aside: no command ever starts
    an empty journal in its place on its own.
    """

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(
            f"the journal {path} is damaged ({reason}); it was left in place: "
            f"`trioflow doctor --db {path}` shows the damage, and --recover "
            "(recover=True) repairs it or moves it aside (nothing is deleted)"
        )
        self.path = path
        self.reason = reason


#: How long a write waits for another process's write lock before it fails.
DEFAULT_BUSY_TIMEOUT_S = 30.0


class JournalBusy(StoreError):
    """Another process held the journal's write lock for longer than the busy timeout."""

    def __init__(self, path: Path, busy_timeout_s: float) -> None:
        super().__init__(
            f"the journal {path} is locked by another process: waited {busy_timeout_s:g} s "
            "for its write lock; try again, or wait longer with --busy-timeout SECONDS "
            "(busy_timeout_s=)"
        )
        self.path = path
        self.busy_timeout_s = busy_timeout_s


def storage_error(path: Path, error: apsw.Error, busy_timeout_s: float) -> StoreError:
    """The :class:`StoreError` that tells the user what ``error`` means for the journal.

    Not for damage (:class:`apsw.CorruptError`, :class:`apsw.NotADBError`):
    describing that needs a check of the file, done by the caller.
    """
    if isinstance(error, apsw.BusyError):
        return JournalBusy(path, busy_timeout_s)
    if isinstance(error, apsw.FullError):
        return StoreError(
            f"the journal {path} cannot grow: the disk is full ({error}); "
            "free some space, then resume the run"
        )
    if isinstance(error, apsw.ReadOnlyError):
        return StoreError(
            f"the journal {path} cannot be written ({error}): trioflow needs write access "
            "to the file and to its folder, on a writable filesystem"
        )
    if isinstance(error, apsw.CantOpenError):
        return StoreError(
            f"the journal {path} cannot be opened ({error}): trioflow needs read and write "
            "access to the file and to its folder"
        )
    return StoreError(f"the journal {path} cannot be used: {type(error).__name__}: {error}")


#: apsw's errors that mean the file's content is damaged.
DAMAGE = (apsw.CorruptError, apsw.NotADBError)
