"""Records for child workflows and continued runs on the Kafka runtime.

Pure functions; :class:`~orchestrator.worker.shard.engine_shard.EngineShard` keeps
the state and writes what these build.

A child's start is a ``StartWorkflow`` command (with ``parent`` set) written to the
child's own shard on ``<prefix>.commands``; the child's shard answers with
``ChildWorkflowResult`` commands keyed by the parent's workflow id: STARTED when
its first run starts (or FAILED when the start is refused), then COMPLETED or
FAILED when its last run closes. Every one of them travels in the transaction of
the decision that caused it, so each is written exactly once.

A parent stops a child (its code cancels the child's handle, or it closes under a
parent-close policy other than ABANDON) with a ``CancelWorkflow`` or
``TerminateWorkflow`` command to the child's shard, ``ce_source``
:data:`PARENT_SOURCE` and a ``request_id`` naming the parent run and child seq. The
child's shard applies it only to a run whose chain that very start began (its
``parent`` is that run and seq), so a child whose start was refused because its id
was in use never stops the run that holds the id. Nobody waits for a reply.
"""

from __future__ import annotations

from orchestrator.converter import Payload
from orchestrator.engine import commands as cmd
from orchestrator.engine import events as ev
from orchestrator.engine import inputs
from orchestrator.engine.events import Failure
from orchestrator.engine.failures import closing_failure
from orchestrator.serde import records as rec

__all__ = [
    "PARENT_SOURCE",
    "child_start",
    "child_start_id",
    "closed_report",
    "from_parent",
    "next_run_after",
    "refused_report",
    "report_input",
    "started_report",
    "stop_command",
]

PARENT_SOURCE = "/saga/engine/parent"
"""``ce_source`` of the commands a parent run sends its children."""


def child_start_id(parent_workflow_id: str, parent_run_id: str, child_seq: int) -> str:
    """The CloudEvents id of a child's start command (stable: one per child)."""
    return f"{parent_workflow_id}/{parent_run_id}/child/{child_seq}"


def child_start(command: cmd.StartChildWorkflow) -> rec.StartWorkflow:
    """The start command for the child the parent's code asked for."""
    start = command.start
    assert start.parent_workflow_id is not None and start.parent_run_id is not None
    return rec.StartWorkflow(
        workflow_id=start.workflow_id,
        workflow_type=start.workflow_type,
        task_queue=start.task_queue,
        input=list(start.args),
        memo=dict(start.memo),
        search_attributes=dict(start.search_attributes),
        priority=start.priority,
        fairness_key=start.fairness_key,
        parent=rec.ParentExecution(
            workflow_id=start.parent_workflow_id,
            run_id=start.parent_run_id,
            child_seq=command.child_seq,
        ),
    )


def _stop_id(parent_workflow_id: str, parent_run_id: str, child_seq: int, kind: str) -> str:
    return f"{child_start_id(parent_workflow_id, parent_run_id, child_seq)}/{kind}"


def stop_command(
    parent_workflow_id: str, parent_run_id: str, command: cmd.StopChildWorkflow
) -> tuple[rec.CancelWorkflow | rec.TerminateWorkflow, str]:
    """The command (and its stable CloudEvents id) that stops a parent's child: one
    cancel and one terminate at most per child, so each id is written once."""
    kind = "terminate" if command.terminate else "cancel"
    stop_id = _stop_id(parent_workflow_id, parent_run_id, command.child_seq, kind)
    if command.terminate:
        return rec.TerminateWorkflow(
            workflow_id=command.workflow_id, reason=command.reason, request_id=stop_id
        ), stop_id
    return rec.CancelWorkflow(
        workflow_id=command.workflow_id, reason=command.reason, request_id=stop_id
    ), stop_id


