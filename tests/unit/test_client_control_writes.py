"""The blocking client's writes to the control topics (activity-type pauses, flow
control) report a write Kafka refused, and encode with the client's wire format."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import pytest
from confluent_kafka import KafkaError, KafkaException

from orchestrator.client import Client
from orchestrator.client._common import CommandBuilder
from orchestrator.converter import DataConverter
from orchestrator.flow import configs
from orchestrator.flow.scheduler import FlowConfig
from orchestrator.log.topics import TopicLayout
from orchestrator.serde.records import ActivityPause, FlowControl, FlowState
from orchestrator.serde.wire import EncodedRecord, WireFormat
from orchestrator.worker import activity_pauses

Delivered = Callable[[KafkaError | None, Any], None]


class FakeProducer:
    """Delivers on flush; with ``error``, every delivery fails at once (as an
    authorization error does), leaving nothing queued."""

    error: ClassVar[KafkaError | None] = None
    produced: ClassVar[list[tuple[str, bytes | None]]] = []

    def __init__(self, config: dict[str, Any]) -> None:
        self._pending: list[Delivered | None] = []

    def produce(self, topic: str, *, value: bytes | None = None,
                on_delivery: Delivered | None = None, **_: Any) -> None:
        FakeProducer.produced.append((topic, value))
        self._pending.append(on_delivery)

    def flush(self, timeout: float = -1) -> int:
        for callback in self._pending:
            if callback is not None:
                callback(FakeProducer.error, None)
        self._pending.clear()
        return 0


class CountingWire(WireFormat):
    """The client's own wire format: counts the records it encodes."""

    def __init__(self) -> None:
        super().__init__(source="/test/client")
        self.encoded = 0

    def encode_pause(self, pause: ActivityPause) -> EncodedRecord:
        self.encoded += 1
        return super().encode_pause(pause)

    def encode_flow(self, record: FlowControl | FlowState, ce_id: str) -> EncodedRecord:
        self.encoded += 1
        return super().encode_flow(record, ce_id)


@pytest.fixture
def wire(monkeypatch: pytest.MonkeyPatch) -> CountingWire:
    monkeypatch.setattr(activity_pauses, "Producer", FakeProducer)
    monkeypatch.setattr(configs, "Producer", FakeProducer)
    monkeypatch.setattr(configs, "AdminClient", lambda config: None)
    monkeypatch.setattr(configs, "ensure_topics", lambda *args, **kwargs: None)
    monkeypatch.setattr(FakeProducer, "error", None)
    monkeypatch.setattr(FakeProducer, "produced", [])
    return CountingWire()


def client_with(wire: WireFormat) -> Client:
    """A Client with no connections: the control writes use only these attributes."""
    client = Client.__new__(Client)
    client._kafka = {"bootstrap.servers": "unused:9092"}
    client.layout = TopicLayout(prefix="t")
    client.builder = CommandBuilder(wire, DataConverter(), 1, source="/test/client")
    client._producer = FakeProducer({})  # type: ignore[assignment]  # its own, for pauses
    return client


WRITES: dict[str, Callable[[Client], object]] = {
    "pause_activity_type": lambda c: c.pause_activity_type("q", "charge", reason="r"),
    "unpause_activity_type": lambda c: c.unpause_activity_type("q", "charge"),
    "configure_task_queue": lambda c: c.configure_task_queue(FlowConfig(queue="q", rate=5.0)),
    "remove_task_queue_flow_control": lambda c: c.remove_task_queue_flow_control("q"),
}


@pytest.mark.parametrize("call", WRITES.values(), ids=WRITES.keys())
def test_a_write_kafka_refused_raises(wire: CountingWire, call: Callable[[Client], object]) -> None:
    FakeProducer.error = KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED)
    with pytest.raises(KafkaException) as info:
        call(client_with(wire))
    assert info.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


@pytest.mark.parametrize("call", WRITES.values(), ids=WRITES.keys())
def test_a_delivered_write_returns(wire: CountingWire, call: Callable[[Client], object]) -> None:
    call(client_with(wire))
    assert len(FakeProducer.produced) == 1


@pytest.mark.parametrize(
    "call",
    [WRITES["pause_activity_type"], WRITES["unpause_activity_type"],
     WRITES["configure_task_queue"]],
    ids=["pause_activity_type", "unpause_activity_type", "configure_task_queue"],
)
def test_records_are_encoded_with_the_clients_wire_format(
    wire: CountingWire, call: Callable[[Client], object]
) -> None:
    call(client_with(wire))
    assert wire.encoded == 1
