"""Waiting on the outside (a provider's API): the timers of kinds that call out are each fired
apart, in a transaction of their own, and the sweeps run apart from the timers and from each
other, so a slow provider holds up no other timer and no other sweep; and a worker stops when
told, or can be given up on."""

from __future__ import annotations

import asyncio
from datetime import datetime

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import db_now, unit_of_work
from app.events.log import record
from app.events.models import Event
from app.timers import service as timers
from app.timers.models import Timer
from app.timers.worker import CALLING_OUT_AT_ONCE, TimerRegistry, TimerWorker, then_outside
from tests.fixtures.polling import eventually
from tests.timers.test_timers import fired, mark, schedule_in

SLOW, QUICK = "test.calls_out", "test.quick"


class Outside:
    """A provider that answers only when the test lets it: the handlers that call it wait."""

    def __init__(self, *, cut_short_as: Exception | None = None) -> None:
        self.answer = asyncio.Event()
        # What a handler cut short raises: a client (or the driver, on the connection the
        # cancel broke) may turn the cancel into an error of its own.
        self.cut_short_as = cut_short_as
        self.waiting: set[str] = set()  # the timers whose handler waits for it now
        self.changed = asyncio.Event()

    async def handler(self, session: AsyncSession, timer: Timer, now: datetime) -> None:
        record(session, type="test.fired", subject_type="timer", subject_id=timer.subject)
        self.waiting.add(timer.subject)
        self.changed.set()
        try:
            await self.answer.wait()
        except asyncio.CancelledError:
            if self.cut_short_as is not None:
                raise self.cut_short_as from None
            raise
        finally:
            self.waiting.discard(timer.subject)

    async def waited_by(self, count: int) -> None:
        async with asyncio.timeout(10):
            while len(self.waiting) < count:
                self.changed.clear()
                await self.changed.wait()


def running(sessionmaker: async_sessionmaker[AsyncSession], registry: TimerRegistry) -> TimerWorker:
    # A long poll: a timer fires because its scheduling woke the worker or it fell due.
    return TimerWorker(sessionmaker, registry, poll_interval_s=30, batch_size=10, max_attempts=3)


async def committed(sessionmaker: async_sessionmaker[AsyncSession]) -> list[str]:
    async with sessionmaker() as session:
        return sorted(await fired(session))


async def schedule_now(
    sessionmaker: async_sessionmaker[AsyncSession], worker: TimerWorker, kind: str, subject: str
) -> None:
    async with unit_of_work(sessionmaker) as session:
        await timers.schedule(session, kind=kind, subject=subject, due_at=await db_now(session))
    worker.poke()


