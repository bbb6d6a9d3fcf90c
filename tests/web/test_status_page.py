"""The customer's status page in a real browser: their complaint by reference and phone,
nothing internal, one answer for anything not found, hostile text shown as text."""

from __future__ import annotations

import re
from typing import Any

from playwright.async_api import Page, expect

from tests.complaints.test_notes import notes_url
from tests.complaints.test_registration import complaint_body, register
from tests.complaints.test_transitions import move
from tests.fixtures.factories import Api
from tests.fixtures.factories import expect as expect_status
from tests.web.conftest import NewPage, axe_violations, refused_with

PHONE = "+8613800138000"  # the complainant's contact in complaint_body()
NOT_FOUND = "We found no complaint with this reference and phone number. Check both and try again."
HOSTILE = '<script>alert(1)</script><img src=x onerror="alert(2)">'


async def look_up(page: Page, reference: str, phone: str) -> None:
    """Ask the status page, as a customer does (no sign-in)."""
    await page.goto("/status")
    await expect(page.locator("#lookup-submit")).to_be_enabled()
    await page.get_by_label("Reference").fill(reference)
    await page.get_by_label("Phone number").fill(phone)
    await page.get_by_role("button", name="Show status").click()


async def handled(api: Api, public_note: str) -> dict[str, Any]:
    """A complaint assigned, started, with an internal and a public note and an internal
    escalation reason."""
    agent = await api.agent(name="Case Handler Zhao")
    done = await register(api, complaint_body())
    cid = done["id"]
    await move(api, cid, "classify", {"categories": ["payment"], "severity": "high"})
    await move(api, cid, "assign", {"assignee": agent["id"]})
    await move(api, cid, "start")
    expect_status(await api.post(notes_url(cid), {"text": "Internal: customer is difficult"}), 201)
    expect_status(await api.post(notes_url(cid), {"text": public_note, "internal": False}), 201)
    await move(api, cid, "escalate", {"target": "supervisor", "reason": "Internal escalation"})
    return done  # type: ignore[no-any-return]


