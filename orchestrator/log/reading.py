"""Read a whole topic as it is now: every committed record, up to the current ends."""

from __future__ import annotations

import time
from typing import Any

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from orchestrator.log.consuming import consume_available
from orchestrator.log.watermarks import watermarks


def read_committed(
    config: dict[str, Any], topic: str, partitions: int, timeout_s: float = 30
) -> list[Message]:
    """Every committed record of ``topic`` (partitions ``0..partitions-1``), in
    partition order, up to the ends at the time of the call; bounded by ``timeout_s``."""
    consumer = Consumer(
        {
            **config,
            "group.id": "reader",  # assign() only: the group is never joined
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
        }
    )
    try:
        ends = {p: watermarks(consumer, topic, p)[1] for p in range(partitions)}
        consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        got: list[Message] = []
        done = {p for p, end in ends.items() if end == 0}
        deadline = time.monotonic() + timeout_s
        while len(done) < partitions and time.monotonic() < deadline:
            for msg in consume_available(consumer, 2000, 0.1):
                if msg.error() is not None:
                    raise KafkaException(msg.error())
                got.append(msg)
            for p in range(partitions):
                if consumer.position([TopicPartition(topic, p)])[0].offset >= ends[p]:
                    done.add(p)
        return got
    finally:
        consumer.close()
