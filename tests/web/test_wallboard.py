"""The wallboard in a real browser: its figures move as contacts come and go, a complaint
registered on the desk shows at risk once its clock passes 80 %, an agent is refused, hostile
text stays text, the page is accessible and in both languages."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import FastAPI
from playwright.async_api import Page, expect

from tests.complaints.test_registration import Clock
from tests.fixtures.desk_clock import freeze_desk
from tests.fixtures.factories import Api
from tests.fixtures.factories import expect as expect_status
from tests.routing.acd import contact, queue
from tests.web.conftest import NewPage, axe_violations, open_signed_in
from tests.web.test_desk import fill_registration, registered_reference

HOSTILE = '<script>alert(1)</script><img src=x onerror="alert(2)">'
RESOLUTION = timedelta(days=3)  # the desk's default resolution clock
# How many lines of text each element holds: its content box's height over its line height.
LINES = """els => els.map((el) => {
  const style = getComputedStyle(el);
  const px = (...names) => names.reduce((sum, name) => sum + parseFloat(style[name]), 0);
  const inside = px("paddingTop", "paddingBottom", "borderTopWidth", "borderBottomWidth");
  return (el.getBoundingClientRect().height - inside) / parseFloat(style.lineHeight);
})"""


async def wallboard_of(new_page: NewPage, user: dict[str, Any], locale: str = "en-GB") -> Page:
    page = await new_page(locale=locale)
    await open_signed_in(page, "/wallboard", user["username"])
    return page


def cell(page: Page, queue_name: str, field: str) -> Any:
    return page.locator(f'#queues tr[data-queue="{queue_name}"] td[data-field="{field}"]')


class TestLiveFigures:
    async def test_waiting_offered_and_abandoned_move_as_contacts_come_and_go(
        self, api: Api, new_page: NewPage
    ) -> None:
        boss = await api.supervisor()
        cards = await queue(api, name="cards", service_level={"short_abandon_s": 0})
        page = await wallboard_of(new_page, boss)
        await expect(cell(page, "cards", "waiting")).to_have_text("0")
        first = await contact(api, cards["name"])
        await contact(api, cards["name"])
        await expect(cell(page, "cards", "waiting")).to_have_text("2")
        await expect(cell(page, "cards", "offered")).to_have_text("2")
        await expect(page.locator("#overall-waiting .tile-value")).to_have_text("2")
        expect_status(await api.post(f"/api/v1/contacts/{first['id']}/abandon"), 200)
        await expect(cell(page, "cards", "waiting")).to_have_text("1")
        await expect(cell(page, "cards", "abandoned")).to_have_text("1 (0 short)")
        await expect(page.locator("#overall-waiting .tile-value")).to_have_text("1")
        await page.get_by_label("Today").check()
        await expect(cell(page, "cards", "offered")).to_have_text("2")
        await expect(page.locator("#queues caption")).to_have_text("Every queue today")

    async def test_no_contacts_yet_is_said_only_of_a_queue_that_has_had_none(
        self, api: Api, new_page: NewPage
    ) -> None:
        boss = await api.supervisor()
        cards = await queue(api, name="cards")
        page = await wallboard_of(new_page, boss)
        level = cell(page, "cards", "service_level")
        await expect(level).to_contain_text("no contacts yet")
        await contact(api, cards["name"])
        await expect(cell(page, "cards", "waiting")).to_have_text("1")
        await expect(level).to_contain_text("none answered yet")
        await expect(level).not_to_contain_text("no contacts yet")
        await expect(page.locator("#overall-sl")).to_contain_text("none answered yet")
        await expect(page.locator("#overall-figures")).to_contain_text("none answered yet")
        await expect(page.locator("#overall-figures")).not_to_contain_text("no contacts yet")

    async def test_the_centre_s_service_level_badges_stay_on_one_line(
        self, api: Api, new_page: NewPage
    ) -> None:
        boss = await api.supervisor()
        for name in ("cards", "general", "mortgages"):
            await queue(api, name=name)
        page = await wallboard_of(new_page, boss)
        await page.set_viewport_size({"width": 1280, "height": 900})
        badges = page.locator(".tile .sl .badge, #overall-figures .sl .badge")
        await expect(cell(page, "mortgages", "service_level")).to_contain_text("no contacts yet")
        await expect(badges).to_have_count(3)  # the tile, the interval's, the day's
        lines = await badges.evaluate_all(LINES)
        assert all(n < 1.5 for n in lines), lines

    async def test_an_away_reason_is_shown_as_text(self, api: Api, new_page: NewPage) -> None:
        boss = await api.supervisor()
        await queue(api, name="cards")
        agent = await api.agent()
        expect_status(await api.set_status(agent["id"], "away", HOSTILE[:64]), 200)
        page = await wallboard_of(new_page, boss)
        reasons = page.locator("#agents .reasons")
        await expect(reasons).to_contain_text("<script>alert(1)</script>")
        assert await page.locator("#agents script, #agents img").count() == 0


class TestComplaintsAtRisk:
    async def test_a_complaint_registered_on_the_desk_is_at_risk_past_80_percent(
        self, app: FastAPI, api: Api, new_page: NewPage
    ) -> None:
        clock = Clock(datetime.now(UTC).replace(microsecond=0))
        freeze_desk(app, clock)
        boss = await api.supervisor()
        agent = await api.agent()
        desk = await new_page()
        await open_signed_in(desk, "/desk", agent["username"])
        await desk.goto("/desk#new")
        await fill_registration(desk, description="扣款两次")
        await desk.locator("#reg-submit").click()
        reference = await registered_reference(desk)

        board = await wallboard_of(new_page, boss)
        at_risk = board.locator(f'#at-risk-table tr[data-reference="{reference}"]')
        await expect(board.locator("#complaints-at-risk .tile-value")).to_have_text("0")
        clock.advance(RESOLUTION * 0.79)
        await expect(at_risk).to_have_count(0)
        clock.advance(RESOLUTION * 0.02)
        await expect(at_risk).to_be_visible()
        await expect(at_risk).to_contain_text("81%")
        await expect(board.locator("#complaints-at-risk")).to_have_class(re.compile(r"\bwarn\b"))
        await expect(board.locator("#complaints-at-risk .tile-value")).to_have_text("1")


class TestAccess:
    async def test_without_a_session_the_wallboard_goes_to_sign_in(self, new_page: NewPage) -> None:
        page = await new_page()
        await page.goto("/wallboard")
        await expect(page).to_have_url(re.compile(r"/signin\?next=%2Fwallboard$"))

    async def test_an_agent_is_refused_by_the_socket_and_told_so(
        self, api: Api, new_page: NewPage
    ) -> None:
        agent = await api.agent()
        page = await new_page()
        closes: list[int] = []
        page.on("websocket", lambda ws: ws.on("close", lambda _: closes.append(1)))
        await open_signed_in(page, "/wallboard", agent["username"])
        refused = page.locator("#refused")
        await expect(refused).to_be_visible()
        await expect(refused).to_contain_text("The wallboard is for supervisors and admins.")
        await expect(page.locator("#board")).to_be_hidden()
        await expect(page.locator("#connection")).to_have_attribute("data-state", "refused")
        assert closes, "the socket was not closed"


class TestPage:
    async def test_no_accessibility_violations(self, api: Api, new_page: NewPage) -> None:
        boss = await api.supervisor(name="Zhang Wei")
        for name in ("cards", "general", "mortgages"):
            await queue(api, name=name)
        for _ in range(3):
            await contact(api, "cards")
        await contact(api, "general")
        page = await new_page()
        await page.set_viewport_size({"width": 1600, "height": 1000})
        await open_signed_in(page, "/wallboard", boss["username"])
        await expect(cell(page, "cards", "waiting")).to_have_text("3")
        await expect(page.locator("#chart polyline, #chart circle").first).to_be_attached()
        # moderate too: landmark-unique (the queue table's scrolling region is named apart
        # from the Queues section around it)
        assert await axe_violations(page, ("critical", "serious", "moderate")) == []
        await expect(page.get_by_role("region", name="Queues", exact=True)).to_have_count(1)
        await expect(
            page.get_by_role("region", name="The queues' table (scrolls sideways)")
        ).to_be_visible()

    async def test_a_chinese_browser_gets_the_wallboard_in_chinese(
        self, api: Api, new_page: NewPage
    ) -> None:
        boss = await api.supervisor()
        await queue(api, name="cards")
        page = await wallboard_of(new_page, boss, locale="zh-CN")
        await expect(page.locator("#queues-heading")).to_have_text("队列")
        # busy agents may be in chats as well as calls: busy, not "on a call"
        busy = page.locator('#agents dt:has(+ dd[data-state="busy"])')
        await expect(busy).to_have_text("忙碌")
        # an offer may be a chat as well as a call: pending, not ringing
        offered = page.locator('#agents dt:has(+ dd[data-state="offered"])')
        await expect(offered).to_have_text("待接受")
        await expect(cell(page, "cards", "agents")).to_have_text(re.compile(r"人忙碌"))
        await expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
        await expect(
            page.get_by_role("region", name="队列指标表\uff08可横向滚动\uff09")
        ).to_be_visible()
        await page.locator("#language").click()
        await expect(page.locator("#queues-heading")).to_have_text("Queues")
        await expect(offered).to_have_text("Offer pending")

    async def test_the_service_level_formulas_follow_the_language(
        self, api: Api, new_page: NewPage
    ) -> None:
        boss = await api.supervisor()
        await queue(api, name="cards", service_level={"threshold_s": 30, "short_abandon_s": 5})
        await queue(api, name="loans", service_level={"threshold_s": 15, "counts_abandons": False})
        page = await wallboard_of(new_page, boss, locale="zh-CN")
        formula = page.locator("#formula")
        await expect(formula).to_have_text(re.compile(r"^服务水平 = Σ 各队列在其阈值内接待数"))
        await expect(cell(page, "cards", "service_level")).to_have_attribute(
            "title", "服务水平 = 30 秒内接待数 / \uff08接待数 + 5 秒后放弃数\uff09"
        )
        await expect(cell(page, "loans", "service_level")).to_have_attribute(
            "title", "服务水平 = 15 秒内接待数 / 接待数"
        )
        await page.locator("#language").click()
        await expect(formula).to_have_text(
            "Service level = Σ answered within each queue's threshold / Σ (answered + abandons"
            " after each queue's cutoff, where the queue counts them)"
        )
        await expect(cell(page, "cards", "service_level")).to_have_attribute(
            "title", "Service level = answered within 30s / (answered + abandoned after 5s)"
        )
