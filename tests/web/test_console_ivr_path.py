"""The contact card's "How they called" in a real browser: a call placed through the Twilio
webhooks over HTTP (signed as Twilio signs them) chooses its language and asks for an agent;
the agent who accepts it in the console reads the flow, the time in the IVR, the language and
the steps, in both languages. A chat, which never came through the IVR, shows no such section
and no error. A caller who hangs up before being put through ends the contact for the agent,
and the console says so where the card was, as it does a supervisor's transfer; the agent's
own completion says nothing of the kind."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from httpx import AsyncClient
from playwright.async_api import Locator, Page, expect

from app.config import Settings
from tests.fixtures.factories import Api
from tests.fixtures.factories import expect as expect_status
from tests.ivr.live import STRANGER, call_of
from tests.ivr.telephony import (
    FLOWS,
    HOTLINE,
    TwilioCall,
    centre,
    telephony_settings,
    upload,
)
from tests.routing.acd import contact, offer_for
from tests.web.conftest import STATIC, NewPage
from tests.web.test_console import HOSTILE, console_of, go_available, offer_item

FLOW = "complaint_hotline_95561"
CHINESE = "en-US: [chinese, mandarin]"


@pytest.fixture
def settings(db: str) -> Settings:
    """The web app's settings, taking the Twilio webhooks this test signs."""
    return telephony_settings(db)


@pytest.fixture
async def ready(api: Api) -> None:
    await centre(api)
    await upload(api, FLOW)


async def upload_with_chinese_named(api: Api, phrase: str) -> None:
    """The complaint hotline with its "1" (Chinese) option named ``phrase`` in English."""
    document = (FLOWS / f"{FLOW}.yaml").read_text(encoding="utf-8")
    assert CHINESE in document
    named = document.replace(CHINESE, f"en-US: [{json.dumps(phrase)}, mandarin]")
    headers = {"Content-Type": "application/yaml"}
    posted = await api.post("/api/v1/ivr/flows", content=named.encode(), headers=headers)
    flow = expect_status(posted, 201)
    expect_status(await api.post(f"/api/v1/ivr/flows/{flow['id']}/activate", {}), 200)


async def complaints_agent(api: Api) -> dict[str, Any]:
    """An agent the complaints queue offers its calls to."""
    return await api.agent(skills=[{"skill": "complaints", "level": 5}], capacity={"voice": 1})


async def caller_in(client: AsyncClient, api: Api) -> tuple[TwilioCall, int]:
    """An unknown caller presses 1 (Chinese) at the language menu, then 0 for an agent: the
    call, and the contact the IVR queued."""
    phone = TwilioCall(client, STRANGER, HOTLINE)
    await phone.start()
    await phone.press("1")
    await phone.press("0")
    assert phone.waiting(), phone.last
    return phone, int((await call_of(api, phone.sid))["contact_id"])


async def called_in(client: AsyncClient, api: Api) -> int:
    """As ``caller_in``: the contact the IVR queued."""
    return (await caller_in(client, api))[1]


async def accept(page: Page, api: Api, agent: dict[str, Any], contact_id: int) -> Locator:
    """Accept the offer of ``contact_id`` on the page: the contact's card."""
    offer = await offer_for(await api.signed_in_as(agent), contact_id)
    await offer_item(page, offer["id"]).get_by_role("button", name="Accept").click()
    return page.locator(f'.contact-card[data-contact-id="{contact_id}"]')


@pytest.mark.usefixtures("ready")
class TestHowTheyCalled:
    async def test_the_card_shows_the_choice_and_the_request_for_an_agent_in_both_languages(
        self, api: Api, client: AsyncClient, new_page: NewPage
    ) -> None:
        agent = await complaints_agent(api)
        page = await console_of(new_page, agent)
        await go_available(page)
        contact_id = await called_in(client, api)

        card = await accept(page, api, agent, contact_id)

        section = card.locator(".ivr-path")
        await expect(section.locator("h3")).to_have_text("How they called")
        await expect(section.locator("dd").first).to_have_text(FLOW)
        await expect(section.locator("dd").nth(1)).to_have_text(re.compile(r"^0:[0-5][0-9]$"))
        await expect(section.locator("dd").nth(2)).to_have_text("Chinese (China)")
        steps = section.locator(".ivr-steps li")
        await expect(steps).to_have_text(
            [
                "Not identified",
                "Chose chinese",
                "Asked for an agent",
                "Put through to the queue",
            ]
        )
        await expect(steps.nth(1).locator(".user-text")).to_have_text("chinese")
        await page.locator("#language").click()
        section = card.locator(".ivr-path")  # the card is drawn again, in Chinese
        await expect(section.locator("h3")).to_have_text("来电经过")
        await expect(section.locator(".ivr-steps li")).to_have_text(
            ["未识别身份", "选择 中文", "要求转人工", "已转入队列"]
        )
        await expect(page.locator("#errors .error")).to_have_count(0)

    async def test_a_chat_shows_no_section_and_no_error(self, api: Api, new_page: NewPage) -> None:
        agent = await api.agent()
        page = await console_of(new_page, agent)
        await go_available(page)
        chat = await contact(api, "general", subject="Card fee")

        card = await accept(page, api, agent, chat["id"])

        await expect(card.locator(".details")).to_contain_text("Card fee")  # the card is read
        await expect(card.locator(".customer")).to_contain_text("No known customer.")
        await expect(card.locator(".ivr-path")).to_have_count(0)
        await expect(card).not_to_contain_text("How they called")
        await expect(page.locator("#errors .error")).to_have_count(0)


