"""The agent's console in a real browser: sign-in, status, offers taken with the keyboard, the
contact card, completion and wrap-up, complaint cases (only what the role may see), hostile
text, languages (the connection: test_console_socket.py)."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from playwright.async_api import Locator, Page, Route, expect

from tests.complaints.test_registration import complaint_body, register
from tests.complaints.test_transitions import RESOLUTION, move
from tests.fixtures.factories import Api
from tests.fixtures.factories import expect as expect_status
from tests.routing.acd import contact, offer_for, queue
from tests.web.conftest import (
    NewPage,
    axe_violations,
    go_signed_out,
    open_signed_in,
    refused_with,
    sign_in,
)

SECONDS_LEFT = re.compile(r"^[1-9][0-9]*$")
WRAP_UP_LEFT = re.compile(r"^Wrap-up: [0-9]:[0-5][0-9] left$")
HOSTILE = '<script>alert(1)</script><img src=x onerror="alert(2)">'


async def console_of(new_page: NewPage, agent: dict[str, Any], *, fake_clock: bool = False) -> Page:
    """The agent's console, signed in through the sign-in page; ``fake_clock`` installs
    Playwright's clock first (time flows, and the test may jump it)."""
    page = await new_page()
    if fake_clock:
        await page.clock.install()
    await open_signed_in(page, "/console", agent["username"])
    await expect(page.locator("#state-now")).to_have_text("Idle")
    return page


async def go_available(page: Page) -> None:
    await page.get_by_label("Available").check()
    await page.locator("#status-submit").click()
    await expect(page.locator("#status-now")).to_have_text("Available")


def offer_item(page: Page, offer_id: int) -> Locator:
    return page.locator(f'#offers .offer[data-offer-id="{offer_id}"]')


async def in_hand(
    api: Api, new_page: NewPage, *, wrap_up_s: int
) -> tuple[Page, dict[str, Any], Locator]:
    """An agent's console with a chat contact accepted from the keyboard's button: the page,
    the contact and its card."""
    agent = await api.agent()
    cards = await queue(api, wrap_up_s=wrap_up_s)
    page = await console_of(new_page, agent)
    await go_available(page)
    made = await contact(api, cards["name"], subject="Fee refund")
    offer = await offer_for(await api.signed_in_as(agent), made["id"])
    await offer_item(page, offer["id"]).get_by_role("button", name="Accept").click()
    return page, made, page.locator(f'.contact-card[data-contact-id="{made["id"]}"]')


async def offer_status(api: Api, agent_id: int, status: str) -> list[int]:
    """The ids of an agent's offers in ``status`` (REST)."""
    query = {"agent": agent_id, "status": status}
    return [
        o["id"] for o in expect_status(await api.get("/api/v1/offers", params=query), 200)["items"]
    ]


async def assigned_complaint(api: Api, agent_id: int, **overrides: Any) -> dict[str, Any]:
    """A complaint registered (as the desk does) and assigned to the agent."""
    done = await register(api, complaint_body(**overrides))
    await move(api, done["id"], "classify", {"categories": ["payment"], "severity": "medium"})
    await move(api, done["id"], "assign", {"assignee": agent_id})
    return done  # type: ignore[no-any-return]


