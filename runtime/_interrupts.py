"""Runs stopped from outside the pipeline: Ctrl-C, SIGTERM, a failing journal.

Ctrl-C reaches a trio program as ``KeyboardInterrupt``, delivered by trio
at a point where it is safe; the runner then stores the run as
``interrupted`` (resumable, with what it spent) and lets the exception go
on. SIGTERM, what ``kill``, systemd or a container runtime send, ends a
Python process at once by default: nothing is stored and the run stays
``running``, which looks like a run still being driven.

:class:`StopSignals` makes other signals stop runs exactly as Ctrl-C
does: its handler hands the signal to the SIGINT handler (trio's, inside
``trio.run``), so the run ends through the same path, and it remembers
which signal came so the stored reason and the command line's exit code
can say so. Signal handlers belong to a process, not to a library: the
``trioflow`` command installs this for SIGTERM; a program that embeds the
runtime decides for itself (``Runtime.stop_on``).
"""

from __future__ import annotations

import signal
import threading
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager

_Handler = Callable[[int, types.FrameType | None], object] | int | signal.Handlers | None

#: The stored reason of a run stopped by Ctrl-C.
CTRL_C = "interrupted by Ctrl-C"


def was_interrupted(error: BaseException) -> bool:
    """Whether ``error`` is (or holds) the ``KeyboardInterrupt`` of Ctrl-C or a stop signal."""
    if isinstance(error, BaseExceptionGroup):
        return error.subgroup(KeyboardInterrupt) is not None
    return isinstance(error, KeyboardInterrupt)


class StopSignals:
    """Signals that stop a process's runs the way Ctrl-C does; see the module docstring."""

    def __init__(self) -> None:
        #: The stop signal that came, if one did.
        self.received: signal.Signals | None = None

    @contextmanager
    def installed(self, *signals: signal.Signals) -> Iterator[StopSignals]:
        """Handle ``signals`` as Ctrl-C while inside; the earlier handlers come back after.

        Off the main thread it installs nothing: Python delivers signals to
        the main thread only (and lets only it install handlers), so no
        signal can reach runs driven from another thread, such as a
        ``trio.run`` that a program starts in a worker thread.
        """
        earlier: dict[signal.Signals, _Handler] = {}
        if threading.current_thread() is not threading.main_thread():
            signals = ()
        try:
            for number in signals:
                earlier[number] = signal.signal(number, self._handle)
            yield self
        finally:
            for number, handler in earlier.items():
                signal.signal(number, handler)

    def reason(self, error: BaseException) -> str:
        """Why a run stopped by ``error`` from outside its steps stopped, in words."""
        if not was_interrupted(error):
            return f"{type(error).__name__}: {error}"
        return CTRL_C if self.received is None else f"interrupted by {self.received.name}"

    def _handle(self, number: int, frame: types.FrameType | None) -> None:
        self.received = signal.Signals(number)
        interrupt = signal.getsignal(signal.SIGINT)
        if callable(interrupt):
            # trio's handler raises KeyboardInterrupt here, or at the main task's next
            # checkpoint when this frame must not be interrupted (trio's own code).
            interrupt(signal.SIGINT, frame)
        else:  # SIGINT ignored or left to the OS: stop as Python's default handler would
            raise KeyboardInterrupt
