"""Supervisors: a nursery that owns actors and decides what a failure means.

A supervisor is opened with :func:`open_supervisor` as an ``async with``
block. Actors spawned in it run in its nursery, so none outlives the block.
When the block's body finishes, every mailbox is closed: each actor handles
what is already queued and exits, and the block waits for all of them.

When a child raises, the strategy decides:

* :class:`Escalate` (the default, trio's own behaviour): every sibling and
  the block's body are cancelled with a reason naming the failed child,
  and the block raises :class:`ChildFailed` wrapping the child's exception.
  The caller sees one typed error, never an ``ExceptionGroup``.
* :class:`Restart`: a fresh actor from the child's factory takes over the
  same mailbox (queued messages are kept; the one being handled is lost).
  More than ``max_restarts`` restarts within ``within_s`` seconds escalate,
  as in Erlang/OTP.

A child spawned with ``shielded=True`` is a service its siblings depend on
even while they are being cancelled (a run's governor: a call that returned
must still be committed). Cancellation does not reach it; once the body has
ended and every unshielded child has exited, its mailbox is closed, so it
handles what was sent to it before it exits. A shielded actor must answer
each message promptly: the supervisor's block waits for it.
"""

from __future__ import annotations

import collections
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, NoReturn, TypeVar

import attrs
import trio

from ._actor import Actor, ActorRef, refuse_queued, run_actor
from ._envelope import Envelope
from ._errors import ChildFailed
from ._trace import TraceEvent, TraceKind, TraceSink

M = TypeVar("M")

#: Default mailbox capacity: small, so backpressure starts early.
DEFAULT_MAILBOX_SIZE = 16


@attrs.frozen
class Escalate:
    """A child's failure cancels its siblings and fails the supervisor."""


@attrs.frozen
class Restart:
    """Restart a failed child, at most ``max_restarts`` times in ``within_s`` seconds."""

    max_restarts: int = 3
    within_s: float = 5.0

    def __attrs_post_init__(self) -> None:
        if self.max_restarts < 0:
            raise ValueError(f"max_restarts must be >= 0, got {self.max_restarts}")
        if self.within_s <= 0:
            raise ValueError(f"within_s must be > 0, got {self.within_s}")


Strategy = Escalate | Restart
ESCALATE = Escalate()


@attrs.define(slots=True)
class _Child:
    path: str
    factory: Callable[[], Actor[Any]]
    ref: ActorRef[Any]
    mailbox: trio.MemoryReceiveChannel[Envelope[Any]]
    #: Not cancelled with its siblings; closed once they are gone (see the module docstring).
    shielded: bool = False
    #: When it was restarted lately (made on its first restart: most actors never are).
    restart_times: collections.deque[float] | None = None


