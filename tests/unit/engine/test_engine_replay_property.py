"""Property: replaying any prefix of a produced history reproduces the same commands.

A driver plays the runtime: for a random schedule of activity results (success,
retryable failure, terminal failure), timer firings and signals, it feeds inputs to
an executor and records everything. Then every prefix of the history is replayed
on a fresh executor; the decisions it makes after the prefix must be exactly the
recorded ones, with the same commands.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator import workflow
from orchestrator.converter import DataConverter
from orchestrator.engine import events as ev
from orchestrator.engine.commands import (
    CancelActivityTask,
    CancelTimer,
    Command,
    ScheduleActivityTask,
    StartTimer,
)
from orchestrator.engine.executor import WorkflowExecutor
from orchestrator.engine.inputs import (
    ActivityTaskCompleted,
    ActivityTaskFailed,
    CancelWorkflow,
    FireTimer,
    Input,
    RequestUpdate,
    SendSignal,
    StartWorkflow,
)
from orchestrator.exceptions import ApplicationError
from orchestrator.workflow import RetryPolicy, WorkflowContext, definition_of

T0 = round(datetime(2025, 1, 1, tzinfo=UTC).timestamp() * 1000)
CONV = DataConverter()


@workflow.defn(name="chaos")
class Chaos:
    def __init__(self) -> None:
        self.pokes = 0

    @workflow.run
    async def run(self, ctx: WorkflowContext, rounds: int) -> int:
        saga = ctx.saga()
        done = 0
        for i in range(rounds):
            results = await asyncio.gather(
                saga.step("debit", i, compensate="undo_debit",
                          retry=RetryPolicy(max_attempts=2)),
                saga.step("credit", i, compensate="undo_credit",
                          retry=RetryPolicy(max_attempts=3),
                          start_to_close=timedelta(minutes=10)),
                return_exceptions=True,
            )
            done += sum(1 for r in results if not isinstance(r, BaseException))
            poked = await ctx.wait_condition(
                lambda i=i: self.pokes > i, timeout=timedelta(hours=1)
            )
            if not poked:
                await ctx.sleep(timedelta(minutes=5 + int(ctx.random() * 10)))
        if done == 0:
            raise ApplicationError("nothing worked", non_retryable=True)
        return done

    @workflow.signal
    def poke(self) -> None:
        self.pokes += 1

    @workflow.update
    async def bump(self, by: int) -> int:
        await asyncio.sleep(by)  # a durable timer inside an update handler
        self.pokes += by
        return self.pokes

    @workflow.update_validator("bump")
    def check_bump(self, by: int) -> None:
        if by < 0:
            raise ValueError("negative")


DEFN = definition_of(Chaos)
FAILURE = ev.Failure(message="boom", type="Boom")
FATAL = ev.Failure(message="no", type="Fatal", non_retryable=True)


class Driver:
    """An in-test runtime that remembers which commands followed which event."""

    def __init__(self) -> None:
        self.executor = WorkflowExecutor(DEFN, build_id="prop")
        self.tasks: dict[int, int] = {}
        self.timers: dict[str, int] = {}
        self.now = T0
        self.commands_after: dict[int, list[Command]] = {}

    def feed(self, inp: Input) -> None:
        before = len(self.executor.history)
        decision = self.executor.apply([inp], self.now)
        if decision.events:
            assert decision.events[0].seq == before + 1
            self.commands_after[decision.events[-1].seq] = decision.commands
        for c in decision.commands:
            if isinstance(c, ScheduleActivityTask):
                self.tasks[c.activity_seq] = c.attempt
            elif isinstance(c, CancelActivityTask):
                self.tasks.pop(c.activity_seq, None)
            elif isinstance(c, StartTimer):
                self.timers[c.timer_id] = c.fire_at
            elif isinstance(c, CancelTimer):
                self.timers.pop(c.timer_id, None)


def _activity_of(c: Command) -> int | None:
    if isinstance(c, ScheduleActivityTask | CancelActivityTask):
        return c.activity_seq
    if isinstance(c, StartTimer | CancelTimer) and c.timer_id.startswith("activity/"):
        return int(c.timer_id.split("/")[1])
    return None


def _input_activity(e: ev.Event) -> int | None:
    seq = getattr(e, "activity_seq", None)
    if isinstance(seq, int):
        return seq
    if isinstance(e, ev.TimerFired) and e.timer_id.startswith("activity/"):
        return int(e.timer_id.split("/")[1])
    return None


def _commands_of_decisions(commands: list[Command], cause: ev.Event) -> list[Command]:
    # Commands the engine issued for the input itself (its activity's timers and
    # next attempt) were executed once; replay re-issues only those of decisions.
    own = _input_activity(cause)
    return [c for c in commands if own is None or _activity_of(c) != own]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), st.integers(min_value=1, max_value=4))
def test_replaying_any_prefix_reproduces_the_same_commands(data: Any, rounds: int) -> None:
    d = Driver()
    d.feed(StartWorkflow(workflow_id="chaos-1", run_id="run-1", workflow_type="chaos",
                         args=CONV.to_payloads([rounds])))
    for _ in range(80):
        if d.executor.status.is_terminal:
            break
        options: list[tuple[str, Any]] = [("task", k) for k in sorted(d.tasks)]
        options += [("timer", t) for t in sorted(d.timers)]
        options += [("signal", None), ("cancel", None), ("update", None)]
        kind, arg = data.draw(st.sampled_from(options))
        d.now += data.draw(st.integers(min_value=0, max_value=600_000))
        if kind == "task":
            attempt = d.tasks.pop(arg)
            outcome = data.draw(st.sampled_from(["ok", "ok", "retryable", "fatal"]))
            if outcome == "ok":
                d.feed(ActivityTaskCompleted(activity_seq=arg, attempt=attempt,
                                             result=CONV.to_payload(f"r{arg}")))
            else:
                failure = FAILURE if outcome == "retryable" else FATAL
                d.feed(ActivityTaskFailed(activity_seq=arg, attempt=attempt, failure=failure))
        elif kind == "timer":
            d.now = max(d.now, d.timers.pop(arg))
            d.feed(FireTimer(timer_id=arg))
        elif kind == "signal":
            d.feed(SendSignal(name="poke"))
        elif kind == "update":
            by = data.draw(st.integers(min_value=-1, max_value=2))
            d.feed(RequestUpdate(update_id=f"u{d.now}", name="bump",
                                 args=CONV.to_payloads([by])))
        elif data.draw(st.integers(0, 9)) == 0:
            d.feed(CancelWorkflow(reason="property"))

    history = d.executor.history
    for k in range(1, len(history) + 1):
        replay = WorkflowExecutor(DEFN, history[:k], build_id="prop")
        tail = replay.apply([], history[k - 1].time)
        expected = []
        for e in history[k:]:
            if not isinstance(e, ev.DecisionEvent):
                break
            expected.append(e)
        assert tail.events == expected, f"prefix {k}"
        if expected and not isinstance(history[k - 1], ev.DecisionEvent):
            # A prefix that ends with an input: replay issues that input's decisions
            # and exactly the commands the live run issued for them.
            recorded = _commands_of_decisions(
                d.commands_after[expected[-1].seq], history[k - 1]
            )
            assert tail.commands == recorded, f"prefix {k}"
