"""Who may do what: the one access model, as a literal table, and the checks that read it.

Theory of operation
-------------------

``POLICY`` maps ``(role, resource, action)`` to a ``Rule``; a triple the table lacks is
``DENY``. Four rules:

- ``ALLOW``: every principal of the role.
- ``DENY``: none.
- ``OWN``: the principal's own work only: the record names the principal among its owners
  (an offer made to them, a contact they hold or were offered, themselves; for a contact's
  ``read_history``, a contact of the customer the principal is serving now). A channel's
  own work is what its keys did, whichever key: a contact its channel queued (the contact
  names the channel) or one that continues it.
- ``SAME_SITE``: the principal's own work, and the work of the principal's site. A record
  acting on one agent (its status, its wrap-up, its offers) is judged by
  ``app.agents.permissions.can_manage``: a supervisor manages themselves and the agents of
  their own site. A contact belongs to the sites of the agents who hold or held it or were
  offered it; a contact never offered has no site yet and is any supervisor's.

The module is pure: the routers load what a rule needs (the owners, the sites, the target
agent), then call ``require`` (raise) or ``allows`` (ask). A read of one record the
principal may not see raises the record's own not-found error (``unknown``), exactly as if
the id did not exist, so sequential ids cannot be probed; so does an act on a record that is
not the principal's own when the role may read no such record at all (a channel reporting a
contact it did not queue). Every other refusal is a 403.

``render_table`` writes the table as the markdown of ``docs/access.md``; a test holds the
two equal. Roles are named by their value: a role is added to the model by adding its rows.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from app.agents.models import Role
from app.agents.permissions import Principal, Target, can_manage
from app.errors import Forbidden, NotFound


class Rule(StrEnum):
    ALLOW = "allow"
    DENY = "deny"
    OWN = "own"
    SAME_SITE = "same site"


class Resource(StrEnum):
    agents = "agents"
    skills = "skills"
    customers = "customers"
    queues = "queues"
    stats = "stats"
    contacts = "contacts"
    offers = "offers"
    events = "events"
    access_log = "access_log"
    api_keys = "api_keys"
    complaints = "complaints"
    reports = "reports"


class Action(StrEnum):
    create = "create"
    read = "read"
    list = "list"
    update = "update"
    # agents: skills, capacity, site, role, activation (``update`` is name and password)
    manage = "manage"
    read_private = "read_private"
    status = "status"
    # contacts: complete and transfer; agents: end the wrap-up; offers: accept and reject
    act = "act"
    abandon = "abandon"
    cancel = "cancel"
    read_notes = "read_notes"
    # contacts: the other contacts of a customer the principal is serving now (the customer card)
    read_history = "read_history"
    # customers: see phone and ID numbers in full, set the fields that re-point identity
    unmask = "unmask"
    # events: follow every event (the wallboard)
    stream = "stream"
    revoke = "revoke"
    # complaints: write them out in bulk, personal data included (CSV, JSON)
    export = "export"


ROLES: Final = ("agent", "supervisor", "admin", "integration")
A, R, P = Action, Resource, Rule

POLICY: Final[dict[tuple[str, Resource, Action], Rule]] = {
    # --- agent ------------------------------------------------------------------------------
    ("agent", R.agents, A.list): P.ALLOW,
    ("agent", R.agents, A.read): P.ALLOW,
    ("agent", R.agents, A.read_private): P.OWN,
    ("agent", R.agents, A.update): P.OWN,
    ("agent", R.agents, A.status): P.OWN,
    ("agent", R.agents, A.act): P.OWN,
    ("agent", R.skills, A.list): P.ALLOW,
    ("agent", R.customers, A.create): P.ALLOW,
    ("agent", R.customers, A.list): P.ALLOW,
    ("agent", R.customers, A.read): P.ALLOW,
    ("agent", R.customers, A.update): P.ALLOW,
    ("agent", R.queues, A.list): P.ALLOW,
    ("agent", R.queues, A.read): P.ALLOW,
    ("agent", R.stats, A.read): P.ALLOW,
    ("agent", R.contacts, A.create): P.ALLOW,
    ("agent", R.contacts, A.read): P.OWN,
    ("agent", R.contacts, A.list): P.OWN,
    ("agent", R.contacts, A.read_history): P.OWN,
    ("agent", R.contacts, A.read_notes): P.OWN,
    ("agent", R.contacts, A.act): P.OWN,
    ("agent", R.complaints, A.create): P.ALLOW,
    ("agent", R.complaints, A.list): P.OWN,
    ("agent", R.complaints, A.read): P.OWN,
    ("agent", R.complaints, A.act): P.OWN,
    ("agent", R.offers, A.list): P.OWN,
    ("agent", R.offers, A.act): P.OWN,
    ("agent", R.events, A.list): P.OWN,
    # --- supervisor -------------------------------------------------------------------------
    ("supervisor", R.agents, A.create): P.SAME_SITE,
    ("supervisor", R.agents, A.list): P.ALLOW,
    ("supervisor", R.agents, A.read): P.ALLOW,
    ("supervisor", R.agents, A.read_private): P.SAME_SITE,
    ("supervisor", R.agents, A.update): P.SAME_SITE,
    ("supervisor", R.agents, A.manage): P.SAME_SITE,
    ("supervisor", R.agents, A.status): P.SAME_SITE,
    ("supervisor", R.agents, A.act): P.SAME_SITE,
    ("supervisor", R.skills, A.create): P.ALLOW,
    ("supervisor", R.skills, A.list): P.ALLOW,
    ("supervisor", R.customers, A.create): P.ALLOW,
    ("supervisor", R.customers, A.list): P.ALLOW,
    ("supervisor", R.customers, A.read): P.ALLOW,
    ("supervisor", R.customers, A.update): P.ALLOW,
    ("supervisor", R.customers, A.unmask): P.ALLOW,
    ("supervisor", R.queues, A.create): P.ALLOW,
    ("supervisor", R.queues, A.list): P.ALLOW,
    ("supervisor", R.queues, A.read): P.ALLOW,
    ("supervisor", R.queues, A.update): P.ALLOW,
    ("supervisor", R.stats, A.read): P.ALLOW,
    ("supervisor", R.contacts, A.create): P.ALLOW,
    ("supervisor", R.contacts, A.read): P.SAME_SITE,
    ("supervisor", R.contacts, A.list): P.SAME_SITE,
    ("supervisor", R.contacts, A.read_notes): P.SAME_SITE,
    ("supervisor", R.contacts, A.act): P.SAME_SITE,
    ("supervisor", R.contacts, A.abandon): P.ALLOW,
    ("supervisor", R.contacts, A.cancel): P.SAME_SITE,
    ("supervisor", R.complaints, A.create): P.ALLOW,
    ("supervisor", R.complaints, A.list): P.SAME_SITE,
    ("supervisor", R.complaints, A.read): P.SAME_SITE,
    ("supervisor", R.complaints, A.act): P.SAME_SITE,
    ("supervisor", R.complaints, A.export): P.SAME_SITE,
    ("supervisor", R.reports, A.read): P.SAME_SITE,
    ("supervisor", R.offers, A.list): P.SAME_SITE,
    ("supervisor", R.offers, A.act): P.OWN,
    ("supervisor", R.events, A.list): P.ALLOW,
    ("supervisor", R.events, A.stream): P.ALLOW,
    ("supervisor", R.access_log, A.list): P.SAME_SITE,
    # --- admin ------------------------------------------------------------------------------
    ("admin", R.agents, A.create): P.ALLOW,
    ("admin", R.agents, A.list): P.ALLOW,
    ("admin", R.agents, A.read): P.ALLOW,
    ("admin", R.agents, A.read_private): P.ALLOW,
    ("admin", R.agents, A.update): P.ALLOW,
    ("admin", R.agents, A.manage): P.ALLOW,
    ("admin", R.agents, A.status): P.ALLOW,
    ("admin", R.agents, A.act): P.ALLOW,
    ("admin", R.skills, A.create): P.ALLOW,
    ("admin", R.skills, A.list): P.ALLOW,
    ("admin", R.customers, A.create): P.ALLOW,
    ("admin", R.customers, A.list): P.ALLOW,
    ("admin", R.customers, A.read): P.ALLOW,
    ("admin", R.customers, A.update): P.ALLOW,
    ("admin", R.customers, A.unmask): P.ALLOW,
    ("admin", R.queues, A.create): P.ALLOW,
    ("admin", R.queues, A.list): P.ALLOW,
    ("admin", R.queues, A.read): P.ALLOW,
    ("admin", R.queues, A.update): P.ALLOW,
    ("admin", R.stats, A.read): P.ALLOW,
    ("admin", R.contacts, A.create): P.ALLOW,
    ("admin", R.contacts, A.read): P.ALLOW,
    ("admin", R.contacts, A.list): P.ALLOW,
    ("admin", R.contacts, A.read_history): P.ALLOW,
    ("admin", R.contacts, A.read_notes): P.ALLOW,
    ("admin", R.contacts, A.act): P.ALLOW,
    ("admin", R.contacts, A.abandon): P.ALLOW,
    ("admin", R.contacts, A.cancel): P.ALLOW,
    ("admin", R.offers, A.list): P.ALLOW,
    ("admin", R.offers, A.act): P.OWN,
    ("admin", R.events, A.list): P.ALLOW,
    ("admin", R.events, A.stream): P.ALLOW,
    ("admin", R.access_log, A.list): P.ALLOW,
    ("admin", R.complaints, A.create): P.ALLOW,
    ("admin", R.complaints, A.list): P.ALLOW,
    ("admin", R.complaints, A.read): P.ALLOW,
    ("admin", R.complaints, A.act): P.ALLOW,
    ("admin", R.complaints, A.export): P.ALLOW,
    ("admin", R.complaints, A.manage): P.ALLOW,  # clock policies; legal holds
    ("admin", R.reports, A.read): P.ALLOW,
    ("admin", R.api_keys, A.create): P.ALLOW,
    ("admin", R.api_keys, A.list): P.ALLOW,
    ("admin", R.api_keys, A.revoke): P.ALLOW,
    # --- integration (a channel's service account: an API key) -------------------------------
    ("integration", R.contacts, A.create): P.ALLOW,
    ("integration", R.contacts, A.abandon): P.OWN,
    ("integration", R.complaints, A.create): P.ALLOW,
}


@dataclass(frozen=True, slots=True)
class Subject:
    """What a rule needs to know of the record acted on.

    ``owner_ids``: the agents whose own work it is. ``sites``: the sites it belongs to
    (empty: none yet), or None when the record has no site rule. ``agent``: the one agent it
    acts on, judged by ``can_manage``. ``integration``: the channel whose work it is (the
    name of its keys), if any.
    """

    owner_ids: Collection[int] = ()
    sites: Collection[str | None] | None = None
    agent: Target | None = None
    integration: str | None = None


def rule_for(role: str, resource: Resource, action: Action) -> Rule:
    """The table's rule; a triple it lacks is ``DENY``."""
    return POLICY.get((role, resource, action), Rule.DENY)


