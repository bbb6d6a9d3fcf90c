"""Screenshots of the wallboard, the complaint desk, the IVR page and the reports page.

Taken by ``python -m scripts.screenshots`` after its own shots, on the same centre (the
console's queue, agent and complaints are there already). The wallboard is shown with the
desk's clock moved on so that complaints are at risk; the clock is put back afterwards.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from playwright.async_api import expect

from app.ivr.flow import DEMO_FLOWS
from scripts.screenshots import PASSWORD, Shot, Studio, assigned, complaint

SUPERVISOR = "zhangwei"
REPORTS = "/api/v1/reports/queues"


async def supervisor(studio: Studio) -> dict[str, Any]:
    """The supervisor the shots sign in as (made once)."""
    agents = await studio.call("GET", "/api/v1/agents")
    for agent in agents["items"]:
        if agent.get("username") == SUPERVISOR:
            return agent  # type: ignore[no-any-return]
    body = {
        "name": "Zhang Wei",
        "username": SUPERVISOR,
        "password": PASSWORD,
        "role": "supervisor",
        "site": "shanghai",
    }
    return await studio.call("POST", "/api/v1/agents", body, 201)  # type: ignore[no-any-return]


def with_reports(studio: Studio) -> None:
    """The routing reports, where the app does not serve them yet."""
    if not any(getattr(route, "path", None) == REPORTS for route in studio.app.routes):
        from app.routing.reports_router import router

        studio.app.include_router(router)


async def queues(studio: Studio) -> None:
    """Two more queues, some contacts waiting, one customer gone."""
    existing = {q["name"] for q in (await studio.call("GET", "/api/v1/queues"))["items"]}
    for name in ("general", "mortgages"):
        if name not in existing:
            await studio.call("POST", "/api/v1/queues", {"name": name, "channels": ["chat"]}, 201)
    for queue, subject in (("general", "Address change"), ("general", "Statement copy")):
        body = {"channel": "chat", "queue": queue, "subject": subject}
        await studio.call("POST", "/api/v1/contacts", body, 201)
    body = {"channel": "chat", "queue": "mortgages", "subject": "Early repayment"}
    gone = await studio.call("POST", "/api/v1/contacts", body, 201)
    await studio.call("POST", f"/api/v1/contacts/{gone['id']}/abandon")


async def wallboard(studio: Studio) -> None:
    """The centre with contacts waiting and complaints at risk (the desk's clock 2.5 days on)."""
    boss = await supervisor(studio)
    with_reports(studio)
    await queues(studio)
    for branch in ("Pudong", "Xuhui"):
        await assigned(studio, complaint(None, branch), boss["id"])
    later = datetime.now(UTC) + timedelta(days=2, hours=12)
    clock: Callable[[], datetime] = lambda: later  # noqa: E731
    studio.app.state.complaint_clock = clock
    try:
        page = await studio.page()
        await page.set_viewport_size({"width": 1600, "height": 1000})
        await studio.signed_in(page, "/wallboard", SUPERVISOR)
        await expect(page.locator("#at-risk-table tbody tr").first).to_be_visible()
        await expect(page.locator("#chart polyline.waiting")).to_be_attached()
        await studio.save(page, "wallboard")
    finally:
        studio.app.state.complaint_clock = None


async def desk(studio: Studio) -> None:
    """A case in progress: its clocks, moves, the classifier's suggestion, a note."""
    await supervisor(studio)
    body: dict[str, Any] = complaint(None, "Pudong")
    body["matter"]["description"] = "我的信用卡被重复扣款两次，柜台拒绝处理。"  # noqa: RUF001
    done = await studio.call("POST", "/api/v1/complaints", body, 201)
    note = {"text": "Called the customer back; the statement shows two charges."}
    await studio.call("POST", f"/api/v1/complaints/{done['id']}/notes", note, 201)
    page = await studio.page()
    await page.set_viewport_size({"width": 1400, "height": 1000})
    await studio.signed_in(page, "/desk", SUPERVISOR)
    await page.goto(f"/desk#case/{done['id']}")
    await expect(page.locator("#suggested-categories")).to_be_visible()
    await page.locator("#use-suggestion").click()
    await expect(page.locator("#move-form")).to_be_visible()
    await studio.save(page, "desk")


async def ivr(studio: Studio) -> None:
    """A refused draft of the consumer line, its problems on their nodes."""
    await supervisor(studio)
    for skill in ("credit_card", "complaints"):
        await studio.admin.post("/api/v1/skills", json={"name": skill, "description": "cards"})
    for name in ("credit-cards", "complaints", "general"):
        body = {"name": name, "channels": ["voice", "callback", "chat"]}
        answer = await studio.admin.post("/api/v1/queues", json=body)
        if answer.status_code == 409:
            await studio.call("PATCH", f"/api/v1/queues/{name}", {"channels": body["channels"]})
    document = await asyncio.to_thread((DEMO_FLOWS / "consumer_line.yaml").read_text, "utf-8")
    headers = {"Content-Type": "application/yaml"}
    answer = await studio.admin.post(
        "/api/v1/ivr/flows", content=document.encode(), headers=headers
    )
    if answer.status_code not in (200, 201):
        raise RuntimeError(f"POST /api/v1/ivr/flows: {answer.status_code} {answer.text}")
    draft = document.replace("version: 1", "version: 2", 1).replace(
        "next: card_complaints", "next: card_queue", 1
    )
    page = await studio.page()
    await page.set_viewport_size({"width": 1500, "height": 1000})
    await studio.signed_in(page, "/ivr", SUPERVISOR)
    await expect(page.locator("#diagram g.node").first).to_be_visible()
    await page.locator("#flow-text").fill(draft)
    await page.locator("#upload-submit").click()
    await expect(page.locator("#diagram g.node.invalid").first).to_be_visible()
    await studio.save(page, "ivr")


async def reports(studio: Studio) -> None:
    """Today's queue report by hour."""
    await supervisor(studio)
    with_reports(studio)
    page = await studio.page()
    await studio.signed_in(page, "/reports", SUPERVISOR)
    await page.locator("#report-interval").select_option("1h")
    await page.locator("#report-show").click()
    await expect(page.locator("#report-table tbody tr").first).to_be_visible()
    await studio.save(page, "reports")


SHOTS = [
    Shot("wallboard", wallboard),
    Shot("desk", desk),
    Shot("ivr", ivr),
    Shot("reports", reports),
]
