"""The typed history event model.

Every event is a frozen, slotted dataclass deriving from :class:`Event`, with

- ``seq``: the event's position in its run's history, 1-based and gapless;
- ``time``: **workflow time as int epoch milliseconds (UTC)**. Every time in this
  module (``fire_at``, ``next_retry_at``) is epoch milliseconds too, and every
  duration is int milliseconds (fields ending in ``_ms``).

Events that the workflow *code* causes derive from :class:`DecisionEvent` and carry
the ``build_id`` of the worker that decided them. Replay re-runs the code and checks
each decision it makes against these events. All other events are *inputs*: facts
from outside the code (a start, an activity result, a fired timer, a signal, an
accepted update, a cancel request) or engine bookkeeping derived from such facts
(an attempt failure with its retry time). Replay feeds inputs back to the code.

User values are always :class:`~orchestrator.converter.Payload` (encoded bytes),
never Python objects. Field types are deliberately plain (str, int, float, bool,
bytes, Optional, list/dict of those, Payload, nested frozen records) so that each
event maps one-to-one onto an Avro record. The set and shape of events is a wire
contract: evolve it only by adding fields with defaults.

Validator rejections of updates are not history (nothing happened), so there is no
"update rejected" event; the reply carries the rejection.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from orchestrator.converter import Payload

__all__ = [
    "EVENT_TYPES",
    "REPAIR_RETRY",
    "REPAIR_SKIP",
    "ActivityAttemptFailed",
    "ActivityCancelRequested",
    "ActivityCompleted",
    "ActivityFailed",
    "ActivityScheduled",
    "ActivityTimedOut",
    "ChildWorkflowCancelRequested",
    "ChildWorkflowCompleted",
    "ChildWorkflowFailed",
    "ChildWorkflowInitiated",
    "ChildWorkflowStarted",
    "CompensationCompleted",
    "CompensationFailed",
    "CompensationRepaired",
    "CompensationStarted",
    "DecisionEvent",
    "Event",
    "Failure",
    "InputDeferred",
    "MarkerRecorded",
    "MemoUpserted",
    "ResetOrigin",
    "RetryPolicyRecord",
    "SearchAttributesUpserted",
    "SignalReceived",
    "TimerCancelled",
    "TimerFired",
    "TimerStarted",
    "UpdateAccepted",
    "UpdateCompleted",
    "WorkflowCancelRequested",
    "WorkflowCancelled",
    "WorkflowCompensationFailed",
    "WorkflowCompleted",
    "WorkflowContinuedAsNew",
    "WorkflowFailed",
    "WorkflowPaused",
    "WorkflowStarted",
    "WorkflowTerminated",
    "WorkflowTimedOut",
    "WorkflowUnpaused",
]

# Timeout kinds used in ActivityTimedOut.timeout_type and timer ids.
START_TO_CLOSE: Final = "start_to_close"
SCHEDULE_TO_CLOSE: Final = "schedule_to_close"
HEARTBEAT: Final = "heartbeat"

# Parent-close policies recorded in ChildWorkflowInitiated.parent_close_policy (the
# values of orchestrator.workflow.ParentClosePolicy).
PARENT_CLOSE_TERMINATE: Final = "TERMINATE"
PARENT_CLOSE_REQUEST_CANCEL: Final = "REQUEST_CANCEL"
PARENT_CLOSE_ABANDON: Final = "ABANDON"

# Marker names used by the engine itself.
MARKER_PATCH: Final = "patch"
MARKER_SIDE_EFFECT: Final = "side_effect"
#: an answer of ``ctx.newer_version_available()``: id ``v{N}`` (True: the worker held
#: version N, newer than the run's) or ``none`` (False); replays return the recorded one
MARKER_UPGRADE: Final = "upgrade"


# --- nested records ------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Failure:
    """A recorded error: type name, message, retryability and an optional cause.

    ``type`` is the exception class name or an ApplicationError's ``type``;
    ``next_retry_delay_ms`` is an activity's own request for its next retry delay.
    """

    message: str
    type: str
    non_retryable: bool = False
    stack_trace: str = ""
    details: list[Payload] = field(default_factory=list)
    next_retry_delay_ms: int | None = None
    cause: Failure | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicyRecord:
    """A retry policy as recorded (durations in ms; ``max_attempts`` 0 = unlimited)."""

    initial_ms: int
    backoff: float
    maximum_ms: int
    max_attempts: int = 0
    expire_after_ms: int | None = None
    non_retryable_errors: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True, kw_only=True)
class ResetOrigin:
    """Set in the ``WorkflowStarted`` of a run an operator's reset started: the run it
    reset (``from_run_id``), whose first ``to_seq`` events this run's history begins
    with, who reset it and why.

    ``activity_keys``: for each activity scheduled up to the reset point (by
    ``activity_seq``, as text), the run id its idempotency key keeps, so a re-executed
    attempt carries the key its first execution had."""

    from_run_id: str
    to_seq: int
    reason: str = ""
    operator: str = ""
    activity_keys: dict[str, str] = field(default_factory=dict)


# --- bases -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Base of all history events: position and workflow time (epoch ms)."""

    seq: int
    time: int


