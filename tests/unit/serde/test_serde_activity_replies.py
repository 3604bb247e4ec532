"""Outcomes sent by task token on the wire: the v2 outcome commands carry
``request_id`` and ``token_signature``, the v3 task its ``token_signature``, the v4
reply the kind ``ACTIVITY``; outcomes written with v1 and tasks written with v2 (by
workers of before) still read, unsigned and with no request id (so no reply)."""

from __future__ import annotations

from orchestrator.converter import Payload
from orchestrator.engine.events import Failure
from orchestrator.serde import records as rec
from orchestrator.serde.registry import SchemaRegistry
from orchestrator.serde.wire import WireFormat
from tests.unit.serde.test_serde_pause import WIRE, _written_with

RESULT = Payload(metadata={"encoding": b"json/plain"}, data=b'"paid"')


def test_outcomes_carry_a_request_id_and_v1_outcomes_still_read() -> None:
    command = rec.ActivityTaskCompleted(
        workflow_id="w", run_id="r", activity_seq=2, attempt=1, result=RESULT, request_id="q1",
        token_signature="c2lnbmVk",
    )
    encoded = WIRE.encode_command(command)
    assert dict(encoded.headers)["ce_type"] == b"saga.command.activity-completed.v2"
    assert WIRE.decode_command(encoded.headers, encoded.value).record == command
    headers, value = _written_with(
        "saga.command.activity-failed.v1",
        {"workflow_id": "w", "run_id": "r", "activity_seq": 2, "attempt": 1, "identity": "",
         "failure": {"message": "m", "type": "T", "non_retryable": False, "details": [],
                     "stack_trace": "", "cause": None}},
    )
    old = WIRE.decode_command(headers, value).record
    assert isinstance(old, rec.ActivityTaskFailed)
    assert old.request_id is None and old.failure == Failure(message="m", type="T")
    assert old.token_signature == ""
    headers, value = _written_with(
        "saga.command.activity-heartbeat.v1",
        {"workflow_id": "w", "run_id": "r", "activity_seq": 2, "attempt": 1, "details": []},
    )
    beat = WIRE.decode_command(headers, value).record
    assert isinstance(beat, rec.ActivityHeartbeat) and beat.request_id is None


def test_the_activity_reply_kind_round_trips() -> None:
    reply = rec.Reply(
        correlation_id="q1", kind=rec.ReplyKind.ACTIVITY, workflow_id="w", run_id="r", ok=False,
        error=Failure(message="nothing changed", type="ActivityNotRunning", non_retryable=True),
    )
    encoded = WIRE.encode_reply(reply)
    assert dict(encoded.headers)["ce_type"] == b"saga.reply.v4"
    assert WIRE.decode_reply(encoded.headers, encoded.value).record == reply


def test_a_task_carries_its_signature_and_a_v2_task_reads_unsigned() -> None:
    task = rec.ActivityTask(
        workflow_id="w", run_id="r", activity_seq=3, activity_type="charge", attempt=2,
        task_queue="q", scheduled_time=1, token_signature="c2lnbmVk",
    )
    encoded = WIRE.encode_task(task)
    assert dict(encoded.headers)["ce_type"] == b"saga.task.activity.v3"
    assert WIRE.decode_task(encoded.headers, encoded.value).record == task
    pinned = WireFormat(SchemaRegistry(write_versions={"saga.task.activity": 2}))
    old = pinned.encode_task(task)
    assert dict(old.headers)["ce_type"] == b"saga.task.activity.v2"
    assert WIRE.decode_task(old.headers, old.value).record.token_signature == ""
