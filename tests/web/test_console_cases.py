"""The console's cases list follows the complaint events on its socket, in a real browser.

A complaint assigned to the signed-in agent appears without a reload as soon as its event
arrives (the list's backstop read is minutes away, far past any wait here); a complaint of
another agent never reaches the page, not even as an event; a case reassigned to someone else
leaves the list at once.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlparse

from playwright.async_api import Locator, Page, Request, WebSocket, expect

from tests.complaints.test_registration import complaint_body
from tests.complaints.test_transitions import move
from tests.fixtures.factories import Api
from tests.fixtures.polling import eventually
from tests.web.conftest import NewPage, open_signed_in
from tests.web.test_console import assigned_complaint

CASES = "/api/v1/complaints"


class Frames:
    """The frames the page's sockets received, decoded, and the page's reads of its cases
    in flight."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.reading = 0

    def watch(self, ws: WebSocket) -> None:
        ws.on("framereceived", lambda payload: self.received.append(json.loads(payload)))

    def request(self, request: Request, change: int) -> None:
        if request.method == "GET" and urlparse(request.url).path == CASES:
            self.reading += change

    async def settled(self) -> None:
        """Wait until the socket has its snapshot and no read of the cases is in flight: from
        then on only an event (or minutes) makes the list read again."""

        async def quiet() -> bool:
            snapshot = any(m.get("type") == "snapshot" for m in self.received)
            return snapshot and self.reading == 0

        await eventually(quiet, what="the console to settle")

    def events(self) -> list[dict[str, Any]]:
        return [m["event"] for m in self.received if m.get("type") == "event"]

    def complaints(self) -> set[str]:
        """The ids of the complaints the received events were about."""
        return {e["subject"]["id"] for e in self.events() if e["subject"]["type"] == "complaint"}


async def console(new_page: NewPage, agent: dict[str, Any], frames: Frames) -> Page:
    """The agent's console, signed in, its socket's frames watched from the start."""
    page = await new_page()
    page.on("websocket", frames.watch)
    page.on("request", lambda r: frames.request(r, +1))
    page.on("requestfinished", lambda r: frames.request(r, -1))
    page.on("requestfailed", lambda r: frames.request(r, -1))
    await open_signed_in(page, "/console", agent["username"])
    await expect(page.locator("#state-now")).to_have_text("Idle")
    await frames.settled()
    return page


def case_row(page: Page, complaint: dict[str, Any]) -> Locator:
    return page.locator(f'#cases-body tr[data-complaint-id="{complaint["id"]}"]')


def matter(branch: str) -> dict[str, Any]:
    return {**complaint_body()["matter"], "branch": branch}


class TestCasesFollowTheSocket:
    async def test_a_case_assigned_to_the_agent_appears_at_once_and_another_agents_never(
        self, api: Api, new_page: NewPage
    ) -> None:
        agent, colleague = await api.agent(), await api.agent()
        frames = Frames()
        page = await console(new_page, agent, frames)
        await expect(page.locator("#no-cases")).to_be_visible()

        theirs = await assigned_complaint(api, colleague["id"], matter=matter("Minhang"))
        mine = await assigned_complaint(api, agent["id"], matter=matter("Pudong"))

        await expect(case_row(page, mine)).to_contain_text(mine["reference"])
        await expect(case_row(page, mine)).to_contain_text("Pudong")
        await expect(page.locator("#cases-body tr")).to_have_count(1)
        assert str(mine["id"]) in frames.complaints()
        assert str(theirs["id"]) not in frames.complaints()

    async def test_a_case_opens_on_the_desk_in_a_tab_of_its_own_still_signed_in(
        self, api: Api, new_page: NewPage
    ) -> None:
        agent = await api.agent()
        first = await assigned_complaint(api, agent["id"], matter=matter("Pudong"))
        second = await assigned_complaint(api, agent["id"], matter=matter("Minhang"))
        page = await console(new_page, agent, Frames())
        async with page.context.expect_page() as opened:
            await case_row(page, first).get_by_role("link", name=first["reference"]).click()
        desk = await opened.value
        await expect(desk.locator("#case-reference")).to_have_text(first["reference"])
        assert "/signin" not in desk.url
        # The console stays where it was; the next case goes to the same desk tab.
        await expect(page).to_have_url(re.compile(r"/console$"))
        await case_row(page, second).get_by_role("link", name=second["reference"]).click()
        await expect(desk.locator("#case-reference")).to_have_text(second["reference"])
        assert len(page.context.pages) == 2

    async def test_a_case_reassigned_to_another_agent_leaves_the_list_at_once(
        self, api: Api, new_page: NewPage
    ) -> None:
        agent, colleague = await api.agent(), await api.agent()
        mine = await assigned_complaint(api, agent["id"])
        frames = Frames()
        page = await console(new_page, agent, frames)
        await expect(case_row(page, mine)).to_contain_text(mine["reference"])
        await frames.settled()

        await move(api, mine["id"], "assign", {"assignee": colleague["id"]})

        await expect(case_row(page, mine)).to_have_count(0)
        await expect(page.locator("#no-cases")).to_be_visible()
        taken = [e for e in frames.events() if e["type"] == "complaint.status_changed"]
        assert (taken[-1]["data"]["agent_id"], taken[-1]["data"]["previous_agent_id"]) == (
            colleague["id"],
            agent["id"],
        )
        await expect(page.locator("#no-cases")).to_be_visible()
