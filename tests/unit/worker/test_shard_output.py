"""The records a shard writes (worker/shard/output.py) and the replies it builds
(worker/shard/replies.py), over a real store and real executors."""

from __future__ import annotations

from pathlib import Path

from orchestrator import workflow
from orchestrator.converter import DataConverter
from orchestrator.engine import inputs
from orchestrator.engine.executor import WorkflowExecutor
from orchestrator.engine.status import WorkflowStatus
from orchestrator.serde import records as rec
from orchestrator.serde.keys import snapshot_key
from orchestrator.serde.wire import EncodedRecord
from orchestrator.worker.shard.executions import Execution, ExecutionTable, trace_of
from orchestrator.worker.shard.replies import acknowledgement, query_reply
from orchestrator.workflow import definition_of
from tests.unit.worker.shard_harness import LAYOUT, WIRE, open_parts

CONV = DataConverter()
COMMAND_TRACE = "00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01"
RUN_TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-b7ad6b7169203331-01"
SIGNALLED = rec.Reply(correlation_id="c", kind=rec.ReplyKind.SIGNAL, workflow_id="wf", ok=True)


@workflow.defn(name="unit.output.counter")
async def counter(ctx: workflow.WorkflowContext) -> None:
    seen: list[str] = []
    ctx.set_signal_handler("tick", seen.append)

    def count(strict: bool) -> int:
        if strict:
            raise ValueError("strict counts are not kept")
        return len(seen)

    ctx.set_query_handler("count", count)
    await ctx.wait_condition(lambda: len(seen) > 9)


def _counting() -> tuple[Execution, WorkflowExecutor]:
    executor = WorkflowExecutor(definition_of(counter))
    start = inputs.StartWorkflow(
        workflow_id="wf", run_id="r1", workflow_type="unit.output.counter"
    )
    executor.apply([start, inputs.SendSignal(name="tick", args=CONV.to_payloads(["a"]))], 1)
    return Execution("wf", "r1", "unit.output.counter", "q", 1), executor


def test_a_reply_follows_the_commands_trace_and_other_records_the_runs(tmp_path: Path) -> None:
    output = open_parts(tmp_path).output
    output.trace_command, output.trace_run = COMMAND_TRACE, RUN_TRACE
    reply = output.reply(SIGNALLED)
    task = output.task(
        rec.ActivityTask(workflow_id="wf", run_id="r1", activity_seq=1, activity_type="a",
                         attempt=1, task_queue="q", scheduled_time=1)
    )
    assert (reply.topic, trace_of(reply.headers)) == (LAYOUT.replies, COMMAND_TRACE)
    assert (task.topic, trace_of(task.headers)) == (LAYOUT.task_queue("q"), RUN_TRACE)
    output.trace_command = None
    reply = output.reply(SIGNALLED)
    assert trace_of(reply.headers) == RUN_TRACE, "no command: the run's"


def test_a_record_that_carries_its_own_trace_keeps_it(tmp_path: Path) -> None:
    output = open_parts(tmp_path).output
    output.trace_run = RUN_TRACE
    own = EncodedRecord(b"k", b"v", [("traceparent", COMMAND_TRACE.encode())])
    record = output.out(LAYOUT.commands, own, 3)
    assert [v for k, v in record.headers if k == "traceparent"] == [COMMAND_TRACE.encode()]
    assert record.partition == 3


def test_a_snapshot_is_written_to_history_and_the_store(tmp_path: Path) -> None:
    parts = open_parts(tmp_path)
    execution, executor = _counting()
    execution.traceparent = RUN_TRACE
    parts.executions.add(execution)
    record = parts.output.snapshot(execution, executor)
    assert (record.topic, record.partition, record.key) == (
        LAYOUT.history, 0, snapshot_key("wf"),
    )
    assert trace_of(record.headers) == RUN_TRACE, "a run's records join the run's trace"
    assert execution.snapshot == WIRE.decode_snapshot(record.headers, record.value).record
    stored = ExecutionTable(parts.view, WIRE, 10).get("wf")  # read back from the store
    assert stored is not None and stored.snapshot == execution.snapshot


def test_a_query_is_answered_by_the_open_runs_handler_or_says_why_not() -> None:
    execution, executor = _counting()

    def ask(strict: bool, runner: WorkflowExecutor | None = executor) -> rec.Reply:
        query = rec.QueryWorkflow(workflow_id="wf", query_id="q-1", query_name="count",
                                  args=CONV.to_payloads([strict]))
        return query_reply(execution, runner, query)

    answer = ask(False)
    assert answer.ok and answer.result is not None and CONV.from_payload(answer.result) == 1
    failed = ask(True)
    assert not failed.ok and failed.error is not None and failed.error.type == "ValueError"
    execution.parked = "its code changed"
    assert (e := ask(False, None).error) is not None and e.type == "WorkflowParked"
    execution.status = WorkflowStatus.CANCELLED
    assert (e := ask(False, None).error) is not None and e.type == "WorkflowClosed"


def test_an_acknowledgement_says_why_a_command_left_no_trace() -> None:
    execution, _ = _counting()
    signal = rec.SignalWorkflow(workflow_id="wf", signal_name="tick", request_id=None)
    ok = acknowledgement(signal, "ce-1", execution, [])
    assert (ok.correlation_id, ok.kind, ok.ok, ok.error) == (
        "ce-1", rec.ReplyKind.SIGNAL, True, None,
    )
    refused = acknowledgement(signal, "ce-1", execution, ["bad args", "no handler"])
    assert not refused.ok and refused.error is not None
    assert (refused.error.type, refused.error.message) == (
        "CommandRejected", "bad args; no handler",
    )
