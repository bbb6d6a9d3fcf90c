"""``GET /api/v1/contacts``: who sees which contacts, masked how, in what order, filtered how.

The list must hold exactly what ``GET /contacts/{id}`` lets the same caller read (its SQL is
the twin of that route's Python), and, for an agent asking for one customer while serving
that customer, the customer's other contacts, masked as for an agent who did not handle
them. Contacts are put in place one at a time: an agent is made available only while the
one contact meant for it waits, then set away, so the dispatcher offers nothing else.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.fixtures.factories import Api, expect
from tests.routing.acd import available_agent, contact, offer_for, queue

URL = "/api/v1/contacts"
AWAY = {"status": "away", "status_reason": "break"}
SUBJECT = "card lost, call me on 139 1234 5678"


async def available(console: Api) -> None:
    url = f"/api/v1/agents/{console.me['id']}/status"
    expect(await console.post(url, {"status": "available"}), 200)


async def away(console: Api) -> None:
    expect(await console.post(f"/api/v1/agents/{console.me['id']}/status", AWAY), 200)


async def ringing(api: Api, console: Api, queue_name: str, **body: Any) -> dict[str, Any]:
    """A new contact offered to ``console`` and left ringing: the agent, with room for one
    chat, is offered nothing else meanwhile (going away would take the offer back)."""
    created = await contact(api, queue_name, **body)
    await available(console)
    return await offer_for(console, created["id"])


async def served(api: Api, console: Api, queue_name: str, **body: Any) -> int:
    """A new contact connected to ``console``; the agent is then away."""
    offer = await ringing(api, console, queue_name, **body)
    expect(await console.post(f"/api/v1/offers/{offer['id']}/accept"), 200)
    await away(console)
    return int(offer["contact_id"])


async def handled(api: Api, console: Api, queue_name: str, notes: str, **body: Any) -> int:
    """A contact ``console`` answered, completed with ``notes`` and finished wrapping up."""
    contact_id = await served(api, console, queue_name, **body)
    done = {"disposition": "resolved", "notes": notes}
    expect(await console.post(f"{URL}/{contact_id}/complete", done), 200)
    expect(await console.post(f"/api/v1/agents/{console.me['id']}/wrap-up/done"), 200)
    return contact_id


async def listed(caller: Api, **params: Any) -> list[dict[str, Any]]:
    return expect(await caller.get(URL, params=params), 200)["items"]  # type: ignore[no-any-return]


async def ids(caller: Api, **params: Any) -> list[int]:
    return [c["id"] for c in await listed(caller, **params)]


async def agent(api: Api, site: str) -> Api:
    """An agent of ``site`` with room for one chat, signed in, away."""
    console = await available_agent(api, site=site, capacity={"chat": 1})
    await away(console)
    return console


@pytest.fixture
async def q(api: Api) -> dict[str, Any]:
    return await queue(api, channels=["chat", "web"], wrap_up_s=300)


class TestWhoSeesWhich:
    async def test_each_caller_lists_exactly_the_contacts_it_may_read_one_by_one(
        self, api: Api, q: dict[str, Any]
    ) -> None:
        shanghai, beijing = await agent(api, "shanghai"), await agent(api, "beijing")
        await served(api, shanghai, q["name"])
        await handled(api, beijing, q["name"], "refunded")
        await ringing(api, beijing, q["name"])
        await contact(api, q["name"])  # never offered: any supervisor's
        callers = {
            "agent of shanghai": shanghai,
            "agent of beijing": beijing,
            "supervisor of shanghai": await api.signed_in_as(await api.supervisor(site="shanghai")),
            "supervisor of beijing": await api.signed_in_as(await api.supervisor(site="beijing")),
            "supervisor of no site": await api.signed_in_as(await api.supervisor(site=None)),
            "admin": api,
        }
        every = await ids(api)
        assert len(every) == 4

        for name, caller in callers.items():
            readable = [i for i in every if (await caller.get(f"{URL}/{i}")).status_code == 200]
            assert await ids(caller) == readable, name

    async def test_agent_serving_a_customer_sees_its_other_contacts_masked_without_notes(
        self, api: Api, q: dict[str, Any]
    ) -> None:
        customer = await api.customer()
        shanghai, beijing = await agent(api, "shanghai"), await agent(api, "beijing")
        by_phone = {"customer": {"phone": customer["phone"]}, "subject": SUBJECT}
        earlier = await handled(api, beijing, q["name"], "promised a callback", **by_phone)
        now = await served(api, shanghai, q["name"], customer={"id": customer["id"]})

        items = {c["id"]: c for c in await listed(shanghai, customer=customer["id"])}

        assert list(items) == [now, earlier]
        shown = items[earlier]
        assert shown["notes"] is None
        assert shown["caller"] != customer["phone"]
        assert shown["caller"].endswith(customer["phone"][-4:])
        assert "1234 5678" not in shown["subject"]
        full = expect(await api.get(f"{URL}/{earlier}"), 200)
        assert (full["notes"], full["caller"]) == ("promised a callback", customer["phone"])
        assert (await listed(beijing, customer=customer["id"]))[0]["notes"] == full["notes"]

    async def test_a_contact_ringing_at_the_agent_counts_as_serving_the_customer(
        self, api: Api, q: dict[str, Any]
    ) -> None:
        customer = await api.customer()
        shanghai, beijing = await agent(api, "shanghai"), await agent(api, "beijing")
        earlier = await handled(api, beijing, q["name"], "n", customer={"id": customer["id"]})
        offer = await ringing(api, shanghai, q["name"], customer={"id": customer["id"]})

        assert await ids(shanghai, customer=customer["id"]) == [offer["contact_id"], earlier]

    async def test_agent_stops_seeing_the_customers_contacts_once_done_with_them(
        self, api: Api, q: dict[str, Any]
    ) -> None:
        customer = await api.customer()
        shanghai, beijing = await agent(api, "shanghai"), await agent(api, "beijing")
        await handled(api, beijing, q["name"], "n", customer={"id": customer["id"]})
        mine = await served(api, shanghai, q["name"], customer={"id": customer["id"]})
        expect(await shanghai.post(f"{URL}/{mine}/complete", {}), 200)
        assert len(await ids(shanghai, customer=customer["id"])) == 2  # in wrap-up: serving

        me = shanghai.me["id"]
        expect(await shanghai.post(f"/api/v1/agents/{me}/wrap-up/done"), 200)

        assert await ids(shanghai, customer=customer["id"]) == [mine]

    async def test_agent_asking_for_a_customer_it_is_not_serving_gets_only_its_own(
        self, api: Api, q: dict[str, Any]
    ) -> None:
        served_one, other = await api.customer(), await api.customer()
        shanghai, beijing = await agent(api, "shanghai"), await agent(api, "beijing")
        await handled(api, beijing, q["name"], "n", customer={"id": other["id"]})
        await served(api, shanghai, q["name"], customer={"id": served_one["id"]})

        assert await ids(shanghai, customer=other["id"]) == []
        assert await ids(shanghai, customer=999_999) == []

    async def test_agent_asking_for_everything_gets_only_its_own(
        self, api: Api, q: dict[str, Any]
    ) -> None:
        customer = await api.customer()
        shanghai, beijing = await agent(api, "shanghai"), await agent(api, "beijing")
        await handled(api, beijing, q["name"], "n", customer={"id": customer["id"]})
        mine = await served(api, shanghai, q["name"], customer={"id": customer["id"]})

        assert await ids(shanghai) == [mine]

    async def test_supervisor_serving_a_customer_keeps_to_the_sites_rules(
        self, api: Api, q: dict[str, Any]
    ) -> None:
        customer = await api.customer()
        beijing = await agent(api, "beijing")
        made = await api.supervisor(site="shanghai", capacity={"chat": 1})
        supervisor = await api.signed_in_as(made)
        await handled(api, beijing, q["name"], "n", customer={"id": customer["id"]})
        mine = await served(api, supervisor, q["name"], customer={"id": customer["id"]})

        assert await ids(supervisor, customer=customer["id"]) == [mine]


class TestOrderAndPaging:
    async def test_pages_newest_first_without_gaps_or_repeats(
        self, api: Api, q: dict[str, Any]
    ) -> None:
        made = [(await contact(api, q["name"]))["id"] for _ in range(5)]
        seen: list[int] = []
        params: dict[str, Any] = {"limit": 2}
        pages = 0
        while True:
            page = expect(await api.get(URL, params=params), 200)
            seen += [c["id"] for c in page["items"]]
            pages += 1
            if page["next_cursor"] is None:
                break
            params["cursor"] = page["next_cursor"]

        assert seen == made[::-1]
        assert pages == 3

    async def test_a_transfer_keeps_its_place_the_successor_first(
        self, api: Api, q: dict[str, Any]
    ) -> None:
        other = await queue(api, channels=["chat"])
        first = (await contact(api, q["name"]))["id"]
        later = (await contact(api, q["name"]))["id"]
        moved = expect(await api.post(f"{URL}/{first}/transfer", {"queue": other["name"]}), 200)

        page = expect(await api.get(URL, params={"limit": 2}), 200)
        rest = await ids(api, limit=2, cursor=page["next_cursor"])

        assert [c["id"] for c in page["items"]] == [later, moved["id"]]
        assert rest == [first]


class TestFilters:
    async def test_each_filter_narrows_the_list(self, api: Api, q: dict[str, Any]) -> None:
        customer = await api.customer()
        other = await queue(api, channels=["chat"])
        a = (await contact(api, q["name"], channel="web"))["id"]
        b = (await contact(api, q["name"], customer={"id": customer["id"]}))["id"]
        c = (await contact(api, other["name"]))["id"]
        expect(await api.post(f"{URL}/{c}/cancel"), 200)
        middle = next(i for i in await listed(api) if i["id"] == b)["enqueued_at"]

        assert await ids(api, customer=customer["id"]) == [b]
        assert await ids(api, queue=q["name"]) == [b, a]
        assert await ids(api, queue=other["id"]) == [c]
        assert await ids(api, status="canceled") == [c]
        assert await ids(api, channel="web") == [a]
        assert await ids(api, since=middle) == [c, b]
        assert await ids(api, until=middle) == [a]

    @pytest.mark.parametrize(
        ("param", "value"),
        [
            ("limit", "0"),
            ("limit", "201"),
            ("customer", "0"),
            ("customer", "abc"),
            ("customer", str(2**63)),
            ("queue", "no-such-queue"),
            ("queue", str(2**63)),
            ("status", "lost"),
            ("channel", "fax"),
            ("since", "yesterday"),
            ("until", "2026-13-01"),
            ("cursor", "Not a cursor!"),
            ("cursor", "1.0"),
            ("cursor", "99999999999999999999.1"),
        ],
    )
    async def test_a_bad_filter_is_a_422_naming_it(self, api: Api, param: str, value: str) -> None:
        body = expect(await api.get(URL, params={param: value}), 422)

        assert [f["field"] for f in body["fields"]] == [param]

    async def test_a_range_that_ends_before_it_starts_is_a_422_naming_until(self, api: Api) -> None:
        params = {"since": "2026-12-02T00:00:00Z", "until": "2026-12-01T00:00:00Z"}

        body = expect(await api.get(URL, params=params), 422)

        assert [f["field"] for f in body["fields"]] == ["until"]
