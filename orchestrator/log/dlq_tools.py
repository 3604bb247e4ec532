"""Operator tools for ``<prefix>.dlq``: read dead letters, and send them back.

A dead letter keeps the original key, value and headers, plus ``saga.dlq.reason``
and ``saga.dlq.source`` (``topic/partition/offset``). Redrive re-publishes chosen
records to the topic they came from (commands go to their shard), without the DLQ
headers, e.g. the signals that arrived while a workflow was parked, once fixed code
runs it again. Redriving is at-least-once: choose the records (reason filter,
offset range) so that each is sent once.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from orchestrator.log.consuming import consume_available
from orchestrator.log.headers import normalize_headers

REASON_HEADER = "saga.dlq.reason"
SOURCE_HEADER = "saga.dlq.source"
OMITTED_HEADER = "saga.dlq.value-omitted"

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One DLQ record, decoded enough for a human or a redrive decision."""

    offset: int
    key: bytes | None
    value: bytes | None
    reason: str
    source_topic: str
    source_partition: int
    source_offset: int
    headers: list[tuple[str, bytes | None]]


class DeadLettersNotReadError(TimeoutError):
    """The dead-letter topic was not read up to its end within the time given."""

    def __init__(self, message: str, position: int, sent: int = 0) -> None:
        super().__init__(message)
        self.position = position
        """The first offset not read: where to start again."""
        self.sent = sent
        """Dead letters already redriven when the read stopped."""


def read_dead_letters(
    kafka_config: dict[str, Any], dlq_topic: str, start_offset: int = 0, timeout_s: float = 30.0
) -> Generator[DeadLetter, None, None]:
    """Every dead letter from ``start_offset`` (or the oldest the topic still keeps, past
    its retention) to the current end (the DLQ has one partition). Raises
    :class:`DeadLettersNotReadError` if the end is not reached within ``timeout_s``."""
    consumer = Consumer(
        {
            **kafka_config,
            "group.id": f"{dlq_topic}.reader",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
        }
    )
    try:
        low, end = consumer.get_watermark_offsets(TopicPartition(dlq_topic, 0), timeout=10)
        position = max(start_offset, low)  # retention deletes the oldest letters
        consumer.assign([TopicPartition(dlq_topic, 0, position)])
        deadline = time.monotonic() + timeout_s
        while position < end:
            if time.monotonic() >= deadline:
                raise DeadLettersNotReadError(
                    f"{dlq_topic} read up to offset {position} of {end} within "
                    f"{timeout_s:.0f}s; go on from offset {position}",
                    position,
                )
            for msg in consume_available(consumer, 500, 0.2):
                if msg.error() is not None:
                    continue
                offset = msg.offset()
                assert offset is not None  # set on fetched records
                position = offset + 1
                yield _parse(msg.key(), msg.value(), offset, msg.headers() or [])
            position = max(position, consumer.position([TopicPartition(dlq_topic, 0)])[0].offset)
    finally:
        consumer.close()


def _parse(key: bytes | None, value: bytes | None, offset: int, raw: Any) -> DeadLetter:
    headers = normalize_headers(raw)
    found = dict(headers)
    source = (found.get(SOURCE_HEADER) or b"?/-1/-1").decode(errors="replace")
    topic, partition, source_offset = source.rsplit("/", 2)
    return DeadLetter(
        offset,
        key,
        value,
        (found.get(REASON_HEADER) or b"").decode(errors="replace"),
        topic,
        int(partition),
        int(source_offset),
        [h for h in headers if h[0] not in (REASON_HEADER, SOURCE_HEADER)],
    )


def redrive(
    kafka_config: dict[str, Any],
    dlq_topic: str,
    *,
    reason_pattern: str = "",
    start_offset: int = 0,
    end_offset: int | None = None,
) -> int:
    """Re-publish dead letters whose reason matches ``reason_pattern``; returns how many."""
    pattern = re.compile(reason_pattern)
    producer = Producer({**kafka_config, "enable.idempotence": True})
    letters = read_dead_letters(kafka_config, dlq_topic, start_offset)
    sent = 0
    try:
        for letter in letters:
            if end_offset is not None and letter.offset >= end_offset:
                break
            sent += _send_back(producer, letter, pattern)
    except DeadLettersNotReadError as exc:
        producer.flush(30)
        raise DeadLettersNotReadError(
            f"{exc}; {sent} redriven before it stopped", exc.position, sent
        ) from None
    finally:
        letters.close()
    if producer.flush(30) != 0:
        raise RuntimeError("redrive: some records were not acknowledged; nothing is lost, retry")
    return sent


def _send_back(producer: Producer, letter: DeadLetter, pattern: re.Pattern[str]) -> int:
    """Re-publish one dead letter if it matches and can be; 1 if it was, else 0."""
    if not pattern.search(letter.reason) or letter.source_topic == "?":
        return 0
    if any(name == OMITTED_HEADER for name, _ in letter.headers):
        # too large to copy: the original is still at letter.source_* on its topic
        log.warning(
            "dead letter %d has no value (original at %s/%d/%d); not redriven",
            letter.offset,
            letter.source_topic,
            letter.source_partition,
            letter.source_offset,
        )
        return 0
    # same partition as before: commands are routed by the shard processor anyway
    headers: list[tuple[str, str | bytes | None]] = list(letter.headers)
    producer.produce(
        letter.source_topic,
        key=letter.key,
        value=letter.value,
        headers=headers,
        partition=letter.source_partition,
    )
    return 1
