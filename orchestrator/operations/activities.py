"""The built-in operation activities: start and cancel an operation on a configured
endpoint (the calling side), and post a signed callback (the handling side).

Register them in the activity worker of the task queue that runs the sagas calling
operations, or the handler workflows::

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
from orchestrator.operations.config import Endpoint, OperationsConfig
from orchestrator.operations.records import (
    CALLBACK_ACTIVITY,
    CANCEL_ACTIVITY,
    START_ACTIVITY,
    CallbackRequest,
    CancelRequest,
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


def _refuse(message: str) -> ApplicationError:
    return ApplicationError(message, type="OperationConfigError", non_retryable=True)


def operation_activities(
    config: OperationsConfig, *, timeout_s: float = _TIMEOUT_S
) -> list[Callable[..., Any]]:
    """The three built-in activities, bound to ``config``."""

    def endpoint_of(name: str) -> Endpoint:
        found = config.endpoints.get(name)
        if found is None:
            raise _refuse(f"operation endpoint {name!r} is not configured")
        return found

    async def post(url: str, content: bytes, headers: dict[str, str], secrets: list[str]
                   ) -> httpx.Response:
        headers = {"Content-Type": "application/json", **headers}
        async with httpx.AsyncClient(timeout=timeout_s, follow_redirects=False) as http:
            request = http.build_request("POST", url, content=content, headers=headers)
            try:
                response = await http.send(request)
            except httpx.HTTPError as exc:
                raise error_for_exception(exc, request=request, secrets=secrets) from None
        return response

    @activity.defn(name=START_ACTIVITY)
    async def start_operation(req: StartRequest) -> list[Any]:
        """POST the start; ``[state, operation_id, result]``."""
        ep = endpoint_of(req.endpoint)
        token = CallbackToken(req.workflow_id, req.run_id, req.operation_key, req.endpoint)
        body = {
            "input": req.input,
            "request_id": req.request_id,
            "callback_url": config.callback_url,
            "callback_token": token.encode(ep.secret),
        }
        response = await post(
            operation_url(ep, req.operation),
            json.dumps(body, separators=(",", ":")).encode(),
            {"Authorization": f"Bearer {ep.token}"},
            [ep.token],
        )
        error = error_for_response(response, secrets=[ep.token])
        if error is not None:
            raise error
        try:
            answer = response.json()
        except ValueError:
            raise ApplicationError("the handler's answer is not JSON", type="OperationProtocol"
                                   ) from None
        if response.status_code == 200 and isinstance(answer, dict):
            return ["succeeded", str(answer.get("operation_id", "")), answer.get("result")]
        if response.status_code in (201, 202) and isinstance(answer, dict) and isinstance(
            answer.get("operation_id"), str
        ) and answer["operation_id"]:
            return ["running", answer["operation_id"], None]
        raise ApplicationError(
            f"unexpected answer to an operation start: {response.status_code}",
            type="OperationProtocol",
        )

    @activity.defn(name=CANCEL_ACTIVITY)
    async def cancel_operation(req: CancelRequest) -> None:
        """POST the cancel; an operation that has ended already (404, 409) is fine."""
        ep = endpoint_of(req.endpoint)
        response = await post(
            operation_url(ep, req.operation, req.operation_id, "cancel"), b"{}",
            {"Authorization": f"Bearer {ep.token}"}, [ep.token],
        )
        if response.status_code in (404, 409):
            return
        error = error_for_response(response, secrets=[ep.token])
        if error is not None:
            raise error

    @activity.defn(name=CALLBACK_ACTIVITY)
    async def send_callback(req: CallbackRequest) -> None:
        """POST the signed outcome to the caller's callback URL (allow-listed)."""
        caller = config.caller_for(req.url)
        if caller is None:
            raise _refuse(f"callback URL {req.url!r} is not in the callers allow-list")
        body = callback_body(req)
        response = await post(req.url, body, {SIGNATURE_HEADER: sign_body(caller.secret, body)},
                              [])
        error = error_for_response(response)
        if error is not None:
            raise error

    return [start_operation, cancel_operation, send_callback]
