"""A registration's complainant contact: taken exactly when the notices can be sent to it or
the status lookup can match it, the two rules the desk reaches a complainant by."""

from __future__ import annotations

import pytest

from app.complaints.notice_texts import recipient_of
from app.complaints.schemas import contact_problem
from app.customers.identity import DEFAULT_PHONE_REGION, InvalidPhone, normalise_phone
from tests.complaints.test_registration import REACHABLE, UNREACHABLE

# Every kind of value either rule reads, and values neither does.
CONTACTS = [
    *REACHABLE,
    *UNREACHABLE.values(),
    " li@example.cn ",
    "138 0013 8000",
    "+44 20 7946 0000",
    "10086",
    "+86 95561",
    "sip:1001@pbx.example.com",
    "1-800-FLOWERS",
    "+86 138 0013 8000 ext. 12",
    "a@b.c",
]


def lookup_matches(contact: str) -> bool:
    """Whether the status lookup can match ``contact`` (it normalises it as a number)."""
    try:
        normalise_phone(contact, region=DEFAULT_PHONE_REGION)
    except InvalidPhone:
        return False
    return True


def taken(contact: str) -> bool:
    return contact_problem(contact, DEFAULT_PHONE_REGION) is None


class TestReachable:
    @pytest.mark.parametrize("contact", CONTACTS)
    def test_a_contact_is_taken_exactly_when_the_notices_or_the_lookup_can_use_it(
        self, contact: str
    ) -> None:
        usable = recipient_of(contact) is not None or lookup_matches(contact.strip())
        assert taken(contact) is usable

    def test_every_reachable_example_is_taken_and_no_unreachable_one(self) -> None:
        assert all(taken(contact) for contact in REACHABLE)
        assert not any(taken(contact) for contact in UNREACHABLE.values())

    def test_numbers_are_read_in_the_region_given(self) -> None:
        """A local number of the service's region, as the status lookup reads it there."""
        assert contact_problem("9123 4567", "HK") is None
        assert contact_problem("9123 4567", "CN") is not None