class TestSignIn:
    async def test_console_without_a_session_goes_to_sign_in_and_back(
        self, api: Api, new_page: NewPage
    ) -> None:
        agent = await api.agent(name="Li Lei")
        page = await new_page()
        await open_signed_in(page, "/console", agent["username"])
        await expect(page.locator("#who")).to_have_text("Li Lei (agent)")

    async def test_a_token_the_service_refuses_goes_to_sign_in(
        self, api: Api, new_page: NewPage
    ) -> None:
        page = await new_page()
        await page.goto("/signin")
        await page.evaluate(
            """() => {
                sessionStorage.setItem("hotline.token", "not-a-token");
                sessionStorage.setItem("hotline.token_expires_at", String(Date.now() + 3600e3));
            }"""
        )
        await go_signed_out(page, "/console")
        await expect(page).to_have_url(re.compile(r"/signin\?next=%2Fconsole$"))

    async def test_sign_in_never_sends_the_browser_to_another_site(
        self, api: Api, new_page: NewPage
    ) -> None:
        agent = await api.agent()
        page = await new_page()
        await page.goto("/signin?next=//example.com/console")
        await sign_in(page, agent["username"])
        await expect(page).to_have_url(re.compile(r"^http://127\.0\.0\.1:[0-9]+/console$"))

    async def test_the_page_never_takes_the_cursor_from_a_box_being_typed_in(
        self, new_page: NewPage
    ) -> None:
        """A user quicker than the page (its words still loading) keeps the cursor where
        they put it: the password is never typed on into the username box."""
        page = await new_page()
        words: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        async def held(route: Route) -> None:
            await words
            await route.continue_()

        await page.route("**/static/i18n/*.json", held)
        await page.goto("/signin", wait_until="commit")
        password = page.get_by_label("Password")
        await password.focus()
        await password.press_sequentially("secret")
        words.set_result(None)
        await expect(page.locator("#signin-submit")).to_be_enabled()
        await password.press_sequentially("-too")
        await expect(password).to_be_focused()
        await expect(password).to_have_value("secret-too")
        await expect(page.get_by_label("Username")).to_have_value("")

    async def test_the_cursor_starts_in_the_username_box(self, new_page: NewPage) -> None:
        page = await new_page()
        await page.goto("/signin")
        await expect(page.locator("#signin-submit")).to_be_enabled()
        await expect(page.get_by_label("Username")).to_be_focused()

    async def test_wrong_password_is_said_and_nothing_is_kept(
        self, api: Api, new_page: NewPage
    ) -> None:
        agent = await api.agent()
        page = await new_page()
        await page.goto("/signin")
        await page.get_by_label("Username").fill(agent["username"])
        await page.get_by_label("Password").fill("not-the-password")
        await page.locator("#signin-submit").click()
        await expect(page.locator("#signin-problem")).to_have_text("Wrong username or password.")
        assert await page.evaluate("sessionStorage.getItem('hotline.token')") is None

    async def test_a_problem_shown_is_said_again_after_a_switch_of_language(
        self, api: Api, new_page: NewPage
    ) -> None:
        agent = await api.agent()
        page = await new_page()
        await page.goto("/signin")
        problem = page.locator("#signin-problem")
        await page.get_by_label("Username").fill(agent["username"])
        await page.locator("#signin-submit").click()
        await expect(problem).to_have_text("Enter your username and password.")
        await page.locator("#language").click()
        await expect(problem).to_have_text("请输入用户名和密码。")
        await page.get_by_label("密码").fill("not-the-password")
        await page.locator("#signin-submit").click()
        await expect(problem).to_have_text("用户名或密码错误。")
        await page.locator("#language").click()
        await expect(problem).to_have_text("Wrong username or password.")

    async def test_the_wait_after_too_many_attempts_is_said_in_minutes_hours_and_days(
        self, api: Api, new_page: NewPage
    ) -> None:
        agent = await api.agent()
        page = await new_page()
        await page.goto("/signin")
        problem = page.locator("#signin-problem")
        await page.get_by_label("Username").fill(agent["username"])

        async def attempt() -> None:
            await page.get_by_label("Password").fill("not-the-password")
            async with page.expect_response("**/api/v1/auth/token"):
                await page.locator("#signin-submit").click()

        for _ in range(5):  # the service's limit: five wrong passwords, then 30 s refused
            await attempt()
            await expect(problem).to_have_text("Wrong username or password.")
        await attempt()
        await expect(problem).to_have_text("Too many attempts. Try again in 1 minute.")
        for retry_after_s, said in (
            (898, "15 minutes"),
            (3600, "1 hour"),
            (3 * 3600 + 5 * 60, "3 hours 5 minutes"),
            (86400 + 1, "1 day 1 hour"),
            (2 * 86400, "2 days"),
        ):
            await page.unroute("**/api/v1/auth/token")
            await page.route(
                "**/api/v1/auth/token", refused_with(retry_after_s, "too many sign-in failures")
            )
            await attempt()
            await expect(problem).to_have_text(f"Too many attempts. Try again in {said}.")
        await page.locator("#language").click()
        await expect(problem).to_have_text("尝试次数过多\uff0c请 2 天后再试。")


