"""``POST /v1/workflows/{id}/repair``: an operator's repair of a failed compensation."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from aiohttp import web

from orchestrator.http import validation as v
from orchestrator.http.commands import handle_of
from orchestrator.http.limits import (
    MAX_OPERATOR_CHARS,
    MAX_REASON_CHARS,
    MAX_WAIT_S,
    RESET_WAIT_S,
)
from orchestrator.retry import RetryPolicy

__all__ = ["repair", "retry_from_json", "routes"]

_POLICY_FIELDS = frozenset({"max_attempts", "initial", "maximum", "backoff", "expire_after"})
_YEAR_S = 366 * 86_400.0


def retry_from_json(value: Any) -> RetryPolicy:
    """A retry policy from ``{"max_attempts": 5, "initial": 1, "maximum": 60,
    "backoff": 2, "expire_after": 3600}`` (seconds; every field optional)."""
    if not isinstance(value, dict):
        raise v.bad("retry must be an object")
    unknown = sorted(set(value) - _POLICY_FIELDS)
    if unknown:
        raise v.bad(f"retry: unknown fields {unknown}; known: {sorted(_POLICY_FIELDS)}")
    attempts = v.int64(value.get("max_attempts", 0), "retry.max_attempts (0: unlimited)",
                       minimum=0)
    backoff = value.get("backoff", 2.0)
    if isinstance(backoff, bool) or not isinstance(backoff, int | float):
        raise v.bad("retry.backoff must be a number")

    def span(name: str) -> timedelta | None:
        if value.get(name) is None:
            return None
        return timedelta(seconds=v.seconds(value[name], f"retry.{name}", default=0,
                                           maximum=_YEAR_S))

    try:
        return RetryPolicy(
            initial=span("initial") or RetryPolicy().initial,
            backoff=float(backoff),
            maximum=span("maximum"),
            max_attempts=attempts,
            expire_after=span("expire_after"),
        )
    except ValueError as exc:
        raise v.bad(f"retry: {exc}") from None


async def repair(request: web.Request) -> web.Response:
    """Retry a COMPENSATION_FAILED run's failed compensations, or skip one; its
    compensation goes on (422 ``command_rejected`` for another status or step)."""
    handle = handle_of(request)
    body = await v.json_body(
        request, required=("reason",), optional=("skip", "retry", "operator", "wait")
    )
    wait = v.seconds(
        body.get("wait"), "wait", default=RESET_WAIT_S, maximum=MAX_WAIT_S, positive=True
    )
    reason = v.text(body["reason"], "reason", MAX_REASON_CHARS)
    operator = v.text(body.get("operator", ""), "operator", MAX_OPERATOR_CHARS)
    skip = body.get("skip")
    if skip is not None:
        skip = v.text(skip, "skip", MAX_OPERATOR_CHARS)
    retry = retry_from_json(body["retry"]) if body.get("retry") is not None else None
    if skip is not None and retry is not None:
        raise v.bad("give either skip or retry, not both")
    await handle.repair(
        reason,
        skip=skip,
        retry=retry,
        operator=operator or f"http {request.remote or 'unknown'}",
        timeout=wait,
    )
    action = {"skipped": skip} if skip is not None else {"retrying": True}
    return web.json_response({"workflow_id": handle.workflow_id, **action})


def routes() -> list[web.RouteDef]:
    """The repair route."""
    return [web.post("/v1/workflows/{workflow_id}/repair", repair)]