def allows(
    principal: Principal,
    resource: Resource,
    action: Action,
    *,
    owner_ids: Collection[int] = (),
    sites: Collection[str | None] | None = None,
    agent: Target | None = None,
    integration: str | None = None,
) -> bool:
    """May ``principal`` do ``action`` to this record of ``resource``?"""
    rule = rule_for(principal.role.value, resource, action)
    return passes(rule, principal, Subject(owner_ids, sites, agent, integration))


def passes(rule: Rule, principal: Principal, subject: Subject) -> bool:
    if rule is Rule.ALLOW:
        return True
    if rule is Rule.OWN:
        return _owns(principal, subject)
    if rule is Rule.SAME_SITE:
        return _owns(principal, subject) or _same_site(principal, subject)
    return False


def _owns(principal: Principal, subject: Subject) -> bool:
    """A key's id is no agent's: a channel owns only what names the channel."""
    if principal.role is Role.integration:
        return subject.integration is not None and subject.integration == principal.username
    return principal.id in subject.owner_ids


def _same_site(principal: Principal, subject: Subject) -> bool:
    if subject.agent is not None:
        return can_manage(principal, subject.agent)
    if subject.sites is None:
        return False
    return not subject.sites or (principal.site is not None and principal.site in subject.sites)


def require(
    principal: Principal,
    resource: Resource,
    action: Action,
    *,
    owner_ids: Collection[int] = (),
    sites: Collection[str | None] | None = None,
    agent: Target | None = None,
    integration: str | None = None,
    unknown: NotFound | None = None,
) -> None:
    """Raise unless the table lets ``principal`` do ``action`` to this record.

    A refusal by an ownership or site rule raises ``unknown``, the error a missing record
    gives, when one is passed, for a read, and for any action of a role that may read no
    record of the resource (it is not to learn which ids exist); every other refusal is a
    403.
    """
    role = principal.role.value
    rule = rule_for(role, resource, action)
    if passes(rule, principal, Subject(owner_ids, sites, agent, integration)):
        return
    hidden = action is Action.read or rule_for(role, resource, Action.read) is Rule.DENY
    if unknown is not None and rule is not Rule.DENY and hidden:
        raise unknown
    raise Forbidden(refusal(principal, resource, action, rule))


