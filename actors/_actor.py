"""Actors: a trio task that owns a bounded mailbox.

An :class:`Actor` subclass implements :meth:`Actor.receive`. The kernel
runs it in a task of a supervisor's nursery (see :mod:`._supervisor`),
hands it one message at a time, and reports everything to the trace sink.
Other tasks talk to it through its :class:`ActorRef`.

Why a bounded mailbox: a producer faster than its consumer must slow down
(``tell`` waits for room) instead of growing memory without limit.
"""

from __future__ import annotations

import math
from typing import Any, Generic, TypeVar

import trio

from ._ask import Ask
from ._envelope import Envelope
from ._errors import ActorStopped, AskTimeout
from ._reply import ReplyInbox, ReplySlot
from ._trace import TraceEvent, TraceKind, TraceSink

M = TypeVar("M")
K = TypeVar("K")
R = TypeVar("R")


class Actor(Generic[M]):
    """Base class of actors; ``M`` is the type of message it receives.

    ``receive`` handles one message; for an ``ask`` its return value is the
    reply and an exception it raises goes back to the asker (the actor goes
    on with its next message). An exception raised while handling a
    ``tell`` has nobody to go back to, so it ends the actor and its
    supervisor's strategy decides what happens next.
    """

    path: str = ""
    _stopping: bool = False

    async def receive(self, message: M) -> Any:
        raise NotImplementedError

    def stop(self) -> None:
        """Exit after the current message; queued asks get ``ActorStopped``."""
        self._stopping = True


class ActorRef(Generic[M]):
    """The address of an actor and the way to send it messages."""

    __slots__ = ("_send", "_trace", "path")

    def __init__(
        self, path: str, send: trio.MemorySendChannel[Envelope[M]], trace: TraceSink
    ) -> None:
        self.path = path
        self._send = send
        self._trace = trace

    def __repr__(self) -> str:
        return f"ActorRef({self.path!r})"

    async def tell(self, message: M, *, sender: str | None = None) -> None:
        """Send ``message``; wait while the mailbox is full (backpressure)."""
        await self._post(Envelope(message, sender, None))

    async def ask(
        self, message: Ask[R], *, sender: str | None = None, timeout: float = math.inf
    ) -> R:
        """Send ``message`` and wait for the reply, the ``R`` its class declares.

        The message's :class:`~trioflow.actors.Ask` base types the reply, so
        mypy checks what the caller does with it (``M`` types ``tell``).

        Raises :class:`AskTimeout` if no reply arrives within ``timeout``
        seconds (the time spent waiting for mailbox room counts), the
        handler's exception if it raised one, and :class:`ActorStopped` if
        the actor stopped before handling the message.
        """
        slot: ReplySlot[R] = ReplySlot()
        envelope: Envelope[Any] = Envelope(message, sender, slot)
        if timeout == math.inf:  # no cancel scope on the hot path when none is needed
            await self._post_for_reply(envelope)
            return await slot.wait()
        with trio.move_on_after(timeout):
            await self._post_for_reply(envelope)
            return await slot.wait()
        raise AskTimeout(self.path, message, timeout)

    async def ask_into(
        self, message: Ask[R], inbox: ReplyInbox[K, R], tag: K, *, sender: str | None = None
    ) -> None:
        """Send ``message``; its reply will arrive in ``inbox`` tagged ``tag``.

        Returns once the message is in the mailbox. The handler's result or
        exception, or :class:`ActorStopped` if the actor stops first, is
        delivered to the inbox.
        """
        envelope: Envelope[Any] = Envelope(message, sender, inbox.slot(tag))
        await self._post(envelope)

    async def _post(self, envelope: Envelope[M]) -> None:
        self._trace_send(envelope)
        try:
            await self._send.send(envelope)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise ActorStopped(self.path) from None

    async def _post_for_reply(self, envelope: Envelope[M]) -> None:
        """Post an ask's message; waiting for its reply is the caller's checkpoint.

        Why not :meth:`_post`: a memory channel's ``send`` yields to the
        scheduler even when the mailbox has room, and the ask yields again
        to wait for the reply; one pass per ask is enough. A cancelled
        caller still posts nothing, and a full mailbox still waits.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        self._trace_send(envelope)
        try:
            try:
                self._send.send_nowait(envelope)
            except trio.WouldBlock:
                await self._send.send(envelope)  # the mailbox is full: wait (backpressure)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise ActorStopped(self.path) from None

    def _trace_send(self, envelope: Envelope[M]) -> None:
        self._trace.record(
            TraceEvent(
                TraceKind.SEND,
                envelope.sender or "",
                trio.current_time(),
                type(envelope.message).__name__,
                self.path,
            )
        )

    def close(self) -> None:
        """Close the mailbox: the actor handles what is queued, then exits."""
        self._send.close()


async def run_actor(
    actor: Actor[M],
    mailbox: trio.MemoryReceiveChannel[Envelope[M]],
    trace: TraceSink,
) -> None:
    """Deliver ``mailbox`` to ``actor`` one message at a time until it stops.

    Returns when the mailbox is closed and drained or the actor calls
    :meth:`Actor.stop`; raises what a ``tell`` handler raised. Reports
    receive, exit and cancellation events; the supervisor reports spawns.
    """
    path = actor.path
    try:
        async for envelope in mailbox:
            trace.record(
                TraceEvent(
                    TraceKind.RECEIVE,
                    path,
                    trio.current_time(),
                    type(envelope.message).__name__,
                    envelope.sender,
                )
            )
            slot = envelope.reply
            if slot is None:
                await actor.receive(envelope.message)
            else:  # an ask: the handler's result or exception becomes the reply
                # (Inline, not a helper coroutine: every waiting actor holds this
                # chain of frames, and every cancelled one unwinds it.)
                try:
                    value = await actor.receive(envelope.message)
                except Exception as error:  # delivered to the asker, who owns the request
                    slot.fail(error)
                except BaseException:
                    # Cancelled, or what ends the process (KeyboardInterrupt): the asker
                    # may live outside the cancelled scope, or wait shielded (a
                    # governor's commit), so it is never left hanging.
                    slot.fail(ActorStopped(path))
                    raise
                else:
                    slot.set(value)
            if actor._stopping:
                break
    except trio.Cancelled as cancelled:
        trace.record(
            TraceEvent(TraceKind.CANCEL, path, trio.current_time(), detail=cancelled.reason)
        )
        raise
    except Exception as error:
        trace.record(
            TraceEvent(
                TraceKind.EXIT,
                path,
                trio.current_time(),
                "failed",
                detail=f"{type(error).__name__}: {error}",
            )
        )
        raise
    trace.record(TraceEvent(TraceKind.EXIT, path, trio.current_time(), "ok"))


def refuse_queued(
    mailbox: trio.MemoryReceiveChannel[Envelope[Any]], path: str, trace: TraceSink
) -> None:
    """Settle what is still queued in a mailbox whose actor has exited.

    A queued ask fails with :class:`ActorStopped`; a queued tell has nobody
    to tell, so it is reported to the trace as ``dropped`` (never silently).
    """
    while True:
        try:
            envelope = mailbox.receive_nowait()
        except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
            return
        if envelope.reply is None:
            trace.record(
                TraceEvent(
                    TraceKind.NOTE,
                    path,
                    trio.current_time(),
                    "dropped",
                    envelope.sender,
                    type(envelope.message).__name__,
                )
            )
        elif not envelope.reply.filled:
            envelope.reply.fail(ActorStopped(path))
