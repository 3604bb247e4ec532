"""Repair records on the wire: the command, the event and the snapshot's repairs
round-trip, and records written with the previous versions (history event v3,
snapshot v4, reply v2) still read."""

from __future__ import annotations

from orchestrator.engine import events as ev
from orchestrator.serde import records as rec
from tests.unit.serde.test_serde_pause import WIRE, _written_with

POLICY = ev.RetryPolicyRecord(initial_ms=1000, backoff=2.0, maximum_ms=60_000, max_attempts=5)


def test_the_repair_command_round_trips_with_and_without_a_policy() -> None:
    for command in (
        rec.RepairWorkflow(workflow_id="w", retry_policy=POLICY, reason="bank back",
                           operator="ann", request_id="r1"),
        rec.RepairWorkflow(workflow_id="w", run_id="run", skip="bank.refund", reason="by hand"),
    ):
        encoded = WIRE.encode_command(command)
        assert dict(encoded.headers)["ce_type"] == b"saga.command.repair.v1"
        assert WIRE.decode_command(encoded.headers, encoded.value).record == command


def test_the_repair_event_and_the_snapshots_repairs_round_trip() -> None:
    event = ev.CompensationRepaired(seq=9, time=7, action="retry", retry_policy=POLICY,
                                    reason="bank back", operator="ann")
    encoded = WIRE.encode_event("w", "r", event)
    assert dict(encoded.headers)["ce_type"] == b"saga.history.event.v7"
    assert WIRE.decode_event(encoded.headers, encoded.value).record.event == event
    note = rec.RepairNote(action="skip", activity_type="bank.refund", reason="by hand",
                          operator="bo", time=8)
    snapshot = rec.WorkflowSnapshot(
        workflow_id="w", run_id="r", workflow_type="t", task_queue="q",
        status=rec.WorkflowStatus.COMPENSATING, start_time=1, last_seq=9, repairs=[note],
    )
    encoded = WIRE.encode_snapshot(snapshot)
    assert WIRE.decode_snapshot(encoded.headers, encoded.value).record == snapshot
    reply = rec.Reply(correlation_id="c", kind=rec.ReplyKind.REPAIR, workflow_id="w", ok=True)
    encoded = WIRE.encode_reply(reply)
    assert WIRE.decode_reply(encoded.headers, encoded.value).record == reply


def test_previous_versions_still_read() -> None:
    headers, value = _written_with(
        "saga.history.event.v3",
        {
            "workflow_id": "w", "run_id": "r", "seq": 4, "time": 9, "build_id": "",
            "event": ("saga.history.event.WorkflowPaused", {"reason": "x", "operator": "o"}),
        },
    )
    assert WIRE.decode_event(headers, value).record.event == ev.WorkflowPaused(
        seq=4, time=9, reason="x", operator="o"
    )
    headers, value = _written_with(
        "saga.history.snapshot.v4",
        {
            "workflow_id": "w", "run_id": "r", "workflow_type": "t", "task_queue": "q",
            "status": "COMPENSATION_FAILED", "start_time": 5, "close_time": 6, "last_seq": 4,
            "result": None, "failure": None, "search_attributes": {}, "memo": {},
            "parked": None, "parent": None, "start_request_id": None, "start_run_id": None,
            "paused": None,
        },
    )
    assert WIRE.decode_snapshot(headers, value).record.repairs == []
    headers, value = _written_with(
        "saga.reply.v2",
        {"correlation_id": "c", "kind": "RESET", "workflow_id": "w", "ok": True,
         "run_id": None, "result": None, "error": None},
    )
    assert WIRE.decode_reply(headers, value).record.kind is rec.ReplyKind.RESET
