"""EventPublisher.publish against a fake producer: delivery reports that never come."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from orchestrator.connectors.kafka import CONNECTOR_SCHEMAS, EventPublisher, _publisher
from orchestrator.exceptions import ApplicationError

SCHEMA = CONNECTOR_SCHEMAS / "payments.transfer-event.v1.avsc"
EVENT = {
    "transfer_id": "t-1",
    "event": "completed",
    "source_account": "alice",
    "target_account": "bob",
    "amount": 500,
    "occurred_at_ms": 1_700_000_000_000,
}


class _Message:
    def topic(self) -> str:
        return "payments.events"

    def partition(self) -> int:
        return 2

    def offset(self) -> int:
        return 41


class FakeProducer:
    """Queues produce() callbacks; poll() reports them only when ``deliver`` is set."""

    deliver = True

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.pending: list[Any] = []

    def produce(self, topic: str, **kwargs: Any) -> None:
        self.pending.append(kwargs["on_delivery"])

    def poll(self, timeout: float) -> int:
        if self.deliver and self.pending:
            self.pending.pop(0)(None, _Message())
            return 1
        time.sleep(min(timeout, 0.01))
        return 0

    def flush(self, timeout: float) -> int:
        return len(self.pending)


@pytest.fixture
def fake_producer(monkeypatch: pytest.MonkeyPatch) -> type[FakeProducer]:
    monkeypatch.setattr(_publisher, "Producer", FakeProducer)
    monkeypatch.setattr(_publisher, "_DELIVERY_MARGIN_S", 0.1, raising=False)
    FakeProducer.deliver = True
    return FakeProducer


async def test_a_delivered_event_is_returned(fake_producer: type[FakeProducer]) -> None:
    async with EventPublisher({}, SCHEMA, delivery_timeout=0.2) as pub:
        got = await asyncio.wait_for(
            pub.publish("payments.events", key="t-1", event=EVENT, idempotency_key="k-1"), 5
        )
    assert (got.topic, got.partition, got.offset, got.idempotency_key) == (
        "payments.events", 2, 41, "k-1"
    )


async def test_close_during_a_publish_gives_a_retryable_error_not_a_hang(
    fake_producer: type[FakeProducer],
) -> None:
    fake_producer.deliver = False  # the report would come after the poller stopped
    pub = await EventPublisher({}, SCHEMA, delivery_timeout=0.2).start()
    publish = asyncio.create_task(
        pub.publish("payments.events", key="t-1", event=EVENT, idempotency_key="k-1")
    )
    await asyncio.sleep(0.05)
    await pub.close(timeout=0.01)
    with pytest.raises(ApplicationError) as info:
        await asyncio.wait_for(publish, 5)
    err = info.value
    assert err.type == "KafkaDeliveryUnknown"
    assert not err.non_retryable
    assert "payments.events" in err.message
    assert "no delivery report" in err.message


@pytest.mark.parametrize("bad", [0, 0.0, -1, float("nan"), True, 3_000_000.0])
def test_delivery_timeout_must_be_a_positive_bounded_number(bad: float) -> None:
    with pytest.raises(ValueError, match="delivery_timeout must be between"):
        EventPublisher({}, SCHEMA, delivery_timeout=bad)
