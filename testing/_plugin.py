"""trioflow's pytest plugin: fixtures for testing pipelines.

Registered through the ``pytest11`` entry point, so installing trioflow is
enough: any test can ask for these fixtures. The runtime fixture is async,
so tests that use it run under trio (pytest-trio: ``trio_mode = true`` or
``@pytest.mark.trio``). Ask for pytest-trio's ``autojump_clock`` as well
and simulated latency (``FakeModel``'s, retry backoff) takes no real time:
nothing here waits on the wall clock.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from trioflow.persistence import InMemoryStore
from trioflow.runtime import Runtime, open_runtime


@pytest.fixture
def trioflow_store() -> InMemoryStore:
    """A fresh in-memory store: the journal of this test's runs."""
    return InMemoryStore()


@pytest.fixture
async def trioflow_runtime(trioflow_store: InMemoryStore) -> AsyncIterator[Runtime]:
    """A runtime over ``trioflow_store``, with no limits and its own cache."""
    async with open_runtime(store=trioflow_store) as runtime:
        yield runtime
