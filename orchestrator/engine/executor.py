"""The replay state machine: history in, new events and commands out. No I/O.

Contract for runtimes (the Kafka shard processor, the test environment)::

    executor = WorkflowExecutor(definition, history, build_id="b-42")
    decision = executor.apply([input, ...], now_ms)
    # append decision.events to history and execute decision.commands, atomically

- The constructor replays ``history``: it runs the workflow code on a fresh
  deterministic loop, feeding every recorded input event and checking that each
  decision the code makes equals the decision event recorded at that position.
  A difference raises :class:`~orchestrator.exceptions.NonDeterminismError` naming
  the event seq, the recorded (expected) and the new (actual) decision. So does
  calling ``time.time()``, ``random.random()`` or I/O inside the code (see
  :mod:`orchestrator.engine.guards`). Either way the run must be parked, not failed.
- ``apply(inputs, now_ms)`` turns inputs (see :mod:`orchestrator.engine.inputs`)
  into input events, one at a time; after each it runs the code until every
  coroutine is blocked. It returns a :class:`Decision`: the events to append (with
  ``seq`` numbers continuing the history, ``time`` = ``now_ms`` or later) and the
  :mod:`~orchestrator.engine.commands` to execute. Inputs that no longer matter
  (a result for an old attempt, a cancelled timer, an update its validator
  rejects) add no events; refusals with a reason (a signal whose arguments the
  handler cannot decode) are listed in ``Decision.rejected``. Decisions the
  replay made beyond the end of ``history`` are returned by the next ``apply``
  (``apply([], now)`` fetches them).
- If ``apply`` raises (a WorkflowTaskError), discard the executor and the batch.
- Delivering inputs one at a time, each followed by running the code to
  quiescence, makes the result independent of how a runtime batches inputs, so
  replay needs no batch markers in history.
- After a restore, :meth:`pending_timers` and :meth:`running_activities` say what
  timers to keep and which activity attempts are outstanding.
- To keep a million sleeping runs cheap, evict idle executors (:meth:`evict`)
  and keep only their timers; a fired timer restores the run from history.
- Queries: :meth:`query`. The run's status: :attr:`status`.
- Pause (an operator's): after a ``PauseWorkflow`` input, inputs are recorded as
  ``InputDeferred`` events and reach the code only after ``UnpauseWorkflow``
  (:mod:`orchestrator.engine.deferral`); :attr:`paused` says whether and why.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from orchestrator.converter import DataConverter, Payload
from orchestrator.engine import events as ev
from orchestrator.engine.activities import ActivityMixin, _Activity, _ActState
from orchestrator.engine.commands import (
    CancelTimer,
    Command,
    ContinueAsNewRun,
    RespondUpdate,
    ScheduleActivityTask,
    StartTimer,
)
from orchestrator.engine.deferral import from_deferred, to_deferred
from orchestrator.engine.failures import (
    from_failure,
    to_failure,
)
from orchestrator.engine.guards import GuardMode, UnguardedCodec, guarded
from orchestrator.engine.inputs import (
    ActivityTaskCompleted,
    ActivityTaskFailed,
    ActivityTaskHeartbeat,
    CancelWorkflow,
    ChildCompleted,
    ChildFailed,
    ChildStarted,
    FireTimer,
    Input,
    PauseWorkflow,
    RepairCompensation,
    RequestUpdate,
    SendSignal,
    StartWorkflow,
    TerminateWorkflow,
    UnpauseWorkflow,
)
from orchestrator.engine.loop import WorkflowEventLoop
from orchestrator.engine.recording import RUN_ID_NAMESPACE, Counters, RecordingMixin, _Child
from orchestrator.engine.stack import STACK_QUERY, TaskStack, task_stacks
from orchestrator.exceptions import (
    CompensationError,
    ContinueAsNew,
    NonDeterminismError,
    NondeterministicCallError,
    PayloadConversionError,
    QueryError,
    WorkflowTaskError,
)
from orchestrator.retry import RetryPolicy
from orchestrator.status import WorkflowStatus, is_transition_valid
from orchestrator.workflow import WorkflowDefinition

if TYPE_CHECKING:
    from orchestrator.engine.context import EngineContext

__all__ = ["Decision", "WorkflowExecutor"]



@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of :meth:`WorkflowExecutor.apply`: events to append, commands to run."""

    events: list[ev.Event]
    commands: list[Command]
    status: WorkflowStatus
    rejected: list[str] = field(default_factory=list)
    """Inputs refused without a trace, with the reason (e.g. an undecodable signal)."""


def _describe(e: ev.Event) -> str:
    key = _key(e)
    return f"{key[0]}({', '.join(key[1:])})" if len(key) > 1 else key[0]


