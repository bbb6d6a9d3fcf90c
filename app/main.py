"""The application factory and its lifespan.

``create_app`` builds the FastAPI app; the lifespan starts the runtime (``app/runtime.py``:
the database, the embedded server when no URL is configured, the event hub, the timer worker
and, unless it runs in a process of its own, the dispatcher), and makes sure the deployment
has a signing secret and a first admin.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app import bootstrap, health
from app.accesslog_router import router as access_log_router
from app.agents.keys_router import router as keys_router
from app.agents.router import router as agents_router
from app.agents.security import TokenReader, make_hasher
from app.complaints import service as complaint_service
from app.complaints.approvals_router import router as complaint_approvals_router
from app.complaints.archive_router import router as complaint_archive_router
from app.complaints.assign_router import router as complaints_assign_router
from app.complaints.attachments_router import router as complaint_attachments_router
from app.complaints.handlers import router as complaint_clocks_router
from app.complaints.notes_router import router as complaint_notes_router
from app.complaints.notices_router import router as complaint_notices_router
from app.complaints.public_router import router as complaint_public_router
from app.complaints.reports_router import router as complaint_reports_router
from app.complaints.router import router as complaints_router
from app.complaints.suggestions import router as suggestions_router
from app.config import Settings, get_settings
from app.customers.router import router as customers_router
from app.db import unit_of_work
from app.errors import install_error_handlers
from app.ivr.router import contacts_router as ivr_contacts_router
from app.ivr.router import router as ivr_router
from app.ivr.telephony_router import router as telephony_router
from app.limits import install_body_limit
from app.logging import configure_logging
from app.metrics import Metrics, MetricsMiddleware
from app.openapi import install_docs, install_openapi
from app.realtime.poll import router as events_router
from app.realtime.ws import router as ws_router
from app.routing.contacts_router import router as contacts_list_router
from app.routing.reports_router import router as routing_reports_router
from app.routing.router import intake_router
from app.routing.router import router as routing_router
from app.runtime import Runtime, timer_registry
from app.security_headers import install_security
from app.timers.worker import TimerWorker
from app.web.pages_boards import router as boards_pages_router
from app.web.router import router as pages_router

log = logging.getLogger(__name__)

DESCRIPTION = """\
Hotline queues every contact to the right agent by skill and customer tier, runs the IVR
and the complaint workflow, and streams live state to consoles and wallboards.

Every error is one body, `ErrorBody`: `{"error": "<Name>", "detail": "<text>"}`, with
`fields` naming each offending field on a 422; each operation lists the statuses it can
answer. Lists page one way: `limit` and `cursor` in, `items` and `next_cursor` out. Creates
accept an `Idempotency-Key` header. Authenticate with `POST /api/v1/auth/token` (a form).

Live state comes over two websockets, `/ws/agent` and `/ws/wallboard`, whose messages,
authentication, resume and close codes are described in
[the websocket protocol](/docs/websockets) ([markdown](/docs/websockets.md)).
"""


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    runtime = Runtime(
        settings,
        app.state.timer_registry,
        dispatcher=settings.dispatcher_enabled,
        pool_size=settings.db_pool_size,
    )
    try:
        await runtime.start()
        assert runtime.sessionmaker is not None
        hasher = make_hasher(settings)
        async with unit_of_work(runtime.sessionmaker) as session:
            app.state.jwt_secret = await bootstrap.jwt_secret(session, settings)
            app.state.tokens = TokenReader(app.state.jwt_secret)
            await bootstrap.first_admin(session, settings, hasher)
        app.state.engine, app.state.sessionmaker = runtime.engine, runtime.sessionmaker
        app.state.db_pool, app.state.wakes = runtime.pool, runtime.wakes
        app.state.hub, app.state.timer_worker = runtime.hub, runtime.worker
        app.state.dispatcher, app.state.hasher = runtime.dispatcher, hasher
        yield
    finally:
        await runtime.stop()


def _worker_counts(
    app: FastAPI, read: Callable[[TimerWorker], Mapping[str, int]]
) -> Callable[[], Mapping[str, int]]:
    """Counts of the app's running timer worker, read at each scrape (none before start)."""

    def counts() -> Mapping[str, int]:
        worker: TimerWorker | None = getattr(app.state, "timer_worker", None)
        return {} if worker is None else read(worker)

    return counts


def create_app(settings: Settings | None = None) -> FastAPI:
    """A Hotline app; nothing touches the database until the lifespan starts."""
    settings = settings or get_settings()
    configure_logging(settings.log_level)
    app = FastAPI(
        title="Hotline",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        # Served by install_docs from local assets: FastAPI's own pages load them from a CDN.
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.metrics = Metrics(
        timers_found_held=_worker_counts(app, lambda worker: worker.found_held),
        sweeps_reconciled=_worker_counts(app, lambda worker: worker.reconciled),
    )
    # The desk's rules, built once: the routes, the IVR, the feeds and the timers read it.
    app.state.complaint_desk = complaint_service.desk_for(settings)
    app.state.timer_registry = timer_registry(settings, app.state.complaint_desk)
    app.state.migration_heads = health.migration_heads()
    install_error_handlers(app)
    install_body_limit(app, settings)  # inside metrics: its 413s are counted
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    install_security(app, settings)  # last: outermost, so every response carries its headers
    # The busiest routes first (routes match in order): contacts, then the provider's webhooks.
    app.include_router(intake_router)
    app.include_router(telephony_router)
    app.include_router(health.router)
    app.include_router(agents_router)
    app.include_router(keys_router)
    app.include_router(customers_router)
    app.include_router(access_log_router)
    app.include_router(routing_router)
    app.include_router(contacts_list_router)
    app.include_router(routing_reports_router)
    # before /complaints/{id}/{verb}, which would take their last segment for a verb
    app.include_router(complaint_clocks_router)
    app.include_router(complaints_assign_router)
    app.include_router(complaint_notes_router)
    app.include_router(complaint_notices_router)
    app.include_router(complaint_approvals_router)
    app.include_router(complaint_archive_router)
    app.include_router(complaint_attachments_router)
    app.include_router(complaint_reports_router)
    app.include_router(complaint_public_router)
    app.include_router(complaints_router)
    app.include_router(suggestions_router)
    app.include_router(ivr_router)
    app.include_router(ivr_contacts_router)
    app.include_router(events_router)
    app.include_router(ws_router)
    app.include_router(pages_router)
    app.include_router(boards_pages_router)
    install_docs(app)
    install_openapi(app)
    return app
