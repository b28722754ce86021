"""Which store a runtime opens: an SQLite file, or a PostgreSQL database named by its URL.

``open_runtime(store=...)``, ``--db`` and ``$TRIOFLOW_DB`` all take either:
a ``postgresql://`` (or ``postgres://``) URL selects the PostgreSQL store,
anything else is the path of an SQLite journal. Nothing else changes for
the caller: both keep runs under the same protocol.
"""

from __future__ import annotations

import os
from contextlib import AbstractAsyncContextManager
from pathlib import Path

from trioflow.persistence import PostgresStore, RunStore, SQLiteStore, is_postgres_url

from ._errors import ConfigurationError

#: Where runs are kept unless ``store=``, ``--db`` or ``TRIOFLOW_DB`` say otherwise.
DEFAULT_DB = Path(".trioflow") / "trioflow.db"

#: A journal's location: the path of an SQLite file, or a PostgreSQL URL.
JournalLocation = Path | str


def default_db_path() -> Path:
    """``$TRIOFLOW_DB`` if set, else ``.trioflow/trioflow.db`` in the working directory."""
    return Path(os.environ.get("TRIOFLOW_DB") or DEFAULT_DB)


def journal_location(given: str | os.PathLike[str] | None = None) -> JournalLocation:
    """``given``, else ``$TRIOFLOW_DB``, else the default: a PostgreSQL URL or an SQLite path."""
    chosen = given if given is not None else os.environ.get("TRIOFLOW_DB") or DEFAULT_DB
    if is_postgres_url(chosen):
        return str(chosen)
    return Path(chosen)


def open_journal(
    location: JournalLocation, *, recover: bool, busy_timeout_s: float
) -> AbstractAsyncContextManager[RunStore]:
    """The store at ``location``, to open with ``async with``."""
    if isinstance(location, Path):
        return SQLiteStore.open(location, recover=recover, busy_timeout_s=busy_timeout_s)
    if recover:
        raise ConfigurationError(
            "--recover (recover=True) repairs an SQLite journal file; a PostgreSQL journal "
            "is kept sound by its server, so there is nothing to recover"
        )
    return PostgresStore.open(location)
