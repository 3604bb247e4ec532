"""What a run's close does on the shard (worker/shard/closing.py), over a real store."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from orchestrator import activity, workflow
from orchestrator.converter import DataConverter
from orchestrator.engine import inputs
from orchestrator.engine.executor import WorkflowExecutor
from orchestrator.engine.status import WorkflowStatus
from orchestrator.serde import records as rec
from orchestrator.worker.shard.closing import RunCloser, only_workflow_timers
from orchestrator.worker.shard.executions import Execution
from orchestrator.worker.shard.heartbeats import HeartbeatStore
from orchestrator.worker.shard.replies import result_correlation_id
from orchestrator.worker.shard.retention import Retention
from orchestrator.workflow import definition_of
from tests.unit.worker.shard_harness import LAYOUT, WIRE, Parts, open_parts

CONV = DataConverter()
RETENTION_MS = 3_600_000


@workflow.defn(name="unit.close.nap")
async def nap(ctx: workflow.WorkflowContext) -> str:
    await ctx.sleep(timedelta(seconds=5))
    return "rested"


@activity.defn(name="unit.close.ping")
def ping() -> None:
    return None


@workflow.defn(name="unit.close.pinger")
async def pinger(ctx: workflow.WorkflowContext) -> None:
    await ctx.execute_activity(ping, start_to_close=timedelta(seconds=5))


@workflow.defn(name="unit.close.again")
async def again(ctx: workflow.WorkflowContext) -> None:
    ctx.continue_as_new()


def _closer(parts: Parts) -> tuple[RunCloser, Retention]:
    retention = Retention(parts.view, parts.executions, LAYOUT, 0, RETENTION_MS)
    closer = RunCloser(
        view=parts.view, executions=parts.executions, timers=parts.timers,
        heartbeats=HeartbeatStore(parts.view, WIRE), retention=retention,
        stats=parts.stats, output=parts.output,
    )
    return closer, retention


def _napped(parent: rec.ParentExecution | None = None) -> Execution:
    """A run of ``nap`` whose timer fired: it completed."""
    executor = WorkflowExecutor(definition_of(nap))
    start = inputs.StartWorkflow(workflow_id="wf", run_id="r1", workflow_type="unit.close.nap")
    first = executor.apply([start], 1_000)
    last = executor.apply([inputs.FireTimer(timer_id="timer/1")], 6_000)
    execution = Execution("wf", "r1", "unit.close.nap", "q", 1_000, parent=parent)
    execution.events = [*first.events, *last.events]
    execution.status = last.status
    execution.executor = executor
    return execution


def test_a_completed_run_replies_its_result_and_its_retention_starts(tmp_path: Path) -> None:
    parts = open_parts(tmp_path)
    closer, retention = _closer(parts)
    execution = _napped()
    assert execution.status is WorkflowStatus.COMPLETED
    parts.timers.set("wf", "r1", "timer/1", 6_000)  # stored, as a crash could have left it
    parts.executions.applied(parts.executions.seal(), 1)
    (record,) = closer.closed(execution)
    reply = WIRE.decode_reply(record.headers, record.value).record
    assert (reply.correlation_id, reply.kind, reply.ok) == (
        result_correlation_id("wf"), rec.ReplyKind.RESULT, True,
    )
    assert reply.result is not None and CONV.from_payload(reply.result) == "rested"
    assert parts.timers.pop_due(10_000, 10) == [], "the closed run's timer was cleared"
    assert retention.next_due() == 6_000 + RETENTION_MS
    assert execution.executor is None and execution.events is None, "left memory"
    assert parts.stats.closed == 1


def test_a_child_tells_its_parent_before_replying(tmp_path: Path) -> None:
    parts = open_parts(tmp_path)
    closer, _ = _closer(parts)
    parent = rec.ParentExecution(workflow_id="mum", run_id="m1", child_seq=2)
    report, reply = closer.closed(_napped(parent))
    assert (report.topic, reply.topic) == (LAYOUT.commands, LAYOUT.replies)
    news = WIRE.decode_command(report.headers, report.value).record
    assert isinstance(news, rec.ChildWorkflowResult)
    assert (news.workflow_id, news.child_workflow_id) == ("mum", "wf")
    assert parts.stats.child_reports == 1


def test_a_run_that_continued_as_new_leaves_the_reply_to_its_next_run(tmp_path: Path) -> None:
    parts = open_parts(tmp_path)
    closer, retention = _closer(parts)
    executor = WorkflowExecutor(definition_of(again))
    start = inputs.StartWorkflow(workflow_id="wf", run_id="r1", workflow_type="unit.close.again")
    decision = executor.apply([start], 1_000)
    execution = Execution("wf", "r1", "unit.close.again", "q", 1_000, status=decision.status)
    execution.events = list(decision.events)
    assert closer.closed(execution) == []
    assert execution.events, "kept: the next run's start reads the last one after a restore"
    assert retention.next_due() == 1_000 + RETENTION_MS


def test_only_a_history_of_workflow_timers_names_its_timers() -> None:
    assert only_workflow_timers(_napped().events or []) == ["timer/1"]
    executor = WorkflowExecutor(definition_of(pinger))
    start = inputs.StartWorkflow(workflow_id="wf", run_id="r1", workflow_type="unit.close.pinger")
    assert only_workflow_timers(executor.apply([start], 1_000).events) is None
    deadline = inputs.StartWorkflow(
        workflow_id="wf", run_id="r1", workflow_type="unit.close.nap", execution_deadline=9_000
    )
    timed = WorkflowExecutor(definition_of(nap)).apply([deadline], 1_000)
    assert only_workflow_timers(timed.events) is None, "the execution timeout is a timer too"
