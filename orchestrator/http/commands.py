"""Routes that send commands: start, signal, cancel, terminate, pause, unpause, reset,
update, query.

Each waits (bounded) for the shard's reply when asked to, so a caller learns the
run id of a start, or that a signal hit an unknown or closed workflow. A command
whose reply does not come in time has still been written to Kafka and may take
effect later: starts answer 202 then, other commands 504.
"""

from __future__ import annotations

import contextlib
from datetime import timedelta
from typing import Any
from urllib.parse import quote

from aiohttp import web

from orchestrator.client import AsyncWorkflowHandle, IdReusePolicy, ReplyTimeoutError
from orchestrator.http import validation as v
from orchestrator.http.jsonout import jsonable
from orchestrator.http.limits import (
    COMMAND_WAIT_S,
    MAX_ID_CHARS,
    MAX_OPERATOR_CHARS,
    MAX_REASON_CHARS,
    MAX_WAIT_S,
    QUERY_TIMEOUT_S,
    RESET_WAIT_S,
    START_WAIT_S,
    UPDATE_TIMEOUT_S,
)
from orchestrator.http.services import SERVICES

__all__ = ["routes"]

_POLICIES = {p.name: p for p in IdReusePolicy} | {p.value.upper(): p for p in IdReusePolicy}
_START_FIELDS = (
    "input",
    "args",
    "id_reuse_policy",
    "search_attributes",
    "memo",
    "execution_timeout",
    "start_signal",
    "start_signal_args",
    "priority",
    "fairness_key",
    "wait",
)
_TEN_YEARS_S = 10 * 366 * 86_400.0


def handle_of(
    request: web.Request, params: tuple[str, ...] = ("run_id",)
) -> AsyncWorkflowHandle[Any]:
    """A client handle for the workflow id (and ``?run_id=``) of the request path;
    query parameters other than ``params`` are refused."""
    v.check_query(request, params)
    workflow_id = v.workflow_id(request.match_info["workflow_id"])
    run = request.query.get("run_id")
    run_id = v.run_id(run) if run is not None else None
    return request.app[SERVICES].kafka.require().get_handle(workflow_id, run_id)


def _policy(value: Any) -> IdReusePolicy:
    if value is None:
        return IdReusePolicy.ALLOW_DUPLICATE
    policy = _POLICIES.get(value.upper()) if isinstance(value, str) else None
    if policy is None:
        raise v.bad(f"id_reuse_policy must be one of {', '.join(p.name for p in IdReusePolicy)}")
    return policy


async def start(request: web.Request) -> web.Response:
    """``POST /v1/workflows``: start a workflow; 201 with its run id once the shard confirms."""
    v.check_query(request, ())
    body = await v.json_body(
        request, required=("workflow", "id", "task_queue"), optional=_START_FIELDS
    )
    workflow_id = v.workflow_id(body["id"], "id")
    if "input" in body and "args" in body:
        raise v.bad("give either input (one value) or args (a list), not both")
    timeout = v.seconds(
        body.get("execution_timeout"), "execution_timeout", default=0, maximum=_TEN_YEARS_S
    )
    start_signal = body.get("start_signal")
    wait = v.seconds(body.get("wait"), "wait", default=START_WAIT_S, maximum=MAX_WAIT_S)
    location = f"/v1/workflows/{quote(workflow_id, safe='')}"
    options: dict[str, Any] = {
        "id": workflow_id,
        "task_queue": v.task_queue(body["task_queue"]),
        "args": [body["input"]] if "input" in body else v.json_list(body.get("args"), "args"),
        "id_reuse_policy": _policy(body.get("id_reuse_policy")),
        "search_attributes": v.json_object(body.get("search_attributes"), "search_attributes"),
        "memo": v.json_object(body.get("memo"), "memo"),
        "execution_timeout": timedelta(seconds=timeout) if timeout else None,
        "start_signal": None if start_signal is None else v.name(start_signal, "start_signal"),
        "start_signal_args": v.json_list(body.get("start_signal_args"), "start_signal_args"),
        "traceparent": v.traceparent(request.headers),
        "priority": v.priority(body.get("priority")),
        "fairness_key": v.text(body.get("fairness_key", ""), "fairness_key", MAX_ID_CHARS),
    }
    workflow = v.name(body["workflow"], "workflow")
    client = request.app[SERVICES].kafka.require()
    handle: AsyncWorkflowHandle[Any] | None = None
    with contextlib.suppress(ReplyTimeoutError):  # the command is in Kafka: 202 below
        handle = await client.start(workflow, wait_started=wait or None, **options)
    if handle is None or handle.run_id is None:
        return web.json_response(
            {
                "workflow_id": workflow_id,
                "run_id": None,
                "confirmed": False,
                "message": "the start command is in Kafka; no engine worker confirmed it "
                f"within {wait:g} s (unknown workflow types go to the DLQ)"
                if wait
                else "the start command is in Kafka (not waiting for confirmation)",
            },
            status=202,
            headers={"Location": location},
        )
    return web.json_response(
        {"workflow_id": workflow_id, "run_id": handle.run_id, "confirmed": True},
        status=201,
        headers={"Location": location},
    )


