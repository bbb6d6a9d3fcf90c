"""Acting on the console's socket: accept, reject, set_status, complete, wrap_up_done.

Theory of operation
-------------------

A client message ``{"type": <action>, "request_id": ..., <fields>}`` is checked before
anything is done, in this order: the ``request_id`` (1 to 64 visible characters), the fields
(by the REST route's own body model where it has one, unknown fields refused), then the
sign-in, read again from the database as the REST API does on every request. Each of these
refusals names what is wrong and is answered at once; none is remembered.

The action then runs in a transaction of its own, as a REST request does. It first claims its
``request_id`` in the idempotency table (``app/idempotency.py``), scoped to the principal, then
calls the domain's one function for the action (``app/routing/actions.py``,
``app/agents/actions.py``: the functions the REST routes call, with the same access checks and
errors), stores the answer beside the claim and commits; only then is the ``ack`` sent. A
request id found already claimed is answered with the answer stored for it, and nothing is
done again: a second socket of the same agent sending the same id at the same moment waits on
the claim's row until the first commits, then reads its answer.

A refusal from the domain (a 4xx) rolls its transaction back, the claim with it, and is then
stored in a transaction of its own, unless an answer was stored for the id meanwhile, in which
case that answer is given: every answer to one request id is the same. A database that cannot
be reached (503) is not stored: the action did nothing and may be sent again with the same id.

Decisions, and why
------------------

- The ``result`` of an ``ack`` is the REST route's body, and an ``error`` carries the REST
  error body whole (``body``) beside its HTTP ``status``, its name (``code``) and its
  ``detail``: a client reads the two doors' answers alike. ``body`` rather than the body's
  fields at the top: a body may carry a ``status`` of its own (the offer's, in ``OfferClosed``).
- ``request_id`` is scoped per principal: two agents may use the same ids, and an agent's ids
  hold across reconnects and instances (they are rows, not memory).
- The message's fingerprint (every field but ``request_id``) is stored with the claim: an id
  sent again with another message is a 409 naming ``request_id``, never the first answer.
- Ids are kept like the REST API's ``Idempotency-Key`` rows (nothing deletes them yet).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, Field, ValidationError
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import State

from app.agents import actions as agent_actions
from app.agents import service as agents_service
from app.agents.dependencies import check_identity
from app.agents.permissions import Principal
from app.agents.schemas import StatusChangeIn
from app.db import database_unavailable, unit_of_work
from app.errors import (
    AppError,
    Conflict,
    InvalidInput,
    ServiceUnavailable,
    Unauthorized,
    fields_body,
    integrity_error_body,
)
from app.idempotency import IdempotencyKey, fingerprint
from app.realtime.revocation import SignIn
from app.routing import actions as routing_actions
from app.routing.schemas import CompleteIn
from app.schemas import MAX_BIGINT, StrictModel

log = logging.getLogger(__name__)

MAX_REQUEST_ID = 64
Id = Annotated[int, Field(ge=1, le=MAX_BIGINT, strict=True)]


# --- the actions' fields ---------------------------------------------------------------------


class OfferRef(StrictModel):
    offer_id: Id


class CompleteContact(CompleteIn):
    contact_id: Id


class NoFields(StrictModel):
    pass


Act = Callable[[AsyncSession, Principal, Any], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Spec:
    """An action: the model of its fields and what it does (returning the REST body)."""

    fields: type[BaseModel]
    act: Act


async def _accept(session: AsyncSession, principal: Principal, message: OfferRef) -> Any:
    offer = await routing_actions.accept(session, principal, offer_id=message.offer_id)
    return offer.model_dump(mode="json")


async def _reject(session: AsyncSession, principal: Principal, message: OfferRef) -> Any:
    offer = await routing_actions.reject(session, principal, offer_id=message.offer_id)
    return offer.model_dump(mode="json")


async def _set_status(session: AsyncSession, principal: Principal, message: StatusChangeIn) -> Any:
    agent = await agent_actions.set_status(
        session, principal, agent_id=principal.id, change=message
    )
    return agent_actions.agent_out(agent).model_dump(mode="json")


async def _complete(session: AsyncSession, principal: Principal, message: CompleteContact) -> Any:
    body = CompleteIn(disposition=message.disposition, notes=message.notes)
    contact = await routing_actions.complete(
        session, principal, contact_id=message.contact_id, body=body
    )
    return contact.model_dump(mode="json")


async def _wrap_up_done(session: AsyncSession, principal: Principal, _: NoFields) -> Any:
    return await routing_actions.wrap_up_done(session, principal, agent_id=principal.id)


SPECS: dict[str, Spec] = {
    "accept": Spec(OfferRef, _accept),
    "reject": Spec(OfferRef, _reject),
    "set_status": Spec(StatusChangeIn, _set_status),
    "complete": Spec(CompleteContact, _complete),
    "wrap_up_done": Spec(NoFields, _wrap_up_done),
}
ACTIONS = frozenset(SPECS)


# --- frames ----------------------------------------------------------------------------------


def ack_text(request_id: str, result: Any) -> str:
    return json.dumps({"type": "ack", "request_id": request_id, "result": result})


def error_text(status: int, body: dict[str, Any], request_id: str | None = None) -> str:
    """An ``error`` frame: the REST error ``body`` with its status, name and detail."""
    frame = {
        "type": "error",
        "request_id": request_id,
        "status": status,
        "code": body.get("error"),
        "detail": body.get("detail"),
        "body": body,
    }
    return json.dumps(frame)


def refusal_text(error: AppError, request_id: str | None = None) -> str:
    return error_text(error.status_code, error.body(), request_id)


def request_id_of(message: dict[str, Any]) -> str | None:
    """The message's ``request_id`` if it is a valid one, else None."""
    value = message.get("request_id")
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_REQUEST_ID:
        return None
    visible = value.isprintable() and not any(ch.isspace() for ch in value)
    return value if visible else None


