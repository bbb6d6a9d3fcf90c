"""The pages on a phone (390 px wide): nothing widens the page past the screen (a wide table
scrolls inside its own box), and the bar leaves most of the first screen to the page."""

from __future__ import annotations

from playwright.async_api import Page, ViewportSize, expect

from tests.complaints.test_registration import complaint_body, register
from tests.complaints.test_transitions import move
from tests.fixtures.factories import Api
from tests.routing.acd import queue
from tests.web.conftest import NewPage, open_signed_in

PHONE: ViewportSize = {"width": 390, "height": 844}
SMALL_PHONE: ViewportSize = {"width": 320, "height": 568}
# What sticks out past the screen's right edge, to name it when the page is too wide.
STICKING_OUT = """() => [...document.querySelectorAll('body *')]
  .filter((e) => e.getBoundingClientRect().right > window.innerWidth + 1)
  .filter((e) => !e.closest('.scroll, .grid > .panel, [data-scrolls]'))
  .slice(0, 5).map((e) => `${e.tagName.toLowerCase()}#${e.id}.${e.className}`)"""


async def phone_page(new_page: NewPage, path: str, username: str) -> Page:
    page = await new_page()
    await page.set_viewport_size(PHONE)
    await open_signed_in(page, path, username)
    return page


async def fits(page: Page, screen: ViewportSize = PHONE) -> None:
    """The page is no wider than the screen; what sticks out scrolls inside its own box."""
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert (width, await page.evaluate(STICKING_OUT)) == (screen["width"], [])


class TestThePhone:
    async def test_the_desk_list_case_and_registration_fit(
        self, api: Api, new_page: NewPage
    ) -> None:
        boss = await api.supervisor()
        done = await register(api, complaint_body())
        await move(api, done["id"], "assign", {"assignee": boss["id"]})
        page = await phone_page(new_page, "/desk", boss["username"])
        await expect(page.locator("#complaints tbody tr")).to_have_count(1)
        await fits(page)
        await page.goto(f"/desk#case/{done['id']}")
        await expect(page.locator('#clocks tr[data-clock="resolution"]')).to_be_visible()
        await fits(page)
        await page.goto("/desk#new")
        await expect(page.locator("#register")).to_be_visible()
        await fits(page)

    async def test_the_console_with_cases_fits(self, api: Api, new_page: NewPage) -> None:
        agent = await api.agent()
        done = await register(api, complaint_body())
        await move(api, done["id"], "assign", {"assignee": agent["id"]})
        page = await phone_page(new_page, "/console", agent["username"])
        await expect(page.locator("#cases-body tr")).to_have_count(1)
        await fits(page)

    async def test_the_wallboard_fits(self, api: Api, new_page: NewPage) -> None:
        boss = await api.supervisor()
        for name in ("cards", "general"):
            await queue(api, name=name)
        page = await phone_page(new_page, "/wallboard", boss["username"])
        await expect(page.locator("#overall-figures")).to_contain_text("no contacts yet")
        await expect(page.locator('#queues tr[data-queue="general"]')).to_be_visible()
        await fits(page)
        await page.set_viewport_size(SMALL_PHONE)
        await fits(page, SMALL_PHONE)

    async def test_a_long_name_in_one_word_wraps_in_the_bar(
        self, api: Api, new_page: NewPage
    ) -> None:
        agent = await api.agent(
            name="Wolfeschlegelsteinhausenbergerdorffvoralternwarengewissenhaft"
        )
        page = await phone_page(new_page, "/desk", agent["username"])
        await expect(page.locator("#who")).to_contain_text("Wolfeschlegel")
        await fits(page)

    async def test_the_bar_takes_under_a_fifth_of_the_first_screen(
        self, api: Api, new_page: NewPage
    ) -> None:
        boss = await api.supervisor()  # the longest bar: every page's link
        page = await phone_page(new_page, "/desk", boss["username"])
        await expect(page.locator("#pages a")).to_have_count(5)
        box = await page.locator("#bar").bounding_box()
        assert box is not None
        assert box["height"] < PHONE["height"] / 5
