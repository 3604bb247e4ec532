"""Flow-control configs on ``<prefix>.flow-control`` and dispatcher states, read and written.

The config topic is compacted, one partition, key = queue name; a tombstone removes
a queue's flow control. Engine workers follow it (:class:`FlowConfigWatcher`) to
know which queues' tasks go to a backlog topic; dispatchers follow it to apply
changes live; ``saga queue`` writes it.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Mapping
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

from orchestrator.flow.scheduler import FlowConfig
from orchestrator.log.headers import headers_of
from orchestrator.log.retrying import retried
from orchestrator.log.topics import TopicLayout, ensure_topics
from orchestrator.serde.errors import RecordDecodeError
from orchestrator.serde.records import FlowControl, FlowState
from orchestrator.serde.wire import WireFormat

log = logging.getLogger("orchestrator.flow")
#: how long a starting watcher retries a broker it cannot reach (one restarting, a cut
#: connection) before its worker gives up
START_RETRY_S = 60.0


_NO_TOPIC = (
    KafkaError._UNKNOWN_PARTITION,
    KafkaError._UNKNOWN_TOPIC,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
)


def ensure_config_topic(kafka_config: Mapping[str, Any], layout: TopicLayout) -> None:
    """Create ``<prefix>.flow-control`` if missing (every engine worker follows it)."""
    admin = AdminClient(dict(kafka_config))
    if layout.flow_control not in admin.list_topics(timeout=30).topics:
        spec = layout.flow_specs("_")[0]
        ensure_topics(admin, layout, extra=[spec])


def to_config(record: FlowControl) -> FlowConfig:
    """The scheduler's config from the wire record."""
    return FlowConfig(
        queue=record.queue,
        rate=record.rate,
        burst=record.burst,
        key_rate=record.key_rate,
        key_burst=record.key_burst,
        weights=dict(record.weights),
        default_weight=record.default_weight,
        window=record.window,
    )


def to_record(config: FlowConfig) -> FlowControl:
    """The wire record of a scheduler config."""
    return FlowControl(
        queue=config.queue,
        rate=config.rate,
        burst=config.burst,
        key_rate=config.key_rate,
        key_burst=config.key_burst,
        weights=dict(config.weights),
        default_weight=config.default_weight,
        window=config.window,
    )


def write_config(
    kafka_config: Mapping[str, Any],
    layout: TopicLayout,
    config: FlowConfig | None,
    queue: str,
    *,
    wire: WireFormat | None = None,
) -> None:
    """Set (or with None remove) the flow control of ``queue``, encoded by ``wire``
    (default: a new WireFormat); waits for the broker, KafkaException if it refused."""
    producer = Producer({**kafka_config, "enable.idempotence": True})
    refused: list[KafkaError] = []

    def delivered(err: KafkaError | None, _msg: Any) -> None:
        if err is not None:
            refused.append(err)

    if config is None:
        producer.produce(
            layout.flow_control, key=queue.encode(), value=None, on_delivery=delivered
        )
    else:
        encoded = (wire or WireFormat()).encode_flow(to_record(config), uuid.uuid4().hex)
        producer.produce(
            layout.flow_control, key=encoded.key, value=encoded.value,
            headers=list(encoded.headers), on_delivery=delivered,
        )
    if producer.flush(30) != 0:
        raise RuntimeError(f"flow control of {queue!r} not acknowledged by Kafka in 30 s")
    if refused:
        raise KafkaException(refused[0])


def configure_queue(
    kafka_config: Mapping[str, Any],
    layout: TopicLayout,
    config: FlowConfig,
    *,
    wire: WireFormat | None = None,
) -> None:
    """Put ``config.queue`` under flow control (or change it): create the queue's
    topics, its backlog and state topics and the config topic, then write the config."""
    admin = AdminClient(dict(kafka_config))
    ensure_topics(admin, layout, [config.queue], layout.flow_specs(config.queue))
    write_config(kafka_config, layout, config, config.queue, wire=wire)


def describe_queue(
    kafka_config: Mapping[str, Any], layout: TopicLayout, queue: str
) -> tuple[FlowConfig | None, FlowState | None]:
    """``queue``'s flow control (None: none) and its dispatcher's last committed state
    (None: no flow control, or nothing released yet). No config topic yet (no engine
    worker has run, no queue was configured): no flow control."""
    try:
        config = read_configs(kafka_config, layout).get(queue)
    except KafkaException as exc:
        if exc.args[0].code() not in _NO_TOPIC:
            raise
        return None, None
    state = read_state(kafka_config, layout, queue) if config is not None else None
    return config, state


