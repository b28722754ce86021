"""A one-shot slot that carries the reply to an ``ask``."""

from __future__ import annotations

from typing import Generic, TypeVar

import trio

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
        """Wait for the reply; raise the exception if the reply is one."""
        await self._event.wait()
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]
