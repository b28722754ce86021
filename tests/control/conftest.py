"""Shared fixtures of the control-flow tests: a fresh in-memory store and runtime per test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from trioflow.persistence import InMemoryStore
from trioflow.runtime import Runtime, open_runtime


@pytest.fixture
def store() -> InMemoryStore:
    return InMemoryStore()


@pytest.fixture
async def rt(store: InMemoryStore) -> AsyncIterator[Runtime]:
    async with open_runtime(store=store) as runtime:
        yield runtime
