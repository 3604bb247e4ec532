"""``GET /v1/workflows/{id}/stack``: where each task of a running workflow waits."""

from __future__ import annotations

from aiohttp import web

from orchestrator.http import validation as v
from orchestrator.http.commands import handle_of
from orchestrator.http.limits import MAX_WAIT_S, QUERY_TIMEOUT_S

__all__ = ["routes", "stack"]


async def stack(request: web.Request) -> web.Response:
    """The engine's answer to the reserved ``__stack`` query: per task, its
    workflow-code frames (outermost first) and what it awaits."""
    handle = handle_of(request, ("run_id", "timeout"))
    timeout = v.query_seconds(
        request, "timeout", default=QUERY_TIMEOUT_S, maximum=MAX_WAIT_S, positive=True
    )
    tasks = await handle.stack(timeout=timeout)
    return web.json_response(
        {"workflow_id": handle.workflow_id, "tasks": [t.to_json() for t in tasks]}
    )


def routes() -> list[web.RouteDef]:
    """The stack route."""
    return [web.get("/v1/workflows/{workflow_id}/stack", stack, allow_head=False)]
