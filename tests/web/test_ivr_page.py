"""The IVR page in a real browser: each flow version drawn from its document, an upload the
service refuses drawn with its problems on their nodes (and nothing stored), a good upload
listed and activated, what an agent may not do not offered, hostile text shown as text."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any, get_args

import pytest
import yaml
from playwright.async_api import Locator, Page, Route, expect

from app.ivr.document import Node
from app.ivr.flow import DEMO_FLOWS
from tests.fixtures.factories import Api
from tests.fixtures.factories import expect as expect_status
from tests.routing.acd import queue
from tests.web.conftest import STATIC, NewPage, axe_violations, go_signed_out, open_signed_in

CONSUMER_LINE = DEMO_FLOWS / "consumer_line.yaml"
# The words of a table's cells that are broken across two lines or more.
BROKEN_WORDS = """(table) => {
  const broken = [];
  for (const cell of table.querySelectorAll("th, td")) {
    const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      for (const word of node.data.matchAll(/\\S+/g)) {
        const range = document.createRange();
        range.setStart(node, word.index);
        range.setEnd(node, word.index + word[0].length);
        const lines = new Set([...range.getClientRects()].map((r) => Math.round(r.top)));
        if (lines.size > 1) broken.push(word[0]);
      }
    }
  }
  return broken;
}"""
PAGE_OVERFLOW = "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"


async def catalogue(api: Api) -> None:
    """The queues and skills the demo flows name."""
    for skill in ("credit_card", "complaints"):
        expect_status(await api.post("/api/v1/skills", {"name": skill, "description": "demo"}), 201)
    for name in ("credit-cards", "complaints", "general"):
        await queue(api, name=name, channels=["voice", "callback"])


async def uploaded(api: Api, path: Path = CONSUMER_LINE) -> dict[str, Any]:
    headers = {"Content-Type": "application/yaml"}
    answer = await api.client.post(
        "/api/v1/ivr/flows",
        content=await asyncio.to_thread(path.read_bytes),
        headers={**api.headers, **headers},
    )
    return expect_status(answer, 201)  # type: ignore[no-any-return]


async def flow_count(api: Api) -> int:
    return len(expect_status(await api.get("/api/v1/ivr/flows"), 200)["items"])


def refused_draft() -> str:
    """consumer_line as its next version with two mistakes on two nodes: a menu option and the
    caller lookup's ``found`` branch lead to no node."""
    document = yaml.safe_load(CONSUMER_LINE.read_text(encoding="utf-8"))
    document["version"] += 1
    document["nodes"]["main"]["options"][0]["next"] = "nowhere"
    document["nodes"]["identify_caller"]["found"] = "no_such_menu"
    return yaml.safe_dump(document, allow_unicode=True, sort_keys=False)


def node_types() -> list[str]:
    """The node types a flow document may have (app.ivr.document's ``Node``)."""
    [union, *_] = get_args(Node)
    return [get_args(model.model_fields["type"].annotation)[0] for model in get_args(union)]


