"""History event v6 and snapshot v6 (versions side by side): WorkflowStarted and
WorkflowContinuedAsNew carry ``workflow_version``, the snapshot too; records written
with v5 (before versions) decode as version 1 and, for a continue-as-new, as "the
newest" (None), the only behaviour there was."""

from __future__ import annotations

from orchestrator.engine import events as ev
from orchestrator.serde import records as rec
from tests.unit.serde.test_serde_pause import WIRE, _written_with


def test_the_v6_fields_round_trip() -> None:
    for event in (
        ev.WorkflowStarted(seq=1, time=5, workflow_type="t", workflow_id="w", run_id="r",
                           task_queue="q", workflow_version=2),
        ev.WorkflowContinuedAsNew(seq=4, time=6, build_id="b", new_run_id="r2",
                                  workflow_type="t", task_queue="q", workflow_version=1),
    ):
        encoded = WIRE.encode_event("w", "r", event)
        assert dict(encoded.headers)["ce_type"] == b"saga.history.event.v7"
        assert WIRE.decode_event(encoded.headers, encoded.value).record.event == event
    snapshot = rec.WorkflowSnapshot(workflow_id="w", run_id="r", workflow_type="t",
                                    task_queue="q", status=rec.WorkflowStatus.RUNNING,
                                    start_time=1, last_seq=2, workflow_version=3)
    encoded = WIRE.encode_snapshot(snapshot)
    assert dict(encoded.headers)["ce_type"] == b"saga.history.snapshot.v7"
    assert WIRE.decode_snapshot(encoded.headers, encoded.value).record == snapshot


def test_a_v5_start_decodes_as_version_1_and_a_v5_continue_as_the_newest() -> None:
    headers, value = _written_with(
        "saga.history.event.v5",
        {
            "workflow_id": "w", "run_id": "r", "seq": 1, "time": 5, "build_id": "",
            "event": ("saga.history.event.WorkflowStarted", {
                "workflow_type": "t", "workflow_id": "w", "run_id": "r", "task_queue": "q",
                "input": [],
            }),
        },
    )
    started = WIRE.decode_event(headers, value).record.event
    assert isinstance(started, ev.WorkflowStarted) and started.workflow_version == 1
    headers, value = _written_with(
        "saga.history.event.v5",
        {
            "workflow_id": "w", "run_id": "r", "seq": 4, "time": 6, "build_id": "b",
            "event": ("saga.history.event.WorkflowContinuedAsNew", {
                "new_run_id": "r2", "workflow_type": "t", "task_queue": "q", "input": [],
            }),
        },
    )
    continued = WIRE.decode_event(headers, value).record.event
    assert isinstance(continued, ev.WorkflowContinuedAsNew)
    assert continued.workflow_version is None


def test_a_v5_snapshot_decodes_as_version_1() -> None:
    headers, value = _written_with(
        "saga.history.snapshot.v5",
        {
            "workflow_id": "w", "run_id": "r", "workflow_type": "t", "task_queue": "q",
            "status": "RUNNING", "start_time": 1, "last_seq": 2,
        },
    )
    assert WIRE.decode_snapshot(headers, value).record.workflow_version == 1
