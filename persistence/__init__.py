"""Where trioflow keeps runs: the store protocol, its stores, and the codec."""

from ._codec import CODEC, Codec, CorruptJournal, Unresolved, UnstorableValue, register_type
from ._memory import InMemoryStore
from ._records import LedgerEntry, PauseRecord, RunRecord, StepRecord
from ._schema import SchemaTooNew
from ._sqlite import CorruptDatabase, Durability, SQLiteStore
from ._store import RunStore, StaleEpoch, StoreError, UnknownRun

__all__ = [
    "CODEC",
    "Codec",
    "CorruptDatabase",
    "CorruptJournal",
    "Durability",
    "InMemoryStore",
    "LedgerEntry",
    "PauseRecord",
    "RunRecord",
    "RunStore",
    "SQLiteStore",
    "SchemaTooNew",
    "StaleEpoch",
    "StepRecord",
    "StoreError",
    "UnknownRun",
    "Unresolved",
    "UnstorableValue",
    "register_type",
]
