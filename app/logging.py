"""Logging set-up: customer phone and ID numbers never reach a log line."""

from __future__ import annotations

import logging

from app.customers.identity import SensitiveArgsFilter, SensitiveDataFilter

# uvicorn's loggers have handlers of their own (they do not propagate to the root). Its access
# log formats the request line from ``record.args``: masked argument by argument.
_OWN_HANDLERS: dict[str, type[logging.Filter]] = {
    "uvicorn": SensitiveDataFilter,
    "uvicorn.error": SensitiveDataFilter,
    "uvicorn.access": SensitiveArgsFilter,
}


def configure_logging(level: str) -> None:
    """Mask sensitive data on every handler of the root logger and of uvicorn's loggers
    (idempotent)."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _mask(root, SensitiveDataFilter)
    for name, kind in _OWN_HANDLERS.items():
        _mask(logging.getLogger(name), kind)


def _mask(logger: logging.Logger, kind: type[logging.Filter]) -> None:
    for handler in logger.handlers:
        if not any(isinstance(f, kind) for f in handler.filters):
            handler.addFilter(kind())
