"""Where trioflow keeps runs: the store protocol, its stores, and the codec."""

from ._codec import CODEC, Codec, CorruptJournal, Unresolved, UnstorableValue, register_type
from ._failures import DEFAULT_BUSY_TIMEOUT_S, CorruptDatabase, JournalBusy
from ._files import NotAJournal
from ._health import JournalHealth, Recovery, examine_journal
from ._memory import InMemoryStore
from ._postgres import PostgresStore, is_postgres_url
from ._records import LedgerEntry, PauseRecord, RunRecord, RunSummary, StepRecord
from ._retention import PrunePolicy, prune_runs
from ._rows import UnreadableRuns
from ._schema import SchemaTooNew
from ._sqlite import Durability, SQLiteStore
from ._store import RunStore, StaleEpoch, StoreError, UnknownRun
from ._trusted import NO_TYPES, TrustedTypes

__all__ = [
    "CODEC",
    "DEFAULT_BUSY_TIMEOUT_S",
    "NO_TYPES",
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
    "PostgresStore",
    "PrunePolicy",
    "Recovery",
    "RunRecord",
    "RunStore",
    "RunSummary",
    "SQLiteStore",
    "SchemaTooNew",
    "StaleEpoch",
    "StepRecord",
    "StoreError",
    "TrustedTypes",
    "UnknownRun",
    "UnreadableRuns",
    "Unresolved",
    "UnstorableValue",
    "examine_journal",
    "is_postgres_url",
    "prune_runs",
    "register_type",
]
