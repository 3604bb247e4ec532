"""The public surface of orchestrator.serde is pinned: changing it is a conscious act."""

from __future__ import annotations

import orchestrator.serde as serde


def test_exports_are_pinned() -> None:
    assert sorted(serde.__all__) == sorted(
        [
            "DEFAULT_MAX_RECORD_BYTES",
            "ActivityCancel",
            "ActivityHeartbeat",
            "ActivityTask",
            "ActivityTaskCompleted",
            "ActivityTaskFailed",
            "AesGcmCodec",
            "CancelWorkflow",
            "ChildOutcome",
            "ChildWorkflowResult",
            "CloudEvent",
            "CodecChain",
            "Command",
            "DecodeFailure",
            "Decoded",
            "EncodedRecord",
            "Headers",
            "HistoryRecord",
            "IdReusePolicy",
            "InHeaders",
            "ParentExecution",
            "PayloadCodecError",
            "PayloadKeyError",
            "QueryWorkflow",
            "RecordDecodeError",
            "RecordEncodeError",
            "Reply",
            "ReplyKind",
            "SchemaError",
            "SchemaRegistry",
            "SchemaVersion",
            "SerdeError",
            "SignalWithStart",
            "SignalWorkflow",
            "StartWorkflow",
            "TerminateWorkflow",
            "UpdateWorkflow",
            "WireFormat",
            "WorkflowSnapshot",
            "WorkflowStatus",
            "ZlibCodec",
            "command_key",
            "event_key",
            "idempotency_key",
            "reply_key",
            "snapshot_key",
            "task_key",
        ]
    )
    for name in serde.__all__:
        assert hasattr(serde, name), name


def test_every_error_is_a_serde_error() -> None:
    for error in (
        serde.RecordDecodeError,
        serde.RecordEncodeError,
        serde.SchemaError,
        serde.PayloadCodecError,
        serde.PayloadKeyError,
    ):
        assert issubclass(error, serde.SerdeError)
