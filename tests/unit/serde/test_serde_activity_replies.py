"""Outcomes sent by task token on the wire: the v2 outcome commands carry
``request_id``, the v4 reply the kind ``ACTIVITY``, and outcomes written with v1 (by
activity workers of before) still read, with no request id (so they get no reply)."""

from __future__ import annotations

from orchestrator.converter import Payload
from orchestrator.engine.events import Failure
from orchestrator.serde import records as rec
from tests.unit.serde.test_serde_pause import WIRE, _written_with

RESULT = Payload(metadata={"encoding": b"json/plain"}, data=b'"paid"')


def test_outcomes_carry_a_request_id_and_v1_outcomes_still_read() -> None:
    command = rec.ActivityTaskCompleted(
        workflow_id="w", run_id="r", activity_seq=2, attempt=1, result=RESULT, request_id="q1"
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