def _delivered(handle: AsyncWorkflowHandle[Any], wait: float, **extra: Any) -> web.Response:
    body = {"workflow_id": handle.workflow_id, "confirmed": bool(wait), **extra}
    return web.json_response(body, status=200 if wait else 202)


async def signal(request: web.Request) -> web.Response:
    """``POST /v1/workflows/{id}/signals/{name}``: deliver a signal."""
    handle = handle_of(request)
    name = v.name(request.match_info["name"], "signal name")
    body = await v.json_body(request, optional=("args", "wait", "request_id"), allow_empty=True)
    wait = v.seconds(body.get("wait"), "wait", default=COMMAND_WAIT_S, maximum=MAX_WAIT_S)
    args = v.json_list(body.get("args"), "args")
    given = body.get("request_id")
    request_id = None if given is None else v.workflow_id(given, "request_id")
    await handle.signal(
        name,
        *args,
        traceparent=v.traceparent(request.headers),
        wait=wait or None,
        request_id=request_id,
    )
    return _delivered(handle, wait, signal=name)


async def cancel(request: web.Request) -> web.Response:
    """``POST /v1/workflows/{id}/cancel``: ask the run to cancel (it compensates)."""
    handle = handle_of(request)
    body = await v.json_body(request, optional=("reason", "wait"), allow_empty=True)
    wait = v.seconds(body.get("wait"), "wait", default=COMMAND_WAIT_S, maximum=MAX_WAIT_S)
    reason = v.text(body.get("reason", ""), "reason", MAX_REASON_CHARS)
    await handle.cancel(reason, traceparent=v.traceparent(request.headers), wait=wait or None)
    return _delivered(handle, wait)


async def terminate(request: web.Request) -> web.Response:
    """``POST /v1/workflows/{id}/terminate``: end the run at once, no compensation."""
    handle = handle_of(request)
    body = await v.json_body(request, required=("reason",), optional=("wait",))
    wait = v.seconds(body.get("wait"), "wait", default=COMMAND_WAIT_S, maximum=MAX_WAIT_S)
    reason = v.text(body["reason"], "reason", MAX_REASON_CHARS)
    await handle.terminate(reason, traceparent=v.traceparent(request.headers), wait=wait or None)
    return _delivered(handle, wait)


async def pause(request: web.Request) -> web.Response:
    """``POST /v1/workflows/{id}/pause``: hold the run; it decides nothing until unpaused."""
    return await _pause_or_unpause(request, pausing=True)


async def unpause(request: web.Request) -> web.Response:
    """``POST /v1/workflows/{id}/unpause``: apply what the run held, and go on."""
    return await _pause_or_unpause(request, pausing=False)


async def _pause_or_unpause(request: web.Request, *, pausing: bool) -> web.Response:
    handle = handle_of(request)
    body = await v.json_body(request, optional=("reason", "operator", "wait"), allow_empty=True)
    wait = v.seconds(body.get("wait"), "wait", default=COMMAND_WAIT_S, maximum=MAX_WAIT_S)
    reason = v.text(body.get("reason", ""), "reason", MAX_REASON_CHARS)
    operator = v.text(body.get("operator", ""), "operator", MAX_OPERATOR_CHARS)
    if not operator:
        operator = f"http {request.remote or 'unknown'}"
    verb = handle.pause if pausing else handle.unpause
    await verb(reason, operator=operator, wait=wait or None)
    return _delivered(handle, wait, paused=pausing)


