"""``python -m trioflow.runtime``: the same as the ``trioflow`` command."""

from ._cli._commands import main

main()
