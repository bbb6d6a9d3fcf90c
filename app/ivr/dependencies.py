"""What the IVR's routes take from the app: the clock, the desk's rules, the settings."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from fastapi import Request

from app.complaints import service as complaints
from app.config import Settings
from app.ivr import calls


def settings_of(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


def ivr_now(request: Request) -> datetime:
    """The IVR's clock: injected by tests (``app.state.ivr_clock``), else the system's."""
    clock: Callable[[], datetime] | None = getattr(request.app.state, "ivr_clock", None)
    return clock() if clock is not None else datetime.now(UTC)


def step_context(request: Request) -> calls.Context:
    """What a call's step runs with: the clock, the settings, the app's complaint desk
    (``app.state.complaint_desk``) and its working calendar."""
    desk: complaints.Desk = request.app.state.complaint_desk
    limits = getattr(request.app.state, "ivr_lookup_limits", None)
    return calls.Context(ivr_now(request), settings_of(request), desk, desk.work_calendar(), limits)
