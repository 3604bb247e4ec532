"""Replies a shard writes to ``<prefix>.replies``, built from the command they answer.

Functions with no I/O (a query runs its handler in the run's executor). A reply's
correlation id is the command's ``request_id`` (or ``update_id`` / ``query_id``), else
its CloudEvents id; the RESULT reply of a closed run has ``result/<workflow_id>``.
"""

from __future__ import annotations

import logging

from orchestrator.converter import Payload
from orchestrator.engine import commands as cmd
from orchestrator.engine.events import Failure
from orchestrator.engine.executor import WorkflowExecutor
from orchestrator.engine.status import WorkflowStatus
from orchestrator.serde import records as rec
from orchestrator.worker.shard.executions import Execution
from orchestrator.worker.shard.translate import reply_kind

log = logging.getLogger(__name__)

__all__ = [
    "ACKNOWLEDGED",
    "acknowledgement",
    "existing_run_reply",
    "query_reply",
    "refusal",
    "reset_reply",
    "result_correlation_id",
    "result_reply",
    "started_reply",
    "unknown_type_reply",
    "update_reply",
]

#: commands whose sender hears "ok" (or why not) once the run took them
ACKNOWLEDGED = (
    rec.SignalWorkflow,
    rec.CancelWorkflow,
    rec.TerminateWorkflow,
    rec.PauseWorkflow,
    rec.UnpauseWorkflow,
    rec.RepairWorkflow,
)


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


def acknowledgement(
    command: rec.SignalWorkflow
    | rec.CancelWorkflow
    | rec.TerminateWorkflow
    | rec.PauseWorkflow
    | rec.UnpauseWorkflow
    | rec.RepairWorkflow,
    correlation: str,
    execution: Execution,
    rejected: list[str],
) -> rec.Reply:
    """The answer to an :data:`ACKNOWLEDGED` command the run's decision took. A command
    the run refused (``rejected``: say, signal arguments its handler cannot read) left
    no trace in history: the reply says so, never "ok"."""
    refused = "; ".join(rejected)
    return rec.Reply(
        correlation_id=command.request_id or correlation,
        kind=reply_kind(command),
        workflow_id=execution.workflow_id,
        run_id=execution.run_id,
        ok=not refused,
        error=Failure(message=refused, type="CommandRejected") if refused else None,
    )


def update_reply(command: cmd.RespondUpdate, execution: Execution) -> rec.Reply:
    """The outcome of an update, as the run's update handler decided it."""
    return rec.Reply(
        correlation_id=command.update_id,
        kind=rec.ReplyKind.UPDATE,
        workflow_id=execution.workflow_id,
        run_id=execution.run_id,
        ok=command.failure is None,
        result=command.result,
        error=command.failure,
    )


def result_reply(
    execution: Execution, result: Payload | None, failure: Failure | None
) -> rec.Reply:
    """The RESULT reply of a run that closed (ok only when it completed)."""
    return rec.Reply(
        correlation_id=result_correlation_id(execution.workflow_id),
        kind=rec.ReplyKind.RESULT,
        workflow_id=execution.workflow_id,
        run_id=execution.run_id,
        ok=execution.status is WorkflowStatus.COMPLETED,
        result=result,
        error=failure,
    )


def query_reply(
    execution: Execution, executor: WorkflowExecutor | None, query: rec.QueryWorkflow
) -> rec.Reply:
    """The answer to a query: its handler's result in the open run's ``executor``, or
    why there is none (a closed run, a parked run: ``executor`` None, or the handler
    raised)."""
    error: Failure | None = None
    result: Payload | None = None
    if not execution.is_open:
        error = Failure(
            message=f"workflow {execution.workflow_id!r} is {execution.status.name}; "
            "queries are answered by open runs (`saga history` shows a closed one)",
            type="WorkflowClosed",
        )
    elif executor is None:
        error = Failure(message=execution.parked or "cannot be replayed", type="WorkflowParked")
    else:
        try:
            result = executor.query(query.query_name, list(query.args))
        except Exception as exc:  # noqa: BLE001 - a failing query handler only fails the query
            error = Failure(message=str(exc), type=type(exc).__name__)
    return rec.Reply(
        correlation_id=query.query_id,
        kind=rec.ReplyKind.QUERY,
        workflow_id=execution.workflow_id,
        run_id=execution.run_id,
        ok=error is None,
        result=result,
        error=error,
    )
