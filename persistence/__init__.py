"""Where trioflow keeps runs: the store protocol, its stores, and the codec."""

from ._codec import CODEC, Codec, CorruptJournal, Unresolved, UnstorableValue, register_type
from ._memory import InMemoryStore
from ._records import LedgerEntry, PauseRecord, RunRecord, RunSummary, StepRecord
from ._retention import PrunePolicy, prune_runs
from ._schema import SchemaTooNew
from ._sqlite import CorruptDatabase, Durability, SQLiteStore
from ._store import RunStore, StoreError, UnknownRun
from ._trusted import NO_TYPES, TrustedTypes

__all__ = [
    "CODEC",
    "NO_TYPES",
    "Codec",
    "CorruptDatabase",
    "CorruptJournal",
    "Durability",
    "InMemoryStore",
    "LedgerEntry",
    "PauseRecord",
    "PrunePolicy",
    "RunRecord",
    "RunStore",
    "RunSummary",
    "SQLiteStore",
    "SchemaTooNew",
    "StepRecord",
    "StoreError",
    "TrustedTypes",
    "UnknownRun",
    "Unresolved",
    "UnstorableValue",
    "prune_runs",
    "register_type",
]
