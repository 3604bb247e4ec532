"""Command records as engine inputs, and what kind of reply each command gets.

Pure functions between the wire records (:mod:`orchestrator.serde.records`) and the
engine's inputs (:mod:`orchestrator.engine.inputs`)."""

from __future__ import annotations

from orchestrator.engine import events as ev
from orchestrator.engine import inputs
from orchestrator.engine.executor import WorkflowExecutor
from orchestrator.serde import records as rec
from orchestrator.worker.shard import children

__all__ = ["pause_state", "repair_notes", "reply_kind", "start_inputs", "to_input"]


def start_inputs(
    start: rec.StartWorkflow, run_id: str, now: int, request_id: str | None = None
) -> list[inputs.Input]:
    """The first inputs of a new run: its start, and the signal of a signal-with-start
    (with the start's ``request_id``). An ``execution_timeout_ms`` becomes the run's
    deadline, counted from ``now``."""
    parent = start.parent
    timeout = start.execution_timeout_ms
    first: list[inputs.Input] = [
        inputs.StartWorkflow(
            workflow_id=start.workflow_id,
            run_id=run_id,
            workflow_type=start.workflow_type,
            task_queue=start.task_queue,
            args=list(start.input),
            parent_workflow_id=parent.workflow_id if parent is not None else None,
            parent_run_id=parent.run_id if parent is not None else None,
            memo=dict(start.memo),
            search_attributes=dict(start.search_attributes),
            execution_deadline=now + timeout if timeout else None,
            priority=start.priority,
            fairness_key=start.fairness_key,
        )
    ]
    if start.signal_with_start is not None:
        first.append(
            inputs.SendSignal(
                name=start.signal_with_start.signal_name,
                args=list(start.signal_with_start.args),
                request_id=request_id,
            )
        )
    return first


def to_input(command: rec.Command, ce_id: str | None = None) -> inputs.Input:  # noqa: PLR0911
    """The engine input a command record stands for (starts excepted). A signal's
    request id is its ``request_id``, else ``ce_id`` (the record's CloudEvents id)."""
    match command:
        case rec.SignalWorkflow():
            return inputs.SendSignal(
                name=command.signal_name,
                args=list(command.args),
                request_id=command.request_id or ce_id,
            )
        case rec.CancelWorkflow():
            return inputs.CancelWorkflow(reason=command.reason)
        case rec.TerminateWorkflow():
            return inputs.TerminateWorkflow(reason=command.reason)
        case rec.UpdateWorkflow():
            return inputs.RequestUpdate(
                update_id=command.update_id, name=command.update_name, args=list(command.args)
            )
        case rec.ActivityTaskCompleted():  # from a worker, or from a local attempt
            return inputs.ActivityTaskCompleted(
                activity_seq=command.activity_seq,
                attempt=command.attempt,
                result=command.result,
            )
        case rec.ActivityTaskFailed():
            return inputs.ActivityTaskFailed(
                activity_seq=command.activity_seq,
                attempt=command.attempt,
                failure=command.failure,
            )
        case rec.ActivityHeartbeat():
            return inputs.ActivityTaskHeartbeat(
                activity_seq=command.activity_seq,
                attempt=command.attempt,
                details=list(command.details),
            )
        case rec.ChildWorkflowResult():
            return children.report_input(command)
        case rec.PauseWorkflow():
            return inputs.PauseWorkflow(reason=command.reason, operator=command.operator)
        case rec.UnpauseWorkflow():
            return inputs.UnpauseWorkflow(reason=command.reason, operator=command.operator)
        case rec.RepairWorkflow():
            return inputs.RepairCompensation(
                skip=command.skip,
                retry_policy=command.retry_policy,
                reason=command.reason,
                operator=command.operator,
            )
    raise TypeError(f"no engine input for {type(command).__name__}")


def reply_kind(command: rec.Command) -> rec.ReplyKind:
    """The kind of reply a command gets (RESULT for those that get none)."""
    return {
        rec.SignalWorkflow: rec.ReplyKind.SIGNAL,
        rec.CancelWorkflow: rec.ReplyKind.CANCEL,
        rec.TerminateWorkflow: rec.ReplyKind.TERMINATE,
        rec.UpdateWorkflow: rec.ReplyKind.UPDATE,
        rec.QueryWorkflow: rec.ReplyKind.QUERY,
        rec.StartWorkflow: rec.ReplyKind.START,
        rec.PauseWorkflow: rec.ReplyKind.PAUSE,
        rec.UnpauseWorkflow: rec.ReplyKind.UNPAUSE,
        rec.ResetWorkflow: rec.ReplyKind.RESET,
        rec.RepairWorkflow: rec.ReplyKind.REPAIR,
        rec.ActivityTaskCompleted: rec.ReplyKind.ACTIVITY,
        rec.ActivityTaskFailed: rec.ReplyKind.ACTIVITY,
        rec.ActivityHeartbeat: rec.ReplyKind.ACTIVITY,
    }.get(type(command), rec.ReplyKind.RESULT)


def pause_state(executor: WorkflowExecutor) -> rec.PauseState | None:
    """The snapshot's view of the run's pause (None when not paused)."""
    paused = executor.paused
    if paused is None:
        return None
    return rec.PauseState(reason=paused.reason, operator=paused.operator, time=paused.time)


def repair_notes(events: list[ev.Event]) -> list[rec.RepairNote]:
    """The snapshot's view of operators' repairs of the run, from its history."""
    return [
        rec.RepairNote(
            action=e.action,
            activity_type=e.activity_type,
            reason=e.reason,
            operator=e.operator,
            time=e.time,
        )
        for e in events
        if isinstance(e, ev.CompensationRepaired)
    ]
