"""The application factory and its lifespan.

``create_app`` builds the FastAPI app; the lifespan opens the database (the embedded server
when no URL is configured), starts the event hub and the timer worker, and makes sure the
deployment has a signing secret and a first admin.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app import bootstrap, health
from app.agents.router import router as agents_router
from app.agents.security import make_hasher
from app.config import Settings, get_settings
from app.customers.router import router as customers_router
from app.db import create_engine, unit_of_work
from app.embedded import resolve_database_url
from app.errors import install_error_handlers
from app.events import log as event_log
from app.events.hub import EventHub
from app.events.router import router as events_router
from app.logging import configure_logging
from app.metrics import Metrics, MetricsMiddleware
from app.routing import handlers as routing_timers
from app.routing.dispatcher import Dispatcher
from app.routing.router import router as routing_router
from app.routing.work import DISPATCH_WAKE_KEY
from app.timers import service as timers
from app.timers.worker import TimerRegistry, TimerWorker

log = logging.getLogger(__name__)

DESCRIPTION = """\
Hotline queues every contact to the right agent by skill and customer tier, runs the IVR
and the complaint workflow, and streams live state to consoles and wallboards.

Errors are `{"error": "<Name>", "detail": "<text>"}` with a 4xx status. Creates accept an
`Idempotency-Key` header. Authenticate with `POST /api/v1/auth/token`.
"""


class MigrationsBehind(RuntimeError):
    pass


async def _check_migrations(engine: AsyncEngine) -> None:
    expected = health.migration_heads()
    try:
        async with engine.connect() as conn:
            current = {
                r[0] for r in await conn.execute(text("SELECT version_num FROM alembic_version"))
            }
    except Exception as exc:
        raise MigrationsBehind("the database is not migrated: run `hotline migrate`") from exc
    if current != expected:
        raise MigrationsBehind(
            f"the database is at {sorted(current)}, the code needs {sorted(expected)}: "
            "run `hotline migrate`"
        )


class _Wakers:
    """Late-bound wake-ups: the sessionmaker exists before the loops it wakes."""

    def __init__(self) -> None:
        self.timer_worker: TimerWorker | None = None
        self.dispatcher: Dispatcher | None = None

    def timers(self) -> None:
        if self.timer_worker is not None:
            self.timer_worker.poke()

    def dispatch(self) -> None:
        if self.dispatcher is not None:
            self.dispatcher.poke()


def _sessionmaker(
    engine: AsyncEngine, hub: EventHub, wakers: _Wakers
) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(
        engine,
        expire_on_commit=False,
        autoflush=False,
        info={
            event_log.WAKE_CALLBACK_KEY: hub.poke,
            timers.WAKE_CALLBACK_KEY: wakers.timers,
            DISPATCH_WAKE_KEY: wakers.dispatch,
        },
    )


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    url = resolve_database_url(settings.database_url, settings.data_dir)
    engine = create_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=0,
        idle_tx_timeout_ms=settings.idle_in_transaction_timeout_ms,
    )
    await _check_migrations(engine)
    hub = EventHub(engine, url, poll_interval_s=settings.event_poll_interval_s)
    wakers = _Wakers()
    sessionmaker = _sessionmaker(engine, hub, wakers)
    worker = TimerWorker(
        sessionmaker,
        app.state.timer_registry,
        poll_interval_s=settings.timer_poll_interval_s,
        batch_size=settings.timer_batch_size,
        max_attempts=settings.timer_max_attempts,
    )
    dispatcher = Dispatcher(sessionmaker, url, settings)
    wakers.timer_worker, wakers.dispatcher = worker, dispatcher
    hub.add_listener(dispatcher.on_events)
    hasher = make_hasher(settings)
    async with unit_of_work(sessionmaker) as session:
        app.state.jwt_secret = await bootstrap.jwt_secret(session, settings)
        await bootstrap.first_admin(session, settings, hasher)
    app.state.engine, app.state.sessionmaker = engine, sessionmaker
    app.state.hub, app.state.timer_worker, app.state.hasher = hub, worker, hasher
    app.state.dispatcher = dispatcher
    await hub.start()
    worker.start()
    dispatcher.start()
    try:
        yield
    finally:
        await dispatcher.stop()
        await worker.stop()
        await hub.stop()
        await engine.dispose()


def create_app(settings: Settings | None = None) -> FastAPI:
    """A Hotline app; nothing touches the database until the lifespan starts."""
    settings = settings or get_settings()
    configure_logging(settings.log_level)
    app = FastAPI(
        title="Hotline",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = Metrics()
    app.state.timer_registry = TimerRegistry()
    routing_timers.register(app.state.timer_registry)
    app.state.migration_heads = health.migration_heads()
    install_error_handlers(app)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    app.include_router(health.router)
    app.include_router(agents_router)
    app.include_router(customers_router)
    app.include_router(routing_router)
    app.include_router(events_router)
    return app
