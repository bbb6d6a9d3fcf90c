"""Lookups that could unmask a customer's numbers: counted per user, limited and recorded.

Theory of operation
-------------------

An agent sees ``+86138****8000``. Two kinds of request would tell them the hidden digits
if they could make enough of them: a lookup by phone (``GET /customers?phone=``, one per
candidate, until one finds the customer) and a create whose number another customer
already holds (the one conflict among the candidates). Both are legitimate one at a time
(the caller on the line; a new customer), so they are neither refused nor answered
differently; instead:

- **Counted.** For roles that see numbers masked, each lookup by phone and each create
  that carries a phone number is a hit on one per-user limit (``lookup_limit``:
  ``settings.lookup_limit`` hits per ``settings.lookup_window_s``), kept in PostgreSQL by
  ``app/ratelimit.py`` and committed on its own (through the engine), so it holds across
  instances and survives the request's rollback (a 409 rolls back). Over it the request is
  a 429 with ``Retry-After``, before anything is looked up or inserted. A create is counted
  whether or not it conflicts: a sweep of creates over the hidden digits meets exactly one
  conflict, so a limit on conflicts alone would never stop it, and a user over such a limit
  could still tell a taken number (429) from a free one (201).
- **Recorded.** Every lookup, conflict and refusal is a row in the access log
  (``app/accesslog.py``), with the number searched masked: a lookup that answers in the
  request's transaction, a refused or failed one in a short transaction of its own.
- **Saying nothing more.** A conflict names neither the customer holding the number nor
  any part of it (``app/customers/exceptions.py``).

Supervisors and admins see the numbers anyway; their lookups and conflicts are recorded but
not limited. ID numbers need none of this: a role that sees them masked cannot set one
(``app/customers/permissions.py``), so it can never conflict on one. A create refused by
the limit is recorded as ``customer.conflict`` with the outcome ``limited``: an attempt
that could have ended in a conflict. A create that succeeds is on record as its
``customer.created`` event, with its author.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app import ratelimit
from app.accesslog import Access, AccessKind, AccessOutcome, record_access, record_access_apart
from app.agents.access import Action, Resource, allows
from app.agents.permissions import Principal
from app.config import Settings
from app.customers.exceptions import PHONE_CONSTRAINT, CustomerNotFound
from app.errors import integrity_error_body

LIMIT_NAME = "customer_lookup"


def lookup_limit(settings: Settings) -> ratelimit.Limit:
    """The per-user limit on lookups that could unmask a number."""
    return ratelimit.Limit(
        name=LIMIT_NAME,
        hits=settings.lookup_limit,
        window_s=settings.lookup_window_s,
        label="customer lookups by phone number",
    )


def is_limited(principal: Principal) -> bool:
    """Roles that see numbers masked are limited; those that see them in full are not."""
    return not allows(principal, Resource.customers, Action.unmask)


def is_phone_conflict(error: IntegrityError) -> bool:
    return bool(integrity_error_body(error)["constraint"] == PHONE_CONSTRAINT)


@dataclass(frozen=True, slots=True)
class LookupGuard:
    """One request's means to count, limit and record its lookups."""

    session: AsyncSession
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    principal: Principal
    settings: Settings

    async def count(self, kind: AccessKind, query: str | None) -> None:
        """One hit on the user's lookup limit, committed at once; over it, record the
        refusal and raise ``RateLimited`` (a 429)."""
        if not is_limited(self.principal):
            return
        try:
            await ratelimit.hit(self.engine, self.limit, self.key)
        except ratelimit.RateLimited:
            await self.failed(Access(kind, AccessOutcome.limited, query=query))
            raise

    async def answered(self, access: Access) -> None:
        """Record an access that is answered: in the request's own transaction."""
        await record_access(self.session, self.principal, access)

    async def failed(self, access: Access) -> None:
        """Record an access whose request fails: in a transaction of its own."""
        await record_access_apart(self.sessionmaker, self.principal, access)

    @asynccontextmanager
    async def conflicts_recorded(self, query: str | None) -> AsyncIterator[None]:
        """Record a phone-number conflict raised inside the block, then let it through."""
        try:
            yield
        except IntegrityError as error:
            if is_phone_conflict(error):
                await self.failed(
                    Access(AccessKind.customer_conflict, AccessOutcome.conflict, query=query)
                )
            raise

    @asynccontextmanager
    async def absence_recorded(self, kind: AccessKind, query: str | None) -> AsyncIterator[None]:
        """Record a customer not found inside the block, then let the 404 through."""
        try:
            yield
        except CustomerNotFound:
            await self.failed(Access(kind, AccessOutcome.not_found, query=query))
            raise

    @property
    def limit(self) -> ratelimit.Limit:
        return lookup_limit(self.settings)

    @property
    def key(self) -> str:
        return str(self.principal.id)
