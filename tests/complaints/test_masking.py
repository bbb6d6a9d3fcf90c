"""A complaint as a role without ``customers unmask`` (an agent) reads it: the complainant's
contact and the personal numbers in its texts, facts and timeline masked; a supervisor of the
site reads them in full, and the chain still verifies."""

from __future__ import annotations

from typing import Any

from tests.complaints.test_registration import COMPLAINTS, complaint_body, register
from tests.complaints.test_transitions import move
from tests.fixtures.factories import Api, expect

MOBILE = "13912345678"
MOBILE_MASKED = "139****5678"
RESIDENT_ID = "110101199003074514"


def _texts(value: Any) -> str:
    """Every string in ``value``, joined: where a number could show."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return " ".join(_texts(item) for item in value)
    if isinstance(value, dict):
        return " ".join(_texts(item) for item in value.values())
    return ""


async def _assigned_to(api: Api, site: str = "shanghai") -> tuple[Api, dict[str, Any]]:
    agent_row = await api.agent(site=site)
    agent = await api.signed_in_as(agent_row)
    matter = {
        **complaint_body()["matter"],
        "description": f"柜员让我打 {MOBILE} 并报身份证号 {RESIDENT_ID}",
    }
    done = await register(agent, complaint_body(matter=matter, grounds=f"回拨 {MOBILE} 无人接"))
    await move(api, done["id"], "assign", {"assignee": agent_row["id"]})
    await move(api, done["id"], "reject", {"reason": f"请致电 {MOBILE} 咨询理财业务"})
    return agent, done


class TestMasking:
    async def test_an_agent_reads_the_numbers_masked_a_supervisor_in_full(self, api: Api) -> None:
        agent, done = await _assigned_to(api)
        seen = expect(await agent.get(f"{COMPLAINTS}/{done['id']}"), 200)
        assert seen["complainant"]["contact"] == "+86138****8000"
        everything = _texts(seen)
        assert MOBILE not in everything
        assert RESIDENT_ID not in everything
        assert MOBILE_MASKED in seen["matter"]["description"]
        assert MOBILE_MASKED in seen["grounds"]
        reasons = [entry["reason"] for entry in seen["timeline"] if entry["reason"]]
        assert any(MOBILE_MASKED in reason for reason in reasons), reasons

        boss = await api.signed_in_as(await api.supervisor(site="shanghai"))
        full = expect(await boss.get(f"{COMPLAINTS}/{done['id']}"), 200)
        assert full["complainant"]["contact"] == "+8613800138000"
        assert MOBILE in full["matter"]["description"]
        assert RESIDENT_ID in full["matter"]["description"]
        assert any(MOBILE in (entry["reason"] or "") for entry in full["timeline"])
        # The hashes are the stored ones either way.
        assert [e["hash"] for e in seen["timeline"]] == [e["hash"] for e in full["timeline"]]

    async def test_the_audit_trail_is_masked_for_an_agent_and_still_verified(
        self, api: Api
    ) -> None:
        agent, done = await _assigned_to(api)
        trail = expect(await agent.get(f"{COMPLAINTS}/{done['id']}/audit"), 200)
        assert trail["verified"] is True
        assert MOBILE not in _texts(trail["entries"])
        full = expect(await api.get(f"{COMPLAINTS}/{done['id']}/audit"), 200)
        assert MOBILE in _texts(full["entries"])

    async def test_an_e_mail_contact_keeps_its_first_letter_and_domain(self, api: Api) -> None:
        agent_row = await api.agent(site="shanghai")
        agent = await api.signed_in_as(agent_row)
        complainant = {**complaint_body()["complainant"], "contact": "wang.fang@example.com"}
        done = await register(agent, complaint_body(complainant=complainant))
        seen = expect(await agent.get(f"{COMPLAINTS}/{done['id']}"), 200)
        assert seen["complainant"]["contact"] == "w***@example.com"
