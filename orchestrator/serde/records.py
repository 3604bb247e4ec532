"""Typed records for every non-event Kafka record: commands, activity tasks, replies, snapshots.

Field names and types mirror ``schemas/*.avsc`` one-to-one (checked when a
:class:`~orchestrator.serde.wire.WireFormat` is built). Times are epoch milliseconds
UTC and durations are milliseconds (``*_ms``), as in the history event model.
User values are always encoded :class:`~orchestrator.converter.Payload` objects.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from orchestrator.converter import Payload
from orchestrator.engine.events import Failure, RetryPolicyRecord

# The snapshot field type, re-exported for readers of ``records.WorkflowStatus``.
from orchestrator.status import WorkflowStatus as WorkflowStatus  # noqa: PLC0414


class IdReusePolicy(enum.Enum):
    """What a start does when a closed execution with the same workflow id exists."""

    ALLOW_DUPLICATE = "allow_duplicate"
    ALLOW_DUPLICATE_FAILED_ONLY = "allow_duplicate_failed_only"
    REJECT_DUPLICATE = "reject_duplicate"
    TERMINATE_IF_RUNNING = "terminate_if_running"


class ReplyKind(enum.Enum):
    """Which command a :class:`Reply` answers."""

    START = "start"
    SIGNAL = "signal"
    CANCEL = "cancel"
    TERMINATE = "terminate"
    UPDATE = "update"
    QUERY = "query"
    RESULT = "result"
    PAUSE = "pause"  # reply v2
    UNPAUSE = "unpause"  # reply v2
    RESET = "reset"  # reply v2
    REPAIR = "repair"  # reply v3
    ACTIVITY = "activity"  # reply v4: an outcome sent by task token


@dataclass(frozen=True, slots=True, kw_only=True)
class SignalWithStart:
    """The signal a :class:`StartWorkflow` delivers (starting the workflow if needed)."""

    signal_name: str
    args: list[Payload] = field(default_factory=list)


@dataclass(frozen=True, slots=True, kw_only=True)
class ParentExecution:
    """The run that started a workflow as its child."""

    workflow_id: str
    run_id: str
    child_seq: int


# --- commands (topic <prefix>.commands, key = workflow id) ------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class StartWorkflow:
    """Start an execution (``saga.command.start.v2``; v1 is still read)."""

    workflow_id: str
    workflow_type: str
    task_queue: str
    input: list[Payload] = field(default_factory=list)
    id_reuse_policy: IdReusePolicy = IdReusePolicy.ALLOW_DUPLICATE
    signal_with_start: SignalWithStart | None = None
    search_attributes: dict[str, Payload] = field(default_factory=dict)
    memo: dict[str, Payload] = field(default_factory=dict)
    parent: ParentExecution | None = None
    execution_timeout_ms: int | None = None
    request_id: str | None = None
    priority: int = 0
    """Taken by the run's activities and children that name none (v2)."""
    fairness_key: str = ""
    """Taken as ``priority`` is (v2; "" the default key)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SignalWorkflow:
    """Deliver a signal (``saga.command.signal.v1``)."""

    workflow_id: str
    signal_name: str
    args: list[Payload] = field(default_factory=list)
    run_id: str | None = None
    request_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelWorkflow:
    """Request cancellation (``saga.command.cancel.v1``)."""

    workflow_id: str
    reason: str = ""
    run_id: str | None = None
    request_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TerminateWorkflow:
    """Stop an execution without running code or compensations (``saga.command.terminate.v1``)."""

    workflow_id: str
    reason: str
    details: list[Payload] = field(default_factory=list)
    run_id: str | None = None
    request_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PauseWorkflow:
    """Pause a run until unpaused; inputs meanwhile are recorded and held (``...pause.v1``)."""

    workflow_id: str
    reason: str = ""
    operator: str = ""
    run_id: str | None = None
    request_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class UnpauseWorkflow:
    """Unpause a run: the held inputs are applied in order (``saga.command.unpause.v1``)."""

    workflow_id: str
    reason: str = ""
    operator: str = ""
    run_id: str | None = None
    request_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ResetWorkflow:
    """Reset a run to a point: a new run replays its history up to there
    (``saga.command.reset.v1``). ``event_seq`` None: the last decision point."""

    workflow_id: str
    reason: str = ""
    operator: str = ""
    run_id: str | None = None
    event_seq: int | None = None
    before_build: str | None = None
    exclude_signals: bool = False
    request_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RepairWorkflow:
    """Repair a COMPENSATION_FAILED run (``saga.command.repair.v1``): retry its failed
    compensations (under ``retry_policy`` when set), or with ``skip``, count that
    failed compensation as done; compensation then goes on in the saga's order."""

    workflow_id: str
    run_id: str | None = None
    skip: str | None = None
    retry_policy: RetryPolicyRecord | None = None
    reason: str = ""
    operator: str = ""
    request_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdateWorkflow:
    """Run an update handler; the reply's correlation id is ``update_id`` (``...update.v1``)."""

    workflow_id: str
    update_id: str
    update_name: str
    args: list[Payload] = field(default_factory=list)
    reply_needed: bool = True
    run_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class QueryWorkflow:
    """Ask a query handler; the reply's correlation id is ``query_id`` (``...query.v1``)."""

    workflow_id: str
    query_id: str
    query_name: str
    args: list[Payload] = field(default_factory=list)
    run_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ActivityTaskCompleted:
    """An activity attempt returned (``saga.command.activity-completed.v2``)."""

    workflow_id: str
    run_id: str
    activity_seq: int
    attempt: int
    result: Payload
    identity: str = ""
    request_id: str | None = None
    """Set when sent by task token: the shard replies whether the attempt was running."""
    token_signature: str = ""
    """The attempt's signature, from its task or task token ("" unsigned)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ActivityTaskFailed:
    """An activity attempt raised (``saga.command.activity-failed.v2``)."""

    workflow_id: str
    run_id: str
    activity_seq: int
    attempt: int
    failure: Failure
    identity: str = ""
    request_id: str | None = None
    """Set when sent by task token: the shard replies whether the attempt was running."""
    token_signature: str = ""
    """The attempt's signature, from its task or task token ("" unsigned)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ActivityHeartbeat:
    """An activity attempt is alive (``saga.command.activity-heartbeat.v2``)."""

    workflow_id: str
    run_id: str
    activity_seq: int
    attempt: int
    details: list[Payload] = field(default_factory=list)
    request_id: str | None = None
    """Set when sent by task token: the shard replies whether the attempt was running."""
    token_signature: str = ""
    """The attempt's signature, from its task or task token ("" unsigned)."""


