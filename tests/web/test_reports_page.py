"""The reports page in a real browser: a range picked, the report shown and downloaded as CSV
and JSON, a range the service refuses named on its field, an agent told the reports are not
for them, a supervisor offered only their own site's agents, what the page says said again
after a switch of language, the page accessible, in both languages and on a phone."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from playwright.async_api import Locator, Page, Route, expect

from app.config import Settings
from app.main import create_app
from app.routing.reports_router import router as reports_router
from tests.complaints.test_registration import complaint_body, register
from tests.complaints.test_transitions import move
from tests.fixtures.factories import Api
from tests.ivr.telephony import centre, telephony_settings
from tests.ivr.test_flows_api import two_calls
from tests.routing.acd import contact, queue
from tests.web.conftest import NewPage, axe_violations, go_signed_out, open_signed_in, with_pages
from tests.web.test_narrow_screens import PHONE, SMALL_PHONE, fits

REPORTS = "/api/v1/reports/queues"


@pytest.fixture
def settings(db: str) -> Settings:
    """Settings that also take the IVR's Twilio webhooks, as the IVR's tests sign them."""
    return telephony_settings(db)


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    """The app with the pages and the routing reports (if it does not serve them yet)."""
    application = with_pages(create_app(settings))
    if not any(getattr(route, "path", None) == REPORTS for route in application.routes):
        application.include_router(reports_router)
    async with application.router.lifespan_context(application):
        yield application


async def reports_of(new_page: NewPage, user: dict[str, Any], locale: str = "en-GB") -> Page:
    page = await new_page(locale=locale)
    await open_signed_in(page, "/reports", user["username"])
    await expect(page.locator("#report-panel")).to_be_visible()
    return page


async def queue_names(api: Api) -> list[str]:
    answer = await api.get("/api/v1/queues", params={"limit": 100})
    return [q["name"] for q in answer.json()["items"]]


def matter(branch: str) -> dict[str, Any]:
    return {**complaint_body()["matter"], "branch": branch}


FIELDS = ("#interval-field", "#subject-field", "#period-field", "#by-field")


async def choose(page: Page, kind: str, *fields: str) -> None:
    """Choose the kind of report by its name: only ``fields`` of ``FIELDS`` are shown."""
    await page.get_by_role("radio", name=kind).check()
    for field in FIELDS:
        await expect(page.locator(field)).to_be_visible(visible=field in fields)


async def cells(table: Locator) -> list[list[str]]:
    """The table's rows, each as its cells' texts."""
    return [
        await row.locator("th, td").all_inner_texts()
        for row in await table.locator("tbody tr").all()
    ]


async def downloaded(page: Page, button: str) -> tuple[str, str]:
    """Click a download button: the file's suggested name and its text."""
    async with page.expect_download() as started:
        await page.locator(button).click()
    download = await started.value
    path = Path(await download.path())
    return download.suggested_filename, await asyncio.to_thread(path.read_text, "utf-8-sig")


