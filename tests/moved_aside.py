"""Where ``recover=True`` moved a damaged journal: the one place it may be.

Shared by the journal tests of every folder (``tests/`` is on ``sys.path``:
see ``pythonpath`` in pyproject.toml).
"""

from __future__ import annotations

import re
from pathlib import Path

from trioflow.persistence import Recovery


def moved_aside(recovery: Recovery | None, journal: Path) -> Path:
    """The file ``recovery`` moved ``journal`` to, checked to be ``NAME.corrupt-<UTC second>``.

    The name holds the time of the move (a wall-clock time, so a pattern, not
    a value); it sits next to the journal, never elsewhere.
    """
    assert recovery is not None  # narrows Optional: the caller checks the exact fields it needs
    moved = recovery.moved_to
    assert moved is not None, recovery  # a repair in place moves nothing
    assert moved.parent == journal.parent
    stamped = re.escape(journal.name) + r"\.corrupt-\d{8}T\d{6}Z"
    assert re.fullmatch(stamped, moved.name), moved.name
    return moved