class Supervisor:
    """Owns a nursery of actors; created by :func:`open_supervisor`."""

    def __init__(
        self, path: str, nursery: trio.Nursery, strategy: Strategy, trace: TraceSink
    ) -> None:
        self.path = path
        self.trace = trace
        self._nursery = nursery
        self._strategy = strategy
        self._children: dict[str, _Child] = {}
        self.failure: ChildFailed | None = None
        self._closing = False
        #: The body has ended (returned or raised): shielded children close
        #: once the unshielded ones are gone.
        self._body_ended = False

    def spawn(
        self,
        name: str,
        factory: Callable[[], Actor[M]],
        *,
        mailbox_size: int = DEFAULT_MAILBOX_SIZE,
        shielded: bool = False,
    ) -> ActorRef[M]:
        """Start an actor made by ``factory`` at ``<supervisor path>/<name>``.

        The factory is called again for every restart. Names are unique
        within a supervisor while their actor runs. A ``shielded`` actor
        keeps answering while its siblings are cancelled (see the module
        docstring).
        """
        path = f"{self.path}/{name}" if self.path else name
        if self._closing:
            raise RuntimeError(
                f"supervisor {self.path!r} is closing: cannot spawn {name!r} "
                "(its mailbox would never be closed)"
            )
        if path in self._children:
            raise ValueError(f"an actor named {path!r} is already running")
        send: trio.MemorySendChannel[Envelope[M]]
        receive: trio.MemoryReceiveChannel[Envelope[M]]
        send, receive = trio.open_memory_channel(mailbox_size)
        ref = ActorRef(path, send, self.trace)
        child = _Child(path, factory, ref, receive, shielded)
        self._children[path] = child
        self.trace.record(TraceEvent(TraceKind.SPAWN, path, trio.current_time(), peer=self.path))
        self._nursery.start_soon(self._supervise, child, name=path)
        return ref

    def cancel(self, reason: str) -> None:
        """Cancel every child and the supervisor's body, giving ``reason``."""
        self._nursery.cancel_scope.cancel(reason=reason)

    def close_mailboxes(self) -> None:
        """Ask every child to finish its queued messages and exit."""
        self._closing = True
        for child in list(self._children.values()):
            child.ref.close()

    def end_body(self) -> None:
        """The body has ended: close shielded children as soon as nothing else can ask them."""
        self._body_ended = True
        self._close_shielded_when_alone()

    def _close_shielded_when_alone(self) -> None:
        if not self._body_ended:
            return
        children = list(self._children.values())
        if any(not child.shielded for child in children):
            return
        self._closing = True
        for child in children:
            child.ref.close()

    async def _supervise(self, child: _Child) -> None:
        try:
            if child.shielded:
                with trio.CancelScope(shield=True):
                    await self._run_child(child)
            else:  # no scope of its own: most actors are not shielded, and a scope costs
                await self._run_child(child)
        finally:
            refuse_queued(child.mailbox, child.path, self.trace)
            child.mailbox.close()
            del self._children[child.path]
            self._close_shielded_when_alone()

    async def _run_child(self, child: _Child) -> None:
        """Run ``child``, restarting it as the strategy allows; escalate its failure."""
        while True:
            actor = child.factory()
            actor.path = child.path
            try:
                await run_actor(actor, child.mailbox, self.trace)
                return
            except Exception as error:  # a child's failure goes to the strategy
                if not self._may_restart(child):
                    self._escalate(child, error)
                    return
                self.trace.record(
                    TraceEvent(
                        TraceKind.RESTART,
                        child.path,
                        trio.current_time(),
                        detail=f"{type(error).__name__}: {error}",
                    )
                )

    def _may_restart(self, child: _Child) -> bool:
        strategy = self._strategy
        if not isinstance(strategy, Restart):
            return False
        now = trio.current_time()
        if child.restart_times is None:
            child.restart_times = collections.deque()
        times = child.restart_times
        while times and now - times[0] > strategy.within_s:
            times.popleft()
        if len(times) >= strategy.max_restarts:
            return False
        times.append(now)
        return True

    def _escalate(self, child: _Child, error: Exception) -> None:
        if self.failure is None:
            restarts = len(child.restart_times or ())
            self.failure = ChildFailed(child.path, error, restarts=restarts)
            self.failure.__cause__ = error
            self.cancel(f"{child.path} failed: {type(error).__name__}: {error}")


@asynccontextmanager
async def open_supervisor(
    path: str, trace: TraceSink, *, strategy: Strategy = ESCALATE
) -> AsyncIterator[Supervisor]:
    """Open a supervisor at ``path``; see the module docstring for its rules.

    An exception raised by the body cancels the children and propagates
    unchanged (unwrapped from trio's ``ExceptionGroup``).
    """
    supervisor: Supervisor | None = None
    try:
        async with trio.open_nursery() as nursery:
            supervisor = Supervisor(path, nursery, strategy, trace)
            try:
                yield supervisor
            finally:
                supervisor.end_body()
            # Only a body that finished lets the children drain; if it raised,
            # the nursery cancels them (an idle child must not "exit ok").
            supervisor.close_mailboxes()
    except BaseExceptionGroup as group:
        if supervisor is not None and supervisor.failure is not None and _only_cancelled(group):
            raise supervisor.failure from supervisor.failure.cause
        error = _unwrap(group)
        if error is group:
            raise
        _raise_unchanged(error)
    if supervisor.failure is not None:
        raise supervisor.failure from supervisor.failure.cause


def _raise_unchanged(error: BaseException) -> NoReturn:
    """Raise ``error`` with its ``__cause__`` and ``__context__`` as they were.

    Raising inside ``except`` would set its ``__context__`` to the group.
    """
    cause, context, suppress = error.__cause__, error.__context__, error.__suppress_context__
    try:
        raise error
    finally:
        error.__cause__ = cause  # (this also sets __suppress_context__)
        error.__context__ = context
        error.__suppress_context__ = suppress


def _only_cancelled(group: BaseExceptionGroup[BaseException]) -> bool:
    _, rest = group.split(trio.Cancelled)
    return rest is None


def _unwrap(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The single exception of a nursery group, or the group itself.

    A group made only of cancellations (the body's and the children's) is
    one cancellation as far as the caller is concerned: the first is raised.
    """
    if _only_cancelled(group):
        leaf: BaseException = group
        while isinstance(leaf, BaseExceptionGroup):
            leaf = leaf.exceptions[0]
        return leaf
    while isinstance(group, BaseExceptionGroup) and len(group.exceptions) == 1:
        inner = group.exceptions[0]
        if not isinstance(inner, BaseExceptionGroup):
            return inner
        group = inner
    return group