class TestReports:
    async def test_a_queue_report_is_shown_and_downloaded_as_csv_and_json(
        self, api: Api, new_page: NewPage
    ) -> None:
        boss = await api.supervisor()
        cards = await queue(api, name="cards")
        await contact(api, cards["name"])
        await contact(api, cards["name"])
        page = await reports_of(new_page, boss)
        await page.locator("#report-interval").select_option("1d")
        await page.locator("#report-show").click()
        table = page.locator("#report-table")
        await expect(table.locator("thead")).to_contain_text("Offered")
        row = table.locator("tbody tr").filter(has_text="cards")
        await expect(row).to_have_count(1)
        offered = await table.locator("thead th").all_inner_texts()
        assert (await row.locator("th, td").all_inner_texts())[offered.index("Offered")] == "2"

        name, text = await downloaded(page, "#download-csv")
        assert name == "queues.csv"
        header, *lines = text.strip().splitlines()
        assert header.split(",")[:4] == ["bucket_start", "bucket_end", "queue_id", "queue"]
        assert any(",cards," in line for line in lines)

        name, text = await downloaded(page, "#download-json")
        assert name.endswith(".json")
        [answered] = [r for r in json.loads(text)["rows"] if r["queue"] == "cards"]
        assert answered["offered"] == 2

    async def test_an_agent_report_names_the_agents(self, api: Api, new_page: NewPage) -> None:
        boss = await api.supervisor()
        agent = await api.agent(name="Li Lei")
        await api.set_status(agent["id"], "available")
        page = await reports_of(new_page, boss)
        await page.get_by_label("Agents").check()
        await expect(page.locator("#report-subject-label")).to_have_text("Agent")
        options = page.locator("#report-subject option")
        await expect(options.filter(has_text="Li Lei")).to_have_count(1)
        await page.locator("#report-show").click()
        await expect(page.locator("#report-table thead")).to_contain_text("Occupancy %")
        await expect(page.locator("#report-table tbody")).to_contain_text("Li Lei")

    async def test_a_complaint_summary_is_grouped_named_in_the_pages_language_and_downloaded(
        self, api: Api, new_page: NewPage
    ) -> None:
        boss = await api.supervisor()
        await register(api, complaint_body())
        card = await register(api, complaint_body(matter=matter("Minhang")))
        await move(api, card["id"], "classify", {"categories": ["credit_card"], "severity": "low"})
        page = await reports_of(new_page, boss)
        await choose(page, "Complaints", "#period-field", "#by-field")
        await page.locator("#report-by").select_option("category")
        async with page.expect_request(re.compile(r"/complaints/reports/summary\?")) as sent:
            await page.locator("#report-show").click()
        asked = parse_qs(urlparse((await sent.value).url).query)
        zone = await page.evaluate("Intl.DateTimeFormat().resolvedOptions().timeZone")
        assert (asked["by"], asked["tz"]) == (["category"], [zone])  # the browser's midnights
        table = page.locator("#report-table")
        headings = table.locator("thead th")
        await expect(headings.first).to_have_text("From")
        names = await headings.all_inner_texts()
        assert names[2:4] == ["Category", "Registered"]
        assert "Resolved in time %" in names
        assert "Rejected (not a complaint)" in names
        row = table.locator("tbody tr").filter(has_text="Credit card")
        await expect(row).to_have_count(1)
        assert (await row.locator("th, td").all_inner_texts())[3] == "1"
        unsorted = table.locator("tbody tr").filter(has_text="Not classified yet")
        assert (await unsorted.locator("th, td").all_inner_texts())[3] == "1"

        await page.locator("#language").click()
        await expect(headings.nth(2)).to_have_text("类别")
        await expect(table.locator("tbody tr").filter(has_text="信用卡")).to_have_count(1)

        name, text = await downloaded(page, "#download-csv")
        assert name == "complaints-summary.csv"
        header, *lines = text.strip().splitlines()
        assert header.split(",")[:5] == ["period_start", "period_end", "by", "key", "registered"]
        assert any(",category,credit_card,1," in line for line in lines)

        await choose(page, "队列", "#interval-field", "#subject-field")

    async def test_the_root_causes_count_resolved_complaints_by_category_branch_and_unit(
        self, api: Api, new_page: NewPage
    ) -> None:
        handler = await api.agent()
        card = await register(api, complaint_body(matter=matter("Minhang")))
        await move(api, card["id"], "classify", {"categories": ["credit_card"], "severity": "low"})
        await move(api, card["id"], "assign", {"assignee": handler["id"]})
        await move(api, card["id"], "start")
        resolution = {
            "resolution": "refunded the second charge",
            "root_cause": "the terminal sent the payment twice",
            "corrective_action": "terminal firmware updated",
            "remedy": "refund",
            "upheld": True,
            "responsible_unit": "Card centre",
        }
        await move(api, card["id"], "resolve", resolution)
        await register(api, complaint_body())  # not resolved: not counted

        page = await reports_of(new_page, await api.supervisor())
        await choose(page, "Complaint causes")
        await page.locator("#report-show").click()
        table = page.locator("#report-table")
        await expect(table.locator("tbody tr")).to_have_count(4)
        names = await table.locator("thead th").all_inner_texts()
        assert names[:4] == ["Counted by", "Group", "Resolved", "Upheld"]
        assert [row[:4] for row in await cells(table)] == [
            ["All", "Every resolved complaint", "1", "1"],
            ["Category", "Credit card", "1", "1"],
            ["Branch", "Minhang", "1", "1"],
            ["Responsible unit", "Card centre", "1", "1"],
        ]
        await page.locator("#language").click()
        await expect(table.locator("thead")).to_contain_text("统计维度")
        await expect(table.locator("tbody")).to_contain_text("信用卡")
        await expect(table.locator("tbody")).to_contain_text("责任部门")
        name, text = await downloaded(page, "#download-json")
        assert re.fullmatch(r"causes-root-causes-\d{4}-\d\d-\d\d-\.json", name), name
        assert [r["resolved"] for r in json.loads(text)["rows"]] == [1, 1, 1, 1]

    async def test_the_ivr_outcomes_say_how_calls_left_the_menus_and_where_callers_hung_up(
        self, api: Api, client: AsyncClient, new_page: NewPage
    ) -> None:
        await centre(api)
        await two_calls(api, client)

        page = await reports_of(new_page, await api.supervisor())
        await choose(page, "IVR calls")
        await page.locator("#report-show").click()
        table = page.locator("#report-table")
        await expect(table.locator("caption")).to_contain_text("Calls started: 2.")
        assert await table.locator("thead th").all_inner_texts() == [
            "Outcome",
            "Calls",
            "Share of calls %",
        ]
        assert sorted(await cells(table)) == sorted(
            [
                ["Put through to a queue", "1", "50"],
                ["Hung up in the menus", "1", "50"],
                ["Hung up waiting in a queue", "0", "0"],
                ["Hung up at the menu node main", "1", "50"],
            ]
        )
        await page.locator("#language").click()
        await expect(table.locator("caption")).to_contain_text("来电数\uff1a2")
        await expect(table.locator("tbody")).to_contain_text("在菜单节点 main 挂机")
        name, text = await downloaded(page, "#download-csv")
        assert name == "ivr-outcomes.csv"
        assert "hung_up" in text

    async def test_the_page_opens_on_today_s_queues(self, api: Api, new_page: NewPage) -> None:
        boss = await api.supervisor()
        cards = await queue(api, name="cards")
        await contact(api, cards["name"])
        page = await reports_of(new_page, boss)
        await expect(page.get_by_label("Queues", exact=True)).to_be_checked()
        row = page.locator("#report-table tbody tr").filter(has_text="cards")
        await expect(row).to_have_count(1)

    async def test_a_range_the_service_refuses_is_named_on_its_field(
        self, api: Api, new_page: NewPage
    ) -> None:
        """The report shown before (today's, on opening) goes: the table is never one the
        form no longer asks for."""
        boss = await api.supervisor()
        page = await reports_of(new_page, boss)
        await expect(page.locator("#report-table")).to_be_visible()
        await page.locator("#report-from").fill("2026-11-20T10:00")
        await page.locator("#report-to").fill("2026-11-19T10:00")
        await page.locator("#report-show").click()
        await expect(page.locator("#report-problem")).to_contain_text("to: must be after `from`")
        await expect(page.locator("#report-to")).to_have_attribute("aria-invalid", "true")
        await expect(page.locator("#result")).to_be_hidden()

    async def test_an_empty_range_is_named_before_anything_is_sent(
        self, api: Api, new_page: NewPage
    ) -> None:
        boss = await api.supervisor()
        page = await reports_of(new_page, boss)
        await expect(page.locator("#report-table")).to_be_visible()  # today's, on opening
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url) if "/reports/" in r.url else None)
        await page.locator("#report-from").fill("")
        await page.locator("#download-csv").click()
        await expect(page.locator("#report-problem")).to_have_text("Still missing: From")
        await expect(page.locator("#report-from")).to_be_focused()
        assert requests == []


