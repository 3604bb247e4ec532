"""What a run's snapshot says (worker/shard/snapshots.py), from real executor decisions."""

from __future__ import annotations

import dataclasses

from orchestrator import workflow
from orchestrator.converter import DataConverter
from orchestrator.engine import inputs
from orchestrator.engine.events import Event
from orchestrator.engine.executor import WorkflowExecutor
from orchestrator.engine.status import WorkflowStatus
from orchestrator.exceptions import ApplicationError
from orchestrator.worker.shard.executions import Execution
from orchestrator.worker.shard.snapshots import outcome, snapshot_of
from orchestrator.workflow import definition_of

CONV = DataConverter()


@workflow.defn(name="unit.snap.doubler")
async def doubler(ctx: workflow.WorkflowContext, n: int) -> int:
    ctx.upsert_memo({"n": n})
    return n * 2


@workflow.defn(name="unit.snap.failer")
async def failer(ctx: workflow.WorkflowContext) -> None:
    raise ApplicationError("no funds", non_retryable=True)


@workflow.defn(name="unit.snap.again")
async def again(ctx: workflow.WorkflowContext, n: int) -> int:
    ctx.continue_as_new(n + 1)


def _run(
    fn: object, *args: object, **start: object
) -> tuple[Execution, WorkflowExecutor, list[Event]]:
    definition = definition_of(fn)
    executor = WorkflowExecutor(definition)
    first = inputs.StartWorkflow(
        workflow_id="wf", run_id="r1", workflow_type=definition.name, task_queue="q",
        args=CONV.to_payloads(list(args)), **start,  # type: ignore[arg-type]
    )
    decision = executor.apply([first], 1_000)
    execution = Execution("wf", "r1", definition.name, "q", 1_000, status=decision.status)
    return execution, executor, list(decision.events)


def test_a_completed_runs_snapshot_holds_its_result_memo_close_and_flow_keys() -> None:
    execution, executor, events = _run(doubler, 21, priority=3, fairness_key="tenant-a")
    snapshot = snapshot_of(execution, executor, events)
    assert snapshot.status is WorkflowStatus.COMPLETED
    assert snapshot.result is not None and CONV.from_payload(snapshot.result) == 42
    assert snapshot.failure is None
    assert (snapshot.last_seq, snapshot.close_time) == (events[-1].seq, events[-1].time)
    assert CONV.from_payload(snapshot.memo["n"]) == 21
    assert (snapshot.priority, snapshot.fairness_key) == (3, "tenant-a")
    assert snapshot.workflow_version == 1
    assert snapshot.parked is None and snapshot.paused is None


def test_a_failed_run_says_why_and_a_continued_run_has_no_outcome() -> None:
    failed, _, events = _run(failer)
    assert failed.status is WorkflowStatus.FAILED
    result, failure = outcome(failed, events)
    assert result is None and failure is not None and "no funds" in failure.message

    continued, _, events = _run(again, 1)
    assert continued.status is WorkflowStatus.CONTINUED_AS_NEW
    assert outcome(continued, events) == (None, None)


def test_an_open_run_has_no_outcome_and_no_close_time() -> None:
    execution, executor, events = _run(doubler, 1)
    opened = dataclasses.replace(execution, status=WorkflowStatus.RUNNING)
    assert outcome(opened, events) == (None, None)
    assert snapshot_of(opened, executor, events).close_time is None


def test_without_executor_or_events_the_previous_snapshot_is_kept_where_it_knows_more() -> None:
    execution, executor, events = _run(doubler, 5, priority=7, fairness_key="k")
    first = snapshot_of(execution, executor, events)
    execution.snapshot = first
    execution.parked = "its code changed"
    later = snapshot_of(execution, None, [])  # evicted, events not read
    assert later.memo == first.memo and later.search_attributes == first.search_attributes
    assert (later.priority, later.fairness_key) == (7, "k")
    assert later.parked == "its code changed"
    assert later.last_seq == 0