class TestOffers:
    async def test_offer_made_through_the_api_is_accepted_with_the_keyboard(
        self, api: Api, new_page: NewPage
    ) -> None:
        agent = await api.agent()
        cards = await queue(api, wrap_up_s=60)
        customer = await api.customer(name="Wang Fang", tier="gold")
        page = await console_of(new_page, agent)
        posted: list[str] = []
        page.on("request", lambda r: posted.append(r.url) if r.method == "POST" else None)
        await go_available(page)
        made = await contact(
            api, cards["name"], customer={"id": customer["id"]}, subject="Card blocked abroad"
        )
        offer = await offer_for(await api.signed_in_as(agent), made["id"])
        item = offer_item(page, offer["id"])
        await expect(item).to_contain_text("Card blocked abroad")
        await expect(item.locator(".ring text")).to_have_text(SECONDS_LEFT)
        await item.focus()
        await page.keyboard.press("a")
        await expect(page.locator("#state-now")).to_have_text("In a conversation")  # a chat
        await expect(item).to_have_count(0)
        card = page.locator(f'.contact-card[data-contact-id="{made["id"]}"]')
        await expect(card).to_contain_text("Card blocked abroad")
        await expect(card).to_contain_text("Wang Fang")
        await expect(card).to_contain_text("Gold")
        assert offer["id"] in await offer_status(api, agent["id"], "accepted")
        assert posted == []  # the console acts over its socket, not REST

    async def test_r_rejects_the_oldest_offer_when_none_is_focused(
        self, api: Api, new_page: NewPage
    ) -> None:
        agent = await api.agent()
        cards = await queue(api)
        page = await console_of(new_page, agent)
        await go_available(page)
        made = await contact(api, cards["name"], subject="Lost card")
        offer = await offer_for(await api.signed_in_as(agent), made["id"])
        await expect(offer_item(page, offer["id"])).to_be_visible()
        await page.locator("#presence-heading").click()  # focus on no offer
        await page.keyboard.press("r")
        await expect(offer_item(page, offer["id"])).to_have_count(0)
        assert offer["id"] in await offer_status(api, agent["id"], "rejected")

    async def test_completion_with_disposition_and_notes_then_the_wrap_up_timer(
        self, api: Api, new_page: NewPage
    ) -> None:
        page, made, card = await in_hand(api, new_page, wrap_up_s=120)
        await card.get_by_label("Disposition").select_option("follow_up")
        await card.get_by_label("Notes").fill("Customer will send the receipt.")
        await card.get_by_role("button", name="Complete").click()
        await expect(card.locator(".wrap-up-left")).to_have_text(WRAP_UP_LEFT)
        await expect(page.locator("#state-now")).to_have_text("Wrap-up")
        await card.get_by_role("button", name="Wrap-up done").click()
        await expect(card).to_have_count(0)
        await expect(page.locator("#state-now")).to_have_text("Idle")
        done = expect_status(await api.get(f"/api/v1/contacts/{made['id']}"), 200)
        assert (done["status"], done["disposition"], done["notes"]) == (
            "completed",
            "follow_up",
            "Customer will send the receipt.",
        )

    async def test_switching_language_keeps_the_disposition_and_the_notes(
        self, api: Api, new_page: NewPage
    ) -> None:
        page, made, card = await in_hand(api, new_page, wrap_up_s=0)
        await card.get_by_label("Disposition").select_option("escalated")
        await card.get_by_label("Notes").fill("Passed to the card team.")
        await page.locator("#language").click()
        complete = card.get_by_role("button", name="完成")
        await expect(complete).to_be_visible()  # the card drawn again, in Chinese
        await expect(card.locator("select")).to_have_value("escalated")
        await expect(card.locator("textarea")).to_have_value("Passed to the card team.")
        await complete.click()
        await expect(card).to_have_count(0)
        done = expect_status(await api.get(f"/api/v1/contacts/{made['id']}"), 200)
        assert (done["disposition"], done["notes"]) == ("escalated", "Passed to the card team.")

    async def test_console_with_an_offer_and_a_contact_has_no_serious_accessibility_violation(
        self, api: Api, new_page: NewPage
    ) -> None:
        agent = await api.agent(capacity={"chat": 2})
        cards = await queue(api)
        page = await console_of(new_page, agent)
        await go_available(page)
        console_api = await api.signed_in_as(agent)
        first = await contact(api, cards["name"], subject="First")
        offer = await offer_for(console_api, first["id"])
        await offer_item(page, offer["id"]).get_by_role("button", name="Accept").click()
        second = await contact(api, cards["name"], subject="Second")
        await expect(
            offer_item(page, (await offer_for(console_api, second["id"]))["id"])
        ).to_be_visible()
        await expect(page.locator(".contact-card")).to_contain_text("First")
        assert await axe_violations(page, ("critical", "serious", "moderate")) == []


