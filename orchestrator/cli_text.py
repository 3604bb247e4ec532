"""How the ``saga`` CLI words what it prints: failures, history lines, JSON values.

Kept apart from :mod:`orchestrator.cli` (the commands and their options) so that the
wording can be read and tested without Kafka.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from orchestrator.engine import events as ev
from orchestrator.exceptions import WorkflowFailedError

__all__ = ["failed_run_text", "history_line", "jsonable"]


def jsonable(value: Any) -> Any:
    """``json.dumps(default=...)`` for what the CLI prints: enums by value, times in ISO."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _error_line(error: BaseException) -> str:
    # An ApplicationError rebuilt from history carries the recorded type (for
    # example "CardDeclined"); that name means more to a reader than the class name.
    kind = getattr(error, "type", None)
    name = kind if isinstance(kind, str) and kind else type(error).__name__
    message = getattr(error, "message", None)
    text = message if isinstance(message, str) else str(error)
    retry = " (non-retryable)" if getattr(error, "non_retryable", False) else ""
    return f"{name}: {text}{retry}"


def failed_run_text(workflow_id: str, error: WorkflowFailedError) -> str:
    """One paragraph for a run that did not complete: its status, then the cause chain."""
    lines = [f"workflow {workflow_id!r} ended {error.status}."]
    cause = error.__cause__
    if cause is None:
        lines.append(f"  {error}")
    depth = 0
    while cause is not None and depth < 20:  # a cycle in a chain must not hang the CLI
        lines.append(f"  {'error' if depth == 0 else 'caused by'}: {_error_line(cause)}")
        cause, depth = cause.__cause__, depth + 1
    for compensation in error.compensation_errors:
        lines.append(f"  compensation failed: {_error_line(compensation)}")
    return "\n".join(lines)


def _failure(failure: ev.Failure | None) -> str:
    parts: list[str] = []
    while failure is not None and len(parts) < 20:
        parts.append(f"{failure.type}: {failure.message}")
        failure = failure.cause
    return " <- ".join(parts)


