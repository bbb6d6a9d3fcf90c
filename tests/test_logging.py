"""Customer numbers, passwords and tokens never reach a log line, uvicorn's own included:
what ``app.redact`` masks and leaves readable, and the formatter that applies it to every
handler's final text (tracebacks included). The whole app is scanned in ``test_log_scan``."""

from __future__ import annotations

import io
import logging
import secrets
from collections.abc import Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from uvicorn.logging import AccessFormatter, DefaultFormatter

from app.db import create_engine
from app.logging import DEFAULT_FORMAT, RedactingFormatter, configure_logging, redact_handler
from app.redact import redact

MOBILE = "13912345678"
E164 = "+8613912345678"
ID_NUMBER = "11010519491231002X"
# As typed with a Chinese input method: full-width digits.
FULL_WIDTH_MOBILE = MOBILE.translate({code: code + 0xFEE0 for code in range(0x30, 0x3A)})
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiI3In0.c2lnbmF0dXJl"


class TestRedactPersonalNumbers:
    @pytest.mark.parametrize(
        ("written", "shown"),
        [
            (MOBILE, "139****5678"),
            (E164, "+86139****5678"),
            ("139 1234 5678", "139****5678"),
            ("(139) 1234-5678", "139****5678"),
            ("139-1234-5678", "139****5678"),
            ("139.1234.5678", "139****5678"),
            ("+86 139 1234 5678", "+86139****5678"),
            ("+86-139-1234-5678", "+86139****5678"),
            ("(+86) 139 1234 5678", "+86139****5678"),
            ("0086 139 1234 5678", "+86139****5678"),
            ("139+1234+5678", "139****5678"),  # spaces in a query string
            ("139%201234%205678", "139****5678"),
            ("%2B86%20139%201234%205678", "+86139****5678"),
            (FULL_WIDTH_MOBILE, FULL_WIDTH_MOBILE[:3] + "****" + FULL_WIDTH_MOBILE[-4:]),
            ("010-6552-8888", "010****8888"),
            ("(010) 6552 8888", "010****8888"),
            ("0755-1234-5678", "075*****5678"),
            ("+86 10 6552 8888", "+86106***8888"),
            ("+861065528888", "+86106***8888"),
            ("+1 415 555 0100", "+1415***0100"),
            (ID_NUMBER, "110105********002X"),
            ("110105 19491231 002X", "110105********002X"),
            ("110105194912310", "110********2310"),
            ("98765432109876543210", "987*************3210"),
        ],
    )
    def test_a_number_however_typed_is_shown_masked(self, written: str, shown: str) -> None:
        assert redact(f"lookup phone={written} done") == f"lookup phone={shown} done"

    def test_a_parenthesis_around_a_number_stays(self) -> None:
        masked = redact(f"DETAIL:  Key (phone)=({E164}) already exists; ({MOBILE})")
        assert masked == "DETAIL:  Key (phone)=(***) already exists; (139****5678)"

    @pytest.mark.parametrize(
        "readable",
        [
            "called the bank on 95561 and 10086",
            "2026-05-01 12:34:56,789 INFO uvicorn.access: 127.0.0.1:54321 - 200",
            "took 1349.5678912 s, cursor 2026-05-01T12:00:00+08:00",
            "contact 42 in queue 7 offered to agents 1, 2, 3 and 4",
            "ipv4 192.168.100.200 and uuid 3f2b8c1e-9d4a-4b7e-8f10-2a6c5d9e0b31",
        ],
    )
    def test_what_is_nobodys_number_stays_readable(self, readable: str) -> None:
        assert redact(readable) == readable


