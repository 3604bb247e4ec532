"""Errors as JSON: ``{"error": <code>, "message": <text>}`` with a fitting status.

:class:`ApiError` is raised by handlers; :func:`from_client_error` maps what the
client raises (reply timeouts, refusals carried in replies, a missing snapshot) to
HTTP statuses, and :func:`error_middleware` turns every failure into a JSON body.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web

from orchestrator.client import ReplyTimeoutError, WorkflowNotFoundError
from orchestrator.exceptions import (
    ApplicationError,
    OrchestratorError,
    PayloadConversionError,
    QueryError,
    UpdateRejectedError,
)
from orchestrator.http.limits import MAX_BODY_BYTES
from orchestrator.serde.errors import RecordEncodeError

__all__ = ["ApiError", "error_middleware", "error_response", "from_client_error"]

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# error type carried in a shard's refusal -> (HTTP status, API error code)
_REFUSALS: Mapping[str, tuple[int, str]] = {
    "WorkflowNotFound": (404, "workflow_not_found"),
    "WorkflowClosed": (409, "workflow_closed"),
    "WorkflowAlreadyStarted": (409, "already_started"),
    "WorkflowParked": (409, "workflow_parked"),
    "CommandRejected": (422, "command_rejected"),
    "ResetRefused": (409, "reset_refused"),
    "ActivityNotRunning": (409, "activity_not_running"),
    "TaskTokenRejected": (422, "task_token_rejected"),
}
_AIOHTTP_CODES: Mapping[int, str] = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
}


class ApiError(Exception):
    """An HTTP error with a stable ``code`` and a message for humans."""

    def __init__(
        self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


def error_response(error: ApiError) -> web.Response:
    """The JSON response for ``error``."""
    return web.json_response(
        {"error": error.code, "message": error.message},
        status=error.status,
        headers=error.headers,
    )


def _refusal_type(exc: BaseException) -> str | None:
    """The error type a shard's refusal carried (the ApplicationError in the chain)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ApplicationError):
            return seen.type
        seen = seen.__cause__
    return None


def _unsendable(exc: PayloadConversionError | RecordEncodeError) -> ApiError:
    """A request whose values cannot become a command: nothing was sent."""
    if isinstance(exc, PayloadConversionError):
        return ApiError(400, "bad_request", f"value cannot be converted: {exc}")
    # the wire format names its size limit ("over the N-byte limit") when that is why
    if "-byte limit" in str(exc):
        return ApiError(413, "payload_too_large", f"the command would be too large: {exc}")
    return ApiError(400, "bad_request", f"a value does not fit the command's record: {exc}")


def from_client_error(exc: Exception) -> ApiError | None:
    """The HTTP error for an exception the client raised; None if it is not one."""
    if isinstance(exc, ReplyTimeoutError):
        return ApiError(504, "timeout", f"{exc} (the command was sent and may still take effect)")
    if isinstance(exc, WorkflowNotFoundError):
        return ApiError(404, "workflow_not_found", str(exc))
    if isinstance(exc, PayloadConversionError | RecordEncodeError):
        return _unsendable(exc)
    if isinstance(exc, UpdateRejectedError | QueryError | ApplicationError):
        status, code = _REFUSALS.get(_refusal_type(exc) or "", (422, "rejected"))
        if isinstance(exc, QueryError) and code == "rejected":
            code = "query_failed"
        elif isinstance(exc, UpdateRejectedError) and code == "rejected":
            code = "update_rejected"
        return ApiError(status, code, str(exc))
    if isinstance(exc, OrchestratorError):
        return ApiError(422, "rejected", str(exc))
    return None


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure as a JSON error body; unexpected ones are logged, never echoed."""
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _AIOHTTP_CODES.get(exc.status, "http_error")
        message = exc.text or exc.reason
        if exc.status == 413:
            message = f"request body too large (limit {MAX_BODY_BYTES} bytes)"
        headers = {k: v for k, v in exc.headers.items() if k in ("Allow", "Retry-After")}
        return error_response(ApiError(exc.status, code, message, headers))
    except Exception as exc:
        mapped = from_client_error(exc)
        if mapped is not None:
            return error_response(mapped)
        log.exception("%s %s failed", request.method, request.path)
        return error_response(ApiError(500, "internal", "internal error (see the server log)"))
