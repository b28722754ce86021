"""Fixtures of the durability tests: every scenario runs on both stores."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from trioflow.persistence import InMemoryStore, RunStore, SQLiteStore
from trioflow.runtime import Runtime, open_runtime


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[RunStore]:
    if request.param == "memory":
        yield InMemoryStore()
    else:
        async with SQLiteStore.open(tmp_path / "j.db") as sqlite:
            yield sqlite


@pytest.fixture
async def rt(store: RunStore) -> AsyncIterator[Runtime]:
    async with open_runtime(store=store) as runtime:
        yield runtime
