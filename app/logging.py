"""Logging set-up: customer phone and ID numbers never reach a log line."""

from __future__ import annotations

import logging

from app.customers.identity import SensitiveDataFilter


def configure_logging(level: str) -> None:
    """Mask sensitive data on every handler of the root logger (idempotent)."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in root.handlers:
        if not any(isinstance(f, SensitiveDataFilter) for f in handler.filters):
            handler.addFilter(SensitiveDataFilter())