def _key(e: ev.Event) -> tuple[str, ...]:  # noqa: PLR0911
    """What must match between a recorded decision and a replayed one."""
    name = type(e).__name__
    if isinstance(e, ev.ActivityScheduled):
        return (name, e.activity_type)
    if isinstance(e, ev.ActivityCancelRequested):
        return (name, str(e.activity_seq))
    if isinstance(e, ev.TimerStarted | ev.TimerCancelled):
        return (name, e.timer_id)
    if isinstance(e, ev.ChildWorkflowInitiated):
        return (name, e.workflow_type)
    if isinstance(e, ev.MarkerRecorded):
        return (name, e.marker_name, e.marker_id)
    if isinstance(e, ev.UpdateCompleted):
        return (name, e.update_id)
    if isinstance(e, ev.CompensationStarted | ev.CompensationCompleted):
        return (name, str(e.saga_id))
    if isinstance(e, ev.CompensationFailed):
        return (name, str(e.saga_id), e.activity_type)
    return (name,)


SEED_BITS: Final = 53
"""Width of a new run's ``random_seed``: a JavaScript number holds an integer exactly
up to 2**53, so a reader such as avsc decodes the Avro long without BigInt. Runs
started before this limit keep their stored (up to 63-bit) seeds when replayed."""


def seed_for_run(run_id: str) -> int:
    """The ``random_seed`` of a new run: 53 bits of SHA-256 of its run id."""
    digest = int.from_bytes(hashlib.sha256(run_id.encode()).digest()[:8], "big")
    return digest >> (64 - SEED_BITS)


_STATUS_OF: dict[type[ev.Event], WorkflowStatus] = {
    ev.CompensationStarted: WorkflowStatus.COMPENSATING,
    ev.CompensationRepaired: WorkflowStatus.COMPENSATING,
    ev.CompensationCompleted: WorkflowStatus.RUNNING,
    ev.WorkflowCompleted: WorkflowStatus.COMPLETED,
    ev.WorkflowFailed: WorkflowStatus.FAILED,
    ev.WorkflowCancelled: WorkflowStatus.CANCELLED,
    ev.WorkflowCompensationFailed: WorkflowStatus.COMPENSATION_FAILED,
    ev.WorkflowContinuedAsNew: WorkflowStatus.CONTINUED_AS_NEW,
    ev.WorkflowTerminated: WorkflowStatus.TERMINATED,
    ev.WorkflowTimedOut: WorkflowStatus.TIMED_OUT,
}

EXECUTION_TIMEOUT_TIMER = "execution-timeout"
"""Timer id of a run's execution timeout (the runtime holds it like any timer)."""
#: the generator of a run not started yet (nothing draws from it: the code runs after
#: the start, which seeds the run's own from its history)
_UNSTARTED_RNG = random.Random(0)