@dataclass(frozen=True, slots=True, kw_only=True)
class DecisionEvent(Event):
    """An event caused by workflow code; records the deciding worker's build id."""

    build_id: str = ""


# --- workflow lifecycle ----------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkflowStarted(Event):
    """A run began. ``random_seed`` seeds ``ctx.random()``/``ctx.uuid4()``."""

    workflow_type: str
    workflow_id: str
    run_id: str
    task_queue: str
    input: list[Payload] = field(default_factory=list)
    random_seed: int = 0
    parent_workflow_id: str | None = None
    parent_run_id: str | None = None
    continued_from_run_id: str | None = None
    memo: dict[str, Payload] = field(default_factory=dict)
    search_attributes: dict[str, Payload] = field(default_factory=dict)
    #: when the execution timeout closes the workflow (epoch ms; kept by continued runs)
    execution_deadline: int | None = None
    #: set when an operator's reset started this run (v3)
    reset: ResetOrigin | None = None
    #: the version of the workflow type's definition the run is pinned to (v6; a run
    #: recorded before versions existed reads as 1, the only version there was)
    workflow_version: int = 1
    #: priority and fairness key on flow-controlled queues, taken by the run's
    #: activities and children that name none (v7; runs recorded before: 0 and "")
    priority: int = 0
    fairness_key: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkflowCancelRequested(Event):
    """Someone asked the run to cancel; the code gets CancelledError.

    ``timed_out``: the execution timeout asked (the run then closes TIMED_OUT)."""

    reason: str = ""
    timed_out: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkflowTerminated(Event):
    """An operator ended the run; no more code runs (terminal). ``reset_run_id``: the
    run was ended by a reset, which started that run in its place (v3)."""

    reason: str = ""
    operator: str = ""
    reset_run_id: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkflowCompleted(DecisionEvent):
    """The run returned ``result`` (terminal)."""

    result: Payload


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkflowFailed(DecisionEvent):
    """The run raised ``failure`` (terminal); compensations, if any, succeeded."""

    failure: Failure


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkflowCancelled(DecisionEvent):
    """The run ended by cancellation (terminal); compensations, if any, succeeded."""


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkflowTimedOut(DecisionEvent):
    """The execution timeout cancelled the run and the cancellation ended its code
    (terminal); compensations, if any, succeeded."""


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkflowCompensationFailed(DecisionEvent):
    """A compensation exhausted its retry policy (terminal, needs an operator).

    ``failure`` is the error that started compensating (a cancellation is recorded
    as type ``CancelledError``); ``compensation_failures`` are the compensations'.
    """

    failure: Failure
    compensation_failures: list[Failure] = field(default_factory=list)


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkflowContinuedAsNew(DecisionEvent):
    """The run ended by starting a fresh run ``new_run_id`` with ``input``."""

    new_run_id: str
    workflow_type: str
    task_queue: str
    input: list[Payload] = field(default_factory=list)
    #: the chain's execution deadline, for the next run (epoch ms)
    execution_deadline: int | None = None
    #: the version the author asked the next run to start on; None: the newest (v6)
    workflow_version: int | None = None


# --- activities ------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ActivityScheduled(DecisionEvent):
    """The code called an activity; attempt 1 is dispatched at ``time``.

    ``activity_seq`` numbers the run's activities from 1; the idempotency key is
    ``"{workflow_id}/{run_id}/{activity_seq}"`` for every attempt.
    """

    activity_seq: int
    activity_type: str
    task_queue: str
    input: list[Payload] = field(default_factory=list)
    retry_policy: RetryPolicyRecord
    start_to_close_ms: int | None = None
    schedule_to_close_ms: int | None = None
    heartbeat_timeout_ms: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ActivityCompleted(Event):
    """Attempt ``attempt`` of the activity returned ``result``."""

    activity_seq: int
    attempt: int
    result: Payload


