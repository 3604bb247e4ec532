"""Property: for any history it folds, the fold names exactly the timers a replay holds.

A restore indexes a sleeping run's timers from its events instead of replaying it
(orchestrator/engine/timer_fold.py). A driver runs timer-heavy workflow code with a
random schedule of signals, updates, timer firings, cancellations and execution
deadlines; after every decision, the fold of the history so far must equal the
``pending_timers`` of a fresh replay of it, or decline (None). Histories with
activities must be declined.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator import workflow
from orchestrator.converter import DataConverter
from orchestrator.engine import events as ev
from orchestrator.engine.commands import StartTimer
from orchestrator.engine.executor import WorkflowExecutor
from orchestrator.engine.inputs import (
    ActivityTaskCompleted,
    ActivityTaskFailed,
    CancelWorkflow,
    FireTimer,
    RequestUpdate,
    SendSignal,
    StartWorkflow,
)
from orchestrator.engine.timer_fold import folded_timers
from orchestrator.workflow import RetryPolicy, WorkflowContext, definition_of

T0 = round(datetime(2025, 1, 1, tzinfo=UTC).timestamp() * 1000)
CONV = DataConverter()


@workflow.defn(name="fold.sleepy")
class Sleepy:
    """Sleeps, waits with timeouts (cancelled timers), races sleeps, sleeps in updates."""

    def __init__(self) -> None:
        self.pokes = 0

    @workflow.run
    async def run(self, ctx: WorkflowContext, rounds: int) -> int:
        for i in range(rounds):
            # an activity with timeouts and retries (a failed one does not end the run)
            with contextlib.suppress(Exception):
                await ctx.execute_activity(
                    "fold.step",
                    i,
                    task_queue="q",
                    start_to_close=timedelta(minutes=5),
                    retry=RetryPolicy(max_attempts=3),
                )
            poked = await ctx.wait_condition(
                lambda i=i: self.pokes > i, timeout=timedelta(minutes=30)
            )
            if not poked:
                await asyncio.gather(
                    ctx.sleep(timedelta(minutes=1 + i)), ctx.sleep(timedelta(minutes=2))
                )
            else:
                short = asyncio.ensure_future(ctx.sleep(timedelta(hours=1)))
                await ctx.sleep(timedelta(seconds=10))
                short.cancel()  # a timer started and cancelled without firing
        return self.pokes

    @workflow.signal
    def poke(self) -> None:
        self.pokes += 1

    @workflow.update
    async def nap(self, seconds: int) -> int:
        await asyncio.sleep(seconds)  # a durable timer inside an update handler
        return seconds


@workflow.defn(name="fold.worker")
async def with_activity(ctx: WorkflowContext) -> str:
    await ctx.sleep(timedelta(minutes=1))
    return await ctx.execute_activity("a", task_queue="q", result_type=str)


SLEEPY = definition_of(Sleepy)
RETRYABLE = ev.Failure(message="boom", type="Boom")
FATAL = ev.Failure(message="no", type="Fatal", non_retryable=True)


def _key(timers: list[StartTimer]) -> list[tuple[str, int]]:
    return sorted((t.timer_id, t.fire_at) for t in timers)


def _check(history: list[ev.Event], folds: list[bool]) -> None:
    replayed = WorkflowExecutor(SLEEPY, history, build_id="fold")
    folded = folded_timers(history)
    if replayed.status.is_terminal:
        assert folded is None  # a closing event is not folded: the restore replays it
        return
    under_way = replayed.running_activities() or any(
        t.timer_id.startswith("activity/") for t in replayed.pending_timers()
    )
    if under_way:
        assert folded is None  # an activity's timers are the replay's to tell
        return
    folds.append(folded is not None)
    if folded is not None:
        assert _key(folded) == _key(replayed.pending_timers()), [type(e).__name__ for e in history]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), st.integers(min_value=1, max_value=4), st.booleans())
def test_the_fold_names_the_timers_a_replay_holds(data: Any, rounds: int, deadline: bool) -> None:
    executor = WorkflowExecutor(SLEEPY, build_id="fold")
    now = T0
    start = StartWorkflow(
        workflow_id="f-1",
        run_id="run-1",
        workflow_type="fold.sleepy",
        args=CONV.to_payloads([rounds]),
        execution_deadline=T0 + 3_600_000 if deadline else None,
    )
    executor.apply([start], now)
    folds: list[bool] = []
    _check(executor.history, folds)
    for _ in range(60):
        if executor.status.is_terminal:
            break
        timers = {t.timer_id: t.fire_at for t in executor.pending_timers()}
        options: list[tuple[str, Any]] = [("timer", t) for t in sorted(timers)]
        options += [("task", t) for t in executor.running_activities()]
        options += [("signal", None), ("update", None), ("cancel", None)]
        kind, arg = data.draw(st.sampled_from(options))
        now += data.draw(st.integers(min_value=0, max_value=120_000))
        if kind == "task":
            outcome = data.draw(st.sampled_from(["ok", "retryable", "fatal"]))
            seq, attempt = arg.activity_seq, arg.attempt
            if outcome == "ok":
                done = CONV.to_payload(seq)
                completed = ActivityTaskCompleted(activity_seq=seq, attempt=attempt, result=done)
                executor.apply([completed], now)
            else:
                failure = RETRYABLE if outcome == "retryable" else FATAL
                failed = ActivityTaskFailed(activity_seq=seq, attempt=attempt, failure=failure)
                executor.apply([failed], now)
        elif kind == "timer":
            now = max(now, timers[arg])
            executor.apply([FireTimer(timer_id=arg)], now)
        elif kind == "signal":
            executor.apply([SendSignal(name="poke")], now)
        elif kind == "update":
            seconds = data.draw(st.integers(min_value=0, max_value=90))
            args = CONV.to_payloads([seconds])
            executor.apply([RequestUpdate(update_id=f"u{now}", name="nap", args=args)], now)
        elif data.draw(st.integers(0, 9)) == 0:
            executor.apply([CancelWorkflow(reason="property")], now)
        _check(executor.history, folds)
    # every open state with no activity under way is folded, none sent to a replay
    assert all(folds)


def test_a_run_with_an_activity_is_left_to_a_replay() -> None:
    executor = WorkflowExecutor(definition_of(with_activity), build_id="fold")
    executor.apply([StartWorkflow(workflow_id="a", run_id="r", workflow_type="fold.worker")], T0)
    assert folded_timers(executor.history) == [
        StartTimer(timer_id="timer/1", fire_at=T0 + 60_000)
    ]
    executor.apply([FireTimer(timer_id="timer/1")], T0 + 60_000)
    assert folded_timers(executor.history) is None  # it scheduled an activity
    assert any(isinstance(e, ev.ActivityScheduled) for e in executor.history)


def test_a_run_whose_steps_ended_is_folded_with_its_execution_deadline() -> None:
    executor = WorkflowExecutor(SLEEPY, build_id="fold")
    start = StartWorkflow(
        workflow_id="d",
        run_id="r",
        workflow_type="fold.sleepy",
        args=CONV.to_payloads([1]),
        execution_deadline=T0 + 5_000,
    )
    executor.apply([start], T0)
    assert folded_timers(executor.history) is None  # its first step runs
    (task,) = executor.running_activities()
    done = CONV.to_payload(0)
    step = ActivityTaskCompleted(activity_seq=task.activity_seq, attempt=1, result=done)
    executor.apply([step], T0 + 1_000)  # then it only waits
    folded = folded_timers(executor.history)
    assert folded is not None
    assert _key(folded) == _key(executor.pending_timers())
    assert ("execution-timeout", T0 + 5_000) in _key(folded)
