"""Where an activity worker's records go, and when a task's offset counts as finished.

Outcomes and heartbeats go to ``<prefix>.commands``, keyed by workflow id, on the
partition ``shard_for(workflow_id, N)`` chosen explicitly; records that cannot be
decoded go to ``<prefix>.dlq``. The offset of the task a record ends is finished only
once the broker has acknowledged that record. A record the producer could not deliver
is produced again rather than lost.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import NamedTuple

from confluent_kafka import KafkaError, Message, Producer

from orchestrator.log.partitioner import shard_for
from orchestrator.log.topics import TopicLayout
from orchestrator.serde.records import ActivityHeartbeat
from orchestrator.serde.wire import EncodedRecord, WireFormat
from orchestrator.worker.activity_metrics import ActivityCounts
from orchestrator.worker.shard.dlq import REASON_HEADER, SOURCE_HEADER
from orchestrator.worker.shard.records import headers_of

__all__ = ["OutcomeSender", "partitions_of_commands"]

#: the worker's own logger, so that its lines keep their name
log = logging.getLogger("orchestrator.worker.activity_worker")

_METADATA_TIMEOUT_S = 30.0


class _Out(NamedTuple):
    """A record to produce whose key or value may be absent (dead letters)."""

    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


def partitions_of_commands(producer: Producer, layout: TopicLayout) -> int:
    """The number of command shards (partitions of ``<prefix>.commands``); blocks."""
    topic = layout.commands
    metadata = producer.list_topics(topic, timeout=_METADATA_TIMEOUT_S).topics.get(topic)
    if metadata is None or metadata.error is not None or not metadata.partitions:
        raise RuntimeError(f"topic {topic} is missing; create the topics first")
    return len(metadata.partitions)


class OutcomeSender:
    """Produces the records of the tasks read from ``task_topic``; calls
    ``finished(partition, offset)`` when the record ending a task is acknowledged.

    Delivery callbacks run in the caller's ``producer.poll``/``flush``, on the worker's
    loop thread. After :meth:`close` nothing more is produced.
    """

    def __init__(
        self,
        producer: Producer,
        layout: TopicLayout,
        wire: WireFormat,
        *,
        shards: int,
        task_topic: str,
        finished: Callable[[int, int], None],
        counts: ActivityCounts,
    ) -> None:
        self._producer: Producer | None = producer
        self.layout = layout
        self.wire = wire
        self.shards = shards
        self.task_topic = task_topic
        self._finished = finished
        self._counts = counts

    def outcome(self, workflow_id: str, record: EncodedRecord, finishes: tuple[int, int]) -> None:
        """Send an attempt's outcome; once acknowledged, ``finishes`` (task partition,
        offset) is done."""
        self._produce(self.layout.commands, self._shard(workflow_id), record, finishes)

    def heartbeat(self, beat: ActivityHeartbeat) -> None:
        """Send a heartbeat (it finishes no task)."""
        self._counts.stats.heartbeats += 1
        record = self.wire.encode_command(beat)
        self._produce(self.layout.commands, self._shard(beat.workflow_id), record, None)

    def dead_letter(self, msg: Message, partition: int, offset: int, reason: str) -> None:
        """Send a task record to the DLQ as it came, with why and where from; once
        acknowledged, its offset is done."""
        self._counts.dead_lettered(reason)
        topic = self.task_topic
        log.warning("task record %s/%d/%d to the DLQ: %s", topic, partition, offset, reason)
        # the original key, value and headers, plus why and where from
        headers = [(k, v) for k, v in headers_of(msg) if v is not None]
        headers.append((REASON_HEADER, reason.encode()[:4096]))
        headers.append((SOURCE_HEADER, f"{topic}/{partition}/{offset}".encode()))
        record = _Out(msg.key(), msg.value(), headers)
        self._produce(self.layout.dlq, 0, record, (partition, offset))

    def close(self) -> None:
        """Produce nothing more (the producer is being closed)."""
        self._producer = None

    def _shard(self, workflow_id: str) -> int:
        return shard_for(workflow_id, self.shards)

    def _produce(
        self,
        topic: str,
        partition: int,
        record: _Out | EncodedRecord,
        finishes: tuple[int, int] | None,
    ) -> None:
        """Produce; once acknowledged, ``finishes`` (task partition, offset) is done."""
        producer = self._producer
        if producer is None:
            return

        def delivered(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                # idempotent retries are exhausted; try again rather than lose an outcome
                log.warning("produce to %s failed (%s); retrying", topic, err)
                self._produce(topic, partition, record, finishes)
                return
            if finishes is not None:
                self._finished(*finishes)

        while True:
            try:
                producer.produce(
                    topic,
                    value=record.value,
                    key=record.key,
                    partition=partition,
                    headers=list[tuple[str, str | bytes | None]](record.headers),
                    on_delivery=delivered,
                )
            except BufferError:  # local queue full: serve callbacks, then retry
                producer.poll(0.05)
            else:
                return