class WorkflowExecutor(ActivityMixin, RecordingMixin):
    """Runs one workflow run by deterministic replay; see the module docstring."""

    __slots__ = (
        "_activities",
        "_activity_keys",
        "_build_id",
        "_children",
        "_closed",
        "_commands",
        "_conditions",
        "_conv",
        "_counters",
        "_ctx",
        "_cursor",
        "_deferred",
        "_defn",
        "_fatal",
        "_guard",
        "_history",
        "_live",
        "_loop",
        "_main",
        "_new_events",
        "_now",
        "_patches",
        "_paused",
        "_read_only",
        "_rejected",
        "_repairs",
        "_rng",
        "_started",
        "_status",
        "_suppress",
        "_timed_out",
        "_timer_by_handle",
        "_timer_fire_at",
        "_timers",
        "cancel_requested",
        "memo",
        "search_attributes",
    )

    def __init__(
        self,
        definition: WorkflowDefinition,
        history: Sequence[ev.Event] = (),
        *,
        build_id: str = "",
        converter: DataConverter | None = None,
        guard: GuardMode = "raise",
    ) -> None:
        self._defn = definition
        self._build_id = build_id
        conv = converter or DataConverter()
        if conv.codec is not None and not isinstance(conv.codec, UnguardedCodec):
            conv = dataclasses.replace(conv, codec=UnguardedCodec(conv.codec))
        self._conv = conv
        self._guard: GuardMode = guard
        self._history: list[ev.Event] = list(history)
        self._cursor = 0
        self._new_events: list[ev.Event] = []
        self._commands: list[Command] = []
        self._rejected: list[str] = []
        self._status = WorkflowStatus.RUNNING
        self._fatal: BaseException | None = None
        self._now = 0
        self._live = False
        self._closed = False
        self._suppress = False
        self._read_only: str | None = None
        self._started: ev.WorkflowStarted | None = None
        self._loop: WorkflowEventLoop | None = None
        self._ctx: EngineContext | None = None
        self._main: asyncio.Task[Any] | None = None
        self._rng = _UNSTARTED_RNG  # replaced, seeded from history, when the run starts
        self._activities: dict[int, _Activity] = {}
        self._activity_keys: dict[int, str] = {}
        self._children: dict[int, _Child] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._timer_fire_at: dict[str, int] = {}
        self._timer_by_handle: dict[int, str] = {}
        self._conditions: list[tuple[Any, asyncio.Future[bool]]] = []
        self._patches: dict[str, bool] = {}
        self._paused: ev.WorkflowPaused | None = None
        self._deferred: list[Input] = []
        self._repairs: list[ev.CompensationRepaired] = []
        self._counters = Counters()
        self.cancel_requested = False
        self._timed_out = False
        self.search_attributes: dict[str, Payload] = {}
        self.memo: dict[str, Payload] = {}
        if self._history:
            self._replay()

    # --- public surface -------------------------------------------------------------

    @property
    def status(self) -> WorkflowStatus:
        """The run's status after the events seen so far."""
        return self._status

    @property
    def paused(self) -> ev.WorkflowPaused | None:
        """The pause in force (who paused the run, why and when), None when not paused."""
        return self._paused

    @property
    def repairs(self) -> list[ev.CompensationRepaired]:
        """Operators' repairs of this run's failed compensations, oldest first."""
        return list(self._repairs)

    def failed_compensations(self) -> list[str]:
        """Activity types of the compensations whose failure closed the run
        COMPENSATION_FAILED (empty for any other status): what a repair may skip."""
        if self._status is not WorkflowStatus.COMPENSATION_FAILED or self._ctx is None:
            return []
        return self._context().failed_compensations()

    @property
    def history(self) -> list[ev.Event]:
        """The full history (recorded and new events), in order."""
        return list(self._history)

    @property
    def is_replaying(self) -> bool:
        """True while recorded history is being re-run."""
        return self._cursor < len(self._history)

    @property
    def definition(self) -> WorkflowDefinition:
        """The workflow definition this executor runs."""
        return self._defn

    @property
    def converter(self) -> DataConverter:
        """The data converter for arguments and results."""
        return self._conv

    @property
    def started(self) -> ev.WorkflowStarted:
        """The run's WorkflowStarted event."""
        if self._started is None:
            raise RuntimeError("the run has not started")
        return self._started

    @property
    def main_task(self) -> asyncio.Task[Any] | None:
        """The task running the workflow's run function."""
        return self._main

    @property
    def now_ms(self) -> int:
        """Workflow time of the latest event (epoch ms)."""
        return self._now

    def apply(self, inputs: Sequence[Input], now_ms: int) -> Decision:
        """Feed inputs at time ``now_ms``; see the module docstring for the contract."""
        if self._fatal is not None:
            raise self._fatal
        self._live = True
        for inp in inputs:
            self._now = max(self._now, now_ms)
            if self._closed and not isinstance(inp, RequestUpdate | RepairCompensation):
                continue
            self._handle(inp)
            self._raise_fatal()
        out = Decision(self._new_events, self._commands, self._status, self._rejected)
        self._new_events, self._commands, self._rejected = [], [], []
        return out

    def query(self, name: str, args: Sequence[Payload] = ()) -> Payload:
        """Answer query ``name`` from the run's current state (no history is written);
        the reserved :data:`~orchestrator.engine.stack.STACK_QUERY` with :meth:`stack`."""
        if name == STACK_QUERY:
            return self._conv.to_payload([s.to_json() for s in self.stack()])
        handler = self._context().query_handler(name)
        if handler is None:
            known = sorted(self._context().query_names())
            raise QueryError(f"unknown query {name!r}; known queries: {known}")
        try:
            decoded = self._conv.from_payloads(args, handler.arg_types)
        except PayloadConversionError as exc:
            raise QueryError(f"query {name!r}: bad arguments: {exc}") from exc
        result = self._run_read_only(f"query {name!r}", handler.fn, decoded)
        return self._conv.to_payload(result)

    def stack(self) -> list[TaskStack]:
        """Where each task of the run is suspended and what it awaits (empty when the
        run is closed or evicted)."""
        if self._loop is None or self._closed or self._ctx is None:
            return []
        return task_stacks(_Waits(self))

    def key_run_id(self, activity_seq: int) -> str:
        """The run id in activity ``activity_seq``'s idempotency key: this run's, or
        for an activity scheduled before a reset point, the run that first ran it."""
        return self._activity_keys.get(activity_seq, self.started.run_id)

    def pending_timers(self) -> list[StartTimer]:
        """Every timer the runtime should hold for this run (for restore)."""
        if self._closed:
            return []
        out = [StartTimer(timer_id=t, fire_at=at) for t, at in self._timer_fire_at.items()]
        deadline = self._execution_timer()
        if deadline is not None:
            out.append(deadline)
        for act in self._activities.values():
            out.extend(self._activity_timers(act))
        # a timer that fired while paused is held in history: it must not fire again
        held = {i.timer_id for i in self._deferred if isinstance(i, FireTimer)}
        return [t for t in out if t.timer_id not in held] if held else out

    def quiet_until(self, until_ms: int) -> bool:
        """True when nothing but a command can move this open run before ``until_ms``:
        no activity attempt is running and no timer is due by then (a runtime may
        then drop the executor and replay it when something happens)."""
        if self._closed or self._fatal is not None:
            return False
        if any(a.state is _ActState.RUNNING for a in self._activities.values()):
            return False
        return all(t.fire_at > until_ms for t in self.pending_timers())

    def running_activities(self) -> list[ScheduleActivityTask]:
        """Activity attempts that are dispatched and not finished (for restore)."""
        if self._closed:
            return []
        return [
            self._task(a) for a in self._activities.values() if a.state is _ActState.RUNNING
        ]

    # --- replay -----------------------------------------------------------------------

    def _replay(self) -> None:
        first = self._history[0]
        if not isinstance(first, ev.WorkflowStarted):
            raise NonDeterminismError(
                "history must begin with WorkflowStarted",
                seq=first.seq, expected="WorkflowStarted", actual=type(first).__name__,
            )
        while self._cursor < len(self._history):
            rec = self._history[self._cursor]
            if isinstance(rec, ev.DecisionEvent):
                self._fail(
                    NonDeterminismError(
                        "history records a command the workflow code did not issue",
                        seq=rec.seq, expected=_describe(rec), actual="no command",
                    )
                )
                self._raise_fatal()
            self._cursor += 1
            self._deliver(rec, live=False)
            self._raise_fatal()

    # --- inputs -------------------------------------------------------------------------

    def _next_seq(self) -> int:
        return len(self._history) + 1

    def _accept(self, e: ev.Event) -> None:
        self._history.append(e)
        self._cursor = len(self._history)
        self._new_events.append(e)
        self._deliver(e, live=True)

    def _handle(self, inp: Input) -> None:  # noqa: PLR0912
        seq, now = self._next_seq(), self._now
        if isinstance(inp, StartWorkflow):
            if self._history:
                raise ValueError("StartWorkflow must be the first input of an empty history")
            self._accept(self._started_event(inp, seq, now))
            deadline = self._execution_timer()
            if deadline is not None:
                self._commands.append(deadline)
        elif self._started is None:
            raise ValueError("the first input must be StartWorkflow")
        elif isinstance(inp, RepairCompensation):
            self._handle_repair(inp)
        elif isinstance(inp, PauseWorkflow | UnpauseWorkflow):
            self._handle_pause(inp)
        elif self._paused is not None and self._hold(inp):
            return
        elif isinstance(inp, ActivityTaskCompleted | ActivityTaskFailed | ActivityTaskHeartbeat):
            self._handle_activity_input(inp)
        elif isinstance(inp, FireTimer):
            self._handle_timer(inp.timer_id)
        elif isinstance(inp, SendSignal):
            problem = self._context().check_signal(inp.name, inp.args)
            if problem is not None:
                self._rejected.append(problem)
                return
            self._accept(ev.SignalReceived(seq=seq, time=now, signal_name=inp.name,
                                           args=list(inp.args)))
        elif isinstance(inp, RequestUpdate):
            self._handle_update(inp)
        elif isinstance(inp, CancelWorkflow):
            if not self.cancel_requested:
                self._accept(ev.WorkflowCancelRequested(seq=seq, time=now, reason=inp.reason))
        elif isinstance(inp, TerminateWorkflow):
            self._accept(ev.WorkflowTerminated(seq=seq, time=now, reason=inp.reason,
                                               operator=inp.operator,
                                               reset_run_id=inp.reset_run_id))
        else:
            child = self._children.get(inp.child_seq)
            if child is None or child.future.done():
                return
            if isinstance(inp, ChildStarted):
                if child.run_id is None:
                    self._accept(ev.ChildWorkflowStarted(seq=seq, time=now,
                                                         child_seq=inp.child_seq,
                                                         run_id=inp.run_id))
            elif isinstance(inp, ChildCompleted):
                self._accept(ev.ChildWorkflowCompleted(seq=seq, time=now,
                                                       child_seq=inp.child_seq,
                                                       result=inp.result))
            elif isinstance(inp, ChildFailed):
                self._accept(ev.ChildWorkflowFailed(seq=seq, time=now,
                                                    child_seq=inp.child_seq,
                                                    failure=inp.failure))

    def _handle_pause(self, inp: PauseWorkflow | UnpauseWorkflow) -> None:
        """Pause, or unpause and apply the held inputs in order; a repeat is a no-op."""
        seq, now = self._next_seq(), self._now
        if isinstance(inp, PauseWorkflow):
            if self._paused is None:
                self._accept(ev.WorkflowPaused(seq=seq, time=now, reason=inp.reason,
                                               operator=inp.operator))
            return
        if self._paused is None:
            return
        held = self._deferred
        self._accept(ev.WorkflowUnpaused(seq=seq, time=now, reason=inp.reason,
                                         operator=inp.operator))
        for given in held:
            if self._closed and not isinstance(given, RequestUpdate):
                continue
            self._handle(given)
            self._raise_fatal()

    def _handle_repair(self, inp: RepairCompensation) -> None:
        """Reopen a COMPENSATION_FAILED run; refused (listed in ``rejected``) otherwise."""
        failed = self.failed_compensations()
        if not failed:
            self._rejected.append(
                f"only a COMPENSATION_FAILED run can be repaired; this one is "
                f"{self._status.value}"
            )
            return
        if inp.skip is not None and inp.skip not in failed:
            self._rejected.append(
                f"{inp.skip!r} is not a failed compensation of this run; failed: {failed}"
            )
            return
        self._accept(ev.CompensationRepaired(
            seq=self._next_seq(), time=self._now,
            action=ev.REPAIR_RETRY if inp.skip is None else ev.REPAIR_SKIP,
            activity_type=inp.skip or "", retry_policy=inp.retry_policy,
            reason=inp.reason, operator=inp.operator,
        ))

    def _hold(self, inp: Input) -> bool:
        """While paused: record ``inp`` to apply on unpause. False for inputs a pause
        lets through (terminate, heartbeats). A signal its handler cannot take is
        refused now, as it would be when running."""
        if self._closed:
            return False  # terminated while paused: nothing is held after the end
        if isinstance(inp, SendSignal):
            problem = self._context().check_signal(inp.name, inp.args)
            if problem is not None:
                self._rejected.append(problem)
                return True
        if isinstance(inp, FireTimer) and any(
            isinstance(i, FireTimer) and i.timer_id == inp.timer_id for i in self._deferred
        ):
            return True  # fired again after a restore: held once is enough
        if isinstance(inp, ActivityTaskCompleted | ActivityTaskFailed) and (
            not self._attempt_running(inp.activity_seq, inp.attempt)
            or any(
                isinstance(i, ActivityTaskCompleted | ActivityTaskFailed)
                and (i.activity_seq, i.attempt) == (inp.activity_seq, inp.attempt)
                for i in self._deferred
            )
        ):
            return True  # a late or repeated report (at least once): it would not count
        held = to_deferred(inp, self._next_seq(), self._now)
        if held is None:
            return False
        self._accept(held)
        return True

    def _started_event(self, inp: StartWorkflow, seq: int, now: int) -> ev.WorkflowStarted:
        seed = inp.random_seed
        if seed is None:
            seed = seed_for_run(inp.run_id)
        return ev.WorkflowStarted(
            seq=seq, time=now, workflow_type=inp.workflow_type, workflow_id=inp.workflow_id,
            run_id=inp.run_id, task_queue=inp.task_queue, input=list(inp.args),
            random_seed=seed, parent_workflow_id=inp.parent_workflow_id,
            parent_run_id=inp.parent_run_id, continued_from_run_id=inp.continued_from_run_id,
            memo=dict(inp.memo), search_attributes=dict(inp.search_attributes),
            execution_deadline=inp.execution_deadline,
        )

    def _execution_timer(self) -> StartTimer | None:
        """The execution timeout's timer while it can still fire."""
        started = self._started
        if started is None or started.execution_deadline is None:
            return None
        if self._closed or self.cancel_requested:
            return None  # a cancellation under way (the timeout's or a caller's) decides
        return StartTimer(timer_id=EXECUTION_TIMEOUT_TIMER, fire_at=started.execution_deadline)

    def _time_out(self) -> None:
        """The execution deadline passed: cancel the run, as a caller's cancel would, but
        remember why, so the cancellation closes it TIMED_OUT."""
        if self._execution_timer() is None:
            return
        self._accept(ev.WorkflowCancelRequested(
            seq=self._next_seq(), time=self._now, timed_out=True,
            reason=f"execution timeout: deadline {self.started.execution_deadline} reached",
        ))

    def _handle_timer(self, timer_id: str) -> None:
        if timer_id == EXECUTION_TIMEOUT_TIMER:
            self._time_out()
            return
        if timer_id.startswith("timer/"):
            if timer_id in self._timers:
                self._accept(ev.TimerFired(seq=self._next_seq(), time=self._now,
                                           timer_id=timer_id))
            return
        self._handle_activity_timer(timer_id)
    def _handle_update(self, inp: RequestUpdate) -> None:
        def reject(message: str, failure: ev.Failure | None = None) -> None:
            f = failure or ev.Failure(message=message, type="UpdateRejectedError",
                                      non_retryable=True)
            self._commands.append(RespondUpdate(update_id=inp.update_id, failure=f,
                                                rejected=True))

        if self._closed:
            reject(f"the run is closed ({self._status.value})")
            return
        ctx = self._context()
        handler = ctx.update_handler(inp.name)
        if handler is None:
            reject(f"unknown update {inp.name!r}; known updates: {sorted(ctx.update_names())}")
            return
        try:
            args = self._conv.from_payloads(inp.args, handler.arg_types)
        except PayloadConversionError as exc:
            reject(f"update {inp.name!r}: bad arguments: {exc}")
            return
        if handler.validator is not None:
            try:
                self._run_read_only(f"validator of update {inp.name!r}", handler.validator,
                                    args)
            except Exception as exc:  # noqa: BLE001 - any validator error rejects the update
                reject(str(exc), to_failure(exc, self._conv, with_stack=False))
                return
        self._accept(ev.UpdateAccepted(seq=self._next_seq(), time=self._now,
                                       update_id=inp.update_id, update_name=inp.name,
                                       args=list(inp.args)))

    # --- delivering events to the code ---------------------------------------------------

    def _deliver(self, e: ev.Event, *, live: bool) -> None:  # noqa: PLR0912
        self._live = live
        self._now = e.time
        if self._loop is not None:
            self._loop.now_ms = e.time
        if isinstance(e, ev.WorkflowStarted):
            self._start(e)
        elif isinstance(e, ev.ActivityCompleted | ev.ActivityAttemptFailed | ev.ActivityFailed
                        | ev.ActivityTimedOut):
            self._deliver_activity(e)
        elif isinstance(e, ev.TimerFired):
            self._deliver_timer(e)
        elif isinstance(e, ev.SignalReceived):
            self._context().deliver_signal(e.signal_name, e.args)
        elif isinstance(e, ev.UpdateAccepted):
            self._context().start_update(e.update_id, e.update_name, e.args)
        elif isinstance(e, ev.WorkflowCancelRequested):
            self.cancel_requested = True
            self._timed_out = e.timed_out
            if self._main is not None and not self._main.done():
                self._main.cancel()
        elif isinstance(e, ev.WorkflowTerminated):
            self._set_status(e)
            self._close()
        elif isinstance(e, ev.ChildWorkflowStarted | ev.ChildWorkflowCompleted
                        | ev.ChildWorkflowFailed):
            self._deliver_child(e)
        elif isinstance(e, ev.CompensationRepaired):
            if not self._reopen(e):
                return
        elif isinstance(e, ev.WorkflowPaused | ev.WorkflowUnpaused | ev.InputDeferred):
            self._deliver_pause(e)
            return  # the code does not run: it is quiescent, and paused or about to resume
        else:
            self._fail(NonDeterminismError(
                "unexpected input event in history", seq=e.seq,
                expected="an input event", actual=type(e).__name__,
            ))
            return
        self._run()

    def _deliver_pause(
        self, e: ev.WorkflowPaused | ev.WorkflowUnpaused | ev.InputDeferred
    ) -> None:
        if isinstance(e, ev.WorkflowPaused):
            self._paused = e
        elif isinstance(e, ev.WorkflowUnpaused):
            # the held inputs' own events follow in history (replay) or are being
            # made by _handle_pause (live)
            self._paused = None
            self._deferred = []
        elif self._paused is None:
            self._fail(NonDeterminismError(
                "history holds an input for a run that is not paused", seq=e.seq,
                expected="WorkflowPaused before it", actual="InputDeferred",
            ))
        else:
            try:
                self._deferred.append(from_deferred(e))
            except ValueError as exc:
                self._fail(WorkflowTaskError(str(exc)))

    def _reopen(self, e: ev.CompensationRepaired) -> bool:
        """An operator's repair: the closed run compensates again, in a new main task."""
        if self._status is not WorkflowStatus.COMPENSATION_FAILED or self._loop is None:
            self._fail(NonDeterminismError(
                "history repairs a run that did not end COMPENSATION_FAILED", seq=e.seq,
                expected="WorkflowCompensationFailed before it", actual="CompensationRepaired",
            ))
            return False
        self._set_status(e)
        self._repairs.append(e)
        self._closed = False
        retry = RetryPolicy.from_record(e.retry_policy) if e.retry_policy else None
        skip = e.activity_type if e.action == ev.REPAIR_SKIP else None
        self._main = self._loop.create_task(self._context().resume_compensation(skip, retry))
        self._main.add_done_callback(self._on_main_done)
        return True

    def _deliver_timer(self, e: ev.TimerFired) -> None:
        if e.timer_id.startswith("timer/"):
            handle = self._timers.pop(e.timer_id, None)
            self._timer_fire_at.pop(e.timer_id, None)
            if handle is None:
                self._fail(NonDeterminismError(
                    "history has a timer firing for a timer the code did not start",
                    seq=e.seq, expected=f"TimerStarted({e.timer_id})", actual="none",
                ))
                return
            self._timer_by_handle.pop(id(handle), None)
            self.workflow_loop().fire(handle)
            return
        self._deliver_activity_retry(e)

    # --- running the code -----------------------------------------------------------------

    def _context(self) -> EngineContext:
        if self._ctx is None:
            raise RuntimeError("the run has not started")
        return self._ctx

    def workflow_loop(self) -> WorkflowEventLoop:
        """The run's deterministic loop."""
        if self._loop is None:
            raise RuntimeError("the run has not started")
        return self._loop

    def _start(self, e: ev.WorkflowStarted) -> None:
        from orchestrator.engine.context import EngineContext

        self._set_status(e)
        self._started = e
        if e.reset is not None:
            self._activity_keys = {int(k): v for k, v in e.reset.activity_keys.items()}
        self._rng = random.Random(e.random_seed)
        self.memo = dict(e.memo)
        self.search_attributes = dict(e.search_attributes)
        self._loop = WorkflowEventLoop(self, e.time)
        self._ctx = EngineContext(self)
        self._main = self._loop.create_task(self._ctx.run_main(e.input))
        self._main.add_done_callback(self._on_main_done)

    def _run(self) -> None:
        loop = self.workflow_loop()
        with guarded(self._guard, self._on_violation):
            while True:
                loop.run_ready()
                if not self._check_conditions():
                    break
        if self._closed and not self._suppress and not self._repairable():
            self._cleanup()

    def _repairable(self) -> bool:
        """A run closed COMPENSATION_FAILED keeps its coroutines: an operator's repair
        resumes its sagas where they stopped (evicting it still drops them)."""
        return self._status is WorkflowStatus.COMPENSATION_FAILED and self._fatal is None

    def _check_conditions(self) -> bool:
        fired = False
        keep: list[tuple[Any, asyncio.Future[bool]]] = []
        for pred, fut in self._conditions:
            if fut.done():
                continue
            if pred():
                fut.set_result(True)
                fired = True
            else:
                keep.append((pred, fut))
        self._conditions = keep
        return fired

    def _on_violation(self, message: str) -> None:
        self._fail(NondeterministicCallError(message))

    def _run_read_only(self, what: str, fn: Any, args: Sequence[Any]) -> Any:
        """Run a query handler or validator; its misbehaviour is its caller's error.

        It cannot park the run: nothing it did is recorded.
        """
        violations: list[str] = []
        self._read_only = what
        try:
            with guarded(self._guard, violations.append):
                result = fn(*args)
        except WorkflowTaskError as exc:
            raise QueryError(f"{what}: {exc}") from None
        finally:
            self._read_only = None
        if violations:
            raise QueryError(f"{what}: {violations[0]}")
        return result

    def _fail(self, exc: BaseException) -> None:
        if self._fatal is None:
            self._fatal = exc

    def _raise_fatal(self) -> None:
        if self._fatal is not None:
            raise self._fatal

    def _on_main_done(self, task: asyncio.Task[Any]) -> None:
        if self._closed:
            return
        exc: BaseException | None
        exc = asyncio.CancelledError() if task.cancelled() else task.exception()
        seq, now, b = self._next_seq(), self._now, self._build_id
        if exc is None:
            try:
                result = self._conv.to_payload(task.result())
            except PayloadConversionError as enc_exc:
                exc = enc_exc
            else:
                self._finish(ev.WorkflowCompleted(seq=seq, time=now, build_id=b, result=result))
                return
        if isinstance(exc, WorkflowTaskError):
            self._fail(exc)
        elif isinstance(exc, ContinueAsNew):
            self._continue_as_new(exc)
        elif isinstance(exc, asyncio.CancelledError) and self._timed_out:
            self._finish(ev.WorkflowTimedOut(seq=seq, time=now, build_id=b))
        elif isinstance(exc, asyncio.CancelledError):
            self._finish(ev.WorkflowCancelled(seq=seq, time=now, build_id=b))
        elif isinstance(exc, CompensationError):
            self._finish(ev.WorkflowCompensationFailed(
                seq=seq, time=now, build_id=b,
                failure=to_failure(exc.original, self._conv),
                compensation_failures=[to_failure(x, self._conv) for x in exc.errors],
            ))
        elif isinstance(exc, Exception):
            self._finish(ev.WorkflowFailed(seq=seq, time=now, build_id=b,
                                           failure=to_failure(exc, self._conv)))
        else:
            self._fail(WorkflowTaskError(f"workflow code raised {exc!r}"))

    def _continue_as_new(self, exc: ContinueAsNew) -> None:
        started = self.started
        try:
            args = self._conv.to_payloads(exc.args)
        except PayloadConversionError as enc_exc:
            self._finish(ev.WorkflowFailed(seq=self._next_seq(), time=self._now,
                                           build_id=self._build_id,
                                           failure=to_failure(enc_exc, self._conv)))
            return
        new_run_id = str(uuid.uuid5(RUN_ID_NAMESPACE, f"{started.run_id}/continue-as-new"))
        wtype = exc.workflow or started.workflow_type
        e = ev.WorkflowContinuedAsNew(
            seq=self._next_seq(), time=self._now, build_id=self._build_id,
            new_run_id=new_run_id, workflow_type=wtype, task_queue=started.task_queue,
            input=args, execution_deadline=started.execution_deadline,
        )
        if self._finish(e):
            self._commands.append(ContinueAsNewRun(start=StartWorkflow(
                workflow_id=started.workflow_id, run_id=new_run_id, workflow_type=wtype,
                task_queue=started.task_queue, args=args,
                parent_workflow_id=started.parent_workflow_id,
                parent_run_id=started.parent_run_id, continued_from_run_id=started.run_id,
                memo=dict(self.memo), search_attributes=dict(self.search_attributes),
                execution_deadline=started.execution_deadline,
            )))

    def _finish(self, e: ev.DecisionEvent) -> bool:
        _, is_new = self.decide(e)
        self._close()
        return is_new

    def _close(self) -> None:
        self._closed = True

    def _cleanup(self) -> None:
        """Stop leftover coroutines of a closed run without recording anything."""
        self._suppress = True
        loop = self.workflow_loop()
        for task in loop.own_tasks():
            coro = task.get_coro()
            close = getattr(coro, "close", None)
            if close is None:
                continue
            # RuntimeError: "coroutine ignored GeneratorExit" (user code awaited in finally)
            with contextlib.suppress(RuntimeError):
                close()
        loop.close()

    def evict(self) -> None:
        """Drop the run's coroutines (cache eviction); the executor is unusable after.

        Only ``finally`` blocks of workflow code run, and nothing is recorded: the
        run continues from its history in a new executor.
        """
        if self._loop is not None and not self._suppress:  # a closed run is cleaned up
            self._cleanup()
        self._fatal = self._fatal or WorkflowTaskError("executor evicted")
        self._release()

    def _release(self) -> None:
        """Break the run's reference cycles (executor, context, loop, tasks, futures).

        Freed by reference counting at once instead of piling up until a full
        garbage collection, which paused a busy engine for 150-290 ms at a time.
        """
        self._loop = None
        self._ctx = None
        self._main = None
        self._activities.clear()
        self._children.clear()
        self._timers.clear()
        self._timer_by_handle.clear()
        self._conditions.clear()

    # --- decisions (called by the context) --------------------------------------------

    def decide(self, e: ev.DecisionEvent) -> tuple[ev.DecisionEvent, bool]:
        """Match ``e`` against history when replaying, else record it.

        Returns the effective event (the recorded one when replaying) and whether it
        is new (so its commands must be issued).
        """
        if self._read_only is not None:
            raise QueryError(f"{self._read_only} must not change the workflow ({_describe(e)})")
        if self._suppress or self._closed:
            return e, False
        if self._cursor < len(self._history):
            rec = self._history[self._cursor]
            if not isinstance(rec, ev.DecisionEvent) or _key(rec) != _key(e):
                err = NonDeterminismError(
                    "workflow code issued a different command than history records",
                    seq=rec.seq, expected=_describe(rec), actual=_describe(e),
                )
                self._fail(err)
                raise err
            self._cursor += 1
            self._set_status(rec)
            return rec, False
        self._history.append(e)
        self._cursor = len(self._history)
        self._new_events.append(e)
        self._set_status(e)
        return e, True

    def peek(self) -> ev.Event | None:
        """The next recorded event when replaying, else None."""
        if self._cursor < len(self._history):
            return self._history[self._cursor]
        return None

    def _set_status(self, e: ev.Event) -> None:
        new = _STATUS_OF.get(type(e))
        if new is None or new is self._status:
            return
        if not is_transition_valid(self._status, new):
            self._fail(WorkflowTaskError(
                f"invalid status transition {self._status.value} -> {new.value} at event {e.seq}"
            ))
            return
        self._status = new

    # --- timers (called by the loop) ------------------------------------------------------

    def timer_started(self, handle: asyncio.TimerHandle, fire_at_ms: int) -> None:
        """Record a durable timer for a loop ``call_at``."""
        if self._suppress or self._closed:
            return
        self._counters.timer += 1
        timer_id = f"timer/{self._counters.timer}"
        rec, is_new = self.decide(ev.TimerStarted(
            seq=self._next_seq(), time=self._now, build_id=self._build_id,
            timer_id=timer_id, fire_at=fire_at_ms,
        ))
        assert isinstance(rec, ev.TimerStarted)
        self._timers[timer_id] = handle
        self._timer_fire_at[timer_id] = rec.fire_at
        self._timer_by_handle[id(handle)] = timer_id
        if is_new:
            self._commands.append(StartTimer(timer_id=timer_id, fire_at=rec.fire_at))

    def timer_cancelled(self, handle: asyncio.TimerHandle) -> None:
        """Record the cancellation of a pending durable timer."""
        timer_id = self._timer_by_handle.pop(id(handle), None)
        if timer_id is None or timer_id not in self._timers:
            return
        del self._timers[timer_id]
        self._timer_fire_at.pop(timer_id, None)
        _, is_new = self.decide(ev.TimerCancelled(
            seq=self._next_seq(), time=self._now, build_id=self._build_id, timer_id=timer_id,
        ))
        if is_new:
            self._commands.append(CancelTimer(timer_id=timer_id))

    def add_condition(self, predicate: Any) -> asyncio.Future[bool]:
        """A future resolved once ``predicate()`` is true (checked after each step)."""
        fut: asyncio.Future[bool] = self.workflow_loop().create_future()
        self._conditions.append((predicate, fut))
        return fut

    def random(self) -> random.Random:
        """The run's deterministic random generator."""
        return self._rng

    def failure_of(self, exc: BaseException) -> ev.Failure:
        """Record an exception as a Failure with this run's converter."""
        return to_failure(exc, self._conv)

    def exception_of(self, failure: ev.Failure) -> BaseException:
        """Rebuild an exception from a Failure with this run's converter."""
        return from_failure(failure, self._conv)


