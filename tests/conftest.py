"""Suite-wide set-up: the default journal of every test lives in its own temporary folder."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def journal_in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``open_runtime()`` and the CLI default to ``$TRIOFLOW_DB``: keep it out of the checkout."""
    path = tmp_path / "journal" / "trioflow.db"
    monkeypatch.setenv("TRIOFLOW_DB", str(path))
    return path
