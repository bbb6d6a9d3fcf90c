"""Errors of the IVR: flows refused, flows and calls not found, webhooks that do not fit."""

from __future__ import annotations

from collections.abc import Iterable

from app.errors import Conflict, InvalidInput, NotFound
from app.ivr.flow import Problem


class InvalidFlow(InvalidInput):
    """A flow document refused on upload: every problem, each naming its node and field."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = tuple(problems)
        fields = [{"field": field_of(p), "message": p.message} for p in self.problems]
        detail = "; ".join(f"{f['field']}: {f['message']}" for f in fields)
        super().__init__(f"the flow cannot be used: {detail}", fields=fields)


def field_of(problem: Problem) -> str:
    """Where a problem is, as a dotted path into the document (``nodes.main.invalid``)."""
    if problem.node is None:
        return problem.field
    return f"nodes.{problem.node}.{problem.field}" if problem.field else f"nodes.{problem.node}"


class FlowNotFound(NotFound):
    def __init__(self, flow_id: int) -> None:
        super().__init__(f"IVR flow {flow_id} does not exist")


class FlowVersionTaken(Conflict):
    """The same name and version were uploaded before with another document."""

    def __init__(self, name: str, version: int) -> None:
        super().__init__(
            f"flow {name!r} version {version} exists with another document; "
            "upload the change as a new version"
        )


class CallNotFound(NotFound):
    def __init__(self, call_id: str) -> None:
        super().__init__(f"IVR call {call_id!r} does not exist")


class NoIvrPath(NotFound):
    """A contact that did not come through the IVR (a chat, a message, a call queued by API)."""

    def __init__(self, contact_id: int) -> None:
        super().__init__(f"contact {contact_id} did not come through the IVR: it has no path")


class CallNotInIvr(Conflict):
    """An event for a call that has left the IVR (409 naming its status)."""

    def __init__(self, call_id: str, status: str) -> None:
        super().__init__(
            f"call {call_id!r} is {status}: it takes no more IVR events", status=status
        )
        self.status = status


class NotWaiting(Conflict):
    """A ``wait`` event for a call whose caller is not held in a queue (409 naming it)."""

    def __init__(self, call_id: str, status: str) -> None:
        super().__init__(f"call {call_id!r} is {status}: only a queued caller waits", status=status)


class NoCallback(Conflict):
    """A ``callback`` event for a call whose caller did not choose a callback (409)."""

    def __init__(self, call_id: str) -> None:
        super().__init__(f"call {call_id!r} did not end in a callback: there is none to report on")


class StepOutOfOrder(Conflict):
    """An event answers a step the call has not reached."""

    def __init__(self, call_id: str, step: int, current: int) -> None:
        super().__init__(
            f"call {call_id!r} is at step {current}; an event for step {step} cannot be taken"
        )


class MalformedWebhook(InvalidInput):
    """A webhook whose form or JSON does not parse (422 naming each field)."""

    def __init__(self, fields: list[dict[str, str]]) -> None:
        detail = "; ".join(f"{f['field']}: {f['message']}" for f in fields)
        super().__init__(detail, fields=fields)

    @property
    def name(self) -> str:
        return "ValidationError"


class NotInService(InvalidInput):
    """A call to a number no active flow answers."""

    def __init__(self, number: str) -> None:
        super().__init__(f"to: no active IVR flow answers {number!r}", field="to")
