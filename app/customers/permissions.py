"""Which customer fields a role may set. Pure rules; the router enforces them.

A role without ``customers unmask`` in the access table (``app/agents/access.py``: agents) sees
customers' phone and ID numbers masked, and masking is only a control if they
cannot undo it. Setting a number is a way to read one (a write refused because another
customer holds the number confirms a guess), and changing one re-points caller
identification, and the tier's priority with it, at another person. So a role that sees
numbers masked:

- never sets or changes ``id_number`` (identity numbers are entered by supervisors, admins
  and the channels' service accounts);
- gives a new customer a ``phone`` (the caller on the line), but never changes an existing
  customer's;
- never sets ``tier`` or ``relationship_manager_id``, on create or on update (an agent could
  otherwise name themselves a platinum customer's manager).

A role with ``customers unmask`` (supervisors, admins), who see the numbers in full, may set
every field.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from app.agents.access import Action, Resource, allows
from app.agents.permissions import Principal

# Fields only a role that sees the numbers in full may set.
PRIVILEGED_ON_CREATE: Final = frozenset({"id_number", "tier", "relationship_manager_id"})
PRIVILEGED_ON_UPDATE: Final = PRIVILEGED_ON_CREATE | {"phone"}


def refused_on_create(principal: Principal, fields: Iterable[str]) -> list[str]:
    """The fields given a value on a new customer that ``principal`` may not set, sorted."""
    return _refused(principal, fields, PRIVILEGED_ON_CREATE)


def refused_on_update(principal: Principal, fields: Iterable[str]) -> list[str]:
    """The fields sent in a change that ``principal`` may not change, sorted."""
    return _refused(principal, fields, PRIVILEGED_ON_UPDATE)


def _refused(principal: Principal, fields: Iterable[str], privileged: frozenset[str]) -> list[str]:
    if allows(principal, Resource.customers, Action.unmask):
        return []
    return sorted(privileged.intersection(fields))
