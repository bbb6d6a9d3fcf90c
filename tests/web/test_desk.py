"""The complaint desk in a real browser: registration on the phone (missing facts named before
it is sent, the classifier's suggestion shown and never forced), a case's clocks, the moves a
role may make, notes and files, the list's filters, hostile text, access, languages."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from playwright.async_api import FilePayload, Page, Request, Route, expect

from app.agents.access import POLICY
from app.complaints import lifecycle
from app.complaints.classifier import CATEGORIES, CONCEPT_NAMES, CUE_NAMES
from tests.complaints.test_registration import START, Clock, complaint_body, register
from tests.complaints.test_transitions import RESOLUTION, move
from tests.fixtures.desk_clock import freeze_desk
from tests.fixtures.factories import Api
from tests.fixtures.factories import expect as expect_status
from tests.web.conftest import STATIC, NewPage, axe_violations, open_signed_in

HOSTILE = '<script>alert(1)</script><img src=x onerror="alert(2)">'
REGISTRATION = {
    "#reg-name": "王芳",
    "#reg-contact": "+8613800138000",
    "#reg-occurred_at": "2026-11-28T10:00",
    "#reg-location": "浦东支行营业厅",
    "#reg-branch": "Pudong",
    "#reg-description": "我的信用卡被重复扣款两次而柜台拒绝处理",
    "#reg-grounds": "同一笔消费被扣款两次",
    "#reg-request": "退还重复扣除的款项",
}
RECEIPT = "扣款记录".encode()
FILE_NAME = "<img src=x onerror=alert(3)>receipt.txt"
ALL_MISSING = (
    "Still missing: Complainant's name, How to reach them, When it happened, Where it happened, "
    "Branch or unit concerned, What happened, Grounds, What the complainant asks for"
)


async def fill_registration(page: Page, *, leave_out: tuple[str, ...] = (), **facts: str) -> None:
    """Fill the registration form (``facts`` by field name override the defaults)."""
    await expect(page.locator("#register")).to_be_visible()
    for selector, value in REGISTRATION.items():
        name = selector.removeprefix("#reg-")
        if name not in leave_out:
            await page.locator(selector).fill(facts.get(name, value))


async def registered_reference(page: Page) -> str:
    """The reference of the complaint the form just registered (its case page is open)."""
    reference = page.locator("#case-reference")
    await expect(reference).to_have_text(re.compile(r"^C-\d{8}-\d{6}$"))
    return await reference.inner_text()


async def desk_of(
    new_page: NewPage, user: dict[str, Any], hash_: str = "", locale: str = "en-GB"
) -> Page:
    page = await new_page(locale=locale)
    await open_signed_in(page, "/desk", user["username"])
    if hash_:
        await page.goto(f"/desk{hash_}")
    return page


def verbs_from(status: str) -> list[str]:
    return [event.value for (s, event) in lifecycle.moves() if s.value == status]


def texts(language: str) -> dict[str, str]:
    path = STATIC / "i18n" / f"desk.{language}.json"
    return json.loads(path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


async def complaints_seen_by(api: Api) -> list[dict[str, Any]]:
    return expect_status(await api.get("/api/v1/complaints"), 200)["items"]  # type: ignore[no-any-return]


class TestRegistration:
    async def test_missing_facts_are_named_before_anything_is_sent(
        self, api: Api, new_page: NewPage
    ) -> None:
        agent = await api.agent()
        page = await desk_of(new_page, agent, "#new")
        posts: list[Request] = []
        page.on("request", lambda r: posts.append(r) if r.method == "POST" else None)
        await expect(page.locator("#reg-missing")).to_have_text(ALL_MISSING)
        await page.locator("#reg-submit").click()
        await expect(page.locator("#reg-problem")).to_have_text(ALL_MISSING)
        await expect(page.locator("#reg-name")).to_be_focused()
        await expect(page.locator("#reg-name")).to_have_attribute("aria-invalid", "true")
        await fill_registration(page, leave_out=("grounds",))
        await expect(page.locator("#reg-missing")).to_have_text("Still missing: Grounds")
        await page.locator("#reg-submit").click()
        await expect(page.locator("#reg-grounds")).to_be_focused()
        assert posts == []
        assert await complaints_seen_by(api) == []
        await page.locator("#reg-grounds").fill("同一笔消费被扣款两次")
        await expect(page.locator("#reg-missing")).to_have_text("Every required fact is filled in.")
        await page.locator("#reg-submit").click()
        reference = await registered_reference(page)
        [stored] = await complaints_seen_by(api)
        assert (stored["reference"], stored["status"]) == (reference, "registered")

    async def test_the_suggestion_is_shown_taken_only_when_the_agent_takes_it(
        self, api: Api, new_page: NewPage
    ) -> None:
        boss = await api.supervisor()
        page = await desk_of(new_page, boss, "#new")
        await fill_registration(page)
        await page.locator("#reg-submit").click()
        await registered_reference(page)
        suggested = page.locator("#suggested-categories")
        await expect(suggested).to_contain_text("Credit card")
        [stored] = await complaints_seen_by(api)
        assert stored["categories"] == []  # shown, not applied
        await page.locator("#use-suggestion").click()
        form = page.locator('#move-form[data-verb="classify"]')
        await expect(form.get_by_role("checkbox", name="Credit card")).to_be_checked()
        await form.get_by_role("checkbox", name="Credit card").uncheck()
        await form.get_by_role("checkbox", name="Payment", exact=True).check()
        await form.locator("#move-submit").click()
        await expect(page.locator("#view-heading .badge")).to_have_text("Classified")
        [stored] = await complaints_seen_by(api)
        assert stored["categories"] == ["payment"]  # the agent's choice, not the suggestion

    async def test_the_same_matter_again_is_linked_and_said_so(
        self, api: Api, new_page: NewPage
    ) -> None:
        customer = await api.customer(phone="+8613900139000")
        first = await register(api, complaint_body(customer={"id": customer["id"]}))
        agent = await api.agent()
        page = await desk_of(new_page, agent, "#new")
        await page.locator("#reg-phone").fill("+8613900139000")
        await page.locator("#reg-find").click()
        await expect(page.locator("#reg-customer")).to_contain_text("Test Customer")
        matter = complaint_body()["matter"]
        await fill_registration(page, description=matter["description"], branch=matter["branch"])
        await page.locator("#reg-submit").click()
        await expect(page.locator("#reg-done")).to_have_text(
            f"The same matter is already open: linked to {first['reference']}"
        )
        assert len(await complaints_seen_by(api)) == 1

    async def test_a_different_grievance_ticked_separate_opens_a_case_of_its_own(
        self, api: Api, new_page: NewPage
    ) -> None:
        customer = await api.customer(phone="+8613900139001")
        first = await register(api, complaint_body(customer={"id": customer["id"]}))
        boss = await api.supervisor()
        page = await desk_of(new_page, boss, "#new")
        await page.locator("#reg-phone").fill("+8613900139001")
        await page.locator("#reg-find").click()
        await expect(page.locator("#reg-customer")).to_contain_text("Test Customer")
        await fill_registration(page, description="ATM吞卡而网点无人处理")
        await page.locator("#reg-separate").check()
        await page.locator("#reg-submit").click()
        reference = await registered_reference(page)
        assert reference != first["reference"]
        assert len(await complaints_seen_by(api)) == 2


class TestCase:
    async def test_moves_follow_status_and_role_and_clocks_show_a_pause(
        self, api: Api, new_page: NewPage
    ) -> None:
        handler = await api.agent(name="Handler Li")
        registrar = await api.agent()
        done = await register(await api.signed_in_as(registrar), complaint_body())
        await move(api, done["id"], "assign", {"assignee": handler["id"]})

        onlooker = await desk_of(new_page, registrar, f"#case/{done['id']}")
        await expect(onlooker.locator("#no-moves")).to_have_text(
            "You may read this complaint but not act on it."
        )
        await expect(onlooker.locator("#note-form")).to_have_count(0)

        page = await desk_of(new_page, handler, f"#case/{done['id']}")
        buttons = page.locator("#moves button[data-verb]")
        await expect(buttons).to_have_count(len(verbs_from("assigned")))
        assert sorted(await buttons.evaluate_all("bs => bs.map(b => b.dataset.verb)")) == sorted(
            verbs_from("assigned")
        )
        await page.locator("#move-start").click()
        await page.locator("#move-submit").click()
        await expect(page.locator("#view-heading .badge")).to_have_text("In progress")
        await expect(buttons).to_have_count(len(verbs_from("in_progress")))
        await page.locator("#move-pause").click()
        await page.locator("#move-submit").click()
        await expect(page.locator("#move-problem")).to_have_text("Still missing: Reason")
        await expect(page.locator("#fact-reason")).to_be_focused()
        await page.locator("#fact-reason").select_option("waiting_for_customer")
        await page.locator("#move-submit").click()
        await expect(page.locator("#view-heading .badge")).to_have_text("Paused")
        resolution = page.locator('#clocks tr[data-clock="resolution"]')
        await expect(resolution).to_contain_text("paused: Waiting for the customer")
        # Acknowledged when it was registered: a clock of no time shows no share used.
        acknowledged = page.locator('#clocks tr[data-clock="acknowledgement"] td')
        await expect(acknowledged.nth(1)).to_contain_text("stopped")
        await expect(acknowledged.nth(2)).to_have_text("—")
        stored = expect_status(await api.get(f"/api/v1/complaints/{done['id']}"), 200)
        assert stored["status"] == "paused"

    async def test_assigning_to_another_site_warns_and_then_says_where_the_case_went(
        self, api: Api, new_page: NewPage
    ) -> None:
        near = await api.agent(name="Near Zhang", site="shanghai")
        far = await api.agent(name="Far Wang", site="beijing")
        boss = await api.supervisor(site="shanghai")
        done = await register(api, complaint_body())
        page = await desk_of(new_page, boss, f"#case/{done['id']}")
        await page.locator("#move-assign").click()
        choice = page.locator("#fact-assignee")
        far_group = choice.locator("optgroup", has=page.locator(f'option[value="{far["id"]}"]'))
        await expect(far_group).to_have_attribute(
            "label", "Another site (the complaint leaves your view)"
        )
        await expect(choice.locator(f'optgroup option[value="{near["id"]}"]')).to_have_count(1)
        await choice.select_option(str(near["id"]))
        await expect(page.locator("#fact-assignee-reach")).to_have_text("")
        await choice.select_option(str(far["id"]))
        await expect(page.locator("#fact-assignee-reach")).to_have_text(
            "Far Wang works at beijing: once assigned, the complaint is handled there "
            "and you will no longer be able to open it."
        )
        await page.locator("#move-submit").click()
        await expect(page.locator("#view-heading")).to_have_text(
            f"{done['reference']} is now handled elsewhere"
        )
        await expect(page.locator("#handed-away")).to_contain_text("Far Wang (beijing)")
        await expect(page.locator("#move-done")).to_have_text(
            "Done: Assign. The complaint is now Assigned."
        )
        await expect(page.locator("#errors")).not_to_contain_text("does not exist")
        stored = expect_status(await api.get(f"/api/v1/complaints/{done['id']}"), 200)
        assert stored["assignee_id"] == far["id"]
        # Said again in the other language, not taken for a complaint that does not exist.
        await page.locator("#language").click()
        await expect(page.locator("#view-heading")).to_have_text(
            f"{done['reference']} 已转由他处处理"
        )
        await expect(page.locator("#handed-away")).to_contain_text("Far Wang（beijing）")  # noqa: RUF001
        await expect(page.locator("#errors")).to_be_empty()
        # Once the user has left the case, opening it again asks the service, which says no.
        await page.locator(".desk-nav a[href='#list']").click()
        await page.evaluate(f"location.hash = '#case/{done['id']}'")
        await expect(page.locator("#view-heading")).to_have_text("找不到该投诉")

    async def test_a_move_made_is_said_on_the_case_until_the_next_move_or_leaving_it(
        self, api: Api, new_page: NewPage
    ) -> None:
        handler = await api.agent()
        done = await register(api, complaint_body())
        await move(api, done["id"], "assign", {"assignee": handler["id"]})
        page = await desk_of(new_page, handler, f"#case/{done['id']}")
        said = page.locator("#move-done")
        await expect(page.locator("#move-start")).to_be_visible()
        await expect(said).to_have_count(0)
        await page.locator("#move-start").click()
        await page.locator("#move-submit").click()
        await expect(said).to_have_text("Done: Start work. The complaint is now In progress.")
        await expect(said).to_be_visible()
        await expect(page.locator("#view-heading")).to_be_focused()  # not taken by the line
        await page.locator("#language").click()
        await expect(said).to_have_text("已完成：开始处理。投诉当前状态：处理中。")  # noqa: RUF001
        await expect(page.locator("#language")).to_be_focused()
        # The next move sent: the line goes at once, before the service answers.
        release = asyncio.Event()

        async def held(route: Route) -> None:
            await release.wait()
            await route.continue_()

        await page.route(f"**/api/v1/complaints/{done['id']}/pause", held)
        await page.locator("#move-pause").click()
        await page.locator("#fact-reason").select_option("waiting_for_customer")
        await page.locator("#move-submit").click()
        await expect(said).to_have_count(0)
        release.set()
        await expect(said).to_have_text("已完成：暂停。投诉当前状态：已暂停。")  # noqa: RUF001
        await page.get_by_role("link", name="返回列表").click()
        await expect(page.locator("#complaints tbody tr")).to_have_count(1)
        await page.go_back()
        await expect(page.locator("#case-reference")).to_have_text(done["reference"])
        await expect(page.locator("#move-resume")).to_be_visible()
        await expect(said).to_have_count(0)

    async def test_a_complaint_of_another_agent_is_not_found(
        self, api: Api, new_page: NewPage
    ) -> None:
        done = await register(api, complaint_body())
        stranger = await api.agent()
        page = await desk_of(new_page, stranger, f"#case/{done['id']}")
        await expect(page.locator("#view-heading")).to_have_text("No such complaint")
        await expect(page.locator("#errors")).to_contain_text("does not exist")
        await expect(page.locator("#case-facts")).to_have_count(0)

    async def test_notes_and_files_are_added_and_hostile_text_stays_text(
        self, api: Api, new_page: NewPage
    ) -> None:
        handler = await api.agent()
        done = await register(api, complaint_body(grounds=HOSTILE))
        await move(api, done["id"], "assign", {"assignee": handler["id"]})
        page = await desk_of(new_page, handler, f"#case/{done['id']}")
        dialogs: list[str] = []
        page.on("dialog", lambda dialog: dialogs.append(dialog.message))
        await expect(page.locator("#case-facts")).to_contain_text(HOSTILE)
        await page.locator("#note-text").fill(HOSTILE)
        await page.locator("#note-submit").click()
        await expect(page.locator("#notes .note")).to_contain_text(HOSTILE)
        receipt: FilePayload = {"name": FILE_NAME, "mimeType": "text/plain", "buffer": RECEIPT}
        await page.locator("#file-input").set_input_files(files=[receipt])
        await page.locator("#file-submit").click()
        await expect(page.locator("#files .file")).to_contain_text(FILE_NAME)
        async with page.expect_download() as download:
            await page.locator("#files .file button").click()
        saved = await download.value
        assert await asyncio.to_thread(Path(await saved.path()).read_bytes) == RECEIPT
        assert await page.locator("main script, main img").count() == 0
        assert dialogs == []


class TestCategories:
    def test_every_category_the_classifier_knows_has_a_label_in_both_languages(self) -> None:
        for language in ("en", "zh-CN"):
            said = texts(language)
            labels = {c: said.get(f"desk.category.{c}") for c in CATEGORIES}
            assert [c for c, text in labels.items() if not text or text == c] == [], language

    def test_every_concept_and_cue_the_classifiers_reasons_name_has_a_label_in_both(
        self,
    ) -> None:
        names = [f"desk.concept.{c}" for c in CONCEPT_NAMES] + [f"desk.cue.{c}" for c in CUE_NAMES]
        for language in ("en", "zh-CN"):
            said = texts(language)
            assert [n for n in names if not said.get(n)] == [], language

    async def test_categories_are_said_in_the_page_language_and_unknown_ones_as_typed(
        self, api: Api, new_page: NewPage
    ) -> None:
        boss = await api.supervisor()
        done = await register(api, complaint_body())
        facts = {"categories": ["credit_card", "fees"], "severity": "low"}
        await move(api, done["id"], "classify", facts)
        page = await desk_of(new_page, boss)
        row = page.locator(f'#complaints tr[data-reference="{done["reference"]}"]')
        await expect(row).to_contain_text("Credit card, fees")
        await row.get_by_role("link").click()
        told = page.locator("#case-facts")
        suggested = page.locator('#suggested-categories [data-category="credit_card"]')
        why = page.locator("#suggestion-why")
        await expect(told).to_contain_text("Credit card, fees")
        await expect(suggested).to_have_text("Credit card")
        reason = why.locator('li[data-category="credit_card"]')
        await expect(why).to_contain_text("Why:")
        await expect(reason).to_contain_text("Credit card: ")
        await expect(page.locator("#suggestion-cues")).to_contain_text("Severity cues: ")
        await expect(why).not_to_contain_text("#")  # a concept is named, not its code
        await page.locator("#language").click()
        await expect(told).to_contain_text("信用卡、fees")
        await expect(told).not_to_contain_text("credit_card")
        await expect(suggested).to_have_text("信用卡")
        await expect(why).to_contain_text("依据：")  # noqa: RUF001
        await expect(reason).to_contain_text("信用卡：")  # noqa: RUF001
        await expect(page.locator("#suggestion-cues")).to_contain_text("严重程度线索：")  # noqa: RUF001
        await expect(why).not_to_contain_text("credit_card")
        await page.get_by_role("link", name="返回列表").click()
        await expect(row).to_contain_text("信用卡、fees")
        await expect(row).not_to_contain_text("credit_card")

    async def test_the_classify_form_offers_each_category_by_name_and_keeps_a_desk_s_own(
        self, api: Api, new_page: NewPage
    ) -> None:
        boss = await api.supervisor()
        done = await register(api, complaint_body())
        await move(
            api, done["id"], "classify", {"categories": ["payment", "fees"], "severity": "low"}
        )
        page = await desk_of(new_page, boss, f"#case/{done['id']}")
        await page.locator("#move-classify").click()
        form = page.locator('#move-form[data-verb="classify"]')
        boxes = form.get_by_role("group", name="Categories")
        await expect(boxes.get_by_role("checkbox")).to_have_count(len(CATEGORIES))
        await expect(boxes.get_by_role("checkbox", name="Payment", exact=True)).to_be_checked()
        await expect(boxes.get_by_role("checkbox", name="Credit card")).not_to_be_checked()
        await expect(form.get_by_label("Other categories")).to_have_value("fees")
        assert await axe_violations(page, ("critical", "serious")) == []

        await boxes.get_by_role("checkbox", name="Credit card").check()
        await page.locator("#language").click()  # the ticks and the line survive the switch
        boxes = form.get_by_role("group", name="类别")
        await expect(boxes.get_by_role("checkbox", name="信用卡")).to_be_checked()
        await expect(boxes.get_by_role("checkbox", name="支付扣款")).to_be_checked()
        await form.get_by_label("其他类别").fill("fees，waiting time")  # noqa: RUF001
        await form.locator("#move-submit").click()
        facts = page.locator("#case-facts")
        # The boxes ticked in the list's order, then the desk's own as typed.
        await expect(facts).to_contain_text("支付扣款、信用卡、fees、waiting time")
        stored = expect_status(await api.get(f"/api/v1/complaints/{done['id']}"), 200)
        assert stored["categories"] == ["payment", "credit_card", "fees", "waiting time"]

    async def test_classify_without_a_category_names_what_is_missing(
        self, api: Api, new_page: NewPage
    ) -> None:
        boss = await api.supervisor()
        done = await register(api, complaint_body())
        page = await desk_of(new_page, boss, f"#case/{done['id']}")
        await page.locator("#move-classify").click()
        form = page.locator('#move-form[data-verb="classify"]')
        await form.locator("#fact-severity").select_option("low")
        await form.locator("#move-submit").click()
        await expect(form.locator("#move-problem")).to_have_text("Still missing: Categories")
        await expect(form.get_by_role("checkbox").first).to_be_focused()
        stored = expect_status(await api.get(f"/api/v1/complaints/{done['id']}"), 200)
        assert stored["status"] == "registered"


class TestList:
    async def test_filters_narrow_the_list_and_a_case_opens_from_the_keyboard(
        self, api: Api, new_page: NewPage
    ) -> None:
        boss = await api.supervisor()
        first = await register(api, complaint_body())
        elsewhere = {**complaint_body()["matter"], "branch": "Jing'an"}
        second = await register(api, complaint_body(matter=elsewhere))
        await move(api, second["id"], "classify", {"categories": ["fees"], "severity": "low"})
        page = await desk_of(new_page, boss)
        rows = page.locator("#complaints tbody tr")
        await expect(rows).to_have_count(2)
        await page.locator("#filter-status").select_option("classified")
        await page.locator("#filter-apply").click()
        await expect(rows).to_have_count(1)
        await expect(rows.first).to_have_attribute("data-reference", second["reference"])
        await expect(page).to_have_url(re.compile(r"#list\?status=classified$"))
        link = rows.first.get_by_role("link", name=second["reference"])
        await link.focus()
        await page.keyboard.press("Enter")
        await expect(page.locator("#case-reference")).to_have_text(second["reference"])
        await expect(page.locator("#view-heading")).to_be_focused()
        await page.go_back()
        await expect(rows).to_have_count(1)
        assert first["reference"] not in await page.locator("#complaints").inner_text()

    async def test_overdue_is_said_only_while_the_resolution_clock_counts(
        self, app: FastAPI, api: Api, new_page: NewPage
    ) -> None:
        # Registered five days ago: both deadlines have passed; one was resolved before its
        # deadline and waits for the customer, the other is still being worked on.
        started = datetime.now(UTC).replace(microsecond=0) - timedelta(days=5)
        clock = Clock(started)
        freeze_desk(app, clock)
        boss = await api.supervisor()
        late = await register(api, complaint_body())
        elsewhere = {**complaint_body()["matter"], "branch": "Jing'an"}
        done = await register(api, complaint_body(matter=elsewhere))
        for case in (late, done):
            await move(api, case["id"], "assign", {"assignee": boss["id"]})
            await move(api, case["id"], "start")
        clock.advance(timedelta(days=1))
        await move(api, done["id"], "resolve", RESOLUTION)
        page = await desk_of(new_page, boss)
        rows = page.locator("#complaints tbody tr")
        await expect(rows).to_have_count(2)
        overdue = page.locator("#complaints tbody tr .badge.danger")
        await expect(overdue).to_have_count(1)
        reference = late["reference"]
        await expect(
            page.locator(f'#complaints tr[data-reference="{reference}"] .badge.danger')
        ).to_have_text("overdue")

    async def test_the_deadline_is_in_sight_beside_long_categories_on_a_laptop(
        self, app: FastAPI, api: Api, new_page: NewPage
    ) -> None:
        """At 1280 px the list used to push its last column, the deadline, out of sight."""
        clock = Clock(datetime.now(UTC).replace(microsecond=0) - timedelta(days=5))
        freeze_desk(app, clock)
        boss = await api.supervisor()
        late = await register(api, complaint_body())
        categories = ["wealth_management", "information_asymmetry", "credit_card"]
        await move(api, late["id"], "classify", {"categories": categories, "severity": "high"})
        page = await desk_of(new_page, boss)
        assert page.viewport_size == {"width": 1280, "height": 720}

        row = page.locator(f'#complaints tr[data-reference="{late["reference"]}"]')
        await expect(row).to_contain_text("Wealth management")
        await expect(row.locator(".badge.danger")).to_be_in_viewport(ratio=1)

    async def test_a_case_s_clocks_show_every_column_on_a_laptop(
        self, api: Api, new_page: NewPage
    ) -> None:
        """At 1280 px the clocks' table used to scroll inside half the page, its extensions
        out of sight: it spans the page above the two columns now."""
        boss = await api.supervisor()
        case = await register(api, complaint_body())
        page = await desk_of(new_page, boss, f"#case/{case['id']}")
        assert page.viewport_size == {"width": 1280, "height": 720}
        clocks = page.locator("#clocks")
        await expect(clocks.locator('tr[data-clock="resolution"]')).to_be_visible()
        scrolls = "(table) => table.parentElement.scrollWidth > table.parentElement.clientWidth"
        assert not await clocks.evaluate(scrolls)
        await expect(clocks.locator("thead th").last).to_be_in_viewport(ratio=1)

    async def test_the_deadline_filter_shows_the_overdue_or_the_at_risk_and_is_kept_in_the_address(
        self, app: FastAPI, api: Api, new_page: NewPage
    ) -> None:
        """As the API's filters have them, on the resolution clock (three days here, at risk
        from 80 %): 73 hours on, the first is late, the second has used 85 %, the third 68 %."""
        clock = Clock(START)
        freeze_desk(app, clock)
        boss = await api.supervisor()
        late = await register(api, complaint_body())
        clock.advance(timedelta(hours=12))
        risky = await register(api, complaint_body())
        clock.advance(timedelta(hours=12))
        await register(api, complaint_body())
        clock.advance(timedelta(hours=49))
        page = await desk_of(new_page, boss)
        rows = page.locator("#complaints tbody tr")
        await expect(rows).to_have_count(3)

        for choice, shown, address in (
            ("Overdue", late, "overdue=true"),
            ("At risk", risky, "at_risk=true"),
        ):
            await page.locator("#filter-deadline").select_option(label=choice)
            await page.locator("#filter-apply").click()
            await expect(page).to_have_url(re.compile(rf"#list\?{address}$"))
            await expect(rows).to_have_count(1)
            await expect(rows.first).to_have_attribute("data-reference", shown["reference"])
        await page.reload()
        await expect(rows).to_have_count(1)
        await expect(page.locator("#filter-deadline")).to_have_value("at_risk")

    async def test_a_category_is_chosen_by_its_name_and_the_address_keeps_its_code(
        self, api: Api, new_page: NewPage
    ) -> None:
        boss = await api.supervisor()
        await register(api, complaint_body())
        card = await register(api, complaint_body())
        await move(api, card["id"], "classify", {"categories": ["credit_card"], "severity": "low"})
        page = await desk_of(new_page, boss)
        rows = page.locator("#complaints tbody tr")
        await expect(rows).to_have_count(2)
        names = page.locator("#filter-category-names option")
        assert "Credit card" in await names.evaluate_all("os => os.map(o => o.value)")
        await page.locator("#filter-category").fill("credit CARD")
        await page.locator("#filter-apply").click()
        await expect(rows).to_have_count(1)
        await expect(rows.first).to_have_attribute("data-reference", card["reference"])
        await expect(page).to_have_url(re.compile(r"#list\?category=credit_card$"))
        await expect(page.locator("#filter-category")).to_have_value("Credit card")
        # A category of the desk's own, which no name stands for, is looked up as typed.
        await page.locator("#filter-category").fill("own-kind")
        await page.locator("#filter-apply").click()
        await expect(page).to_have_url(re.compile(r"#list\?category=own-kind$"))
        await expect(page.locator("#list-count")).to_have_text("No complaint matches.")


class TestPage:
    async def test_without_a_session_the_desk_goes_to_sign_in(self, new_page: NewPage) -> None:
        # The view asked for (#new) comes along, to be opened after the sign-in.
        page = await new_page()
        await page.goto("/desk#new")
        await expect(page).to_have_url(re.compile(r"/signin\?next=%2Fdesk%23new$"))

    async def test_no_accessibility_violations(self, api: Api, new_page: NewPage) -> None:
        handler = await api.agent(name="Li Lei")
        done = await register(api, complaint_body())
        await move(api, done["id"], "assign", {"assignee": handler["id"]})
        await move(api, done["id"], "start")
        page = await new_page()
        await page.set_viewport_size({"width": 1400, "height": 1000})
        await open_signed_in(page, "/desk", handler["username"])
        await expect(page.locator("#complaints tbody tr")).to_have_count(1)
        assert await axe_violations(page, ("critical", "serious", "moderate")) == []
        await page.goto("/desk#new")
        await expect(page.locator("#register")).to_be_visible()
        assert await axe_violations(page, ("critical", "serious", "moderate")) == []
        await page.goto(f"/desk#case/{done['id']}")
        await expect(page.locator("#suggested-categories")).to_be_visible()
        assert await axe_violations(page, ("critical", "serious", "moderate")) == []

    async def test_a_chinese_browser_gets_the_desk_in_chinese(
        self, api: Api, new_page: NewPage
    ) -> None:
        agent = await api.agent()
        page = await desk_of(new_page, agent, "#new", locale="zh-CN")
        await expect(page.locator("#view-heading")).to_have_text("登记投诉")
        missing = "尚缺：投诉人姓名、联系方式"  # noqa: RUF001
        await expect(page.locator("#reg-missing")).to_contain_text(missing)

    async def test_switching_language_keeps_what_was_typed_in_the_form(
        self, api: Api, new_page: NewPage
    ) -> None:
        agent = await api.agent()
        customer = expect_status(
            await api.post("/api/v1/customers", {"name": "王芳", "phone": "+8613800138000"}), 201
        )
        page = await desk_of(new_page, agent, "#new")
        await page.locator("#reg-phone").fill("13800138000")
        await page.locator("#reg-find").click()
        await expect(page.locator("#reg-customer")).to_contain_text("王芳")
        await fill_registration(page, leave_out=("request",))
        await page.locator("#language").click()
        await expect(page.locator("#view-heading")).to_have_text("登记投诉")
        await expect(page.locator("#language")).to_be_focused()
        for selector, value in REGISTRATION.items():
            if selector != "#reg-request":
                await expect(page.locator(selector)).to_have_value(value)
        await expect(page.locator("#reg-phone")).to_have_value("13800138000")
        await expect(page.locator("#reg-customer")).to_contain_text("王芳")
        await expect(page.locator("#reg-missing")).to_have_text("尚缺：诉求")  # noqa: RUF001
        await page.locator("#reg-request").fill(REGISTRATION["#reg-request"])
        await page.locator("#reg-submit").click()
        await registered_reference(page)
        [stored] = await complaints_seen_by(api)
        full = expect_status(await api.get(f"/api/v1/complaints/{stored['id']}"), 200)
        assert full["customer_id"] == customer["id"]

    async def test_switching_language_keeps_an_open_move_and_a_note_half_written(
        self, api: Api, new_page: NewPage
    ) -> None:
        handler = await api.agent()
        done = await register(api, complaint_body())
        await move(api, done["id"], "assign", {"assignee": handler["id"]})
        await move(api, done["id"], "start")
        page = await desk_of(new_page, handler, f"#case/{done['id']}")
        await page.locator("#move-pause").click()
        await page.locator("#fact-reason").select_option("waiting_for_customer")
        await page.locator("#note-text").fill("已致电，客户稍后回电")  # noqa: RUF001
        await page.locator("#language").click()
        await expect(page.locator("#move-pause")).to_have_text("暂停")  # drawn again, in Chinese
        await expect(page.locator("#move-form")).to_have_attribute("data-verb", "pause")
        await expect(page.locator("#fact-reason")).to_have_value("waiting_for_customer")
        await expect(page.locator("#note-text")).to_have_value("已致电，客户稍后回电")  # noqa: RUF001
        await page.locator("#move-submit").click()
        await expect(page.locator("#view-heading .badge")).to_have_text("已暂停")


class TestRules:
    async def test_the_rules_the_pages_read_are_the_service_tables(self, api: Api) -> None:
        answer = await api.client.get("/pages/rules.json")
        rules = expect_status(answer, 200)
        moves = {(m["from"], m["verb"]): m["to"] for m in rules["complaints"]["moves"]}
        assert moves == {(s.value, e.value): t.value for (s, e), t in lifecycle.moves().items()}
        for event in lifecycle.ComplaintEvent:
            assert rules["complaints"]["needs"][event.value] == sorted(lifecycle.needs(event))
        assert rules["complaints"]["categories"] == list(CATEGORIES)
        assert set(rules["complaints"]["open"]) == {s.value for s in lifecycle.OPEN}
        stopped = lifecycle.OPEN - lifecycle.DEADLINE_STOPPED
        assert set(rules["complaints"]["deadline_counts"]) == {s.value for s in stopped}
        table = {
            (role, resource, action): rule
            for role, resources in rules["access"].items()
            for resource, actions in resources.items()
            for action, rule in actions.items()
        }
        assert table == {(r, s.value, a.value): rule.value for (r, s, a), rule in POLICY.items()}
        cached = {"If-None-Match": answer.headers["etag"]}
        again = await api.client.get("/pages/rules.json", headers=cached)
        assert again.status_code == 304
