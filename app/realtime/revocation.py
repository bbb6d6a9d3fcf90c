"""Open sockets end when the sign-in they were opened with ends.

Theory of operation
-------------------

An HTTP request re-reads its agent's row every time; a websocket authenticates once, at
connect. So every authenticated socket registers its token's claims here (a ``SignIn``),
before its agent's row is first read, and the watch revokes the ``SignIn`` (sets
``revoked``, with a short ``reason``) when the token stops being valid. The socket's own
tasks wait on ``revoked`` and close with 4401.

A token stops being valid three ways, each noticed here:

- **its expiry**: one timer per sign-in, due at the token's ``exp``; nothing polls.
- **a change to its agent**: the agents domain bumps ``token_version`` on a new password,
  role, site or activation and logs ``agent.updated`` naming the fields. The hub hands every
  event it reads to ``on_events``, once; an event naming one of ``REVOKING_FIELDS`` marks its
  agent, if it has sign-ins open here, and one task re-reads the marked agents' rows in one
  statement and revokes each sign-in ``check_identity`` now refuses (a wallboard's user must
  also still see every event). The event only says whom to look at; the row decides. A
  change made through another instance reaches this one through the log like every event.
- **anything the log does not say** (a row changed by hand, a re-check that failed while the
  database was away): every ``REVALIDATE_S`` the same task re-checks every open sign-in, all
  in one statement; a failed re-check is tried again after ``RETRY_S``.

Registering before the first read of the row leaves no gap: a change committed before that
read is seen by it, and one committed after it is read by the hub after the registration,
which marks the agent. The task runs only while sign-ins are open; the last to close stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import time
from collections.abc import Awaitable, Callable, Collection, Iterator, Mapping, Sequence
from typing import Any, cast

from app.agents import service as agents_service
from app.agents.access import Action, Resource, allows
from app.agents.dependencies import check_identity
from app.agents.events import AgentEventType, Updated
from app.agents.security import TokenClaims
from app.agents.service import REVOKING_FIELDS, Identity
from app.errors import Unauthorized
from app.events.log import LoggedEvent
from app.realtime.hub import EventHub
from app.realtime.lean import Flag
from app.waiting import wait_for_wake

log = logging.getLogger(__name__)

REVALIDATE_S = 60.0  # every open sign-in re-checked this often, whatever the log says
RETRY_S = 1.0  # after a re-check that failed
EXPIRED = "the token has expired: sign in again"
NOT_WALLBOARD = "the wallboard needs the supervisor or admin role"

Lookup = Callable[[Collection[int]], Awaitable[Mapping[int, Identity]]]


class SignIn:
    """One open socket's token: ``revoked`` is set, with a ``reason``, once it is no longer
    valid."""

    def __init__(self, claims: TokenClaims, *, wallboard: bool) -> None:
        self.claims = claims
        self.wallboard = wallboard
        self.revoked = Flag()
        self.reason = ""
        self.expiry: asyncio.TimerHandle | None = None
        # Called once, when the sign-in is revoked (a socket's stream ends on it).
        self.on_revoke: Callable[[], None] | None = None

    def revoke(self, reason: str) -> None:
        if not self.revoked.is_set():
            self.reason = reason
            self.revoked.set()
            if self.on_revoke is not None:
                self.on_revoke()


def refusal(sign_in: SignIn, identity: Identity | None) -> str | None:
    """Why ``sign_in`` may no longer stream, given its agent's row now; None while it may."""
    try:
        principal = check_identity(sign_in.claims, identity)
    except Unauthorized as exc:
        return exc.detail
    if sign_in.wallboard and not allows(principal, Resource.events, Action.stream):
        return NOT_WALLBOARD
    return None


def revoking_agent(event: LoggedEvent) -> int | None:
    """The agent whose sign-ins ``event`` may have revoked, or None."""
    if event.type != AgentEventType.UPDATED or event.subject_type != "agent":
        return None
    fields = cast(Updated, event.data)["fields"]
    if REVOKING_FIELDS.isdisjoint(fields):
        return None
    subject = event.subject_id or ""
    return int(subject) if subject.isdigit() else None


