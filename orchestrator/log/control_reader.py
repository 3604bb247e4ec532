"""What every reader of a small control topic (activity cancels, activity pauses)
shares: a consumer that assigns partitions itself and never joins its group, a clear
error when the topic was never created, and fetched records with errors sorted out."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message

log = logging.getLogger(__name__)


def reader_config(
    kafka: Mapping[str, Any], topic: str, *, client_id: str, fetch_wait_max_ms: int
) -> dict[str, Any]:
    """Settings of a consumer that reads ``topic`` by assign() only (the connection
    settings, SASL/SSL included, come from ``kafka``)."""
    return {
        **kafka,
        "group.id": f"{topic}.reader",  # assign() only: the group is never joined
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "isolation.level": "read_committed",
        "fetch.wait.max.ms": fetch_wait_max_ms,
        "client.id": client_id,
    }


def require_partitions(consumer: Consumer, topic: str, timeout_s: float) -> list[int]:
    """``topic``'s partitions; RuntimeError naming the fix when it does not exist."""
    metadata = consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
    if metadata is None or metadata.error is not None or not metadata.partitions:
        raise RuntimeError(f"topic {topic} is missing; create the topics first (`saga topics`)")
    return sorted(metadata.partitions)


def fetched(consumer: Consumer, topic: str, limit: int, timeout_s: float) -> Iterator[Message]:
    """The records waiting now (or within ``timeout_s``). A fatal consumer error
    raises; other errors are logged and skipped, end-of-partition events silently."""
    for msg in consumer.consume(limit, timeout_s):
        error = msg.error()
        if error is None:
            yield msg
        elif error.code() == KafkaError._FATAL:
            raise KafkaException(error)
        elif error.code() != KafkaError._PARTITION_EOF:
            log.warning("consumer error on %s: %s", topic, error)
