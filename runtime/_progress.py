"""Live progress of a run on the command line, fed by its trace events.

On a terminal a small panel refreshes a few times a second: the steps
running now, how many are done, the cost so far and the elapsed time.
Elsewhere (a pipe, a log file, or ``--quiet``) one plain line is printed
per finished step instead: ``done``, ``failed``, ``cancelled``, ``paused``
or ``replayed`` (resumed from the journal), with what this process has
spent so far. Both go to standard error, so standard output
holds only the result.
"""

from __future__ import annotations

import time
from decimal import Decimal
from types import TracebackType

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.text import Text
from trioflow.actors import TraceEvent, TraceKind

from ._money import format_usd
from ._usage import usage_from_note


def _is_step(path: str) -> bool:
    """Steps are actors whose last path segment is ``index:name``."""
    last = path.rsplit("/", 1)[-1]
    index, colon, _ = last.partition(":")
    return bool(colon) and index.isdigit()


def _failure(event: TraceEvent) -> str:
    return "cancelled" if event.kind is TraceKind.CANCEL else "failed"


class RunProgress:
    """A trace sink that shows how a run is going; use it as a context manager."""

    def __init__(self, console: Console, *, live: bool) -> None:
        self._console = console
        self._live = (
            Live(console=console, refresh_per_second=4, transient=True, get_renderable=self._render)
            if live
            else None
        )
        self._running: dict[str, float] = {}
        # How a step that ended normally is shown when it did not just run.
        self._marks: dict[str, str] = {}
        self._done = 0
        self._failed = 0
        self._cost = Decimal(0)
        self._started = time.monotonic()

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

    def record(self, event: TraceEvent) -> None:
        if event.kind is TraceKind.NOTE:
            self._note(event)
            return
        if not _is_step(event.path):
            return
        if event.kind is TraceKind.RECEIVE and event.label == "Execute":
            self._running[event.path] = event.time
        elif event.kind in (TraceKind.EXIT, TraceKind.CANCEL):
            started = self._running.pop(event.path, event.time)
            ok = event.kind is TraceKind.EXIT and event.label == "ok"
            self._done += 1
            self._failed += not ok
            if self._live is None:
                status = self._marks.pop(event.path, "done") if ok else _failure(event)
                self._console.print(
                    f"{status:9} {escape(event.path)}  {event.time - started:.3f}s  "
                    f"spent {format_usd(self._cost)}",
                    highlight=False,
                )

    def _note(self, event: TraceEvent) -> None:
        if event.label == "commit" and event.detail:
            self._cost += usage_from_note(event.detail).cost_usd
        elif event.label in ("pause", "replayed"):
            self._marks[event.path] = "paused" if event.label == "pause" else "replayed"

    def _render(self) -> RenderableType:
        elapsed = time.monotonic() - self._started
        header = Text(
            f"{self._done} step(s) done, {len(self._running)} running, "
            f"{format_usd(self._cost)} so far, {elapsed:.1f}s"
        )
        running = [Text(f"  running {path}") for path in list(self._running)[-8:]]
        return Group(header, *running)
