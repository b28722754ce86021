"""``python -m trioflow.runtime``: the same as the ``trioflow`` command."""

from ._cli import main

main()