@pytest.mark.usefixtures("ready")
class TestEndedForTheAgent:
    async def test_a_caller_who_hangs_up_before_being_put_through_is_said_where_the_card_was(
        self, api: Api, client: AsyncClient, new_page: NewPage
    ) -> None:
        agent = await complaints_agent(api)
        page = await console_of(new_page, agent)
        await go_available(page)
        phone, contact_id = await caller_in(client, api)
        card = await accept(page, api, agent, contact_id)
        await expect(card).to_be_visible()
        notice = page.locator("#contact-ended")
        await expect(notice).to_be_hidden()

        assert (await phone.status("completed")).status_code == 200

        await expect(card).to_have_count(0)
        await expect(notice).to_have_text(
            f"Contact {contact_id} was ended for you: Caller hung up before being put through."
        )
        await expect(page.locator("#announce")).to_have_text(await notice.inner_text())
        await page.locator("#language").click()
        in_chinese = f"联系 {contact_id} 已被结束：接通前来电者已挂断。"  # noqa: RUF001
        await expect(notice).to_have_text(in_chinese)
        await page.locator("#language").click()  # back to English, where `accept` clicks
        _, next_id = await caller_in(client, api)
        await expect(await accept(page, api, agent, next_id)).to_be_visible()
        await expect(notice).to_be_hidden()  # said until the next contact is in hand
        await expect(page.locator("#errors .error")).to_have_count(0)

    async def test_a_supervisor_transferring_the_contact_is_said_with_the_queue(
        self, api: Api, new_page: NewPage
    ) -> None:
        agent = await api.agent()
        page = await console_of(new_page, agent)
        await go_available(page)
        chat = await contact(api, "general", subject="Card fee")
        card = await accept(page, api, agent, chat["id"])
        await expect(card).to_be_visible()  # accepted: the contact is the agent's

        moved = await api.post(f"/api/v1/contacts/{chat['id']}/transfer", {"queue": "complaints"})
        expect_status(moved, 200)  # by a supervisor (the admin), not the agent

        await expect(card).to_have_count(0)
        await expect(page.locator("#contact-ended")).to_have_text(
            f"Contact {chat['id']} was ended for you: Transferred to complaints."
        )

    async def test_the_agents_own_completion_in_another_tab_says_nothing_of_the_kind(
        self, api: Api, new_page: NewPage
    ) -> None:
        agent = await api.agent()
        page = await console_of(new_page, agent)
        await go_available(page)
        chat = await contact(api, "general", subject="Card fee")
        card = await accept(page, api, agent, chat["id"])
        await expect(card).to_be_visible()  # accepted: the contact is the agent's
        elsewhere = await api.signed_in_as(agent)  # the same agent, as another tab

        body = {"disposition": "resolved"}
        expect_status(await elsewhere.post(f"/api/v1/contacts/{chat['id']}/complete", body), 200)
        await expect(card.locator(".wrap-up-left")).to_be_visible()
        expect_status(await elsewhere.post("/api/v1/agents/me/wrap-up/done", {}), 200)

        await expect(card).to_have_count(0)
        await expect(page.locator("#contact-ended")).to_be_hidden()
        await expect(page.locator("#errors .error")).to_have_count(0)


class TestHostileText:
    async def test_markup_in_an_option_s_phrase_is_shown_as_text(
        self, api: Api, client: AsyncClient, new_page: NewPage
    ) -> None:
        await centre(api)
        await upload_with_chinese_named(api, HOSTILE)
        agent = await complaints_agent(api)
        page = await console_of(new_page, agent)
        dialogs: list[str] = []
        page.on("dialog", lambda dialog: dialogs.append(dialog.message))
        await go_available(page)
        contact_id = await called_in(client, api)

        card = await accept(page, api, agent, contact_id)

        await expect(card.locator(".ivr-path .chosen")).to_have_text(HOSTILE)
        assert await page.locator("main script, main img").count() == 0
        assert dialogs == []


class TestTexts:
    def test_both_languages_of_the_console_have_the_same_texts(self) -> None:
        def texts(language: str) -> dict[str, str]:
            path = STATIC / "i18n" / f"console.{language}.json"
            return json.loads(path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]

        assert texts("en").keys() == texts("zh-CN").keys()