def checked_request_id(message: dict[str, Any]) -> str:
    request_id = request_id_of(message)
    if request_id is None:
        raise InvalidInput(
            f"request_id: an action needs a request_id of 1 to {MAX_REQUEST_ID} visible "
            "characters (no spaces), unique to the request",
            field="request_id",
        )
    return request_id


class FieldsRefused(InvalidInput):
    """Fields an action's model refuses: the 422 the REST route's body validation gives."""

    def __init__(self, fields: list[dict[str, str]]) -> None:
        super().__init__(fields_body(fields)["detail"])
        self.fields = fields

    def body(self) -> dict[str, Any]:
        return fields_body(self.fields)


def fields_of(spec: Spec, message: dict[str, Any]) -> BaseModel:
    """The action's fields, checked by its model; a 422 naming every one that is wrong."""
    fields = {k: v for k, v in message.items() if k not in ("type", "request_id")}
    try:
        return spec.fields.model_validate(fields)
    except ValidationError as exc:
        raise FieldsRefused(
            [
                {"field": ".".join(str(p) for p in e["loc"]) or "message", "message": e["msg"]}
                for e in exc.errors()
            ]
        ) from exc


# --- performing ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: Any

    def text(self, request_id: str) -> str:
        if self.status < 300:
            return ack_text(request_id, self.body)
        return error_text(self.status, self.body, request_id)


def request_id_reused(request_id: str) -> Conflict:
    return Conflict(
        f"request_id {request_id!r} was already used for another message",
        fields=[{"field": "request_id", "message": "already used for another message"}],
    )


async def perform(
    state: State, sign_in: SignIn, message: dict[str, Any], *, committing: Callable[[], None]
) -> str:
    """The answer frame to an action message; ``committing`` is called just before the
    action's commit (nothing it caused is visible before)."""
    request_id = request_id_of(message)
    try:
        request_id = checked_request_id(message)
        kind = str(message.get("type"))
        fields = fields_of(SPECS[kind], message)
        principal = await _principal(state, sign_in)
        return await _once(state, principal, request_id, kind, fields, committing)
    except AppError as exc:
        return refusal_text(exc, request_id)
    except Exception as exc:
        if database_unavailable(exc):
            return refusal_text(_unavailable(), request_id)
        log.exception("action %r failed", message.get("type"))
        body = {"error": "InternalError", "detail": "the action failed and changed nothing"}
        return error_text(500, body, request_id)


def _unavailable() -> ServiceUnavailable:
    return ServiceUnavailable("the database cannot be reached just now; send the action again")


async def _principal(state: State, sign_in: SignIn) -> Principal:
    """The socket's user as the database has them now (as every REST request is read)."""
    if sign_in.revoked.is_set():
        raise Unauthorized(sign_in.reason)
    identity = await agents_service.get_identity(state.db_pool, sign_in.claims)
    return check_identity(sign_in.claims, identity)


async def _once(
    state: State,
    principal: Principal,
    request_id: str,
    kind: str,
    fields: BaseModel,
    committing: Callable[[], None],
) -> str:
    """Act once per (principal, request_id); every later call gets the first answer."""
    scope = f"{principal.id}:ws"
    digest = fingerprint({"type": kind, **fields.model_dump(mode="json")})
    try:
        async with unit_of_work(state.sessionmaker) as session:
            stored = await _claim(session, scope, request_id, digest, None)
            if stored is not None:
                return stored.text(request_id)
            result = await SPECS[kind].act(session, principal, fields)
            await _store(session, scope, request_id, Answer(200, result))
            committing()
    except (AppError, IntegrityError) as exc:
        refused = _refused(exc)
        async with unit_of_work(state.sessionmaker) as session:
            stored = await _claim(session, scope, request_id, digest, refused)
        return (stored or refused).text(request_id)
    return ack_text(request_id, result)


def _refused(error: AppError | IntegrityError) -> Answer:
    """A refusal as the REST API answers it (a constraint's 409 included); a 503 is raised on:
    nothing was decided, and it is not stored."""
    if isinstance(error, IntegrityError):
        return Answer(409, integrity_error_body(error))
    if error.status_code >= 500:
        raise error
    return Answer(error.status_code, error.body())


async def _claim(
    session: AsyncSession, scope: str, key: str, digest: str, answer: Answer | None
) -> Answer | None:
    """Claim ``key`` (with ``answer`` if already known); the stored answer if it was taken.

    A claim taken by a transaction still open is waited for (its row's lock)."""
    values: dict[str, Any] = {"scope": scope, "key": key, "request_hash": digest}
    if answer is not None:
        values |= {"status_code": answer.status, "response": answer.body}
    inserted = await session.execute(
        insert(IdempotencyKey)
        .values(**values)
        .on_conflict_do_nothing()
        .returning(IdempotencyKey.key)
    )
    if inserted.first() is not None:
        return None
    row = await session.scalar(
        select(IdempotencyKey).where(IdempotencyKey.scope == scope, IdempotencyKey.key == key)
    )
    assert row is not None
    assert row.status_code is not None
    if row.request_hash != digest:
        error = request_id_reused(key)
        return Answer(error.status_code, error.body())
    return Answer(row.status_code, row.response)


async def _store(session: AsyncSession, scope: str, key: str, answer: Answer) -> None:
    await session.execute(
        update(IdempotencyKey)
        .where(IdempotencyKey.scope == scope, IdempotencyKey.key == key)
        .values(status_code=answer.status, response=answer.body)
        .execution_options(synchronize_session=False)
    )
