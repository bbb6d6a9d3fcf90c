"""Small synchronisation objects for what every open socket holds.

An idle socket costs what its objects weigh, times every console of the centre. asyncio's own
``Event`` keeps its waiters in a ``collections.deque``, and its ``Queue`` keeps three deques
and an ``Event``; an empty deque weighs about 600 bytes (it allocates a block of 64 slots at
once). A socket holds several of each and almost never has a waiter: these two keep their
waiters in a list (about 56 bytes empty) and behave like the originals in everything the
websockets use.

- ``Flag``: an ``asyncio.Event`` with its waiters in a list. Its methods are asyncio's own
  (``set`` wakes every waiter, ``wait`` removes its future however it ends), which use of
  ``_waiters`` only ``append``, ``remove`` and iteration: a list does all three.
- ``Mailbox``: a bounded queue with one consumer (``get``) and non-blocking producers
  (``put_nowait``, which raises ``asyncio.QueueFull`` when full), as ``Subscription`` uses
  it. A ``get`` that is cancelled loses nothing: it takes an item only when it returns.
"""

from __future__ import annotations

import asyncio
from typing import Generic, TypeVar

T = TypeVar("T")


class Flag(asyncio.Event):
    """``asyncio.Event`` with a light waiter list."""

    def __init__(self) -> None:
        super().__init__()
        self._waiters: list[asyncio.Future[bool]] = []  # type: ignore[assignment]


class Mailbox(Generic[T]):
    """A bounded first-in first-out queue for one consumer."""

    __slots__ = ("_items", "_waiter", "maxsize")

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError("a mailbox holds at least one item")
        self.maxsize = maxsize
        self._items: list[T] = []
        self._waiter: asyncio.Future[None] | None = None

    def qsize(self) -> int:
        return len(self._items)

    def empty(self) -> bool:
        return not self._items

    def put_nowait(self, item: T) -> None:
        """Add ``item``; ``asyncio.QueueFull`` when the mailbox holds ``maxsize`` items."""
        if len(self._items) >= self.maxsize:
            raise asyncio.QueueFull
        self._items.append(item)
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def get_nowait(self) -> T:
        """The oldest item; ``asyncio.QueueEmpty`` when there is none."""
        if not self._items:
            raise asyncio.QueueEmpty
        return self._items.pop(0)

    async def get(self) -> T:
        """The oldest item, once there is one."""
        while not self._items:
            if self._waiter is not None and not self._waiter.done():
                raise RuntimeError("a mailbox has one consumer")
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._items.pop(0)
