"""Customer numbers and access tokens never reach a log line, uvicorn's own included."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest
from uvicorn.logging import AccessFormatter, DefaultFormatter

from app.logging import configure_logging


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

    def test_configuring_twice_adds_no_second_filter(
        self, uvicorn_streams: dict[str, io.StringIO]
    ) -> None:
        configure_logging("INFO")
        configure_logging("INFO")
        for name, stream in uvicorn_streams.items():
            (handler,) = [
                h
                for h in logging.getLogger(name).handlers
                if isinstance(h, logging.StreamHandler) and h.stream is stream
            ]
            assert len(handler.filters) == 1
