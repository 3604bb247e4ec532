"""One status enum: saga code, clients, the engine and the wire share one spelling."""

from __future__ import annotations

import json

from orchestrator import client, serde, status, workflow
from orchestrator.client._common import CommandBuilder
from orchestrator.converter import DataConverter
from orchestrator.engine import status as engine_status
from orchestrator.serde import WireFormat, WorkflowSnapshot

WIRE = WireFormat(source="/tests/status")


def test_every_public_name_is_the_same_enum() -> None:
    assert workflow.WorkflowStatus is status.WorkflowStatus
    assert client.WorkflowStatus is status.WorkflowStatus
    assert serde.WorkflowStatus is status.WorkflowStatus
    assert engine_status.WorkflowStatus is status.WorkflowStatus
    assert client.WorkflowStatus.COMPLETED == workflow.WorkflowStatus.COMPLETED


def test_values_are_the_names_and_the_avro_symbols() -> None:
    names = [s.name for s in status.WorkflowStatus]
    assert [s.value for s in status.WorkflowStatus] == names
    for version in ("v1", "v2"):
        path = WIRE.registry.directory / f"saga.history.snapshot.{version}.avsc"
        fields = json.loads(path.read_text(encoding="utf-8"))["fields"]
        symbols = next(f["type"]["symbols"] for f in fields if f["name"] == "status")
        assert sorted(symbols) == sorted(names), version


def test_a_snapshot_read_by_a_client_compares_equal_to_the_workflow_status() -> None:
    snapshot = WorkflowSnapshot(
        workflow_id="wf-1",
        run_id="run-1",
        workflow_type="payments.transfer",
        task_queue="payments",
        status=workflow.WorkflowStatus.COMPENSATION_FAILED,
        start_time=1_700_000_000_000,
        last_seq=7,
    )
    encoded = WIRE.encode_snapshot(snapshot)
    decoded = WIRE.decode_snapshot(encoded.headers, encoded.value).record
    builder = CommandBuilder(WIRE, DataConverter(), 8, source="/tests/status")
    described = builder.describe(decoded)
    assert described.status == workflow.WorkflowStatus.COMPENSATION_FAILED
    assert described.status.value == "COMPENSATION_FAILED"
    assert not described.is_open