async def accepted(api: Api, new_page: NewPage, channel: str) -> Page:
    """An agent's console with a contact of ``channel`` accepted."""
    agent = await api.agent()
    cards = await queue(api)
    page = await console_of(new_page, agent)
    await go_available(page)
    made = await contact(api, cards["name"], channel=channel)
    offer = await offer_for(await api.signed_in_as(agent), made["id"])
    await offer_item(page, offer["id"]).get_by_role("button", name="Accept").click()
    await expect(page.locator(f'.contact-card[data-contact-id="{made["id"]}"]')).to_be_visible()
    return page


async def offered(api: Api, new_page: NewPage, channel: str) -> Page:
    """An agent's console with an offer of a ``channel`` contact ringing (a long ring)."""
    agent = await api.agent(capacity={"voice": 1, "chat": 2, channel: 1})
    waiting = await queue(api, channels=[channel], ring_timeout_s=600)
    page = await console_of(new_page, agent)
    await go_available(page)
    made = await contact(api, waiting["name"], channel=channel)
    offer = await offer_for(await api.signed_in_as(agent), made["id"])
    await expect(offer_item(page, offer["id"])).to_be_visible()
    return page


class TestState:
    async def test_a_call_offered_rings_in_both_languages(
        self, api: Api, new_page: NewPage
    ) -> None:
        page = await offered(api, new_page, "voice")
        await expect(page.locator("#state-now")).to_have_text("Ringing")
        await page.locator("#language").click()
        await expect(page.locator("#state-now")).to_have_text("振铃中")

    async def test_a_chat_or_an_email_offered_is_a_new_offer_not_ringing_in_both_languages(
        self, api: Api, new_page: NewPage
    ) -> None:
        for channel in ("chat", "email"):
            page = await offered(api, new_page, channel)
            await expect(page.locator("#state-now")).to_have_text("New offer")
            await page.locator("#language").click()
            await expect(page.locator("#state-now")).to_have_text("新的接待请求")
            await expect(page.locator("#offers-heading")).to_have_text("接待请求")

    async def test_a_chat_in_hand_is_a_conversation_not_a_call_in_both_languages(
        self, api: Api, new_page: NewPage
    ) -> None:
        page = await accepted(api, new_page, "chat")
        await expect(page.locator("#state-now")).to_have_text("In a conversation")
        await page.locator("#language").click()
        await expect(page.locator("#state-now")).to_have_text("会话中")

    async def test_a_voice_contact_in_hand_is_a_call_also_after_a_reload(
        self, api: Api, new_page: NewPage
    ) -> None:
        page = await accepted(api, new_page, "voice")
        await expect(page.locator("#state-now")).to_have_text("On a call")
        await page.reload()  # the contact in hand read again from the service
        await expect(page.locator("#state-now")).to_have_text("On a call")
        await page.locator("#language").click()
        await expect(page.locator("#state-now")).to_have_text("通话中")


