"""Operation routes (docs/operations-api.md).

The handling side: ``POST /v1/operations/{service}/{operation}`` starts the mapped
workflow under the built-in handler workflow (its id derived from the request id, so
a retried start is one run) and answers 201 with the operation id;
``GET .../{operation_id}`` reads its state; ``POST .../{operation_id}/cancel`` cancels
it. These need tokens like every route (start and cancel an admin token).

The calling side: ``POST /v1/operation-callbacks`` takes a handler's signed callback
and delivers the outcome to the waiting run as a signal. It is authenticated by the
body's HMAC signature and the callback token's MAC, both under the secret of the
endpoint the token names, not by a bearer token: a handler needs no admin token of
its callers.
"""

from __future__ import annotations

from typing import Any, Final

from aiohttp import web

from orchestrator.exceptions import (
    ApplicationError,
    ReplyTimeoutError,
    WorkflowFailedError,
    WorkflowNotFoundError,
)
from orchestrator.http import validation as v
from orchestrator.http.errors import ApiError
from orchestrator.http.limits import MAX_WAIT_S
from orchestrator.http.services import SERVICES
from orchestrator.operations.config import OperationsConfig
from orchestrator.operations.records import (
    HANDLER_WORKFLOW,
    STATES,
    HandlerInput,
    Outcome,
    operation_id_for,
    outcome_signal,
)
from orchestrator.operations.signing import (
    SIGNATURE_HEADER,
    CallbackToken,
    InvalidCallbackError,
    signature_valid,
)
from orchestrator.serde.records import IdReusePolicy

__all__ = ["CALLBACK_PATH", "routes"]

CALLBACK_PATH: Final = "/v1/operation-callbacks"
_WAIT_S: Final = 10.0
_MAX_REQUEST_ID_CHARS: Final = 1000
_MAX_URL_CHARS: Final = 2000


def _config(request: web.Request) -> OperationsConfig:
    return request.app[SERVICES].options.operations


def _handled(request: web.Request) -> tuple[str, str, str, str]:
    """service, operation, workflow type and task queue, or 404."""
    service, operation = request.match_info["service"], request.match_info["operation"]
    handler = _config(request).handler_for(service, operation)
    if handler is None:
        raise ApiError(404, "operation_not_found", f"no operation {service}/{operation} here")
    return service, operation, handler.workflow, handler.task_queue


async def start(request: web.Request) -> web.Response:
    """``POST /v1/operations/{service}/{operation}``: ``{"input", "request_id",
    "callback_url", "callback_token"}`` -> 201 ``{"operation_id", "state": "running"}``."""
    v.check_query(request, ())
    service, operation, workflow_type, queue = _handled(request)
    body = await v.json_body(
        request, required=("request_id", "callback_url", "callback_token"), optional=("input",)
    )
    request_id = v.text(body["request_id"], "request_id", _MAX_REQUEST_ID_CHARS)
    callback_url = v.text(body["callback_url"], "callback_url", _MAX_URL_CHARS)
    token = v.text(body["callback_token"], "callback_token", _MAX_URL_CHARS * 2)
    if not request_id:
        raise v.bad("request_id must not be empty")
    if _config(request).caller_for(callback_url) is None:
        raise ApiError(403, "callback_not_allowed",
                       "callback_url is not in this deployment's callers allow-list")
    operation_id = operation_id_for(service, operation, request_id)
    client = request.app[SERVICES].kafka.require()
    try:
        await client.start(
            HANDLER_WORKFLOW,
            HandlerInput(service, operation, workflow_type, queue, body.get("input"),
                         callback_url, token),
            id=operation_id, task_queue=queue, id_reuse_policy=IdReusePolicy.REJECT_DUPLICATE,
            memo={"operation": f"{service}/{operation}"}, wait_started=_WAIT_S,
        )
    except ApplicationError as exc:
        if exc.type != "WorkflowAlreadyStarted":
            raise
    return web.json_response({"operation_id": operation_id, "state": "running"}, status=201)


def _outcome_json(operation_id: str, outcome: Outcome) -> dict[str, Any]:
    out: dict[str, Any] = {"operation_id": operation_id, "state": outcome.state}
    if outcome.state == "succeeded":
        out["result"] = outcome.result
    else:
        out["failure"] = outcome.failure
    return out


