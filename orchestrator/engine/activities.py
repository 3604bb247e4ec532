"""The activity state machine of an executor: attempts, retries, timeouts.

Per activity: RUNNING (an attempt is dispatched) -> DONE, or -> BACKOFF (an
attempt failed, a retry timer is set) -> RUNNING (attempt + 1), or -> CANCELLED
(the code stopped waiting). Only reports for the current attempt of a RUNNING
activity count; the rest are dropped without a trace.
"""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from orchestrator.converter import DataConverter, Payload
from orchestrator.engine import events as ev
from orchestrator.engine.commands import (
    CancelActivityTask,
    CancelTimer,
    ScheduleActivityTask,
    StartTimer,
)
from orchestrator.engine.failures import TIMEOUT_TYPE, activity_error, timeout_failure
from orchestrator.engine.inputs import (
    ActivityTaskCompleted,
    ActivityTaskFailed,
    ActivityTaskHeartbeat,
)
from orchestrator.engine.stack import iso_ms
from orchestrator.exceptions import NonDeterminismError, PayloadConversionError
from orchestrator.retry import next_retry_at
from orchestrator.workflow import ActivityOptions, RetryPolicy

if TYPE_CHECKING:
    from orchestrator.engine.journal import Journal
    from orchestrator.engine.recording import Counters

__all__ = ["Activities", "PausedTypes"]


class PausedTypes(Protocol):
    """Which activity types an operator has paused (the runtime reads
    ``<prefix>.activity-pauses``; the engine only asks).

    An attempt of a paused type has not started (its workers hold it), so its
    start-to-close and heartbeat timeouts do not run while the pause lasts, and
    after an unpause they count from the unpause at the earliest. Only the live
    decision to time an attempt out asks: nothing here is replayed."""

    def is_paused(self, task_queue: str, activity_type: str) -> bool:
        """Whether the type is paused now."""
        ...

    def unpaused_at(self, task_queue: str, activity_type: str) -> int | None:
        """Epoch ms of the type's last unpause; None if paused now or never unpaused."""
        ...

DEFAULT_RETRY = RetryPolicy()


def _ms(d: Any) -> int | None:
    return round(d.total_seconds() * 1000) if d is not None else None


class _ActState(enum.Enum):
    RUNNING = 1
    BACKOFF = 2
    DONE = 3
    CANCELLED = 4


@dataclass(slots=True)
class _Activity:
    seq: int
    activity_type: str
    task_queue: str
    args: list[Payload]
    policy: ev.RetryPolicyRecord
    start_to_close_ms: int | None
    schedule_to_close_ms: int | None
    heartbeat_timeout_ms: int | None
    scheduled_at: int
    result_type: Any
    future: asyncio.Future[Any]
    attempt: int = 1
    attempt_started_at: int = 0
    state: _ActState = _ActState.RUNNING
    next_retry_at: int = 0
    last_heartbeat_at: int = 0
    heartbeat_details: list[Payload] = field(default_factory=list)
    local: bool = False
    priority: int = 0
    fairness_key: str = ""
    endings: dict[int, str] = field(default_factory=dict)
    """How each finished attempt ended, for :meth:`Activities.attempt_problem`."""


def _how_it_ended(
    e: ev.ActivityCompleted | ev.ActivityAttemptFailed | ev.ActivityFailed | ev.ActivityTimedOut,
) -> str:
    if isinstance(e, ev.ActivityCompleted):
        return "completed"
    if isinstance(e, ev.ActivityTimedOut):
        return f"timed out ({e.timeout_type})"
    if e.failure.type == TIMEOUT_TYPE:
        return e.failure.message  # "activity timed out (start_to_close)"
    return f"failed: {e.failure.type}: {e.failure.message}"


