"""The executor contract the Kafka runtime relies on: inputs in, events + commands out."""

from __future__ import annotations

from datetime import timedelta

import pytest

from orchestrator import activity, workflow
from orchestrator.converter import DataConverter
from orchestrator.engine import events as ev
from orchestrator.engine.commands import (
    CancelTimer,
    RespondUpdate,
    ScheduleActivityTask,
    StartTimer,
)
from orchestrator.engine.executor import WorkflowExecutor
from orchestrator.engine.inputs import (
    ActivityTaskCompleted,
    ActivityTaskFailed,
    ActivityTaskHeartbeat,
    FireTimer,
    RequestUpdate,
    SendSignal,
    StartWorkflow,
)
from orchestrator.exceptions import (
    ActivityError,
    ActivityTimeoutError,
    NonDeterminismError,
    WorkflowTaskError,
)
from orchestrator.status import WorkflowStatus
from orchestrator.workflow import RetryPolicy, WorkflowContext, definition_of

CONV = DataConverter()
T0 = 1_735_689_600_000  # 2025-01-01T00:00:00Z
MIN = 60_000


@activity.defn
def call(n: int) -> int:
    return n


@workflow.defn(name="timeouts")
async def timeouts(ctx: WorkflowContext, mode: str) -> str:
    try:
        if mode == "stc":
            await ctx.execute_activity(call, 1, start_to_close=timedelta(minutes=5),
                                       retry=RetryPolicy(initial=timedelta(minutes=1)))
        elif mode == "sched":
            await ctx.execute_activity(call, 1, schedule_to_close=timedelta(minutes=10))
        else:
            await ctx.execute_activity(call, 1, heartbeat_timeout=timedelta(minutes=2),
                                       retry=RetryPolicy(max_attempts=1))
    except ActivityError as exc:
        assert isinstance(exc.cause, ActivityTimeoutError)
        return f"timed out: {exc.cause.timeout_type}"
    return "ok"


@workflow.defn(name="two_signals")
class TwoSignals:
    def __init__(self) -> None:
        self.seen: list[str] = []

    @workflow.run
    async def run(self, ctx: WorkflowContext) -> list[str]:
        await ctx.wait_condition(lambda: len(self.seen) >= 2)
        await ctx.execute_activity(call, len(self.seen))
        return self.seen

    @workflow.signal
    def note(self, word: str) -> None:
        self.seen.append(word)

    @workflow.update
    def peek(self) -> int:
        return len(self.seen)


def start(d: object, *args: object, run_id: str = "r1") -> StartWorkflow:
    name = definition_of(d).name
    return StartWorkflow(workflow_id="w1", run_id=run_id, workflow_type=name,
                         args=CONV.to_payloads(args))


def only(items: list[object], kind: type) -> list[object]:
    return [x for x in items if isinstance(x, kind)]


def test_start_returns_numbered_events_and_the_first_task() -> None:
    x = WorkflowExecutor(definition_of(timeouts), build_id="build-7")
    d = x.apply([start(timeouts, "stc")], T0)

    assert [e.seq for e in d.events] == [1, 2]
    started, scheduled = d.events
    assert isinstance(started, ev.WorkflowStarted) and started.time == T0
    assert isinstance(scheduled, ev.ActivityScheduled) and scheduled.build_id == "build-7"
    [task] = only(d.commands, ScheduleActivityTask)  # type: ignore[arg-type]
    assert isinstance(task, ScheduleActivityTask)
    assert (task.activity_type, task.attempt, task.idempotency_key) == ("call", 1, "w1/r1/1")
    assert StartTimer(timer_id="activity/1/start_to_close/1", fire_at=T0 + 5 * MIN) in d.commands
    assert d.status is WorkflowStatus.RUNNING


