"""The wire format: Avro records framed as CloudEvents (binary mode) on every topic.

Build one :class:`WireFormat` per process and call its ``encode_*`` / ``decode_*``
methods; every decode failure is a :class:`RecordDecodeError` whose ``reason`` goes
to the DLQ. Payload codecs: :class:`CodecChain`, :class:`ZlibCodec`, :class:`AesGcmCodec`.
"""

from orchestrator.serde.cloudevents import CloudEvent, Headers, InHeaders
from orchestrator.serde.codecs import CodecChain, ZlibCodec
from orchestrator.serde.encryption import AesGcmCodec
from orchestrator.serde.errors import (
    DecodeFailure,
    PayloadCodecError,
    PayloadKeyError,
    RecordDecodeError,
    RecordEncodeError,
    SchemaError,
    SerdeError,
)
from orchestrator.serde.history import HistoryRecord
from orchestrator.serde.keys import command_key, event_key, reply_key, snapshot_key, task_key
from orchestrator.serde.records import (
    ActivityCancel,
    ActivityHeartbeat,
    ActivityTask,
    ActivityTaskCompleted,
    ActivityTaskFailed,
    CancelWorkflow,
    ChildOutcome,
    ChildWorkflowResult,
    Command,
    IdReusePolicy,
    ParentExecution,
    QueryWorkflow,
    Reply,
    ReplyKind,
    SignalWithStart,
    SignalWorkflow,
    StartWorkflow,
    TerminateWorkflow,
    UpdateWorkflow,
    WorkflowSnapshot,
    idempotency_key,
)
from orchestrator.serde.registry import SchemaRegistry, SchemaVersion
from orchestrator.serde.wire import DEFAULT_MAX_RECORD_BYTES, Decoded, EncodedRecord, WireFormat
from orchestrator.status import WorkflowStatus

__all__ = [
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