class ChildOutcome(enum.Enum):
    """What a :class:`ChildWorkflowResult` reports."""

    STARTED = "started"
    COMPLETED = "completed"
    FAILED = "failed"


@dataclass(frozen=True, slots=True, kw_only=True)
class ChildWorkflowResult:
    """News of a child for its parent run (``saga.command.child-result.v1``).

    Written by the engine on the child's shard. ``workflow_id``/``run_id`` name the
    parent (the receiver, and the record key); ``child_run_id`` is None when the
    child's start was refused (``outcome`` FAILED).
    """

    workflow_id: str
    run_id: str
    child_seq: int
    child_workflow_id: str
    outcome: ChildOutcome
    child_run_id: str | None = None
    result: Payload | None = None
    failure: Failure | None = None


Command = (
    StartWorkflow
    | SignalWorkflow
    | CancelWorkflow
    | TerminateWorkflow
    | UpdateWorkflow
    | QueryWorkflow
    | ActivityTaskCompleted
    | ActivityTaskFailed
    | ActivityHeartbeat
    | ChildWorkflowResult
    | PauseWorkflow
    | UnpauseWorkflow
    | ResetWorkflow
    | RepairWorkflow
)
"""Any record of the commands topic."""


# --- other topics --------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ActivityTask:
    """One activity attempt for a worker (``<prefix>.tasks.<queue>``, ``saga.task.activity.v3``)."""

    workflow_id: str
    run_id: str
    activity_seq: int
    activity_type: str
    attempt: int
    task_queue: str
    scheduled_time: int
    args: list[Payload] = field(default_factory=list)
    idempotency_key: str = ""
    start_to_close_timeout_ms: int | None = None
    schedule_to_close_timeout_ms: int | None = None
    heartbeat_timeout_ms: int | None = None
    heartbeat_details: list[Payload] = field(default_factory=list)
    priority: int = 0
    """Higher first on a flow-controlled queue (docs/flow-control.md); ignored elsewhere."""
    fairness_key: str = ""
    """The key a flow-controlled queue shares capacity by (e.g. a tenant); "" the default."""
    token_signature: str = ""
    """The engine's signature of this attempt ("" without a task-token key): part of the
    task token, echoed in the attempt's outcomes (orchestrator/task_token.py)."""

    def __post_init__(self) -> None:
        if not self.idempotency_key:
            key = idempotency_key(self.workflow_id, self.run_id, self.activity_seq)
            object.__setattr__(self, "idempotency_key", key)