def test_start_to_close_timeout_retries_and_ignores_the_late_result() -> None:
    x = WorkflowExecutor(definition_of(timeouts))
    x.apply([start(timeouts, "stc")], T0)

    early = x.apply([FireTimer(timer_id="activity/1/start_to_close/1")], T0 + MIN)
    assert early.events == []  # not due yet: ignored

    d = x.apply([FireTimer(timer_id="activity/1/start_to_close/1")], T0 + 5 * MIN)
    [failed] = d.events
    assert isinstance(failed, ev.ActivityAttemptFailed)
    assert failed.failure.type == "ActivityTimeoutError"
    assert failed.next_retry_at == T0 + 6 * MIN
    assert StartTimer(timer_id="activity/1/retry/1", fire_at=T0 + 6 * MIN) in d.commands

    late = x.apply([ActivityTaskCompleted(activity_seq=1, attempt=1,
                                          result=CONV.to_payload(1))], T0 + 5 * MIN + 1)
    assert late.events == [] and late.commands == []

    d = x.apply([FireTimer(timer_id="activity/1/retry/1")], T0 + 6 * MIN)
    [task] = only(d.commands, ScheduleActivityTask)  # type: ignore[arg-type]
    assert isinstance(task, ScheduleActivityTask)
    assert (task.attempt, task.idempotency_key) == (2, "w1/r1/1")

    d = x.apply([ActivityTaskCompleted(activity_seq=1, attempt=2,
                                       result=CONV.to_payload(1))], T0 + 7 * MIN)
    assert isinstance(d.events[-1], ev.WorkflowCompleted)
    assert CancelTimer(timer_id="activity/1/start_to_close/2") in d.commands
    assert d.status is WorkflowStatus.COMPLETED


def test_schedule_to_close_timeout_is_final() -> None:
    x = WorkflowExecutor(definition_of(timeouts))
    x.apply([start(timeouts, "sched")], T0)
    x.apply([ActivityTaskFailed(activity_seq=1, attempt=1,
                                failure=ev.Failure(message="x", type="X"))], T0 + MIN)
    d = x.apply([FireTimer(timer_id="activity/1/schedule_to_close")], T0 + 10 * MIN)
    assert isinstance(d.events[0], ev.ActivityTimedOut)
    last = d.events[-1]
    assert isinstance(last, ev.WorkflowCompleted)
    assert CONV.from_payload(last.result) == "timed out: schedule_to_close"


def test_heartbeat_pushes_the_heartbeat_deadline() -> None:
    x = WorkflowExecutor(definition_of(timeouts))
    x.apply([start(timeouts, "hb")], T0)
    d = x.apply([ActivityTaskHeartbeat(activity_seq=1, attempt=1)], T0 + MIN)
    assert d.events == []
    assert StartTimer(timer_id="activity/1/heartbeat/1", fire_at=T0 + 3 * MIN) in d.commands
    stale = x.apply([FireTimer(timer_id="activity/1/heartbeat/1")], T0 + 2 * MIN)
    assert stale.events == []
    d = x.apply([FireTimer(timer_id="activity/1/heartbeat/1")], T0 + 3 * MIN)
    assert isinstance(d.events[0], ev.ActivityTimedOut)
    assert d.events[0].timeout_type == "heartbeat"


def test_restore_from_history_reports_the_same_timers_and_tasks() -> None:
    x = WorkflowExecutor(definition_of(timeouts))
    x.apply([start(timeouts, "stc")], T0)
    x.apply([FireTimer(timer_id="activity/1/start_to_close/1")], T0 + 5 * MIN)

    restored = WorkflowExecutor(definition_of(timeouts), x.history)
    assert restored.pending_timers() == x.pending_timers()
    assert restored.pending_timers() == [
        StartTimer(timer_id="activity/1/retry/1", fire_at=T0 + 6 * MIN)
    ]
    assert restored.running_activities() == []
    assert restored.apply([], T0 + 5 * MIN).events == []


def test_batching_does_not_change_the_history() -> None:
    inputs = [SendSignal(name="note", args=CONV.to_payloads(["a"])),
              SendSignal(name="note", args=CONV.to_payloads(["b"]))]
    one = WorkflowExecutor(definition_of(TwoSignals))
    one.apply([start(TwoSignals)], T0)
    one.apply(inputs, T0 + 1)

    two = WorkflowExecutor(definition_of(TwoSignals))
    two.apply([start(TwoSignals)], T0)
    for inp in inputs:
        two.apply([inp], T0 + 1)

    assert one.history == two.history
    assert isinstance(one.history[-1], ev.ActivityScheduled)


def test_update_on_a_closed_run_is_rejected_and_queries_still_answer() -> None:
    x = WorkflowExecutor(definition_of(TwoSignals))
    x.apply([start(TwoSignals)], T0)
    x.apply([SendSignal(name="note", args=CONV.to_payloads([w])) for w in "ab"], T0)
    x.apply([ActivityTaskCompleted(activity_seq=1, attempt=1, result=CONV.to_payload(2))], T0)
    assert x.status is WorkflowStatus.COMPLETED

    d = x.apply([RequestUpdate(update_id="u1", name="peek")], T0 + 1)
    assert d.events == []
    [reply] = d.commands
    assert isinstance(reply, RespondUpdate) and reply.rejected
    assert reply.failure is not None and "closed" in reply.failure.message
    assert x.apply([SendSignal(name="note")], T0 + 2).events == []


