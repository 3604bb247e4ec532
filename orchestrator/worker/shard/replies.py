"""Replies a shard writes to ``<prefix>.replies``, built from the command they answer.

Pure functions. A reply's correlation id is the command's ``request_id`` (or
``update_id`` / ``query_id``), else its CloudEvents id; the RESULT reply of a closed
run has ``result/<workflow_id>``.
"""

from __future__ import annotations

import logging

from orchestrator.engine.events import Failure
from orchestrator.serde import records as rec
from orchestrator.worker.shard.translate import reply_kind

log = logging.getLogger(__name__)

__all__ = [
    "existing_run_reply",
    "refusal",
    "reset_reply",
    "result_correlation_id",
    "started_reply",
    "unknown_type_reply",
]


def result_correlation_id(workflow_id: str) -> str:
    """Correlation id of the RESULT reply written when ``workflow_id``'s run closes."""
    return f"result/{workflow_id}"


def started_reply(start: rec.StartWorkflow, correlation: str, run_id: str) -> rec.Reply:
    return rec.Reply(
        correlation_id=correlation,
        kind=rec.ReplyKind.START,
        workflow_id=start.workflow_id,
        run_id=run_id,
        ok=True,
    )


def existing_run_reply(
    start: rec.StartWorkflow, correlation: str, run_id: str, *, running: bool
) -> rec.Reply:
    """A start for an id that has a run: that run if it is running, else a refusal
    under the start's reuse policy."""
    error = None
    if not running:
        error = Failure(
            message=f"workflow id {start.workflow_id!r} was already used and its reuse "
            f"policy is {start.id_reuse_policy.value}",
            type="WorkflowAlreadyStarted",
        )
    return rec.Reply(
        correlation_id=correlation,
        kind=rec.ReplyKind.START,
        workflow_id=start.workflow_id,
        run_id=run_id,
        ok=running,
        error=error,
    )


def unknown_type_reply(start: rec.StartWorkflow, correlation: str, reason: str) -> rec.Reply:
    return rec.Reply(
        correlation_id=correlation,
        kind=rec.ReplyKind.START,
        workflow_id=start.workflow_id,
        ok=False,
        error=Failure(
            message=f"{reason} (the start command is in the dead-letter topic)",
            type="UnknownWorkflowType",
        ),
    )


def refusal(
    command: rec.Command, ce_id: str, run_id: str | None, failure: Failure
) -> rec.Reply | None:
    """An error reply to the command's sender; child reports and activity workers'
    outcomes get none (nothing waits for a late result of a closed or older run); an
    outcome sent by task token does (it has a ``request_id``)."""
    if isinstance(command, rec.ChildWorkflowResult):
        log.info(
            "news of child %s (%s) for workflow %s run %s dropped: %s",
            command.child_workflow_id,
            command.outcome.name,
            command.workflow_id,
            command.run_id,
            failure.message,
        )
        return None
    if (
        isinstance(
            command, rec.ActivityTaskCompleted | rec.ActivityTaskFailed | rec.ActivityHeartbeat
        )
        and command.request_id is None
    ):
        return None  # an activity worker's outcome: nothing waits for an answer
    correlation = (
        getattr(command, "request_id", None)
        or getattr(command, "update_id", None)
        or getattr(command, "query_id", None)
        or ce_id
    )
    return rec.Reply(
        correlation_id=correlation,
        kind=reply_kind(command),
        workflow_id=command.workflow_id,
        run_id=run_id,
        ok=False,
        error=failure,
    )


def reset_reply(
    command: rec.ResetWorkflow, correlation: str, run_id: str, refused: str | None
) -> rec.Reply:
    """The answer to a reset: ok with the new run's id, or why it was refused (then
    ``run_id`` is the run that stays as it was)."""
    return rec.Reply(
        correlation_id=correlation,
        kind=rec.ReplyKind.RESET,
        workflow_id=command.workflow_id,
        run_id=run_id,
        ok=refused is None,
        error=None
        if refused is None
        else Failure(message=f"reset refused: {refused}", type="ResetRefused", non_retryable=True),
    )
