"""Pause records on the wire: new commands and events round-trip, and records written
with the previous schema versions (history event v2, snapshot v3, reply v1) still read."""

from __future__ import annotations

import io
import json
from typing import Any

import fastavro

from orchestrator.converter import DataConverter
from orchestrator.engine import events as ev
from orchestrator.engine.deferral import DEFERRED_KINDS, from_deferred, to_deferred
from orchestrator.serde import records as rec
from orchestrator.serde.wire import WireFormat

WIRE = WireFormat()
CONV = DataConverter()


def _written_with(ce_type: str, datum: dict[str, Any]) -> tuple[list[tuple[str, bytes]], bytes]:
    path = WIRE.registry.directory / f"{ce_type}.avsc"
    schema = fastavro.parse_schema(json.loads(path.read_text(encoding="utf-8")))
    value = io.BytesIO()
    fastavro.schemaless_writer(value, schema, datum)
    headers = [
        ("ce_specversion", b"1.0"),
        ("ce_id", b"x"),
        ("ce_type", ce_type.encode()),
        ("ce_source", b"/old"),
    ]
    return headers, value.getvalue()


def test_pause_and_unpause_commands_round_trip() -> None:
    for command in (
        rec.PauseWorkflow(workflow_id="w", reason="outage", operator="ops", request_id="r1"),
        rec.UnpauseWorkflow(workflow_id="w", run_id="run", operator="ops"),
    ):
        encoded = WIRE.encode_command(command)
        assert WIRE.decode_command(encoded.headers, encoded.value).record == command


def test_every_kind_of_held_input_round_trips_through_history() -> None:
    failure = ev.Failure(message="boom", type="E")
    payload = CONV.to_payload("v")
    from orchestrator.engine import inputs as inp

    held = [
        inp.SendSignal(name="s", args=[payload]),
        inp.RequestUpdate(update_id="u", name="n", args=[payload]),
        inp.ActivityTaskCompleted(activity_seq=2, attempt=3, result=payload),
        inp.ActivityTaskFailed(activity_seq=2, attempt=3, failure=failure),
        inp.FireTimer(timer_id="timer/1"),
        inp.CancelWorkflow(reason="why"),
        inp.ChildStarted(child_seq=1, run_id="kid-run"),
        inp.ChildCompleted(child_seq=1, result=payload),
        inp.ChildFailed(child_seq=1, failure=failure),
    ]
    kinds = []
    for seq, given in enumerate(held, start=1):
        event = to_deferred(given, seq, 100)
        assert event is not None
        kinds.append(event.kind)
        encoded = WIRE.encode_event("w", "r", event)
        decoded = WIRE.decode_event(encoded.headers, encoded.value).record.event
        assert isinstance(decoded, ev.InputDeferred)
        assert from_deferred(decoded) == given
    assert tuple(kinds) == DEFERRED_KINDS
    assert to_deferred(inp.TerminateWorkflow(reason="x"), 1, 1) is None


def test_a_v2_history_event_still_reads() -> None:
    headers, value = _written_with(
        "saga.history.event.v2",
        {
            "workflow_id": "w",
            "run_id": "r",
            "seq": 4,
            "time": 9,
            "build_id": "",
            "event": ("saga.history.event.TimerFired", {"timer_id": "timer/1"}),
        },
    )
    record = WIRE.decode_event(headers, value).record
    assert record.event == ev.TimerFired(seq=4, time=9, timer_id="timer/1")


def test_a_v3_snapshot_still_reads_as_not_paused() -> None:
    headers, value = _written_with(
        "saga.history.snapshot.v3",
        {
            "workflow_id": "w",
            "run_id": "r",
            "workflow_type": "t",
            "task_queue": "q",
            "status": "RUNNING",
            "start_time": 5,
            "close_time": None,
            "last_seq": 4,
            "result": None,
            "failure": None,
            "search_attributes": {},
            "memo": {},
            "parked": None,
            "parent": None,
            "start_request_id": None,
            "start_run_id": None,
        },
    )
    snapshot = WIRE.decode_snapshot(headers, value).record
    assert snapshot.status is rec.WorkflowStatus.RUNNING and snapshot.paused is None


def test_a_v1_reply_still_reads() -> None:
    headers, value = _written_with(
        "saga.reply.v1",
        {
            "correlation_id": "c",
            "kind": "SIGNAL",
            "workflow_id": "w",
            "ok": True,
            "run_id": None,
            "result": None,
            "error": None,
        },
    )
    reply = WIRE.decode_reply(headers, value).record
    assert reply.kind is rec.ReplyKind.SIGNAL and reply.ok