def _assigned_from(
    kafka_config: Mapping[str, Any], topic: str, tail: int | None
) -> tuple[Consumer, int, int]:
    """A consumer assigned to partition 0 of ``topic``: from the start, or ``tail``
    offsets before its end; the offset it starts at, and the end."""
    consumer = Consumer(
        {
            **kafka_config,
            "group.id": f"saga-flow-reader-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    except KafkaException:
        consumer.close()
        raise
    start = low if tail is None else max(low, high - tail)
    consumer.assign([TopicPartition(topic, 0, start)])
    return consumer, start, high


def read_configs(kafka_config: Mapping[str, Any], layout: TopicLayout) -> dict[str, FlowConfig]:
    """Every queue's flow control, read to the end of the topic now."""
    consumer, position, high = _assigned_from(kafka_config, layout.flow_control, None)
    wire = WireFormat()
    found: dict[str, FlowConfig] = {}
    try:
        deadline = time.monotonic() + 30
        while position < high and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                position = consumer.position([TopicPartition(layout.flow_control, 0)])[0].offset
                continue
            if msg.error():
                continue
            position = (msg.offset() or 0) + 1
            _apply(found, wire, msg.key(), headers_of(msg), msg.value())
    finally:
        consumer.close()
    return found


def _apply(
    found: dict[str, FlowConfig], wire: WireFormat, key: bytes | None, headers: Any, value: Any
) -> None:
    if key is None:
        return
    if value is None:
        found.pop(key.decode(), None)
        return
    try:
        record = wire.decode_flow(headers or [], value).record
    except RecordDecodeError as exc:
        log.warning("unreadable flow-control record for %r skipped: %s", key, exc)
        return
    if isinstance(record, FlowControl):
        found[record.queue] = to_config(record)


def read_state(
    kafka_config: Mapping[str, Any], layout: TopicLayout, queue: str
) -> FlowState | None:
    """The last committed dispatcher state of ``queue`` (None before the first release).

    Reads the topic's tail only: every state record replaces the previous one, and a
    transaction's marker or an aborted record only push it back a few offsets."""
    topic = layout.flow_state(queue)
    wire = WireFormat()
    back = 64
    while True:
        consumer, start, high = _assigned_from(kafka_config, topic, back)
        last: FlowState | None = None
        try:
            deadline = time.monotonic() + 15
            position = start
            while position < high and time.monotonic() < deadline:
                msg = consumer.poll(0.2)
                if msg is None:
                    # the end may be a transaction marker, which no poll returns
                    position = consumer.position([TopicPartition(topic, 0)])[0].offset
                    continue
                if msg.error():
                    continue
                position = (msg.offset() or 0) + 1
                try:
                    record = wire.decode_flow(headers_of(msg), msg.value()).record
                except RecordDecodeError:
                    continue
                if isinstance(record, FlowState) and record.queue == queue:
                    last = record
        finally:
            consumer.close()
        if last is not None or start == 0 or back >= high:
            return last
        back *= 8


class FlowConfigWatcher:
    """Follows ``<prefix>.flow-control`` on a thread: which queues are controlled, now.

    Readers call :meth:`topic_for` from any thread: the dict is replaced whole, never
    changed in place, so a read needs no lock."""

    def __init__(self, kafka_config: Mapping[str, Any], layout: TopicLayout) -> None:
        retried(
            "creating the flow-control topic",
            lambda: ensure_config_topic(kafka_config, layout),
            START_RETRY_S,
        )
        self.layout = layout
        self._kafka = dict(kafka_config)
        self.configs: dict[str, FlowConfig] = retried(
            "reading the flow-control topic",
            lambda: read_configs(kafka_config, layout),
            START_RETRY_S,
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="flow-configs", daemon=True)
        self._thread.start()

    def topic_for(self, queue: str) -> str:
        """The topic the engine writes ``queue``'s tasks to: its backlog if controlled."""
        if queue in self.configs:
            return self.layout.backlog(queue)
        return self.layout.task_queue(queue)

    def close(self) -> None:
        """Stop following."""
        self._stop.set()
        self._thread.join(5)

    def _follow(self) -> None:
        wire = WireFormat()
        consumer = Consumer(
            {
                **self._kafka,
                "group.id": f"saga-flow-watch-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
            }
        )
        consumer.assign([TopicPartition(self.layout.flow_control, 0, OFFSET_BEGINNING)])
        found: dict[str, FlowConfig] = {}
        caught_up = False
        try:
            while not self._stop.is_set():
                msg = consumer.poll(0.5)
                if msg is None:
                    if not caught_up or found != self.configs:
                        caught_up = True
                        self.configs = dict(found)
                    continue
                err = msg.error()
                if err is not None:
                    if err.code() != KafkaError._PARTITION_EOF:
                        log.warning("reading flow-control configs: %s", err)
                    continue
                _apply(found, wire, msg.key(), headers_of(msg), msg.value())
                if caught_up:
                    self.configs = dict(found)
        finally:
            consumer.close()
