"""Errors of the complaint desk.

Every refusal names what was wrong: a complaint that does not exist (404), a fact a
registration or a transition lacks (422, one entry in ``fields`` per missing fact, all at
once), a value outside its listed set (422 naming the field), a move the lifecycle does not
allow (409 naming the current status), a role or a person that may not do it (403).
"""

from __future__ import annotations

from collections.abc import Iterable

from app.complaints.lifecycle import ComplaintEvent, IllegalComplaintMove
from app.errors import Forbidden, IllegalTransition, InvalidInput, NotFound, register_constraint


class ComplaintNotFound(NotFound):
    def __init__(self, ref: object) -> None:
        super().__init__(f"complaint {ref} does not exist")


class InvalidComplaint(InvalidInput):
    """One field of a complaint request with an impossible value."""

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}", field=field)


class MissingFacts(InvalidInput):
    """A request that lacks facts the step needs: each named in ``fields``."""

    def __init__(self, names: Iterable[str], *, what: str) -> None:
        missing = list(names)
        super().__init__(
            f"{what} needs {', '.join(missing)}",
            fields=[{"field": name, "message": "this fact is required"} for name in missing],
        )


class UnexpectedFacts(InvalidInput):
    """A request with facts the step does not take: each named in ``fields``."""

    def __init__(self, names: Iterable[str], *, what: str) -> None:
        extra = list(names)
        super().__init__(
            f"{what} does not take {', '.join(extra)}",
            fields=[
                {"field": name, "message": f"{what} does not take this fact"} for name in extra
            ],
        )


class IllegalMove(IllegalTransition):
    """The lifecycle does not allow this move from the complaint's current status."""

    def __init__(self, move: IllegalComplaintMove) -> None:
        super().__init__(
            f"cannot {move.event.value} a complaint that is {move.status.value}",
            status=move.status.value,
            event=move.event.value,
        )


class NotYourComplaint(Forbidden):
    def __init__(self, detail: str) -> None:
        super().__init__(detail)


def missing_for(event: ComplaintEvent, names: Iterable[str]) -> MissingFacts:
    """The 422 for a transition lacking facts."""
    return MissingFacts(names, what=f"{event.value}")


register_constraint("uq_complaints_reference", "a complaint with this reference already exists")
register_constraint("fk_complaints_customer_id_customers", "the customer does not exist")
register_constraint("fk_complaints_contact_id_contacts", "the contact does not exist")
register_constraint("fk_complaints_assignee_id_agents", "the assignee does not exist")
