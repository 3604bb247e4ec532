"""The queue bridge on real Kafka, with an engine worker running the sagas.

A legacy topic of payment messages (some carry a business key, some do not, two are
malformed) is bridged by one consumer group, then replayed from the beginning by a
second group: every message started exactly one run, the malformed ones went to
the DLQ with a reason while the bridge went on, and offsets were committed.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

import pytest
from confluent_kafka import Consumer, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from orchestrator.log.dlq_tools import read_dead_letters
from orchestrator.log.topics import TopicLayout, ensure_topics
from orchestrator.migration.bridge import (
    BridgeStart,
    LegacyMessage,
    MalformedMessageError,
    QueueBridge,
)
from orchestrator.migration.ids import bridge_workflow_id
from tests.integration.test_outbox import (
    QUEUE,
    SHARDS,
    assert_exactly_once,
    engine,
    start_commands,
    wait_for_start_replies,
)

pytestmark = pytest.mark.integration
LEGACY_PARTITIONS = 3


def translate(message: LegacyMessage) -> BridgeStart:
    """Legacy JSON payments; newer ones carry ``payment_id``, older ones nothing."""
    if message.value is None:
        raise MalformedMessageError("empty value")
    body = json.loads(message.value)
    if not isinstance(body, dict):
        raise MalformedMessageError(f"expected an object, got {type(body).__name__}")
    return BridgeStart(input=body, business_key=body.get("payment_id"))


@pytest.fixture
def layout(admin: AdminClient, topic_prefix: str) -> TopicLayout:
    layout = TopicLayout(prefix=topic_prefix, shards=SHARDS)
    ensure_topics(admin, layout, [QUEUE])
    return layout


def legacy_topic(admin: AdminClient, name: str) -> str:
    futures = admin.create_topics([NewTopic(name, LEGACY_PARTITIONS, 1)])
    futures[name].result(30)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        meta = admin.list_topics(name, timeout=10).topics.get(name)
        if meta and meta.error is None and all(p.leader >= 0 for p in meta.partitions.values()):
            return name
        time.sleep(0.1)
    raise TimeoutError(f"{name} has no leaders")


def publish_legacy(config: dict[str, Any], topic: str) -> tuple[set[str], list[str]]:
    """60 payments and 2 malformed messages; returns (expected workflow ids, dlq sources)."""
    producer = Producer({**config, "enable.idempotence": True})
    delivered: list[tuple[bytes, int, int]] = []

    def on_delivery(err: Any, msg: Message) -> None:
        assert err is None, err
        delivered.append((msg.value(), msg.partition(), msg.offset()))

    for i in range(60):
        body: dict[str, Any] = {"amount": i + 1, "account": f"acct-{i % 7}"}
        if i % 2 == 0:
            body["payment_id"] = f"pay-{i}"
        producer.produce(
            topic,
            key=f"acct-{i % 7}".encode(),
            value=json.dumps(body).encode(),
            on_delivery=on_delivery,
        )
        if i in (20, 40):  # malformed messages in the middle of the stream
            bad = b"\x00garbage" if i == 20 else b"[1, 2, 3]"
            producer.produce(
                topic, key=f"acct-{i % 7}".encode(), value=bad, on_delivery=on_delivery
            )
    assert producer.flush(30) == 0
    ids, bad_sources = set(), []
    for value, partition, offset in delivered:
        if value.startswith(b"{"):
            key = json.loads(value).get("payment_id")
            ids.add(bridge_workflow_id(topic, partition, offset, key))
        else:
            bad_sources.append(f"{topic}/{partition}/{offset}")
    return ids, bad_sources


def run_bridge_to_end(
    config: dict[str, Any], layout: TopicLayout, topic: str, group: str, total: int
) -> QueueBridge:
    bridge = QueueBridge(
        config,
        layout,
        topic,
        group,
        workflow_type="migration.echo",
        task_queue=QUEUE,
        translate=translate,
        batch_size=16,
    )
    with bridge:
        deadline = time.monotonic() + 30
        while bridge.metrics.messages < total and time.monotonic() < deadline:
            assert bridge.error is None
            time.sleep(0.1)
    assert bridge.error is None
    assert bridge.metrics.messages == total
    return bridge


def committed(config: dict[str, Any], topic: str, group: str) -> list[int]:
    consumer = Consumer({**config, "group.id": group, "enable.auto.commit": False})
    try:
        parts = [TopicPartition(topic, p) for p in range(LEGACY_PARTITIONS)]
        return [tp.offset for tp in consumer.committed(parts, timeout=10)]
    finally:
        consumer.close()


def test_replaying_the_legacy_topic_starts_no_duplicates(
    kafka_config: dict[str, Any], admin: AdminClient, layout: TopicLayout, group_id: str
) -> None:
    topic = legacy_topic(admin, f"{layout.prefix}.legacy-payments")
    ids, bad = publish_legacy(kafka_config, topic)
    assert len(ids) == 60 and len(bad) == 2
    total = 62
    with engine(kafka_config, layout):
        first = run_bridge_to_end(kafka_config, layout, topic, f"{group_id}-a", total)
        assert (first.metrics.started, first.metrics.dead_lettered) == (60, 2)
        assert_exactly_once(kafka_config, layout, ids)
        # a brand-new group reads the topic from the beginning: every start goes out again
        replay = run_bridge_to_end(kafka_config, layout, topic, f"{group_id}-b", total)
        assert replay.metrics.started == 60
        # the engine answered both copies of every start, and ran each id once
        replies = wait_for_start_replies(kafka_config, layout, 120)
        assert len(replies) == 60 and set(replies.values()) == {2}
        assert_exactly_once(kafka_config, layout, ids)
    starts = Counter(s.workflow_id for s in start_commands(kafka_config, layout))
    assert set(starts) == ids and set(starts.values()) == {2}
    assert all(
        s.id_reuse_policy.name == "REJECT_DUPLICATE" for s in start_commands(kafka_config, layout)
    )

    # offsets were committed after the acks: the first group is at the end of every partition
    ends = [_end(kafka_config, topic, p) for p in range(LEGACY_PARTITIONS)]
    assert committed(kafka_config, topic, f"{group_id}-a") == ends

    letters = list(read_dead_letters(kafka_config, layout.dlq))
    assert sorted(
        {f"{d.source_topic}/{d.source_partition}/{d.source_offset}" for d in letters}
    ) == sorted(bad)
    assert len(letters) == 4  # each malformed message once per pass
    reasons = {d.reason for d in letters}
    assert any("JSONDecodeError" in r or "UnicodeDecodeError" in r for r in reasons), reasons
    assert any("expected an object, got list" in r for r in reasons), reasons


def _end(config: dict[str, Any], topic: str, partition: int) -> int:
    consumer = Consumer({**config, "group.id": "end-reader"})
    try:
        return int(consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)[1])
    finally:
        consumer.close()
