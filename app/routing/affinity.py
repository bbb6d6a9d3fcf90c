"""Who a customer should reach first: the last-agent affinity, as routing keeps it.

Theory of operation
-------------------

A higher domain that knows a customer is in the middle of something with one agent (the
complaint desk: the handler of their open complaint) asks routing to offer that customer's
next contacts to the agent first: ``prefer_agent`` writes the customer's one
``customer_affinities`` row (the agent, ``hold_s``, who asked and for what, when), replacing
any earlier one, so the latest request wins. ``release`` withdraws it, but only while the row
is still the one that source set for that reference: a release that comes after another
request replaced it changes nothing.

The dispatcher's round reads the row with each waiting contact (``app.routing.rounds``, a
join on the primary key) and hands it to the scoring core as the contact's
``last_agent_id``, with ``last_agent_until = enqueued_at + hold_s``, cut at the contact's
target plus ``starvation_bound_s``. Until then the contact is held for that agent while they
are present (signed in and available, qualified, not a decliner), even when busy
(``scoring``); from then on the contact goes by the normal rules.

Decisions, and why
------------------

**A hold only while the agent is there.** Inside the window the contact is the agent's alone
and waits for them while they are busy (at capacity, in wrap-up, resting), but an agent who is
away, offline, deactivated, unqualified or who declined the contact holds nothing: a complaint
handler at lunch must not keep a caller waiting. The window is bounded by ``hold_s`` and, by
the round, by the contact's target plus the starvation bound, so a hold never makes a contact
overdue.

**One row per customer**, keyed by the customer: the round's join costs one index probe per
waiting contact whatever the number of affinities, and "which agent first" has one answer.
The domain that sets it decides which of its own reasons wins (the desk: the most recently
assigned open complaint).

**The window counts from the contact's enqueue time** (kept across transfers and re-queues),
like the relationship-manager window, so a contact never gets a fresh window by moving.
"""

from __future__ import annotations

import math
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.routing.models import CustomerAffinity

__all__ = ["CustomerAffinity", "prefer_agent", "preferred", "release"]


def _check_hold(hold_s: float) -> None:
    if not (math.isfinite(hold_s) and hold_s > 0):
        raise ValueError(f"hold_s must be a finite number > 0, got {hold_s!r}")


async def prefer_agent(
    session: AsyncSession,
    *,
    customer_id: int,
    agent_id: int,
    hold_s: float,
    source: str,
    ref: str,
    now: datetime,
) -> None:
    """Offer the customer's contacts to ``agent_id`` first, each for ``hold_s`` after it
    queued; replaces the customer's earlier preference, whoever set it."""
    _check_hold(hold_s)
    values = {
        "agent_id": agent_id,
        "hold_s": hold_s,
        "source": source,
        "source_ref": ref,
        "set_at": now,
    }
    stmt = insert(CustomerAffinity).values(customer_id=customer_id, **values)
    await session.execute(stmt.on_conflict_do_update(index_elements=["customer_id"], set_=values))


async def release(session: AsyncSession, *, customer_id: int, source: str, ref: str) -> bool:
    """Withdraw the customer's preference if ``source`` set it for ``ref``; True if it did."""
    stmt = (
        delete(CustomerAffinity)
        .where(
            CustomerAffinity.customer_id == customer_id,
            CustomerAffinity.source == source,
            CustomerAffinity.source_ref == ref,
        )
        .returning(CustomerAffinity.customer_id)
    )
    return (await session.execute(stmt)).first() is not None


async def preferred(session: AsyncSession, customer_id: int) -> CustomerAffinity | None:
    """The customer's preference, if any."""
    stmt = select(CustomerAffinity).where(CustomerAffinity.customer_id == customer_id)
    return await session.scalar(stmt.execution_options(populate_existing=True))
