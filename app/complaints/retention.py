"""What a complaint keeps, and when, once it is finished: the archive and retention rules.

Theory of operation
-------------------

A finished complaint (``lifecycle.FINISHED``: confirmed, closed, withdrawn, rejected) is
archived ``archive_after`` days after the move that finished it (``archive_cutoff``). An
archived complaint is kept whole for ``retention_years`` years from its archiving
(``retention_cutoff``; a 29 February archive is due on 28 February, not a day late), then
anonymised unless a legal hold keeps it.

Anonymising removes what identifies a person and keeps what the statistics and the audit
trail need. The tables below are the whole rule:

- ``PERSONAL_COLUMNS``: the complaint's own text about people and what happened, replaced by
  ``MARKER`` (the columns stay NOT NULL, and a reader sees at once why the text is gone);
- ``UNLINKED``: references to records that identify the customer (the customer, the contact
  it came in on), set to null; the customer's tier is kept in the complaint first;
- ``PERSONAL_FACTS``: the free text that moves brought (a reason, a resolution, a root cause,
  ...), replaced by ``MARKER`` wherever it appears in ``facts``; the facts with a closed set
  of values (categories, severity, an outcome, an amount, whether it was upheld) stay;
- ``KEPT_LINKED``: of each registration linked to it, only when, by whom and through which
  channel, and the branch and the time of the matter.

The records around the complaint lose their free text too (``app.complaints.anonymise``):
notes, survey comments, attachments' names and content, approval requests' reasons, the
outbox's copies of the contact details and of what the customer was told, and the content
(reason and data) of the audit trail's entries. The trail keeps who did what and when, and
each entry's content as a digest, so it still verifies, with one more entry recording the
anonymisation (``app.complaints.chain``).

Categories, severity, branch, channel, tier, every timestamp and the clocks are untouched.

Pure: no I/O and no clock; the sweeps pass ``now``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Final

MARKER: Final = "[anonymised]"
PERSONAL_COLUMNS: Final = (
    "complainant_name",
    "complainant_contact",
    "location",
    "description",
    "grounds",
    "request",
)
UNLINKED: Final = ("customer_id", "contact_id")
PERSONAL_FACTS: Final = frozenset(
    {"reason", "resolution", "root_cause", "corrective_action", "remedy"}
)
KEPT_LINKED: Final = ("at", "by", "channel")
KEPT_LINKED_MATTER: Final = ("branch", "occurred_at")


def archive_cutoff(now: datetime, archive_after_days: int) -> datetime:
    """Complaints finished at or before this moment are due for the archive."""
    return now - timedelta(days=archive_after_days)


def years_before(moment: datetime, years: int) -> datetime:
    """The same calendar moment ``years`` earlier (29 February gives 28 February)."""
    try:
        return moment.replace(year=moment.year - years)
    except ValueError:
        return moment.replace(year=moment.year - years, day=28)


def retention_cutoff(now: datetime, retention_years: int) -> datetime:
    """Complaints archived at or before this moment have been kept long enough."""
    return years_before(now, retention_years)


def anonymised_facts(facts: Mapping[str, Any]) -> dict[str, Any]:
    """``facts`` (one entry per move: its facts) with every personal text replaced."""
    return {verb: _without_text(given) for verb, given in facts.items()}


def _without_text(given: Any) -> Any:
    if not isinstance(given, Mapping):
        return given
    return {
        name: MARKER if name in PERSONAL_FACTS and isinstance(value, str) else value
        for name, value in given.items()
    }


def anonymised_linked(linked: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Each linked registration reduced to when, by whom, the channel and the branch."""
    return [_kept_registration(facts) for facts in linked]


def _kept_registration(facts: Mapping[str, Any]) -> dict[str, Any]:
    kept = {name: facts[name] for name in KEPT_LINKED if name in facts}
    matter = facts.get("matter")
    if isinstance(matter, Mapping):
        kept["matter"] = {name: matter[name] for name in KEPT_LINKED_MATTER if name in matter}
    return kept
