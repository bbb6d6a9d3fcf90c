"""The light synchronisation objects every socket holds (``app/realtime/lean.py``): they
behave as asyncio's ``Event`` and ``Queue`` do where the websockets use them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from app.realtime.lean import Flag, Mailbox
from tests.fixtures.polling import eventually

WITHIN_S = 10


async def until(condition: Callable[[], bool]) -> None:
    """Let other tasks run until ``condition`` holds (polled, with a deadline)."""

    async def holds() -> bool:
        return condition()

    await eventually(holds, within=WITHIN_S, what="the waiters to wait")


class TestFlag:
    async def test_set_wakes_every_waiter_and_stays_set_until_cleared(self) -> None:
        flag = Flag()
        waiters = [asyncio.create_task(flag.wait()) for _ in range(3)]
        await until(lambda: len(flag._waiters) == 3)
        assert not any(w.done() for w in waiters)
        flag.set()
        assert await asyncio.wait_for(asyncio.gather(*waiters), WITHIN_S) == [True] * 3
        assert await asyncio.wait_for(flag.wait(), WITHIN_S) is True
        flag.clear()
        assert not flag.is_set()

    async def test_a_cancelled_wait_leaves_no_waiter_behind(self) -> None:
        flag = Flag()
        waiter = asyncio.create_task(flag.wait())
        await until(lambda: len(flag._waiters) == 1)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert flag._waiters == []
        flag.set()  # nothing left to wake

    async def test_its_waiters_are_a_list(self) -> None:
        assert isinstance(Flag()._waiters, list)


class TestMailbox:
    async def test_first_in_first_out_up_to_its_size(self) -> None:
        box: Mailbox[int] = Mailbox(3)
        for item in (1, 2, 3):
            box.put_nowait(item)
        with pytest.raises(asyncio.QueueFull):
            box.put_nowait(4)
        assert box.qsize() == 3
        assert [await box.get() for _ in range(3)] == [1, 2, 3]
        assert box.empty()
        with pytest.raises(asyncio.QueueEmpty):
            box.get_nowait()

    async def test_a_waiting_get_is_woken_by_a_put(self) -> None:
        box: Mailbox[str] = Mailbox(1)
        getter = asyncio.create_task(box.get())
        await until(lambda: box._waiter is not None)
        assert not getter.done()
        box.put_nowait("event")
        assert await asyncio.wait_for(getter, WITHIN_S) == "event"

    async def test_a_cancelled_get_loses_nothing(self) -> None:
        box: Mailbox[str] = Mailbox(2)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(box.get(), 0.01)
        box.put_nowait("kept")
        assert await asyncio.wait_for(box.get(), WITHIN_S) == "kept"

    async def test_a_put_between_wake_and_take_is_not_lost(self) -> None:
        box: Mailbox[int] = Mailbox(5)
        getter = asyncio.create_task(box.get())
        await until(lambda: box._waiter is not None)
        box.put_nowait(1)
        box.put_nowait(2)  # before the getter runs again
        assert await asyncio.wait_for(getter, WITHIN_S) == 1
        assert await asyncio.wait_for(box.get(), WITHIN_S) == 2

    async def test_one_consumer_at_a_time(self) -> None:
        box: Mailbox[int] = Mailbox(1)
        first = asyncio.create_task(box.get())
        await until(lambda: box._waiter is not None)
        with pytest.raises(RuntimeError, match="one consumer"):
            await box.get()
        first.cancel()

    def test_a_mailbox_holds_something(self) -> None:
        with pytest.raises(ValueError, match="at least one"):
            Mailbox(0)
