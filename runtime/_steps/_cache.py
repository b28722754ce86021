"""The opt-in step cache: successful results, single-flight, bounded.

One cache belongs to one runtime; only steps that opt in (``cache=``) use
it. The key covers the step's fingerprint, its input and the context
fields it declares. While one call for a key runs, identical calls wait
for it instead of calling the agent again; if it fails, the next waiter
runs (only successes are cached). The least recently used entries are
dropped beyond ``max_entries``.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

import pydantic_core
import trio

from .._dsl._agent_step import AgentStep, Cache
from .._dsl._context import BaseContext
from .._errors import ConfigurationError
from .._results import StepResult
from ._messages import StepDone


def cache_key(step: AgentStep, policy: Cache, data: Any, context: BaseContext) -> str:
    """The key of ``step`` called on ``data`` with ``context``."""
    missing = [name for name in policy.context_fields if name not in type(context).model_fields]
    if missing:
        raise ConfigurationError(
            f"step {step.name!r} caches on context field(s) {', '.join(map(repr, missing))}, "
            f"which {type(context).__name__} does not have"
        )
    fields = {name: getattr(context, name) for name in policy.context_fields}
    payload = pydantic_core.to_json([step.fingerprint, data, fields], fallback=repr)
    return hashlib.sha256(payload).hexdigest()


class StepCache:
    """See the module docstring."""

    def __init__(self, max_entries: int = 1024) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be >= 1, got {max_entries}")
        self._max_entries = max_entries
        # Each entry keeps its step alive: keys hold the identity of the step's
        # agent, which must not be recycled for a new object while the entry lives.
        self._results: OrderedDict[str, tuple[AgentStep, StepResult]] = OrderedDict()
        self._running: dict[str, trio.Event] = {}

    def __len__(self) -> int:
        return len(self._results)

    async def run(
        self, step: AgentStep, key: str, produce: Callable[[], Awaitable[StepDone]]
    ) -> StepDone | StepResult:
        """The cached result for ``key`` (a ``StepResult``), or ``produce()``'s outcome."""
        while True:
            cached = self._results.get(key)
            if cached is not None:
                self._results.move_to_end(key)
                return cached[1]
            running = self._running.get(key)
            if running is None:
                break
            await running.wait()
        finished = self._running[key] = trio.Event()
        try:
            done = await produce()
            if done.result.success and done.breach is None:
                self._store(key, step, done.result)
            return done
        finally:
            del self._running[key]
            finished.set()

    def _store(self, key: str, step: AgentStep, result: StepResult) -> None:
        self._results[key] = (step, result)
        if len(self._results) > self._max_entries:
            self._results.popitem(last=False)