class TestCallingOut:
    async def test_a_timer_waiting_on_the_outside_holds_up_no_other_timer(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        outside = Outside()
        registry = TimerRegistry()
        registry.register(SLOW, outside.handler, calls_out=True)
        registry.register(QUICK, mark)
        worker = running(sessionmaker, registry)
        worker.start()
        try:
            await schedule_now(sessionmaker, worker, SLOW, "slow")
            await outside.waited_by(1)
            await schedule_now(sessionmaker, worker, QUICK, "quick")
            # A timer due later than the slow one, falling due while it still waits, fires
            # too: the worker is not stuck behind the provider.
            await schedule_in(sessionmaker, QUICK, "later", 0.5)

            async def quick_ones_committed() -> bool:
                return await committed(sessionmaker) == ["later", "quick"]

            await eventually(quick_ones_committed, what="the quick timers committed")
            assert outside.waiting == {"slow"}, "the provider has not answered yet"
            outside.answer.set()

            async def all_committed() -> bool:
                return await committed(sessionmaker) == ["later", "quick", "slow"]

            await eventually(all_committed, what="the slow timer committed once answered")
        finally:
            outside.answer.set()
            await worker.stop()

    async def test_one_falling_due_while_another_waits_on_the_outside_is_fired_when_due(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        outside = Outside()
        registry = TimerRegistry()
        registry.register(SLOW, outside.handler, calls_out=True)
        worker = running(sessionmaker, registry)
        worker.start()
        try:
            await schedule_now(sessionmaker, worker, SLOW, "first")
            await outside.waited_by(1)
            await schedule_in(sessionmaker, SLOW, "second", 0.5)
            worker.poke()  # as the commit of a scheduling transaction does in the app
            # The free slots wait for the second timer's due time, not for the poll: the
            # timer the first slot holds is not taken for one due and held elsewhere.
            await outside.waited_by(2)
        finally:
            outside.answer.set()
            await worker.stop()

    async def test_timers_calling_out_wait_for_the_outside_side_by_side(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        outside = Outside()
        registry = TimerRegistry()
        registry.register(SLOW, outside.handler, calls_out=True)
        worker = running(sessionmaker, registry)
        worker.start()
        try:
            for n in range(CALLING_OUT_AT_ONCE + 1):
                await schedule_now(sessionmaker, worker, SLOW, str(n))
            await outside.waited_by(CALLING_OUT_AT_ONCE)
            assert len(outside.waiting) == CALLING_OUT_AT_ONCE, "one slot, one timer"
            outside.answer.set()

            async def all_committed() -> bool:
                return len(await committed(sessionmaker)) == CALLING_OUT_AT_ONCE + 1

            await eventually(all_committed, what="every timer committed once answered")
        finally:
            outside.answer.set()
            await worker.stop()

    @pytest.mark.parametrize(
        "cut_short_as",
        [None, ConnectionError("connection is closed"), RuntimeError("the client gave up")],
        ids=["cancelled", "as-a-lost-connection", "as-another-error"],
    )
    async def test_a_worker_stopped_while_a_timer_waits_on_the_outside_stops_and_leaves_it_due(
        self, sessionmaker: async_sessionmaker[AsyncSession], cut_short_as: Exception | None
    ) -> None:
        outside = Outside(cut_short_as=cut_short_as)
        registry = TimerRegistry()
        registry.register(SLOW, outside.handler, calls_out=True)
        worker = running(sessionmaker, registry)
        worker.start()
        await schedule_now(sessionmaker, worker, SLOW, "cut short")
        await outside.waited_by(1)
        # The cancel lands in the handler, which may turn it into an error of its own: the
        # slot stops all the same, and the timer is not counted as failed.
        try:
            await asyncio.wait_for(worker.stop(), 10)
        except TimeoutError:
            raise AssertionError("the worker's slot went on after the cancel") from None
        async with sessionmaker() as session:
            left = await timers.get(session, kind=SLOW, subject="cut short")
        assert left is not None
        assert (left.attempts, left.failed_at) == (0, None)
        assert await committed(sessionmaker) == []
        outside.answer.set()  # the provider answers: another worker fires it
        assert await running(sessionmaker, registry).run_due() == 1
        assert await committed(sessionmaker) == ["cut short"]

    async def test_a_loop_cut_short_outside_a_handler_as_another_error_stops(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        """A stop landing in the worker's own database calls (a claim, a commit) may come out
        as the driver's error on the connection it broke: the loop stops all the same."""
        worker = running(sessionmaker, TimerRegistry())
        entered = asyncio.Event()

        async def step() -> float:
            entered.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                raise ConnectionError("connection was closed in the middle of operation") from None
            return 0.0

        loop = asyncio.create_task(worker._keep_running(step, asyncio.Event()))
        await asyncio.wait_for(entered.wait(), 10)
        loop.cancel()
        done, _ = await asyncio.wait({loop}, timeout=10)
        assert done, "the loop went on after the cancel"
        assert loop.cancelled()

    async def test_a_stop_can_be_given_up_on_when_a_handler_will_not_stop(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        """Whoever stops a worker whose handler swallows the cancel may give up waiting (as
        a shutdown with a deadline does), not hang; a later stop cancels it again."""
        let_go, entered, refused = asyncio.Event(), asyncio.Event(), asyncio.Event()

        async def stubborn(session: AsyncSession, timer: Timer, now: datetime) -> None:
            entered.set()
            while not let_go.is_set():
                try:
                    await let_go.wait()
                except asyncio.CancelledError:
                    refused.set()  # and waits on

        registry = TimerRegistry()
        registry.register(SLOW, stubborn, calls_out=True)
        worker = running(sessionmaker, registry)
        worker.start()
        try:
            await schedule_now(sessionmaker, worker, SLOW, "stubborn")
            await asyncio.wait_for(entered.wait(), 10)
            stopping = asyncio.create_task(worker.stop())
            await asyncio.wait_for(refused.wait(), 10)
            stopping.cancel()
            done, _ = await asyncio.wait({stopping}, timeout=10)
            assert done, "giving up on the stop was refused: it waits on the handler"
            assert stopping.cancelled()
        finally:
            let_go.set()
            await asyncio.wait_for(worker.stop(), 10)  # cancelled again, at its next wait

    async def test_two_workers_fire_each_calling_out_timer_exactly_once(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        async with unit_of_work(sessionmaker) as session:
            now = await db_now(session)
            for n in range(30):
                await timers.schedule(session, kind=SLOW, subject=str(n), due_at=now)
        registry = TimerRegistry()
        registry.register(SLOW, mark, calls_out=True)
        a, b = running(sessionmaker, registry), running(sessionmaker, registry)
        while sum(await asyncio.gather(a.run_due(), b.run_due())):
            pass
        assert await committed(sessionmaker) == sorted(str(n) for n in range(30))

    async def test_a_failing_calling_out_timer_is_retried_and_parked_as_any_other(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        async def broken(session: AsyncSession, timer: Timer, now: datetime) -> None:
            raise RuntimeError("the provider answered nonsense")

        registry = TimerRegistry()
        registry.register(SLOW, broken, calls_out=True)
        worker = TimerWorker(
            sessionmaker, registry, poll_interval_s=30, batch_size=10, max_attempts=1
        )
        await schedule_in(sessionmaker, SLOW, "bad", 0)
        assert await worker.run_due() == 1
        async with sessionmaker() as session:
            timer = await timers.get(session, kind=SLOW, subject="bad")
            parked = await session.scalar(
                select(func.count()).select_from(Event).where(Event.type == "timer.failed")
            )
        assert timer is not None
        assert timer.failed_at is not None
        assert "the provider answered nonsense" in (timer.last_error or "")
        assert parked == 1

    def test_a_kind_registered_again_without_calling_out_is_claimed_with_the_others(
        self,
    ) -> None:
        registry = TimerRegistry()
        registry.register(SLOW, mark, calls_out=True)
        assert (registry.calling_out_kinds, registry.single_kinds) == ([SLOW], [])
        registry.register(SLOW, mark)
        assert (registry.calling_out_kinds, registry.single_kinds) == ([], [SLOW])
        registry.register(SLOW, mark, calls_out=True)
        registry.unregister(SLOW)
        assert (registry.calling_out_kinds, registry.kinds) == ([], [])


class TestSweepsWaitingOnTheOutside:
    async def test_a_sweep_waiting_on_the_outside_holds_up_no_timer(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        answer, asking = asyncio.Event(), asyncio.Event()

        async def asks_a_provider(session: AsyncSession, now: datetime) -> int:
            asking.set()
            await answer.wait()
            return 0

        registry = TimerRegistry()
        registry.register_sweep("test.asks", asks_a_provider, every_s=60)
        registry.register(QUICK, mark)
        worker = running(sessionmaker, registry)
        worker.start()
        try:
            await asyncio.wait_for(asking.wait(), 10)
            await schedule_now(sessionmaker, worker, QUICK, "quick")

            async def quick_committed() -> bool:
                return await committed(sessionmaker) == ["quick"]

            await eventually(quick_committed, what="the timer committed while the sweep waits")
            assert not answer.is_set()
        finally:
            answer.set()
            await worker.stop()

    async def test_a_sweep_waiting_on_the_outside_holds_up_no_other_sweep(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        answer, asking, other_ran = asyncio.Event(), asyncio.Event(), asyncio.Event()
        cut_short = asyncio.Event()
        asked = 0

        async def asks_a_provider(session: AsyncSession, now: datetime) -> int:
            nonlocal asked
            asked += 1
            asking.set()
            try:
                await answer.wait()
            except asyncio.CancelledError:
                cut_short.set()
                raise
            return 0

        async def another(session: AsyncSession, now: datetime) -> int:
            if asking.is_set():  # a turn that came while the first waits
                other_ran.set()
            return 0

        registry = TimerRegistry()
        # The waiting sweep falls due again while it waits: it is not started twice, and
        # the sweeps' loop waits for the other's next turn rather than spin.
        registry.register_sweep("test.asks", asks_a_provider, every_s=0.05)
        registry.register_sweep("test.another", another, every_s=0.05)
        worker = running(sessionmaker, registry)
        worker.start()
        try:
            await asyncio.wait_for(asking.wait(), 10)
            for _ in range(3):  # turn after turn
                other_ran.clear()
                await asyncio.wait_for(other_ran.wait(), 10)
            assert asked == 1, "the waiting sweep was started again"
            # Stopping the worker stops the sweep still waiting, too.
            await asyncio.wait_for(worker.stop(), 10)
            assert cut_short.is_set(), "the waiting sweep was left running"
        finally:
            answer.set()
            await worker.stop()


class TestWorkOutsideTheTransaction:
    """``then_outside``: a calling-out handler leaves its waiting for after its commit."""

    async def test_the_work_runs_after_the_commit_with_no_transaction_open(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        seen: dict[str, object] = {}

        async def work(maker: async_sessionmaker[AsyncSession]) -> None:
            async with maker() as session:  # another connection: it sees what was committed
                seen["committed"] = await fired(session)
                seen["open"] = await session.scalar(
                    select(func.count())
                    .select_from(text("pg_stat_activity"))
                    .where(
                        text("state LIKE 'idle in transaction%' AND datname = current_database()")
                    )
                )

        async def handler(session: AsyncSession, timer: Timer, now: datetime) -> None:
            await mark(session, timer, now)
            then_outside(session, work)

        registry = TimerRegistry()
        registry.register(SLOW, handler, calls_out=True)
        await schedule_in(sessionmaker, SLOW, "then", 0)
        assert await running(sessionmaker, registry).run_due() == 1
        assert seen["committed"] == ["then"], "the work ran before the firing committed"
        assert seen["open"] == 0, "a transaction stayed open while the work ran"

    async def test_a_handler_that_fails_leaves_no_work(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        ran: list[str] = []

        async def work(maker: async_sessionmaker[AsyncSession]) -> None:
            ran.append("work")

        async def handler(session: AsyncSession, timer: Timer, now: datetime) -> None:
            then_outside(session, work)
            raise RuntimeError("the handler failed after handing its work on")

        registry = TimerRegistry()
        registry.register(SLOW, handler, calls_out=True)
        await schedule_in(sessionmaker, SLOW, "failing", 0)
        assert await running(sessionmaker, registry).run_due() == 1
        assert ran == []
        async with sessionmaker() as session:
            timer = await timers.get(session, kind=SLOW, subject="failing")
        assert timer is not None
        assert timer.attempts == 1  # retried, as any failure

    async def test_only_a_calling_out_kind_may_hand_on_work(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        async def work(maker: async_sessionmaker[AsyncSession]) -> None:
            raise AssertionError("never run")

        async def handler(session: AsyncSession, timer: Timer, now: datetime) -> None:
            then_outside(session, work)

        registry = TimerRegistry()
        registry.register(QUICK, handler)
        await schedule_in(sessionmaker, QUICK, "claimed", 0)
        assert await running(sessionmaker, registry).run_due() == 1
        async with sessionmaker() as session:
            timer = await timers.get(session, kind=QUICK, subject="claimed")
        assert timer is not None
        assert "calls_out" in (timer.last_error or "")

    async def test_work_that_fails_is_logged_and_the_slot_goes_on(
        self, sessionmaker: async_sessionmaker[AsyncSession], caplog: pytest.LogCaptureFixture
    ) -> None:
        async def work(maker: async_sessionmaker[AsyncSession]) -> None:
            raise RuntimeError("the provider's answer made no sense")

        async def handler(session: AsyncSession, timer: Timer, now: datetime) -> None:
            await mark(session, timer, now)
            if timer.subject == "first":
                then_outside(session, work)

        registry = TimerRegistry()
        registry.register(SLOW, handler, calls_out=True)
        await schedule_in(sessionmaker, SLOW, "first", 0)
        await schedule_in(sessionmaker, SLOW, "second", 0)
        assert await running(sessionmaker, registry).run_due() == 2
        assert await committed(sessionmaker) == ["first", "second"]
        assert "the provider's answer made no sense" in caplog.text
