"""The HTTP API's aiohttp application: routes, middlewares, and the services' lifetime."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from orchestrator.http import (
    activities,
    auth,
    batches,
    commands,
    console_routes,
    deadletters,
    metrics,
    operations,
    reads,
    repair,
    schedules,
    stack,
)
from orchestrator.http.auth import auth_middleware
from orchestrator.http.errors import error_middleware
from orchestrator.http.limits import MAX_BODY_BYTES
from orchestrator.http.services import SERVICES, ApiOptions, Services

__all__ = ["build_app"]


def build_app(options: ApiOptions) -> web.Application:
    """The application; it connects to Kafka and PostgreSQL when it starts (in the
    background, retried) and closes them when it stops."""
    counted = metrics.http_metrics()
    app = web.Application(
        middlewares=[
            metrics.metrics_middleware(counted),
            error_middleware,
            auth_middleware(options.tokens),
        ],
        client_max_size=MAX_BODY_BYTES,
    )
    app[SERVICES] = Services(options)
    app[metrics.METRICS] = counted

    async def lifetime(app: web.Application) -> AsyncIterator[None]:
        services = app[SERVICES]
        services.start()
        yield
        await services.close()

    app.cleanup_ctx.append(lifetime)
    app.add_routes(reads.routes())
    app.add_routes(commands.routes())
    app.add_routes(repair.routes())
    app.add_routes(stack.routes())
    app.add_routes(metrics.routes())
    app.add_routes(deadletters.routes())
    app.add_routes(schedules.routes())
    app.add_routes(batches.routes())
    app.add_routes(activities.routes())
    app.add_routes(operations.routes())
    app.add_routes(console_routes.routes())
    app.add_routes(auth.routes())
    return app
