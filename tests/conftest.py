"""Suite-wide set-up: each test's default journal in its own folder, and the shared fixtures.

The runtime and in-memory store are the testing plugin's own
(``trioflow_runtime``, ``trioflow_store``: what a user of trioflow gets);
``rt`` is the name the suite calls the plugin's runtime by. ``store`` is
every kind of store, for the tests that hold for all of them (the store
contract, retention, durability): a new kind of store joins by adding
its name to :data:`STORE_KINDS` and its opening to :func:`each_store`.
PostgreSQL's is a database on a throwaway server the session starts
(``postgres_server.py``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from postgres_server import PostgresServer, running_server
from trioflow.persistence import InMemoryStore, PostgresStore, RunStore, SQLiteStore
from trioflow.runtime import Runtime

#: The stores the store-agnostic tests run against, one test per kind.
STORE_KINDS = ["memory", "sqlite", "postgres"]

#: The stores a test on trio's autojumping MockClock runs on. Not PostgreSQL: its calls wait
#: on worker threads, and the autojump takes a task waiting on a thread for one asleep, so
#: virtual time runs ahead of the store (leases run out mid-call). Its leases are tested in
#: real time and in real processes instead (``tests/postgres``).
VIRTUAL_TIME_STORE_KINDS = ["memory", "sqlite"]


@pytest.fixture(autouse=True)
def journal_in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``open_runtime()`` and the CLI default to ``$TRIOFLOW_DB``: keep it out of the checkout."""
    path = tmp_path / "journal" / "trioflow.db"
    monkeypatch.setenv("TRIOFLOW_DB", str(path))
    return path


@pytest.fixture
def rt(trioflow_runtime: Runtime) -> Runtime:
    """The testing plugin's runtime (over ``trioflow_store``), by its short name."""
    return trioflow_runtime


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


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run a test that takes ``store`` (this one) once per kind of store (see above)."""
    if "each_store" in metafunc.fixturenames:
        virtual_time = "autojump_clock" in metafunc.fixturenames
        kinds = VIRTUAL_TIME_STORE_KINDS if virtual_time else STORE_KINDS
        metafunc.parametrize("each_store", kinds, indirect=True)


@pytest.fixture
def store(each_store: RunStore) -> RunStore:
    """A fresh store of each kind (a folder's ``store`` may stand for another)."""
    return each_store


@pytest.fixture
async def each_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[RunStore]:
    """A fresh store of each kind: in memory, an SQLite file, a PostgreSQL database."""
    if request.param == "memory":
        yield InMemoryStore()
    elif request.param == "sqlite":
        async with SQLiteStore.open(tmp_path / "store" / "runs.db") as sqlite:
            yield sqlite
    else:
        url = request.getfixturevalue("postgres_url")
        async with PostgresStore.open(url) as postgres:
            yield postgres
