"""Test helpers that read topics to their end (read_committed)."""

from __future__ import annotations

import time
from typing import Any

from confluent_kafka import Consumer, Message, TopicPartition

from orchestrator.log.watermarks import watermarks


def read_topic(
    config: dict[str, Any], topic: str, partitions: int, timeout_s: float = 30
) -> list[Message]:
    """Every committed record of ``topic`` at the time of the call."""
    consumer = Consumer(
        {
            **config,
            "group.id": "reader",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
        }
    )
    ends = {p: watermarks(consumer, topic, p)[1] for p in range(partitions)}
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    got: list[Message] = []
    done = {p for p, end in ends.items() if end == 0}
    deadline = time.monotonic() + timeout_s
    while len(done) < partitions and time.monotonic() < deadline:
        for msg in consumer.consume(1000, 0.1):
            assert msg.error() is None
            got.append(msg)
        for p in range(partitions):
            if consumer.position([TopicPartition(topic, p)])[0].offset >= ends[p]:
                done.add(p)
    consumer.close()
    return got
