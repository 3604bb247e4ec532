"""The Kafka event publisher against a real broker."""

from __future__ import annotations

import io
import json
import time
from datetime import UTC, datetime
from typing import Any

import fastavro
import pytest
from confluent_kafka import Consumer, Message
from confluent_kafka.admin import AdminClient, NewTopic

from orchestrator import activity
from orchestrator.activity import ActivityInfo
from orchestrator.connectors.kafka import CONNECTOR_SCHEMAS, EventPublisher
from orchestrator.exceptions import ApplicationError

pytestmark = pytest.mark.integration

SCHEMA_PATH = CONNECTOR_SCHEMAS / "payments.transfer-event.v1.avsc"


def _event(transfer_id: str, amount: int) -> dict[str, Any]:
    return {
        "transfer_id": transfer_id,
        "event": "completed",
        "source_account": "alice",
        "target_account": "bob",
        "amount": amount,
        "occurred_at_ms": 1_700_000_000_000,
        "attributes": {"note": "demo"},
    }


def _info(seq: int, attempt: int) -> ActivityInfo:
    now = datetime.now(UTC)
    return ActivityInfo(
        workflow_id="transfer-9", run_id="r1", workflow_type="transfer",
        activity_type="announce", activity_seq=seq, attempt=attempt, task_queue="q",
        scheduled_time=now, attempt_started_time=now,
    )


def _consume(config: dict[str, Any], topic: str, group: str, n: int) -> list[Message]:
    consumer = Consumer(
        {**config, "group.id": group, "auto.offset.reset": "earliest",
         "enable.auto.commit": False}
    )
    consumer.subscribe([topic])
    got: list[Message] = []
    deadline = time.monotonic() + 30
    try:
        while len(got) < n and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                got.append(msg)
    finally:
        consumer.close()
    return got


async def test_published_events_are_avro_with_key_and_dedupe_headers(
    kafka_config: dict[str, Any], admin: AdminClient, topic_prefix: str, group_id: str
) -> None:
    topic = f"{topic_prefix}.payments.events"
    admin.create_topics([NewTopic(topic, 3, 1)])[topic].result(30)
    async with EventPublisher(kafka_config, SCHEMA_PATH, source="/tests/kafka") as events:
        # Attempt 1 and its retry (attempt 2) publish with the same idempotency key.
        for attempt in (1, 2):
            with activity.running(_info(seq=4, attempt=attempt), lambda _: None):
                first = await events.publish(topic, key="transfer-9", event=_event("transfer-9", 5))
        other = await events.publish(
            topic, key=b"transfer-10", event=_event("transfer-10", 7), idempotency_key="k-10",
            headers={"traceparent": "00-abc-def-01"},
        )
    assert first.idempotency_key == "transfer-9/r1/4"
    assert other.idempotency_key == "k-10"

    msgs = _consume(kafka_config, topic, group_id, 3)
    assert len(msgs) == 3
    schema = fastavro.parse_schema(json.loads(SCHEMA_PATH.read_text()))
    seen: dict[str, dict[str, Any]] = {}
    for msg in msgs:
        headers = {k: v for k, v in msg.headers() or []}
        assert headers["ce_type"] == b"payments.transfer-event.v1"
        assert headers["ce_source"] == b"/tests/kafka"
        assert headers["content-type"] == b"application/avro"
        assert headers["ce_id"] == headers["idempotency-key"]
        value = msg.value()
        assert value is not None
        seen[headers["ce_id"].decode()] = fastavro.schemaless_reader(
            io.BytesIO(value), schema, None
        )
        if msg.key() == b"transfer-9":
            assert msg.partition() == first.partition
    # A consumer deduping by ce_id sees each event once.
    assert set(seen) == {"transfer-9/r1/4", "k-10"}
    assert seen["k-10"]["amount"] == 7
    assert seen["transfer-9/r1/4"]["attributes"] == {"note": "demo"}


async def test_invalid_event_is_terminal_and_nothing_is_published(
    kafka_config: dict[str, Any], admin: AdminClient, topic_prefix: str
) -> None:
    topic = f"{topic_prefix}.bad"
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    async with EventPublisher(kafka_config, SCHEMA_PATH) as events:
        with pytest.raises(ApplicationError) as info:
            await events.publish(
                topic, key="k", event={"transfer_id": "x"}, idempotency_key="k1"
            )
    assert (info.value.type, info.value.retryable) == ("EventSchemaError", False)


async def test_a_missing_topic_fails_retryably_within_the_delivery_timeout(
    kafka_config: dict[str, Any], topic_prefix: str
) -> None:
    started = time.monotonic()
    async with EventPublisher(kafka_config, SCHEMA_PATH, delivery_timeout=2.0) as events:
        with pytest.raises(ApplicationError) as info:
            await events.publish(
                f"{topic_prefix}.absent", key="k", event=_event("t", 1), idempotency_key="k1"
            )
    assert info.value.retryable
    assert time.monotonic() - started < 15


async def test_publish_outside_an_activity_needs_a_key(kafka_config: dict[str, Any]) -> None:
    async with EventPublisher(kafka_config, SCHEMA_PATH) as events:
        with pytest.raises(ValueError, match="idempotency_key is required"):
            await events.publish("t", key="k", event=_event("t", 1))