class TestRedactSecrets:
    @pytest.mark.parametrize(
        ("written", "secret"),
        [
            (f"GET /ws/agent?token={JWT}&x=1", JWT),
            ("GET /api/v1/agents/me?access_token=opaque.value HTTP/1.1", "opaque.value"),
            ("GET /api/v1/agents/me?%74oken=opaque.value HTTP/1.1", "opaque.value"),
            ("GET /api/v1/agents/me?token%3Dopaque.value HTTP/1.1", "opaque.value"),
            ("GET /x?%2574oken=opaque.value", "opaque.value"),
            (f"the token was {JWT} all along", JWT),
            (f"Authorization: Bearer {JWT}", JWT),
            ("authorization: Bearer opaque-bearer-value", "opaque-bearer-value"),
            ("headers=[(b'authorization', b'Basic dXNlcjpwYXNz')]", "dXNlcjpwYXNz"),
            ("username=bob&password=hunter2-secret&grant_type=password", "hunter2-secret"),
            ('{"username": "bob", "password": "hunter 2 secret"}', "hunter 2 secret"),
            ("{'password': 'hunter2-secret', 'x': 1}", "hunter2-secret"),
            ("X-Api-Key: k3y-value-here", "k3y-value-here"),
            ("channel key hlk_Zq3Vb9Xw-pL2_mN8 created", "Zq3Vb9Xw-pL2_mN8"),
            ("hash $argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA+/aGFzaA", "aGFzaA+/aGFzaA"),
        ],
    )
    def test_a_secret_is_hidden_whatever_it_is_called(self, written: str, secret: str) -> None:
        masked = redact(written)
        assert secret not in masked
        assert "***" in masked

    def test_a_generated_secret_is_hidden_without_a_name(self) -> None:
        secret = secrets.token_urlsafe(48)
        while not (any(c.isupper() for c in secret) and any(c.isdigit() for c in secret)):
            secret = secrets.token_urlsafe(48)
        assert redact(f"Row ('jwt_secret', '{secret}')") == "Row ('jwt_secret', '***')"

    @pytest.mark.parametrize(
        "readable",
        [
            "token has expired",
            "app.agents.security.TokenError: token is not valid",
            "UPDATE agents SET token_version=(agents.token_version + $1::INTEGER)",
            "a password change closes the agent's sockets",
            "site-packages/sqlalchemy/dialects/postgresql/asyncpg.py",
        ],
    )
    def test_words_about_secrets_stay_readable(self, readable: str) -> None:
        assert redact(readable) == readable


class TestRedactDatabaseValues:
    @pytest.mark.parametrize(
        ("written", "shown"),
        [
            (
                "DETAIL:  Key (name, site)=(Bob Li, shanghai) already exists.",
                "DETAIL:  Key (name, site)=(***) already exists.",
            ),
            (
                'DETAIL:  Key (customer_id)=(7) is not present in table "customers".',
                'DETAIL:  Key (customer_id)=(***) is not present in table "customers".',
            ),
            (
                "DETAIL:  Failing row contains (7, Bob Li, null, 2026-01-01).",
                "DETAIL:  Failing row contains (***).",
            ),
            (
                "[parameters: ('Bob Li', 'Room 3, Block (B)')]",
                "[parameters: ***]",
            ),
        ],
    )
    def test_values_quoted_in_a_database_error_are_hidden(self, written: str, shown: str) -> None:
        assert redact(written) == shown