@dataclass(frozen=True, slots=True, kw_only=True)
class ActivityAttemptFailed(Event):
    """An attempt failed (or timed out) and will be retried at ``next_retry_at``.

    The retry timer's firing is recorded as ``TimerFired`` with id
    ``activity/{activity_seq}/retry/{attempt}``; attempt + 1 is dispatched then.
    """

    activity_seq: int
    attempt: int
    failure: Failure
    next_retry_at: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ActivityFailed(Event):
    """The activity failed for good: non-retryable error or policy exhausted."""

    activity_seq: int
    attempt: int
    failure: Failure


@dataclass(frozen=True, slots=True, kw_only=True)
class ActivityTimedOut(Event):
    """The activity failed for good by timeout (``start_to_close``, ...)."""

    activity_seq: int
    attempt: int
    timeout_type: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ActivityCancelRequested(DecisionEvent):
    """The code stopped waiting for the activity (cancelled); later results are dropped."""

    activity_seq: int


# --- timers ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class TimerStarted(DecisionEvent):
    """A durable timer (sleep, wait timeout) set to fire at ``fire_at`` (epoch ms)."""

    timer_id: str
    fire_at: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TimerFired(Event):
    """A timer fired: a user timer (``timer/{n}``) or a retry timer (``activity/...``)."""

    timer_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TimerCancelled(DecisionEvent):
    """The code cancelled a user timer before it fired."""

    timer_id: str


# --- signals and updates ---------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class SignalReceived(Event):
    """A signal was delivered to the run.

    ``request_id``: the signal command's request id (else its ce_id); a signal whose
    id the run already applied is acknowledged and not recorded again (v7; None for
    signals recorded before, which de-duplicate nothing)."""

    signal_name: str
    args: list[Payload] = field(default_factory=list)
    request_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdateAccepted(Event):
    """An update passed its validator; its handler starts now."""

    update_id: str
    update_name: str
    args: list[Payload] = field(default_factory=list)


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdateCompleted(DecisionEvent):
    """An update handler finished with ``result`` or ``failure``."""

    update_id: str
    result: Payload | None = None
    failure: Failure | None = None


# --- child workflows -------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ChildWorkflowInitiated(DecisionEvent):
    """The code started a child workflow (``child_seq`` numbers them from 1).

    ``parent_close_policy``: what the engine does to the child, if it is still open,
    when this run closes (``TERMINATE``, ``REQUEST_CANCEL`` or ``ABANDON``; v5, and
    events written before decode as ``ABANDON``, the behaviour they were made under).
    """

    child_seq: int
    workflow_type: str
    workflow_id: str
    task_queue: str
    input: list[Payload] = field(default_factory=list)
    parent_close_policy: str = PARENT_CLOSE_ABANDON


@dataclass(frozen=True, slots=True, kw_only=True)
class ChildWorkflowCancelRequested(DecisionEvent):
    """The code asked child ``child_seq`` to cancel, through its handle (v5).

    The cancel request to the child travels with this decision; the child's end
    reaches the parent as usual (ChildWorkflowFailed when it ends cancelled,
    ChildWorkflowCompleted when its code catches the cancellation and returns)."""

    child_seq: int
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ChildWorkflowStarted(Event):
    """The child's first run exists with ``run_id``."""

    child_seq: int
    run_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ChildWorkflowCompleted(Event):
    """The child returned ``result``."""

    child_seq: int
    result: Payload


@dataclass(frozen=True, slots=True, kw_only=True)
class ChildWorkflowFailed(Event):
    """The child failed, was cancelled or terminated; ``failure`` says which."""

    child_seq: int
    failure: Failure


# --- markers, sagas, metadata ----------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class MarkerRecorded(DecisionEvent):
    """A named fact recorded by the code: ``patch`` (``ctx.patched``), ``side_effect``
    or ``upgrade`` (``ctx.newer_version_available``)."""

    marker_name: str
    marker_id: str
    payload: Payload | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CompensationStarted(DecisionEvent):
    """Saga ``saga_id`` began compensating ``compensations`` (activity types, in order)."""

    saga_id: int
    compensations: list[str] = field(default_factory=list)
    cause: Failure | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CompensationCompleted(DecisionEvent):
    """Every compensation of saga ``saga_id`` succeeded."""

    saga_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class CompensationFailed(DecisionEvent):
    """A compensation of saga ``saga_id`` exhausted its retry policy."""

    saga_id: int
    activity_type: str
    failure: Failure


