"""Logging set-up: no customer number, token, password or quoted database value is written.

Theory of operation
-------------------

Masking happens on the *final* text of every line, after formatting, not on the message a
record carries: a traceback quotes the exception's text (a database error quotes the
statement's values), uvicorn's access log builds its request line from the record's
arguments, and any formatter may add text of its own. ``configure_logging`` therefore wraps
the formatter of every handler it finds (the root logger's and those of loggers with handlers
of their own, uvicorn's among them) in a ``RedactingFormatter``, which lets the original
formatter produce the line and passes the whole of it through ``app.redact.redact``.

``logging.Formatter`` keeps the formatted traceback on the record (``exc_text``) for the next
handler; the wrapper replaces it with its masked form, so a handler added later (and not
wrapped) still does not see the traceback whole.

Applied again (``create_app`` and the CLI both call it, and a server may reconfigure its
loggers in between), it wraps only handlers not wrapped yet. A handler installed after the
last call, or whose formatter is replaced afterwards, is not covered: uvicorn configures its
loggers before it builds the app (``factory=True``), so its handlers are in place by then.
"""

from __future__ import annotations

import logging

from app.redact import redact

DEFAULT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class RedactingFormatter(logging.Formatter):
    """Formats with ``inner`` and masks the whole result (message, traceback, stack)."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        text = redact(self.inner.format(record))
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return text


def configure_logging(level: str) -> None:
    """Mask sensitive data on every handler of the root logger and of every logger with
    handlers of its own (idempotent)."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=level, format=DEFAULT_FORMAT)
    for logger in _loggers_with_handlers():
        for handler in logger.handlers:
            redact_handler(handler)


def redact_handler(handler: logging.Handler) -> None:
    """Make ``handler`` write masked text, keeping its own format (once, however often
    called)."""
    if isinstance(handler.formatter, RedactingFormatter):
        return
    handler.setFormatter(RedactingFormatter(handler.formatter or logging.Formatter()))


def _loggers_with_handlers() -> list[logging.Logger]:
    known = list(logging.Logger.manager.loggerDict.values())
    loggers = [logging.getLogger(), *(x for x in known if isinstance(x, logging.Logger))]
    return [logger for logger in loggers if logger.handlers]
