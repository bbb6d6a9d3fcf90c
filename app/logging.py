"""Logging set-up: customer phone and ID numbers, and access tokens, never reach a log line."""

from __future__ import annotations

import logging
import re

from app.customers.identity import SensitiveArgsFilter, SensitiveDataFilter

# A websocket may carry its access token in its URL (``/ws/agent?token=...``), which uvicorn
# logs as the socket is accepted.
_TOKEN_IN_QUERY = re.compile(r"(?i)([?&]token=)[^&\s\"']+")


def mask_tokens(text: str) -> str:
    """Replace the value of every ``token=`` query parameter in ``text``."""
    return _TOKEN_IN_QUERY.sub(r"\1***", text)


class LogMask(SensitiveDataFilter):
    """Customer numbers and access tokens masked in the formatted message."""

    def filter(self, record: logging.LogRecord) -> bool:
        super().filter(record)
        record.msg = mask_tokens(record.msg)
        return True


class LogArgsMask(SensitiveArgsFilter):
    """Customer numbers and access tokens masked argument by argument (uvicorn's access log
    formats the request line from ``record.args``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        super().filter(record)
        if isinstance(record.msg, str):
            record.msg = mask_tokens(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(mask_tokens(a) if isinstance(a, str) else a for a in record.args)
        return True


# uvicorn's loggers have handlers of their own (they do not propagate to the root). Its access
# log formats the request line from ``record.args``: masked argument by argument.
_OWN_HANDLERS: dict[str, type[logging.Filter]] = {
    "uvicorn": LogMask,
    "uvicorn.error": LogMask,
    "uvicorn.access": LogArgsMask,
}


def configure_logging(level: str) -> None:
    """Mask sensitive data on every handler of the root logger and of uvicorn's loggers
    (idempotent)."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _mask(root, LogMask)
    for name, kind in _OWN_HANDLERS.items():
        _mask(logging.getLogger(name), kind)


def _mask(logger: logging.Logger, kind: type[logging.Filter]) -> None:
    for handler in logger.handlers:
        if not any(isinstance(f, kind) for f in handler.filters):
            handler.addFilter(kind())
