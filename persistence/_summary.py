"""A run's summary read from its stored record without decoding the user's values.

Listing runs must work on any journal, from any code, and cost little: it
reads each run's stored document, keeps the summary fields (status,
times, totals...) and never looks at the input, output, context or limits,
which hold the user's classes.
"""

from __future__ import annotations

from typing import Any

from ._codec import CODEC, CorruptJournal
from ._records import SUMMARY_FIELDS, RunRecord, RunSummary
from ._trusted import class_name

_RUN_RECORD = class_name(RunRecord)


def run_summary(document: Any) -> RunSummary:
    """The summary of the stored :class:`RunRecord` ``document``."""
    if not isinstance(document, dict) or document.get("$attrs") != _RUN_RECORD:
        raise CorruptJournal("a stored run is not a RunRecord")
    fields = document.get("fields")
    if not isinstance(fields, dict):
        raise CorruptJournal("a stored run has no fields")
    kept = {name: CODEC.from_document(fields[name]) for name in SUMMARY_FIELDS if name in fields}
    try:
        return RunSummary(**kept)
    # A field of the wrong type (attrs validators), a cost that is not decimal text
    # (its converter), or one missing.
    except (TypeError, ValueError) as error:
        raise CorruptJournal(f"a stored run cannot be listed: {error}") from None
