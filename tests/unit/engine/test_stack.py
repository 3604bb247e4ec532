"""The reserved ``__stack`` query: where each task of a run is suspended (file:line,
function) and what it awaits, read off the suspended coroutines."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from orchestrator import activity, workflow
from orchestrator.converter import DataConverter
from orchestrator.engine import inputs
from orchestrator.engine.executor import WorkflowExecutor
from orchestrator.engine.stack import STACK_QUERY, TaskStack
from orchestrator.workflow import definition_of

CONV = DataConverter()
START = inputs.StartWorkflow(workflow_id="w", run_id="r", workflow_type="unit.stacked")


@activity.defn(name="unit.charge")
async def charge(amount: int) -> int:
    return amount


async def nap(ctx: workflow.WorkflowContext) -> None:
    await ctx.sleep(timedelta(hours=1))  # LINE-NAP


@workflow.defn(name="unit.stacked")
class Stacked:
    def __init__(self) -> None:
        self.go = False

    @workflow.run
    async def run(self, ctx: workflow.WorkflowContext) -> str:
        napping = asyncio.ensure_future(nap(ctx))
        signalled = asyncio.ensure_future(ctx.wait_signal("approve"))
        await ctx.execute_activity(charge, 5)  # LINE-CHARGE
        await ctx.wait_condition(lambda: self.go)  # LINE-COND
        await asyncio.gather(napping, signalled)
        return "done"

    @workflow.signal(name="go")
    def set_go(self) -> None:
        self.go = True


def line_of(marker: str) -> int:
    with open(__file__, encoding="utf-8") as f:
        return next(n for n, text in enumerate(f, 1) if f"# {marker}" in text and "def" not in text)


def stacks(executor: WorkflowExecutor) -> list[TaskStack]:
    answer = CONV.from_payload(executor.query(STACK_QUERY))
    return [TaskStack.from_json(s) for s in answer]


def test_each_task_says_where_it_waits_and_for_what() -> None:
    executor = WorkflowExecutor(definition_of(Stacked))
    executor.apply([START], 1_700_000_000_000)
    by_task = {s.awaiting.split()[0]: s for s in stacks(executor)}
    main = stacks(executor)[0]
    assert main.task == "main"
    assert main.location is not None
    assert (main.location.line, main.location.function) == (line_of("LINE-CHARGE"), "run")
    assert main.location.file == __file__
    assert main.awaiting.startswith("activity unit.charge #1 (attempt 1, running)")
    timer = by_task["timer"]
    assert timer.location is not None and timer.location.function == "nap"
    assert timer.location.line == line_of("LINE-NAP")
    assert timer.awaiting == "timer timer/1 due 2023-11-14T23:13:20.000Z"
    assert by_task["signal"].awaiting == "signal 'approve'"


def test_a_condition_and_a_replayed_run_say_the_same() -> None:
    executor = WorkflowExecutor(definition_of(Stacked))
    [task] = [c for c in executor.apply([START], 1).commands if hasattr(c, "activity_seq")]
    executor.apply([inputs.ActivityTaskCompleted(activity_seq=1, attempt=1,
                                                 result=CONV.to_payload(5))], 2)
    main = stacks(executor)[0]
    assert main.location is not None and main.location.line == line_of("LINE-COND")
    assert main.awaiting.startswith("condition Stacked.run.<locals>.<lambda> at ")
    replayed = WorkflowExecutor(definition_of(Stacked), executor.history)
    assert stacks(replayed) == stacks(executor), "an evicted run, replayed, answers alike"
    executor.apply([inputs.SendSignal(name="go"), inputs.SendSignal(name="approve")], 3)
    main = stacks(executor)[0]
    assert main.awaiting.startswith("all of: timer timer/1 due"), main.awaiting
    assert task.activity_seq == 1


@workflow.defn(name="unit.kid")
async def kid(ctx: workflow.WorkflowContext) -> str:
    return "kid"


@workflow.defn(name="unit.parent")
async def parent(ctx: workflow.WorkflowContext) -> str:
    handle = await ctx.start_child_workflow(kid, id="kid-1")
    return await handle  # LINE-HANDLE


def test_a_wait_on_a_child_handle_names_the_child() -> None:
    start = inputs.StartWorkflow(workflow_id="p", run_id="r", workflow_type="unit.parent")
    executor = WorkflowExecutor(definition_of(parent))
    executor.apply([start], 1)
    [main] = stacks(executor)
    assert main.awaiting == "start of child workflow unit.kid kid-1"
    executor.apply([inputs.ChildStarted(child_seq=1, run_id="k")], 2)
    [main] = stacks(executor)
    assert main.location is not None and main.location.line == line_of("LINE-HANDLE")
    assert main.awaiting == "child workflow unit.kid kid-1", main.awaiting
