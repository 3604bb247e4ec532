"""The records the engine shard writes for children and continued runs, built from
real executor decisions (no broker)."""

from __future__ import annotations

from orchestrator import workflow
from orchestrator.converter import DataConverter
from orchestrator.engine import commands as cmd
from orchestrator.engine import events as ev
from orchestrator.engine import inputs
from orchestrator.engine.executor import WorkflowExecutor
from orchestrator.serde import records as rec
from orchestrator.worker.shard import children
from orchestrator.workflow import definition_of

CONV = DataConverter()


@workflow.defn(name="unit.kid")
async def kid(ctx: workflow.WorkflowContext, n: int) -> int:
    return n


@workflow.defn(name="unit.parent")
async def parent(ctx: workflow.WorkflowContext, n: int) -> int:
    result: int = await ctx.execute_child_workflow(kid, n, id="the-kid", result_type=int)
    return result


@workflow.defn(name="unit.again")
async def again(ctx: workflow.WorkflowContext, n: int) -> int:
    ctx.upsert_memo({"round": n})
    ctx.continue_as_new(n + 1)


def _start(definition: str, args: list[object], **kw: str) -> inputs.StartWorkflow:
    return inputs.StartWorkflow(
        workflow_id="wf",
        run_id="run-1",
        workflow_type=definition,
        args=CONV.to_payloads(args),
        **kw,
    )


def test_a_child_start_names_its_parent_and_the_report_round_trips_into_the_parent() -> None:
    x = WorkflowExecutor(definition_of(parent))
    decision = x.apply([_start("unit.parent", [7])], 1000)
    (start_child,) = [c for c in decision.commands if isinstance(c, cmd.StartChildWorkflow)]
    start = children.child_start(start_child)
    assert (start.workflow_id, start.workflow_type) == ("the-kid", "unit.kid")
    assert start.parent == rec.ParentExecution(workflow_id="wf", run_id="run-1", child_seq=1)
    assert CONV.from_payloads(start.input, [int]) == [7]

    assert start.parent is not None
    started = children.started_report(start.parent, "the-kid", "kid-run")
    x.apply([children.report_input(started)], 1001)
    done = children.closed_report(
        start.parent,
        "the-kid",
        "kid-run",
        ev.WorkflowCompleted(seq=3, time=1002, result=CONV.to_payload(7)),
    )
    assert (done.workflow_id, done.run_id, done.outcome) == (
        "wf",
        "run-1",
        rec.ChildOutcome.COMPLETED,
    )
    final = x.apply([children.report_input(done)], 1002)
    assert [type(e).__name__ for e in x.history] == [
        "WorkflowStarted",
        "ChildWorkflowInitiated",
        "ChildWorkflowStarted",
        "ChildWorkflowCompleted",
        "WorkflowCompleted",
    ]
    assert final.status.name == "COMPLETED"


def test_cancelled_and_terminated_children_fail_their_parent_with_a_reason() -> None:
    parent_ref = rec.ParentExecution(workflow_id="p", run_id="r", child_seq=1)
    cancelled = children.closed_report(parent_ref, "k", "kr", ev.WorkflowCancelled(seq=5, time=1))
    terminated = children.closed_report(
        parent_ref, "k", "kr", ev.WorkflowTerminated(seq=5, time=1, reason="ops")
    )
    assert cancelled.outcome is terminated.outcome is rec.ChildOutcome.FAILED
    assert cancelled.failure is not None and cancelled.failure.type == "CancelledError"
    assert terminated.failure is not None and terminated.failure.type == "Terminated"
    assert "ops" in terminated.failure.message


def test_the_next_run_rebuilt_at_restore_equals_the_executors_command() -> None:
    x = WorkflowExecutor(definition_of(again))
    start = _start("unit.again", [1], parent_workflow_id="p", parent_run_id="pr")
    decision = x.apply([start], 5000)
    (command,) = [c for c in decision.commands if isinstance(c, cmd.ContinueAsNewRun)]
    last = x.history[-1]
    assert isinstance(last, ev.WorkflowContinuedAsNew)
    snapshot = rec.WorkflowSnapshot(
        workflow_id="wf",
        run_id="run-1",
        workflow_type="unit.again",
        task_queue="default",
        status=rec.WorkflowStatus.CONTINUED_AS_NEW,
        start_time=5000,
        last_seq=last.seq,
        memo=dict(x.memo),
        search_attributes=dict(x.search_attributes),
        parent=rec.ParentExecution(workflow_id="p", run_id="pr", child_seq=4),
    )
    assert children.next_run_after(snapshot, last) == command.start
