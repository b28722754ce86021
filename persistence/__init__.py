"""Where trioflow keeps runs: the store protocol, its stores, and the codec."""

from ._codec import CODEC, Codec, CorruptJournal, Unresolved, UnstorableValue, register_type
from ._failures import DEFAULT_BUSY_TIMEOUT_S, CorruptDatabase, JournalBusy
from ._files import NotAJournal
from ._health import JournalHealth, Recovery, examine_journal
from ._memory import InMemoryStore
from ._records import LedgerEntry, PauseRecord, RunRecord, StepRecord
from ._schema import SchemaTooNew
from ._sqlite import Durability, SQLiteStore, UnreadableRuns
from ._store import RunStore, StoreError, UnknownRun

__all__ = [
    "CODEC",
    "DEFAULT_BUSY_TIMEOUT_S",
    "Codec",
    "CorruptDatabase",
    "CorruptJournal",
    "Durability",
    "InMemoryStore",
    "JournalBusy",
    "JournalHealth",
    "LedgerEntry",
    "NotAJournal",
    "PauseRecord",
    "Recovery",
    "RunRecord",
    "RunStore",
    "SQLiteStore",
    "SchemaTooNew",
    "StepRecord",
    "StoreError",
    "UnknownRun",
    "UnreadableRuns",
    "Unresolved",
    "UnstorableValue",
    "examine_journal",
    "register_type",
]
