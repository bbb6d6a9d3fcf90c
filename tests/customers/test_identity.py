"""Tests of customer identifiers: ID numbers, phone numbers, masking and the log filter."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from datetime import date, timedelta

import pytest

from app.customers.identity import (
    CustomerDataError,
    IdNumberProblem,
    InvalidIdNumber,
    InvalidPhone,
    SensitiveArgsFilter,
    SensitiveDataFilter,
    birth_date_of,
    mask_id_number,
    mask_phone,
    mask_text,
    validate_resident_id,
)

TODAY = date(2025, 11, 22)
SAMPLE = "11010519491231002X"  # the well-known sample from GB 11643-1999 commentaries


def iso7064_mod11_2(first17: str) -> str:
    """Check character by the ISO 7064 definition: weights 2**k mod 11, total = 1 mod 11."""
    total = sum(int(digit) * pow(2, 17 - i, 11) for i, digit in enumerate(first17))
    value = (12 - total % 11) % 11
    return "X" if value == 10 else str(value)


def make_id(province: str = "11", born: date = date(1949, 12, 31), sequence: str = "002") -> str:
    """A valid ID number with the given province, birth date and sequence."""
    first17 = f"{province}0105{born:%Y%m%d}{sequence}"
    return first17 + iso7064_mod11_2(first17)


def with_check(first17: str) -> str:
    return first17 + iso7064_mod11_2(first17)


def wrong_checks(number: str) -> list[str]:
    return [number[:17] + char for char in "0123456789X" if char != number[17]]


PROVINCE_CODES = {
    f"{code:02d}"
    for block in (
        range(11, 16),
        range(21, 24),
        range(31, 38),
        range(41, 47),
        range(50, 55),
        range(61, 66),
        (71, 81, 82, 83, 91),
    )
    for code in block
}


def test_independent_check_helper_reproduces_the_published_sample() -> None:
    assert make_id() == SAMPLE


class TestValidateResidentId:
    @pytest.mark.parametrize(
        "number",
        [
            SAMPLE,
            make_id("44", date(1990, 1, 1), "123"),
            make_id("31", date(2000, 2, 29), "456"),
            make_id("65", date(1900, 1, 1), "001"),
            make_id("91", TODAY, "999"),
            make_id("81", date(1985, 7, 14), "000"),
        ],
    )
    def test_valid_number_is_returned_unchanged(self, number: str) -> None:
        assert validate_resident_id(number, today=TODAY) == number

    def test_some_valid_numbers_end_in_each_check_character(self) -> None:
        endings = {make_id(sequence=f"{n:03d}")[17] for n in range(60)}
        assert endings == set("0123456789X")
        for n in range(60):
            number = make_id(sequence=f"{n:03d}")
            assert validate_resident_id(number, today=TODAY) == number

    def test_lower_case_x_is_accepted_and_upper_cased(self) -> None:
        assert validate_resident_id("11010519491231002x", today=TODAY) == SAMPLE

    @pytest.mark.parametrize("padded", [f"  {SAMPLE} ", f"\t{SAMPLE}\n", f"\u3000{SAMPLE}"])
    def test_surrounding_whitespace_is_stripped(self, padded: str) -> None:
        assert validate_resident_id(padded, today=TODAY) == SAMPLE

    def test_full_width_characters_are_folded_to_ascii(self) -> None:
        full_width = "".join(chr(ord(c) + 0xFEE0) for c in "11010519491231002x")
        assert validate_resident_id(full_width, today=TODAY) == SAMPLE

    @pytest.mark.parametrize(
        "value",
        [
            "",
            "1101051949123100",
            SAMPLE[:17],
            SAMPLE + "1",
            "110105491231002",
            "110105 19491231002X",
        ],
    )
    def test_wrong_length_is_reported_with_the_length(self, value: str) -> None:
        with pytest.raises(InvalidIdNumber) as caught:
            validate_resident_id(value, today=TODAY)
        assert caught.value.problem is IdNumberProblem.LENGTH
        assert str(caught.value) == f"ID number must be 18 characters, got {len(value.strip())}"

    @pytest.mark.parametrize(
        ("value", "position"),
        [
            ("A1010519491231002X", 1),
            ("1101X519491231002X", 5),
            ("1101051949123100xX", 17),
            ("11\u0663" + SAMPLE[3:], 3),  # an Arabic-Indic digit is not an ASCII digit
            ("11010519491231 02X", 15),
        ],
    )
    def test_non_digit_in_the_first_17_is_reported_with_its_position(
        self, value: str, position: int
    ) -> None:
        with pytest.raises(InvalidIdNumber) as caught:
            validate_resident_id(value, today=TODAY)
        assert caught.value.problem is IdNumberProblem.CHARACTERS
        assert str(caught.value) == f"ID number character {position} must be a digit"

    @pytest.mark.parametrize("last", ["Y", "-", "*", "\u0663"])
    def test_last_character_other_than_digit_or_x_is_reported(self, last: str) -> None:
        with pytest.raises(InvalidIdNumber) as caught:
            validate_resident_id(SAMPLE[:17] + last, today=TODAY)
        assert caught.value.problem is IdNumberProblem.CHARACTERS
        assert str(caught.value) == "ID number character 18 must be a digit or X"

    @pytest.mark.parametrize("code", [f"{n:02d}" for n in range(100)])
    def test_every_two_digit_prefix_is_accepted_only_if_it_is_a_province(self, code: str) -> None:
        number = make_id(province=code)
        if code in PROVINCE_CODES:
            assert validate_resident_id(number, today=TODAY) == number
            return
        with pytest.raises(InvalidIdNumber) as caught:
            validate_resident_id(number, today=TODAY)
        assert caught.value.problem is IdNumberProblem.PROVINCE
        assert str(caught.value) == (
            f"ID number starts with {code}, which is not a valid province code"
        )

    @pytest.mark.parametrize(
        "digits",
        ["19490230", "19491301", "19490001", "19490100", "19491232", "20230229", "19000229"],
    )
    def test_impossible_birth_date_is_reported(self, digits: str) -> None:
        number = with_check(f"110105{digits}002")
        with pytest.raises(InvalidIdNumber) as caught:
            validate_resident_id(number, today=TODAY)
        assert caught.value.problem is IdNumberProblem.BIRTH_DATE
        assert str(caught.value) == f"ID number birth date {digits} is not a valid date"

    @pytest.mark.parametrize("born", [date(2024, 2, 29), date(2000, 2, 29), date(1904, 2, 29)])
    def test_february_29_of_a_leap_year_is_accepted(self, born: date) -> None:
        number = make_id(born=born)
        assert validate_resident_id(number, today=TODAY) == number

    @pytest.mark.parametrize("born", [date(1899, 12, 31), date(1850, 6, 1)])
    def test_birth_date_before_1900_is_reported(self, born: date) -> None:
        with pytest.raises(InvalidIdNumber) as caught:
            validate_resident_id(make_id(born=born), today=TODAY)
        assert caught.value.problem is IdNumberProblem.BIRTH_DATE
        assert str(caught.value) == f"ID number birth date {born} is before 1900-01-01"

    def test_birth_date_of_1900_01_01_is_accepted(self) -> None:
        number = make_id(born=date(1900, 1, 1))
        assert validate_resident_id(number, today=TODAY) == number

    @pytest.mark.parametrize("days_ahead", [1, 365])
    def test_birth_date_after_today_is_reported(self, days_ahead: int) -> None:
        born = TODAY + timedelta(days=days_ahead)
        with pytest.raises(InvalidIdNumber) as caught:
            validate_resident_id(make_id(born=born), today=TODAY)
        assert caught.value.problem is IdNumberProblem.BIRTH_DATE
        assert str(caught.value) == (
            f"ID number birth date {born} is in the future (today is {TODAY})"
        )

    def test_birth_date_of_today_is_accepted(self) -> None:
        number = make_id(born=TODAY)
        assert validate_resident_id(number, today=TODAY) == number

    @pytest.mark.parametrize("number", wrong_checks(SAMPLE) + wrong_checks(make_id(sequence="005")))
    def test_wrong_check_character_is_reported_without_revealing_the_right_one(
        self, number: str
    ) -> None:
        with pytest.raises(InvalidIdNumber) as caught:
            validate_resident_id(number, today=TODAY)
        assert caught.value.problem is IdNumberProblem.CHECK_CHARACTER
        # One fixed message for every wrong character: it cannot carry the expected one.
        assert str(caught.value) == (
            "ID number check character (the last one) does not match the first 17 digits"
        )

    def test_transposed_digits_are_caught_by_the_check_character(self) -> None:
        transposed = SAMPLE[:15] + SAMPLE[16] + SAMPLE[15] + SAMPLE[17]
        assert transposed != SAMPLE
        with pytest.raises(InvalidIdNumber, match="check character"):
            validate_resident_id(transposed, today=TODAY)

    @pytest.mark.parametrize(
        ("value", "problem"),
        [
            ("99A105", IdNumberProblem.LENGTH),
            ("99A10519491231002Y", IdNumberProblem.CHARACTERS),
            ("990105194902300020", IdNumberProblem.PROVINCE),
            ("110105194902300021", IdNumberProblem.BIRTH_DATE),
        ],
    )
    def test_the_first_failing_check_is_reported(
        self, value: str, problem: IdNumberProblem
    ) -> None:
        with pytest.raises(InvalidIdNumber) as caught:
            validate_resident_id(value, today=TODAY)
        assert caught.value.problem is problem

    def test_errors_are_value_errors_so_pydantic_validators_may_raise_them(self) -> None:
        assert issubclass(InvalidIdNumber, CustomerDataError)
        assert issubclass(InvalidPhone, CustomerDataError)
        assert issubclass(CustomerDataError, ValueError)


class TestBirthDateOf:
    @pytest.mark.parametrize(
        ("number", "born"),
        [
            (SAMPLE, date(1949, 12, 31)),
            ("11010519491231002x", date(1949, 12, 31)),
            (make_id(born=date(2000, 2, 29)), date(2000, 2, 29)),
            (f" {make_id(born=date(1988, 8, 8))} ", date(1988, 8, 8)),
        ],
    )
    def test_birth_date_is_read_from_characters_7_to_14(self, number: str, born: date) -> None:
        assert birth_date_of(number) == born

    @pytest.mark.parametrize(
        ("value", "problem"),
        [
            ("110105", IdNumberProblem.LENGTH),
            ("1101051949123A002X", IdNumberProblem.CHARACTERS),
            ("110105194913310020", IdNumberProblem.BIRTH_DATE),
        ],
    )
    def test_malformed_number_has_no_birth_date(self, value: str, problem: IdNumberProblem) -> None:
        with pytest.raises(InvalidIdNumber) as caught:
            birth_date_of(value)
        assert caught.value.problem is problem


# ---------------------------------------------------------------------------------------------
# Phone numbers

MOBILE = "+8613812345678"


class TestMaskIdNumber:
    @pytest.mark.parametrize(
        ("value", "masked"),
        [
            (SAMPLE, "110105********002X"),
            ("11010519491231002x", "110105********002x"),
            ("440301199001011234", "440301********1234"),
            ("12345678901", "123456*8901"),
            ("1234567890", "**********"),
            ("123", "***"),
            ("", ""),
        ],
    )
    def test_first_6_and_last_4_are_kept_and_short_values_fully_masked(
        self, value: str, masked: str
    ) -> None:
        assert mask_id_number(value) == masked


class TestMaskPhone:
    @pytest.mark.parametrize(
        ("value", "masked"),
        [
            (MOBILE, "+86138****5678"),
            ("+862112345678", "+86211***5678"),
            ("+14155552671", "+1415***2671"),
            ("+79161234567", "+7916***4567"),
            ("+442079460958", "+44207***0958"),
            ("+85212345678", "+852123*5678"),
            ("+85291234", "+852***34"),
            ("+35312345678", "+353123*5678"),
            ("13812345678", "138****5678"),
            ("02112345678", "021****5678"),
            ("12345678", "123*5678"),
            ("1234567", "*****67"),
            ("95561", "***61"),
            ("123", "*23"),
            ("12", "**"),
            ("", ""),
            ("+", "+"),
            ("+86", "+86"),
        ],
    )
    def test_country_code_then_first_3_and_last_4_or_only_last_2_when_short(
        self, value: str, masked: str
    ) -> None:
        assert mask_phone(value) == masked


class TestMaskText:
    def test_sentence_with_an_id_number_and_phone_numbers_is_masked(self) -> None:
        text = f"客户 {SAMPLE} 来电 +8613812345678\uff0c请回拨 13812345678。"
        assert mask_text(text) == (
            "客户 110105********002X 来电 +86138****5678\uff0c请回拨 138****5678。"
        )

    @pytest.mark.parametrize(
        ("text", "masked"),
        [
            ("id=11010519491231002x;", "id=110105********002x;"),
            ("id:110105194912310021.", "id:110105********0021."),
            (f"ID{SAMPLE}abc", "ID110105********002Xabc"),
            ("card 6222020200112233445", "card 622************3445"),
            ("tel:+442079460958 ok", "tel:+44207***0958 ok"),
            ("call 02112345678 now", "call 021****5678 now"),
            ("a 13812345678 b 13912345678", "a 138****5678 b 139****5678"),
        ],
    )
    def test_id_and_long_digit_runs_inside_text_are_masked(self, text: str, masked: str) -> None:
        assert mask_text(text) == masked

    @pytest.mark.parametrize(
        "text",
        [
            "order 1234567890 placed on 2025-11-22 at 10:31:05",
            "amount 12345.67, service number 95561",
            "138 1234 5678 is split by spaces",
            "no numbers here",
            "",
        ],
    )
    def test_short_runs_and_text_without_numbers_are_untouched(self, text: str) -> None:
        assert mask_text(text) == text

    def test_masking_masked_text_again_changes_nothing(self) -> None:
        once = mask_text(f"{SAMPLE} {MOBILE} 13812345678")
        assert mask_text(once) == once


class TestSensitiveDataFilter:
    @staticmethod
    def record(msg: object, *args: object) -> logging.LogRecord:
        return logging.LogRecord("hotline", logging.INFO, __file__, 1, msg, args or None, None)

    def test_message_and_args_are_formatted_masked_and_args_cleared(self) -> None:
        record = self.record("customer %s called from %s", SAMPLE, MOBILE)
        assert SensitiveDataFilter().filter(record) is True
        assert record.msg == "customer 110105********002X called from +86138****5678"
        assert record.args == ()
        assert record.getMessage() == record.msg

    def test_mapping_args_are_formatted_and_masked(self) -> None:
        record = self.record("caller %(phone)s", {"phone": "13812345678"})
        assert SensitiveDataFilter().filter(record) is True
        assert record.getMessage() == "caller 138****5678"

    def test_record_without_args_is_masked(self) -> None:
        record = self.record(f"lookup {SAMPLE}")
        assert SensitiveDataFilter().filter(record) is True
        assert record.getMessage() == "lookup 110105********002X"

    def test_non_string_message_is_masked(self) -> None:
        record = self.record(ValueError("bad phone 13812345678"))
        assert SensitiveDataFilter().filter(record) is True
        assert record.getMessage() == "bad phone 138****5678"

    @pytest.mark.parametrize(
        ("msg", "args"),
        [("%s and %s", ("13812345678",)), ("%d", ("13812345678",)), ("%(x)s", ({"y": 1},))],
    )
    def test_broken_format_still_masks_and_keeps_the_record(
        self, msg: str, args: tuple[object, ...]
    ) -> None:
        record = self.record(msg, *args)
        assert SensitiveDataFilter().filter(record) is True
        assert record.args == ()
        assert "13812345678" not in record.getMessage()
        assert record.getMessage().startswith(msg)

    def test_filter_on_a_handler_masks_what_is_written(self, stream_logger: StreamLogger) -> None:
        logger, stream = stream_logger
        logger.warning("id %s phone %s", "11010519491231002x", "+8613812345678")
        assert stream.getvalue() == "id 110105********002x phone +86138****5678\n"


StreamLogger = tuple[logging.Logger, io.StringIO]


@pytest.fixture
def stream_logger() -> Iterator[StreamLogger]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(SensitiveDataFilter())
    logger = logging.getLogger("tests.customers.identity")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield logger, stream
    finally:
        logger.removeHandler(handler)
        logger.propagate = True


class TestSensitiveArgsFilter:
    @staticmethod
    def record(msg: object, args: object) -> logging.LogRecord:
        record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, msg, None, None)
        record.args = args  # type: ignore[assignment]
        return record

    def test_each_text_argument_is_masked_and_the_tuple_keeps_its_shape(self) -> None:
        args = ("127.0.0.1:5000", "GET", "/api/v1/customers?phone=13812345678", "1.1", 200)
        record = self.record('%s - "%s %s HTTP/%s" %d', args)
        assert SensitiveArgsFilter().filter(record) is True
        assert record.args == (
            "127.0.0.1:5000",
            "GET",
            "/api/v1/customers?phone=138****5678",
            "1.1",
            200,
        )

    def test_message_text_is_masked(self) -> None:
        record = self.record(f"lookup {SAMPLE}", ())
        assert SensitiveArgsFilter().filter(record) is True
        assert record.getMessage() == "lookup 110105********002X"

    def test_non_text_message_and_mapping_args_are_left_alone(self) -> None:
        error = ValueError("13812345678")
        record = self.record(error, {"phone": "13812345678"})
        assert SensitiveArgsFilter().filter(record) is True
        assert record.msg is error
        assert record.args == {"phone": "13812345678"}
