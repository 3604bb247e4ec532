"""Mapping between Python exceptions and recorded :class:`Failure` records."""

from __future__ import annotations

import asyncio
import traceback
from typing import Any

from orchestrator.converter import DataConverter, JsonPayloadConverter
from orchestrator.engine import events as ev
from orchestrator.engine.events import Failure
from orchestrator.exceptions import (
    ActivityError,
    ActivityTimeoutError,
    ApplicationError,
    ChildWorkflowError,
    CompensationError,
    FailureError,
    OrchestratorError,
    PayloadConversionError,
)

__all__ = ["closing_failure", "from_failure", "timeout_failure", "to_failure"]

_MAX_STACK = 4000
TIMEOUT_TYPE = "ActivityTimeoutError"
_JSON = JsonPayloadConverter()


def _stack(exc: BaseException) -> str:
    if exc.__traceback__ is None:
        return ""
    return "".join(traceback.format_exception(exc))[-_MAX_STACK:]


def _details(conv: DataConverter, details: tuple[Any, ...]) -> list[Any]:
    try:
        return conv.to_payloads(details)
    except PayloadConversionError:
        return [conv.to_payload(repr(d)) for d in details]


def to_failure(exc: BaseException, conv: DataConverter, *, with_stack: bool = True) -> Failure:
    """Record ``exc`` (and its cause chain) as a Failure."""
    cause = exc.__cause__ if exc.__cause__ is not None else None
    rec_cause = to_failure(cause, conv, with_stack=False) if cause is not None else None
    stack = _stack(exc) if with_stack else ""
    if not stack and isinstance(exc, FailureError):
        stack = exc.remote_stack_trace  # recorded where it was raised, in another process
    if isinstance(exc, ApplicationError):
        delay = exc.next_retry_delay
        return Failure(
            message=exc.message,
            type=exc.type,
            non_retryable=exc.non_retryable,
            stack_trace=stack,
            details=_details(conv, exc.details),
            next_retry_delay_ms=round(delay.total_seconds() * 1000) if delay else None,
            cause=rec_cause,
        )
    if isinstance(exc, ActivityTimeoutError):
        return timeout_failure(exc.timeout_type)
    if isinstance(exc, CompensationError):
        return Failure(
            message=str(exc),
            type="CompensationError",
            non_retryable=True,
            stack_trace=stack,
            cause=to_failure(exc.original, conv, with_stack=False),
        )
    if isinstance(exc, asyncio.CancelledError):
        return Failure(message=str(exc) or "cancelled", type="CancelledError", non_retryable=True)
    retryable = getattr(type(exc), "retryable", True)
    return Failure(
        message=str(exc),
        type=type(exc).__name__,
        non_retryable=isinstance(exc, OrchestratorError) and retryable is False,
        stack_trace=stack,
        cause=rec_cause,
    )


def timeout_failure(timeout_type: str) -> Failure:
    """The Failure recorded when an attempt times out."""
    return Failure(
        message=f"activity timed out ({timeout_type})",
        type=TIMEOUT_TYPE,
        details=[_JSON.encode(timeout_type)],
    )


def from_failure(f: Failure, conv: DataConverter) -> BaseException:
    """Rebuild an exception from a Failure (ApplicationError for user errors)."""
    exc: BaseException
    if f.type == TIMEOUT_TYPE:
        kind = _JSON.decode(f.details[0], str) if f.details else "unknown"
        exc = ActivityTimeoutError(kind)
    elif f.type == "CancelledError":
        exc = asyncio.CancelledError(f.message)
    elif f.type == "CompensationError" and f.cause is not None:
        # the compensations' own errors are in the run's last event, not in the chain
        original = from_failure(f.cause, conv)
        exc = CompensationError(original, [])
        exc.remote_stack_trace = f.stack_trace
        return exc
    else:
        details: list[Any] = []
        for p in f.details:
            try:
                details.append(conv.from_payload(p))
            except PayloadConversionError:
                details.append(p)
        exc = ApplicationError(
            f.message, *details, type=f.type, non_retryable=f.non_retryable
        )
    if isinstance(exc, FailureError):
        exc.remote_stack_trace = f.stack_trace
    if f.cause is not None:
        exc.__cause__ = from_failure(f.cause, conv)
    return exc


def activity_error(
    f: Failure, conv: DataConverter, *, activity_type: str, activity_seq: int, attempt: int
) -> ActivityError:
    """The ActivityError workflow code sees for a final activity failure."""
    err = ActivityError(
        f"activity {activity_type!r} (seq {activity_seq}) failed after {attempt} "
        f"attempt(s): {f.type}: {f.message}",
        activity_type=activity_type,
        activity_seq=activity_seq,
        attempt=attempt,
    )
    err.__cause__ = from_failure(f, conv)
    return err


def child_error(
    f: Failure, conv: DataConverter, *, workflow_type: str, workflow_id: str
) -> ChildWorkflowError:
    """The ChildWorkflowError workflow code sees when a child did not complete."""
    err = ChildWorkflowError(
        f"child workflow {workflow_type!r} ({workflow_id}) failed: {f.type}: {f.message}",
        workflow_type=workflow_type,
        workflow_id=workflow_id,
    )
    err.__cause__ = from_failure(f, conv)
    return err


def closing_failure(last: ev.Event) -> Failure:
    """Why a run that ended with ``last`` did not complete, as its parent sees it.

    The recorded failure when there is one; cancellation and termination, which
    record none, become ``CancelledError`` and ``Terminated`` failures. A run whose
    compensation failed ends with a ``CompensationError`` failure caused by the error
    that started compensating, so a caller can tell it from a plain failure.
    """
    if isinstance(last, ev.WorkflowFailed):
        return last.failure
    if isinstance(last, ev.WorkflowCompensationFailed):
        count = len(last.compensation_failures)
        return Failure(
            message=f"compensation failed ({count} error(s)) after: {last.failure.message}",
            type="CompensationError",
            non_retryable=True,
            cause=last.failure,
        )
    if isinstance(last, ev.WorkflowCancelled):
        return Failure(message="workflow cancelled", type="CancelledError", non_retryable=True)
    if isinstance(last, ev.WorkflowTimedOut):
        return Failure(
            message="workflow execution timed out", type="TimedOut", non_retryable=True
        )
    reason = getattr(last, "reason", "")
    return Failure(message=f"workflow terminated: {reason}", type="Terminated", non_retryable=True)
