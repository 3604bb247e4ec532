"""Watermark queries that ride out a partition's leader moving (or being just created)."""

from __future__ import annotations

import contextlib
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

_TRANSIENT = {
    KafkaError._UNKNOWN_PARTITION,  # local metadata still names a dead leader
    KafkaError._UNKNOWN_TOPIC,
    KafkaError._ALL_BROKERS_DOWN,
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError.REQUEST_TIMED_OUT,
    KafkaError._TIMED_OUT,
    KafkaError._TRANSPORT,
}


def watermarks(
    consumer: Consumer, topic: str, partition: int, timeout_s: float = 30.0
) -> tuple[int, int]:
    """(low, high) of a partition, retrying errors that pass when leadership settles."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=5, cached=False
            )
            return int(low), int(high)
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            code = error.code() if isinstance(error, KafkaError) else None
            if code not in _TRANSIENT or time.monotonic() > deadline:
                raise
            # librdkafka does not refresh metadata when a leader's connection is
            # refused (its periodic refresh is minutes away): ask for it now
            with contextlib.suppress(KafkaException):
                consumer.list_topics(topic, timeout=5)
            time.sleep(0.2)
