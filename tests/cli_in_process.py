"""The ``trioflow`` command run inside the test's process, for its exit code.

Shared by the command-line tests of every folder: pytest puts ``tests/`` on
``sys.path`` (``pythonpath`` in pyproject.toml), since ``--import-mode=importlib``
lets no test module import another. In-process, so ``capsys`` sees the output and
``monkeypatch`` reaches the command.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from trioflow.runtime._cli._commands import main


def trioflow(*arguments: str | Path) -> int:
    """Run ``trioflow ARGUMENTS``; the exit code it ends with (it always ends by exiting)."""
    with pytest.raises(SystemExit) as exit_info:
        main([str(argument) for argument in arguments])
    code = exit_info.value.code
    assert isinstance(code, int)
    return code
