"""Tests of the keyed-value checks: resident IDs (GB 11643) and complaint references."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.ivr.validators import (
    InvalidValue,
    Validator,
    cn_resident_id,
    complaint_reference,
    resident_id_check,
    validate,
)

TODAY = date(2026, 12, 2)


class TestResidentIdCheck:
    """ISO 7064 MOD 11-2 over the first seventeen digits."""

    @pytest.mark.parametrize(
        ("first17", "check"),
        [
            ("11010519491231002", "X"),  # the standard's own example
            ("11010519880808805", "X"),
            ("44030719900101001", "0"),
            ("11010119900307803", "X"),
        ],
    )
    def test_known_check_characters(self, first17: str, check: str) -> None:
        assert resident_id_check(first17) == check

    @given(st.text(alphabet="0123456789", min_size=17, max_size=17))
    def test_the_whole_id_satisfies_mod_11_2(self, body: str) -> None:
        # ISO 7064 MOD 11-2 as the standard states it: with X as 10, the sum of every
        # character times 2^(17-i), the check character's weight being 1, is 1 modulo 11.
        whole = body + resident_id_check(body)
        values = [10 if ch == "X" else int(ch) for ch in whole]
        assert sum(v * 2 ** (17 - i) for i, v in enumerate(values)) % 11 == 1

    @pytest.mark.parametrize("bad", ["1101051949123100", "110105194912310021", "1101051949123100a"])
    def test_needs_seventeen_digits(self, bad: str) -> None:
        with pytest.raises(InvalidValue, match="seventeen"):
            resident_id_check(bad)

    @given(st.text(alphabet="0123456789", min_size=17, max_size=17), st.integers(0, 16))
    def test_any_single_digit_change_changes_the_check(self, body: str, position: int) -> None:
        changed = body[:position] + str((int(body[position]) + 1) % 10) + body[position + 1 :]
        assert resident_id_check(changed) != resident_id_check(body)


class TestResidentId:
    """A whole resident ID: shape, region, birth date, check character."""

    @pytest.mark.parametrize(
        ("keys", "value"),
        [
            ("11010519491231002X", "11010519491231002X"),
            ("11010519491231002x", "11010519491231002X"),
            ("440307199001010010", "440307199001010010"),
            ("11010119900307803X", "11010119900307803X"),
        ],
    )
    def test_valid(self, keys: str, value: str) -> None:
        assert cn_resident_id(keys, today=TODAY) == value

    @pytest.mark.parametrize(
        ("keys", "reason"),
        [
            ("11010519491231002", "eighteen"),  # too short
            ("11010519491231002X1", "eighteen"),  # too long
            ("1101051949123100X2", "eighteen"),  # X not at the end
            ("11010519491231002*", "eighteen"),  # the key, not the letter
            ("１１010519491231002X", "eighteen"),  # full-width digits  # noqa: RUF001
            ("99010519491231002X", "region"),
            ("00010519491231002X", "region"),
            ("11010519490231002X", "birth date"),  # 31 February
            ("11010518991231002X", "birth date"),  # before 1900
            ("11010520261203002X", "birth date"),  # tomorrow
            ("110105194912310021", "check"),
            ("110105194912310020", "check"),
        ],
    )
    def test_invalid(self, keys: str, reason: str) -> None:
        with pytest.raises(InvalidValue, match=reason):
            cn_resident_id(keys, today=TODAY)

    def test_born_today_is_plausible(self) -> None:
        body = "11010520261202001"
        assert cn_resident_id(body + resident_id_check(body), today=TODAY).startswith(body)


class TestComplaintReference:
    """The digits of C-YYYYMMDD-NNNNNN, keyed without letters or dashes."""

    @pytest.mark.parametrize(
        ("keys", "reference"),
        [
            ("20261122000123", "C-20261122-000123"),
            ("20261202999999", "C-20261202-999999"),
            ("202612021000000", "C-20261202-1000000"),
            ("20000101000001", "C-20000101-000001"),
        ],
    )
    def test_valid(self, keys: str, reference: str) -> None:
        assert complaint_reference(keys, today=TODAY) == reference

    @pytest.mark.parametrize(
        ("keys", "reason"),
        [
            ("2026112200012", "six or more"),
            ("2026112200012#", "six or more"),
            ("C-20261122-000123", "six or more"),
            ("202611220001234", "no leading zero"),  # seven digits written from 0
            ("20261122000000", "start at 1"),
            ("20261131000123", "registration date"),
            ("19991231000123", "registration date"),
            ("20261203000123", "registration date"),  # tomorrow
        ],
    )
    def test_invalid(self, keys: str, reason: str) -> None:
        with pytest.raises(InvalidValue, match=reason):
            complaint_reference(keys, today=TODAY)


class TestValidate:
    """The flow names a validator; ``validate`` applies it."""

    @pytest.mark.parametrize(
        ("validator", "keys", "value"),
        [
            (Validator.CN_RESIDENT_ID, "11010519491231002x", "11010519491231002X"),
            (Validator.COMPLAINT_REFERENCE, "20261122000123", "C-20261122-000123"),
        ],
    )
    def test_dispatch(self, validator: Validator, keys: str, value: str) -> None:
        assert validate(validator, keys, today=TODAY) == value

    @pytest.mark.parametrize("validator", list(Validator))
    def test_refusal_is_typed(self, validator: Validator) -> None:
        with pytest.raises(InvalidValue):
            validate(validator, "123", today=TODAY)
