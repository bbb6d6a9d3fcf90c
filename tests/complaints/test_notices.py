"""What the customer is told about their complaint: the texts as a table (no database), then
end to end over the API, with the app's own outbox sweep sending through a fake gateway on
a real HTTP port: a notice per registration, link and told move, with the facts meant for
the customer and nothing internal, once per step however often it is retried, and its
delivery state on ``GET /complaints/{id}/notifications``."""

# The Chinese texts are written with the full-width punctuation Chinese uses.
# ruff: noqa: RUF001

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace
from typing import Any, cast

import pytest
from fastapi import FastAPI, Request

from app.complaints import notices, service
from app.complaints.lifecycle import ComplaintEvent, ReviewOutcome
from app.complaints.models import Channel as ComplaintChannel
from app.complaints.notice_texts import (
    FREE_TEXT_LIMIT,
    NOTICE_OF_MOVE,
    TEMPLATES,
    Language,
    NoticeFacts,
    NoticeKind,
    Recipient,
    Via,
    channel_name,
    language_for,
    placeholders,
    recipient_of,
    render,
)
from app.complaints.router import complaint_desk
from app.config import Settings
from app.db import unit_of_work
from app.main import create_app
from tests.complaints.test_registration import (
    COMPLAINTS,
    START,
    Clock,
    clock,
    complaint_body,
    register,
)
from tests.complaints.test_transitions import RESOLUTION, approved, move
from tests.conftest import make_settings
from tests.fixtures.desk_clock import freeze_desk
from tests.fixtures.factories import Api, expect
from tests.fixtures.polling import eventually
from tests.notifications.provider import FakeGateway, serving

__all__ = ["clock"]  # a fixture shared with the registration tests

REFERENCE = "C-20261202-000042"
DUE = datetime(2026, 12, 4, 17, 30, tzinfo=UTC)  # 5 December, 01:30 in Shanghai
FULL = NoticeFacts(
    REFERENCE,
    due_at=DUE,
    reason="需要第三方机构出具鉴定意见",
    days=2,
    resolution="重复扣款已退回原卡",
    remedy="退款并致歉",
    compensation=Decimal("1250.5"),
    outcome=ReviewOutcome.revised,
    channel="web",
)
KNOWN_FACTS = {
    "reference",
    "due",
    "reason",
    "days",
    "resolution",
    "remedy",
    "compensation",
    "outcome",
    "channel",
}
PHONE = "+8613800138000"

# --- the texts, as a table ---------------------------------------------------------------------

CASES = list(itertools.product(NoticeKind, Language))


class TestTemplates:
    def test_every_notice_has_a_text_in_every_language(self) -> None:
        assert set(TEMPLATES) == set(CASES)

    @pytest.mark.parametrize(("kind", "language"), CASES)
    def test_every_placeholder_is_a_fact_meant_for_the_customer(
        self, kind: NoticeKind, language: Language
    ) -> None:
        template = TEMPLATES[kind, language]
        for text in (template.subject, *template.lines):
            assert placeholders(text) <= KNOWN_FACTS, text

    @pytest.mark.parametrize(("kind", "language"), CASES)
    def test_the_subject_and_first_line_name_the_complaint_and_only_it(
        self, kind: NoticeKind, language: Language
    ) -> None:
        template = TEMPLATES[kind, language]
        assert placeholders(template.subject) == {"reference"}
        assert placeholders(template.lines[0]) == {"reference"}

    @pytest.mark.parametrize(("kind", "language"), CASES)
    def test_with_every_fact_known_every_line_is_filled(
        self, kind: NoticeKind, language: Language
    ) -> None:
        rendered = render(kind, language, FULL)
        assert REFERENCE in rendered.subject
        assert len(rendered.body.splitlines()) == len(TEMPLATES[kind, language].lines)
        assert "{" not in rendered.body + rendered.subject
        assert "}" not in rendered.body + rendered.subject
        assert "None" not in rendered.body

    @pytest.mark.parametrize(("kind", "language"), CASES)
    def test_with_only_the_reference_the_lines_of_unknown_facts_are_left_out(
        self, kind: NoticeKind, language: Language
    ) -> None:
        rendered = render(kind, language, NoticeFacts(REFERENCE))
        kept = [
            line for line in TEMPLATES[kind, language].lines if placeholders(line) <= {"reference"}
        ]
        assert rendered.body.splitlines() == [line.format(reference=REFERENCE) for line in kept]


