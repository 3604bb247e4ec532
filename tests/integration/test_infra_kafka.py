"""The foundation works on a real broker: clients, transactions, compaction."""

from __future__ import annotations

import time
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from confluent_kafka import Consumer, KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic

pytestmark = pytest.mark.integration


def create_topic(
    admin: AdminClient,
    name: str,
    partitions: int = 1,
    rf: int = 1,
    config: dict[str, str] | None = None,
) -> None:
    admin.create_topics([NewTopic(name, partitions, rf, config=config or {})])[name].result(30)


def consume(
    config: dict[str, Any],
    topic: str,
    group: str,
    want: int,
    timeout_s: float = 20.0,
    isolation: str = "read_committed",
) -> list[Message]:
    consumer = Consumer(
        {
            **config,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "isolation.level": isolation,
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    got: list[Message] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(got) < want and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            if msg.error():
                raise KafkaException(msg.error())
            got.append(msg)
    finally:
        consumer.close()
    return got


def test_confluent_kafka_produce_and_consume(
    kafka_config: dict[str, Any], admin: AdminClient, topic_prefix: str, group_id: str
) -> None:
    topic = f"{topic_prefix}.plain"
    create_topic(admin, topic, partitions=3)
    producer = Producer(kafka_config)
    for i in range(30):
        producer.produce(topic, key=f"k{i}".encode(), value=f"v{i}".encode())
    assert producer.flush(15) == 0
    got = consume(kafka_config, topic, group_id, want=30)
    assert sorted(m.value() for m in got) == sorted(f"v{i}".encode() for i in range(30))


async def test_aiokafka_produce_and_consume(
    kafka_config: dict[str, Any], admin: AdminClient, topic_prefix: str, group_id: str
) -> None:
    topic = f"{topic_prefix}.aio"
    create_topic(admin, topic, partitions=2)
    servers = kafka_config["bootstrap.servers"]
    producer = AIOKafkaProducer(bootstrap_servers=servers, enable_idempotence=True)
    await producer.start()
    try:
        for i in range(10):
            await producer.send_and_wait(topic, key=f"k{i}".encode(), value=f"v{i}".encode())
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=servers,
        group_id=group_id,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    await consumer.start()
    try:
        values: list[bytes] = []
        deadline = time.monotonic() + 20
        while len(values) < 10 and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            values += [
                rec.value for recs in batch.values() for rec in recs if rec.value is not None
            ]
    finally:
        await consumer.stop()
    assert sorted(values) == sorted(f"v{i}".encode() for i in range(10))


def test_committed_transaction_visible_aborted_not(
    kafka_config: dict[str, Any], admin: AdminClient, topic_prefix: str, group_id: str
) -> None:
    topic = f"{topic_prefix}.tx"
    create_topic(admin, topic)
    producer = Producer(
        {**kafka_config, "transactional.id": f"{topic_prefix}-tx", "transaction.timeout.ms": 10000}
    )
    producer.init_transactions(30)
    producer.begin_transaction()
    producer.produce(topic, key=b"a", value=b"aborted-1")
    producer.produce(topic, key=b"b", value=b"aborted-2")
    producer.flush(10)  # the records reach the log before the abort marker
    producer.abort_transaction(30)
    producer.begin_transaction()
    producer.produce(topic, key=b"c", value=b"committed")
    producer.commit_transaction(30)

    committed = consume(kafka_config, topic, group_id, want=1)
    assert [m.value() for m in committed] == [b"committed"]
    # read_uncommitted sees the aborted records too: they really were written
    raw = consume(kafka_config, topic, group_id + "-raw", want=3, isolation="read_uncommitted")
    assert {m.value() for m in raw} == {b"aborted-1", b"aborted-2", b"committed"}


def test_compacted_topic_drops_superseded_values(
    kafka_config: dict[str, Any], admin: AdminClient, topic_prefix: str, unique: str
) -> None:
    topic = f"{topic_prefix}.compact"
    create_topic(
        admin,
        topic,
        config={
            "cleanup.policy": "compact",
            "segment.ms": "100",
            "min.cleanable.dirty.ratio": "0.01",
            "min.compaction.lag.ms": "0",
            "delete.retention.ms": "100",
        },
    )
    producer = Producer(kafka_config)
    for version in range(20):
        producer.produce(topic, key=b"workflow-1", value=f"status-{version}".encode())
    producer.produce(topic, key=b"workflow-2", value=b"only")
    producer.flush(10)

    deadline = time.monotonic() + 60
    while True:
        time.sleep(0.3)
        # the active segment is never cleaned: a fresh record rolls it (segment.ms elapsed)
        producer.produce(topic, key=b"roll", value=b"x")
        producer.flush(10)
        time.sleep(1.5)
        seen = consume(
            kafka_config,
            topic,
            f"g{unique}-{time.monotonic_ns()}",
            want=10_000,
            timeout_s=3,
            isolation="read_uncommitted",
        )
        wf1 = [m.value() for m in seen if m.key() == b"workflow-1"]
        if wf1 == [b"status-19"] or time.monotonic() > deadline:
            break
    assert wf1 == [b"status-19"], f"superseded values still present: {wf1}"
    assert [m.value() for m in seen if m.key() == b"workflow-2"] == [b"only"]
