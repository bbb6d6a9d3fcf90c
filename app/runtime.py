"""What runs beside the requests: the engine, the event hub, the timer worker, the dispatcher.

Theory of operation: an API process (``hotline serve``) and a dispatcher process
(``hotline dispatch``) build the same runtime. Both follow the event log, fire due timers and
wake their loops after their own commits. The dispatcher runs where it is enabled: in the API
process by default (one process does everything), or only in dispatcher processes
(``HOTLINE_DISPATCHER_ENABLED=false`` for the API), where its rounds never wait behind
requests on a busy event loop. Any number of processes may run it: one holds the leader lock
and decides, the others stand by (``app/routing/dispatcher.py``).

Every process is also an instance with an id of its own that heartbeats the agent consoles it
holds and closes those of instances that stopped (``app/agents/consoles.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app import health, ratelimit
from app.agents import consoles
from app.agents import service as agents
from app.complaints import archive as complaint_archive
from app.complaints import assign_queue as complaint_assign_queue
from app.complaints import handlers as complaint_timers
from app.complaints import search_terms
from app.complaints import service as complaint_service
from app.complaints import suggestions as complaint_suggestions
from app.config import Settings
from app.db import OutageLog, create_driver_pool, create_engine, unit_of_work
from app.embedded import resolve_database_url
from app.events import log as event_log
from app.ivr import bridge as ivr_bridge
from app.ivr import silence as ivr_silence
from app.notifications import outbox as notification_outbox
from app.realtime.hub import EventHub
from app.routing import admission
from app.routing import consoles as console_timers
from app.routing import handlers as routing_timers
from app.routing.dispatcher import Dispatcher, wakes_on
from app.routing.work import DISPATCH_WAKE_KEY
from app.timers import service as timers
from app.timers.worker import TimerRegistry, TimerWorker

log = logging.getLogger(__name__)


# Young-generation collections every 700 allocations cost a busy server about a tenth of its
# CPU, and full collections stall it for 100 ms and more once it holds many objects. Server
# processes (``HOTLINE_GC_TUNED``, set by the ``hotline`` command) collect every 10,000
# allocations and freeze what exists once started (the code, the app, the pools), so
# collections only look at request garbage.
GC_THRESHOLDS = (10_000, 20, 100)


class MigrationsBehind(RuntimeError):
    pass


async def check_migrations(engine: AsyncEngine) -> None:
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


def statements_warmer(settings: Settings) -> Callable[[asyncpg.Connection], Awaitable[None]]:
    """What prepares and plans the driver pool's hot statements on each new connection."""

    async def warm(conn: asyncpg.Connection) -> None:
        await agents.warm(conn)
        await admission.warm(conn, settings)

    return warm


def timer_registry(settings: Settings, desk: complaint_service.Desk | None = None) -> TimerRegistry:
    """Every timer kind (and periodic sweep) this code handles; the complaints' timers run
    with ``desk`` (by default the desk of ``settings``: ``complaint_service.desk_for``)."""
    desk = desk or complaint_service.desk_for(settings)
    registry = TimerRegistry()
    routing_timers.register(registry, settings)
    console_timers.register(registry)
    notification_outbox.register(registry)
    complaint_suggestions.register(registry)
    complaint_timers.register(registry, settings, desk=desk)
    complaint_assign_queue.register(registry, settings, desk=desk)
    complaint_archive.register(registry, settings, desk=desk)
    ivr_bridge.register(registry, settings)
    ivr_silence.register(registry, settings, desk)
    registry.register_sweep(
        ratelimit.PRUNE_SWEEP, ratelimit.prune_sweep, every_s=ratelimit.PRUNE_EVERY_S
    )
    return registry