async def reset(request: web.Request) -> web.Response:
    """``POST /v1/workflows/{id}/reset``: a new run replays the history up to a point."""
    handle = handle_of(request)
    body = await v.json_body(
        request,
        required=("reason",),
        optional=("event_seq", "before_build", "exclude_signals", "operator", "wait"),
    )
    wait = v.seconds(
        body.get("wait"), "wait", default=RESET_WAIT_S, maximum=MAX_WAIT_S, positive=True
    )
    reason = v.text(body["reason"], "reason", MAX_REASON_CHARS)
    operator = v.text(body.get("operator", ""), "operator", MAX_OPERATOR_CHARS)
    event_seq = body.get("event_seq")
    if event_seq is not None:
        v.int64(event_seq, "event_seq (an event's seq)", minimum=1)
    before_build = body.get("before_build")
    if before_build is not None:
        before_build = v.text(before_build, "before_build", MAX_OPERATOR_CHARS)
    if event_seq is not None and before_build is not None:
        raise v.bad("give either event_seq or before_build, not both")
    exclude = body.get("exclude_signals", False)
    if not isinstance(exclude, bool):
        raise v.bad("exclude_signals must be true or false")
    new_run = await handle.reset(
        reason,
        event_seq=event_seq,
        before_build=before_build,
        exclude_signals=exclude,
        operator=operator or f"http {request.remote or 'unknown'}",
        timeout=wait,
    )
    return web.json_response({"workflow_id": handle.workflow_id, "run_id": new_run})


async def update(request: web.Request) -> web.Response:
    """``POST /v1/workflows/{id}/updates/{name}``: run an update handler, return its result."""
    handle = handle_of(request)
    name = v.name(request.match_info["name"], "update name")
    body = await v.json_body(request, optional=("args", "timeout"), allow_empty=True)
    timeout = v.seconds(
        body.get("timeout"), "timeout", default=UPDATE_TIMEOUT_S, maximum=MAX_WAIT_S,
        positive=True,
    )
    args = v.json_list(body.get("args"), "args")
    result = await handle.update(
        name, *args, timeout=timeout, traceparent=v.traceparent(request.headers)
    )
    converter = request.app[SERVICES].options.converter
    return web.json_response(
        {"workflow_id": handle.workflow_id, "update": name, "result": jsonable(result, converter)}
    )


async def query(request: web.Request) -> web.Response:
    """``GET|POST /v1/workflows/{id}/queries/{name}``: ask a query handler."""
    handle = handle_of(request, ("run_id", "timeout") if request.method == "GET" else ("run_id",))
    name = v.name(request.match_info["name"], "query name")
    if request.method == "POST":
        body = await v.json_body(request, optional=("args", "timeout"), allow_empty=True)
        args = v.json_list(body.get("args"), "args")
        timeout = v.seconds(
            body.get("timeout"), "timeout", default=QUERY_TIMEOUT_S, maximum=MAX_WAIT_S,
            positive=True,
        )
    else:
        args = []
        timeout = v.query_seconds(
            request, "timeout", default=QUERY_TIMEOUT_S, maximum=MAX_WAIT_S, positive=True
        )
    result = await handle.query(
        name, *args, timeout=timeout, traceparent=v.traceparent(request.headers)
    )
    converter = request.app[SERVICES].options.converter
    return web.json_response(
        {"workflow_id": handle.workflow_id, "query": name, "result": jsonable(result, converter)}
    )


def routes() -> list[web.RouteDef]:
    """The command routes."""
    wf = "/v1/workflows/{workflow_id}"
    return [
        web.post("/v1/workflows", start),
        web.post(f"{wf}/signals/{{name}}", signal),
        web.post(f"{wf}/cancel", cancel),
        web.post(f"{wf}/terminate", terminate),
        web.post(f"{wf}/pause", pause),
        web.post(f"{wf}/unpause", unpause),
        web.post(f"{wf}/reset", reset),
        web.post(f"{wf}/updates/{{name}}", update),
        web.get(f"{wf}/queries/{{name}}", query, allow_head=False),
        web.post(f"{wf}/queries/{{name}}", query),
    ]