def texts(language: str) -> dict[str, str]:
    path = STATIC / "i18n" / f"ivr.{language}.json"
    return json.loads(path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


async def top(locator: Locator) -> float:
    box = await locator.bounding_box()
    assert box is not None
    return box["y"]


async def ivr_of(new_page: NewPage, user: dict[str, Any], locale: str = "en-GB") -> Page:
    page = await new_page(locale=locale)
    await open_signed_in(page, "/ivr", user["username"])
    return page


async def upload_text(page: Page, text: str) -> None:
    await page.locator("#flow-text").fill(text)
    await page.locator("#upload-submit").click()


class TestDiagram:
    async def test_a_flow_is_drawn_from_its_document(self, api: Api, new_page: NewPage) -> None:
        await catalogue(api)
        flow = await uploaded(api)
        boss = await api.supervisor()
        page = await ivr_of(new_page, boss)
        await expect(page.locator("#diagram-heading")).to_have_text("consumer_line version 2")
        nodes = page.locator("#diagram g.node")
        await expect(nodes).to_have_count(len(flow["document"]["nodes"]))
        start = page.locator(f'#diagram g.node[data-node="{flow["document"]["start"]}"]')
        await expect(start).to_have_class(re.compile(r"\bstart\b"))
        edge = page.locator('#diagram g.edge[data-from="main"][data-to="card_complaints"]')
        await expect(edge.locator("text")).to_have_text("key 1")
        row = page.locator('#nodes tr[data-node="main"]')
        await expect(row).to_contain_text("key 1 → card_complaints")
        await expect(page.locator("#diagram g.node.invalid")).to_have_count(0)

    async def test_a_refused_upload_shows_each_problem_on_its_node_and_stores_nothing(
        self, api: Api, new_page: NewPage
    ) -> None:
        await catalogue(api)
        await uploaded(api)
        boss = await api.supervisor()
        page = await ivr_of(new_page, boss)
        await upload_text(page, refused_draft())
        heading = page.locator("#diagram-heading")
        await expect(heading).to_contain_text("Refused draft: consumer_line version 3")
        main = page.locator('#diagram g.node[data-node="main"]')
        await expect(main).to_have_class(re.compile(r"\binvalid\b"))
        await expect(main.locator(".problem-count")).to_have_text(re.compile(r"^[1-9]\d* problem"))
        await expect(page.locator('#diagram g.node.missing[data-node="nowhere"]')).to_have_count(1)
        await expect(page.locator('#nodes tr[data-node="main"] .problems')).to_contain_text(
            "options[0].next"
        )
        identify = page.locator('#diagram g.node[data-node="identify_caller"]')
        await expect(identify).to_have_class(re.compile(r"\binvalid\b"))
        problems = page.locator('#nodes tr[data-node="identify_caller"] .problems')
        await expect(problems).to_contain_text("found")
        broken = page.locator('#diagram g.edge.invalid[data-to="no_such_menu"]')
        await expect(broken).to_have_count(1)
        await expect(page.locator("#upload-problem")).to_contain_text("the flow cannot be used")
        assert await flow_count(api) == 1
        await page.locator('#nodes tr[data-node="nowhere"] button').click()
        await expect(page.locator('#diagram g.node.selected[data-node="nowhere"]')).to_have_count(1)

    async def test_a_good_upload_is_listed_and_can_be_activated(
        self, api: Api, new_page: NewPage
    ) -> None:
        await catalogue(api)
        boss = await api.supervisor()
        page = await ivr_of(new_page, boss)
        await expect(page.locator("#flows")).to_contain_text("No flow has been uploaded.")
        await page.locator("#flow-file").set_input_files(str(CONSUMER_LINE))
        await expect(page.locator("#flow-text")).to_have_value(re.compile("name: consumer_line"))
        await page.locator("#upload-submit").click()
        await expect(page.locator("#diagram-heading")).to_have_text("consumer_line version 2")
        listed = page.locator('#flows tr[data-name="consumer_line"]')
        await expect(listed).to_contain_text("not active")
        await page.locator("#activate").click()
        await expect(listed.locator(".badge.ok")).to_have_text("+864006695561")
        [stored] = expect_status(await api.get("/api/v1/ivr/flows"), 200)["items"]
        assert stored["active_numbers"] == ["+864006695561"]

    @pytest.mark.parametrize(("locale", "active"), [("en-GB", "Active"), ("zh-CN", "已启用")])
    async def test_the_active_version_is_marked_active_and_not_offered_for_activation(
        self, api: Api, new_page: NewPage, locale: str, active: str
    ) -> None:
        await catalogue(api)
        flow = await uploaded(api)
        expect_status(await api.post(f"/api/v1/ivr/flows/{flow['id']}/activate"), 200)
        boss = await api.supervisor()
        page = await ivr_of(new_page, boss, locale=locale)
        await expect(page.locator("#active-mark")).to_have_text(active)
        await expect(page.locator("#activation")).to_contain_text("+864006695561")
        await expect(page.locator("#activate")).to_have_count(0)

    @pytest.mark.parametrize(
        ("draft", "heading", "title"),
        [
            (
                {"start": "a", "nodes": {"a": {"type": "hangup"}}},
                "Refused draft: (no name) version 1 — the problems are marked on their nodes",
                "Diagram of the flow (no name) version 1",
            ),
            (
                {"name": "x", "version": {"major": 2}, "start": "a", "nodes": {"a": {}}},
                "Refused draft: x, without a usable version number — the problems are marked"
                " on their nodes",
                "Diagram of the flow x, without a usable version number",
            ),
        ],
    )
    async def test_a_draft_without_a_name_or_a_usable_version_is_headed_in_words(
        self, api: Api, new_page: NewPage, draft: dict[str, Any], heading: str, title: str
    ) -> None:
        boss = await api.supervisor()
        page = await ivr_of(new_page, boss)
        await upload_text(page, yaml.safe_dump(draft))
        await expect(page.locator("#diagram-heading")).to_have_text(heading)
        await expect(page.locator("#diagram-title")).to_have_text(title)
        assert "?" not in await page.locator("#diagram-panel").inner_text()

    async def test_a_hostile_name_in_a_refused_draft_is_shown_as_text(
        self, api: Api, new_page: NewPage
    ) -> None:
        boss = await api.supervisor()
        page = await ivr_of(new_page, boss)
        dialogs: list[str] = []
        page.on("dialog", lambda dialog: dialogs.append(dialog.message))
        hostile = '<img src=x onerror="alert(1)">'
        draft = {"name": "x", "start": hostile, "nodes": {hostile: {"type": "hangup"}}}
        await upload_text(page, yaml.safe_dump(draft))
        node = page.locator("#diagram g.node").filter(has_text=hostile)
        await expect(node).to_have_count(1)
        await expect(page.locator("#nodes")).to_contain_text(hostile)
        assert await page.locator("main img").count() == 0
        assert dialogs == []

    @pytest.mark.parametrize(
        ("locale", "unknown", "untyped"),
        [
            ("en-GB", "unknown type “queue”", "no type given"),
            ("zh-CN", "未知类型“queue”", "未指定类型"),
        ],
    )
    async def test_a_draft_s_unknown_or_missing_node_type_is_named_in_words(
        self, api: Api, new_page: NewPage, locale: str, unknown: str, untyped: str
    ) -> None:
        boss = await api.supervisor()
        page = await ivr_of(new_page, boss, locale=locale)
        nodes = {"a": {"type": "queue", "queue": "general"}, "b": {"next": "a"}, "c": None}
        await upload_text(
            page, yaml.safe_dump({"name": "x", "version": 1, "start": "a", "nodes": nodes})
        )
        await expect(page.locator("#diagram g.node.invalid")).to_have_count(3)
        for name, words in (("a", unknown), ("b", untyped), ("c", untyped)):
            await expect(page.locator(f'#nodes tr[data-node="{name}"] td').first).to_have_text(
                words
            )
            box = page.locator(f'#diagram g.node[data-node="{name}"] text').nth(1)
            await expect(box).to_have_text(words)
        assert not re.search(r"\bivr\.[a-z]", await page.locator("main").inner_text())


class TestTexts:
    def test_both_languages_have_the_same_texts(self) -> None:
        assert texts("en").keys() == texts("zh-CN").keys()

    def test_the_page_knows_every_node_type_of_a_flow_document(self) -> None:
        source = (STATIC / "ivr" / "diagram.js").read_text(encoding="utf-8")
        listed = re.search(r"const TYPES = new Set\(\[([^\]]*)\]\)", source)
        assert listed is not None
        assert sorted(re.findall(r'"([a-z_]+)"', listed.group(1))) == sorted(node_types())

    @pytest.mark.parametrize("language", ["en", "zh-CN"])
    def test_every_node_type_the_page_can_show_has_a_text(self, language: str) -> None:
        shown = [*node_types(), "unknown", "none"]
        assert len(shown) == 12
        assert [kind for kind in shown if f"ivr.type.{kind}" not in texts(language)] == []


ONE_FLOW = re.compile(r"/api/v1/ivr/flows/\d+$")
THE_LIST = re.compile(r"/api/v1/ivr/flows\?")
ACTIVATION = re.compile(r"/api/v1/ivr/flows/\d+/activate$")
NOT_CURRENT = "Not current: shown as it was before the error above"


async def unavailable(route: Route) -> None:
    await route.fulfill(status=503, json={"error": "Unavailable", "detail": "try again soon"})


async def taken(route: Route) -> None:
    await route.fulfill(status=409, json={"error": "Conflict", "detail": "someone was quicker"})


def same_version_other_document() -> str:
    """consumer_line version 2 again, changed: a 409 (the version is taken)."""
    document = yaml.safe_load(CONSUMER_LINE.read_text(encoding="utf-8"))
    document["nodes"]["main"]["options"][0]["key"] = "5"
    return yaml.safe_dump(document, allow_unicode=True, sort_keys=False)


class TestAfterAnError:
    @pytest.mark.parametrize(
        "again", [same_version_other_document(), '{"name": "x", '], ids=["taken", "unreadable"]
    )
    async def test_an_upload_refused_otherwise_drops_the_earlier_refused_draft(
        self, api: Api, new_page: NewPage, again: str
    ) -> None:
        await catalogue(api)
        await uploaded(api)
        boss = await api.supervisor()
        page = await ivr_of(new_page, boss)
        await upload_text(page, refused_draft())
        heading = page.locator("#diagram-heading")
        await expect(heading).to_contain_text("Refused draft: consumer_line version 3")
        await upload_text(page, again)
        await expect(heading).to_have_text("consumer_line version 2")
        await expect(page.locator("#diagram g.node.invalid")).to_have_count(0)
        await expect(page.locator("#diagram g.node.missing")).to_have_count(0)
        await expect(page.locator("#upload-problem")).not_to_be_empty()

    async def test_a_version_that_cannot_be_loaded_leaves_the_one_shown_marked_not_current(
        self, api: Api, new_page: NewPage
    ) -> None:
        await catalogue(api)
        await uploaded(api)
        boss = await api.supervisor()
        page = await ivr_of(new_page, boss)
        panel = page.locator("#diagram-panel")
        await expect(panel.locator("g.node").first).to_be_visible()
        await expect(page.locator("#diagram-panel-stale")).to_be_hidden()
        await page.route(ONE_FLOW, unavailable)
        await page.locator('#flows tr[data-name="consumer_line"] button').click()
        await expect(page.locator("#errors")).to_contain_text("try again soon")
        await expect(panel).to_have_class(re.compile(r"\bstale\b"))
        await expect(page.locator("#diagram-panel-stale")).to_contain_text(NOT_CURRENT)
        await page.unroute(ONE_FLOW, unavailable)
        await page.locator('#flows tr[data-name="consumer_line"] button').click()
        await expect(page.locator("#diagram-panel-stale")).to_be_hidden()
        await expect(panel).not_to_have_class(re.compile(r"\bstale\b"))
        await expect(page.locator("#errors")).to_be_empty()

    async def test_a_refused_activation_shows_what_is_stored_now(
        self, api: Api, new_page: NewPage
    ) -> None:
        await catalogue(api)
        flow = await uploaded(api)
        boss = await api.supervisor()
        page = await ivr_of(new_page, boss)
        await expect(page.locator("#activate")).to_be_visible()
        expect_status(await api.post(f"/api/v1/ivr/flows/{flow['id']}/activate"), 200)
        await page.route(ACTIVATION, taken)
        await page.locator("#activate").click()
        await expect(page.locator("#errors")).to_contain_text("someone was quicker")
        await expect(page.locator("#active-mark")).to_be_visible()
        await expect(page.locator("#activate")).to_have_count(0)
        listed = page.locator('#flows tr[data-name="consumer_line"] .badge.ok')
        await expect(listed).to_have_text("+864006695561")
        await expect(page.locator(".stale-note")).to_have_count(2)
        await expect(page.locator(".stale-note:visible")).to_have_count(0)

    async def test_after_a_refused_activation_what_cannot_be_reloaded_is_marked_not_current(
        self, api: Api, new_page: NewPage
    ) -> None:
        await catalogue(api)
        await uploaded(api)
        boss = await api.supervisor()
        page = await ivr_of(new_page, boss)
        await expect(page.locator("#activate")).to_be_visible()
        await page.route(ACTIVATION, taken)
        await page.route(THE_LIST, unavailable)
        await page.locator("#activate").click()
        await expect(page.locator("#errors")).to_contain_text("someone was quicker")
        await expect(page.locator("#errors")).to_contain_text("try again soon")
        for panel in ("#flows-panel", "#diagram-panel"):
            await expect(page.locator(panel)).to_have_class(re.compile(r"\bstale\b"))
            await expect(page.locator(f"{panel}-stale")).to_contain_text(NOT_CURRENT)
        assert await axe_violations(page, ("critical", "serious", "moderate")) == []


class TestAccess:
    async def test_without_a_session_the_page_goes_to_sign_in(self, new_page: NewPage) -> None:
        page = await new_page()
        await go_signed_out(page, "/ivr")
        await expect(page).to_have_url(re.compile(r"/signin\?next=%2Fivr$"))

    async def test_an_agent_sees_the_diagrams_but_no_upload_or_activation(
        self, api: Api, new_page: NewPage
    ) -> None:
        await catalogue(api)
        await uploaded(api)
        agent = await api.agent()
        page = await ivr_of(new_page, agent)
        await expect(page.locator("#diagram g.node").first).to_be_visible()
        await expect(page.locator("#upload-panel")).to_be_hidden()
        await expect(page.locator("#activate")).to_have_count(0)


class TestPage:
    async def test_no_accessibility_violations(self, api: Api, new_page: NewPage) -> None:
        await catalogue(api)
        await uploaded(api)
        boss = await api.supervisor(name="Zhang Wei")
        page = await new_page()
        await page.set_viewport_size({"width": 1500, "height": 1000})
        await open_signed_in(page, "/ivr", boss["username"])
        await upload_text(page, refused_draft())
        await expect(page.locator("#diagram g.node.invalid").first).to_be_visible()
        assert await axe_violations(page, ("critical", "serious", "moderate")) == []

    @pytest.mark.parametrize("width", [390, 1280, 1500])
    async def test_the_tables_keep_their_words_whole_on_a_narrow_screen_and_a_wide_one(
        self, api: Api, new_page: NewPage, width: int
    ) -> None:
        await catalogue(api)
        for path in sorted(CONSUMER_LINE.parent.glob("*.yaml")):  # the demo's: long names
            await uploaded(api, path)
        boss = await api.supervisor()
        page = await new_page()
        await page.set_viewport_size({"width": width, "height": 900})
        await open_signed_in(page, "/ivr", boss["username"])
        await expect(page.locator('#nodes tr[data-node="main"]')).to_be_visible()
        for table in ("#flows", "#nodes"):
            assert await page.locator(table).evaluate(BROKEN_WORDS) == [], table
        assert await page.evaluate(PAGE_OVERFLOW) <= 0
        if width > 1000:  # a laptop's or a wide screen: every column in sight, nothing to scroll
            flows = page.locator('section[aria-labelledby="flows-heading"]')
            side_by_side = await top(flows) == await top(page.locator("#upload-panel"))
            assert side_by_side is (width >= 1440)
            scrolls = "(table) => table.parentElement.scrollWidth > table.parentElement.clientWidth"
            for table in ("#flows", "#nodes"):
                assert not await page.locator(table).evaluate(scrolls), table

    async def test_a_chinese_browser_gets_the_page_in_chinese(
        self, api: Api, new_page: NewPage
    ) -> None:
        await catalogue(api)
        await uploaded(api)
        boss = await api.supervisor()
        page = await ivr_of(new_page, boss, locale="zh-CN")
        await expect(page.locator("#diagram-heading")).to_have_text("consumer_line 第 2 版")
        main = page.locator('#nodes tr[data-node="main"]')
        await expect(main).to_contain_text("按 1 → card_complaints")