def _iso(epoch_ms: int) -> str:
    moment = datetime.fromtimestamp(epoch_ms / 1000, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _Waits:
    """The executor's waits, as :func:`~orchestrator.engine.stack.task_stacks` reads them."""

    def __init__(self, x: WorkflowExecutor) -> None:
        self._x = x

    def main_task(self) -> asyncio.Task[Any] | None:
        return self._x._main

    def tasks(self) -> list[asyncio.Task[Any]]:
        return self._x.workflow_loop().own_tasks()

    def futures(self) -> dict[int, str]:
        x = self._x
        out = {
            id(a.future): f"activity {a.activity_type} #{a.seq} (attempt {a.attempt}, "
            + (f"retry at {_iso(a.next_retry_at)}" if a.state is _ActState.BACKOFF else "running")
            + ")"
            for a in x._activities.values()
        }
        out |= {
            id(c.future): f"child workflow {c.workflow_type} {c.workflow_id}"
            for c in x._children.values()
        }
        for predicate, fut in x._conditions:
            code = getattr(predicate, "__code__", None)
            where = f" at {code.co_filename}:{code.co_firstlineno}" if code else ""
            out[id(fut)] = f"condition {getattr(predicate, '__qualname__', predicate)}{where}"
        return out | x._context().signal_waiters()

    def timer_handles(self) -> dict[int, str]:
        x = self._x
        return {
            id(handle): f"timer {timer_id} due {_iso(x._timer_fire_at.get(timer_id, 0))}"
            for timer_id, handle in x._timers.items()
        }