class TestComplaints:
    async def test_a_complaint_registered_on_the_desk_appears_with_its_clock(
        self, api: Api, new_page: NewPage
    ) -> None:
        agent, colleague = await api.agent(), await api.agent()
        page = await console_of(new_page, agent, fake_clock=True)
        await expect(page.locator("#no-cases")).to_be_visible()
        mine = await assigned_complaint(api, agent["id"], matter=_matter("Pudong"))
        theirs = await assigned_complaint(api, colleague["id"], matter=_matter("Minhang"))
        row = page.locator(f'#cases-body tr[data-complaint-id="{mine["id"]}"]')
        await expect(row).to_contain_text(mine["reference"])
        await expect(row).to_contain_text("Pudong")
        await expect(row).to_contain_text("Payment")  # the category's name, not its code
        await expect(row).not_to_contain_text("payment")
        deadline = row.locator(".deadline")
        await expect(deadline).to_contain_text("left")
        await expect(page.locator("#cases-body")).not_to_contain_text(theirs["reference"])
        # The time left is drawn again every 30 s from what was read (the browser's clock is
        # set against the service's at every read, so a jump of its own cannot be shown).
        await deadline.evaluate("element => { element.dataset.drawn = 'before'; }")
        await page.clock.fast_forward("00:31")
        await expect(row.locator(".deadline")).not_to_have_attribute("data-drawn", "before")
        await expect(row.locator(".deadline")).to_contain_text("left")
        await page.locator("#language").click()
        await expect(row).to_contain_text("支付扣款")

    async def test_a_case_under_review_shows_its_resolution_clock_stopped(
        self, api: Api, new_page: NewPage
    ) -> None:
        # Resolved in time and then under review: the resolution deadline no longer counts
        # down (the review has a clock of its own), as the desk's overdue filter has it. A
        # paused one holds its clock, and says so.
        agent = await api.agent()
        reviewed = await assigned_complaint(api, agent["id"], matter=_matter("Pudong"))
        for verb, body in (("start", None), ("resolve", RESOLUTION), ("confirm", None)):
            await move(api, reviewed["id"], verb, body)
        await move(api, reviewed["id"], "request_review", {"reason": "客户不认可处理结果"})
        working = await assigned_complaint(api, agent["id"], matter=_matter("Minhang"))
        paused = await assigned_complaint(api, agent["id"], matter=_matter("Xuhui"))
        await move(api, paused["id"], "start")
        await move(api, paused["id"], "pause", {"reason": "waiting_for_customer"})
        page = await console_of(new_page, agent)
        row = page.locator(f'#cases-body tr[data-complaint-id="{reviewed["id"]}"]')
        await expect(row.locator(".deadline")).to_have_attribute("data-deadline", "stopped")
        await expect(row.locator(".deadline")).to_contain_text("Clock stopped")
        other = page.locator(f'#cases-body tr[data-complaint-id="{working["id"]}"]')
        await expect(other.locator(".deadline")).to_have_attribute("data-deadline", "ok")
        held = page.locator(f'#cases-body tr[data-complaint-id="{paused["id"]}"] .deadline')
        await expect(held).to_have_attribute("data-deadline", "stopped")
        await expect(held).to_contain_text("Clock paused")

    async def test_the_contact_card_shows_the_customers_open_complaints_with_deadlines(
        self, api: Api, new_page: NewPage
    ) -> None:
        agent = await api.agent()
        cards = await queue(api)
        customer = await api.customer(tier="platinum")
        complaint = await assigned_complaint(api, agent["id"], customer={"id": customer["id"]})
        page = await console_of(new_page, agent)
        await go_available(page)
        made = await contact(api, cards["name"], customer={"id": customer["id"]})
        offer = await offer_for(await api.signed_in_as(agent), made["id"])
        await offer_item(page, offer["id"]).get_by_role("button", name="Accept").click()
        card = page.locator(f'.contact-card[data-contact-id="{made["id"]}"]')
        await expect(card.locator(".complaints")).to_contain_text(complaint["reference"])
        await expect(card.locator(".complaints .deadline")).to_contain_text("left")
        await expect(card).to_contain_text("Platinum")


class TestHostileText:
    async def test_markup_in_a_subject_and_a_complaint_is_shown_as_text(
        self, api: Api, new_page: NewPage
    ) -> None:
        agent = await api.agent()
        cards = await queue(api)
        complaint = await assigned_complaint(api, agent["id"], matter=_matter(HOSTILE))
        page = await console_of(new_page, agent)
        dialogs: list[str] = []
        page.on("dialog", lambda dialog: dialogs.append(dialog.message))
        await go_available(page)
        made = await contact(api, cards["name"], subject=HOSTILE)
        offer = await offer_for(await api.signed_in_as(agent), made["id"])
        await expect(offer_item(page, offer["id"]).locator(".subject")).to_have_text(HOSTILE)
        row = page.locator(f'#cases-body tr[data-complaint-id="{complaint["id"]}"]')
        await expect(row).to_contain_text(HOSTILE)
        await offer_item(page, offer["id"]).get_by_role("button", name="Accept").click()
        card = page.locator(f'.contact-card[data-contact-id="{made["id"]}"]')
        await expect(card).to_contain_text(HOSTILE)
        assert await page.locator("main script, main img").count() == 0
        assert dialogs == []


class TestLanguages:
    async def test_a_chinese_browser_gets_chinese_and_the_switch_is_remembered(
        self, api: Api, new_page: NewPage
    ) -> None:
        agent = await api.agent()
        page = await new_page(locale="zh-CN")
        await page.goto("/console")
        await expect(page.locator("#signin h2")).to_have_text("登录")
        await page.get_by_label("用户名").fill(agent["username"])
        await page.get_by_label("密码").fill("agent-password-1")
        await page.locator("#signin-submit").click()
        await expect(page.locator("#presence-heading")).to_have_text("我的状态")
        await expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
        await page.locator("#language").click()
        await expect(page.locator("#presence-heading")).to_have_text("My status")
        await page.reload()
        await expect(page.locator("#presence-heading")).to_have_text("My status")


def _matter(branch: str) -> dict[str, Any]:
    matter: dict[str, Any] = complaint_body()["matter"]
    return {**matter, "branch": branch}
