"""The front's Prometheus metrics: requests by route and status, and latency by route.

Routes are the known paths (anything else counts as `other`), so a scanner cannot grow the label set.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Histogram

# Seconds; the front's own latency sits from ~1 ms (short texts, CPU) to seconds under load.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """One registry per app, so two fronts in one process (tests) keep separate counts."""

    def __init__(self, routes: tuple[str, ...]):
        self.registry = CollectorRegistry()
        self.routes = frozenset(routes)
        self.requests = Counter(
            "kubeformer_front_requests",
            "Requests answered by the API front, by route and HTTP status.",
            ("route", "status"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "kubeformer_front_request_duration_seconds",
            "Time from request to response in the API front (Triton's time included), by route.",
            ("route",),
            buckets=BUCKETS,
            registry=self.registry,
        )


class MetricsMiddleware:
    """ASGI middleware recording every HTTP request's route, status and duration in `metrics`."""

    def __init__(self, app, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        route = scope["path"] if scope["path"] in self.metrics.routes else "other"
        status, start = [500], time.perf_counter()

        async def watch(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            self.metrics.latency.labels(route).observe(time.perf_counter() - start)
            self.metrics.requests.labels(route, str(status[0])).inc()
