"""Suite-wide set-up: each test's default journal in its own folder, and the shared fixtures.

The runtime and in-memory store are the testing plugin's own
(``trioflow_runtime``, ``trioflow_store``: what a user of trioflow gets);
``rt`` is the name the suite calls the plugin's runtime by. ``store`` is
every kind of store, for the tests that hold for all of them (the store
contract, retention, durability): a new kind of store joins by adding
its name to :data:`STORE_KINDS` and its opening to :func:`store`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from trioflow.persistence import InMemoryStore, RunStore, SQLiteStore
from trioflow.runtime import Runtime

#: The stores the store-agnostic tests run against, one test per kind.
STORE_KINDS = ["memory", "sqlite"]


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


@pytest.fixture(params=STORE_KINDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[RunStore]:
    """A fresh store of each kind; the SQLite one in a folder it creates."""
    if request.param == "memory":
        yield InMemoryStore()
    else:
        async with SQLiteStore.open(tmp_path / "store" / "runs.db") as sqlite:
            yield sqlite
