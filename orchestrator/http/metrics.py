"""``GET /metrics`` of ``saga http``, and the middleware that counts requests.

The route is authenticated like every other: any token (read-only is enough) may
scrape it, so Prometheus scrapes with a read token (``authorization.credentials_file``).
Only ``/healthz`` is open, because a load balancer cannot send a token.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, ProcessCollector
from prometheus_client.exposition import generate_latest

from orchestrator.metrics import HttpMetrics

__all__ = ["METRICS", "http_metrics", "metrics_middleware", "routes"]

METRICS = web.AppKey("metrics", HttpMetrics)

#: the methods counted by name; any other is counted as ``other``, because aiohttp
#: accepts any method token and the middleware runs before authentication
_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def http_metrics() -> HttpMetrics:
    """The server's own registry (not the global one): process and request metrics."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    return HttpMetrics(registry)


def _route(request: web.Request) -> str:
    """The matched route's pattern (bounded), never the path the caller sent."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


def _method(request: web.Request) -> str:
    """The request's method when it is a standard one, else ``other`` (bounded)."""
    return request.method if request.method in _METHODS else "other"


def metrics_middleware(metrics: HttpMetrics) -> Middleware:
    """Count every request by method (standard ones by name, the rest as ``other``),
    route pattern and status, and time it."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        began = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            status = exc.status
            raise
        else:
            status = response.status
            return response
        finally:
            route, method = _route(request), _method(request)
            metrics.requests.labels(method, route, str(status)).inc()
            metrics.seconds.labels(method, route).observe(time.perf_counter() - began)

    return middleware


async def scrape(request: web.Request) -> web.Response:
    """``GET /metrics``: the Prometheus text format."""
    body = generate_latest(request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def routes() -> list[web.RouteDef]:
    """The metrics route."""
    return [web.get("/metrics", scrape, allow_head=False)]
