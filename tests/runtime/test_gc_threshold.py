"""An open runtime raises the collector's first threshold, and puts back what it found.

The threshold is process-wide (see ``runtime/_collector.py``), so each test
sets a known one first and restores the process's own afterwards.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
import trio
import trio.testing
from trioflow.persistence import InMemoryStore
from trioflow.runtime import ConfigurationError, open_runtime


@pytest.fixture(autouse=True)
def known_thresholds() -> Iterator[None]:
    kept = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    yield
    gc.set_threshold(*kept)


async def test_open_runtime_raises_the_first_threshold_to_20000_and_restores_it() -> None:
    async with open_runtime(store=InMemoryStore()):
        assert gc.get_threshold() == (20000, 10, 10)
    assert gc.get_threshold() == (700, 10, 10)


async def test_a_given_threshold_is_used_and_none_leaves_the_collector_alone() -> None:
    async with open_runtime(store=InMemoryStore(), gc_threshold=3000):
        assert gc.get_threshold() == (3000, 10, 10)
    async with open_runtime(store=InMemoryStore(), gc_threshold=None):
        assert gc.get_threshold() == (700, 10, 10)
    assert gc.get_threshold() == (700, 10, 10)


async def test_a_higher_threshold_already_set_is_kept() -> None:
    gc.set_threshold(30000, 10, 10)
    async with open_runtime(store=InMemoryStore()):
        assert gc.get_threshold() == (30000, 10, 10)
    assert gc.get_threshold() == (30000, 10, 10)


async def test_automatic_collection_switched_off_by_threshold_zero_stays_off() -> None:
    gc.set_threshold(0, 10, 10)
    async with open_runtime(store=InMemoryStore()):
        assert gc.get_threshold() == (0, 10, 10)
    assert gc.get_threshold() == (0, 10, 10)


async def test_runtimes_closed_out_of_order_restore_the_threshold_when_the_last_closes() -> None:
    """Two tasks' runtimes: the first opened closes first, the second keeps its threshold."""
    seen: list[tuple[int, int, int]] = []
    second_open, first_closed = trio.Event(), trio.Event()

    async def first() -> None:
        async with open_runtime(store=InMemoryStore()):
            await second_open.wait()
        seen.append(gc.get_threshold())
        first_closed.set()

    async def second() -> None:
        async with open_runtime(store=InMemoryStore(), gc_threshold=40_000):
            second_open.set()
            await first_closed.wait()
            seen.append(gc.get_threshold())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(first)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(second)
    assert seen == [(40000, 10, 10), (40000, 10, 10)]  # the second was still open both times
    assert gc.get_threshold() == (700, 10, 10)


async def test_a_threshold_below_one_is_refused_in_one_line() -> None:
    with pytest.raises(ConfigurationError) as refused:
        async with open_runtime(store=InMemoryStore(), gc_threshold=0):
            pass
    assert str(refused.value) == "gc_threshold must be at least 1 (or None), got 0"