def from_parent(
    parent: rec.ParentExecution | None, command: rec.CancelWorkflow | rec.TerminateWorkflow
) -> bool:
    """Whether a parent's stop command is for the run whose parent is ``parent``
    (the run its start began, or a run that continued it)."""
    if parent is None or command.request_id is None:
        return False
    kind = "terminate" if isinstance(command, rec.TerminateWorkflow) else "cancel"
    expected = _stop_id(parent.workflow_id, parent.run_id, parent.child_seq, kind)
    return command.request_id == expected


def _report_to(
    parent: rec.ParentExecution,
    child_workflow_id: str,
    outcome: rec.ChildOutcome,
    *,
    child_run_id: str | None = None,
    result: Payload | None = None,
    failure: Failure | None = None,
) -> rec.ChildWorkflowResult:
    """A report addressed to the parent run (and call) that started the child."""
    return rec.ChildWorkflowResult(
        workflow_id=parent.workflow_id,
        run_id=parent.run_id,
        child_seq=parent.child_seq,
        child_workflow_id=child_workflow_id,
        outcome=outcome,
        child_run_id=child_run_id,
        result=result,
        failure=failure,
    )


def started_report(
    parent: rec.ParentExecution, child_workflow_id: str, child_run_id: str
) -> rec.ChildWorkflowResult:
    """The child has its first run."""
    return _report_to(
        parent, child_workflow_id, rec.ChildOutcome.STARTED, child_run_id=child_run_id
    )


def refused_report(
    parent: rec.ParentExecution, child_workflow_id: str, failure: Failure
) -> rec.ChildWorkflowResult:
    """The child's start was refused (its id is in use, or its reuse policy says no)."""
    return _report_to(parent, child_workflow_id, rec.ChildOutcome.FAILED, failure=failure)


def closed_report(
    parent: rec.ParentExecution, child_workflow_id: str, child_run_id: str, last: ev.Event
) -> rec.ChildWorkflowResult:
    """The child's run closed with ``last`` (never a WorkflowContinuedAsNew: the
    next run reports instead)."""
    if isinstance(last, ev.WorkflowCompleted):
        return _report_to(
            parent,
            child_workflow_id,
            rec.ChildOutcome.COMPLETED,
            child_run_id=child_run_id,
            result=last.result,
        )
    return _report_to(
        parent,
        child_workflow_id,
        rec.ChildOutcome.FAILED,
        child_run_id=child_run_id,
        failure=closing_failure(last),
    )


def report_input(report: rec.ChildWorkflowResult) -> inputs.Input:
    """The engine input a parent run gets for a report."""
    match report.outcome:
        case rec.ChildOutcome.STARTED:
            return inputs.ChildStarted(child_seq=report.child_seq, run_id=report.child_run_id or "")
        case rec.ChildOutcome.COMPLETED if report.result is not None:
            return inputs.ChildCompleted(child_seq=report.child_seq, result=report.result)
    failure = report.failure or Failure(
        message=f"child {report.child_workflow_id!r} reported no outcome", type="ChildFailed"
    )
    return inputs.ChildFailed(child_seq=report.child_seq, failure=failure)


def next_run_after(
    snapshot: rec.WorkflowSnapshot, last: ev.WorkflowContinuedAsNew
) -> inputs.StartWorkflow:
    """The start of the run a continued run asked for, rebuilt from its history.

    Equal to the executor's ContinueAsNewRun command: used when a restore finds a
    run closed as CONTINUED_AS_NEW whose next run was never started.
    """
    parent = snapshot.parent
    return inputs.StartWorkflow(
        workflow_id=snapshot.workflow_id,
        run_id=last.new_run_id,
        workflow_type=last.workflow_type,
        task_queue=last.task_queue,
        args=list(last.input),
        parent_workflow_id=parent.workflow_id if parent is not None else None,
        parent_run_id=parent.run_id if parent is not None else None,
        continued_from_run_id=snapshot.run_id,
        memo=dict(snapshot.memo),
        search_attributes=dict(snapshot.search_attributes),
        execution_deadline=last.execution_deadline,
        workflow_version=last.workflow_version,
        priority=snapshot.priority,
        fairness_key=snapshot.fairness_key,
    )
