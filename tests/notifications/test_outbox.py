"""The outbox against a real database and a real (fake) gateway over HTTP: a notice exists
only if its change committed, is sent once, is retried with back-off after a failure worth
retrying, fails at once when refused, and is sent once however many senders run."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import unit_of_work
from app.notifications import outbox
from app.notifications.adapters import (
    HttpEmailSender,
    HttpSmsSender,
    NotificationSettings,
    Sender,
    SendFailed,
    SendResult,
)
from app.notifications.models import Channel, Notification, Status
from app.notifications.outbox import DeliveryPolicy, Enqueued
from app.timers.worker import TimerRegistry, TimerWorker
from tests.fixtures.net import true
from tests.fixtures.polling import eventually
from tests.notifications.provider import HANG, FakeGateway

T0 = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
POLICY = DeliveryPolicy(
    max_attempts=3,
    backoff=timedelta(seconds=30),
    backoff_max=timedelta(minutes=10),
    send_timeout=timedelta(seconds=5),
    batch_size=10,
)
# Long enough for any answer on a loaded machine; a hanging gateway costs a test this long.
HTTP_TIMEOUT_S = 2.0
PHONE = "+8613912345678"

Sessions = async_sessionmaker[AsyncSession]


def senders_for(gateway: FakeGateway) -> dict[Channel, Sender]:
    key = SecretStr("gateway-key")
    return {
        Channel.sms: HttpSmsSender(f"{gateway.url}/sms", key, timeout_s=HTTP_TIMEOUT_S),
        Channel.email: HttpEmailSender(f"{gateway.url}/email", key, timeout_s=HTTP_TIMEOUT_S),
    }


async def enqueue(session: AsyncSession, **overrides: Any) -> Enqueued:
    values: dict[str, Any] = {
        "channel": Channel.sms,
        "recipient": PHONE,
        "kind": "complaint.resolved",
        "body": "您的投诉 C-20261202-000001 已处理完毕。",
        "language": "zh",
        "subject_type": "complaint",
        "subject_id": 1,
        "now": T0,
    }
    values.update(overrides)
    return await outbox.enqueue(session, **values)


async def notice(sessionmaker: Sessions, **overrides: Any) -> Enqueued:
    async with unit_of_work(sessionmaker) as session:
        return await enqueue(session, **overrides)


async def deliver(
    sessionmaker: Sessions,
    gateway: FakeGateway,
    now: datetime,
    policy: DeliveryPolicy = POLICY,
) -> int:
    async with unit_of_work(sessionmaker) as session:
        return await outbox.deliver_due(
            session, senders=senders_for(gateway), policy=policy, now=now
        )


async def row(sessionmaker: Sessions, notification_id: int) -> Notification:
    async with sessionmaker() as session:
        found = await session.get(Notification, notification_id)
    assert found is not None
    return found


async def all_rows(sessionmaker: Sessions) -> list[Notification]:
    async with sessionmaker() as session:
        return list((await session.scalars(select(Notification))).all())


class TestEnqueue:
    async def test_notice_of_a_rolled_back_change_is_never_sent(
        self, sessionmaker: Sessions, gateway: FakeGateway
    ) -> None:
        async def change_that_fails() -> None:
            async with unit_of_work(sessionmaker) as session:
                await enqueue(session)
                raise RuntimeError("the change failed")

        with pytest.raises(RuntimeError, match="the change failed"):
            await change_that_fails()

        assert await deliver(sessionmaker, gateway, T0 + timedelta(days=1)) == 0
        assert gateway.requests == []
        assert await all_rows(sessionmaker) == []

    async def test_the_same_notice_enqueued_twice_is_one_message(
        self, sessionmaker: Sessions, gateway: FakeGateway
    ) -> None:
        first = await notice(sessionmaker, dedupe_key="outcome")
        again = await notice(sessionmaker, dedupe_key="outcome", body="a second wording")
        other = await notice(sessionmaker, dedupe_key="outcome-after-review")

        assert (first.created, again.created, other.created) == (True, False, True)
        assert again.id == first.id
        assert await deliver(sessionmaker, gateway, T0) == 2
        assert sorted(gateway.references()) == sorted([str(first.id), str(other.id)])
        assert (await row(sessionmaker, first.id)).body == "您的投诉 C-20261202-000001 已处理完毕。"

    async def test_notices_are_listed_by_what_they_are_about(self, sessionmaker: Sessions) -> None:
        first = await notice(sessionmaker, kind="complaint.linked")
        second = await notice(sessionmaker, kind="complaint.resolved")
        await notice(sessionmaker, subject_id=2)

        async with sessionmaker() as session:
            listed = await outbox.list_for(session, subject_type="complaint", subject_id=1)
        assert [n.id for n in listed] == [first.id, second.id]


class TestDelivery:
    async def test_committed_notice_is_sent_once_and_the_provider_id_recorded(
        self, sessionmaker: Sessions, gateway: FakeGateway
    ) -> None:
        queued = await notice(sessionmaker)

        assert await deliver(sessionmaker, gateway, T0) == 1
        assert await deliver(sessionmaker, gateway, T0 + timedelta(days=1)) == 0

        [request] = gateway.requests
        assert request.path == "/sms"
        assert request.body["to"] == PHONE
        assert request.body["reference"] == str(queued.id)
        assert request.headers["idempotency-key"] == f"notification-{queued.id}"
        assert request.headers["authorization"] == "Bearer gateway-key"
        sent = await row(sessionmaker, queued.id)
        assert (sent.status, sent.attempts, sent.provider_message_id) == ("sent", 1, "gw-1")
        assert (sent.sent_at, sent.next_attempt_at, sent.last_error) == (T0, None, None)

    async def test_email_goes_to_the_email_provider_with_its_subject(
        self, sessionmaker: Sessions, gateway: FakeGateway
    ) -> None:
        await notice(
            sessionmaker, channel=Channel.email, recipient="li.hua@example.com", subject="结果"
        )

        assert await deliver(sessionmaker, gateway, T0) == 1
        [request] = gateway.requests
        assert (request.path, request.body["subject"]) == ("/email", "结果")

    async def test_notice_due_later_waits_for_its_time(
        self, sessionmaker: Sessions, gateway: FakeGateway
    ) -> None:
        await notice(sessionmaker, now=T0 + timedelta(minutes=5))

        assert await deliver(sessionmaker, gateway, T0) == 0
        assert await deliver(sessionmaker, gateway, T0 + timedelta(minutes=5)) == 1

    async def test_provider_failures_are_retried_with_back_off_then_sent(
        self, sessionmaker: Sessions, gateway: FakeGateway
    ) -> None:
        queued = await notice(sessionmaker)
        gateway.fail_next(500, HANG)

        assert await deliver(sessionmaker, gateway, T0) == 1
        after_500 = await row(sessionmaker, queued.id)
        assert (after_500.status, after_500.last_error) == ("queued", "HTTP 500")
        assert after_500.next_attempt_at == T0 + timedelta(seconds=30)

        assert await deliver(sessionmaker, gateway, T0 + timedelta(seconds=29)) == 0
        second_try = T0 + timedelta(seconds=30)
        assert await deliver(sessionmaker, gateway, second_try) == 1
        after_hang = await row(sessionmaker, queued.id)
        assert (after_hang.status, after_hang.last_error) == ("queued", "ReadTimeout")
        assert after_hang.next_attempt_at == second_try + timedelta(seconds=60)

        assert await deliver(sessionmaker, gateway, second_try + timedelta(seconds=60)) == 1
        sent = await row(sessionmaker, queued.id)
        assert (sent.status, sent.attempts, sent.provider_message_id) == ("sent", 3, "gw-1")
        assert gateway.references() == [str(queued.id)] * 3

    async def test_refused_message_fails_without_retry(
        self, sessionmaker: Sessions, gateway: FakeGateway
    ) -> None:
        queued = await notice(sessionmaker)
        gateway.fail_next(400)

        assert await deliver(sessionmaker, gateway, T0) == 1
        assert await deliver(sessionmaker, gateway, T0 + timedelta(days=1)) == 0

        failed = await row(sessionmaker, queued.id)
        assert (failed.status, failed.last_error, failed.next_attempt_at) == (
            "failed",
            "HTTP 400",
            None,
        )
        assert len(gateway.requests) == 1

    async def test_message_is_dead_when_its_attempts_run_out(
        self, sessionmaker: Sessions, gateway: FakeGateway
    ) -> None:
        queued = await notice(sessionmaker)
        gateway.fail_next(503, 503, 503, 503)
        now = T0
        for _ in range(POLICY.max_attempts):
            assert await deliver(sessionmaker, gateway, now) == 1
            now = now + POLICY.backoff_max
        dead = await row(sessionmaker, queued.id)

        assert await deliver(sessionmaker, gateway, now + timedelta(days=1)) == 0
        assert (dead.status, dead.attempts, dead.last_error) == ("dead", 3, "HTTP 503")
        assert len(gateway.requests) == POLICY.max_attempts


class TestSendersThatStop:
    async def test_claim_of_a_sender_that_died_is_sent_again_after_its_lease(
        self, sessionmaker: Sessions, gateway: FakeGateway
    ) -> None:
        queued = await notice(sessionmaker)
        async with unit_of_work(sessionmaker) as session:  # claimed, then the sender died
            await outbox.claim_due(session, policy=POLICY, now=T0)

        lease_over = T0 + POLICY.lease
        assert await deliver(sessionmaker, gateway, lease_over - timedelta(seconds=1)) == 0
        assert await deliver(sessionmaker, gateway, lease_over) == 1

        sent = await row(sessionmaker, queued.id)
        assert (sent.status, sent.attempts, sent.provider_message_id) == ("sent", 2, "gw-1")
        assert gateway.references() == [str(queued.id)]

    async def test_late_outcome_of_a_lapsed_claim_leaves_the_new_claim_alone(
        self, sessionmaker: Sessions
    ) -> None:
        queued = await notice(sessionmaker)
        async with unit_of_work(sessionmaker) as session:
            [late] = await outbox.claim_due(session, policy=POLICY, now=T0)
        lease_over = T0 + POLICY.lease
        async with unit_of_work(sessionmaker) as session:
            [current] = await outbox.claim_due(session, policy=POLICY, now=lease_over)

        async with unit_of_work(sessionmaker) as session:
            refused = SendFailed("HTTP 400", retryable=False)
            kept_late = await outbox.record_outcome(
                session, claim=late, outcome=refused, policy=POLICY, now=lease_over
            )
        still_sending = await row(sessionmaker, queued.id)
        async with unit_of_work(sessionmaker) as session:
            kept_current = await outbox.record_outcome(
                session, claim=current, outcome=SendResult("gw-9"), policy=POLICY, now=lease_over
            )

        assert (kept_late, kept_current) == (False, True)
        assert (still_sending.status, still_sending.attempts) == ("sending", 2)
        sent = await row(sessionmaker, queued.id)
        assert (sent.status, sent.provider_message_id) == ("sent", "gw-9")

    async def test_claim_is_committed_before_sending_so_no_row_stays_locked_meanwhile(
        self, sessionmaker: Sessions, gateway: FakeGateway
    ) -> None:
        queued = await notice(sessionmaker)
        gateway.fail_next(HANG)
        patient = {Channel.sms: HttpSmsSender(f"{gateway.url}/sms", None, timeout_s=4)}

        async def run() -> int:
            async with unit_of_work(sessionmaker) as session:
                return await outbox.deliver_due(session, senders=patient, policy=POLICY, now=T0)

        delivering = asyncio.create_task(run())
        try:
            await eventually(lambda: true(bool(gateway.requests)), what="the send to arrive")
            async with sessionmaker() as session:  # NOWAIT: raises if the row were locked
                seen = await session.scalar(
                    select(Notification.status)
                    .where(Notification.id == queued.id)
                    .with_for_update(nowait=True)
                )
                await session.rollback()
        finally:
            gateway.release.set()
            claimed = await delivering

        assert (seen, claimed) == ("sending", 1)
        after = await row(sessionmaker, queued.id)
        assert (after.status, after.last_error) == ("queued", "HTTP 504")

    async def test_claim_lapsed_on_the_last_attempt_is_dead_not_sent_again(
        self, sessionmaker: Sessions, gateway: FakeGateway
    ) -> None:
        once = DeliveryPolicy(max_attempts=1, send_timeout=POLICY.send_timeout)
        queued = await notice(sessionmaker)
        async with unit_of_work(sessionmaker) as session:
            await outbox.claim_due(session, policy=once, now=T0)

        assert await deliver(sessionmaker, gateway, T0 + once.lease, once) == 0
        dead = await row(sessionmaker, queued.id)
        assert (dead.status, dead.next_attempt_at) == ("dead", None)
        assert dead.last_error == "the last send's outcome was never recorded"
        assert gateway.requests == []


class TestSeveralSenders:
    async def test_concurrent_claims_skip_each_others_rows_without_waiting(
        self, sessionmaker: Sessions
    ) -> None:
        for subject in range(10):
            await notice(sessionmaker, subject_id=subject)
        half = DeliveryPolicy(batch_size=5)

        async with sessionmaker() as first, sessionmaker() as second:
            mine = await outbox.claim_due(first, policy=half, now=T0)
            async with asyncio.timeout(5):  # a claim that waited for the first would hang
                theirs = await outbox.claim_due(second, policy=half, now=T0)
            await first.commit()
            await second.commit()

        claimed = [c.message.reference for c in mine + theirs]
        assert len(mine) == len(theirs) == 5
        assert len(set(claimed)) == 10

    async def test_two_senders_send_each_message_exactly_once(
        self, sessionmaker: Sessions, gateway: FakeGateway
    ) -> None:
        ids = [(await notice(sessionmaker, subject_id=s)).id for s in range(40)]
        small = DeliveryPolicy(batch_size=4, send_timeout=POLICY.send_timeout)

        async def drain() -> int:
            claimed = 0
            while batch := await deliver(sessionmaker, gateway, T0, small):
                claimed += batch
            return claimed

        counts = await asyncio.gather(drain(), drain())

        assert sum(counts) == 40
        assert sorted(gateway.references()) == sorted(str(i) for i in ids)
        rows = await all_rows(sessionmaker)
        assert {(r.status, r.attempts) for r in rows} == {(Status.sent.value, 1)}


class TestSweep:
    async def test_the_timer_workers_sweep_delivers_through_the_configured_gateway(
        self, sessionmaker: Sessions, gateway: FakeGateway
    ) -> None:
        registry = TimerRegistry()
        outbox.register(
            registry,
            NotificationSettings(sms_url=f"{gateway.url}/sms", sms_api_key=SecretStr("k")),
        )
        worker = TimerWorker(
            sessionmaker, registry, poll_interval_s=0.05, batch_size=10, max_attempts=3
        )
        async with unit_of_work(sessionmaker) as session:
            queued = await enqueue(session, now=None)  # due at the database's now

        done = await worker.run_sweeps()

        assert done == {outbox.DELIVERY_SWEEP: 1}
        assert gateway.references() == [str(queued.id)]
        sent = await row(sessionmaker, queued.id)
        assert (sent.status, sent.provider_message_id) == ("sent", "gw-1")
