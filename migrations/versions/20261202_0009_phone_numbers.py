"""phone_numbers: customers' stored phone numbers normalised with libphonenumber (E.164)

Stored numbers were normalised by hand-written rules that kept national numbers as bare
digits (``01065528888``) and took any 11 digits starting with 1 for a mobile, so one number
could be stored in two forms and a lookup by caller number missed one of them. This reads
every stored number again with ``identity.normalise_phone`` (the rules the service now
applies, in the configured default region) and stores the result where it differs.

Two kinds of rows are left as they are, and are logged with their ids (never their
numbers) so an operator can mend them with a PATCH:

- a number that is not valid under the new rules (``+8612345678901``): its row keeps the
  old form, can still be read by id, and is found by phone only once corrected;
- a number whose normalised form another customer already has (the same number stored
  twice under the old rules): a customer already stored in that form keeps it, else the one
  with the lowest id gets it; the others keep their old form, since merging customers is a
  decision for a person.

``contacts.caller`` is left as it was: a record of the number a contact came from, never
looked up.

The downgrade changes nothing: the old forms are not kept, and the normalised ones are
numbers the old code reads as they are.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 12:00:00.000000+00:00
"""

import logging
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from app.config import Settings
from app.customers.identity import InvalidPhone, normalise_phone

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger("alembic.runtime.migration")

_BATCH = 1000


def upgrade() -> None:
    region = Settings().default_phone_region
    connection = op.get_bind()
    rows = connection.execute(
        sa.text("SELECT id, phone FROM customers WHERE phone IS NOT NULL ORDER BY id")
    ).all()
    taken = {phone for _, phone in rows}
    changes: list[dict[str, object]] = []
    invalid: list[int] = []
    duplicates: list[int] = []
    for customer_id, phone in rows:
        try:
            normalised = normalise_phone(phone, region=region)
        except InvalidPhone:
            invalid.append(customer_id)
            continue
        if normalised == phone:
            continue
        if normalised in taken:
            duplicates.append(customer_id)
            continue
        taken.add(normalised)
        changes.append({"id": customer_id, "phone": normalised})
    update = sa.text("UPDATE customers SET phone = :phone WHERE id = :id")
    for start in range(0, len(changes), _BATCH):
        connection.execute(update, changes[start : start + _BATCH])
    _report(len(changes), invalid, duplicates)


def _report(changed: int, invalid: list[int], duplicates: list[int]) -> None:
    log.info("phone numbers: %d customers' numbers normalised", changed)
    if invalid:
        log.warning(
            "phone numbers: %d customers keep a number that is not valid (ids %s)",
            len(invalid),
            ", ".join(map(str, invalid)),
        )
    if duplicates:
        log.warning(
            "phone numbers: %d customers keep their old form because another customer "
            "has the same number (ids %s)",
            len(duplicates),
            ", ".join(map(str, duplicates)),
        )


def downgrade() -> None:
    pass
