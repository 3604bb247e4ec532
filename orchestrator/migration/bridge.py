"""Queue bridge: one saga per message of an existing Kafka topic, replay-safe.

The bridge consumes a legacy topic in a consumer group with manual commits. For
each message a translator returns the workflow input (and optionally a business
key); the bridge publishes a ``StartWorkflow`` whose workflow id is the business
key, else ``<topic>/<partition>/<offset>`` (permanent, see ``ids``), waits until
Kafka acknowledged the whole batch, and only then commits the offsets. Replaying
the topic from the beginning (a new group, reset offsets, a crash before the
commit) publishes the same ids again, and ``REJECT_DUPLICATE`` starts nothing new.

A message the translator rejects (``ValueError``, which includes JSON and Unicode
errors, ``KeyError``, ``TypeError``) goes to ``<prefix>.dlq`` with the headers
``saga.dlq.reason`` and ``saga.dlq.source`` = ``topic/partition/offset``, and the
bridge goes on. Other exceptions stop it, because a bug in the translator should
not dead-letter the whole topic.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from orchestrator.background import BackgroundRunner
from orchestrator.log.consuming import consume_available
from orchestrator.log.dlq_tools import REASON_HEADER, SOURCE_HEADER
from orchestrator.log.headers import headers_of
from orchestrator.log.topics import TopicLayout
from orchestrator.migration.ids import bridge_request_id, bridge_workflow_id
from orchestrator.migration.publisher import Header, PublishError, StartPublisher

__all__ = [
    "BridgeMetrics",
    "BridgeStart",
    "LegacyMessage",
    "MalformedMessageError",
    "QueueBridge",
    "Translator",
    "json_translator",
]

log = logging.getLogger(__name__)


class MalformedMessageError(ValueError):
    """Raise from a translator to dead-letter a message with this reason."""


@dataclass(frozen=True, slots=True)
class LegacyMessage:
    """A record of the legacy topic, as the translator sees it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[Header, ...] = ()


@dataclass(frozen=True, slots=True)
class BridgeStart:
    """What to start for one message; ``None`` fields take the bridge's defaults."""

    input: Any
    business_key: str | None = None
    workflow_type: str | None = None
    task_queue: str | None = None
    memo: Mapping[str, Any] = field(default_factory=dict)


Translator = Callable[[LegacyMessage], BridgeStart]
"""Turns a legacy message into a start; raises ValueError/KeyError/TypeError if malformed."""


def json_translator(key_field: str | None = None) -> Translator:
    """A translator for JSON objects: the object is the input, ``key_field`` the business key."""

    def translate(message: LegacyMessage) -> BridgeStart:
        if message.value is None:
            raise MalformedMessageError("empty value")
        body = json.loads(message.value)
        if not isinstance(body, dict):
            raise MalformedMessageError(f"expected a JSON object, got {type(body).__name__}")
        key = None
        if key_field is not None:
            key = body[key_field]
            if not isinstance(key, str) or not key.strip():
                raise MalformedMessageError(f"{key_field!r} must be a non-empty string")
        return BridgeStart(input=body, business_key=key)

    return translate


@dataclass(slots=True)
class BridgeMetrics:
    """Counters of one bridge."""

    messages: int = 0
    started: int = 0
    dead_lettered: int = 0
    commits: int = 0
    errors: int = 0


class QueueBridge(BackgroundRunner):
    """Bridges ``source_topic`` to saga starts in consumer group ``group_id``.

    A group that has no committed offset starts from the beginning of the topic,
    which is safe by construction (replays start nothing new).
    """

    thread_name = "queue-bridge"

    def __init__(
        self,
        kafka_config: Mapping[str, Any],
        layout: TopicLayout,
        source_topic: str,
        group_id: str,
        *,
        workflow_type: str,
        task_queue: str = "default",
        translate: Translator | None = None,
        batch_size: int = 500,
        publisher: StartPublisher | None = None,
    ) -> None:
        super().__init__()
        self.layout = layout
        self.source_topic = source_topic
        self.workflow_type = workflow_type
        self.task_queue = task_queue
        self.translate = translate or json_translator()
        self.batch_size = batch_size
        self.publisher = publisher or StartPublisher(kafka_config, layout, source="/saga/bridge")
        self.metrics = BridgeMetrics()
        self._consumer = Consumer(
            {
                **kafka_config,
                "group.id": group_id,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "isolation.level": "read_committed",
                "partition.assignment.strategy": "cooperative-sticky",
            }
        )

    def _handle(self, msg: Message) -> None:
        topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
        assert topic is not None and partition is not None and offset is not None
        headers = tuple(headers_of(msg))
        legacy = LegacyMessage(topic, partition, offset, msg.key(), msg.value(), headers)
        try:
            start = self.translate(legacy)
            workflow_id = bridge_workflow_id(topic, partition, offset, start.business_key)
        except (ValueError, KeyError, TypeError) as exc:
            reason = f"bridge: {type(exc).__name__}: {exc}"[:500]
            source = f"{topic}/{partition}/{offset}"
            self.publisher.raw(
                self.layout.dlq,
                legacy.key,
                legacy.value,
                [*headers, (REASON_HEADER, reason.encode()), (SOURCE_HEADER, source.encode())],
            )
            self.metrics.dead_lettered += 1
            log.warning("legacy message %s dead-lettered: %s", source, reason)
            return
        self.publisher.start(
            workflow_id=workflow_id,
            workflow_type=start.workflow_type or self.workflow_type,
            task_queue=start.task_queue or self.task_queue,
            input=start.input,
            request_id=bridge_request_id(topic, partition, offset),
            memo=start.memo,
        )
        self.metrics.started += 1

    def process(self, messages: Sequence[Message]) -> None:
        """Start (or dead-letter) a batch, wait for Kafka's acks, then commit its offsets."""
        ends: dict[int, int] = {}
        firsts: dict[int, int] = {}
        try:
            for msg in messages:
                error = msg.error()
                if error is not None:
                    if error.fatal():
                        raise KafkaException(error)
                    continue
                partition, offset = msg.partition(), msg.offset()
                assert partition is not None and offset is not None
                firsts.setdefault(partition, offset)
                ends[partition] = offset + 1
                self._handle(msg)
                self.metrics.messages += 1
            self.publisher.flush()
        except PublishError:
            # nothing committed: go back to the batch's start and publish it again
            for partition, offset in firsts.items():
                self._consumer.seek(TopicPartition(self.source_topic, partition, offset))
            raise
        if ends:
            self._consumer.commit(
                offsets=[TopicPartition(self.source_topic, p, o) for p, o in ends.items()],
                asynchronous=False,
            )
            self.metrics.commits += 1

    def run(self, stop: threading.Event) -> None:
        """Bridge until ``stop`` is set, then close the consumer (leaving the group)."""
        self._consumer.subscribe([self.source_topic])
        try:
            while not stop.is_set():
                messages = consume_available(self._consumer, self.batch_size, 0.2)
                if not messages:
                    continue
                try:
                    self.process(messages)
                except PublishError as exc:
                    self.metrics.errors += 1
                    log.warning("bridge: %s; retrying the batch", exc)
                    stop.wait(1.0)
        finally:
            self._consumer.close()
            self.publisher.close()
