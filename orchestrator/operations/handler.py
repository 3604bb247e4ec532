"""The built-in handler workflow ``saga.operation.handler``: one run per operation that
this deployment handles (its workflow id is the operation id).

It runs the mapped workflow as a child (closed with REQUEST_CANCEL, so the child never
outlives it), waits for its end, and posts the signed outcome to the caller's callback
URL with the ``saga.operation.callback`` activity, retried on network errors and 5xx
(for a caller on Kafka, the activity sends a signal command instead). A run started
over Kafka first asks the ``saga.operation.resolve`` activity which workflow to run,
since its caller does not know.
A cancel of this run (``POST .../cancel``) is passed on to the child; the outcome then
says ``cancelled`` (or what the child returned, if it caught the cancellation). The
run's result is the :class:`Outcome`, which the status route reads.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace
from datetime import timedelta
from typing import Any

from orchestrator import workflow
from orchestrator.exceptions import ActivityError, ChildWorkflowError
from orchestrator.operations.records import (
    CALLBACK_ACTIVITY,
    HANDLER_WORKFLOW,
    RESOLVE_ACTIVITY,
    CallbackRequest,
    HandlerInput,
    Outcome,
)

__all__ = ["CALLBACK_RETRY", "OperationHandlerWorkflow", "failure_of", "outcome_of"]

CALLBACK_RETRY = workflow.RetryPolicy(
    initial=timedelta(seconds=1), maximum=timedelta(minutes=1), expire_after=timedelta(days=1)
)
_MAX_CAUSES = 8


def failure_of(exc: BaseException | None, depth: int = 0) -> dict[str, Any] | None:
    """``{"message", "type", "cause"?}`` for an error and its cause chain."""
    if exc is None or depth >= _MAX_CAUSES:
        return None
    kind = getattr(exc, "type", None) or type(exc).__name__
    out: dict[str, Any] = {"message": str(exc) or kind, "type": kind}
    cause = failure_of(exc.__cause__, depth + 1)
    if cause is not None:
        out["cause"] = cause
    return out


def outcome_of(exc: ChildWorkflowError) -> Outcome:
    """The outcome of a child that did not complete: cancelled, or failed."""
    cause = exc.cause
    if isinstance(cause, asyncio.CancelledError):
        return Outcome("cancelled", failure={"message": "the operation was cancelled",
                                             "type": "CancelledError"})
    return Outcome("failed", failure=failure_of(cause if cause is not None else exc))


@workflow.defn(name=HANDLER_WORKFLOW)
class OperationHandlerWorkflow:
    """Run the operation's workflow, then call the caller back."""

    @workflow.run
    async def run(self, ctx: workflow.WorkflowContext, req: HandlerInput) -> Outcome:
        resolved = req if req.workflow else await self._resolved(ctx, req)
        if isinstance(resolved, Outcome):
            outcome = resolved
        else:
            outcome = await self._outcome(ctx, resolved)
        callback = CallbackRequest(req.callback_url, req.callback_token, ctx.info.workflow_id,
                                   outcome)
        try:
            await self._call_back(ctx, callback)
        except asyncio.CancelledError:
            # a cancel that comes once the operation has ended changes nothing: the
            # caller still gets the outcome
            await self._call_back(ctx, callback)
        return outcome

    async def _call_back(self, ctx: workflow.WorkflowContext, callback: CallbackRequest) -> None:
        # a caller that is gone or refuses: the outcome stays readable by status
        with contextlib.suppress(ActivityError):
            await ctx.execute_activity(
                CALLBACK_ACTIVITY, callback, start_to_close=timedelta(seconds=30),
                retry=CALLBACK_RETRY,
            )

    async def _resolved(
        self, ctx: workflow.WorkflowContext, req: HandlerInput
    ) -> HandlerInput | Outcome:
        """``req`` with the workflow and queue this deployment maps the operation to (a
        start over Kafka names neither), or the outcome of a refusal."""
        try:
            found: list[str] = await ctx.execute_activity(
                RESOLVE_ACTIVITY, req, start_to_close=timedelta(seconds=30),
                retry=CALLBACK_RETRY, result_type=list[str],
            )
        except ActivityError as exc:
            return Outcome("failed", failure=failure_of(exc.__cause__ or exc))
        except asyncio.CancelledError:
            return Outcome("cancelled", failure={"message": "the operation was cancelled",
                                                 "type": "CancelledError"})
        return replace(req, workflow=found[0], task_queue=found[1])

    async def _outcome(self, ctx: workflow.WorkflowContext, req: HandlerInput) -> Outcome:
        try:
            child = await ctx.start_child_workflow(
                req.workflow, req.input, id=f"{ctx.info.workflow_id}-run",
                task_queue=req.task_queue,
                parent_close_policy=workflow.ParentClosePolicy.REQUEST_CANCEL,
            )
        except ChildWorkflowError as exc:
            return outcome_of(exc)
        except asyncio.CancelledError:
            return Outcome("cancelled", failure={"message": "the operation was cancelled",
                                                 "type": "CancelledError"})
        try:
            return Outcome("succeeded", await child.result())
        except ChildWorkflowError as exc:
            return outcome_of(exc)
        except asyncio.CancelledError:
            child.cancel("the operation was cancelled")
        try:
            return Outcome("succeeded", await child.result())
        except ChildWorkflowError as exc:
            return outcome_of(exc)
