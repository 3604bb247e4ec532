"""History event v7, snapshot v7 and start command v2: a run's priority and fairness
key (WorkflowStarted, the snapshot, the start), a signal's request id (SignalReceived,
InputDeferred). Records written with the versions before decode with priority 0, the
default key and no request id, which is what the engine did then."""

from __future__ import annotations

import pytest

from orchestrator.engine import events as ev
from orchestrator.serde import records as rec
from tests.unit.serde.test_serde_pause import WIRE, _written_with


def test_the_v7_fields_round_trip() -> None:
    for event in (
        ev.WorkflowStarted(seq=1, time=5, workflow_type="t", workflow_id="w", run_id="r",
                           task_queue="q", priority=5, fairness_key="tenantA"),
        ev.SignalReceived(seq=2, time=6, signal_name="s", request_id="req-1"),
        ev.InputDeferred(seq=3, time=7, kind="signal", name="s", request_id="req-2"),
    ):
        encoded = WIRE.encode_event("w", "r", event)
        assert dict(encoded.headers)["ce_type"] == b"saga.history.event.v7"
        assert WIRE.decode_event(encoded.headers, encoded.value).record.event == event
    snapshot = rec.WorkflowSnapshot(workflow_id="w", run_id="r", workflow_type="t",
                                    task_queue="q", status=rec.WorkflowStatus.RUNNING,
                                    start_time=1, last_seq=2, priority=-3, fairness_key="k")
    encoded = WIRE.encode_snapshot(snapshot)
    assert dict(encoded.headers)["ce_type"] == b"saga.history.snapshot.v7"
    assert WIRE.decode_snapshot(encoded.headers, encoded.value).record == snapshot
    start = rec.StartWorkflow(workflow_id="w", workflow_type="t", task_queue="q",
                              priority=5, fairness_key="tenantA")
    encoded = WIRE.encode_command(start)
    assert dict(encoded.headers)["ce_type"] == b"saga.command.start.v2"
    assert WIRE.decode_command(encoded.headers, encoded.value).record == start


@pytest.mark.parametrize("version", [1, 2, 3, 4, 5, 6])
def test_older_events_decode_with_no_priority_and_no_request_id(version: int) -> None:
    envelope = {"workflow_id": "w", "run_id": "r", "time": 5, "build_id": ""}
    headers, value = _written_with(f"saga.history.event.v{version}", {
        **envelope, "seq": 1,
        "event": ("saga.history.event.WorkflowStarted", {
            "workflow_type": "t", "workflow_id": "w", "run_id": "r", "task_queue": "q",
            "input": [],
        }),
    })
    started = WIRE.decode_event(headers, value).record.event
    assert isinstance(started, ev.WorkflowStarted)
    assert (started.priority, started.fairness_key) == (0, "")
    headers, value = _written_with(f"saga.history.event.v{version}", {
        **envelope, "seq": 2,
        "event": ("saga.history.event.SignalReceived", {"signal_name": "s", "args": []}),
    })
    signal = WIRE.decode_event(headers, value).record.event
    assert isinstance(signal, ev.SignalReceived) and signal.request_id is None


def test_an_older_held_signal_decodes_with_no_request_id() -> None:
    headers, value = _written_with("saga.history.event.v6", {
        "workflow_id": "w", "run_id": "r", "seq": 3, "time": 5, "build_id": "",
        "event": ("saga.history.event.InputDeferred", {"kind": "signal", "name": "s"}),
    })
    held = WIRE.decode_event(headers, value).record.event
    assert isinstance(held, ev.InputDeferred) and held.request_id is None


@pytest.mark.parametrize("version", [1, 2, 3, 4, 5, 6])
def test_older_snapshots_decode_with_priority_0_and_the_default_key(version: int) -> None:
    headers, value = _written_with(f"saga.history.snapshot.v{version}", {
        "workflow_id": "w", "run_id": "r", "workflow_type": "t", "task_queue": "q",
        "status": "RUNNING", "start_time": 1, "last_seq": 2,
    })
    snapshot = WIRE.decode_snapshot(headers, value).record
    assert (snapshot.priority, snapshot.fairness_key) == (0, "")


def test_a_v1_start_decodes_with_priority_0_and_the_default_key() -> None:
    headers, value = _written_with("saga.command.start.v1", {
        "workflow_id": "w", "workflow_type": "t", "task_queue": "q", "input": [],
    })
    start = WIRE.decode_command(headers, value).record
    assert isinstance(start, rec.StartWorkflow)
    assert (start.priority, start.fairness_key) == (0, "")
