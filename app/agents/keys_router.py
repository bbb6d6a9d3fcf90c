"""HTTP routes: channels' API keys, managed by admins (``app/agents/api_keys.py``; who may
is the access table's answer, ``app/agents/access.py``).

A key is shown once, in the answer to its creation. A retry of that request with the same
``Idempotency-Key`` creates no second key, and cannot show the first one again (only its
hash is kept): it answers 409 naming the key that was created, which the admin revokes if
its secret was lost, before creating another. Re-issuing a new secret on a retry would
instead silently break a key already deployed whenever the first answer did arrive.

Keys are revoked by ``POST /api-keys/{id}/revoke``, as every other change of state in this
API is an action on its resource (``/contacts/{id}/cancel``, ``/offers/{id}/reject``) and
nothing is deleted: a revoked key stays listed, with when it was revoked. Revocation is
immediate: the next request with the key is refused (401).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, StringConstraints

from app.agents import api_keys
from app.agents.access import Action, Resource, require
from app.agents.dependencies import CurrentPrincipal
from app.db import Session
from app.errors import Conflict
from app.idempotency import run_once
from app.openapi import errors, require_json_body
from app.pagination import Limit, PageCursor, decode_id_cursor, next_id_cursor
from app.schemas import MAX_BIGINT, StrictModel

router = APIRouter(prefix="/api/v1", tags=["api-keys"], dependencies=[Depends(require_json_body)])
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key")]
KeyId = Annotated[int, Path(ge=1, le=MAX_BIGINT, description="the API key's id")]
KeyName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, pattern=r"^[a-z][a-z0-9_\-]{0,63}$"),
    Field(description="the channel (`web`, `app`): lower-case, unique among live keys"),
]
NO_STORE = {"Cache-Control": "no-store"}  # the answer carries a secret


class ApiKeyCreate(StrictModel):
    name: KeyName


class ApiKeyOut(BaseModel):
    """A key as admins see it: never the key itself."""

    id: int
    name: str
    prefix: str = Field(description="the key's first characters, to tell keys apart")
    created_by: int | None
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None = Field(description="when last used, to within a minute")


class ApiKeyStub(BaseModel):
    """What the idempotency record keeps of a created key: everything but the key."""

    id: int
    name: str
    prefix: str
    created_at: datetime


class ApiKeyCreated(ApiKeyStub):
    """A new key, with the key itself: shown this once, never again."""

    key: str = Field(description="the bearer token for the channel's backend; store it now")


class ApiKeyPage(BaseModel):
    items: list[ApiKeyOut]
    next_cursor: str | None


class KeyShownOnce(Conflict):
    """A retried create whose key was already created and shown."""

    def __init__(self, created: dict[str, Any]) -> None:
        super().__init__(
            f"API key {created['id']} ({created['prefix']}...) was created by the first request "
            "with this Idempotency-Key, and its key was shown then, once: it cannot be shown "
            "again. If it was lost, revoke that key and create another.",
            id=created["id"],
            prefix=created["prefix"],
        )


def key_out(row: api_keys.ApiKey) -> ApiKeyOut:
    return ApiKeyOut.model_validate(row, from_attributes=True)


@router.post(
    "/api-keys",
    response_model=ApiKeyCreated,
    status_code=201,
    responses=errors(403, 409),
)
async def create_api_key(
    body: ApiKeyCreate, session: Session, principal: CurrentPrincipal, key: IdempotencyKey = None
) -> JSONResponse:
    """Create a channel's API key (admins). The key is in this answer and nowhere else, ever.

    A retry with the same `Idempotency-Key` creates no second key and cannot show the key
    again: it answers 409 with the `id` and `prefix` of the key created first (revoke it if
    its key was lost). A name is taken while a live key holds it (409).
    """
    require(principal, Resource.api_keys, Action.create)
    shown: list[str] = []

    async def create() -> tuple[int, Any]:
        row, secret = await api_keys.create(session, name=body.name, actor=principal)
        shown.append(secret)
        return 201, ApiKeyStub.model_validate(row, from_attributes=True).model_dump(mode="json")

    code, payload = await run_once(
        session,
        scope=f"{principal.id}:api-keys",
        key=key,
        payload=body.model_dump(mode="json"),
        create=create,
    )
    if not shown:
        raise KeyShownOnce(payload)
    return JSONResponse({**payload, "key": shown[0]}, status_code=code, headers=NO_STORE)


@router.get("/api-keys", response_model=ApiKeyPage, responses=errors(403))
async def list_api_keys(
    session: Session, principal: CurrentPrincipal, limit: Limit = 100, cursor: PageCursor = None
) -> ApiKeyPage:
    """API keys by id, revoked ones included (admins); never the keys themselves."""
    require(principal, Resource.api_keys, Action.list)
    rows = await api_keys.list_keys(session, after_id=decode_id_cursor(cursor), limit=limit)
    return ApiKeyPage(
        items=[key_out(r) for r in rows], next_cursor=next_id_cursor([r.id for r in rows], limit)
    )


@router.post("/api-keys/{key_id}/revoke", response_model=ApiKeyOut, responses=errors(403))
async def revoke_api_key(key_id: KeyId, session: Session, principal: CurrentPrincipal) -> ApiKeyOut:
    """Revoke a key (admins): from the answer on, a request with it is refused (401).
    Revoking a revoked key changes nothing and answers the key as it is."""
    require(principal, Resource.api_keys, Action.revoke)
    return key_out(await api_keys.revoke(session, key_id=key_id, actor=principal))
