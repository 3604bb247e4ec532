"""The built-in ``saga.schedule`` workflow: one run per schedule, driven by durable
timers, changed by updates, read by a query.

Each firing is a child workflow with the id ``<schedule id>-<nominal time>``
(:func:`~orchestrator.schedules.calendar.firing_workflow_id`). The engine writes a
child's start command in the transaction of the decision that fired it, so a crash
or failover can neither lose it (the decision is replayed from history) nor double
it (the transaction committed once). The child reports its close to the schedule's
run, which is how the overlap policy knows what still runs. Cancelling or
terminating a running firing (overlap ``cancel_other``/``terminate_other``) is a
local activity that sends the command (docs/schedules.md).

The run continues as new after :data:`CONTINUE_AFTER` wake-ups, at the first moment
no firing runs or waits, so its history stays bounded.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Coroutine
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from orchestrator import workflow
from orchestrator.exceptions import ChildWorkflowError
from orchestrator.schedules.calendar import (
    firing_workflow_id,
    jitter_ms,
    next_after,
    times_between,
    to_ms,
    utc,
)
from orchestrator.schedules.catchup import scan_due
from orchestrator.schedules.overlap import Outcome, decide
from orchestrator.schedules.spec import (
    MAX_BACKFILL_FIRINGS,
    RECENT_ACTIONS,
    SCHEDULE_WORKFLOW,
    FiringKind,
    OverlapPolicy,
    RecentAction,
    ScheduleAction,
    ScheduleChange,
    ScheduleDescription,
    SchedulePolicy,
    ScheduleSpec,
    schedule_workflow_id,
)

__all__ = [
    "CONTINUE_AFTER",
    "SCHEDULE_TASK_QUEUE",
    "SCHEDULE_WORKFLOW",
    "STOP_ACTIVITY",
    "Firing",
    "ScheduleState",
    "ScheduleWorkflow",
    "schedule_workflow_id",
]

SCHEDULE_TASK_QUEUE = "saga.schedules"
"""The task queue schedule runs are started with (they schedule no task-queue work)."""

STOP_ACTIVITY = "saga.schedule.stop_run"
"""The local activity that cancels or terminates a running firing."""

CONTINUE_AFTER = 100
"""Wake-ups after which a schedule run continues as new (once nothing runs)."""

NEXT_TIMES = 5
_STOP_RETRY = workflow.RetryPolicy(initial=timedelta(seconds=1), maximum=timedelta(seconds=30))


@dataclass(slots=True)
class Firing:
    """A firing decided on or waiting: its nominal time, why, and its workflow id."""

    nominal_ms: int
    kind: FiringKind
    workflow_id: str
    overlap: OverlapPolicy


@dataclass(slots=True)
class ScheduleState:
    """Everything a schedule run carries into the next (the run's input)."""

    schedule_id: str
    spec: ScheduleSpec
    action: ScheduleAction
    policy: SchedulePolicy = field(default_factory=SchedulePolicy)
    paused: bool = False
    note: str = ""
    created_ms: int = 0
    cursor_ms: int = 0
    """Nominal times up to here are dealt with (started, skipped, missed, or passed
    while paused)."""
    started: int = 0
    skipped: int = 0
    missed: int = 0
    buffered: list[Firing] = field(default_factory=list)
    pending: list[Firing] = field(default_factory=list)
    """Triggered and backfilled firings not yet put through the overlap policy."""
    recent: list[RecentAction] = field(default_factory=list)


@workflow.defn(name=SCHEDULE_WORKFLOW)
class ScheduleWorkflow:
    """One schedule. Input: its :class:`ScheduleState`."""

    def __init__(self) -> None:
        self._ctx: workflow.WorkflowContext | None = None
        self._state: ScheduleState | None = None
        self._woken = False
        self._deleted = False
        self._running: dict[str, Firing] = {}
        self._stopping: dict[str, str] = {}  # workflow id -> "cancel" | "terminate"
        self._tasks: set[asyncio.Future[None]] = set()
        #: a pause holds buffered scheduled firings (runs recorded before this change
        #: replay without it: they started such firings during a pause)
        self._pause_holds_buffered = False

    @property
    def state(self) -> ScheduleState:
        assert self._state is not None
        return self._state

    @property
    def ctx(self) -> workflow.WorkflowContext:
        assert self._ctx is not None
        return self._ctx

    def _now_ms(self) -> int:
        return to_ms(self.ctx.now())

    # --- the loop -------------------------------------------------------------------

    @workflow.run
    async def run(self, ctx: workflow.WorkflowContext, state: ScheduleState) -> None:
        self._ctx, self._state = ctx, state
        self._pause_holds_buffered = ctx.patched("schedule.pause-holds-buffered-firings")
        if state.created_ms == 0:
            state.created_ms = state.cursor_ms = self._now_ms()
        wakes = 0
        while not self._deleted:
            now = self._now_ms()
            self._drain()
            self._due(now)
            while state.pending:
                self._offer(state.pending.pop(0))
            if wakes >= CONTINUE_AFTER and self._idle():
                ctx.continue_as_new(state)
            self._woken = False
            wake = self._next_wake()
            timeout = None if wake is None else max(0.001, (wake - now) / 1000)
            await ctx.wait_condition(lambda: self._woken or self._deleted, timeout=timeout)
            wakes += 1

    def _idle(self) -> bool:
        s = self.state
        return not (self._running or s.buffered or s.pending or self._tasks)

    def _next_wake(self) -> int | None:
        s = self.state
        if s.paused:
            return None
        nominal = next_after(s.spec, s.cursor_ms)
        if nominal is None:
            return None
        return nominal + jitter_ms(s.schedule_id, nominal, s.spec.jitter_s)

    def _due(self, now: int) -> None:
        """Deal with every scheduled nominal time whose (jittered) moment has come."""
        s = self.state
        if s.paused:
            s.cursor_ms = max(s.cursor_ms, now)  # firings due while paused do not run
            return
        scan = scan_due(s.spec, s.schedule_id, s.cursor_ms, now, s.policy.catchup_window_s)
        s.cursor_ms = scan.cursor_ms
        s.missed += scan.bulk_missed
        for nominal, missed in scan.due:
            wid = firing_workflow_id(s.schedule_id, nominal)
            firing = Firing(nominal, FiringKind.SCHEDULED, wid, s.policy.overlap)
            if missed:
                s.missed += 1
                self._record(firing, "missed")
            else:
                self._offer(firing)

    def _held(self, firing: Firing) -> bool:
        """A buffered scheduled firing waits while the schedule is paused."""
        return (
            self._pause_holds_buffered
            and self.state.paused
            and firing.kind is FiringKind.SCHEDULED
        )

    def _drain(self) -> None:
        """Start buffered firings once nothing runs (one at a time, in order, passing
        over the ones held by a pause)."""
        s = self.state
        while not self._running:
            at = next((i for i, f in enumerate(s.buffered) if not self._held(f)), None)
            if at is None:
                return
            self._start(s.buffered.pop(at))

    def _offer(self, firing: Firing) -> None:
        """Put a due firing through the overlap policy."""
        s = self.state
        if firing.workflow_id in self._running:  # the same id runs: never start it twice
            s.skipped += 1
            self._record(firing, "skipped")
            return
        waiting = sum(1 for f in s.buffered if not self._held(f))
        verdict = decide(firing.overlap, len(self._running), waiting)
        for wid in list(self._running):
            if verdict.cancel_running:
                self._stop(wid, "cancel", firing)
            elif verdict.terminate_running:
                self._stop(wid, "terminate", firing)
        if verdict.outcome is Outcome.START:
            self._start(firing)
        elif verdict.outcome is Outcome.BUFFER:
            s.buffered.append(firing)
            self._record(firing, "buffered")
        else:
            s.skipped += 1
            self._record(firing, "skipped")

    def _start(self, firing: Firing) -> None:
        self.state.started += 1
        self._running[firing.workflow_id] = firing
        self._record(firing, "running", started=True)
        self._spawn(self._fire(firing, self.state.action))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task: asyncio.Future[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _fire(self, firing: Firing, action: ScheduleAction) -> None:
        outcome = "completed"
        try:
            await self.ctx.execute_child_workflow(
                action.workflow_type,
                *action.args,
                id=firing.workflow_id,
                task_queue=action.task_queue,
            )
        except ChildWorkflowError:
            requested = self._stopping.get(firing.workflow_id, "")
            outcome = {"cancel": "cancelled", "terminate": "terminated"}.get(requested, "failed")
        self._running.pop(firing.workflow_id, None)
        self._stopping.pop(firing.workflow_id, None)
        self._record(firing, outcome, closed=True)
        self._woken = True

    def _stop(self, workflow_id: str, mode: str, cause: Firing) -> None:
        if workflow_id in self._stopping:
            return
        self._stopping[workflow_id] = mode
        reason = (
            f"schedule {self.state.schedule_id}: overlap policy {cause.overlap.value} "
            f"for firing {cause.workflow_id}"
        )
        self._spawn(self._send_stop(workflow_id, mode, reason))

    async def _send_stop(self, workflow_id: str, mode: str, reason: str) -> None:
        await self.ctx.execute_local_activity(
            STOP_ACTIVITY, workflow_id, mode, reason, retry=_STOP_RETRY
        )

    def _record(
        self, firing: Firing, outcome: str, *, started: bool = False, closed: bool = False
    ) -> None:
        """Add or update the firing's line in the recent actions (the last ten)."""
        s = self.state
        now = self.ctx.now()
        nominal = utc(firing.nominal_ms)
        at = next((i for i, a in enumerate(s.recent)
                   if a.workflow_id == firing.workflow_id and a.nominal_time == nominal), None)
        line = (RecentAction(nominal, firing.kind, firing.workflow_id, outcome) if at is None
                else replace(s.recent[at], outcome=outcome))
        if started:
            line = replace(line, started_at=now)
        if closed:
            line = replace(line, closed_at=now)
        if at is None:
            s.recent.append(line)
            del s.recent[:-RECENT_ACTIONS]
        else:
            s.recent[at] = line

    # --- updates and the query ---------------------------------------------------------

    def _wake(self) -> None:
        self._woken = True

    @workflow.update_validator("update")
    def validate_update(self, change: ScheduleChange) -> None:
        """Refuse a change whose spec or policy is invalid."""
        problems = [*(change.spec.problems() if change.spec else []),
                    *(change.policy.problems() if change.policy else [])]
        if change.action and not (change.action.workflow_type and change.action.task_queue):
            problems.append("the action needs a workflow type and a task queue")
        if problems:
            raise ValueError("; ".join(problems))

    @workflow.update(name="update")
    def update(self, change: ScheduleChange) -> ScheduleDescription:
        """Replace the parts given; a new spec fires from now on."""
        s = self.state
        if change.spec is not None:
            # its nominal times before now were never due under the old spec: not missed
            s.cursor_ms = max(s.cursor_ms, self._now_ms())
        s.spec = change.spec or s.spec
        s.action = change.action or s.action
        s.policy = change.policy or s.policy
        s.note = s.note if change.note is None else change.note
        self._wake()
        return self.describe()

    @workflow.update(name="pause")
    def pause(self, note: str) -> None:
        """Stop firing (firings due while paused are not run later)."""
        self.state.paused, self.state.note = True, note
        self._wake()

    @workflow.update(name="unpause")
    def unpause(self, note: str) -> None:
        """Fire again from now on."""
        s = self.state
        if s.paused:
            s.cursor_ms = max(s.cursor_ms, self._now_ms())
        s.paused, s.note = False, note
        self._wake()

    @workflow.update(name="trigger")
    def trigger(self, overlap: OverlapPolicy | None) -> str:
        """Fire now (also while paused); returns the firing's workflow id."""
        s = self.state
        nominal = self._now_ms()
        wid = firing_workflow_id(s.schedule_id, nominal, trigger=True)
        s.pending.append(Firing(nominal, FiringKind.TRIGGER, wid, overlap or s.policy.overlap))
        self._wake()
        return wid

    @workflow.update_validator("backfill")
    def validate_backfill(
        self, start: datetime, end: datetime, overlap: OverlapPolicy | None
    ) -> None:
        """Refuse an empty, reversed or too large range."""
        if end <= start:
            raise ValueError("backfill: end must be after start")
        times = times_between(self.state.spec, to_ms(start), to_ms(end))
        # counted no further than the limit: a long range must not stall the worker
        count = sum(1 for _ in itertools.islice(times, MAX_BACKFILL_FIRINGS + 1))
        if count > MAX_BACKFILL_FIRINGS:
            raise ValueError(
                f"backfill: more than {MAX_BACKFILL_FIRINGS} firings in range; "
                f"at most {MAX_BACKFILL_FIRINGS} at once"
            )

    @workflow.update(name="backfill")
    def backfill(
        self, start: datetime, end: datetime, overlap: OverlapPolicy | None
    ) -> list[str]:
        """Fire every nominal time in ``[start, end)`` now, in order; returns their ids."""
        s = self.state
        policy = overlap or s.policy.overlap
        firings = [
            Firing(n, FiringKind.BACKFILL, firing_workflow_id(s.schedule_id, n), policy)
            for n in times_between(s.spec, to_ms(start), to_ms(end))
        ]
        s.pending.extend(firings)
        self._wake()
        return [f.workflow_id for f in firings]

    @workflow.update(name="delete")
    def delete(self) -> None:
        """End the schedule; firings that run go on to their end."""
        self._deleted = True

    @workflow.query(name="describe")
    def describe(self) -> ScheduleDescription:
        """The schedule, its counters, what runs, recent actions and the next times."""
        s = self.state
        upcoming: list[datetime] = []
        cursor = max(s.cursor_ms, self._now_ms())
        while not s.paused and len(upcoming) < NEXT_TIMES:
            found = next_after(s.spec, cursor)
            if found is None:
                break
            upcoming.append(utc(found))
            cursor = found
        return ScheduleDescription(
            schedule_id=s.schedule_id,
            spec=s.spec,
            action=s.action,
            policy=s.policy,
            paused=s.paused,
            note=s.note,
            created_at=utc(s.created_ms),
            started=s.started,
            skipped=s.skipped,
            missed=s.missed,
            running=sorted(self._running),
            buffered=[utc(f.nominal_ms) for f in s.buffered],
            recent=list(s.recent),
            next_times=upcoming,
            handled_until=utc(s.cursor_ms),
        )
