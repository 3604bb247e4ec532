"""Flow control on the wire: task v2 fields, v1 tasks still read, a pinned writer,
and the config and state records."""

from __future__ import annotations

from orchestrator.serde.records import ActivityTask, FlowControl, FlowState
from orchestrator.serde.registry import SchemaRegistry
from orchestrator.serde.wire import WireFormat

TASK = ActivityTask(
    workflow_id="w", run_id="r", activity_seq=3, activity_type="charge", attempt=2,
    task_queue="payments", scheduled_time=1, priority=9, fairness_key="merchant-7",
)  # fmt: skip


def test_a_task_carries_priority_and_fairness_key() -> None:
    wire = WireFormat()
    encoded = wire.encode_task(TASK)
    assert dict(encoded.headers)["ce_type"] == b"saga.task.activity.v3"
    assert wire.decode_task(encoded.headers, encoded.value).record == TASK


def test_a_v1_task_reads_as_priority_zero_of_the_default_key() -> None:
    pinned = WireFormat(SchemaRegistry(write_versions={"saga.task.activity": 1}))
    encoded = pinned.encode_task(TASK)
    assert dict(encoded.headers)["ce_type"] == b"saga.task.activity.v1"
    record = WireFormat().decode_task(encoded.headers, encoded.value).record
    assert (record.priority, record.fairness_key) == (0, "")
    assert record.idempotency_key == TASK.idempotency_key


def test_config_and_state_round_trip() -> None:
    wire = WireFormat()
    config = FlowControl(queue="q", rate=50.0, burst=10, key_rate=5.0, weights={"a": 3.0})
    state = FlowState(
        queue="q", time_ms=5, low=10, position=20, pending=[10, 12, 15, 20],
        queue_tokens=0.5, key_tokens={"a": 0.25}, released=7, released_keys={"a": 7},
        throttled=3, throttled_keys={"a": 1}, window_full=2, waiting={"9/a": 4}, unstarted=3,
    )  # fmt: skip
    for record in (config, state):
        encoded = wire.encode_flow(record, "id")
        assert encoded.key == b"q"
        assert wire.decode_flow(encoded.headers, encoded.value).record == record
