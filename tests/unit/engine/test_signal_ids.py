"""The executor's memory of signal request ids: bounded, rebuilt by replay, and empty
for signals recorded before request ids were (history v6 and older); and the test
environment's start with a run's priority and fairness key."""

from __future__ import annotations

from orchestrator import workflow
from orchestrator.converter import DataConverter
from orchestrator.engine import events as ev
from orchestrator.engine import inputs
from orchestrator.engine.executor import WorkflowExecutor
from orchestrator.engine.signal_ids import MAX_SIGNAL_IDS, RecentIds
from orchestrator.testing import WorkflowEnvironment
from orchestrator.workflow import definition_of

CONV = DataConverter()
START = inputs.StartWorkflow(workflow_id="w", run_id="r", workflow_type="unit.notes")


@workflow.defn(name="unit.notes")
async def notes(ctx: workflow.WorkflowContext) -> list[str]:
    got: list[str] = []
    ctx.set_signal_handler("note", got.append)
    await ctx.wait_condition(lambda: False)
    return got


def send(value: str, request_id: str | None) -> inputs.SendSignal:
    return inputs.SendSignal(name="note", args=[CONV.to_payload(value)], request_id=request_id)


def signals(executor: WorkflowExecutor) -> list[tuple[str | None, str]]:
    return [
        (e.request_id, CONV.from_payload(e.args[0]))
        for e in executor.history
        if isinstance(e, ev.SignalReceived)
    ]


def test_recent_ids_forget_the_oldest_beyond_their_limit() -> None:
    ids = RecentIds(limit=2)
    for request_id in ("a", "b", "a", "c"):
        ids.add(request_id)
    assert ("a" in ids, "b" in ids, "c" in ids) == (False, True, True)
    assert len(ids) == 2
    assert RecentIds().limit == MAX_SIGNAL_IDS == 1000


def test_a_repeat_in_the_same_batch_and_in_a_later_one_is_not_recorded() -> None:
    executor = WorkflowExecutor(definition_of(notes))
    decision = executor.apply([START, send("x", "1"), send("x", "1")], 1)
    assert [type(e).__name__ for e in decision.events] == ["WorkflowStarted", "SignalReceived"]
    assert executor.apply([send("x", "1")], 2).events == []
    assert not executor.apply([send("x", "1")], 2).rejected, "acknowledged, not refused"
    assert signals(executor) == [("1", "x")]


def test_the_ids_come_back_with_a_replay_of_the_history() -> None:
    executor = WorkflowExecutor(definition_of(notes))
    executor.apply([START, send("x", "1"), send("y", "2")], 1)
    replayed = WorkflowExecutor(definition_of(notes), executor.history)
    assert replayed.apply([send("x", "1"), send("y", "2"), send("z", "3")], 2).events != []
    assert signals(replayed) == [("1", "x"), ("2", "y"), ("3", "z")]


def test_signals_without_an_id_are_never_deduplicated() -> None:
    executor = WorkflowExecutor(definition_of(notes))
    executor.apply([START, send("x", None), send("x", None)], 1)
    assert signals(executor) == [(None, "x"), (None, "x")]


def test_beyond_the_bound_an_old_id_is_applied_again() -> None:
    executor = WorkflowExecutor(definition_of(notes))
    executor.apply([START], 1)
    executor._signal_ids.limit = 2  # the bound, made small
    executor.apply([send(v, v) for v in ("r1", "r2", "r3", "r1", "r3")], 2)
    assert [v for _, v in signals(executor)] == ["r1", "r2", "r3", "r1"]


@workflow.defn(name="unit.rounds")
async def rounds(ctx: workflow.WorkflowContext, n: int) -> int:
    if n > 0:
        ctx.continue_as_new(n - 1)
    return n


async def test_the_test_environment_starts_a_run_with_its_priority_and_key() -> None:
    async with WorkflowEnvironment(workflows=[rounds]) as env:
        handle = await env.start_workflow(rounds, 2, priority=5, fairness_key="tenantA")
        assert await handle.result() == 0
        starts = [run[0] for run in handle.run_histories]
    assert len(starts) == 3
    for started in starts:  # continue-as-new keeps them
        assert isinstance(started, ev.WorkflowStarted)
        assert (started.priority, started.fairness_key) == (5, "tenantA")
