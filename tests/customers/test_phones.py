"""Phone numbers: one stored form however a number is typed, valid numbers only, service
numbers kept, the default region configurable, and stored numbers migrated to that form."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterator

import asyncpg
import pytest
from alembic import command
from pydantic import ValidationError
from sqlalchemy.engine import make_url

from app.cli import alembic_config
from app.config import Settings
from app.customers.identity import InvalidPhone, PhoneProblem, normalise_phone
from app.db import drop_database, plain_url, recreate_database

BEIJING = "+861065528888"
MOBILE = "+8613812345678"


class TestSpellingsOfOneNumber:
    @pytest.mark.parametrize(
        "typed",
        [
            "010-6552-8888",
            "010 6552 8888",
            "01065528888",
            "(010) 6552-8888",
            "(010) 6552.8888",
            "10 6552 8888",
            "+86 10 6552 8888",
            "+86-10-6552-8888",
            "+86 (10) 6552 8888",
            "+86 (0)10 6552 8888",
            "+8601065528888",
            "+861065528888",
            "0086 10 6552 8888",
            "0086-10-65528888",
            "86 10 6552 8888",
            "861065528888",
            " 010\t6552 8888 ",
            "\uff10\uff11\uff10\uff0d\uff16\uff15\uff15\uff12\uff0d\uff18\uff18\uff18\uff18",
        ],
    )
    def test_beijing_landline_in_any_spelling_is_one_e164_number(self, typed: str) -> None:
        assert normalise_phone(typed) == BEIJING

    @pytest.mark.parametrize(
        "typed",
        [
            "13812345678",
            "138 1234 5678",
            "138-1234-5678",
            "138.1234.5678",
            "(138) 1234-5678",
            "+86 138 1234 5678",
            "+86-138-1234-5678",
            "+86 (138) 1234 5678",
            "+8613812345678",
            "8613812345678",
            "86.138.1234.5678",
            "0086 138 1234 5678",
            "008613812345678",
            "\uff0b86\u3000138 1234 5678",
        ],
    )
    def test_mobile_in_any_spelling_is_one_e164_number(self, typed: str) -> None:
        assert normalise_phone(typed) == MOBILE

    @pytest.mark.parametrize(
        ("typed", "stored"),
        [
            ("130 1234 5678", "+8613012345678"),
            ("131-1234-5678", "+8613112345678"),
            ("145 1234 5678", "+8614512345678"),
            ("150 1234 5678", "+8615012345678"),
            ("166 1234 5678", "+8616612345678"),
            ("170 1234 5678", "+8617012345678"),
            ("180 1234 5678", "+8618012345678"),
            ("190 1234 5678", "+8619012345678"),
            ("199 1234 5678", "+8619912345678"),
        ],
    )
    def test_mobiles_of_every_range_from_13_to_19_are_accepted(
        self, typed: str, stored: str
    ) -> None:
        assert normalise_phone(typed) == stored

    @pytest.mark.parametrize(
        ("typed", "stored"),
        [
            ("021-1234-5678", "+862112345678"),
            ("+86 21 1234 5678", "+862112345678"),
            ("0086-21-1234-5678", "+862112345678"),
            ("0755-8888-8888", "+8675588888888"),
            ("(0755) 8888 8888", "+8675588888888"),
            ("0571 8888 8888", "+8657188888888"),
            ("400-820-8820", "+864008208820"),
        ],
    )
    def test_landlines_with_area_codes_and_400_numbers_become_e164(
        self, typed: str, stored: str
    ) -> None:
        assert normalise_phone(typed) == stored

    @pytest.mark.parametrize(
        ("typed", "stored"),
        [
            ("+1 (415) 555-2671", "+14155552671"),
            ("+44 20 7946 0958", "+442079460958"),
            ("0044 20 7946 0958", "+442079460958"),
            ("+852 9123 4567", "+85291234567"),
        ],
    )
    def test_foreign_numbers_with_a_country_code_become_e164(self, typed: str, stored: str) -> None:
        assert normalise_phone(typed) == stored

    @pytest.mark.parametrize(
        ("typed", "stored"),
        [
            ("95561", "95561"),
            ("955 88", "95588"),
            ("10086", "10086"),
            ("12306", "12306"),
            ("12315", "12315"),
            ("110", "110"),
        ],
    )
    def test_service_numbers_are_kept_as_their_digits(self, typed: str, stored: str) -> None:
        assert normalise_phone(typed) == stored

    @pytest.mark.parametrize(
        "stored", [BEIJING, MOBILE, "+862112345678", "+14155552671", "+85291234567", "95561"]
    )
    def test_normalising_a_stored_number_again_changes_nothing(self, stored: str) -> None:
        assert normalise_phone(stored) == stored


class TestInvalidNumbers:
    @pytest.mark.parametrize(
        ("typed", "problem", "message"),
        [
            ("", PhoneProblem.EMPTY, "phone number is empty"),
            ("  ", PhoneProblem.EMPTY, "phone number is empty"),
            ("-().", PhoneProblem.EMPTY, "phone number is empty"),
            ("138abc45678", PhoneProblem.CHARACTERS, "may contain only digits"),
            ("1-800-FLOWERS", PhoneProblem.CHARACTERS, "may contain only digits"),
            ("+86+13812345678", PhoneProblem.CHARACTERS, "may contain only digits"),
            ("138/1234/5678", PhoneProblem.CHARACTERS, "may contain only digits"),
            ("13812345678 ext 12", PhoneProblem.CHARACTERS, "may contain only digits"),
            ("12345678901", PhoneProblem.NUMBER, r"not a valid \+86 number"),
            ("11012345678", PhoneProblem.NUMBER, r"not a valid \+86 number"),
            ("1381234567", PhoneProblem.NUMBER, r"not a valid \+86 number"),
            ("138 1234 5678 9", PhoneProblem.NUMBER, r"not a valid \+86 number"),
            ("+8612345678901", PhoneProblem.NUMBER, r"not a valid \+86 number"),
            ("6552 8888", PhoneProblem.NUMBER, "a landline needs its area code"),
            ("020 1234 567", PhoneProblem.NUMBER, r"not a valid \+86 number"),
            ("+44 20 7946 095", PhoneProblem.NUMBER, r"not a valid \+44 number"),
            ("+12345678", PhoneProblem.LENGTH, "give its area code"),
            ("9556", PhoneProblem.LENGTH, r"too short for \+86"),
            ("0010 6552 8888", PhoneProblem.LENGTH, r"too short for \+1"),
            ("+", PhoneProblem.LENGTH, "too few digits"),
            ("00", PhoneProblem.LENGTH, "too few digits"),
            ("+0123456789", PhoneProblem.COUNTRY_CODE, "country code in use"),
            ("+999 1234 5678", PhoneProblem.COUNTRY_CODE, "country code in use"),
        ],
    )
    def test_invalid_number_is_refused_naming_the_problem(
        self, typed: str, problem: PhoneProblem, message: str
    ) -> None:
        with pytest.raises(InvalidPhone, match=message) as refused:
            normalise_phone(typed)
        assert refused.value.problem is problem

    def test_service_number_has_no_international_form(self) -> None:
        with pytest.raises(InvalidPhone):
            normalise_phone("+86 95561")


class TestRememberedAnswers:
    """A number read before is answered from memory: the same answer, in its own region."""

    @pytest.mark.parametrize(
        ("typed", "region"),
        [("010-6552-8888", "CN"), ("95561", "CN"), ("9556", "CN"), ("95561", "HK"), ("x", "CN")],
    )
    def test_a_number_read_again_gets_the_answer_it_got_the_first_time(
        self, typed: str, region: str
    ) -> None:
        def read() -> str | tuple[PhoneProblem, str]:
            try:
                return normalise_phone(typed, region=region)
            except InvalidPhone as exc:
                return exc.problem, str(exc)

        first = read()
        assert [read() for _ in range(3)] == [first] * 3

    def test_an_answer_in_one_region_is_not_given_in_another(self) -> None:
        assert normalise_phone("6552 8888", region="HK") == "+85265528888"
        with pytest.raises(InvalidPhone, match="a landline needs its area code"):
            normalise_phone("6552 8888", region="CN")
        assert normalise_phone("6552 8888", region="HK") == "+85265528888"

    def test_each_refusal_is_an_exception_of_its_own(self) -> None:
        refusals = []
        for _ in range(2):
            with pytest.raises(InvalidPhone) as refused:
                normalise_phone("9556")
            refusals.append(refused.value)
        assert refusals[0] is not refusals[1]
        assert refusals[0].problem is refusals[1].problem is PhoneProblem.LENGTH


class TestDefaultRegion:
    @pytest.mark.parametrize(
        ("region", "typed", "stored"),
        [
            ("HK", "9123 4567", "+85291234567"),
            ("US", "(415) 555-2671", "+14155552671"),
            ("US", "011 86 138 1234 5678", MOBILE),
            ("HK", "+86 10 6552 8888", BEIJING),
            ("HK", "999", "999"),
        ],
    )
    def test_national_numbers_are_read_in_the_region_given(
        self, region: str, typed: str, stored: str
    ) -> None:
        assert normalise_phone(typed, region=region) == stored

    @pytest.mark.parametrize("typed", ["010-6552-8888", "95561", "13812345678"])
    def test_a_chinese_national_number_is_not_valid_in_another_region(self, typed: str) -> None:
        with pytest.raises(InvalidPhone):
            normalise_phone(typed, region="HK")

    def test_the_setting_defaults_to_china_and_is_upper_cased(self) -> None:
        assert Settings().default_phone_region == "CN"
        assert Settings(default_phone_region=" hk ").default_phone_region == "HK"

    @pytest.mark.parametrize("region", ["XX", "China", ""])
    def test_a_region_without_phone_numbers_is_refused_at_start(self, region: str) -> None:
        with pytest.raises(ValidationError, match="default_phone_region"):
            Settings(default_phone_region=region)


# ---------------------------------------------------------------------------------------------
# The migration that normalises the numbers already stored

# (stored before, stored after): customers in id order.
MIGRATED = [
    ("01065528888", "01065528888"),  # the next customer already has its normalised form
    (BEIJING, BEIJING),
    ("02112345678", "+862112345678"),
    ("075588888888", "+8675588888888"),
    ("057188888888", "+8657188888888"),
    ("+86057188888888", "+86057188888888"),  # the same number as the customer before
    ("+8612345678901", "+8612345678901"),  # not valid: left as it was
    ("23812345678", "23812345678"),  # not valid: left as it was
    (MOBILE, MOBILE),
    ("95561", "95561"),
]


async def _insert(url: str, phones: list[str]) -> None:
    conn = await asyncpg.connect(plain_url(url))
    try:
        await conn.executemany(
            "INSERT INTO customers (name, phone, tier) VALUES ($1, $2, 'standard')",
            [(f"customer {n}", phone) for n, phone in enumerate(phones)],
        )
    finally:
        await conn.close()


async def _phones(url: str) -> list[str]:
    conn = await asyncpg.connect(plain_url(url))
    try:
        return [r["phone"] for r in await conn.fetch("SELECT phone FROM customers ORDER BY id")]
    finally:
        await conn.close()


@pytest.fixture
def database_at_0008() -> Iterator[str]:
    """A database of its own, migrated up to the revision before the phone numbers'."""
    server = os.environ["TEST_DATABASE_URL"]
    name = f"hotline_phones_{os.getpid()}"
    url = make_url(server).set(database=name).render_as_string(hide_password=False)
    asyncio.run(recreate_database(server, name))
    command.upgrade(alembic_config(url), "0008")
    yield url
    asyncio.run(drop_database(server, name))


class TestMigration:
    def test_stored_numbers_are_normalised_and_invalid_or_clashing_ones_left_as_they_were(
        self, database_at_0008: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        asyncio.run(_insert(database_at_0008, [before for before, _ in MIGRATED]))

        with caplog.at_level(logging.INFO, logger="alembic.runtime.migration"):
            command.upgrade(alembic_config(database_at_0008), "0009")

        assert asyncio.run(_phones(database_at_0008)) == [after for _, after in MIGRATED]
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert warnings == [
            "phone numbers: 2 customers keep a number that is not valid (ids 7, 8)",
            "phone numbers: 2 customers keep their old form because another customer has "
            "the same number (ids 1, 6)",
        ]
