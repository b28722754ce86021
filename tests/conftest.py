"""Suite-wide set-up: the default journal of every test lives in its own temporary folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from postgres_server import PostgresServer, running_server


@pytest.fixture(autouse=True)
def journal_in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``open_runtime()`` and the CLI default to ``$TRIOFLOW_DB``: keep it out of the checkout."""
    path = tmp_path / "journal" / "trioflow.db"
    monkeypatch.setenv("TRIOFLOW_DB", str(path))
    return path


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One throwaway PostgreSQL server for the whole session (see ``postgres_server.py``)."""
    with running_server() as server:
        yield server


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh, empty database on the session's server, dropped after the test."""
    with postgres_server.database() as url:
        yield url
