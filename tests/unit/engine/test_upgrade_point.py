"""A declared upgrade point: ``ctx.newer_version_available()`` asks whether the worker
holds a newer version of the run's type, each answer is recorded as an ``upgrade``
marker that replays give back, and ``ctx.upgrade_point(*args)`` continues a long-lived
run as new on the newest version once there is one."""

from __future__ import annotations

from datetime import timedelta

import pytest

from orchestrator import workflow
from orchestrator.converter import DataConverter
from orchestrator.engine import events as ev
from orchestrator.engine.executor import WorkflowExecutor
from orchestrator.engine.inputs import SendSignal, StartWorkflow
from orchestrator.engine.registry import WorkflowRegistry, pinned_version
from orchestrator.exceptions import NonDeterminismError
from orchestrator.testing import Replayer, WorkflowEnvironment
from orchestrator.workflow import WorkflowContext, definition_of

CONV = DataConverter()
T0 = 1_735_689_600_000


@workflow.defn(name="up.counter")
async def counter_v1(ctx: WorkflowContext, count: int) -> str:
    while count < 5:
        await ctx.sleep(timedelta(hours=1))
        count += 1
        ctx.upgrade_point(count)
    return f"v1 counted to {count}"


@workflow.defn(name="up.counter", version=2)
async def counter_v2(ctx: WorkflowContext, count: int) -> str:
    return f"v2 took over at {count} on version {ctx.info.workflow_version}"


@workflow.defn(name="up.ask")
async def ask_v1(ctx: WorkflowContext) -> list[bool]:
    first = ctx.newer_version_available()
    await ctx.wait_signal("again")
    return [first, ctx.newer_version_available(), ctx.newer_version_available()]


@workflow.defn(name="up.asked")
class AskedV1:
    @workflow.run
    async def run(self, ctx: WorkflowContext) -> None:
        self.ctx = ctx
        await ctx.wait_signal("never")

    @workflow.query
    def would_upgrade(self) -> bool:
        return self.ctx.newer_version_available()


@workflow.defn(name="up.ask", version=2)
async def ask_v2(ctx: WorkflowContext) -> list[bool]:
    return [ctx.newer_version_available()]


def upgrade_markers(history: list[ev.Event]) -> list[str]:
    return [
        e.marker_id for e in history
        if isinstance(e, ev.MarkerRecorded) and e.marker_name == ev.MARKER_UPGRADE
    ]


def run_ask(newest: int | None, history: list[ev.Event] | None = None) -> WorkflowExecutor:
    x = WorkflowExecutor(definition_of(ask_v1), history or [], newest_version=lambda: newest)
    if history is None:
        x.apply([StartWorkflow(workflow_id="w1", run_id="r1", workflow_type="up.ask")], T0)
        x.apply([SendSignal(name="again")], T0 + 1)
    return x


def result_of(x: WorkflowExecutor) -> object:
    last = x.history[-1]
    assert isinstance(last, ev.WorkflowCompleted)
    return CONV.from_payload(last.result, list[bool])


def test_each_answer_is_recorded_and_true_stays_true_with_one_marker() -> None:
    assert result_of(run_ask(newest=2)) == [True, True, True]
    assert upgrade_markers(run_ask(newest=2).history) == ["v2"]
    assert result_of(run_ask(newest=1)) == [False, False, False]
    assert upgrade_markers(run_ask(newest=1).history) == ["none", "none", "none"]
    assert result_of(run_ask(newest=None)) == [False, False, False]


def test_a_replay_returns_the_recorded_answers_whatever_the_worker_holds() -> None:
    upgraded = run_ask(newest=2).history
    kept = run_ask(newest=1).history
    for newest in (None, 1, 2, 3):
        assert result_of(run_ask(newest, upgraded)) == [True, True, True]
        assert result_of(run_ask(newest, kept)) == [False, False, False]
        assert run_ask(newest, upgraded).apply([], T0 + 2).events == []
    # the public Replayer, on workers that no longer (or newly) hold version 2
    Replayer(workflows=[ask_v1]).replay(upgraded)
    Replayer(workflows=[ask_v1, ask_v2]).replay(kept)