class TestValues:
    @pytest.mark.parametrize(
        ("language", "shown"),
        [
            (Language.zh, "我们将于2026年12月5日 01:30（北京时间）前答复您。"),
            (Language.en, "We will reply by 2026-12-05 01:30 (Beijing time, UTC+8)."),
        ],
    )
    def test_a_due_time_is_shown_in_the_centres_zone(self, language: Language, shown: str) -> None:
        assert shown in render(NoticeKind.registered, language, FULL).body.splitlines()

    @pytest.mark.parametrize(
        ("amount", "language", "shown"),
        [
            ("1250.5", Language.zh, "补偿金额：人民币1,250.50元"),
            ("1250.5", Language.en, "Compensation: CNY 1,250.50"),
            ("0.1", Language.en, "Compensation: CNY 0.10"),
            ("1234567.891", Language.zh, "补偿金额：人民币1,234,567.89元"),
        ],
    )
    def test_an_amount_is_shown_plainly(self, amount: str, language: Language, shown: str) -> None:
        facts = NoticeFacts(REFERENCE, compensation=Decimal(amount))
        assert shown in render(NoticeKind.resolved, language, facts).body.splitlines()

    @pytest.mark.parametrize("amount", [None, Decimal("0"), Decimal("0.00")])
    @pytest.mark.parametrize("language", list(Language))
    def test_no_compensation_is_not_mentioned(
        self, amount: Decimal | None, language: Language
    ) -> None:
        body = render(NoticeKind.resolved, language, NoticeFacts(REFERENCE, compensation=amount))
        assert "补偿" not in body.body
        assert "Compensation" not in body.body

    @pytest.mark.parametrize(
        ("days", "language", "shown"),
        [
            (1, Language.en, "Extended by: 1 day."),
            (3, Language.en, "Extended by: 3 days."),
            (3, Language.zh, "延长时间：3天。"),
        ],
    )
    def test_extension_days_are_counted(self, days: int, language: Language, shown: str) -> None:
        body = render(NoticeKind.extended, language, NoticeFacts(REFERENCE, days=days)).body
        assert shown in body.splitlines()

    def test_free_text_is_cut_at_the_limit(self) -> None:
        facts = NoticeFacts(REFERENCE, reason="  " + "长" * (FREE_TEXT_LIMIT + 50) + "  ")
        [line] = [
            x
            for x in render(NoticeKind.rejected, Language.zh, facts).body.splitlines()
            if "原因" in x
        ]
        shown = line.removeprefix("原因：")
        assert len(shown) == FREE_TEXT_LIMIT
        assert shown.endswith("…")

    @pytest.mark.parametrize("language", list(Language))
    def test_each_review_outcome_is_told_in_its_own_words(self, language: Language) -> None:
        bodies = {
            outcome: render(
                NoticeKind.review_concluded, language, NoticeFacts(REFERENCE, outcome=outcome)
            ).body
            for outcome in ReviewOutcome
        }
        assert len(set(bodies.values())) == len(ReviewOutcome)
        assert all(len(body.splitlines()) == 2 for body in bodies.values())

    @pytest.mark.parametrize(
        ("channel", "language"), list(itertools.product(ComplaintChannel, Language))
    )
    def test_every_channel_has_a_name_in_every_language(
        self, channel: ComplaintChannel, language: Language
    ) -> None:
        assert channel_name(channel.value, language) != channel_name("pigeon", language)


