"""Records of child workflows: the child-result command, and snapshots naming a parent."""

from __future__ import annotations

import io
import json

import fastavro

from orchestrator.converter import Payload
from orchestrator.engine.events import Failure
from orchestrator.serde import (
    ChildOutcome,
    ChildWorkflowResult,
    ParentExecution,
    WireFormat,
    WorkflowSnapshot,
    WorkflowStatus,
)

WIRE = WireFormat(source="/tests/serde")


def test_a_child_result_is_a_command_keyed_by_the_parents_workflow_id() -> None:
    report = ChildWorkflowResult(
        workflow_id="parent-1",
        run_id="run-p",
        child_seq=2,
        child_workflow_id="parent-1/kid",
        child_run_id="run-k",
        outcome=ChildOutcome.COMPLETED,
        result=Payload({"encoding": b"json/plain"}, b"42"),
    )
    encoded = WIRE.encode_command(report)
    assert encoded.key == b"parent-1"
    assert dict(encoded.headers)["ce_type"] == b"saga.command.child-result.v1"
    assert WIRE.decode_command(encoded.headers, encoded.value).record == report


def test_a_refused_child_start_has_no_run() -> None:
    report = ChildWorkflowResult(
        workflow_id="p",
        run_id="r",
        child_seq=1,
        child_workflow_id="kid",
        outcome=ChildOutcome.FAILED,
        failure=Failure(message="in use", type="WorkflowAlreadyStarted", non_retryable=True),
    )
    encoded = WIRE.encode_command(report)
    decoded = WIRE.decode_command(encoded.headers, encoded.value).record
    assert decoded == report and decoded.child_run_id is None


def test_snapshots_are_written_as_the_newest_version_and_carry_the_parent() -> None:
    snapshot = WorkflowSnapshot(
        workflow_id="kid",
        run_id="run-k",
        workflow_type="t",
        task_queue="q",
        status=WorkflowStatus.RUNNING,
        start_time=1,
        last_seq=1,
        parent=ParentExecution(workflow_id="p", run_id="run-p", child_seq=3),
    )
    encoded = WIRE.encode_snapshot(snapshot)
    assert dict(encoded.headers)["ce_type"] == b"saga.history.snapshot.v7"
    assert WIRE.decode_snapshot(encoded.headers, encoded.value).record == snapshot


def test_a_v1_snapshot_of_an_older_engine_still_decodes_without_a_parent() -> None:
    path = WIRE.registry.directory / "saga.history.snapshot.v1.avsc"
    schema = fastavro.parse_schema(json.loads(path.read_text(encoding="utf-8")))
    value = io.BytesIO()
    fastavro.schemaless_writer(
        value,
        schema,
        {
            "workflow_id": "w",
            "run_id": "r",
            "workflow_type": "t",
            "task_queue": "q",
            "status": "COMPLETED",
            "start_time": 5,
            "close_time": 9,
            "last_seq": 4,
            "result": None,
            "failure": None,
            "search_attributes": {},
            "memo": {},
        },
    )
    headers = [
        ("ce_specversion", b"1.0"),
        ("ce_id", b"w/snapshot/r/4"),
        ("ce_type", b"saga.history.snapshot.v1"),
        ("ce_source", b"/old-engine"),
    ]
    decoded = WIRE.decode_snapshot(headers, value.getvalue()).record
    assert decoded.parent is None and decoded.parked is None
    assert decoded.start_request_id is None and decoded.start_run_id is None
    assert (decoded.status, decoded.close_time, decoded.last_seq) == (
        WorkflowStatus.COMPLETED,
        9,
        4,
    )


def test_a_snapshot_keeps_the_request_id_of_its_start() -> None:
    snapshot = WorkflowSnapshot(
        workflow_id="w",
        run_id="run-3",
        workflow_type="t",
        task_queue="q",
        status=WorkflowStatus.COMPLETED,
        start_time=1,
        last_seq=2,
        start_request_id="req-1",
        start_run_id="run-1",
    )
    encoded = WIRE.encode_snapshot(snapshot)
    assert WIRE.decode_snapshot(encoded.headers, encoded.value).record == snapshot
