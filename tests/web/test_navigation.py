"""Getting around in a real browser: the service's own address leads to the console, and the
bar links the pages of the signed-in role (the API still decides what each page shows)."""

from __future__ import annotations

import re

from playwright.async_api import expect

from tests.fixtures.factories import Api
from tests.web.conftest import NewPage, go_signed_out, open_signed_in, sign_in

AGENT_PAGES = ["Console", "Complaint desk", "IVR flows"]
SUPERVISOR_PAGES = ["Console", "Complaint desk", "Wallboard", "Reports", "IVR flows"]


class TestHome:
    async def test_the_service_s_address_leads_to_sign_in_then_to_the_console(
        self, api: Api, new_page: NewPage
    ) -> None:
        agent = await api.agent(name="Li Lei")
        page = await new_page()
        await go_signed_out(page, "/")
        await expect(page).to_have_url(re.compile(r"/signin\?next=%2Fconsole$"))
        await sign_in(page, agent["username"])
        await expect(page).to_have_url(re.compile(r"/console$"))
        await expect(page.locator("#who")).to_have_text("Li Lei (agent)")

    async def test_a_link_into_a_page_survives_the_sign_in(
        self, api: Api, new_page: NewPage
    ) -> None:
        agent = await api.agent()
        page = await new_page()
        await page.goto("/desk#new")
        await expect(page).to_have_url(re.compile(r"/signin\?next=%2Fdesk%23new$"))
        await sign_in(page, agent["username"])
        await expect(page).to_have_url(re.compile(r"/desk#new$"))


class TestLinks:
    async def test_an_agent_is_offered_the_pages_of_an_agent_the_one_shown_marked(
        self, api: Api, new_page: NewPage
    ) -> None:
        agent = await api.agent()
        page = await new_page()
        await open_signed_in(page, "/console", agent["username"])
        await expect(page.locator("#pages a")).to_have_text(AGENT_PAGES)
        current = page.locator('#pages a[aria-current="page"]')
        await expect(current).to_have_text("Console")
        await expect(current).to_have_count(1)
        await expect(page.get_by_role("navigation", name="Pages")).to_be_visible()

    async def test_a_supervisor_follows_a_link_and_the_new_page_is_the_one_marked(
        self, api: Api, new_page: NewPage
    ) -> None:
        boss = await api.supervisor()
        page = await new_page()
        await open_signed_in(page, "/desk", boss["username"])
        await expect(page.locator("#pages a")).to_have_text(SUPERVISOR_PAGES)
        await page.get_by_role("link", name="Wallboard").click()
        await expect(page).to_have_url(re.compile(r"/wallboard$"))
        current = page.locator('#pages a[aria-current="page"]')
        await expect(current).to_have_text("Wallboard")
        await expect(current).to_have_count(1)

    async def test_the_links_follow_the_language(self, api: Api, new_page: NewPage) -> None:
        boss = await api.supervisor()
        page = await new_page()
        await open_signed_in(page, "/reports", boss["username"])
        await expect(page.locator("#pages a")).to_have_text(SUPERVISOR_PAGES)
        await page.locator("#language").click()
        await expect(page.locator("#pages a")).to_have_text(
            ["坐席工作台", "投诉受理台", "监控大屏", "报表", "IVR 流程"]
        )
        await expect(page.get_by_role("navigation", name="页面")).to_be_visible()

    async def test_a_public_page_has_no_links(self, new_page: NewPage) -> None:
        page = await new_page()
        await page.goto("/status")
        await expect(page.locator("#language")).to_be_visible()
        await expect(page.locator("#pages")).to_have_count(0)