class Wakes:
    """What a commit made on the driver (outside a session) wakes, once it has committed."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    def contact_queued(self, *, timers: bool) -> None:
        """A contact was queued: the hub reads its event, the dispatcher looks for an agent,
        and the timer worker looks now when its max-wait timer is due soon."""
        runtime = self._runtime
        if runtime.hub is not None:
            runtime.hub.poke()
        runtime.wake_dispatcher()
        if timers:
            runtime.wake_timers()


class Runtime:
    """The background machinery of one process; ``start`` it, then ``stop`` it."""

    def __init__(
        self, settings: Settings, registry: TimerRegistry, *, dispatcher: bool, pool_size: int
    ) -> None:
        self.settings = settings
        self._registry = registry
        self._with_dispatcher = dispatcher
        self._pool_size = pool_size
        self.engine: AsyncEngine | None = None
        self.pool: asyncpg.Pool | None = None
        self.hub: EventHub | None = None
        self.worker: TimerWorker | None = None
        self.dispatcher: Dispatcher | None = None
        self.sessionmaker: async_sessionmaker[AsyncSession] | None = None
        self.wakes = Wakes(self)
        self.consoles = consoles.ConsoleRegistry(
            grace_s=settings.console_grace_s, stale_s=settings.console_stale_s
        )
        self._heartbeat: asyncio.Task[None] | None = None

    async def start(self) -> None:
        settings = self.settings
        url = resolve_database_url(settings.database_url, settings.data_dir)
        # Requests wait for a pooled connection under load rather than open extra ones.
        engine = create_engine(
            url,
            pool_size=self._pool_size,
            max_overflow=0,
            idle_tx_timeout_ms=settings.idle_in_transaction_timeout_ms,
        )
        self.engine = engine
        await check_migrations(engine)
        await asyncio.to_thread(search_terms.warm)  # jieba's dictionary, before a request needs it
        self.pool = await create_driver_pool(
            url,
            size=settings.driver_pool_size,
            idle_tx_timeout_ms=settings.idle_in_transaction_timeout_ms,
            warm=statements_warmer(settings),
        )
        hub = EventHub(
            engine,
            url,
            poll_interval_s=settings.event_poll_interval_s,
            read_gap_s=settings.event_read_gap_s,
        )
        # One bound method, so the after-commit queue (deduplicated by identity) wakes the
        # dispatcher once per commit however many of a session's writes asked for it.
        self._wake_dispatcher: Callable[[], None] = self.wake_dispatcher
        self.sessionmaker = async_sessionmaker(
            engine,
            expire_on_commit=False,
            autoflush=False,
            info={
                event_log.WAKE_CALLBACK_KEY: hub.poke,
                timers.WAKE_CALLBACK_KEY: self.wake_timers,
                DISPATCH_WAKE_KEY: self._wake_dispatcher,
                event_log.RECORD_WATCH_KEY: self._dispatch_wake_for,
                consoles.REGISTRY_KEY: self.consoles,
            },
        )
        self.worker = TimerWorker(
            self.sessionmaker,
            self._registry,
            poll_interval_s=settings.timer_poll_interval_s,
            batch_size=settings.timer_batch_size,
            max_attempts=settings.timer_max_attempts,
        )
        if self._with_dispatcher:
            self.dispatcher = Dispatcher(
                url, settings, wake_events=hub.poke, wake_timers=self.wake_timers
            )
            hub.add_listener(self.dispatcher.on_events)
            hub.add_peer_listener(self.dispatcher.nudge)
        self.hub = hub
        await hub.start()
        self.worker.start()
        if self.dispatcher is not None:
            self.dispatcher.start()
        self._heartbeat = asyncio.create_task(self._beat_consoles(), name="console-heartbeat")
        if settings.gc_tuned:
            gc.set_threshold(*GC_THRESHOLDS)
            gc.freeze()

    async def stop(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
            await self._close_consoles()
        if self.dispatcher is not None:
            await self.dispatcher.stop()
        if self.worker is not None:
            await self.worker.stop()
        if self.hub is not None:
            await self.hub.stop()
        if self.pool is not None:
            await self.pool.close()
        if self.engine is not None:
            await self.engine.dispose()

    async def _beat_consoles(self) -> None:
        """Keep this instance's consoles open and close those of stopped instances."""
        assert self.sessionmaker is not None
        outage = OutageLog(log, "console heartbeats")
        while True:
            try:
                async with unit_of_work(self.sessionmaker) as session:
                    await consoles.heartbeat(session)
            except Exception as exc:
                # The next beat tries again: leases outlast a few missed beats.
                outage.failed(exc, "console heartbeat failed; retrying")
            else:
                outage.ok()
            await asyncio.sleep(self.settings.console_heartbeat_s)

    async def _close_consoles(self) -> None:
        """Stopping: the consoles still held here are gone (or lapse, if this fails)."""
        assert self.sessionmaker is not None
        try:
            async with unit_of_work(self.sessionmaker) as session:
                await consoles.close_instance(session)
        except Exception as exc:
            log.warning("consoles not closed on stopping: %s: %s", type(exc).__name__, exc)

    def wake_timers(self) -> None:
        if self.worker is not None:
            self.worker.poke()

    def wake_dispatcher(self) -> None:
        if self.dispatcher is not None:
            self.dispatcher.poke()

    def _dispatch_wake_for(self, type_: str, data: dict[str, Any]) -> Callable[[], None] | None:
        """What an event recorded in a session wakes at commit: the dispatcher, when the
        event may let a waiting contact be offered (the rule the dispatcher applies to the
        log, applied here without waiting for the log)."""
        return self._wake_dispatcher if wakes_on(type_, data) else None


async def dispatch_until_stopped(settings: Settings, *, parent_pid: int | None = None) -> None:
    """``hotline dispatch``: the dispatcher, the hub and the timer worker, until a signal
    (or, given ``parent_pid``, until that process is gone)."""
    runtime = Runtime(settings, timer_registry(settings), dispatcher=True, pool_size=4)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    watch = _stop_with(parent_pid, stop) if parent_pid else None
    try:
        await runtime.start()
        log.info("dispatcher process running")
        await stop.wait()
    finally:
        if watch is not None:
            loop.remove_reader(watch)
            os.close(watch)
        await runtime.stop()


def _stop_with(parent_pid: int, stop: asyncio.Event) -> int | None:
    """Set ``stop`` when the parent process exits (a pidfd becomes readable then)."""

    def gone() -> None:
        log.warning("the server that started this dispatcher has gone; stopping")
        stop.set()

    try:
        fd = os.pidfd_open(parent_pid)
    except ProcessLookupError:
        gone()
        return None
    asyncio.get_running_loop().add_reader(fd, gone)
    return fd
