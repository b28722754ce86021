"""Fixtures of the durability tests: every scenario runs on every kind of store.

``rt`` (the testing plugin's runtime) opens over the suite's ``store``
(memory, SQLite, PostgreSQL);
``stores`` gives two racing runtimes their stores: one shared store in memory
or SQLite, or two SQLite stores on one file, or two PostgreSQL stores on one
database (two "processes").
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from trioflow.persistence import InMemoryStore, PostgresStore, RunStore, SQLiteStore


@pytest.fixture
def trioflow_store(store: RunStore) -> RunStore:
    """Every durability scenario runs on every kind of store: the plugin's runtime opens over it."""
    return store


@pytest.fixture(params=["memory", "one sqlite store", "two sqlite stores", "two postgres stores"])
async def stores(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[RunStore, RunStore]]:
    """The stores of the two racing resumes: the same one twice, or two on one file."""
    if request.param == "memory":
        shared = InMemoryStore()
        yield shared, shared
    elif request.param == "one sqlite store":
        async with SQLiteStore.open(tmp_path / "j.db") as sqlite:
            yield sqlite, sqlite
    elif request.param == "two sqlite stores":
        async with (
            SQLiteStore.open(tmp_path / "j.db") as first,
            SQLiteStore.open(tmp_path / "j.db") as second,
        ):
            yield first, second
    else:
        url = request.getfixturevalue("postgres_url")
        async with PostgresStore.open(url) as first, PostgresStore.open(url) as second:
            yield first, second