def a_role(role: str) -> str:
    """The role with its article, as a refusal names it: "an agent", "a supervisor"."""
    return f"{'an' if role[0] in 'aeiou' else 'a'} {role}"


def refusal(principal: Principal, resource: Resource, action: Action, rule: Rule) -> str:
    """Why a request was refused, in the words of the rule."""
    verb = "act on" if action is Action.act else action.value.replace("_", " ")
    what = f"{verb} {resource.value.replace('_', ' ')}"
    role = principal.role.value
    who = a_role(role)
    if rule is Rule.OWN:
        return f"{who} may {what} only for their own work"
    if rule is Rule.SAME_SITE:
        return f"{who} may {what} only for their own site"
    return f"{who} may not {what}"


# --- the table as docs/access.md shows it ----------------------------------------------------


def pairs() -> list[tuple[Resource, Action]]:
    """Every (resource, action) the table names, in declaration order of the enums."""
    named = {(resource, action) for _, resource, action in POLICY}
    return [(r, a) for r in Resource for a in Action if (r, a) in named]


def render_table() -> str:
    """The policy as a markdown table: one row per resource and action, a column per role."""
    head = "| resource | action | " + " | ".join(ROLES) + " |"
    line = "|---|---|" + "---|" * len(ROLES)
    rows = [
        f"| {r.value} | {a.value} | "
        + " | ".join(rule_for(role, r, a).value for role in ROLES)
        + " |"
        for r, a in pairs()
    ]
    return "\n".join([head, line, *rows]) + "\n"
