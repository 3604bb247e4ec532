"""``ctx.execute_operation``: call another service's operation and wait for its end.

Built from the public workflow API only: an activity starts the operation (the handler
answers the result at once, or an operation id); the run then waits durably for the
outcome signal that ``saga http`` sends when the handler's signed callback arrives
(and, with ``poll_every``, also reads the handler's status route that often).
A cancelled run, or a wait past ``schedule_to_close``, asks the handler to cancel.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from orchestrator.exceptions import ActivityError, ApplicationError, OperationError
from orchestrator.operations.records import (
    CANCEL_ACTIVITY,
    START_ACTIVITY,
    STATUS_ACTIVITY,
    CancelRequest,
    StartRequest,
    outcome_signal,
)
from orchestrator.retry import RetryPolicy

if TYPE_CHECKING:
    from orchestrator.workflow import WorkflowContext

__all__ = ["error_from_failure", "execute_operation"]

_START_TIMEOUT = timedelta(seconds=30)
_CANCEL_RETRY = RetryPolicy(initial=timedelta(seconds=1), maximum=timedelta(seconds=30),
                            max_attempts=10)


def error_from_failure(failure: Any) -> ApplicationError:
    """The chain of ApplicationErrors a failure record (``message``, ``type``,
    ``details``, ``cause``) stands for."""
    if not isinstance(failure, dict):
        return ApplicationError(str(failure), type="OperationFailure")
    details = failure.get("details")
    err = ApplicationError(
        str(failure.get("message", "")),
        *(details if isinstance(details, list) else ()),
        type=str(failure.get("type") or "OperationFailure"),
        non_retryable=True,
    )
    cause = failure.get("cause")
    if cause is not None:
        err.__cause__ = error_from_failure(cause)
    return err


def _optional(result_type: Any) -> Any:
    return Any if result_type is None or result_type is Any else result_type | None


async def _cancel(ctx: WorkflowContext, endpoint: str, operation: str, operation_id: str) -> None:
    """Ask the handler to cancel; best effort (a handler that stays unreachable for the
    whole retry policy does not change how this run ends)."""
    with contextlib.suppress(ActivityError):
        await ctx.execute_activity(
            CANCEL_ACTIVITY, CancelRequest(endpoint, operation, operation_id),
            start_to_close=_START_TIMEOUT, retry=_CANCEL_RETRY,
        )


async def _outcome(
    ctx: WorkflowContext,
    call: CancelRequest,
    *,
    key: str,
    left: timedelta | None,
    poll_every: timedelta | None,
    result_hint: Any,
) -> tuple[Any, ...] | None:
    """The outcome ``(state, result, failure)`` from the callback's signal, or from the
    handler's status route every ``poll_every``; None once ``left`` has passed."""
    deadline = None if left is None else ctx.now() + left
    while True:
        remaining = None if deadline is None else max(deadline - ctx.now(), timedelta(0))
        wait = remaining
        if poll_every is not None and (remaining is None or poll_every < remaining):
            wait = poll_every
        got = await ctx.wait_signal(
            outcome_signal(key), arg_types=(str, result_hint, Any), timeout=wait
        )
        if got is not None:
            return got
        if wait == remaining:
            return None
        with contextlib.suppress(ActivityError):  # unreachable now: poll again later
            polled: tuple[Any, ...] = await ctx.execute_activity(
                STATUS_ACTIVITY, call, start_to_close=_START_TIMEOUT, retry=_CANCEL_RETRY,
                result_type=tuple[str, result_hint, Any],
            )
            if polled[0] != "running":
                return polled


async def execute_operation(
    ctx: WorkflowContext,
    endpoint: str,
    operation: str,
    input: Any,
    *,
    schedule_to_close: timedelta | None,
    result_type: Any,
    retry: RetryPolicy | None,
    poll_every: timedelta | None = None,
) -> Any:
    """See :meth:`orchestrator.workflow.WorkflowContext.execute_operation`."""
    key = str(ctx.uuid4())
    info = ctx.info
    request = StartRequest(
        endpoint, operation, input, f"{info.workflow_id}/{info.run_id}/{key}",
        info.workflow_id, info.run_id, key,
    )
    began = ctx.now()
    answer_type: Any = tuple[str, str, _optional(result_type)]  # type: ignore[misc]

    async def start() -> tuple[str, str, Any]:
        try:
            answer: tuple[str, str, Any] = await ctx.execute_activity(
                START_ACTIVITY, request, start_to_close=_START_TIMEOUT, retry=retry,
                schedule_to_close=schedule_to_close, result_type=answer_type,
            )
        except ActivityError as exc:
            raise OperationError(
                f"operation {endpoint}/{operation} could not start",
                endpoint=endpoint, operation=operation, operation_id="", state="failed",
            ) from exc
        return answer

    try:
        state, operation_id, result = await start()
    except asyncio.CancelledError:
        # The start may have reached the handler: ask again with the same request id
        # (the handler answers with the operation it started, or starts it now), then
        # cancel what it names.
        state, operation_id, _ = await start()
        if state == "running":
            await _cancel(ctx, endpoint, operation, operation_id)
        raise
    if state == "succeeded":
        return result
    left = None
    if schedule_to_close is not None:
        left = max(schedule_to_close - (ctx.now() - began), timedelta(0))
    call = CancelRequest(endpoint, operation, operation_id)
    try:
        got = await _outcome(ctx, call, key=key, left=left, poll_every=poll_every,
                             result_hint=_optional(result_type))
    except asyncio.CancelledError:
        await _cancel(ctx, endpoint, operation, operation_id)
        raise
    if got is None:
        await _cancel(ctx, endpoint, operation, operation_id)
        raise OperationError(
            f"operation {endpoint}/{operation} ({operation_id}) did not end within "
            f"{schedule_to_close}",
            endpoint=endpoint, operation=operation, operation_id=operation_id, state="timed_out",
        )
    state, result, failure = got
    if state == "succeeded":
        return result
    error = OperationError(
        f"operation {endpoint}/{operation} ({operation_id}) {state}",
        endpoint=endpoint, operation=operation, operation_id=operation_id, state=state,
    )
    raise error from error_from_failure(failure)
