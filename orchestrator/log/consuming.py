"""Take the records that are there, without sitting out a timeout.

librdkafka's ``consume(n, timeout)`` returns early only once ``n`` records have
arrived: asked for a batch with a timeout, it holds the records it already has
until the timeout ends. On a quiet topic that adds the whole timeout to every
record's latency (measured: up to 100 ms per hop). :func:`consume_available`
waits for the first record only, then takes what came with it.
"""

from __future__ import annotations

from confluent_kafka import Consumer, Message


def consume_available(consumer: Consumer, limit: int, timeout_s: float) -> list[Message]:
    """Up to ``limit`` records: those waiting now, else the first to come within ``timeout_s``."""
    ready: list[Message] = consumer.consume(limit, 0)
    if ready or timeout_s <= 0:
        return ready
    first: list[Message] = consumer.consume(1, timeout_s)
    if not first or limit <= 1:
        return first
    return first + consumer.consume(limit - 1, 0)