class TestAccess:
    async def test_without_a_session_the_page_goes_to_sign_in(self, new_page: NewPage) -> None:
        page = await new_page()
        await go_signed_out(page, "/reports")
        await expect(page).to_have_url(re.compile(r"/signin\?next=%2Freports$"))

    async def test_an_agent_is_told_the_reports_are_not_for_them(
        self, api: Api, new_page: NewPage
    ) -> None:
        agent = await api.agent()
        page = await new_page()
        await open_signed_in(page, "/reports", agent["username"])
        await expect(page.locator("#not-yours")).to_be_visible()
        await expect(page.locator("#report-panel")).to_be_hidden()


class TestPage:
    async def test_no_accessibility_violations(self, api: Api, new_page: NewPage) -> None:
        boss = await api.supervisor(name="Zhang Wei")
        for name in ("cards", "general"):
            await queue(api, name=name)
        for _ in range(3):
            await contact(api, "cards")
        page = await new_page()
        await page.set_viewport_size({"width": 1500, "height": 900})
        await open_signed_in(page, "/reports", boss["username"])
        await page.locator("#report-interval").select_option("1h")
        await page.locator("#report-show").click()
        await expect(page.locator("#report-table tbody tr").first).to_be_visible()
        # moderate too: landmark-unique (the table's region is not named as its section)
        assert await axe_violations(page, ("critical", "serious", "moderate")) == []

    async def test_a_chinese_browser_gets_the_page_in_chinese(
        self, api: Api, new_page: NewPage
    ) -> None:
        boss = await api.supervisor()
        page = await reports_of(new_page, boss, locale="zh-CN")
        await expect(page.locator("#report-heading")).to_have_text("按时间范围出具报表")
        await expect(page.locator("#download-csv")).to_have_text("下载 CSV")

    async def test_the_subject_and_every_queue_or_agent_follow_a_switch_of_language(
        self, api: Api, new_page: NewPage
    ) -> None:
        boss = await api.supervisor()
        await queue(api, name="cards")
        page = await reports_of(new_page, boss)
        every = page.locator('#report-subject option[value=""]')
        await expect(every).to_have_text("Every queue")
        await page.locator("#language").click()
        await expect(every).to_have_text("全部队列")
        await expect(page.locator("#report-subject-label")).to_have_text("队列")
        await page.locator('input[name="kind"][value="agents"]').check()
        await expect(every).to_have_text("全部坐席")
        await page.locator("#language").click()
        await expect(every).to_have_text("Every agent")
        await expect(page.locator("#report-subject-label")).to_have_text("Agent")