class TestWhoIsToldWhat:
    def test_only_the_moves_that_concern_the_customer_are_told(self) -> None:
        assert set(NOTICE_OF_MOVE) == {
            ComplaintEvent.REJECT,
            ComplaintEvent.EXTEND,
            ComplaintEvent.RESOLVE,
            ComplaintEvent.CLOSE,
            ComplaintEvent.REOPEN,
            ComplaintEvent.REQUEST_REVIEW,
            ComplaintEvent.CONCLUDE_REVIEW,
            ComplaintEvent.WITHDRAW,
        }

    @pytest.mark.parametrize(
        ("contact", "expected"),
        [
            ("+8613800138000", Recipient(Via.sms, "+8613800138000")),
            ("138 0013 8000", Recipient(Via.sms, "+8613800138000")),
            ("+1 650 253 0000", Recipient(Via.sms, "+16502530000")),  # US: mobile or fixed
            ("wang.fang@example.com", Recipient(Via.email, "wang.fang@example.com")),
            (" li@example.cn ", Recipient(Via.email, "li@example.cn")),
            ("010-6552-8888", None),  # a landline takes no SMS
            ("+44 20 7946 0000", None),
            ("95561", None),  # a service number
            ("12345678901", None),
            ("上海市浦东新区世纪大道100号", None),
            ("li@example", None),
            ("li@@example.com", None),
            ("li fang@example.com", None),
            ("", None),
        ],
    )
    def test_a_notice_goes_to_an_email_address_or_a_mobile_number(
        self, contact: str, expected: Recipient | None
    ) -> None:
        assert recipient_of(contact) == expected

    @pytest.mark.parametrize(
        ("customer_language", "contact", "expected"),
        [
            ("en", PHONE, Language.en),
            ("zh-CN", "li@example.com", Language.zh),
            ("zh-Hant-TW", "li@example.com", Language.zh),
            ("yue-HK", "+85291234567", Language.zh),
            ("fr", PHONE, Language.en),
            (None, PHONE, Language.zh),
            (None, "+16502530000", Language.en),
            (None, "li@example.com", Language.en),
        ],
    )
    def test_the_language_is_the_customers_else_chinese_for_a_chinese_number(
        self, customer_language: str | None, contact: str, expected: Language
    ) -> None:
        assert language_for(customer_language, recipient_of(contact)) is expected


# --- end to end ----------------------------------------------------------------------------------


@pytest.fixture
async def gateway() -> AsyncIterator[FakeGateway]:
    async with serving() as running:
        yield running