class TestWhatTheCustomerSees:
    async def test_the_customer_sees_status_deadlines_and_public_timeline_and_nothing_internal(
        self, api: Api, new_page: NewPage
    ) -> None:
        done = await handled(api, "We have asked the clearing centre.")
        page = await new_page()
        await look_up(page, done["reference"].lower(), "138 0013 8000")
        result = page.locator("#result")
        await expect(result.locator("#result-heading")).to_have_text(
            f"Complaint {done['reference']}"
        )
        await expect(result.locator("#current-status")).to_have_text("In progress")
        await expect(result.locator("#deadlines-body")).to_contain_text("Resolution")
        await expect(result.locator("#timeline")).to_contain_text(
            "We have asked the clearing centre."
        )
        await expect(result.locator("#timeline li")).to_have_count(5)  # registered … note
        # each move said once: its name, and the status after it where the name does not say it
        await expect(result.locator("#timeline li").first).to_have_text(re.compile(r"Registered$"))
        first = await result.locator("#timeline li").first.inner_text()
        assert first.count("Registered") == 1, first
        await expect(result.locator("#timeline li").nth(3)).to_contain_text(
            "Work started — In progress"
        )
        shown = await page.locator("body").inner_text()
        for internal in (
            "Internal: customer is difficult",
            "Internal escalation",
            "Case Handler Zhao",
            "payment",
        ):
            assert internal not in shown, internal

    async def test_a_wrong_phone_and_an_unknown_reference_get_the_same_answer(
        self, api: Api, new_page: NewPage
    ) -> None:
        done = await register(api, complaint_body())
        page = await new_page()
        await look_up(page, done["reference"], "+8613900000000")
        await expect(page.locator("#lookup-problem")).to_have_text(NOT_FOUND)
        await expect(page.locator("#result")).to_be_hidden()
        await look_up(page, "C-20261202-999999", PHONE)
        await expect(page.locator("#lookup-problem")).to_have_text(NOT_FOUND)

    async def test_the_wait_after_too_many_attempts_is_said_in_minutes_hours_and_days(
        self, new_page: NewPage
    ) -> None:
        page = await new_page()
        problem = page.locator("#lookup-problem")
        for retry_after_s, said in (
            (898, "15 minutes"),
            (60, "1 minute"),
            (3600, "1 hour"),
            (3 * 3600 + 5 * 60, "3 hours 5 minutes"),
            (86400 + 3600, "1 day 1 hour"),
            (2 * 86400, "2 days"),
        ):
            await page.unroute("**/api/v1/public/complaints/**")
            await page.route(
                "**/api/v1/public/complaints/**", refused_with(retry_after_s, "too many lookups")
            )
            await look_up(page, "C-20261202-000001", PHONE)
            await expect(problem).to_have_text(f"Too many attempts. Try again in {said}.")
        await page.locator("#language").click()
        await expect(problem).to_have_text("尝试次数过多\uff0c请 2 天后再试。")

    async def test_missing_facts_are_named_before_asking(self, new_page: NewPage) -> None:
        page = await new_page()
        requests: list[str] = []
        page.on("request", lambda request: requests.append(request.url))
        await look_up(page, "C-20261202-000001", "")
        await expect(page.locator("#lookup-problem")).to_have_text(
            "Enter both the reference and the phone number."
        )
        await expect(page.get_by_label("Phone number")).to_be_focused()
        assert not [url for url in requests if "/api/v1/public/" in url]

    async def test_markup_in_a_message_to_the_customer_is_shown_as_text(
        self, api: Api, new_page: NewPage
    ) -> None:
        done = await handled(api, HOSTILE)
        page = await new_page()
        dialogs: list[str] = []
        page.on("dialog", lambda dialog: dialogs.append(dialog.message))
        await look_up(page, done["reference"], PHONE)
        await expect(page.locator("#timeline .note")).to_have_text(HOSTILE)
        assert await page.locator("main script, main img").count() == 0
        assert dialogs == []


class TestThePage:
    async def test_the_page_in_chinese_for_a_chinese_browser(
        self, api: Api, new_page: NewPage
    ) -> None:
        done = await register(api, complaint_body())
        page = await new_page(locale="zh-CN")
        await page.goto("/status")
        await expect(page.locator("#lookup h2")).to_have_text("查询您的投诉")
        await expect(page.locator("#lookup-submit")).to_be_enabled()
        await page.get_by_label("投诉编号").fill(done["reference"])
        await page.get_by_label("电话号码").fill(PHONE)
        await page.get_by_label("电话号码").press("Enter")  # the keyboard submits
        await expect(page.locator("#current-status")).to_have_text("已登记")
        first = page.locator("#timeline li").first
        await expect(first).to_have_text(re.compile(r"已登记$"))
        assert (await first.inner_text()).count("已登记") == 1

    async def test_a_problem_shown_is_said_again_in_the_language_switched_to(
        self, new_page: NewPage
    ) -> None:
        page = await new_page()
        await look_up(page, "C-20261202-000001", "")
        problem = page.locator("#lookup-problem")
        await expect(problem).to_have_text("Enter both the reference and the phone number.")
        await page.locator("#language").click()
        await expect(problem).to_have_text("请输入投诉编号和电话号码。")

    async def test_no_serious_accessibility_violation_with_a_result_shown(
        self, api: Api, new_page: NewPage
    ) -> None:
        done = await handled(api, "We have asked the clearing centre.")
        page = await new_page()
        await look_up(page, done["reference"], PHONE)
        await expect(page.locator("#result")).to_be_visible()
        assert await axe_violations(page, ("critical", "serious", "moderate")) == []

    async def test_the_sign_in_page_has_no_serious_accessibility_violation(
        self, new_page: NewPage
    ) -> None:
        page = await new_page()
        await page.goto("/signin")
        await expect(page.locator("#signin-submit")).to_be_enabled()
        assert await axe_violations(page, ("critical", "serious", "moderate")) == []
