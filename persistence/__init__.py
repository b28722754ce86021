"""Where trioflow keeps runs: the store protocol and its implementations."""

from ._memory import InMemoryStore
from ._records import RunRecord, StepRecord
from ._store import RunStore, UnknownRun

__all__ = ["InMemoryStore", "RunRecord", "RunStore", "StepRecord", "UnknownRun"]
