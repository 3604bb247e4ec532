"""What the outside world feeds into a :class:`~orchestrator.engine.executor.WorkflowExecutor`.

Inputs are facts (a start request, an activity attempt's outcome, a timer that
fired, a signal, an update request, a cancel request). The executor decides which
of them become history events: a result for an attempt that is no longer current,
a timer that was cancelled or an update its validator rejects leave no trace.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from orchestrator.converter import Payload
from orchestrator.engine.events import Failure, RetryPolicyRecord

__all__ = [
    "ActivityTaskCompleted",
    "ActivityTaskFailed",
    "ActivityTaskHeartbeat",
    "CancelWorkflow",
    "ChildCompleted",
    "ChildFailed",
    "ChildStarted",
    "FireTimer",
    "Input",
    "PauseWorkflow",
    "RepairCompensation",
    "RequestUpdate",
    "SendSignal",
    "StartWorkflow",
    "TerminateWorkflow",
    "UnpauseWorkflow",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class StartWorkflow:
    """Start a run; must be the first input of an executor with empty history.

    ``random_seed`` defaults to one derived from ``run_id``.
    """

    workflow_id: str
    run_id: str
    workflow_type: str
    task_queue: str = "default"
    args: list[Payload] = field(default_factory=list)
    random_seed: int | None = None
    parent_workflow_id: str | None = None
    parent_run_id: str | None = None
    continued_from_run_id: str | None = None
    memo: dict[str, Payload] = field(default_factory=dict)
    search_attributes: dict[str, Payload] = field(default_factory=dict)
    #: epoch ms at which the execution timeout cancels the workflow (None: never)
    execution_deadline: int | None = None
    #: the version of the type's definition to start (recorded in WorkflowStarted);
    #: None: the newest the worker holds
    workflow_version: int | None = None
    #: recorded in WorkflowStarted; taken by the run's activities and children that
    #: name none
    priority: int = 0
    fairness_key: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ActivityTaskCompleted:
    """Attempt ``attempt`` of activity ``activity_seq`` returned ``result``."""

    activity_seq: int
    attempt: int
    result: Payload


@dataclass(frozen=True, slots=True, kw_only=True)
class ActivityTaskFailed:
    """Attempt ``attempt`` of activity ``activity_seq`` raised ``failure``."""

    activity_seq: int
    attempt: int
    failure: Failure


@dataclass(frozen=True, slots=True, kw_only=True)
class ActivityTaskHeartbeat:
    """A running attempt reported liveness; not recorded in history."""

    activity_seq: int
    attempt: int
    details: list[Payload] = field(default_factory=list)


@dataclass(frozen=True, slots=True, kw_only=True)
class FireTimer:
    """The timer ``timer_id`` (from a StartTimer command) is due."""

    timer_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SendSignal:
    """Deliver signal ``name`` with ``args``. A ``request_id`` the run already applied
    is acknowledged and not recorded again (None: never de-duplicated)."""

    name: str
    args: list[Payload] = field(default_factory=list)
    request_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestUpdate:
    """Ask update ``name``; answered by a RespondUpdate command (now or later)."""

    update_id: str
    name: str
    args: list[Payload] = field(default_factory=list)


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelWorkflow:
    """Request cancellation: CancelledError at the code's current await."""

    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class TerminateWorkflow:
    """End the run now, running no more code (no compensation); ``reset_run_id``
    when a reset ends it in favour of that run."""

    reason: str = ""
    operator: str = ""
    reset_run_id: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ChildStarted:
    """Child ``child_seq`` has a run."""

    child_seq: int
    run_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ChildCompleted:
    """Child ``child_seq`` returned ``result``."""

    child_seq: int
    result: Payload


@dataclass(frozen=True, slots=True, kw_only=True)
class ChildFailed:
    """Child ``child_seq`` did not complete."""

    child_seq: int
    failure: Failure


@dataclass(frozen=True, slots=True, kw_only=True)
class PauseWorkflow:
    """An operator pauses the run: later inputs are recorded and held until unpaused."""

    reason: str = ""
    operator: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class UnpauseWorkflow:
    """An operator unpauses the run: the held inputs are applied, in order."""

    reason: str = ""
    operator: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class RepairCompensation:
    """An operator repairs a COMPENSATION_FAILED run: retry its failed compensations
    (under ``retry_policy`` when set), or with ``skip`` set, count that failed
    compensation (an activity type) as done; either way compensation goes on."""

    skip: str | None = None
    retry_policy: RetryPolicyRecord | None = None
    reason: str = ""
    operator: str = ""


Input = (
    StartWorkflow
    | ActivityTaskCompleted
    | ActivityTaskFailed
    | ActivityTaskHeartbeat
    | FireTimer
    | SendSignal
    | RequestUpdate
    | CancelWorkflow
    | TerminateWorkflow
    | ChildStarted
    | ChildCompleted
    | ChildFailed
    | PauseWorkflow
    | UnpauseWorkflow
    | RepairCompensation
)
"""Any input an executor accepts."""
