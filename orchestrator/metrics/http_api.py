"""``saga http``'s metrics: requests by route and status, and their latency."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from orchestrator.metrics.buckets import FAST

__all__ = ["HttpMetrics"]


class HttpMetrics:
    """Request counters and latencies; ``route`` is the route's pattern
    (``/v1/workflows/{workflow_id}``), never the path a caller sent."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter(
            "saga_http_requests", "Requests answered, by method, route pattern and status.",
            ["method", "route", "status"], registry=registry,
        )  # fmt: skip
        self.seconds = Histogram(
            "saga_http_request_seconds", "Time to answer a request, by method and route pattern.",
            ["method", "route"], buckets=FAST, registry=registry,
        )  # fmt: skip