def _time(millis: int) -> str:
    moment = datetime.fromtimestamp(millis / 1000, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


ActivityNames = dict[int, str]
"""Activity type by ``activity_seq``, filled from the ActivityScheduled events seen."""


def _activity(seq: int, names: ActivityNames) -> str:
    return f"{names.get(seq, '?')} #{seq}"


def _scheduled(e: ev.ActivityScheduled, names: ActivityNames) -> str:
    names[e.activity_seq] = e.activity_type
    return f"{_activity(e.activity_seq, names)} on {e.task_queue}"


def _attempt_failed(e: ev.ActivityAttemptFailed, names: ActivityNames) -> str:
    retry = f", retry at {_time(e.next_retry_at)}"
    return f"{_activity(e.activity_seq, names)} attempt {e.attempt}: {_failure(e.failure)}{retry}"


def _activity_failed(e: ev.ActivityFailed, names: ActivityNames) -> str:
    return f"{_activity(e.activity_seq, names)} attempt {e.attempt}: {_failure(e.failure)}"


def _compensation_failed_run(e: ev.WorkflowCompensationFailed, _: ActivityNames) -> str:
    extra = "".join(f"; compensation: {_failure(f)}" for f in e.compensation_failures)
    return f"{_failure(e.failure)}{extra}"


def _update_completed(e: ev.UpdateCompleted, _: ActivityNames) -> str:
    return f"{e.update_id}: {_failure(e.failure)}" if e.failure else e.update_id


def _compensation_started(e: ev.CompensationStarted, _: ActivityNames) -> str:
    cause = f" after {_failure(e.cause)}" if e.cause else ""
    return f"saga {e.saga_id}: {', '.join(e.compensations)}{cause}"


def _reset_origin(e: ev.WorkflowStarted) -> str:
    if e.reset is None:
        return ""
    r = e.reset
    by = f" by {r.operator}" if r.operator else ""
    return f", reset from run {r.from_run_id} at event {r.to_seq}{by}: {r.reason}"


def _by(e: ev.WorkflowPaused | ev.WorkflowUnpaused, _: ActivityNames) -> str:
    who = f"by {e.operator}" if e.operator else "by an unnamed operator"
    return f"{who}: {e.reason}" if e.reason else who


def _repaired(e: ev.CompensationRepaired, _: ActivityNames) -> str:
    what = f"skip {e.activity_type}" if e.action == ev.REPAIR_SKIP else "retry"
    if e.retry_policy is not None:
        attempts = e.retry_policy.max_attempts or "unlimited"
        what += f" (new policy: {attempts} attempts)"
    who = f"by {e.operator}" if e.operator else "by an unnamed operator"
    return f"{what} {who}: {e.reason}" if e.reason else f"{what} {who}"


def _held(e: ev.InputDeferred, _: ActivityNames) -> str:
    what = e.name or (f"#{e.seq_of}" if e.seq_of else e.reason)
    return f"{e.kind} {what} (applied on unpause)" if what else f"{e.kind} (applied on unpause)"


_DETAILS: dict[type[ev.Event], Callable[[Any, ActivityNames], str]] = {
    ev.WorkflowStarted: lambda e, _: f"{e.workflow_type} on {e.task_queue}" + _reset_origin(e),
    ev.WorkflowCancelRequested: lambda e, _: e.reason,
    ev.WorkflowTerminated: lambda e, _: e.reason,
    ev.WorkflowFailed: lambda e, _: _failure(e.failure),
    ev.WorkflowCompensationFailed: _compensation_failed_run,
    ev.WorkflowContinuedAsNew: lambda e, _: f"new run {e.new_run_id}",
    ev.ActivityScheduled: _scheduled,
    ev.ActivityCompleted: lambda e, n: f"{_activity(e.activity_seq, n)} attempt {e.attempt}",
    ev.ActivityAttemptFailed: _attempt_failed,
    ev.ActivityFailed: _activity_failed,
    ev.ActivityTimedOut: lambda e, n: (
        f"{_activity(e.activity_seq, n)} attempt {e.attempt}: {e.timeout_type}"
    ),
    ev.ActivityCancelRequested: lambda e, n: _activity(e.activity_seq, n),
    ev.TimerStarted: lambda e, _: f"{e.timer_id} fires at {_time(e.fire_at)}",
    ev.TimerFired: lambda e, _: e.timer_id,
    ev.TimerCancelled: lambda e, _: e.timer_id,
    ev.SignalReceived: lambda e, _: e.signal_name,
    ev.UpdateAccepted: lambda e, _: f"{e.update_name} ({e.update_id})",
    ev.UpdateCompleted: _update_completed,
    ev.ChildWorkflowInitiated: lambda e, _: (
        f"{e.workflow_type} {e.workflow_id} #{e.child_seq} "
        f"(parent-close policy {e.parent_close_policy})"
    ),
    ev.ChildWorkflowCancelRequested: lambda e, _: (
        f"#{e.child_seq}: {e.reason}" if e.reason else f"#{e.child_seq}"
    ),
    ev.ChildWorkflowStarted: lambda e, _: f"#{e.child_seq} run {e.run_id}",
    ev.ChildWorkflowCompleted: lambda e, _: f"#{e.child_seq}",
    ev.ChildWorkflowFailed: lambda e, _: f"#{e.child_seq}: {_failure(e.failure)}",
    ev.MarkerRecorded: lambda e, _: f"{e.marker_name} {e.marker_id}",
    ev.CompensationStarted: _compensation_started,
    ev.CompensationCompleted: lambda e, _: f"saga {e.saga_id}",
    ev.SearchAttributesUpserted: lambda e, _: ", ".join(sorted(e.attributes)),
    ev.MemoUpserted: lambda e, _: ", ".join(sorted(e.memo)),
    ev.CompensationFailed: lambda e, _: (
        f"saga {e.saga_id}: {e.activity_type}: {_failure(e.failure)}"
    ),
    ev.WorkflowPaused: _by,
    ev.WorkflowUnpaused: _by,
    ev.InputDeferred: _held,
    ev.CompensationRepaired: _repaired,
}


def history_line(event: ev.Event, names: ActivityNames) -> str:
    """``seq time EventType details``: what happened, to which activity, and why it failed.

    Pass the same ``names`` for every event of a run, in order: completions and
    failures only record the activity's sequence number, and its type comes from
    the ActivityScheduled event before them.
    """
    detail = _DETAILS.get(type(event))
    text = detail(event, names) if detail is not None else ""
    line = f"{event.seq:>5} {_time(event.time)} {type(event).__name__}"
    return f"{line}  {text}" if text else line
