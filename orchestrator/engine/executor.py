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
  (:mod:`orchestrator.engine.pausing`); :attr:`paused` says whether and why.

The executor composes small collaborators, each holding its own state: the
:class:`~orchestrator.engine.journal.Journal` (history, cursor, output, status),
:class:`~orchestrator.engine.activities.Activities`,
:class:`~orchestrator.engine.timers.Timers` (the loop's timer hooks),
:class:`~orchestrator.engine.children.Children`,
:class:`~orchestrator.engine.recording.Records` (markers, metadata, updates, sagas) and
the :class:`~orchestrator.engine.pausing.PauseGate`. It routes inputs and events to
them and runs the code; the workflow context calls them directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import random
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from orchestrator.converter import DataConverter, Payload
from orchestrator.engine import events as ev
from orchestrator.engine.activities import Activities
from orchestrator.engine.children import Children, parent_close_stops
from orchestrator.engine.commands import (
    Command,
    ContinueAsNewRun,
    RespondUpdate,
    ScheduleActivityTask,
    StartTimer,
)
from orchestrator.engine.failures import from_failure, to_failure
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
from orchestrator.engine.journal import Journal, describe_decision
from orchestrator.engine.loop import WorkflowEventLoop
from orchestrator.engine.pausing import PauseGate
from orchestrator.engine.recording import RUN_ID_NAMESPACE, Counters, Records
from orchestrator.engine.signal_ids import RecentIds
from orchestrator.engine.stack import STACK_QUERY, TaskStack, task_stacks
from orchestrator.engine.timers import PREFIX as TIMER_PREFIX
from orchestrator.engine.timers import Timers
from orchestrator.exceptions import (
    CompensationError,
    ContinueAsNew,
    NonDeterminismError,
    PayloadConversionError,
    QueryError,
    WorkflowTaskError,
)
from orchestrator.retry import RetryPolicy
from orchestrator.status import WorkflowStatus
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


SEED_BITS: Final = 53
"""Width of a new run's ``random_seed``: a JavaScript number holds an integer exactly
up to 2**53, so a reader such as avsc decodes the Avro long without BigInt. Runs
started before this limit keep their stored (up to 63-bit) seeds when replayed."""


def seed_for_run(run_id: str) -> int:
    """The ``random_seed`` of a new run: 53 bits of SHA-256 of its run id."""
    digest = int.from_bytes(hashlib.sha256(run_id.encode()).digest()[:8], "big")
    return digest >> (64 - SEED_BITS)


EXECUTION_TIMEOUT_TIMER = "execution-timeout"
"""Timer id of a run's execution timeout (the runtime holds it like any timer)."""
#: the generator of a run not started yet (nothing draws from it: the code runs after
#: the start, which seeds the run's own from its history)
_UNSTARTED_RNG = random.Random(0)


def _no_newer() -> int | None:
    return None


class WorkflowExecutor:
    """Runs one workflow run by deterministic replay; see the module docstring."""

    __slots__ = (
        "_conditions",
        "_conv",
        "_ctx",
        "_defn",
        "_guard",
        "_j",
        "_main",
        "_repairs",
        "_rng",
        "_seed",
        "_signal_ids",
        "_timed_out",
        "activities",
        "cancel_requested",
        "children",
        "newest_version",
        "pause",
        "records",
        "timers",
    )

    def __init__(
        self,
        definition: WorkflowDefinition,
        history: Sequence[ev.Event] = (),
        *,
        build_id: str = "",
        converter: DataConverter | None = None,
        guard: GuardMode = "raise",
        newest_version: Callable[[], int | None] | None = None,
    ) -> None:
        """``newest_version``: the newest version of this run's type the worker holds,
        asked when the code calls ``ctx.newer_version_available()`` live (not given:
        none newer)."""
        self._defn = definition
        self.newest_version: Callable[[], int | None] = newest_version or _no_newer
        conv = converter or DataConverter()
        if conv.codec is not None and not isinstance(conv.codec, UnguardedCodec):
            conv = dataclasses.replace(conv, codec=UnguardedCodec(conv.codec))
        self._conv = conv
        self._guard: GuardMode = guard
        self._j = Journal(history, build_id, self._deliver_live)
        counters = Counters()
        self.activities = Activities(self._j, conv, counters)
        """The run's activities (the context schedules through it)."""
        self.timers = Timers(self._j, counters)
        """The run's durable timers (the loop's timer hooks)."""
        self.children = Children(self._j, conv, counters)
        """The run's child workflows (the context starts them through it)."""
        self.records = Records(self._j, conv, counters)
        """Markers, metadata, update outcomes and saga records."""
        self.pause = PauseGate(self._j, self.activities)
        """The operator's pause and the inputs it holds."""
        self._ctx: EngineContext | None = None
        self._main: asyncio.Task[Any] | None = None
        self._repairs: list[ev.CompensationRepaired] = []
        self._signal_ids = RecentIds()
        #: the run's random generator, made from the seed its start recorded when the
        #: code first draws (most runs never do, and seeding costs a few microseconds
        #: of every replay)
        self._rng: random.Random | None = None
        self._seed: int | None = None
        self._conditions: list[tuple[Any, asyncio.Future[bool]]] = []
        self.cancel_requested = False
        self._timed_out = False
        if self._j.history:
            self._replay()

    # --- public surface -------------------------------------------------------------

    @property
    def status(self) -> WorkflowStatus:
        """The run's status after the events seen so far."""
        return self._j.status

    @property
    def paused(self) -> ev.WorkflowPaused | None:
        """The pause in force (who paused the run, why and when), None when not paused."""
        return self.pause.paused

    @property
    def history(self) -> list[ev.Event]:
        """The full history (recorded and new events), in order."""
        return list(self._j.history)

    @property
    def is_replaying(self) -> bool:
        """True while recorded history is being re-run."""
        return self._j.replaying

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
        return self._j.started

    @property
    def main_task(self) -> asyncio.Task[Any] | None:
        """The task running the workflow's run function."""
        return self._main

    @property
    def now_ms(self) -> int:
        """Workflow time of the latest event (epoch ms)."""
        return self._j.now

    @property
    def memo(self) -> dict[str, Payload]:
        """The run's memo (as started, with every upsert)."""
        return self.records.memo

    @property
    def search_attributes(self) -> dict[str, Payload]:
        """The run's search attributes (as started, with every upsert)."""
        return self.records.search_attributes

    def apply(self, inputs: Sequence[Input], now_ms: int) -> Decision:
        """Feed inputs at time ``now_ms``; see the module docstring for the contract."""
        j = self._j
        j.raise_fatal()
        j.live = True
        for inp in inputs:
            j.now = max(j.now, now_ms)
            if j.closed and not isinstance(inp, RequestUpdate | RepairCompensation):
                continue
            if isinstance(inp, SendSignal) and inp.request_id in self._signal_ids:
                continue  # a re-sent signal: acknowledged, not recorded again
            self._handle(inp)
            j.raise_fatal()
        events, commands, rejected = j.take()
        return Decision(events, commands, j.status, rejected)

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
        if self._j.loop is None or self._j.closed or self._ctx is None:
            return []
        return task_stacks(_Waits(self))

    @property
    def repairs(self) -> list[ev.CompensationRepaired]:
        """Operators' repairs of this run's failed compensations, oldest first."""
        return list(self._repairs)

    def failed_compensations(self) -> list[str]:
        """Activity types of the compensations whose failure closed the run
        COMPENSATION_FAILED (empty for any other status): what a repair may skip."""
        if self._j.status is not WorkflowStatus.COMPENSATION_FAILED or self._ctx is None:
            return []
        return self._context().failed_compensations()

    def key_run_id(self, activity_seq: int) -> str:
        """The run id in activity ``activity_seq``'s idempotency key: this run's, or
        for an activity scheduled before a reset point, the run that first ran it."""
        return self.activities.key_run_id(activity_seq)

    def restore_heartbeat(
        self, activity_seq: int, attempt: int, at_ms: int, details: list[Payload]
    ) -> None:
        """After a replay: a heartbeat the runtime kept (history has none) of a running
        attempt, so its heartbeat timeout counts from it and a retry gets its details."""
        self.activities.restore_heartbeat(activity_seq, attempt, at_ms, details)

    def heartbeat_grace(self, since_ms: int) -> None:
        """After a restore that lost the heartbeats: running attempts with a heartbeat
        timeout count it from ``since_ms`` at the earliest."""
        self.activities.heartbeat_grace(since_ms)

    def pending_timers(self) -> list[StartTimer]:
        """Every timer the runtime should hold for this run (for restore)."""
        if self._j.closed:
            return []
        out = self.timers.pending()
        deadline = self._execution_timer()
        if deadline is not None:
            out.append(deadline)
        out.extend(self.activities.pending_timers())
        # a timer that fired while paused is held in history: it must not fire again
        held = self.pause.held_timer_ids()
        return [t for t in out if t.timer_id not in held] if held else out

    def quiet_until(self, until_ms: int) -> bool:
        """True when nothing but a command can move this open run before ``until_ms``:
        no activity attempt is running and no timer is due by then (a runtime may
        then drop the executor and replay it when something happens)."""
        if self._j.closed or self._j.fatal is not None:
            return False
        if self.activities.any_running():
            return False
        return all(t.fire_at > until_ms for t in self.pending_timers())

    def running_activities(self) -> list[ScheduleActivityTask]:
        """Activity attempts that are dispatched and not finished (for restore)."""
        if self._j.closed:
            return []
        return self.activities.running()

    # --- replay -----------------------------------------------------------------------

    def _replay(self) -> None:
        j = self._j
        first = j.history[0]
        if not isinstance(first, ev.WorkflowStarted):
            raise NonDeterminismError(
                "history must begin with WorkflowStarted",
                seq=first.seq, expected="WorkflowStarted", actual=type(first).__name__,
            )
        if first.workflow_version != self._defn.version:
            raise NonDeterminismError(
                f"the run started on version {first.workflow_version} of "
                f"{first.workflow_type!r}; this definition is version {self._defn.version}",
                seq=first.seq, expected=f"version {first.workflow_version}",
                actual=f"version {self._defn.version}",
            )
        while j.cursor < len(j.history):
            rec = j.history[j.cursor]
            if isinstance(rec, ev.DecisionEvent):
                j.fail(
                    NonDeterminismError(
                        "history records a command the workflow code did not issue",
                        seq=rec.seq, expected=describe_decision(rec), actual="no command",
                    )
                )
                j.raise_fatal()
            j.cursor += 1
            self._deliver(rec, live=False)
            j.raise_fatal()

    # --- inputs -------------------------------------------------------------------------

    def _handle(self, inp: Input) -> None:  # noqa: PLR0912
        j = self._j
        seq, now = j.next_seq(), j.now
        if isinstance(inp, StartWorkflow):
            if j.history:
                raise ValueError("StartWorkflow must be the first input of an empty history")
            j.accept(self._started_event(inp, seq, now))
            deadline = self._execution_timer()
            if deadline is not None:
                j.commands.append(deadline)
        elif not j.has_started:
            raise ValueError("the first input must be StartWorkflow")
        elif isinstance(inp, RepairCompensation):
            self._handle_repair(inp)
        elif isinstance(inp, PauseWorkflow | UnpauseWorkflow):
            self.pause.handle(inp, self._handle)
        elif self.pause.paused is not None and self.pause.hold(
            inp, self._context().check_signal
        ):
            return
        elif isinstance(inp, ActivityTaskCompleted | ActivityTaskFailed | ActivityTaskHeartbeat):
            self.activities.handle_input(inp)
        elif isinstance(inp, FireTimer):
            self._handle_timer(inp.timer_id)
        elif isinstance(inp, SendSignal):
            problem = self._context().check_signal(inp.name, inp.args)
            if problem is not None:
                j.rejected.append(problem)
                return
            j.accept(ev.SignalReceived(seq=seq, time=now, signal_name=inp.name,
                                       args=list(inp.args), request_id=inp.request_id))
        elif isinstance(inp, RequestUpdate):
            self._handle_update(inp)
        elif isinstance(inp, CancelWorkflow):
            if not self.cancel_requested:
                j.accept(ev.WorkflowCancelRequested(seq=seq, time=now, reason=inp.reason))
        elif isinstance(inp, TerminateWorkflow):
            j.accept(ev.WorkflowTerminated(seq=seq, time=now, reason=inp.reason,
                                           operator=inp.operator,
                                           reset_run_id=inp.reset_run_id))
            self._stop_children()
        elif isinstance(inp, ChildStarted | ChildCompleted | ChildFailed):
            self.children.handle_input(inp)

    def _handle_repair(self, inp: RepairCompensation) -> None:
        """Reopen a COMPENSATION_FAILED run; refused (listed in ``rejected``) otherwise."""
        j = self._j
        failed = self.failed_compensations()
        if not failed:
            j.rejected.append(
                f"only a COMPENSATION_FAILED run can be repaired; this one is {j.status.value}"
            )
            return
        if inp.skip is not None and inp.skip not in failed:
            j.rejected.append(
                f"{inp.skip!r} is not a failed compensation of this run; failed: {failed}"
            )
            return
        j.accept(ev.CompensationRepaired(
            seq=j.next_seq(), time=j.now,
            action=ev.REPAIR_RETRY if inp.skip is None else ev.REPAIR_SKIP,
            activity_type=inp.skip or "", retry_policy=inp.retry_policy,
            reason=inp.reason, operator=inp.operator,
        ))

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
            execution_deadline=inp.execution_deadline, workflow_version=self._defn.version,
            priority=inp.priority, fairness_key=inp.fairness_key,
        )

    def _execution_timer(self) -> StartTimer | None:
        """The execution timeout's timer while it can still fire."""
        if not self._j.has_started or self._j.started.execution_deadline is None:
            return None
        if self._j.closed or self.cancel_requested:
            return None  # a cancellation under way (the timeout's or a caller's) decides
        return StartTimer(timer_id=EXECUTION_TIMEOUT_TIMER,
                          fire_at=self._j.started.execution_deadline)

    def _time_out(self) -> None:
        """The execution deadline passed: cancel the run, as a caller's cancel would, but
        remember why, so the cancellation closes it TIMED_OUT."""
        if self._execution_timer() is None:
            return
        self._j.accept(ev.WorkflowCancelRequested(
            seq=self._j.next_seq(), time=self._j.now, timed_out=True,
            reason=f"execution timeout: deadline {self.started.execution_deadline} reached",
        ))

    def _handle_timer(self, timer_id: str) -> None:
        if timer_id == EXECUTION_TIMEOUT_TIMER:
            self._time_out()
        elif timer_id.startswith(TIMER_PREFIX):
            self.timers.handle_fire(timer_id)
        else:
            self.activities.handle_timer(timer_id)

    def _handle_update(self, inp: RequestUpdate) -> None:
        j = self._j

        def reject(message: str, failure: ev.Failure | None = None) -> None:
            f = failure or ev.Failure(message=message, type="UpdateRejectedError",
                                      non_retryable=True)
            j.commands.append(RespondUpdate(update_id=inp.update_id, failure=f, rejected=True))

        if j.closed:
            reject(f"the run is closed ({j.status.value})")
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
        j.accept(ev.UpdateAccepted(seq=j.next_seq(), time=j.now, update_id=inp.update_id,
                                   update_name=inp.name, args=list(inp.args)))

    # --- delivering events to the code ---------------------------------------------------

    def _deliver_live(self, e: ev.Event) -> None:
        self._deliver(e, live=True)

    def _deliver(self, e: ev.Event, *, live: bool) -> None:  # noqa: PLR0912
        j = self._j
        j.live = live
        j.now = e.time
        if j.loop is not None:
            j.loop.now_ms = e.time
        if isinstance(e, ev.WorkflowStarted):
            self._start(e)
        elif isinstance(e, ev.ActivityCompleted | ev.ActivityAttemptFailed | ev.ActivityFailed
                        | ev.ActivityTimedOut):
            self.activities.deliver(e)
        elif isinstance(e, ev.TimerFired):
            if e.timer_id.startswith(TIMER_PREFIX):
                self.timers.deliver(e)
            else:
                self.activities.deliver_retry(e)
        elif isinstance(e, ev.SignalReceived):
            if e.request_id is not None:
                self._signal_ids.add(e.request_id)
            self._context().deliver_signal(e.signal_name, e.args)
        elif isinstance(e, ev.UpdateAccepted):
            self._context().start_update(e.update_id, e.update_name, e.args)
        elif isinstance(e, ev.WorkflowCancelRequested):
            self.cancel_requested = True
            self._timed_out = e.timed_out
            if self._main is not None and not self._main.done():
                self._main.cancel()
        elif isinstance(e, ev.WorkflowTerminated):
            j.set_status(e)
            j.closed = True
        elif isinstance(e, ev.ChildWorkflowStarted | ev.ChildWorkflowCompleted
                        | ev.ChildWorkflowFailed):
            self.children.deliver(e)
        elif isinstance(e, ev.CompensationRepaired):
            if not self._reopen(e):
                return
        elif isinstance(e, ev.WorkflowPaused | ev.WorkflowUnpaused | ev.InputDeferred):
            if isinstance(e, ev.InputDeferred) and e.request_id is not None:
                self._signal_ids.add(e.request_id)  # a held signal counts as applied
            self.pause.deliver(e)
            return  # the code does not run: it is quiescent, and paused or about to resume
        else:
            j.fail(NonDeterminismError(
                "unexpected input event in history", seq=e.seq,
                expected="an input event", actual=type(e).__name__,
            ))
            return
        self._run()

    def _reopen(self, e: ev.CompensationRepaired) -> bool:
        """An operator's repair: the closed run compensates again, in a new main task."""
        j = self._j
        if j.status is not WorkflowStatus.COMPENSATION_FAILED or j.loop is None:
            j.fail(NonDeterminismError(
                "history repairs a run that did not end COMPENSATION_FAILED", seq=e.seq,
                expected="WorkflowCompensationFailed before it", actual="CompensationRepaired",
            ))
            return False
        j.set_status(e)
        self._repairs.append(e)
        j.closed = False
        retry = RetryPolicy.from_record(e.retry_policy) if e.retry_policy else None
        skip = e.activity_type if e.action == ev.REPAIR_SKIP else None
        self._main = j.loop.create_task(self._context().resume_compensation(skip, retry))
        self._main.add_done_callback(self._on_main_done)
        return True

    # --- running the code -----------------------------------------------------------------

    def _context(self) -> EngineContext:
        if self._ctx is None:
            raise RuntimeError("the run has not started")
        return self._ctx

    def workflow_loop(self) -> WorkflowEventLoop:
        """The run's deterministic loop."""
        return self._j.workflow_loop()

    def _start(self, e: ev.WorkflowStarted) -> None:
        from orchestrator.engine.context import EngineContext

        self._j.set_status(e)
        self._j.start(e)
        if e.reset is not None:
            self.activities.keys = {int(k): v for k, v in e.reset.activity_keys.items()}
        self._rng, self._seed = None, e.random_seed
        self.records.memo = dict(e.memo)
        self.records.search_attributes = dict(e.search_attributes)
        loop = self._j.loop = WorkflowEventLoop(self.timers, e.time)
        self._ctx = EngineContext(self)
        self._main = loop.create_task(self._ctx.run_main(e.input))
        self._main.add_done_callback(self._on_main_done)

    def _run(self) -> None:
        loop = self.workflow_loop()
        with guarded(self._guard, self._j.on_violation):
            while True:
                loop.run_ready()
                if not self._check_conditions():
                    break
        if self._j.closed and not self._j.suppress and not self._repairable():
            if self._j.live:  # the close is new: workers stop what still runs for it
                self._j.commands.extend(self.activities.cancel_running())
            self._cleanup()

    def conditions(self) -> list[tuple[Any, asyncio.Future[bool]]]:
        """The ``wait_condition`` predicates waiting now, with their futures."""
        return list(self._conditions)

    def _repairable(self) -> bool:
        """A run closed COMPENSATION_FAILED keeps its coroutines: an operator's repair
        resumes its sagas where they stopped (evicting it still drops them)."""
        return self._j.status is WorkflowStatus.COMPENSATION_FAILED and self._j.fatal is None

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

    def _run_read_only(self, what: str, fn: Any, args: Sequence[Any]) -> Any:
        """Run a query handler or validator; its misbehaviour is its caller's error.

        It cannot park the run: nothing it did is recorded.
        """
        violations: list[str] = []
        self._j.read_only = what
        try:
            with guarded(self._guard, violations.append):
                result = fn(*args)
        except WorkflowTaskError as exc:
            raise QueryError(f"{what}: {exc}") from None
        finally:
            self._j.read_only = None
        if violations:
            raise QueryError(f"{what}: {violations[0]}")
        return result

    def _on_main_done(self, task: asyncio.Task[Any]) -> None:
        j = self._j
        if j.closed:
            return
        exc: BaseException | None
        exc = asyncio.CancelledError() if task.cancelled() else task.exception()
        seq, now, b = j.next_seq(), j.now, j.build_id
        if exc is None:
            try:
                result = self._conv.to_payload(task.result())
            except PayloadConversionError as enc_exc:
                exc = enc_exc
            else:
                self._finish(ev.WorkflowCompleted(seq=seq, time=now, build_id=b, result=result))
                return
        if isinstance(exc, WorkflowTaskError):
            j.fail(exc)
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
            j.fail(WorkflowTaskError(f"workflow code raised {exc!r}"))

    def _continue_as_new(self, exc: ContinueAsNew) -> None:
        j = self._j
        started = self.started
        try:
            args = self._conv.to_payloads(exc.args)
        except PayloadConversionError as enc_exc:
            self._finish(ev.WorkflowFailed(seq=j.next_seq(), time=j.now, build_id=j.build_id,
                                           failure=to_failure(enc_exc, self._conv)))
            return
        new_run_id = str(uuid.uuid5(RUN_ID_NAMESPACE, f"{started.run_id}/continue-as-new"))
        wtype = exc.workflow or started.workflow_type
        e = ev.WorkflowContinuedAsNew(
            seq=j.next_seq(), time=j.now, build_id=j.build_id,
            new_run_id=new_run_id, workflow_type=wtype, task_queue=started.task_queue,
            input=args, execution_deadline=started.execution_deadline,
            workflow_version=exc.version,
        )
        if self._finish(e):
            j.commands.append(ContinueAsNewRun(start=StartWorkflow(
                workflow_id=started.workflow_id, run_id=new_run_id, workflow_type=wtype,
                task_queue=started.task_queue, args=args,
                parent_workflow_id=started.parent_workflow_id,
                parent_run_id=started.parent_run_id, continued_from_run_id=started.run_id,
                memo=dict(self.memo), search_attributes=dict(self.search_attributes),
                execution_deadline=started.execution_deadline, workflow_version=exc.version,
                priority=started.priority, fairness_key=started.fairness_key,
            )))

    def _finish(self, e: ev.DecisionEvent) -> bool:
        _, is_new = self._j.decide(e)
        self._j.closed = True
        if is_new:
            self._stop_children()
        return is_new

    def _stop_children(self) -> None:
        """The run just closed: its open children get what their parent-close policies
        say, in the same decision (so in the same transaction as the closing event)."""
        self._j.commands.extend(parent_close_stops(self._j.history, self._j.status.value))

    def _cleanup(self) -> None:
        """Stop leftover coroutines of a closed run without recording anything."""
        self._j.suppress = True
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
        if self._j.loop is not None and not self._j.suppress:  # a closed run is cleaned up
            self._cleanup()
        self._j.fail(WorkflowTaskError("executor evicted"))
        self._release()

    def _release(self) -> None:
        """Break the run's reference cycles (executor, context, loop, tasks, futures).

        Freed by reference counting at once instead of piling up until a full
        garbage collection, which paused a busy engine for 150-290 ms at a time.
        """
        self._j.detach()
        self._ctx = None
        self._main = None
        self.activities.clear()
        self.children.clear()
        self.timers.clear()
        self._conditions.clear()

    # --- called by the context ------------------------------------------------------------

    def add_condition(self, predicate: Any) -> asyncio.Future[bool]:
        """A future resolved once ``predicate()`` is true (checked after each step)."""
        fut: asyncio.Future[bool] = self.workflow_loop().create_future()
        self._conditions.append((predicate, fut))
        return fut

    def random(self) -> random.Random:
        """The run's deterministic random generator."""
        if self._rng is None:
            self._rng = _UNSTARTED_RNG if self._seed is None else random.Random(self._seed)
        return self._rng

    def failure_of(self, exc: BaseException) -> ev.Failure:
        """Record an exception as a Failure with this run's converter."""
        return to_failure(exc, self._conv)

    def exception_of(self, failure: ev.Failure) -> BaseException:
        """Rebuild an exception from a Failure with this run's converter."""
        return from_failure(failure, self._conv)


class _Waits:
    """The executor's waits, as :func:`~orchestrator.engine.stack.task_stacks` reads them."""

    def __init__(self, x: WorkflowExecutor) -> None:
        self._x = x

    def main_task(self) -> asyncio.Task[Any] | None:
        return self._x.main_task

    def tasks(self) -> list[asyncio.Task[Any]]:
        return self._x.workflow_loop().own_tasks()

    def futures(self) -> dict[int, str]:
        x = self._x
        out = x.activities.waits() | x.children.waits()
        for predicate, fut in x.conditions():
            code = getattr(predicate, "__code__", None)
            where = f" at {code.co_filename}:{code.co_firstlineno}" if code else ""
            out[id(fut)] = f"condition {getattr(predicate, '__qualname__', predicate)}{where}"
        return out | x._context().signal_waiters()

    def timer_handles(self) -> dict[int, str]:
        return self._x.timers.waits()
