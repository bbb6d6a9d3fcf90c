"""HTTP route of automatic assignment: ``POST /complaints/{id}/auto-assign``.

Theory of operation
-------------------

The complaint is locked for the request's transaction and the caller must be allowed to act
on it (the same check as every lifecycle move: ``router.may_act``; a complaint the caller
may not read is a 404). ``assign.auto_assign`` then gives it to the agent the rules choose,
through the lifecycle's ``assign`` move, or marks it for the team queue; the answer says
which, the rule that decided and every reason, as the audit entry records them. The body is
optional: ``implicated`` names agents the complaint is about, who never get it (kept on the
complaint for later assignments too).

The rules come from ``app.state.complaint_assign_rules`` when set (tests and operators
inject a category → skill map), else relationship managers first for the tiers whose
``rm_affinity_s`` is positive, every category needing the skill of its own name.

This router must be included before ``app.complaints.router``: its
``/complaints/{id}/{verb}`` route would otherwise take ``auto-assign`` for a verb.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from app.agents.dependencies import CurrentPrincipal
from app.complaints import service
from app.complaints.assign import AssignRules, auto_assign, rules_from
from app.complaints.router import ComplaintId, CurrentDesk, Now, may_act
from app.complaints.schemas import Ref
from app.config import Settings
from app.db import Session
from app.openapi import errors, require_json_body
from app.schemas import StrictModel

router = APIRouter(prefix="/api/v1", tags=["complaints"], dependencies=[Depends(require_json_body)])


class AutoAssign(StrictModel):
    implicated: list[Ref] = Field(
        default_factory=list,
        max_length=50,
        description="agents the complaint is about: never assigned it (conflict of interest)",
    )


class AutoAssigned(BaseModel):
    complaint_id: int
    reference: str
    status: str
    assignee_id: int | None = Field(description="who holds it now")
    queued: bool = Field(description="true: nobody may take it; it waits in the team queue")
    queue: str | None = Field(description="the team queue it waits in, when queued")
    rule: str = Field(description="what decided: relationship_manager, least_loaded, ...")
    reasons: list[str] = Field(description="why, as the audit entry records it")


def assign_rules(request: Request) -> AssignRules:
    """The injected rules, else the tiers' relationship-manager affinity."""
    rules: AssignRules | None = getattr(request.app.state, "complaint_assign_rules", None)
    if rules is not None:
        return rules
    settings: Settings = request.app.state.settings
    return rules_from(settings.tiers)


@router.post(
    "/complaints/{complaint_id}/auto-assign",
    response_model=AutoAssigned,
    responses=errors(403, 404, 409, 422),
)
async def auto_assign_complaint(
    request: Request,
    complaint_id: ComplaintId,
    session: Session,
    principal: CurrentPrincipal,
    now: Now,
    desk: CurrentDesk,
    body: AutoAssign | None = None,
) -> AutoAssigned:
    """Assign the complaint to an agent with the skills, room under their case capacity and
    no conflict of interest (the relationship manager first for top tiers), or queue it for
    the team; the reasons are recorded. An unassignable status is a 409."""
    complaint = await service.get_or_raise(session, complaint_id, for_update=True)
    await may_act(session, principal, complaint)
    done = await auto_assign(
        session,
        complaint_id=complaint.id,
        principal=principal,
        now=now,
        rules=assign_rules(request),
        implicated=(body or AutoAssign()).implicated,
        desk=desk,
    )
    return AutoAssigned(
        complaint_id=done.complaint.id,
        reference=done.complaint.reference,
        status=done.complaint.status,
        assignee_id=done.complaint.assignee_id,
        queued=done.queue is not None,
        queue=done.queue,
        rule=done.choice.rule.value,
        reasons=list(done.choice.reasons),
    )