def test_a_replay_of_a_false_answer_stays_false_after_a_newer_version_is_deployed() -> None:
    x = WorkflowExecutor(definition_of(ask_v1), newest_version=lambda: 1)
    x.apply([StartWorkflow(workflow_id="w1", run_id="r1", workflow_type="up.ask")], T0)
    waiting = x.history  # asked once (False), now waiting for the signal
    assert upgrade_markers(waiting) == ["none"]
    restored = run_ask(2, waiting)  # a deploy of version 2; the run is replayed
    assert restored.apply([], T0 + 1).events == []  # nothing re-decided at the replay
    restored.apply([SendSignal(name="again")], T0 + 2)
    assert result_of(restored) == [False, True, True]
    assert upgrade_markers(restored.history) == ["none", "v2"]


def test_a_history_recorded_before_the_upgrade_point_was_added_replays_with_false() -> None:
    @workflow.defn(name="up.ask")
    async def without_point(ctx: WorkflowContext) -> list[bool]:
        await ctx.wait_signal("again")
        return []

    old = WorkflowExecutor(definition_of(without_point))
    old.apply([StartWorkflow(workflow_id="w1", run_id="r1", workflow_type="up.ask")], T0)
    old.apply([SendSignal(name="again")], T0 + 1)
    # replayed by code that asks: False where history has no marker, nothing recorded
    replayed = run_ask(2, old.history)
    assert replayed.apply([], T0 + 2).events == []
    assert upgrade_markers(replayed.history) == []
    Replayer(workflows=[ask_v1, ask_v2]).replay(old.history)


def test_code_that_stops_asking_where_history_recorded_an_answer_is_non_deterministic() -> None:
    @workflow.defn(name="up.ask")
    async def never_asks(ctx: WorkflowContext) -> list[bool]:
        await ctx.wait_signal("again")
        return []

    with pytest.raises(NonDeterminismError, match="MarkerRecorded"):
        WorkflowExecutor(definition_of(never_asks), run_ask(newest=2).history)


def test_a_run_on_the_newest_version_is_not_offered_an_upgrade() -> None:
    x = WorkflowExecutor(definition_of(ask_v2), newest_version=lambda: 2)
    x.apply([StartWorkflow(workflow_id="w1", run_id="r1", workflow_type="up.ask",
                           workflow_version=2)], T0)
    assert result_of(x) == [False]


def test_a_query_gets_the_live_answer_and_records_nothing() -> None:
    for newest, expected in ((1, False), (2, True)):
        x = WorkflowExecutor(definition_of(AskedV1), newest_version=lambda n=newest: n)
        x.apply([StartWorkflow(workflow_id="w1", run_id="r1", workflow_type="up.asked")], T0)
        before = len(x.history)
        assert CONV.from_payload(x.query("would_upgrade"), bool) is expected
        assert len(x.history) == before and x.apply([], T0 + 1).events == []


def test_the_registry_names_the_newest_version_of_a_type() -> None:
    registry = WorkflowRegistry([counter_v2, counter_v1])
    assert registry.newest_version("up.counter") == 2
    assert registry.newest_version("up.nope") is None


async def test_a_long_lived_run_moves_to_version_2_at_its_upgrade_point() -> None:
    env = WorkflowEnvironment(workflows=[counter_v1])
    handle = await env.start_workflow(counter_v1, 0, id="counter")
    await env.sleep(timedelta(hours=2, minutes=30))  # two turns on version 1 alone
    env.register(counter_v2)  # the deploy
    assert await handle.result() == "v2 took over at 3 on version 2"
    first, second = handle.run_histories
    assert [pinned_version(first), pinned_version(second)] == [1, 2]
    assert upgrade_markers(first) == ["none", "none", "v2"]
    assert isinstance(first[-1], ev.WorkflowContinuedAsNew)
    # a worker that no longer holds version 2 replays the upgraded run as recorded
    Replayer(workflows=[counter_v1]).replay(first)
    Replayer(workflows=[counter_v1, counter_v2]).replay(first)


async def test_without_a_newer_version_the_run_goes_on_and_ends_on_version_1() -> None:
    env = WorkflowEnvironment(workflows=[counter_v1])
    handle = await env.start_workflow(counter_v1, 0, id="counter")
    assert await handle.result() == "v1 counted to 5"
    [only] = handle.run_histories
    assert upgrade_markers(only) == ["none"] * 5
    Replayer(workflows=[counter_v1, counter_v2]).replay(only)  # deployed since: same answers
