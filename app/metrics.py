"""Prometheus metrics: request counts and latencies per route template, and counts the
instance keeps elsewhere, read at each scrape."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client import generate_latest as _generate
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class _Counted(Collector):
    """A counter whose values, by one label, are kept elsewhere and read at each scrape."""

    def __init__(
        self, name: str, documentation: str, label: str, counts: Callable[[], Mapping[str, int]]
    ) -> None:
        self._name, self._documentation, self._label = name, documentation, label
        self._counts = counts

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(self._name, self._documentation, labels=[self._label])
        for value, count in sorted(self._counts().items()):
            family.add_metric([value], count)
        yield family


class Metrics:
    """One registry per app, so several apps in one process (tests) do not collide.

    ``timers_found_held``: the timer worker's count, by kind, of the timers it fired that
    found a row they need held by another transaction (left, and tried again shortly);
    ``sweeps_reconciled``: how much each of its sweeps reconciled (``TimerWorker``)."""

    def __init__(
        self,
        timers_found_held: Callable[[], Mapping[str, int]] = dict,
        sweeps_reconciled: Callable[[], Mapping[str, int]] = dict,
    ) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "hotline_http_requests_total",
            "HTTP requests by method, route and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "hotline_http_request_duration_seconds",
            "HTTP request latency by method and route",
            ["method", "route"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.registry.register(
            _Counted(
                "hotline_timers_found_held",
                "Timers fired that found a row they need held by another transaction and were "
                "tried again shortly, by kind (this instance, since it started)",
                "kind",
                timers_found_held,
            )
        )
        self.registry.register(
            _Counted(
                "hotline_sweeps_reconciled",
                "Items each periodic sweep reconciled: work whose own path failed, done by its "
                "backstop (this instance, since it started)",
                "sweep",
                sweeps_reconciled,
            )
        )

    def render(self) -> Response:
        return Response(_generate(self.registry), media_type=CONTENT_TYPE_LATEST)


def _route_template(scope: Scope) -> str:
    """The matched route's path template (the router records it in the scope)."""
    route = scope.get("route")
    return str(getattr(route, "path", "unmatched"))


class MetricsMiddleware:
    """Pure ASGI middleware (no buffering of bodies, websockets untouched)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = _route_template(scope)
            method = Request(scope).method
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.latency.labels(method, route).observe(time.perf_counter() - started)
