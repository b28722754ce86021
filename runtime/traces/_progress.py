"""Live progress of a run on the command line, fed by its trace events.

One line is printed per finished step, saying how it really ended:
``done``, ``failed``, ``refused`` (a usage limit refused its model call
before it was made), ``over limit`` (its call went over a usage limit),
``paused`` (it waits for human input), ``cancelled``, or ``restored``
(completed before, taken from the journal on resume), with what the run
has spent so far: on a resume that includes what it spent before the
pause or crash. On a terminal a small panel below the lines also shows
the steps running now, how many have finished and the cost so far
(``--quiet``, a pipe or a log file get the lines alone). Both go to
standard error, so standard output holds only the result.

The panel is redrawn when a step starts or ends, from the thread that
runs the steps, never from a refresh thread of its own: rich's thread
would draw between a step line's cursor moves and its text, which erases
lines above the panel.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from types import TracebackType

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.text import Text
from trioflow.actors import TraceEvent, TraceKind
from trioflow.persistence import LedgerEntry

from .._money import format_usd
from .._notes import Committed, NoteKind
from .._paths import is_step_path, is_within
from .._safe_text import inert, shown
from .._steps._step_actor import StepOutcome

#: How each step outcome is shown.
_SHOWN = {
    StepOutcome.OK.value: "done",
    StepOutcome.FAILED.value: "failed",
    StepOutcome.PAUSED.value: "paused",
}


class RunProgress:
    """A trace sink that shows how a run is going; use it as a context manager."""

    def __init__(self, console: Console, *, live: bool) -> None:
        self._console = console
        self._running: dict[str, float] = {}
        # How each step that finished is shown (from its notes), until its actor exits.
        self._marks: dict[str, str] = {}
        # Steps a usage limit refused a call of (the governor's ``deny`` notes).
        self._refused: list[str] = []
        self._done = 0
        self._cost = Decimal(0)
        # Built last: rich's Live renders once as it is made, which needs the fields above.
        self._live = (
            Live(console=console, auto_refresh=False, transient=True, get_renderable=self._render)
            if live
            else None
        )

    def __enter__(self) -> RunProgress:
        if self._live is not None:
            self._live.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._live is not None:
            self._live.stop()

    def spent_before(self, ledger: Iterable[LedgerEntry]) -> None:
        """Count what a resumed run committed before (its ledger) in the cost shown."""
        self._cost += sum((Decimal(entry.cost_usd) for entry in ledger), Decimal(0))

    def record(self, event: TraceEvent) -> None:
        if event.kind is TraceKind.NOTE:
            self._note(event)
            return
        if not is_step_path(event.path):
            return
        if event.kind is TraceKind.RECEIVE and event.label == "Execute":
            self._running[event.path] = event.time
        elif event.kind in (TraceKind.EXIT, TraceKind.CANCEL):
            self._finished(event)
        else:
            return
        if self._live is not None:
            self._live.refresh()

    def _finished(self, event: TraceEvent) -> None:
        started = self._running.pop(event.path, event.time)
        mark = self._marks.pop(event.path, "done")
        if event.kind is TraceKind.CANCEL:
            mark = "cancelled"
        elif event.label != "ok":  # the step's actor itself crashed
            mark = "failed"
        self._done += 1
        self._console.print(
            f"{mark:10} {shown(event.path)}  {event.time - started:.3f}s  "
            f"spent {format_usd(self._cost)}",
            highlight=False,
        )

    def _note(self, event: TraceEvent) -> None:
        if event.label == NoteKind.COMMIT and isinstance(event.data, Committed):
            self._cost += event.data.usage.cost_usd
        elif event.label == NoteKind.DENY and event.peer is not None:
            self._refused.append(event.peer)
        elif event.label == NoteKind.RESTORED:
            self._marks[event.path] = "restored"
        elif event.label == NoteKind.OUTCOME and event.detail is not None:
            self._marks[event.path] = self._shown(event.path, event.detail)

    def _shown(self, path: str, outcome: str) -> str:
        if outcome != StepOutcome.LIMIT.value:
            return _SHOWN.get(outcome, outcome)
        refused = any(is_within(denied, path) for denied in self._refused)
        return "refused" if refused else "over limit"

    def _render(self) -> RenderableType:
        header = Text(
            f"{self._done} step(s) finished, {len(self._running)} running, "
            f"{format_usd(self._cost)} so far"
        )
        running = [Text(f"  running {inert(path)}") for path in list(self._running)[-8:]]
        return Group(header, *running)
