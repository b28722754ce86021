"""A one-shot slot that carries the reply to an ``ask``."""

from __future__ import annotations

import math
from typing import Any, Generic, Protocol, TypeVar

import attrs
import trio

from ._errors import ActorStopped

T = TypeVar("T")


class ReplySlot(Generic[T]):
    """Holds exactly one reply: a value or an exception.

    The receiving actor fills it (the kernel does so with the handler's
    return value or exception); the asking task waits on it. Filling it a
    second time is a bug in the kernel and raises ``RuntimeError``.
    """

    __slots__ = ("_error", "_event", "_filled", "_value")

    def __init__(self) -> None:
        self._event = trio.Event()
        self._value: T | None = None
        self._error: BaseException | None = None
        self._filled = False

    @property
    def filled(self) -> bool:
        return self._filled

    def set(self, value: T) -> None:
        self._fill()
        self._value = value
        self._event.set()

    def fail(self, error: BaseException) -> None:
        self._fill()
        self._error = error
        self._event.set()

    def _fill(self) -> None:
        if self._filled:
            raise RuntimeError("a reply slot can be filled only once")
        self._filled = True

    async def wait(self) -> T:
        """Wait for the reply; raise the exception if the reply is one.

        A reply that has already arrived is returned even if the caller is
        being cancelled (the next checkpoint will raise): a finished child's
        answer is never thrown away just because cancellation is under way.
        """
        if self._filled:
            await trio.lowlevel.cancel_shielded_checkpoint()
        else:
            await self._event.wait()
        if self._error is not None:
            if isinstance(self._error, ActorStopped):
                # The actor ended while this caller is being cancelled too (what ended
                # it is on its way up): the cancellation is the news, not the stop.
                await trio.lowlevel.checkpoint_if_cancelled()
            raise self._error
        return self._value  # type: ignore[return-value]


K = TypeVar("K")


class ReplyTarget(Protocol):
    """Where the reply to one ask goes: filled once, with a value or an error."""

    @property
    def filled(self) -> bool: ...

    def set(self, value: Any) -> None: ...

    def fail(self, error: BaseException) -> None: ...


@attrs.frozen(slots=True)
class Reply(Generic[K, T]):
    """One reply collected by a :class:`ReplyInbox`, tagged by its ask.

    ``value`` is ``None`` when the reply is an ``error``; :meth:`unwrap`
    says which, typed.
    """

    tag: K
    value: T | None
    error: BaseException | None

    def unwrap(self) -> T:
        """The reply's value; raise it if the reply is an error."""
        if self.error is not None:
            raise self.error
        return self.value  # type: ignore[return-value]  # no error: the handler returned a T


class _InboxSlot(Generic[K, T]):
    __slots__ = ("_filled", "_inbox", "_tag")

    def __init__(self, inbox: ReplyInbox[K, T], tag: K) -> None:
        self._inbox = inbox
        self._tag = tag
        self._filled = False

    @property
    def filled(self) -> bool:
        return self._filled

    def set(self, value: T) -> None:
        self._deliver(Reply(self._tag, value, None))

    def fail(self, error: BaseException) -> None:
        self._deliver(Reply(self._tag, None, error))

    def _deliver(self, reply: Reply[K, T]) -> None:
        if self._filled:
            raise RuntimeError("a reply slot can be filled only once")
        self._filled = True
        self._inbox._arrive(reply)


class ReplyInbox(Generic[K, T]):
    """Collects the replies (each a ``T``) of many asks in one task, in arrival order.

    Why: a supervisor that waits for many children (a parallel step, a
    map) must react to whichever answers first without a helper task per
    ask. Each ask gets a slot tagged by the caller
    (:meth:`~trioflow.actors.ActorRef.ask_into`); :meth:`receive` returns
    the replies as they arrive. Delivering never blocks: the inbox holds
    at most one reply per slot it handed out.
    """

    def __init__(self) -> None:
        self._send, self._receive = trio.open_memory_channel[Reply[K, T]](math.inf)

    def slot(self, tag: K) -> ReplyTarget:
        return _InboxSlot(self, tag)

    def _arrive(self, reply: Reply[K, T]) -> None:
        self._send.send_nowait(reply)

    async def receive(self) -> Reply[K, T]:
        """The next reply to arrive."""
        return await self._receive.receive()

    def arrived(self) -> list[Reply[K, T]]:
        """Every reply that has arrived and was not received yet, without waiting."""
        replies: list[Reply[K, T]] = []
        while True:
            try:
                replies.append(self._receive.receive_nowait())
            except trio.WouldBlock:
                return replies
