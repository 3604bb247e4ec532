"""Encoding and decoding of every Kafka record the orchestrator reads or writes.

Each record is framed by the CloudEvents Kafka binding in binary mode: ``ce_type``
(``<family>.v<version>``) names the exact Avro schema the value was written with,
and the value is that bare Avro datum. See docs/wire-format.md.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, NamedTuple, TypeVar

from orchestrator.converter import ENCODING_KEY, Payload
from orchestrator.engine.events import Event, Failure
from orchestrator.serde import keys
from orchestrator.serde.avro import decode_datum, encode_datum
from orchestrator.serde.cloudevents import CloudEvent, Headers, InHeaders, parse_headers
from orchestrator.serde.errors import (
    DecodeFailure,
    RecordDecodeError,
    RecordEncodeError,
    SchemaError,
)
from orchestrator.serde.failures import failure_mapping
from orchestrator.serde.history import EventMapper, HistoryRecord
from orchestrator.serde.history_page import PAGE_ENCODING_PREFIX, PAGE_FAMILY, HistoryPage
from orchestrator.serde.mapping import CustomMapping, RecordMapper, named_types
from orchestrator.serde.records import (
    ActivityCancel,
    ActivityHeartbeat,
    ActivityPause,
    ActivityTask,
    ActivityTaskCompleted,
    ActivityTaskFailed,
    CancelWorkflow,
    ChildWorkflowResult,
    Command,
    FlowControl,
    FlowState,
    PauseWorkflow,
    QueryWorkflow,
    RepairWorkflow,
    Reply,
    ResetWorkflow,
    SignalWorkflow,
    StartWorkflow,
    TerminateWorkflow,
    UnpauseWorkflow,
    UpdateWorkflow,
    WorkflowSnapshot,
)
from orchestrator.serde.registry import SchemaRegistry, SchemaVersion

T = TypeVar("T")

DEFAULT_MAX_RECORD_BYTES = 1_048_576
"""Values above this size are refused (Kafka's default ``max.message.bytes`` is ~1 MiB)."""

COMMAND_FAMILIES: Mapping[type[Any], str] = {
    StartWorkflow: "saga.command.start",
    SignalWorkflow: "saga.command.signal",
    CancelWorkflow: "saga.command.cancel",
    TerminateWorkflow: "saga.command.terminate",
    UpdateWorkflow: "saga.command.update",
    QueryWorkflow: "saga.command.query",
    ActivityTaskCompleted: "saga.command.activity-completed",
    ActivityTaskFailed: "saga.command.activity-failed",
    ActivityHeartbeat: "saga.command.activity-heartbeat",
    ChildWorkflowResult: "saga.command.child-result",
    PauseWorkflow: "saga.command.pause",
    UnpauseWorkflow: "saga.command.unpause",
    ResetWorkflow: "saga.command.reset",
    RepairWorkflow: "saga.command.repair",
}
"""Schema family of each command type."""

TASK_FAMILY = "saga.task.activity"
CANCEL_FAMILY = "saga.task.cancel"
PAUSE_FAMILY = "saga.control.activity-pause"
FLOW_CONFIG_FAMILY = "saga.flow.config"
FLOW_STATE_FAMILY = "saga.flow.state"
REPLY_FAMILY = "saga.reply"
EVENT_FAMILY = "saga.history.event"
SNAPSHOT_FAMILY = "saga.history.snapshot"

_SPECVERSION = ("ce_specversion", b"1.0")
_CONTENT_TYPE = ("content-type", b"application/avro")


class EncodedRecord(NamedTuple):
    """What to hand to a Kafka producer: key, value and headers."""

    key: bytes
    value: bytes
    headers: Headers


class Decoded(NamedTuple, Generic[T]):
    """A decoded record: its CloudEvents attributes and its typed content."""

    cloud_event: CloudEvent
    record: T


@dataclass(frozen=True, slots=True)
class _Kind:
    """Everything needed to write and read one schema family."""

    writer: SchemaVersion
    reader: SchemaVersion
    type_header: tuple[str, bytes]
    to_avro: Callable[[Any], dict[str, Any]]
    from_avro: Callable[[Mapping[str, Any]], Any]


class WireFormat:
    """Encodes and decodes every record type; build one per process and share it.

    ``source`` is the CloudEvents ``ce_source`` written by default (a URI reference
    naming this producer). ``max_record_bytes`` bounds values both ways: larger
    values are refused when encoding and reported as oversized when decoding.
    """

    def __init__(
        self,
        registry: SchemaRegistry | None = None,
        *,
        source: str = "/saga",
        max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
    ) -> None:
        self.registry = registry if registry is not None else SchemaRegistry()
        self.max_record_bytes = max_record_bytes
        self._source = ("ce_source", source.encode())
        self._kinds: dict[str, _Kind] = {}
        for cls, family in COMMAND_FAMILIES.items():
            self._add_record(family, cls)
        self._add_record(TASK_FAMILY, ActivityTask)
        self._add_record(CANCEL_FAMILY, ActivityCancel)
        self._add_record(PAUSE_FAMILY, ActivityPause)
        self._add_record(REPLY_FAMILY, Reply)
        self._add_record(SNAPSHOT_FAMILY, WorkflowSnapshot)
        self._add_record(PAGE_FAMILY, HistoryPage)
        self._add_record(FLOW_CONFIG_FAMILY, FlowControl)
        self._add_record(FLOW_STATE_FAMILY, FlowState)
        reader = self.registry.reader(EVENT_FAMILY)
        named = named_types(reader.parsed)
        events = EventMapper(reader.parsed, named, self._custom(named))
        self._events = events
        self._add(EVENT_FAMILY, lambda r: events.to_avro(*r), events.from_avro)
        self._command_families = frozenset(COMMAND_FAMILIES.values())
        unused = set(self.registry.families()) - set(self._kinds)
        if unused:
            raise SchemaError(f"schema families with no Python record type: {sorted(unused)}")

    # --- commands --------------------------------------------------------------

    def encode_command(
        self,
        command: Command,
        *,
        ce_id: str | None = None,
        source: str | None = None,
        traceparent: str | None = None,
    ) -> EncodedRecord:
        """Encode a command for ``<prefix>.commands`` (key: workflow id)."""
        family = COMMAND_FAMILIES.get(type(command))
        if family is None:
            raise RecordEncodeError(f"{type(command).__name__} is not a command type")
        return self._encode(
            family,
            command,
            keys.command_key(command.workflow_id),
            ce_id or uuid.uuid4().hex,
            source=source,
            traceparent=traceparent,
        )

    def decode_command(self, headers: InHeaders, value: bytes | None) -> Decoded[Command]:
        """Decode a record of ``<prefix>.commands``; raises :class:`RecordDecodeError`."""
        decoded: Decoded[Command] = self._decode(headers, value, self._command_families)
        return decoded

    # --- history ---------------------------------------------------------------

    def encode_event(
        self,
        workflow_id: str,
        run_id: str,
        event: Event,
        *,
        source: str | None = None,
        traceparent: str | None = None,
    ) -> EncodedRecord:
        """Encode a history event (key ``{workflow_id}/{run_id}/{seq}``, also its ce_id)."""
        key = keys.event_key(workflow_id, run_id, event.seq)
        record = (workflow_id, run_id, event)
        return self._encode(
            EVENT_FAMILY, record, key, key.decode(), source=source, traceparent=traceparent
        )

    def decode_event(self, headers: InHeaders, value: bytes | None) -> Decoded[HistoryRecord]:
        """Decode a history event record; raises :class:`RecordDecodeError`."""
        decoded: Decoded[HistoryRecord] = self._decode(headers, value, frozenset({EVENT_FAMILY}))
        return decoded

    def encode_snapshot(
        self, snapshot: WorkflowSnapshot, *, source: str | None = None
    ) -> EncodedRecord:
        """Encode a workflow snapshot for the history topic (key ``{workflow_id}/snapshot``)."""
        ce_id = f"{snapshot.workflow_id}/snapshot/{snapshot.run_id}/{snapshot.last_seq}"
        key = keys.snapshot_key(snapshot.workflow_id)
        return self._encode(SNAPSHOT_FAMILY, snapshot, key, ce_id, source=source, traceparent=None)

    def decode_snapshot(self, headers: InHeaders, value: bytes | None) -> Decoded[WorkflowSnapshot]:
        """Decode a snapshot record; raises :class:`RecordDecodeError`."""
        families = frozenset({SNAPSHOT_FAMILY})
        decoded: Decoded[WorkflowSnapshot] = self._decode(headers, value, families)
        return decoded

    def decode_history(
        self, headers: InHeaders, value: bytes | None
    ) -> Decoded[HistoryRecord | WorkflowSnapshot]:
        """Decode any record of the history topic: an event or a snapshot."""
        families = frozenset({EVENT_FAMILY, SNAPSHOT_FAMILY})
        decoded: Decoded[HistoryRecord | WorkflowSnapshot] = self._decode(headers, value, families)
        return decoded

    # --- tasks and replies -----------------------------------------------------

    def encode_task(
        self,
        task: ActivityTask,
        *,
        source: str | None = None,
        traceparent: str | None = None,
    ) -> EncodedRecord:
        """Encode an activity task for ``<prefix>.tasks.<queue>`` (key: workflow id)."""
        ce_id = f"{task.idempotency_key}/{task.attempt}"
        key = keys.task_key(task.workflow_id)
        return self._encode(TASK_FAMILY, task, key, ce_id, source=source, traceparent=traceparent)

    def decode_task(self, headers: InHeaders, value: bytes | None) -> Decoded[ActivityTask]:
        """Decode an activity task record; raises :class:`RecordDecodeError`."""
        decoded: Decoded[ActivityTask] = self._decode(headers, value, frozenset({TASK_FAMILY}))
        return decoded

    def encode_cancel(self, cancel: ActivityCancel) -> EncodedRecord:
        """Encode an activity cancel for ``<prefix>.activity-cancels`` (key:
        ``{task_queue}/{workflow_id}``)."""
        ce_id = (
            f"{cancel.workflow_id}/{cancel.run_id}/{cancel.activity_seq}/{cancel.attempt}/cancel"
        )
        key = keys.cancel_key(cancel.task_queue, cancel.workflow_id)
        return self._encode(CANCEL_FAMILY, cancel, key, ce_id, source=None, traceparent=None)

    def decode_cancel(self, headers: InHeaders, value: bytes | None) -> Decoded[ActivityCancel]:
        """Decode an activity cancel record; raises :class:`RecordDecodeError`."""
        decoded: Decoded[ActivityCancel] = self._decode(
            headers, value, frozenset({CANCEL_FAMILY})
        )
        return decoded

    def encode_pause(self, pause: ActivityPause) -> EncodedRecord:
        """Encode an activity-type pause or unpause for ``<prefix>.activity-pauses``
        (key: ``{task_queue}/{activity_type}``)."""
        key = keys.pause_key(pause.task_queue, pause.activity_type)
        state = "pause" if pause.paused else "unpause"
        ce_id = f"{pause.task_queue}/{pause.activity_type}/{state}/{pause.time}"
        return self._encode(PAUSE_FAMILY, pause, key, ce_id, source=None, traceparent=None)

    def decode_pause(self, headers: InHeaders, value: bytes | None) -> Decoded[ActivityPause]:
        """Decode an activity-type pause record; raises :class:`RecordDecodeError`."""
        decoded: Decoded[ActivityPause] = self._decode(headers, value, frozenset({PAUSE_FAMILY}))
        return decoded

    def encode_reply(
        self,
        reply: Reply,
        *,
        source: str | None = None,
        traceparent: str | None = None,
    ) -> EncodedRecord:
        """Encode a reply for ``<prefix>.replies`` (key: correlation id)."""
        ce_id = f"{reply.correlation_id}/{reply.kind.name.lower()}"
        key = keys.reply_key(reply.correlation_id)
        return self._encode(REPLY_FAMILY, reply, key, ce_id, source=source, traceparent=traceparent)

    def decode_reply(self, headers: InHeaders, value: bytes | None) -> Decoded[Reply]:
        """Decode a reply record; raises :class:`RecordDecodeError`."""
        decoded: Decoded[Reply] = self._decode(headers, value, frozenset({REPLY_FAMILY}))
        return decoded

    # --- flow control (docs/flow-control.md) -----------------------------------

    def encode_flow(self, record: FlowControl | FlowState, ce_id: str) -> EncodedRecord:
        """Encode a queue's flow-control config or dispatcher state (key: queue name)."""
        family = FLOW_CONFIG_FAMILY if isinstance(record, FlowControl) else FLOW_STATE_FAMILY
        key = record.queue.encode()
        return self._encode(family, record, key, ce_id, source=None, traceparent=None)

    def decode_flow(
        self, headers: InHeaders, value: bytes | None
    ) -> Decoded[FlowControl | FlowState]:
        """Decode a flow-control config or dispatcher state record."""
        families = frozenset({FLOW_CONFIG_FAMILY, FLOW_STATE_FAMILY})
        decoded: Decoded[FlowControl | FlowState] = self._decode(headers, value, families)
        return decoded

    def encode_page(self, page: HistoryPage) -> Payload:
        """A history page as the result payload of a built-in read's reply."""
        kind = self._kinds[PAGE_FAMILY]
        value = encode_datum(kind.writer, kind.to_avro(page))
        encoding = (PAGE_ENCODING_PREFIX + kind.writer.ce_type).encode()
        return Payload(metadata={ENCODING_KEY: encoding}, data=value)

    def decode_page(self, payload: Payload) -> HistoryPage:
        """Inverse of :meth:`encode_page`; raises :class:`RecordDecodeError`."""
        ce_type = payload.encoding.removeprefix(PAGE_ENCODING_PREFIX)
        writer = self.registry.lookup(ce_type)
        if ce_type == payload.encoding or writer.family != PAGE_FAMILY:
            raise RecordDecodeError(
                DecodeFailure.UNKNOWN_TYPE, f"not a history page: encoding {payload.encoding!r}"
            )
        kind = self._kinds[PAGE_FAMILY]
        try:
            page: HistoryPage = kind.from_avro(decode_datum(writer, kind.reader, payload.data))
        except (KeyError, TypeError, ValueError) as exc:
            raise RecordDecodeError(
                DecodeFailure.MALFORMED, f"not a valid history page: {exc!r}", ce_type
            ) from None
        return page

    def decode_any(self, headers: InHeaders, value: bytes | None) -> Decoded[Any]:
        """Decode a record of any type (tools, DLQ inspection)."""
        decoded: Decoded[Any] = self._decode(headers, value, None)
        return decoded

    # --- machinery -------------------------------------------------------------

    def _custom(self, named: Mapping[str, Any]) -> dict[type, CustomMapping]:
        if "saga.Failure" not in named:
            return {}
        return {Failure: failure_mapping(named, {})}

    def _add_record(self, family: str, cls: type[Any]) -> None:
        reader = self.registry.reader(family)
        named = named_types(reader.parsed)
        mapper = RecordMapper.build(cls, reader.parsed, named, self._custom(named))
        self._add(family, mapper.to_avro, mapper.from_avro)

    def _add(
        self,
        family: str,
        to_avro: Callable[[Any], dict[str, Any]],
        from_avro: Callable[[Mapping[str, Any]], Any],
    ) -> None:
        writer = self.registry.writer(family)
        self._kinds[family] = _Kind(
            writer=writer,
            reader=self.registry.reader(family),
            type_header=("ce_type", writer.ce_type.encode()),
            to_avro=to_avro,
            from_avro=from_avro,
        )

    def _encode(
        self,
        family: str,
        record: Any,
        key: bytes,
        ce_id: str,
        *,
        source: str | None,
        traceparent: str | None,
    ) -> EncodedRecord:
        kind = self._kinds[family]
        try:
            datum = kind.to_avro(record)
        except (AttributeError, TypeError, KeyError, ValueError) as exc:
            raise RecordEncodeError(
                f"{kind.writer.ce_type}: cannot map {type(record).__name__}: {exc!r}"
            ) from exc
        value = encode_datum(kind.writer, datum)
        if len(value) > self.max_record_bytes:
            raise RecordEncodeError(
                f"{kind.writer.ce_type}: value is {len(value)} bytes, over the "
                f"{self.max_record_bytes}-byte limit; store large data outside Kafka"
            )
        headers = [
            _SPECVERSION,
            ("ce_id", ce_id.encode()),
            kind.type_header,
            self._source if source is None else ("ce_source", source.encode()),
            _CONTENT_TYPE,
        ]
        if traceparent is not None:
            headers.append(("traceparent", traceparent.encode()))
        return EncodedRecord(key, value, headers)

    def _decode(
        self, headers: InHeaders, value: bytes | None, families: frozenset[str] | None
    ) -> Decoded[Any]:
        if value is None:
            raise RecordDecodeError(DecodeFailure.EMPTY_VALUE, "record has no value (tombstone)")
        if len(value) > self.max_record_bytes:
            raise RecordDecodeError(
                DecodeFailure.OVERSIZED,
                f"value is {len(value)} bytes, over the {self.max_record_bytes}-byte limit",
            )
        cloud_event = parse_headers(headers)
        writer = self.registry.lookup(cloud_event.type)
        if families is not None and writer.family not in families:
            raise RecordDecodeError(
                DecodeFailure.UNKNOWN_TYPE,
                f"{writer.family} records do not belong here (expected {sorted(families)})",
                cloud_event.type,
            )
        kind = self._kinds[writer.family]
        datum = decode_datum(writer, kind.reader, value)
        try:
            record = kind.from_avro(datum)
        except (KeyError, TypeError, ValueError) as exc:
            raise RecordDecodeError(
                DecodeFailure.MALFORMED,
                f"decoded datum does not fit {kind.reader.name}: {exc!r}",
                cloud_event.type,
            ) from None
        return Decoded(cloud_event, record)
