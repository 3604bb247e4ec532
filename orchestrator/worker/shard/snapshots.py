"""What a run's snapshot (``<workflow_id>/snapshot``) says, from the run's events, its
live executor (if any) and its previous snapshot.

Pure functions: the shard writes the snapshot (:mod:`~orchestrator.worker.shard.output`).
"""

from __future__ import annotations

from collections.abc import Sequence

from orchestrator.converter import Payload
from orchestrator.engine import events as ev
from orchestrator.engine.events import Event, Failure
from orchestrator.engine.executor import WorkflowExecutor
from orchestrator.engine.failures import closing_failure
from orchestrator.engine.registry import pinned_version
from orchestrator.engine.status import WorkflowStatus
from orchestrator.serde import records as rec
from orchestrator.worker.shard.executions import Execution
from orchestrator.worker.shard.translate import pause_state, repair_notes

__all__ = ["outcome", "snapshot_of"]


def outcome(execution: Execution, events: Sequence[Event]) -> tuple[Payload | None, Failure | None]:
    """Result of a completed run; why any other closed run did not complete."""
    if execution.is_open or not events:
        return None, None
    last = events[-1]
    if execution.status is WorkflowStatus.COMPLETED:
        return getattr(last, "result", None), None
    if execution.status is WorkflowStatus.CONTINUED_AS_NEW:
        return None, None
    return None, closing_failure(last)


def snapshot_of(
    execution: Execution, executor: WorkflowExecutor | None, events: list[Event]
) -> rec.WorkflowSnapshot:
    """The run's snapshot now. Search attributes, memo and pause come from the live
    executor, else from the run's previous snapshot."""
    result, failure = outcome(execution, events)
    previous = execution.snapshot
    attributes = (
        executor.search_attributes
        if executor is not None
        else previous.search_attributes
        if previous is not None
        else {}
    )
    memo = executor.memo if executor is not None else previous.memo if previous else {}
    priority, fairness_key = _flow_keys(events, previous)
    return rec.WorkflowSnapshot(
        workflow_id=execution.workflow_id,
        run_id=execution.run_id,
        workflow_type=execution.workflow_type,
        task_queue=execution.task_queue,
        status=execution.status,
        start_time=execution.start_time,
        last_seq=events[-1].seq if events else 0,
        close_time=events[-1].time if not execution.is_open and events else None,
        result=result,
        failure=failure,
        search_attributes=dict(attributes),
        memo=dict(memo),
        parked=execution.parked,
        parent=execution.parent,
        start_request_id=execution.start_request_id,
        start_run_id=execution.start_run_id,
        paused=pause_state(executor)
        if executor is not None
        else previous.paused
        if previous is not None
        else None,
        repairs=repair_notes(events),
        workflow_version=pinned_version(events) or execution.workflow_version or 1,
        priority=priority,
        fairness_key=fairness_key,
    )


def _flow_keys(
    events: Sequence[ev.Event], previous: rec.WorkflowSnapshot | None
) -> tuple[int, str]:
    """The run's priority and fairness key for its snapshot: from its WorkflowStarted,
    else (events not read) from its previous snapshot."""
    first = events[0] if events else None
    if isinstance(first, ev.WorkflowStarted):
        return first.priority, first.fairness_key
    if previous is not None:
        return previous.priority, previous.fairness_key
    return 0, ""