class TestWhoMayBeReportedOn:
    async def test_a_supervisor_is_offered_only_the_agents_of_their_site(
        self, api: Api, new_page: NewPage
    ) -> None:
        boss = await api.supervisor(name="Zhang Wei", site="shanghai")
        await api.agent(name="Li Lei", site="shanghai")
        await api.agent(name="Han Meimei", site="beijing")
        await api.supervisor(name="Wang Fang", site="beijing")
        await api.agent(name="Nobody's", site=None)
        page = await reports_of(new_page, boss)
        await page.locator('input[name="kind"][value="agents"]').check()
        options = page.locator("#report-subject option")
        await expect(options.filter(has_text="Li Lei")).to_have_count(1)
        await expect(options.filter(has_text="Zhang Wei")).to_have_count(1)
        names = await options.all_inner_texts()
        assert not [n for n in names if "beijing" in n or "Nobody" in n], names

    async def test_an_admin_is_offered_every_agent(self, api: Api, new_page: NewPage) -> None:
        admin = await api.agent(name="Root", role="admin", site=None)
        await api.agent(name="Li Lei", site="shanghai")
        await api.agent(name="Han Meimei", site="beijing")
        page = await reports_of(new_page, admin)
        await page.locator('input[name="kind"][value="agents"]').check()
        options = page.locator("#report-subject option")
        await expect(options.filter(has_text="Li Lei")).to_have_count(1)
        await expect(options.filter(has_text="Han Meimei")).to_have_count(1)

    async def test_a_refused_agent_is_said_plainly_in_the_pages_language(
        self, api: Api, new_page: NewPage
    ) -> None:
        boss = await api.supervisor(site="shanghai")
        moved = await api.agent(name="Li Lei", site="shanghai")
        page = await reports_of(new_page, boss)
        await page.locator('input[name="kind"][value="agents"]').check()
        await page.locator("#report-subject").select_option(label="Li Lei (shanghai)")
        # Moved to another site after the page listed them: the service refuses the report.
        response = await api.patch(f"/api/v1/agents/{moved['id']}", {"site": "beijing"})
        assert response.status_code == 200, response.text
        await page.locator("#report-show").click()
        problem = page.locator("#report-problem")
        await expect(problem).to_have_text(
            "You may see reports only on the agents of your own site, and this one is not."
        )
        await page.locator("#language").click()
        await expect(problem).to_have_text("您只能查看本站点坐席的报表，此坐席不在您的站点。")  # noqa: RUF001