def test_history_with_an_extra_recorded_decision_is_non_deterministic() -> None:
    x = WorkflowExecutor(definition_of(timeouts))
    history = x.apply([start(timeouts, "stc")], T0).events
    bogus = ev.TimerStarted(seq=3, time=T0, timer_id="timer/1", fire_at=T0 + 1)
    with pytest.raises(NonDeterminismError) as info:
        WorkflowExecutor(definition_of(timeouts), [*history, bogus])
    assert info.value.seq == 3
    assert info.value.actual == "no command"


def test_history_must_start_with_workflow_started() -> None:
    with pytest.raises(NonDeterminismError, match="WorkflowStarted"):
        WorkflowExecutor(definition_of(timeouts),
                         [ev.SignalReceived(seq=1, time=T0, signal_name="x")])


def test_evicted_executor_is_unusable_and_history_restores_the_run() -> None:
    x = WorkflowExecutor(definition_of(TwoSignals))
    x.apply([start(TwoSignals)], T0)
    x.apply([SendSignal(name="note", args=CONV.to_payloads(["a"]))], T0 + 1)
    history = x.history
    x.evict()
    with pytest.raises(WorkflowTaskError, match="evicted"):
        x.apply([SendSignal(name="note", args=CONV.to_payloads(["b"]))], T0 + 2)

    restored = WorkflowExecutor(definition_of(TwoSignals), history)
    d = restored.apply([SendSignal(name="note", args=CONV.to_payloads(["b"]))], T0 + 2)
    assert [type(e).__name__ for e in d.events] == ["SignalReceived", "ActivityScheduled"]


@workflow.defn(name="nosy")
class Nosy:
    @workflow.run
    async def run(self, ctx: WorkflowContext) -> None:
        await ctx.sleep(timedelta(days=1))

    @workflow.query
    def clock(self) -> float:
        import time

        return time.time()

    @workflow.update
    def touch(self) -> None:
        return None

    @workflow.update_validator("touch")
    def check_touch(self) -> None:
        import random

        random.random()


def test_misbehaving_query_or_validator_is_the_callers_error_not_the_runs() -> None:
    from orchestrator.exceptions import QueryError

    x = WorkflowExecutor(definition_of(Nosy))
    x.apply([start(Nosy)], T0)
    with pytest.raises(QueryError, match=r"query 'clock': time\.time\(\) called"):
        x.query("clock")
    d = x.apply([RequestUpdate(update_id="u", name="touch")], T0 + 1)
    [reply] = d.commands
    assert isinstance(reply, RespondUpdate) and reply.rejected
    assert reply.failure is not None and "random.random" in reply.failure.message
    assert d.events == []
    # the run is not parked: it still takes inputs
    d = x.apply([FireTimer(timer_id="timer/1")], T0 + 86_400_000)
    assert d.status is WorkflowStatus.COMPLETED


@workflow.defn(name="two_steps")
async def two_steps(ctx: WorkflowContext, n: int) -> int:
    for _ in range(2):
        n = await ctx.execute_activity(call, n, result_type=int)
    return n


def _cyclic_garbage_after(make_runs: object) -> list[object]:
    """What only the cycle collector would free once ``make_runs`` returned."""
    import gc

    gc.collect()
    gc.disable()
    try:
        make_runs()  # type: ignore[operator]
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        return list(gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


def test_an_evicted_run_is_freed_without_the_cycle_collector() -> None:
    # A busy engine closes hundreds of runs a second; each left ~65 objects in
    # reference cycles, freed only by full collections that paused it 150-290 ms.
    def closed_and_open_runs() -> None:
        for i in range(20):
            x = WorkflowExecutor(definition_of(two_steps))
            x.apply([start(two_steps, i, run_id=f"r{i}")], T0)
            if i % 2:  # half run to the end, half are evicted mid-run (LRU cache)
                for seq in (1, 2):
                    x.apply([ActivityTaskCompleted(activity_seq=seq, attempt=1,
                                                   result=CONV.to_payload(i))], T0)
                assert x.status is WorkflowStatus.COMPLETED
            x.evict()

    garbage = _cyclic_garbage_after(closed_and_open_runs)
    # (earlier tests' runs may still be there: count only these runs' executors)
    ours = [o for o in garbage
            if isinstance(o, WorkflowExecutor) and o.definition.name == "two_steps"]
    assert ours == [], f"{len(ours)} of 20 executors were left in reference cycles"
