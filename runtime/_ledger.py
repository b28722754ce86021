"""What a run's calls committed: the ledger, with its totals at and beneath every path.

The ledger is the one source of every usage total in a run. The run's
total is all of it; a step with steps beneath it (a pipeline, loop,
conditional or fan-out) reports what was committed under its path, never
its children's results summed: a cancelled branch's result never reaches
its parent, and a call an earlier drive paid for before it crashed keeps
its entry though the step's next drive may need fewer attempts. Counting
from the ledger, every total above a step agrees with the run's.

One entry per idempotency key (``path#attempt#call``): a call that runs
again after a crash replaces its earlier entry instead of counting twice.
Totals are kept per path prefix as entries settle, so any step's total is
one lookup however big the run. Only the governor settles entries (after
the journal stored them); step actors read totals once their children
have ended, when every commit beneath them has settled.
"""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

from ._usage import NO_USAGE, Usage


class CommittedUsage:
    """A run's ledger in memory; see the module docstring."""

    def __init__(self) -> None:
        #: Everything committed: the run's total.
        self.total = NO_USAGE
        self._entries: dict[str, tuple[str, Usage]] = {}
        self._at: defaultdict[str, Usage] = defaultdict(Usage)
        self._under: defaultdict[str, _Sum] = defaultdict(_Sum)

    def settle(self, key: str, path: str, usage: Usage) -> None:
        """Count ``usage`` under ``key``, replacing what an earlier run of that call counted."""
        earlier = self._entries.get(key)
        if earlier is not None:
            earlier_path, spent = earlier
            self.total = _minus(self.total, spent)
            self._at[earlier_path] = _minus(self._at[earlier_path], spent)
            self._count_under(earlier_path, spent, -1)
        self._entries[key] = (path, usage)
        self.total += usage
        self._at[path] += usage
        self._count_under(path, usage, 1)

    def _count_under(self, path: str, usage: Usage, sign: int) -> None:
        """Add ``usage`` to (``sign`` 1), or take it from (-1), ``path`` and each path above it.

        The paths above ``a/b/c`` are ``a/b`` and ``a``: ``a/bc`` is not beneath ``a/b``.
        """
        end = len(path)
        while end > 0:
            self._under[path[:end]].add(usage, sign)
            end = path.rfind("/", 0, end)

    def at(self, path: str) -> Usage:
        """What the calls of the step at ``path`` itself committed."""
        return self._at.get(path, NO_USAGE)

    def under(self, path: str) -> Usage:
        """What was committed at ``path`` and beneath it (``path/...``)."""
        found = self._under.get(path)
        return NO_USAGE if found is None else found.usage()


class _Sum:
    """A running total of usages, as plain numbers.

    Why not :class:`Usage`: every commit updates one of these per path
    level, and adding numbers in place costs a fraction of building a
    checked ``Usage`` each time; one is built only when a total is read.
    """

    __slots__ = ("cost_usd", "input_tokens", "output_tokens")

    def __init__(self) -> None:
        self.cost_usd = Decimal(0)
        self.input_tokens = 0
        self.output_tokens = 0

    def add(self, usage: Usage, sign: int) -> None:
        if sign > 0:
            self.cost_usd += usage.cost_usd
            self.input_tokens += usage.input_tokens
            self.output_tokens += usage.output_tokens
        else:
            self.cost_usd -= usage.cost_usd
            self.input_tokens -= usage.input_tokens
            self.output_tokens -= usage.output_tokens

    def usage(self) -> Usage:
        return Usage(self.cost_usd, self.input_tokens, self.output_tokens)


def _minus(total: Usage, part: Usage) -> Usage:
    return Usage(
        total.cost_usd - part.cost_usd,
        total.input_tokens - part.input_tokens,
        total.output_tokens - part.output_tokens,
    )