@pytest.fixture
def root_stream() -> Iterator[io.StringIO]:
    """The root logger writing, through one handler, to a buffer; put back afterwards."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(DEFAULT_FORMAT))
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    yield stream
    root.handlers[:], root.level = saved


def _raise_with(message: str) -> None:
    raise ValueError(message)


# Twilio's ids of a call and an account: two capital letters and 32 hexadecimal digits. The
# first has digits that read as a mobile number, the second as a run of 11 or more digits.
CALL_SIDS = (
    "CA" + "ab13912345678cd" + "0" * 17,
    "CA" + "0" * 31 + "8",
    "AC" + "f" * 32,
)


class TestProviderIds:
    """A telephony provider's ids name a call, not a person, and are no secret: a log keeps
    them whole, so a call can be followed from the provider's console to Hotline's logs."""

    @pytest.mark.parametrize("sid", CALL_SIDS)
    def test_a_provider_id_stays_whole(self, sid: str) -> None:
        line = f"IVR call '{sid}' does not exist"
        assert redact(line) == line

    def test_a_random_provider_id_stays_whole(self) -> None:
        # Random ones mix upper case, lower case and digits as a generated secret does.
        for _ in range(200):
            sid = "CA" + secrets.token_hex(16)
            assert redact(f"call {sid} ended") == f"call {sid} ended"

    def test_what_stands_beside_an_id_is_still_masked(self) -> None:
        secret = secrets.token_urlsafe(48)
        while not (any(c.isupper() for c in secret) and any(c.isdigit() for c in secret)):
            secret = secrets.token_urlsafe(48)
        sid = CALL_SIDS[0]
        line = f"call {sid} from {E164}, key {secret}, CallSid={sid}&From=%2B{E164[1:]}"
        assert redact(line) == (
            f"call {sid} from +86139****5678, key ***, CallSid={sid}&From=+86139****5678"
        )

    @pytest.mark.parametrize(
        "written",
        [
            f"auth_token={CALL_SIDS[2]}",  # a named secret, whatever its shape
            f"Failing row contains ({CALL_SIDS[0]}, {E164})",  # the database's row goes whole
            f"x{CALL_SIDS[0]}",  # part of a longer token: not a provider's id
            f"{CALL_SIDS[0]}9",
        ],
    )
    def test_an_id_shaped_value_is_hidden_where_its_context_hides_it(self, written: str) -> None:
        masked = redact(written)
        assert "***" in masked
        assert not any(sid in masked for sid in CALL_SIDS)
        assert E164 not in masked

    def test_text_holding_the_marker_keeps_no_id(self) -> None:
        # The character that marks an id set aside, already in the text: nothing is set
        # aside, and nothing of the text can be mistaken for an id put back.
        line = f"odd \ue0000\ue001 {CALL_SIDS[0]} {MOBILE}"
        assert redact(line) == "odd \ue0000\ue001 *** 139****5678"

    def test_a_marker_decoded_from_the_text_does_not_break_redaction(self) -> None:
        # Percent-encoded, the marker is not in the text when ids are set aside; a run that
        # needs masking is written decoded, marker and all: redaction must not raise.
        sid = CALL_SIDS[0]
        line = f"call {sid} q=%EE%80%807%EE%80%81%20token%3Dsecret"
        assert redact(line) == f"call {sid} q=\ue0007\ue001 token=***"

    def test_a_log_line_keeps_the_id(self, root_stream: io.StringIO) -> None:
        configure_logging("INFO")
        sid = CALL_SIDS[1]
        logging.getLogger("test").warning("call %s from %s cannot go on", sid, MOBILE)
        assert f"call {sid} from 139****5678 cannot go on" in root_stream.getvalue()


class TestRedactingFormatter:
    def test_the_traceback_and_exception_text_are_masked(self, root_stream: io.StringIO) -> None:
        configure_logging("INFO")
        try:
            _raise_with(f"customer {E164} with ID {ID_NUMBER}, token={JWT}")
        except ValueError:
            logging.getLogger("test").exception("request failed for %s", "139 1234 5678")
        text = root_stream.getvalue()
        assert "Traceback (most recent call last)" in text
        assert "_raise_with" in text
        for secret in (E164, MOBILE, ID_NUMBER, JWT, "139 1234 5678"):
            assert secret not in text
        assert "ValueError: customer +86139****5678 with ID 110105********002X, token=***" in text

    def test_a_handler_added_later_gets_the_masked_traceback(
        self, root_stream: io.StringIO
    ) -> None:
        configure_logging("INFO")
        later = io.StringIO()
        unwrapped = logging.StreamHandler(later)
        logging.getLogger().addHandler(unwrapped)
        try:
            _raise_with(f"customer {E164}")
        except ValueError:
            logging.getLogger("test").exception("request failed")
        assert "Traceback" in later.getvalue()
        assert E164 not in later.getvalue()

    def test_a_stack_is_masked(self, root_stream: io.StringIO) -> None:
        configure_logging("INFO")

        def deep() -> None:  # the stack quotes this source line, number and all
            logging.getLogger("test").info("here", stack_info=True, extra={"n": "13912345678"})

        deep()
        text = root_stream.getvalue()
        assert "Stack (most recent call last)" in text
        assert 'extra={"n": "139****5678"}' in text
        assert MOBILE not in text

    def test_a_logger_with_its_own_handler_is_masked(self) -> None:
        stream = io.StringIO()
        logger = logging.getLogger("tests.own_handler")
        handler = logging.StreamHandler(stream)
        logger.addHandler(handler)
        try:
            configure_logging("INFO")
            logger.warning("phone %s", E164)
        finally:
            logger.removeHandler(handler)
        assert stream.getvalue() == "phone +86139****5678\n"

    def test_the_handlers_own_format_is_kept(self) -> None:
        stream = io.StringIO()
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter("[%(levelname)s] %(name)s | %(message)s"))
        redact_handler(handler)
        redact_handler(handler)
        logger = logging.getLogger("tests.format")
        logger.addHandler(handler)
        try:
            logger.warning("id %s", ID_NUMBER)
        finally:
            logger.removeHandler(handler)
        assert stream.getvalue() == "[WARNING] tests.format | id 110105********002X\n"


class TestEngine:
    async def test_a_statement_error_does_not_carry_its_parameters(self, db: str) -> None:
        engine = create_engine(db, pool_size=1)
        sentinel = "parameter-sentinel-value"
        try:
            async with engine.connect() as conn:
                with pytest.raises(DBAPIError) as failed:
                    await conn.execute(text("SELECT CAST(:v AS text), 1 / 0"), {"v": sentinel})
        finally:
            await engine.dispose()
        assert "division by zero" in str(failed.value)
        assert sentinel not in str(failed.value)


@pytest.fixture
def uvicorn_streams() -> Iterator[dict[str, io.StringIO]]:
    """uvicorn's loggers with handlers and formatters as `uvicorn.run` gives them, writing
    to buffers; the loggers are put back afterwards."""
    formats = {
        "uvicorn": DefaultFormatter("%(levelprefix)s %(message)s", use_colors=False),
        "uvicorn.access": AccessFormatter(
            '%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s',
            use_colors=False,
        ),
    }
    saved = {}
    streams = {}
    for name, formatter in formats.items():
        logger = logging.getLogger(name)
        saved[name] = (list(logger.handlers), logger.propagate, logger.level)
        streams[name] = io.StringIO()
        handler = logging.StreamHandler(streams[name])
        handler.setFormatter(formatter)
        logger.handlers[:] = [handler]
        logger.propagate = False
        logger.setLevel(logging.INFO)
    # uvicorn's error log writes through "uvicorn"'s handler; a server started by an earlier
    # test in this process may have left its level at that server's.
    error_log = logging.getLogger("uvicorn.error")
    error_saved = (error_log.propagate, error_log.level)
    error_log.propagate, error_log.level = True, logging.INFO
    yield streams
    error_log.propagate, error_log.level = error_saved
    for name, (handlers, propagate, level) in saved.items():
        logger = logging.getLogger(name)
        logger.handlers[:] = handlers
        logger.propagate = propagate
        logger.setLevel(level)


class TestUvicornLogs:
    def test_access_log_masks_a_phone_number_in_the_request_line(
        self, uvicorn_streams: dict[str, io.StringIO]
    ) -> None:
        configure_logging("INFO")
        logging.getLogger("uvicorn.access").info(
            '%s - "%s %s HTTP/%s" %d',
            "127.0.0.1:5000",
            "GET",
            "/api/v1/customers?phone=13812345678",
            "1.1",
            200,
        )
        line = uvicorn_streams["uvicorn.access"].getvalue()
        assert "13812345678" not in line
        assert '"GET /api/v1/customers?phone=138****5678 HTTP/1.1" 200' in line

    def test_error_log_masks_an_id_number(self, uvicorn_streams: dict[str, io.StringIO]) -> None:
        configure_logging("INFO")
        logging.getLogger("uvicorn.error").error("bad request for %s", "11010519491231002X")
        line = uvicorn_streams["uvicorn"].getvalue()
        assert "11010519491231002X" not in line
        assert "bad request for 110105********002X" in line

    def test_websocket_token_in_the_url_is_masked_where_uvicorn_logs_the_socket(
        self, uvicorn_streams: dict[str, io.StringIO]
    ) -> None:
        configure_logging("INFO")
        token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiI3In0.c2lnbmF0dXJl"
        logging.getLogger("uvicorn.error").info(
            '%s - "WebSocket %s" [accepted]', "127.0.0.1:5000", f"/ws/agent?token={token}&x=1"
        )
        line = uvicorn_streams["uvicorn"].getvalue()
        assert token not in line
        assert '"WebSocket /ws/agent?token=***&x=1" [accepted]' in line

    def test_access_log_masks_a_token_in_the_request_line(
        self, uvicorn_streams: dict[str, io.StringIO]
    ) -> None:
        configure_logging("INFO")
        logging.getLogger("uvicorn.access").info(
            '%s - "%s %s HTTP/%s" %d',
            "127.0.0.1:5000",
            "GET",
            "/ws/wallboard?token=abc.def",
            "1.1",
            403,
        )
        line = uvicorn_streams["uvicorn.access"].getvalue()
        assert "abc.def" not in line
        assert '"GET /ws/wallboard?token=*** HTTP/1.1" 403' in line

    def test_configuring_twice_wraps_each_formatter_once_and_keeps_its_format(
        self, uvicorn_streams: dict[str, io.StringIO]
    ) -> None:
        kinds = {"uvicorn": DefaultFormatter, "uvicorn.access": AccessFormatter}
        configure_logging("INFO")
        configure_logging("INFO")
        for name, stream in uvicorn_streams.items():
            (handler,) = [
                h
                for h in logging.getLogger(name).handlers
                if isinstance(h, logging.StreamHandler) and h.stream is stream
            ]
            assert isinstance(handler.formatter, RedactingFormatter)
            assert not isinstance(handler.formatter.inner, RedactingFormatter)
            assert type(handler.formatter.inner) is kinds[name]

    def test_a_traceback_on_uvicorns_error_log_is_masked(
        self, uvicorn_streams: dict[str, io.StringIO]
    ) -> None:
        configure_logging("INFO")
        try:
            raise RuntimeError(f"DETAIL:  Key (phone)=({E164}) already exists.")
        except RuntimeError:
            logging.getLogger("uvicorn.error").exception("Exception in ASGI application")
        text = uvicorn_streams["uvicorn"].getvalue()
        assert "Traceback (most recent call last)" in text
        assert E164 not in text
        assert "Key (phone)=(***) already exists." in text