class Activities:
    """The activities of one run, by activity seq: the executor delegates to it."""

    __slots__ = ("_by_seq", "_conv", "_counters", "_j", "keys", "paused_types")

    def __init__(self, journal: Journal, converter: DataConverter, counters: Counters) -> None:
        self._j = journal
        self._conv = converter
        self._counters = counters
        self.paused_types: PausedTypes | None = None
        """Set by the runtime that follows the operator's activity-type pauses."""
        self._by_seq: dict[int, _Activity] = {}
        self.keys: dict[int, str] = {}
        """Idempotency-key run ids of activities scheduled before a reset point."""

    def key_run_id(self, activity_seq: int) -> str:
        """The run id in activity ``activity_seq``'s idempotency key: this run's, or
        for an activity scheduled before a reset point, the run that first ran it."""
        return self.keys.get(activity_seq, self._j.started.run_id)

    def any_running(self) -> bool:
        """Whether an attempt is dispatched and not finished."""
        return any(a.state is _ActState.RUNNING for a in self._by_seq.values())

    def running(self) -> list[ScheduleActivityTask]:
        """Attempts that are dispatched and not finished, as tasks (for restore)."""
        return [self._task(a) for a in self._by_seq.values() if a.state is _ActState.RUNNING]

    def cancel_running(self) -> list[CancelActivityTask]:
        """The run closed while these attempts were out at workers (terminated, reset,
        continued as new, or ended without awaiting them): stop them. Nothing is
        recorded; their late outcomes are dropped because the run is closed."""
        return [
            CancelActivityTask(
                activity_seq=a.seq, attempt=a.attempt, task_queue=a.task_queue,
                activity_type=a.activity_type, dispatched=True, local=a.local,
            )
            for a in self._by_seq.values()
            if a.state is _ActState.RUNNING
        ]

    def pending_timers(self) -> list[StartTimer]:
        """Every timer of every activity the runtime should hold (for restore)."""
        return [t for act in self._by_seq.values() for t in self._activity_timers(act)]

    def waits(self) -> dict[int, str]:
        """What each activity's future stands for, by ``id()`` (``saga stack``)."""
        return {
            id(a.future): f"activity {a.activity_type} #{a.seq} (attempt {a.attempt}, "
            + (f"retry at {iso_ms(a.next_retry_at)}" if a.state is _ActState.BACKOFF else "running")
            + ")"
            for a in self._by_seq.values()
        }

    def clear(self) -> None:
        """Drop every activity (the executor is released)."""
        self._by_seq.clear()

    def restore_heartbeat(
        self, activity_seq: int, attempt: int, at_ms: int, details: list[Payload]
    ) -> None:
        """After a replay: a heartbeat the runtime kept (history has none) of a running
        attempt, so its heartbeat timeout counts from it and a retry gets its details."""
        act = self._by_seq.get(activity_seq)
        if act is None or act.state is not _ActState.RUNNING or act.attempt != attempt:
            return
        if at_ms >= act.last_heartbeat_at:
            act.last_heartbeat_at = at_ms
            act.heartbeat_details = list(details)

    def heartbeat_grace(self, since_ms: int) -> None:
        """After a restore that lost the heartbeats: running attempts with a heartbeat
        timeout count it from ``since_ms`` at the earliest (a live activity heartbeats
        again within it; a dead one times out one timeout later)."""
        for act in self._by_seq.values():
            if act.state is _ActState.RUNNING and act.heartbeat_timeout_ms is not None:
                act.last_heartbeat_at = max(act.last_heartbeat_at, since_ms)

    def attempt_running(self, activity_seq: int, attempt: int) -> bool:
        """Whether ``attempt`` is the running attempt of activity ``activity_seq``."""
        act = self._by_seq.get(activity_seq)
        return act is not None and act.state is _ActState.RUNNING and act.attempt == attempt

    def attempt_problem(self, activity_seq: int, attempt: int) -> str | None:
        """Why a report of ``attempt`` of activity ``activity_seq`` would not count
        (for the reply to an outcome sent by task token); None if it is the running one."""
        act = self._by_seq.get(activity_seq)
        name = f"activity #{activity_seq}"
        if act is None:
            return f"this run never scheduled {name}"
        name = f"{name} ({act.activity_type})"
        if act.state is _ActState.DONE:
            return f"{name} already ended: attempt {act.attempt} {act.endings[act.attempt]}"
        if act.state is _ActState.CANCELLED:
            return f"{name} was cancelled: the workflow no longer waits for it"
        running = act.attempt if act.state is _ActState.RUNNING else None
        if attempt == running:
            return None
        if attempt > act.attempt:
            return f"attempt {attempt} of {name} has not started"
        now = (
            f"attempt {running} runs now" if running is not None
            else f"attempt {act.attempt + 1} waits for its retry"
        )
        how = act.endings.get(attempt)
        return f"attempt {attempt} of {name} already ended{f': {how}' if how else ''}; {now}"

    def handle_input(
        self, inp: ActivityTaskCompleted | ActivityTaskFailed | ActivityTaskHeartbeat
    ) -> None:
        """A report of an attempt: its result, its failure or a heartbeat."""
        act = self._by_seq.get(inp.activity_seq)
        if act is None or act.state is not _ActState.RUNNING or act.attempt != inp.attempt:
            return  # a late or duplicate report of an attempt that no longer counts
        seq, now = self._j.next_seq(), self._j.now
        if isinstance(inp, ActivityTaskCompleted):
            self._j.accept(ev.ActivityCompleted(seq=seq, time=now, activity_seq=act.seq,
                                              attempt=act.attempt, result=inp.result))
        elif isinstance(inp, ActivityTaskFailed):
            self._attempt_failed(act, inp.failure, None)
        else:
            act.last_heartbeat_at = now
            act.heartbeat_details = list(inp.details)
            if act.heartbeat_timeout_ms:
                self._j.commands.append(StartTimer(
                    timer_id=f"activity/{act.seq}/{ev.HEARTBEAT}/{act.attempt}",
                    fire_at=now + act.heartbeat_timeout_ms,
                ))

    def _attempt_failed(self, act: _Activity, failure: ev.Failure, timeout: str | None) -> None:
        seq, now = self._j.next_seq(), self._j.now
        at = next_retry_at(
            act.policy, attempt=act.attempt, failure=failure, now_ms=now,
            first_scheduled_ms=act.scheduled_at, schedule_to_close_ms=act.schedule_to_close_ms,
        )
        if at is not None:
            self._j.accept(ev.ActivityAttemptFailed(seq=seq, time=now, activity_seq=act.seq,
                                                  attempt=act.attempt, failure=failure,
                                                  next_retry_at=at))
        elif timeout is not None:
            self._j.accept(ev.ActivityTimedOut(seq=seq, time=now, activity_seq=act.seq,
                                             attempt=act.attempt, timeout_type=timeout))
        else:
            self._j.accept(ev.ActivityFailed(seq=seq, time=now, activity_seq=act.seq,
                                           attempt=act.attempt, failure=failure))

    def handle_timer(self, timer_id: str) -> None:
        """An activity timer fired: a retry's backoff ended, or a timeout."""
        seq, now = self._j.next_seq(), self._j.now
        parts = timer_id.split("/")
        if len(parts) < 3 or parts[0] != "activity" or not parts[1].isdigit():
            return
        act = self._by_seq.get(int(parts[1]))
        if act is None:
            return
        kind = parts[2]
        if kind == ev.SCHEDULE_TO_CLOSE:
            if act.state in (_ActState.RUNNING, _ActState.BACKOFF):
                self._j.accept(ev.ActivityTimedOut(seq=seq, time=now, activity_seq=act.seq,
                                                 attempt=act.attempt, timeout_type=kind))
            return
        if len(parts) != 4 or parts[3] != str(act.attempt):
            return
        if kind == "retry" and act.state is _ActState.BACKOFF:
            self._j.accept(ev.TimerFired(seq=seq, time=now, timer_id=timer_id))
        elif act.state is _ActState.RUNNING and kind in (ev.START_TO_CLOSE, ev.HEARTBEAT):
            self._attempt_timer(act, kind, timer_id, now)

    def _attempt_timer(self, act: _Activity, kind: str, timer_id: str, now: int) -> None:
        """A start-to-close or heartbeat timer of the running attempt fired."""
        limit = act.start_to_close_ms if kind == ev.START_TO_CLOSE else act.heartbeat_timeout_ms
        if limit is None:
            return
        since = act.attempt_started_at
        if kind == ev.HEARTBEAT:
            since = max(since, act.last_heartbeat_at)
        paused = self.paused_types
        if paused is not None:
            if paused.is_paused(act.task_queue, act.activity_type):
                # held by its workers, not started: look again one limit later
                self._j.commands.append(StartTimer(timer_id=timer_id, fire_at=now + limit))
                return
            since = max(since, paused.unpaused_at(act.task_queue, act.activity_type) or 0)
        if now >= since + limit:
            self._attempt_failed(act, timeout_failure(kind), kind)
        elif paused is not None:  # the window restarted at the unpause
            self._j.commands.append(StartTimer(timer_id=timer_id, fire_at=since + limit))

    def deliver(
        self,
        e: ev.ActivityCompleted | ev.ActivityAttemptFailed | ev.ActivityFailed
        | ev.ActivityTimedOut,
    ) -> None:
        """Deliver an attempt's outcome: resolve the future, or wait for a retry."""
        act = self._by_seq.get(e.activity_seq)
        if act is None:
            self._j.fail(NonDeterminismError(
                "history has an activity outcome the code never scheduled", seq=e.seq,
                expected=f"ActivityScheduled(seq {e.activity_seq})", actual="none",
            ))
            return
        if self._j.live:
            self._j.commands.extend(
                CancelTimer(timer_id=t.timer_id)
                for t in self._activity_timers(act)
                if not (isinstance(e, ev.ActivityAttemptFailed)
                        and t.timer_id.endswith(ev.SCHEDULE_TO_CLOSE))
            )
        act.attempt = e.attempt
        act.endings[e.attempt] = _how_it_ended(e)
        if isinstance(e, ev.ActivityAttemptFailed):
            act.state = _ActState.BACKOFF
            act.next_retry_at = e.next_retry_at
            if self._j.live:
                self._j.commands.append(StartTimer(
                    timer_id=f"activity/{act.seq}/retry/{act.attempt}", fire_at=e.next_retry_at
                ))
            return
        act.state = _ActState.DONE
        if act.future.done():
            return
        if isinstance(e, ev.ActivityCompleted):
            try:
                act.future.set_result(self._conv.from_payload(e.result, act.result_type))
            except PayloadConversionError as exc:
                act.future.set_exception(PayloadConversionError(
                    f"result of activity {act.activity_type!r}: {exc}"
                ))
            return
        failure = e.failure if isinstance(e, ev.ActivityFailed) else timeout_failure(
            e.timeout_type
        )
        act.future.set_exception(activity_error(
            failure, self._conv, activity_type=act.activity_type, activity_seq=act.seq,
            attempt=act.attempt,
        ))

    def deliver_retry(self, e: ev.TimerFired) -> None:
        """A retry's backoff ended: the next attempt runs."""
        act = self._by_seq.get(int(e.timer_id.split("/")[1]))
        if act is None:
            self._j.fail(NonDeterminismError(
                "history has a retry for an activity the code never scheduled",
                seq=e.seq, expected="ActivityScheduled", actual="none",
            ))
            return
        act.attempt += 1
        act.state = _ActState.RUNNING
        act.attempt_started_at = self._j.now
        if self._j.live:
            self._dispatch(act)

    def schedule(
        self, name: str, args: list[Payload], options: ActivityOptions, result_type: Any
    ) -> asyncio.Future[Any]:
        """Record ActivityScheduled and return the future of its result."""
        self._counters.activity += 1
        seq = self._counters.activity
        policy = (options.retry or DEFAULT_RETRY).to_record()

        started = self._j.started
        e = ev.ActivityScheduled(
            seq=self._j.next_seq(), time=self._j.now, build_id=self._j.build_id, activity_seq=seq,
            activity_type=name, task_queue=options.task_queue or started.task_queue,
            input=args, retry_policy=policy, start_to_close_ms=_ms(options.start_to_close),
            schedule_to_close_ms=_ms(options.schedule_to_close),
            heartbeat_timeout_ms=_ms(options.heartbeat_timeout),
        )
        rec, is_new = self._j.decide(e)
        assert isinstance(rec, ev.ActivityScheduled)
        fut: asyncio.Future[Any] = self._j.workflow_loop().create_future()
        act = _Activity(
            seq=seq, activity_type=rec.activity_type, task_queue=rec.task_queue,
            args=rec.input, policy=rec.retry_policy, start_to_close_ms=rec.start_to_close_ms,
            schedule_to_close_ms=rec.schedule_to_close_ms,
            heartbeat_timeout_ms=rec.heartbeat_timeout_ms, scheduled_at=rec.time,
            result_type=result_type, future=fut, attempt_started_at=rec.time,
            local=options.local,
            priority=started.priority if options.priority is None else options.priority,
            fairness_key=(
                started.fairness_key if options.fairness_key is None else options.fairness_key
            ),
        )
        self._by_seq[seq] = act
        fut.add_done_callback(lambda f: self._on_activity_future_done(act, f))
        if is_new:
            self._dispatch(act)
            if act.schedule_to_close_ms is not None:
                self._j.commands.append(StartTimer(
                    timer_id=f"activity/{seq}/{ev.SCHEDULE_TO_CLOSE}",
                    fire_at=act.scheduled_at + act.schedule_to_close_ms,
                ))
        return fut

    def _task(self, act: _Activity) -> ScheduleActivityTask:
        started = self._j.started
        return ScheduleActivityTask(
            workflow_id=started.workflow_id, run_id=started.run_id,
            workflow_type=started.workflow_type, activity_seq=act.seq, attempt=act.attempt,
            activity_type=act.activity_type, task_queue=act.task_queue, args=act.args,
            scheduled_at=act.scheduled_at, attempt_started_at=act.attempt_started_at,
            start_to_close_ms=act.start_to_close_ms,
            heartbeat_timeout_ms=act.heartbeat_timeout_ms,
            heartbeat_details=act.heartbeat_details,
            local=act.local, priority=act.priority, fairness_key=act.fairness_key,
            key_run_id=self.key_run_id(act.seq),
        )

    def _dispatch(self, act: _Activity) -> None:
        self._j.commands.append(self._task(act))
        self._j.commands.extend(
            t for t in self._activity_timers(act) if ev.SCHEDULE_TO_CLOSE not in t.timer_id
        )

    def _activity_timers(self, act: _Activity) -> list[StartTimer]:
        out: list[StartTimer] = []
        if act.state is _ActState.BACKOFF:
            out.append(StartTimer(timer_id=f"activity/{act.seq}/retry/{act.attempt}",
                                  fire_at=act.next_retry_at))
        if act.state is _ActState.RUNNING:
            if act.start_to_close_ms is not None:
                out.append(StartTimer(
                    timer_id=f"activity/{act.seq}/{ev.START_TO_CLOSE}/{act.attempt}",
                    fire_at=act.attempt_started_at + act.start_to_close_ms,
                ))
            if act.heartbeat_timeout_ms is not None:
                since = max(act.attempt_started_at, act.last_heartbeat_at)
                out.append(StartTimer(
                    timer_id=f"activity/{act.seq}/{ev.HEARTBEAT}/{act.attempt}",
                    fire_at=since + act.heartbeat_timeout_ms,
                ))
        if act.state in (_ActState.RUNNING, _ActState.BACKOFF) and act.schedule_to_close_ms:
            out.append(StartTimer(timer_id=f"activity/{act.seq}/{ev.SCHEDULE_TO_CLOSE}",
                                  fire_at=act.scheduled_at + act.schedule_to_close_ms))
        return out

    def _on_activity_future_done(self, act: _Activity, fut: asyncio.Future[Any]) -> None:
        if not fut.cancelled() or act.state not in (_ActState.RUNNING, _ActState.BACKOFF):
            return
        timers = self._activity_timers(act)
        attempt, dispatched = act.attempt, act.state is _ActState.RUNNING
        act.state = _ActState.CANCELLED
        _, is_new = self._j.decide(ev.ActivityCancelRequested(
            seq=self._j.next_seq(), time=self._j.now, build_id=self._j.build_id,
            activity_seq=act.seq,
        ))
        if is_new:
            self._j.commands.append(CancelActivityTask(
                activity_seq=act.seq, attempt=attempt, task_queue=act.task_queue,
                activity_type=act.activity_type, dispatched=dispatched, local=act.local,
            ))
            self._j.commands.extend(CancelTimer(timer_id=t.timer_id) for t in timers)