@dataclass(frozen=True, slots=True, kw_only=True)
class SearchAttributesUpserted(DecisionEvent):
    """The code set search attributes (merged into the run's attributes)."""

    attributes: dict[str, Payload] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class MemoUpserted(DecisionEvent):
    """The code set memo entries (merged into the run's memo)."""

    memo: dict[str, Payload] = field(default_factory=dict)


# --- operator's pause ------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkflowPaused(Event):
    """An operator paused the run: from here on inputs are recorded as
    :class:`InputDeferred` and reach the code only after :class:`WorkflowUnpaused`."""

    reason: str = ""
    operator: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkflowUnpaused(Event):
    """An operator unpaused the run; the inputs deferred since the pause are applied
    next, in the order they came (the events they lead to follow this one)."""

    reason: str = ""
    operator: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class InputDeferred(Event):
    """An input that reached a paused run, kept until the unpause (no effect before).

    ``kind`` names the input (see :mod:`orchestrator.engine.deferral`); the other
    fields hold what that kind carries and keep their defaults otherwise."""

    kind: str
    name: str = ""
    """Signal or update name, or timer id."""
    update_id: str = ""
    args: list[Payload] = field(default_factory=list)
    seq_of: int = 0
    """Activity seq or child seq."""
    attempt: int = 0
    run_id: str = ""
    """A child's run id."""
    result: Payload | None = None
    failure: Failure | None = None
    reason: str = ""
    """A cancel request's reason."""
    request_id: str | None = None
    """A held signal's request id (v7)."""


# --- operator's repair of a failed compensation ---------------------------------


REPAIR_RETRY: Final = "retry"
REPAIR_SKIP: Final = "skip"


@dataclass(frozen=True, slots=True, kw_only=True)
class CompensationRepaired(Event):
    """An operator reopened a COMPENSATION_FAILED run: its compensation goes on
    (the run is COMPENSATING again) from the compensation that failed (v4).

    ``action`` is ``retry`` (run the failed compensations again, under
    ``retry_policy`` when set, else their own) or ``skip`` (``activity_type``, a
    failed compensation, counts as done without running; the saga goes on with
    the compensations after it)."""

    action: str
    activity_type: str = ""
    retry_policy: RetryPolicyRecord | None = None
    reason: str = ""
    operator: str = ""


EVENT_TYPES: Final[dict[str, type[Event]]] = {
    cls.__name__: cls
    for cls in (
        WorkflowStarted,
        WorkflowCancelRequested,
        WorkflowTerminated,
        WorkflowCompleted,
        WorkflowFailed,
        WorkflowCancelled,
        WorkflowCompensationFailed,
        WorkflowContinuedAsNew,
        WorkflowTimedOut,
        ActivityScheduled,
        ActivityCompleted,
        ActivityAttemptFailed,
        ActivityFailed,
        ActivityTimedOut,
        ActivityCancelRequested,
        TimerStarted,
        TimerFired,
        TimerCancelled,
        SignalReceived,
        UpdateAccepted,
        UpdateCompleted,
        ChildWorkflowInitiated,
        ChildWorkflowStarted,
        ChildWorkflowCompleted,
        ChildWorkflowFailed,
        MarkerRecorded,
        CompensationStarted,
        CompensationCompleted,
        CompensationFailed,
        SearchAttributesUpserted,
        MemoUpserted,
        WorkflowPaused,
        WorkflowUnpaused,
        InputDeferred,
        CompensationRepaired,
        ChildWorkflowCancelRequested,
    )
}
"""Every concrete event class by name (the type tag in JSON exports)."""

TERMINAL_EVENTS: Final = (
    WorkflowCompleted,
    WorkflowFailed,
    WorkflowCancelled,
    WorkflowCompensationFailed,
    WorkflowContinuedAsNew,
    WorkflowTerminated,
    WorkflowTimedOut,
)
"""Events that close a run: after them it has no more history, except that an
operator's :class:`CompensationRepaired` may follow ``WorkflowCompensationFailed``."""
