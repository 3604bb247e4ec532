"""Activity routes: complete, fail or heartbeat an attempt by its task token (an activity
that raised ``activity.CompleteAsync``; docs/concepts.md).

The token travels in the body, not the path, so it stays out of access logs. Each
route waits (``wait`` seconds, default 10) for the engine's answer: 200 once the
attempt the token names was the running one and took the outcome; 409
``activity_not_running`` (the attempt ended, timed out, was retried, or was already
completed), ``workflow_closed`` or 404 ``workflow_not_found`` when it was not, and
then nothing changed. ``"wait": 0``: 202 once Kafka has the command, unanswered.
POST routes need an admin token, as every command does.

Pausing an activity type on a task queue (docs/operations.md): ``POST
/v1/activities/pause`` and ``/unpause`` answer 200 with the record once Kafka has
it; ``GET /v1/activities/paused`` lists the paused types (read token).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from orchestrator.http import validation as v
from orchestrator.http.limits import MAX_OPERATOR_CHARS, MAX_REASON_CHARS, MAX_WAIT_S
from orchestrator.http.services import SERVICES
from orchestrator.serde.records import ActivityPause
from orchestrator.task_token import InvalidTaskTokenError, TaskToken

__all__ = ["routes"]

_MAX_TYPE_CHARS = 200
_WAIT_S = 10.0


def _token(body: dict[str, Any]) -> str:
    value = body["token"]
    if not isinstance(value, str):
        raise v.bad("token must be a string")
    try:
        TaskToken.decode(value)
    except InvalidTaskTokenError as exc:
        raise v.bad(str(exc)) from None
    return value


def _wait(body: dict[str, Any]) -> float | None:
    """Seconds to wait for the engine's answer; None (``"wait": 0``) for none."""
    return v.seconds(body.get("wait"), "wait", default=_WAIT_S, maximum=MAX_WAIT_S) or None


def _sent(token: str, wait: float | None) -> web.Response:
    t = TaskToken.decode(token)
    return web.json_response(
        {
            "workflow_id": t.workflow_id,
            "run_id": t.run_id,
            "activity_seq": t.activity_seq,
            "attempt": t.attempt,
            "confirmed": wait is not None,
        },
        status=202 if wait is None else 200,
    )


async def complete(request: web.Request) -> web.Response:
    """``POST /v1/activities/complete``: ``{"token": ..., "result": <JSON>, "wait": s}``."""
    v.check_query(request, ())
    body = await v.json_body(request, required=("token",), optional=("result", "wait"))
    token, wait = _token(body), _wait(body)
    client = request.app[SERVICES].kafka.require()
    await client.complete_activity(token, body.get("result"), wait=wait)
    return _sent(token, wait)


async def fail(request: web.Request) -> web.Response:
    """``POST /v1/activities/fail``: ``{"token", "message", "type"?, "non_retryable"?,
    "details"?, "wait"?}``; the workflow's retry policy decides what follows."""
    v.check_query(request, ())
    body = await v.json_body(
        request,
        required=("token", "message"),
        optional=("type", "non_retryable", "details", "wait"),
    )
    token, wait = _token(body), _wait(body)
    message = v.text(body["message"], "message", MAX_REASON_CHARS)
    error_type = v.text(body.get("type", "ApplicationError"), "type", _MAX_TYPE_CHARS)
    if not error_type:
        raise v.bad("type must not be empty")
    non_retryable = body.get("non_retryable", False)
    if not isinstance(non_retryable, bool):
        raise v.bad("non_retryable must be true or false")
    details = v.json_list(body.get("details"), "details")
    await request.app[SERVICES].kafka.require().fail_activity(
        token,
        message,
        error_type=error_type,
        non_retryable=non_retryable,
        details=details,
        wait=wait,
    )
    return _sent(token, wait)


async def heartbeat(request: web.Request) -> web.Response:
    """``POST /v1/activities/heartbeat``: ``{"token": ..., "details": [...], "wait": s}``."""
    v.check_query(request, ())
    body = await v.json_body(request, required=("token",), optional=("details", "wait"))
    token, wait = _token(body), _wait(body)
    details = v.json_list(body.get("details"), "details")
    await request.app[SERVICES].kafka.require().heartbeat_activity(token, *details, wait=wait)
    return _sent(token, wait)


def _pause_json(p: ActivityPause) -> dict[str, Any]:
    return {
        "task_queue": p.task_queue, "activity_type": p.activity_type, "paused": p.paused,
        "reason": p.reason, "operator": p.operator, "time": p.time,
    }


async def _pause_or_unpause(request: web.Request, *, pausing: bool) -> web.Response:
    v.check_query(request, ())
    body = await v.json_body(
        request, required=("task_queue", "activity_type"), optional=("reason", "operator")
    )
    queue = v.task_queue(body["task_queue"])
    activity_type = v.text(body["activity_type"], "activity_type", _MAX_TYPE_CHARS)
    reason = v.text(body.get("reason", ""), "reason", MAX_REASON_CHARS)
    operator = v.text(body.get("operator", ""), "operator", MAX_OPERATOR_CHARS)
    if not operator:
        operator = f"http {request.remote or 'unknown'}"
    if not activity_type:
        raise v.bad("activity_type must not be empty")
    client = request.app[SERVICES].kafka.require()
    verb = client.pause_activity_type if pausing else client.unpause_activity_type
    record = await verb(queue, activity_type, reason=reason, operator=operator)
    return web.json_response(_pause_json(record))


async def pause(request: web.Request) -> web.Response:
    """``POST /v1/activities/pause``: ``{"task_queue", "activity_type", "reason"?,
    "operator"?}``; the queue's workers hold the type's tasks until unpaused."""
    return await _pause_or_unpause(request, pausing=True)


async def unpause(request: web.Request) -> web.Response:
    """``POST /v1/activities/unpause``: same body; the held tasks start."""
    return await _pause_or_unpause(request, pausing=False)


async def paused(request: web.Request) -> web.Response:
    """``GET /v1/activities/paused[?task_queue=Q]``: the paused activity types."""
    v.check_query(request, ("task_queue",))
    given = request.query.get("task_queue") or None  # empty: every queue, as absent
    queue = None if given is None else v.task_queue(given)
    found = await request.app[SERVICES].kafka.require().paused_activity_types(queue)
    return web.json_response({"paused": [_pause_json(p) for p in found]})


def routes() -> list[web.RouteDef]:
    """The activity routes."""
    return [
        web.post("/v1/activities/complete", complete),
        web.post("/v1/activities/fail", fail),
        web.post("/v1/activities/heartbeat", heartbeat),
        web.post("/v1/activities/pause", pause),
        web.post("/v1/activities/unpause", unpause),
        web.get("/v1/activities/paused", paused, allow_head=False),
    ]
