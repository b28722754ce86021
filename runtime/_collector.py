"""The garbage collector's first threshold while runtimes are open.

Every step allocates a few dozen short-lived container objects (its
actor, task, messages, result and trace events), nearly all freed by
reference counting. CPython's default first threshold (700 net
allocations) then runs a young collection every few steps, and every
tenth of those an older one; with a thousand runs in flight each older
collection walks all of their live objects. Measured on workload 4 of
``bench/`` (1,000 concurrent 5-step runs; CPU time, median of 2 on a
loaded 2-core machine): with the default, 2.68 s, of which 0.95 s in the
collector (641 young, 58 middle and 5 full collections); with a first
threshold of 5,000, 1.99 s (0.37 s); with 20,000, 1.70 s (0.25 s; 20
young and one middle collection, no full one). ``gc.freeze()`` was
measured too: it only spares the objects alive at start-up (45,000 here),
a third of the 5,000 threshold's gain, and keeps them for good, so it is
not done. Cyclic garbage waits for up to 20,000 allocations longer: about
2 MB at most.

The threshold is process-wide, so this is documented where it is set
(``open_runtime(gc_threshold=...)``, ``None`` to leave the collector
alone): the first runtime opened in a ``trio.run`` raises it, the last one
closed puts back what it found. Cycles are still collected, in larger
batches.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

import attrs
import trio

#: The first generation's threshold while a runtime is open (CPython's default: 700).
DEFAULT_GC_THRESHOLD = 20_000


@attrs.define
class _Raised:
    """The thresholds found before the first runtime raised them, and how many are open."""

    found: tuple[int, int, int]
    open: int = 0


_RAISED: trio.lowlevel.RunVar[_Raised] = trio.lowlevel.RunVar("trioflow_gc_raised")


@contextmanager
def raised_threshold(threshold: int | None) -> Iterator[None]:
    """The collector's first threshold at least ``threshold`` for the block (``None``: unchanged).

    Runtimes open and close in any order: the count of open ones (per
    ``trio.run``) decides when the thresholds found first are put back.
    """
    if threshold is None:
        yield
        return
    try:
        raised = _RAISED.get()
    except LookupError:
        raised = _Raised(gc.get_threshold())
        _RAISED.set(raised)
    first, second, third = gc.get_threshold()
    if raised.open == 0:
        raised.found = (first, second, third)
    if first != 0:  # 0: automatic collection is off, and stays off
        gc.set_threshold(max(first, threshold), second, third)
    raised.open += 1
    try:
        yield
    finally:
        raised.open -= 1
        if raised.open == 0:
            gc.set_threshold(*raised.found)
