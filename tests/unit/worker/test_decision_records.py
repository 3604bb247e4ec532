"""What a decision's commands become on the shard (worker/shard/decision_records.py),
over a real store and no broker."""

from __future__ import annotations

from pathlib import Path

from orchestrator import activity
from orchestrator.converter import DataConverter
from orchestrator.engine import commands as cmd
from orchestrator.engine import inputs
from orchestrator.engine.events import Failure
from orchestrator.log.partitioner import shard_for
from orchestrator.serde import records as rec
from orchestrator.task_token import attempt_signature
from orchestrator.worker.activity_runner import activity_definitions
from orchestrator.worker.shard import children
from orchestrator.worker.shard.decision_records import DecisionRecords
from orchestrator.worker.shard.executions import Execution, trace_of
from orchestrator.worker.shard.local_activities import LocalActivities
from tests.unit.worker.shard_harness import LAYOUT, WIRE, Parts, open_parts

CONV = DataConverter()
KEY = b"k" * 32
TRACE = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@activity.defn(name="charge")
def charge(amount: int) -> int:
    return amount


def _records(parts: Parts, local: LocalActivities | None = None) -> DecisionRecords:
    return DecisionRecords(
        output=parts.output, layout=LAYOUT, wire=WIRE, timers=parts.timers,
        stats=parts.stats, local=local, token_key=KEY,
    )


def _run() -> Execution:
    return Execution("wf", "r1", "unit.type", "q", 1_000)


def _schedule(*, local: bool = False) -> cmd.ScheduleActivityTask:
    return cmd.ScheduleActivityTask(
        workflow_id="wf", run_id="r1", workflow_type="unit.type", activity_seq=2, attempt=3,
        activity_type="charge", task_queue="payments", args=CONV.to_payloads([5]),
        scheduled_at=1_000, attempt_started_at=1_500, local=local,
    )


def test_an_activity_becomes_a_signed_task_on_its_queue_carrying_the_runs_trace(
    tmp_path: Path,
) -> None:
    parts = open_parts(tmp_path)
    parts.output.trace_run = TRACE
    (record,) = _records(parts).of(_run(), _schedule())
    assert record.topic == LAYOUT.task_queue("payments")
    task = WIRE.decode_task(record.headers, record.value).record
    assert (task.activity_seq, task.attempt, task.scheduled_time) == (2, 3, 1_500)
    assert task.token_signature == attempt_signature(KEY, "wf", "r1", 2, 3)
    assert trace_of(record.headers) == TRACE


def test_a_local_activity_this_worker_runs_waits_for_the_cycle_instead_of_a_task(
    tmp_path: Path,
) -> None:
    parts = open_parts(tmp_path)
    local = LocalActivities(activity_definitions([charge]), CONV)
    records = _records(parts, local)
    parts.output.trace_run = TRACE
    assert records.of(_run(), _schedule(local=True)) == []
    assert [(task.activity_type, trace) for task, trace in records.local_due] == [
        ("charge", TRACE)
    ]
    assert len(records.of(_run(), _schedule(local=False))) == 1, "not asked to be local"
    local.close()


def test_timers_go_to_the_index_and_leave_it_when_cancelled(tmp_path: Path) -> None:
    parts = open_parts(tmp_path)
    records = _records(parts)
    assert records.of(_run(), cmd.StartTimer(timer_id="timer/1", fire_at=9_000)) == []
    assert parts.timers.next_due() == 9_000
    assert records.of(_run(), cmd.CancelTimer(timer_id="timer/1")) == []
    assert parts.timers.pop_due(10_000, 10) == []


def test_an_update_is_answered_with_what_its_handler_decided(tmp_path: Path) -> None:
    parts = open_parts(tmp_path)
    failure = Failure(message="too late", type="ValueError")
    (record,) = _records(parts).of(_run(), cmd.RespondUpdate(update_id="u-1", failure=failure))
    reply = WIRE.decode_reply(record.headers, record.value).record
    assert (reply.correlation_id, reply.kind, reply.run_id, reply.ok) == (
        "u-1", rec.ReplyKind.UPDATE, "r1", False,
    )
    assert reply.error is not None and reply.error.message == "too late"


def test_a_cancel_reaches_only_an_attempt_some_worker_has(tmp_path: Path) -> None:
    parts = open_parts(tmp_path)
    records = _records(parts)
    waiting = cmd.CancelActivityTask(activity_seq=2, attempt=1, task_queue="q", dispatched=False)
    assert records.of(_run(), waiting) == []
    running = cmd.CancelActivityTask(activity_seq=2, attempt=1, task_queue="q", activity_type="a")
    (record,) = records.of(_run(), running)
    assert (record.topic, record.partition) == (LAYOUT.activity_cancels, 0)
    cancel = WIRE.decode_cancel(record.headers, record.value).record
    assert (cancel.workflow_id, cancel.run_id, cancel.activity_seq) == ("wf", "r1", 2)
    assert parts.stats.activity_cancels == 1


def test_a_child_start_goes_to_the_childs_shard_with_a_stable_id(tmp_path: Path) -> None:
    parts = open_parts(tmp_path)
    start = inputs.StartWorkflow(
        workflow_id="kid", run_id="", workflow_type="unit.kid",
        parent_workflow_id="wf", parent_run_id="r1",
    )
    (record,) = _records(parts).of(_run(), cmd.StartChildWorkflow(child_seq=4, start=start))
    assert (record.topic, record.partition) == (LAYOUT.commands, shard_for("kid", LAYOUT.shards))
    decoded = WIRE.decode_command(record.headers, record.value)
    assert decoded.cloud_event.id == children.child_start_id("wf", "r1", 4)
    assert isinstance(decoded.record, rec.StartWorkflow)
    assert decoded.record.parent == rec.ParentExecution(workflow_id="wf", run_id="r1", child_seq=4)
    assert parts.stats.children_started == 1


def test_continue_as_new_names_the_next_run_and_writes_nothing(tmp_path: Path) -> None:
    parts = open_parts(tmp_path)
    execution = _run()
    following = inputs.StartWorkflow(workflow_id="wf", run_id="r2", workflow_type="unit.type")
    assert _records(parts).of(execution, cmd.ContinueAsNewRun(start=following)) == []
    assert execution.next_run is following