@pytest.fixture
async def app(
    settings: Settings, clock: Clock, gateway: FakeGateway, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[FastAPI]:
    """The app whose own outbox sweep sends through the fake gateway, with the desk's clock."""
    monkeypatch.setenv("HOTLINE_SMS_URL", f"{gateway.url}/sms")
    monkeypatch.setenv("HOTLINE_EMAIL_URL", f"{gateway.url}/email")
    monkeypatch.setenv("HOTLINE_NOTIFICATION_SWEEP_S", "0.05")
    application = create_app(settings)
    freeze_desk(application, clock)
    async with application.router.lifespan_context(application):
        yield application


async def notifications(api: Api, complaint_id: int, **params: Any) -> dict[str, Any]:
    url = f"{COMPLAINTS}/{complaint_id}/notifications"
    return expect(await api.get(url, params=params), 200)  # type: ignore[no-any-return]


async def told(api: Api, complaint_id: int) -> list[dict[str, Any]]:
    return (await notifications(api, complaint_id))["items"]  # type: ignore[no-any-return]


async def started(api: Api, **overrides: Any) -> tuple[int, dict[str, Any]]:
    """A complaint assigned to a fresh agent and started; its id and the agent."""
    agent = await api.agent()
    done = await register(api, complaint_body(**overrides))
    await move(api, done["id"], "assign", {"assignee": agent["id"]})
    await move(api, done["id"], "start")
    return done["id"], agent


def of_kind(items: list[dict[str, Any]], kind: NoticeKind) -> list[dict[str, Any]]:
    return [n for n in items if n["kind"] == kind.value]


class TestRegistration:
    async def test_a_registration_queues_the_reference_and_the_due_time(self, api: Api) -> None:
        done = await register(api, complaint_body())
        [notice] = await told(api, done["id"])
        assert (notice["kind"], notice["channel"], notice["recipient"]) == (
            "complaint.registered",
            "sms",
            PHONE,
        )
        assert (notice["language"], notice["subject"]) == ("zh-CN", None)
        assert done["reference"] in notice["body"]
        assert "2026年12月5日 01:30（北京时间）" in notice["body"]  # START + 3 days

    async def test_a_retried_registration_queues_nothing_twice(self, api: Api) -> None:
        key = {"Idempotency-Key": "notices-retry-1"}
        first = await register(api, complaint_body(), headers=key)
        again = await register(api, complaint_body(), headers=key)
        assert again["id"] == first["id"]
        assert len(await told(api, first["id"])) == 1

    async def test_the_same_matter_from_another_channel_is_told_the_existing_reference(
        self, api: Api
    ) -> None:
        customer = await api.customer(language="en")
        first = await register(api, complaint_body(customer={"id": customer["id"]}))
        contact = {"name": "王芳", "contact": "wang.fang@example.com", "relation": "self"}
        body = complaint_body(channel="web", customer={"id": customer["id"]}, complainant=contact)
        linked = await register(api, body, 200)
        assert (linked["linked"], linked["reference"]) == (True, first["reference"])

        items = await told(api, first["id"])
        assert [n["kind"] for n in items] == ["complaint.registered", "complaint.linked"]
        # the customer's language, though the first registration gave a +86 number
        assert (items[0]["recipient"], items[0]["language"]) == (PHONE, "en")
        [notice] = of_kind(items, NoticeKind.linked)
        assert (notice["channel"], notice["recipient"], notice["language"]) == (
            "email",
            "wang.fang@example.com",
            "en",
        )
        assert first["reference"] in notice["subject"]
        assert first["reference"] in notice["body"]
        assert "through our website" in notice["body"]

    async def test_a_contact_nothing_can_be_sent_to_queues_nothing_and_fails_nothing(
        self, api: Api
    ) -> None:
        landline = {"name": "王芳", "contact": "010-6552-8888", "relation": "self"}
        done = await register(api, complaint_body(complainant=landline))
        await move(api, done["id"], "reject", {"reason": "不属于投诉"})
        page = await notifications(api, done["id"])
        assert (page["items"], page["reachable_by"]) == ([], None)


class TestTheServicesPhoneRegion:
    """A number written without its country code is read in the service's region, as the
    registration and the status lookup read it: a Hong Kong service's complainant who gives
    "9123 4567" is told by SMS at +852 9123 4567."""

    @pytest.fixture
    def settings(self, db: str) -> Settings:
        return make_settings(db, default_phone_region="HK")

    async def test_the_app_builds_its_desk_once_in_the_region_for_every_reader(
        self, settings: Settings
    ) -> None:
        app = create_app(settings)
        desk = app.state.complaint_desk
        assert desk.phone_region == "HK"
        request = cast(Request, SimpleNamespace(app=app))
        assert await complaint_desk(request) is desk
        assert await complaint_desk(request) is desk

    async def test_a_national_number_of_the_region_is_told_of_registration_and_moves(
        self, api: Api
    ) -> None:
        local = {"name": "陳大文", "contact": "9123 4567", "relation": "self"}
        done = await register(api, complaint_body(complainant=local))
        await move(api, done["id"], "reject", {"reason": "不属于投诉"})

        page = await notifications(api, done["id"])
        assert page["reachable_by"] == "sms"
        assert [(n["kind"], n["channel"], n["recipient"]) for n in page["items"]] == [
            ("complaint.registered", "sms", "+85291234567"),
            ("complaint.rejected", "sms", "+85291234567"),
        ]


class TestMoves:
    async def test_a_rejection_tells_the_reason(self, api: Api) -> None:
        done = await register(api, complaint_body())
        await move(api, done["id"], "reject", {"reason": "属于咨询而非投诉，已转咨询渠道"})
        [notice] = of_kind(await told(api, done["id"]), NoticeKind.rejected)
        assert "原因：属于咨询而非投诉，已转咨询渠道" in notice["body"].splitlines()

    async def test_each_extension_tells_its_reason_and_the_new_due_time(self, api: Api) -> None:
        cid, _ = await started(api)
        for reason, days in (("需要外部鉴定", 2), ("鉴定延期", 1)):
            given = await approved(api, cid, {"kind": "extension", "days": days})
            facts = {"reason": reason, "approval": given["id"], "days": days}
            await move(api, cid, "extend", facts)
        first, second = of_kind(await told(api, cid), NoticeKind.extended)
        assert "延长原因：需要外部鉴定" in first["body"]
        assert "2026年12月7日 01:30" in first["body"]  # START + 3 + 2 days
        assert "延长原因：鉴定延期" in second["body"]
        assert "2026年12月8日 01:30" in second["body"]

    async def test_a_resolution_tells_the_outcome_and_nothing_internal(self, api: Api) -> None:
        cid, agent = await started(api)
        internal = "内部备注：客户情绪激动，勿再外呼"
        expect(await api.post(f"{COMPLAINTS}/{cid}/notes", {"text": internal}), 201)
        facts = {**RESOLUTION, "responsible_unit": "信用卡中心清算部"}
        await move(api, cid, "resolve", facts)
        [notice] = of_kind(await told(api, cid), NoticeKind.resolved)
        lines = notice["body"].splitlines()
        assert "处理结果：重复扣款已退回" in lines
        assert "补救措施：退款并致歉" in lines
        assert "补偿金额：人民币50.00元" in lines
        for secret in (
            RESOLUTION["root_cause"],
            RESOLUTION["corrective_action"],
            "信用卡中心清算部",
            internal,
            agent["name"],
            agent["username"],
        ):
            assert secret not in notice["body"]

    async def test_closure_reopening_and_review_are_each_told(self, api: Api, clock: Clock) -> None:
        cid, _ = await started(api)
        await move(api, cid, "resolve", RESOLUTION)
        await move(api, cid, "reopen", {"reason": "客户来电称款项未到账"})
        await move(api, cid, "resolve", RESOLUTION)
        await move(api, cid, "close")
        clock.advance(timedelta(days=1))
        await move(api, cid, "request_review", {"reason": "对处理结果有异议"})
        await move(api, cid, "conclude_review", {"outcome": "upheld", "reason": "款项已于当日退回"})
        items = await told(api, cid)
        assert [n["kind"] for n in items] == [
            "complaint.registered",
            "complaint.resolved",
            "complaint.reopened",
            "complaint.resolved",
            "complaint.closed",
            "complaint.review_requested",
            "complaint.review_concluded",
        ]
        assert "客户来电" not in items[2]["body"]  # a reopen's reason is the desk's
        assert "2026年12月6日 01:30" in items[5]["body"]  # the review's own three days
        assert "复核结论：维持原处理决定。" in items[6]["body"].splitlines()
        assert "说明：款项已于当日退回" in items[6]["body"].splitlines()

    async def test_a_refused_repeat_of_a_move_queues_nothing(self, api: Api) -> None:
        cid, _ = await started(api)
        await move(api, cid, "resolve", RESOLUTION)
        before = [(n["id"], n["kind"]) for n in await told(api, cid)]
        await move(api, cid, "resolve", RESOLUTION, status=409)
        assert [(n["id"], n["kind"]) for n in await told(api, cid)] == before
        assert [kind for _, kind in before] == ["complaint.registered", "complaint.resolved"]

    async def test_moves_the_customer_is_not_told_of_queue_nothing(self, api: Api) -> None:
        cid, _ = await started(api)
        await move(api, cid, "classify", {"categories": ["payment"], "severity": "high"})
        await move(api, cid, "pause", {"reason": "waiting_for_customer"})
        await move(api, cid, "resume")
        assert [n["kind"] for n in await told(api, cid)] == ["complaint.registered"]

    async def test_the_hook_run_twice_for_one_step_queues_one_message(
        self, api: Api, app: FastAPI
    ) -> None:
        done = await register(api, complaint_body())
        await move(api, done["id"], "reject", {"reason": "不属于投诉"})
        async with unit_of_work(app.state.sessionmaker) as session:
            complaint = await service.get_or_raise(session, done["id"], for_update=True)
            given = {"reason": "不属于投诉"}
            await notices.after_move(
                session, complaint, ComplaintEvent.REJECT, given, START, region="CN"
            )
        assert len(of_kind(await told(api, done["id"]), NoticeKind.rejected)) == 1


class TestDelivery:
    async def test_the_outbox_sweep_sends_it_and_the_route_shows_it_sent(
        self, api: Api, gateway: FakeGateway
    ) -> None:
        done = await register(api, complaint_body())

        async def sent() -> dict[str, Any] | None:
            [notice] = await told(api, done["id"])
            return notice if notice["status"] == "sent" else None

        notice = await eventually(sent, what="the registration notice to be sent")
        assert (notice["attempts"], notice["last_error"]) == (1, None)
        assert notice["sent_at"] is not None
        [request] = [r for r in gateway.requests if r.body["reference"] == str(notice["id"])]
        assert (request.path, request.body["to"]) == ("/sms", PHONE)
        assert request.body["text"] == notice["body"]
        assert request.headers["idempotency-key"] == f"notification-{notice['id']}"

    async def test_a_refused_message_shows_failed_with_its_error(
        self, api: Api, gateway: FakeGateway
    ) -> None:
        gateway.fail_next(400)
        done = await register(api, complaint_body())

        async def settled() -> dict[str, Any] | None:
            [notice] = await told(api, done["id"])
            return notice if notice["status"] == "failed" else None

        notice = await eventually(settled, what="the refused notice to be marked failed")
        assert (notice["attempts"], notice["last_error"], notice["sent_at"]) == (
            1,
            "HTTP 400",
            None,
        )


class TestTheRoute:
    async def test_an_agent_sees_personal_numbers_masked_a_supervisor_in_full(
        self, api: Api
    ) -> None:
        agent_row = await api.agent(site="shanghai")
        agent = await api.signed_in_as(agent_row)
        done = await register(agent, complaint_body())
        await move(api, done["id"], "assign", {"assignee": agent_row["id"]})
        await move(api, done["id"], "reject", {"reason": "请致电 13912345678 咨询理财业务"})
        registered, rejected = await told(agent, done["id"])
        assert registered["recipient"] == rejected["recipient"] == "+86138****8000"
        assert done["reference"] in rejected["body"]
        assert "原因：请致电 139****5678 咨询理财业务" in rejected["body"].splitlines()
        boss = await api.signed_in_as(await api.supervisor(site="shanghai"))
        _, full = await told(boss, done["id"])
        assert full["recipient"] == PHONE
        assert "原因：请致电 13912345678 咨询理财业务" in full["body"].splitlines()

    async def test_a_complaint_the_caller_may_not_read_is_a_404(self, api: Api) -> None:
        done = await register(api, complaint_body())
        stranger = await api.signed_in_as(await api.agent())
        expect(await stranger.get(f"{COMPLAINTS}/{done['id']}/notifications"), 404)

    async def test_pages_follow_the_cursor(self, api: Api) -> None:
        done = await register(api, complaint_body())
        await move(api, done["id"], "withdraw")
        first = await notifications(api, done["id"], limit=1)
        assert [n["kind"] for n in first["items"]] == ["complaint.registered"]
        rest = await notifications(api, done["id"], limit=1, cursor=first["next_cursor"])
        assert [n["kind"] for n in rest["items"]] == ["complaint.withdrawn"]
        assert rest["reachable_by"] == "sms"
        expect(await api.get(f"{COMPLAINTS}/{done['id']}/notifications?cursor=x1"), 422)