class TestTheListsToChooseFrom:
    async def test_a_switch_of_kind_shows_only_the_list_of_the_kind_chosen_last(
        self, api: Api, new_page: NewPage
    ) -> None:
        boss = await api.supervisor(name="Zhang Wei", site="shanghai")
        await queue(api, name="cards")
        page = await reports_of(new_page, boss)
        options = page.locator("#report-subject option")
        await expect(options.filter(has_text="cards")).to_have_count(1)
        release = asyncio.Event()

        async def held(route: Route) -> None:
            await release.wait()
            await route.continue_()

        await page.route("**/api/v1/agents?*", held)
        await page.locator('input[name="kind"][value="agents"]').check()
        await page.locator('input[name="kind"][value="queues"]').check()
        await expect(options.filter(has_text="cards")).to_have_count(1)
        release.set()  # the agents' list, asked for first, answers last
        await page.wait_for_load_state("networkidle")
        await expect(options.filter(has_text="Zhang Wei")).to_have_count(0)
        await expect(options).to_have_count(1 + len(await queue_names(api)))

    async def test_a_list_that_cannot_be_read_is_said_and_every_queue_still_offered(
        self, api: Api, new_page: NewPage
    ) -> None:
        boss = await api.supervisor()
        page = await new_page(locale="en-GB")

        async def unavailable(route: Route) -> None:
            body = {"error": "ServiceUnavailable", "detail": "the database is unavailable"}
            await route.fulfill(status=503, json=body)

        await open_signed_in(
            page, "/reports", boss["username"], routes={"**/api/v1/queues?*": unavailable}
        )
        problem = page.locator("#report-subject-problem")
        await expect(problem).to_have_text(
            "The list of queues could not be read (the database is unavailable). "
            "A report on every queue can still be shown."
        )
        await expect(page.locator("#report-subject option")).to_have_text(["Every queue"])
        await page.locator("#language").click()
        await expect(problem).to_have_text(
            "无法读取队列列表（the database is unavailable）。仍可查看全部队列的报表。"  # noqa: RUF001
        )
        await page.unroute("**/api/v1/queues?*")
        await page.locator('input[name="kind"][value="agents"]').check()
        await expect(problem).to_have_text("")

    async def test_a_list_longer_than_the_page_offers_is_said_to_be_cut(
        self, api: Api, new_page: NewPage
    ) -> None:
        """A centre with more queues than the choice lists (5,000) is told the list is cut,
        not shown a short list as if it were whole."""
        boss = await api.supervisor()
        page = await new_page(locale="en-GB")
        asked: list[str] = []

        async def endless(route: Route) -> None:
            n = len(asked)
            asked.append(route.request.url)
            items = [
                {"id": n * 100 + i + 1, "name": f"Queue {n * 100 + i + 1}"} for i in range(100)
            ]
            await route.fulfill(json={"items": items, "next_cursor": f"after-{n}"})

        await open_signed_in(
            page, "/reports", boss["username"], routes={"**/api/v1/queues?*": endless}
        )
        problem = page.locator("#report-subject-problem")
        await expect(problem).to_have_text(
            "Only the first 5000 queues are listed. The report on every queue covers them all."
        )
        await expect(page.locator("#report-subject option")).to_have_count(1 + 5000)
        assert len(asked) == 50
        await page.locator("#language").click()
        await expect(problem).to_have_text("仅列出前 5000 个队列。全部队列的报表包含所有队列。")