@dataclass(frozen=True, slots=True, kw_only=True)
class ActivityCancel:
    """Stop one activity attempt (``<prefix>.activity-cancels``, ``saga.task.cancel.v1``):
    the engine no longer waits for it."""

    workflow_id: str
    run_id: str
    activity_seq: int
    attempt: int
    task_queue: str
    activity_type: str
    requested_time: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ActivityPause:
    """Whether one activity type of one task queue is paused
    (``<prefix>.activity-pauses``, ``saga.control.activity-pause.v1``; the latest
    record of ``{task_queue}/{activity_type}`` wins)."""

    task_queue: str
    activity_type: str
    paused: bool
    reason: str = ""
    operator: str = ""
    time: int
    """Epoch milliseconds of the pause or the unpause."""


def idempotency_key(workflow_id: str, run_id: str, activity_seq: int) -> str:
    """The stable key of an activity across attempts: ``{workflow_id}/{run_id}/{activity_seq}``."""
    return f"{workflow_id}/{run_id}/{activity_seq}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Reply:
    """The answer to a command (``<prefix>.replies``, ``saga.reply.v4``)."""

    correlation_id: str
    kind: ReplyKind
    workflow_id: str
    ok: bool
    run_id: str | None = None
    result: Payload | None = None
    error: Failure | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PauseState:
    """An operator's pause in force: why, who, since when (epoch ms)."""

    reason: str
    operator: str
    time: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RepairNote:
    """An operator's repair of a failed compensation: ``retry`` or ``skip`` (of
    ``activity_type``), why, who, when (epoch ms)."""

    action: str
    reason: str
    operator: str
    time: int
    activity_type: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkflowSnapshot:
    """Latest status of a workflow id (``<prefix>.history``, ``saga.history.snapshot.v6``)."""

    workflow_id: str
    run_id: str
    workflow_type: str
    task_queue: str
    status: WorkflowStatus
    start_time: int
    last_seq: int
    close_time: int | None = None
    result: Payload | None = None
    failure: Failure | None = None
    search_attributes: dict[str, Payload] = field(default_factory=dict)
    memo: dict[str, Payload] = field(default_factory=dict)
    parked: str | None = None
    """Why the run cannot make progress (non-determinism); None when it can."""
    parent: ParentExecution | None = None
    """The parent run, when this workflow was started as a child (snapshot v2)."""
    start_request_id: str | None = None
    """Request id of the start that began this run or its continue-as-new chain (v3)."""
    start_run_id: str | None = None
    """The run that start created: what its START reply named (v3)."""
    paused: PauseState | None = None
    """Set while an operator has paused the run (v4); the status stays RUNNING or
    COMPENSATING, since a pause holds the run where it is."""
    repairs: list[RepairNote] = field(default_factory=list)
    """Operators' repairs of the run's failed compensations, oldest first (v5)."""
    workflow_version: int = 1
    """The version of the type's definition the run is pinned to (v6; 1 before)."""
    priority: int = 0
    """The run's priority, from its start (v7; 0 before)."""
    fairness_key: str = ""
    """The run's fairness key, from its start (v7; "" before)."""


# --- flow control (docs/flow-control.md) ---------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class FlowControl:
    """The flow control of one task queue (``<prefix>.flow-control``, ``saga.flow.config.v1``)."""

    queue: str
    rate: float | None = None
    burst: int = 1
    key_rate: float | None = None
    key_burst: int = 1
    weights: dict[str, float] = field(default_factory=dict)
    default_weight: float = 1.0
    window: int = 64


@dataclass(frozen=True, slots=True, kw_only=True)
class FlowState:
    """A dispatcher's progress on one queue (``saga.flow.state.v1``, fields in the schema)."""

    queue: str
    time_ms: int
    low: int
    position: int
    pending: list[int] = field(default_factory=list)
    queue_tokens: float | None = None
    key_tokens: dict[str, float] = field(default_factory=dict)
    released: int = 0
    released_keys: dict[str, int] = field(default_factory=dict)
    throttled: int = 0
    throttled_keys: dict[str, int] = field(default_factory=dict)
    window_full: int = 0
    waiting: dict[str, int] = field(default_factory=dict)
    unstarted: int = 0