class RevocationWatch:
    """The open sign-ins of this instance, by agent, revoked as their tokens stop working."""

    def __init__(
        self,
        lookup: Lookup,
        *,
        clock: Callable[[], float] = time.time,
        revalidate_s: float = REVALIDATE_S,
    ) -> None:
        self._lookup = lookup
        self._clock = clock  # wall-clock seconds, as a token's ``exp`` counts them
        self._revalidate_s = revalidate_s
        self._by_agent: dict[int, set[SignIn]] = {}
        self._marked: set[int] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.hub: EventHub | None = None

    def __len__(self) -> int:
        return sum(len(sign_ins) for sign_ins in self._by_agent.values())

    def follow(self, hub: EventHub) -> None:
        """Hear every event ``hub`` reads from now on."""
        self.hub = hub
        hub.add_listener(self.on_events)

    @contextlib.contextmanager
    def open(self, claims: TokenClaims, *, wallboard: bool) -> Iterator[SignIn]:
        """A sign-in watched while the block runs."""
        sign_in = SignIn(claims, wallboard=wallboard)
        self._add(sign_in)
        try:
            yield sign_in
        finally:
            self._remove(sign_in)

    def on_events(self, events: Sequence[LoggedEvent]) -> None:
        """Mark the agents with open sign-ins whose access these events may have changed."""
        for event in events:
            agent_id = revoking_agent(event)
            if agent_id is not None and agent_id in self._by_agent:
                self._marked.add(agent_id)
        if self._marked:
            self._wake.set()

    def _add(self, sign_in: SignIn) -> None:
        self._by_agent.setdefault(sign_in.claims.agent_id, set()).add(sign_in)
        sign_in.expiry = self._expiry_timer(sign_in)
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="revocation-watch")

    def _remove(self, sign_in: SignIn) -> None:
        if sign_in.expiry is not None:
            sign_in.expiry.cancel()
        agent_id = sign_in.claims.agent_id
        sign_ins = self._by_agent.get(agent_id, set())
        sign_ins.discard(sign_in)
        if not sign_ins:
            self._by_agent.pop(agent_id, None)
        if not self._by_agent and self._task is not None:
            self._task.cancel()
            self._task = None

    def _expiry_timer(self, sign_in: SignIn) -> asyncio.TimerHandle | None:
        left = sign_in.claims.expires_at - self._clock()
        if math.isinf(left):
            return None
        loop = asyncio.get_running_loop()
        return loop.call_later(max(left, 0.0), sign_in.revoke, EXPIRED)

    async def _run(self) -> None:
        """Re-check marked agents when woken, and every open sign-in when due."""
        loop = asyncio.get_running_loop()
        due = loop.time() + self._revalidate_s
        while True:
            await wait_for_wake(self._wake, max(due - loop.time(), 0.0))
            self._wake.clear()
            everyone = loop.time() >= due
            if everyone:
                due = loop.time() + self._revalidate_s
            if not await self._recheck(self._take(everyone=everyone)):
                due = min(due, loop.time() + RETRY_S)

    def _take(self, *, everyone: bool) -> set[int]:
        """The agents to re-check now: the marked ones, or every agent with a sign-in."""
        marked, self._marked = self._marked, set()
        return set(self._by_agent) if everyone else marked & self._by_agent.keys()

    async def _recheck(self, agent_ids: set[int]) -> bool:
        """Revoke the sign-ins of ``agent_ids`` their rows now refuse; False if unread."""
        if not agent_ids:
            return True
        try:
            identities = await self._lookup(agent_ids)
        except Exception:
            log.warning("open sign-ins not re-checked; retrying", exc_info=True)
            self._marked |= agent_ids
            return False
        for agent_id in agent_ids:
            for sign_in in tuple(self._by_agent.get(agent_id, ())):
                reason = refusal(sign_in, identities.get(agent_id))
                if reason is not None:
                    sign_in.revoke(reason)
        return True


def revocation_watch(state: Any) -> RevocationWatch:
    """The app's watch (``state`` is ``app.state``): made on first use, following its hub."""
    watch: RevocationWatch | None = getattr(state, "revocation_watch", None)
    if watch is None or watch.hub is not state.hub:
        lookup = functools.partial(agents_service.get_identities, state.db_pool)
        watch = RevocationWatch(lookup, revalidate_s=REVALIDATE_S)
        watch.follow(state.hub)
        state.revocation_watch = watch
    return watch
