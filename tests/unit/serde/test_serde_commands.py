"""Commands, tasks, replies and snapshots: round trips, headers, and a start from raw Avro."""

from __future__ import annotations

import io
import json
import uuid
from typing import Any

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from serde_strategies import records

from orchestrator.converter import JsonPayloadConverter, Payload
from orchestrator.serde import (
    ActivityTask,
    CancelWorkflow,
    IdReusePolicy,
    RecordEncodeError,
    Reply,
    StartWorkflow,
    WireFormat,
    WorkflowSnapshot,
    idempotency_key,
    snapshot_key,
)
from orchestrator.serde.wire import COMMAND_FAMILIES

WIRE = WireFormat(source="/tests/serde")

# families whose writer schema is past v1 (the activity outcomes gained request_id,
# the start its priority and fairness key)
_VERSIONS = {
    "saga.command.activity-completed": "v2",
    "saga.command.activity-failed": "v2",
    "saga.command.activity-heartbeat": "v2",
    "saga.command.start": "v2",
}
commands = st.one_of(*(records(cls) for cls in COMMAND_FAMILIES))


@settings(max_examples=300)
@given(command=commands)
def test_every_command_round_trips(command: Any) -> None:
    encoded = WIRE.encode_command(command)
    decoded = WIRE.decode_command(encoded.headers, encoded.value)
    assert decoded.record == command
    assert encoded.key == command.workflow_id.encode()
    family = COMMAND_FAMILIES[type(command)]
    assert decoded.cloud_event.type == f"{family}.{_VERSIONS.get(family, 'v1')}"
    assert decoded.cloud_event.source == "/tests/serde"


@given(task=records(ActivityTask))
def test_activity_tasks_round_trip(task: ActivityTask) -> None:
    encoded = WIRE.encode_task(task)
    assert WIRE.decode_task(encoded.headers, encoded.value).record == task


@given(reply=records(Reply))
def test_replies_round_trip(reply: Reply) -> None:
    encoded = WIRE.encode_reply(reply)
    assert encoded.key == reply.correlation_id.encode()
    assert WIRE.decode_reply(encoded.headers, encoded.value).record == reply


@given(snapshot=records(WorkflowSnapshot))
def test_snapshots_round_trip(snapshot: WorkflowSnapshot) -> None:
    encoded = WIRE.encode_snapshot(snapshot)
    assert encoded.key == snapshot_key(snapshot.workflow_id)
    assert WIRE.decode_snapshot(encoded.headers, encoded.value).record == snapshot
    assert WIRE.decode_history(encoded.headers, encoded.value).record == snapshot


def test_activity_task_idempotency_key_defaults_to_the_stable_form() -> None:
    task = ActivityTask(
        workflow_id="order-1",
        run_id="r1",
        activity_seq=3,
        activity_type="charge",
        attempt=2,
        task_queue="payments",
        scheduled_time=0,
    )
    assert task.idempotency_key == "order-1/r1/3" == idempotency_key("order-1", "r1", 3)


def test_command_headers_follow_the_cloudevents_kafka_binding() -> None:
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    encoded = WIRE.encode_command(
        CancelWorkflow(workflow_id="w"), ce_id="id-1", traceparent=traceparent
    )
    assert encoded.headers == [
        ("ce_specversion", b"1.0"),
        ("ce_id", b"id-1"),
        ("ce_type", b"saga.command.cancel.v1"),
        ("ce_source", b"/tests/serde"),
        ("content-type", b"application/avro"),
        ("traceparent", traceparent.encode()),
    ]
    decoded = WIRE.decode_command(encoded.headers, encoded.value)
    assert decoded.cloud_event.traceparent == traceparent


def test_command_ids_default_to_fresh_uuids() -> None:
    first = dict(WIRE.encode_command(CancelWorkflow(workflow_id="w")).headers)["ce_id"]
    second = dict(WIRE.encode_command(CancelWorkflow(workflow_id="w")).headers)["ce_id"]
    assert first != second
    uuid.UUID(first.decode())


def test_a_raw_producer_with_only_the_avsc_file_can_start_a_workflow() -> None:
    """What schemas/README.md tells users of any Kafka client to do, verbatim in spirit."""
    path = WIRE.registry.directory / "saga.command.start.v1.avsc"
    schema = fastavro.parse_schema(json.loads(path.read_text(encoding="utf-8")))
    value = io.BytesIO()
    fastavro.schemaless_writer(
        value,
        schema,
        {
            "workflow_id": "order-42",
            "workflow_type": "transfer",
            "task_queue": "payments",
            "input": [{"metadata": {"encoding": b"json/plain"}, "data": b'{"amount":100}'}],
        },
    )
    headers = [
        ("ce_specversion", b"1.0"),
        ("ce_id", str(uuid.uuid4()).encode()),
        ("ce_type", b"saga.command.start.v1"),
        ("ce_source", b"/billing/cron"),
        ("content-type", b"application/avro"),
    ]
    decoded = WIRE.decode_command(headers, value.getvalue())
    start = decoded.record
    assert isinstance(start, StartWorkflow)
    assert (start.workflow_id, start.workflow_type, start.task_queue) == (
        "order-42",
        "transfer",
        "payments",
    )
    assert JsonPayloadConverter().decode(start.input[0]) == {"amount": 100}
    assert start.id_reuse_policy is IdReusePolicy.ALLOW_DUPLICATE
    assert start.request_id is None
    assert decoded.cloud_event.source == "/billing/cron"


def test_content_type_header_is_optional_for_raw_producers() -> None:
    encoded = WIRE.encode_command(CancelWorkflow(workflow_id="w"))
    headers = [h for h in encoded.headers if h[0] != "content-type"]
    assert WIRE.decode_command(headers, encoded.value).record == CancelWorkflow(workflow_id="w")


def test_encoding_a_non_command_is_refused() -> None:
    with pytest.raises(RecordEncodeError, match="not a command"):
        WIRE.encode_command(Payload({}, b""))  # type: ignore[arg-type]


def test_out_of_range_integers_are_refused_when_encoding() -> None:
    start = StartWorkflow(
        workflow_id="w", workflow_type="t", task_queue="q", execution_timeout_ms=2**64
    )
    with pytest.raises(RecordEncodeError, match=r"saga\.command\.start\.v2"):
        WIRE.encode_command(start)


def test_oversized_values_are_refused_when_encoding() -> None:
    small = WireFormat(WIRE.registry, max_record_bytes=100)
    start = StartWorkflow(
        workflow_id="w", workflow_type="t", task_queue="q", input=[Payload({}, b"x" * 200)]
    )
    with pytest.raises(RecordEncodeError, match="over the 100-byte limit"):
        small.encode_command(start)