async def _own_handle(request: web.Request) -> tuple[Any, Any]:
    """The handler run of the path's operation, and its description, or 404."""
    service, operation, _, _ = _handled(request)
    operation_id = request.match_info["operation_id"]
    handle = request.app[SERVICES].kafka.require().get_handle(operation_id, result_type=Outcome)
    try:
        described = await handle.describe()
    except WorkflowNotFoundError:
        described = None
    if (
        described is None
        or described.workflow_type != HANDLER_WORKFLOW
        or described.memo.get("operation") != f"{service}/{operation}"
    ):
        raise ApiError(404, "operation_not_found", f"no operation {operation_id!r}")
    return handle, described


async def status(request: web.Request) -> web.Response:
    """``GET .../{operation_id}[?wait=s]``: ``{"operation_id", "state", "result" |
    "failure"}``; with ``wait``, a running operation is answered when it ends or after
    ``wait`` seconds (still ``running``), whichever comes first (a long poll)."""
    v.check_query(request, ("wait",))
    wait = v.query_seconds(request, "wait", default=0.0, maximum=MAX_WAIT_S)
    handle, described = await _own_handle(request)
    operation_id = request.match_info["operation_id"]
    if described.is_open and wait <= 0:
        return web.json_response({"operation_id": operation_id, "state": "running"})
    try:
        outcome = await handle.result(timeout=wait if described.is_open else _WAIT_S)
    except ReplyTimeoutError:
        if not described.is_open:
            raise
        return web.json_response({"operation_id": operation_id, "state": "running"})
    except WorkflowFailedError as exc:  # the handler run itself was terminated or failed
        outcome = Outcome("failed", failure={"message": str(exc), "type": "HandlerRunFailed"})
    return web.json_response(_outcome_json(operation_id, outcome))


async def cancel(request: web.Request) -> web.Response:
    """``POST .../{operation_id}/cancel`` -> 202 ``{"operation_id", "state"}``; 409
    ``workflow_closed`` once the operation has ended."""
    v.check_query(request, ())
    handle, _ = await _own_handle(request)
    await handle.cancel("operation cancel requested", wait=_WAIT_S)
    operation_id = request.match_info["operation_id"]
    return web.json_response({"operation_id": operation_id, "state": "running"}, status=202)


def _unauthorized(reason: str) -> ApiError:
    return ApiError(401, "unauthorized", f"callback refused: {reason}")


async def callback(request: web.Request) -> web.Response:
    """``POST /v1/operation-callbacks``: a handler's signed outcome for a run waiting
    here; 200 once the run's shard took the signal."""
    v.check_query(request, ())
    if not request.headers.get(SIGNATURE_HEADER):
        raise _unauthorized(f"no {SIGNATURE_HEADER} header")
    raw = await request.read()
    body = await v.json_body(
        request, required=("callback_token", "state"),
        optional=("operation_id", "result", "failure"),
    )
    try:
        token, token_body, mac = CallbackToken.read(body["callback_token"])
    except InvalidCallbackError as exc:
        raise _unauthorized(str(exc)) from None
    endpoint = _config(request).endpoints.get(token.endpoint)
    if endpoint is None or not CallbackToken.verify(endpoint.secret, token_body, mac):
        raise _unauthorized("the callback token does not verify")
    if not signature_valid(endpoint.secret, raw, request.headers.get(SIGNATURE_HEADER)):
        raise _unauthorized(f"the {SIGNATURE_HEADER} header does not verify")
    state = body["state"]
    if state not in STATES:
        raise v.bad(f"state must be one of {', '.join(STATES)}")
    handle = request.app[SERVICES].kafka.require().get_handle(token.workflow_id, token.run_id)
    await handle.signal(
        outcome_signal(token.operation_key), state, body.get("result"), body.get("failure"),
        wait=_WAIT_S,
    )
    return web.json_response({"delivered": True, "workflow_id": token.workflow_id})


def routes() -> list[web.RouteDef]:
    """The operation routes (both sides)."""
    base = "/v1/operations/{service}/{operation}"
    return [
        web.post(base, start),
        web.get(base + "/{operation_id}", status, allow_head=False),
        web.post(base + "/{operation_id}/cancel", cancel),
        web.post(CALLBACK_PATH, callback),
    ]


