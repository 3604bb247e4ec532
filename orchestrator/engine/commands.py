"""What an executor asks its runtime to do after a decision.

Commands are not history: the events that caused them are. A runtime executes the
commands of a decision in the same transaction that appends its events (the Kafka
runtime), or right away (the in-memory test environment). After a restore,
:meth:`WorkflowExecutor.pending_timers` re-creates the timer commands.

Timer ids: ``timer/{n}`` for sleeps and waits, ``activity/{seq}/retry/{attempt}``
for retry backoff, ``activity/{seq}/start_to_close/{attempt}``,
``activity/{seq}/heartbeat/{attempt}`` and ``activity/{seq}/schedule_to_close`` for
activity timeouts. A StartTimer for an id that is already set replaces it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from orchestrator.converter import Payload
from orchestrator.engine.events import Failure
from orchestrator.engine.inputs import StartWorkflow

__all__ = [
    "CancelActivityTask",
    "CancelTimer",
    "Command",
    "ContinueAsNewRun",
    "RespondUpdate",
    "ScheduleActivityTask",
    "StartChildWorkflow",
    "StartTimer",
    "StopChildWorkflow",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class ScheduleActivityTask:
    """Dispatch attempt ``attempt`` of an activity to ``task_queue``.

    Report back with ActivityTaskCompleted/Failed carrying the same
    ``activity_seq`` and ``attempt``; results of other attempts are ignored.
    """

    workflow_id: str
    run_id: str
    workflow_type: str
    activity_seq: int
    attempt: int
    activity_type: str
    task_queue: str
    args: list[Payload] = field(default_factory=list)
    scheduled_at: int
    attempt_started_at: int
    start_to_close_ms: int | None = None
    heartbeat_timeout_ms: int | None = None
    heartbeat_details: list[Payload] = field(default_factory=list)
    local: bool = False
    """The code asked for a local activity: the engine worker may run it itself."""
    priority: int = 0
    """Dispatch priority on a flow-controlled queue (higher first)."""
    fairness_key: str = ""
    """Fairness key on a flow-controlled queue ("" the default key)."""
    key_run_id: str = ""
    """The run id of the idempotency key when not ``run_id`` (an activity a reset
    re-executes keeps the key of the run that first ran it)."""

    @property
    def idempotency_key(self) -> str:
        """``"{workflow_id}/{key_run_id or run_id}/{activity_seq}"``, the same for
        every attempt."""
        return f"{self.workflow_id}/{self.key_run_id or self.run_id}/{self.activity_seq}"


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelActivityTask:
    """The run no longer waits for this activity; the worker running it stops it."""

    activity_seq: int
    attempt: int
    task_queue: str = ""
    activity_type: str = ""
    dispatched: bool = True
    """Whether ``attempt`` is out at a worker (False: the activity was waiting for a
    retry, so no worker runs it and there is nothing to stop)."""
    local: bool = False
    """A local activity: the engine worker runs it itself (its cancel is not sent)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StartTimer:
    """Feed ``FireTimer(timer_id)`` back at ``fire_at`` (epoch ms) or later."""

    timer_id: str
    fire_at: int


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelTimer:
    """Forget timer ``timer_id`` (firing it anyway is harmless)."""

    timer_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class StartChildWorkflow:
    """Start a child run; report ChildStarted/ChildCompleted/ChildFailed back."""

    child_seq: int
    start: StartWorkflow


@dataclass(frozen=True, slots=True, kw_only=True)
class StopChildWorkflow:
    """Ask child ``child_seq`` (workflow ``workflow_id``) to cancel, or with
    ``terminate`` end it at once: the parent's code asked (through the child's
    handle), or the parent run closed under the child's parent-close policy.

    It reaches the child run the parent's start began, or the run that continued it,
    never an unrelated run that holds the same workflow id."""

    child_seq: int
    workflow_id: str
    terminate: bool = False
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class RespondUpdate:
    """Answer an update request: ``result``, or ``failure`` (``rejected`` = never ran)."""

    update_id: str
    result: Payload | None = None
    failure: Failure | None = None
    rejected: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class ContinueAsNewRun:
    """Start the next run of a workflow that continued as new."""

    start: StartWorkflow


Command = (
    ScheduleActivityTask
    | CancelActivityTask
    | StartTimer
    | CancelTimer
    | StartChildWorkflow
    | StopChildWorkflow
    | RespondUpdate
    | ContinueAsNewRun
)
"""Any command a decision may carry."""