class TestLanguageSwitch:
    async def test_what_is_missing_is_said_again_in_the_language_switched_to(
        self, api: Api, new_page: NewPage
    ) -> None:
        boss = await api.supervisor()
        page = await reports_of(new_page, boss)
        await page.locator("#report-from").fill("")
        await page.locator("#report-show").click()
        problem = page.locator("#report-problem")
        await expect(problem).to_have_text("Still missing: From")
        await page.locator("#language").click()
        await expect(problem).to_have_text("尚缺：开始时间")  # noqa: RUF001
        await page.locator("#language").click()
        await expect(problem).to_have_text("Still missing: From")

    async def test_the_download_is_said_again_in_the_language_switched_to(
        self, api: Api, new_page: NewPage
    ) -> None:
        boss = await api.supervisor()
        page = await reports_of(new_page, boss)
        name, _ = await downloaded(page, "#download-csv")
        done = page.locator("#report-done")
        await expect(done).to_have_text(f"Downloaded {name}.")
        await page.locator("#language").click()
        await expect(done).to_have_text(f"已下载 {name}。")

    async def test_a_new_message_replaces_the_one_said_before(
        self, api: Api, new_page: NewPage
    ) -> None:
        boss = await api.supervisor()
        page = await reports_of(new_page, boss)
        await page.locator("#report-from").fill("")
        await page.locator("#report-show").click()
        await expect(page.locator("#report-problem")).to_have_text("Still missing: From")
        await page.locator("#preset-today").click()
        await downloaded(page, "#download-json")
        await page.locator("#language").click()
        await expect(page.locator("#report-done")).to_contain_text("已下载")
        await expect(page.locator("#report-problem")).to_have_text("")


class TestThePhone:
    async def test_the_choices_fit_a_320_px_screen_in_both_languages(
        self, api: Api, new_page: NewPage
    ) -> None:
        boss = await api.supervisor()
        page = await new_page()
        await page.set_viewport_size(SMALL_PHONE)
        await open_signed_in(page, "/reports", boss["username"])
        await expect(page.locator("#report-panel")).to_be_visible()
        await fits(page, SMALL_PHONE)
        await page.locator('input[name="kind"][value="agents"]').check()
        await fits(page, SMALL_PHONE)
        await page.locator("#language").click()
        await expect(page.locator("#report-subject-label")).to_have_text("坐席")
        await fits(page, SMALL_PHONE)

    async def test_the_page_and_its_reports_fit_a_390_px_screen(
        self, api: Api, new_page: NewPage
    ) -> None:
        boss = await api.supervisor(name="Zhang Wei")
        long_named = await api.agent(name="Ouyang Xiaoming the Longest Named Agent of the Site")
        await api.set_status(long_named["id"], "available")
        cards = await queue(api, name="cards-and-accounts-for-everyone-on-the-phone")
        await contact(api, cards["name"])
        page = await new_page()
        await page.set_viewport_size(PHONE)
        await open_signed_in(page, "/reports", boss["username"])
        await expect(page.locator("#report-panel")).to_be_visible()
        await fits(page)
        await page.locator("#report-interval").select_option("1h")
        await page.locator("#report-show").click()
        await expect(page.locator("#report-table tbody tr").first).to_be_visible()
        await fits(page)
        await page.locator('input[name="kind"][value="agents"]').check()
        longest = page.locator("#report-subject option").filter(has_text="Ouyang")
        await expect(longest).to_have_count(1)
        await fits(page)
        await page.locator("#report-show").click()
        await expect(page.locator("#report-table thead")).to_contain_text("Occupancy %")
        await fits(page)
        await page.locator("#language").click()
        await expect(page.locator("#report-table thead")).to_contain_text("占用率 %")
        await fits(page)
