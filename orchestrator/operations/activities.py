"""The built-in operation activities: start, cancel and read an operation on a
configured endpoint (the calling side), and post a signed callback (the handling side).

Register them in the activity worker of the task queue that runs the sagas calling
operations, or the handler workflows (on the handling side, the task queue that a
Kafka endpoint of a caller names, too)::

    ActivityWorker(config, "billing", [*my_activities, *operation_activities(ops)])

They call only what the configuration names: endpoints by name, callback URLs that
match the allow-list (``callers``), so workflow input cannot point them anywhere else.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx

from orchestrator import activity
from orchestrator.connectors.http import error_for_exception, error_for_response
from orchestrator.exceptions import ApplicationError
from orchestrator.operations import kafka_binding
from orchestrator.operations.config import Endpoint, OperationsConfig
from orchestrator.operations.records import (
    CALLBACK_ACTIVITY,
    CANCEL_ACTIVITY,
    RESOLVE_ACTIVITY,
    START_ACTIVITY,
    STATES,
    STATUS_ACTIVITY,
    CallbackRequest,
    CancelRequest,
    HandlerInput,
    StartRequest,
)
from orchestrator.operations.signing import SIGNATURE_HEADER, CallbackToken, sign_body

__all__ = ["callback_body", "operation_activities", "operation_url"]

_TIMEOUT_S = 20.0


def operation_url(endpoint: Endpoint, operation: str, *tail: str) -> str:
    """``{url}/v1/operations/{service}/{operation}[/tail...]``, each part quoted."""
    parts = [endpoint.service, operation, *tail]
    return f"{endpoint.url}/v1/operations/" + "/".join(quote(p, safe="") for p in parts)


def callback_body(req: CallbackRequest) -> bytes:
    """The JSON body of a callback (the bytes that are signed)."""
    body: dict[str, Any] = {
        "callback_token": req.callback_token,
        "operation_id": req.operation_id,
        "state": req.outcome.state,
    }
    if req.outcome.state == "succeeded":
        body["result"] = req.outcome.result
    else:
        body["failure"] = req.outcome.failure
    return json.dumps(body, separators=(",", ":")).encode()


def _protocol(message: str) -> ApplicationError:
    return ApplicationError(message, type="OperationProtocol")


class _Http:
    """The configuration, and one request at a time with classified errors."""

    def __init__(self, config: OperationsConfig, timeout_s: float) -> None:
        self.config = config
        self.timeout_s = timeout_s

    def endpoint(self, name: str) -> Endpoint:
        found = self.config.endpoints.get(name)
        if found is None:
            raise ApplicationError(f"operation endpoint {name!r} is not configured",
                                   type="OperationConfigError", non_retryable=True)
        return found

    async def send(
        self, method: str, url: str, *, content: bytes | None = None,
        headers: dict[str, str], token: str = "",
    ) -> httpx.Response:
        """The response (any status); a network failure as a classified error."""
        if token:
            headers = {**headers, "Authorization": f"Bearer {token}"}
        if content is not None:
            headers = {**headers, "Content-Type": "application/json"}
        async with httpx.AsyncClient(timeout=self.timeout_s, follow_redirects=False) as http:
            request = http.build_request(method, url, content=content, headers=headers)
            try:
                return await http.send(request)
            except httpx.HTTPError as exc:
                raise error_for_exception(
                    exc, request=request, secrets=[token] if token else []
                ) from None


def _check(response: httpx.Response, token: str = "") -> Any:
    """The JSON of a 2xx answer; a classified error for other statuses."""
    error = error_for_response(response, secrets=[token] if token else [])
    if error is not None:
        raise error
    try:
        return response.json()
    except ValueError:
        raise _protocol(f"the answer ({response.status_code}) is not JSON") from None


def _start(http: _Http) -> Callable[..., Any]:
    @activity.defn(name=START_ACTIVITY)
    async def start_operation(req: StartRequest) -> list[Any]:
        """POST the start; ``[state, operation_id, result]``."""
        ep = http.endpoint(req.endpoint)
        token = CallbackToken(req.workflow_id, req.run_id, req.operation_key, req.endpoint)
        callback = http.config.callback_for(ep)
        if ep.on_kafka:
            return await kafka_binding.start(
                ep, req.operation, req.input, request_id=req.request_id, callback=callback,
                token=token.encode(ep.secret),
            )
        body = {
            "input": req.input,
            "request_id": req.request_id,
            "callback_url": callback,
            "callback_token": token.encode(ep.secret),
        }
        response = await http.send(
            "POST", operation_url(ep, req.operation), headers={}, token=ep.token,
            content=json.dumps(body, separators=(",", ":")).encode(),
        )
        answer = _check(response, ep.token)
        if not isinstance(answer, dict):
            raise _protocol("the answer to a start is not a JSON object")
        if response.status_code == 200:
            return ["succeeded", str(answer.get("operation_id", "")), answer.get("result")]
        operation_id = answer.get("operation_id")
        if response.status_code in (201, 202) and isinstance(operation_id, str) and operation_id:
            return ["running", operation_id, None]
        raise _protocol(f"unexpected answer to an operation start: {response.status_code}")

    return start_operation


def _cancel(http: _Http) -> Callable[..., Any]:
    @activity.defn(name=CANCEL_ACTIVITY)
    async def cancel_operation(req: CancelRequest) -> None:
        """POST the cancel; an operation that has ended already (404, 409) is fine."""
        ep = http.endpoint(req.endpoint)
        if ep.on_kafka:
            await kafka_binding.cancel(ep, req)
            return
        response = await http.send(
            "POST", operation_url(ep, req.operation, req.operation_id, "cancel"),
            content=b"{}", headers={}, token=ep.token,
        )
        if response.status_code not in (404, 409):
            _check(response, ep.token)

    return cancel_operation


def _status(http: _Http) -> Callable[..., Any]:
    @activity.defn(name=STATUS_ACTIVITY)
    async def operation_status(req: CancelRequest) -> list[Any]:
        """GET the status; ``[state, result, failure]`` (an unknown operation: failed)."""
        ep = http.endpoint(req.endpoint)
        if ep.on_kafka:
            return await kafka_binding.status(ep, req)
        response = await http.send(
            "GET", operation_url(ep, req.operation, req.operation_id), headers={},
            token=ep.token,
        )
        if response.status_code == 404:
            return ["failed", None, {"message": f"the handler knows no operation "
                                                f"{req.operation_id!r}", "type": "NotFound"}]
        answer = _check(response, ep.token)
        state = answer.get("state") if isinstance(answer, dict) else None
        if state not in ("running", *STATES):
            raise _protocol(f"unexpected operation state {state!r}")
        return [state, answer.get("result"), answer.get("failure")]

    return operation_status


def _callback(http: _Http) -> Callable[..., Any]:
    @activity.defn(name=CALLBACK_ACTIVITY)
    async def send_callback(req: CallbackRequest) -> None:
        """POST the signed outcome to the caller's callback URL (allow-listed)."""
        caller = http.config.caller_for(req.url)
        if caller is None:
            raise ApplicationError(
                f"callback URL {req.url!r} is not in the callers allow-list",
                type="OperationConfigError", non_retryable=True,
            )
        if caller.topic_prefix:
            await kafka_binding.call_back(caller, req)
            return
        body = callback_body(req)
        response = await http.send(
            "POST", req.url, content=body,
            headers={SIGNATURE_HEADER: sign_body(caller.secret, body)},
        )
        error = error_for_response(response)
        if error is not None:
            raise error

    return send_callback


def _resolve(http: _Http) -> Callable[..., Any]:
    @activity.defn(name=RESOLVE_ACTIVITY)
    async def resolve_operation(req: HandlerInput) -> list[str]:
        """``[workflow, task_queue]`` that ``service/operation`` starts here, for a
        handler run started over Kafka; refused (not retried) when the operation is not
        handled here or the caller is not in the allow-list."""
        handler = http.config.handler_for(req.service, req.operation)
        if handler is None:
            raise ApplicationError(f"no operation {req.service}/{req.operation} here",
                                   type="OperationNotFound", non_retryable=True)
        if http.config.caller_for(req.callback_url) is None:
            raise ApplicationError("the callback is not in this deployment's callers "
                                   "allow-list", type="CallbackNotAllowed", non_retryable=True)
        return [handler.workflow, handler.task_queue]

    return resolve_operation


def operation_activities(
    config: OperationsConfig, *, timeout_s: float = _TIMEOUT_S
) -> list[Callable[..., Any]]:
    """The built-in activities (start, cancel, status, callback, resolve), bound to
    ``config``."""
    http = _Http(config, timeout_s)
    return [_start(http), _cancel(http), _status(http), _callback(http), _resolve(http)]
