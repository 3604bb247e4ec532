"""Publish Avro events to Kafka from activity code (egress)."""

from __future__ import annotations

import asyncio
import io
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import fastavro
import fastavro.validation
from confluent_kafka import KafkaError, KafkaException, Message, Producer
from fastavro.validation import ValidationError

from orchestrator import activity
from orchestrator.connectors.kafka._errors import (
    delivery_unknown_error,
    error_for_kafka,
    schema_error,
)

__all__ = ["CONNECTOR_SCHEMAS", "IDEMPOTENCY_HEADER", "EventPublisher", "Published"]

CONNECTOR_SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"
"""Folder of the example event schemas shipped with the connectors."""

IDEMPOTENCY_HEADER = "idempotency-key"

_MAX_TIMEOUT_S = 2_147_483.647  # librdkafka's largest message.timeout.ms
_DELIVERY_MARGIN_S = 5.0
"""How long past ``delivery_timeout`` publish() waits for a delivery report."""

_PRODUCER_DEFAULTS: dict[str, Any] = {
    "enable.idempotence": True,  # no duplicates or reordering from producer retries
    "acks": "all",
    "partitioner": "murmur2_random",  # same partition as Java clients for the same key
    "linger.ms": 5,
}


@dataclass(frozen=True, slots=True)
class Published:
    """Where an event landed."""

    topic: str
    partition: int
    offset: int
    idempotency_key: str


class EventPublisher:
    """Encodes events with one Avro schema and publishes them with an idempotent producer.

    Records follow the orchestrator's wire conventions (CloudEvents binary mode):
    bare Avro value, ``ce_type`` = the schema file name without ``.avsc``, and
    ``ce_id`` = the idempotency key, also sent as ``idempotency-key``, so consumers
    can drop the duplicates that an activity retry may publish. Use one publisher
    per worker process::

        events = EventPublisher({"bootstrap.servers": "..."},
                                CONNECTOR_SCHEMAS / "payments.transfer-event.v1.avsc")
        await events.start()

        @activity.defn(name="announce")
        async def announce(e: TransferEvent) -> None:
            await events.publish("payments.events", key=e.transfer_id, event=asdict(e))
    """

    def __init__(
        self,
        config: Mapping[str, Any],
        schema_path: str | Path,
        *,
        source: str = "/connectors/kafka",
        delivery_timeout: float = 30.0,
    ) -> None:
        number = isinstance(delivery_timeout, int | float)
        if isinstance(delivery_timeout, bool) or not (
            number and 0.001 <= delivery_timeout <= _MAX_TIMEOUT_S
        ):
            # 0 would mean "no limit" to librdkafka, and publish() waits on this bound.
            raise ValueError(
                f"delivery_timeout must be between 0.001 and {_MAX_TIMEOUT_S} seconds, "
                f"got {delivery_timeout!r}"
            )
        path = Path(schema_path)
        try:
            self._schema: Any = fastavro.parse_schema(json.loads(path.read_text("utf-8")))
        except (OSError, ValueError, fastavro.schema.SchemaParseException) as exc:
            raise ValueError(f"cannot load event schema {path}: {exc}") from exc
        self.ce_type = path.name.removesuffix(".avsc")
        self._source = source
        self._delivery_timeout = float(delivery_timeout)
        self._config = {
            **_PRODUCER_DEFAULTS,
            **dict(config),
            "message.timeout.ms": int(delivery_timeout * 1000),
        }
        self._producer: Producer | None = None
        self._stopping = threading.Event()
        self._poller: threading.Thread | None = None
        self._fatal = False

    async def start(self) -> EventPublisher:
        """Create the producer and its delivery-report thread."""
        if self._producer is None:
            self._producer = Producer(self._config)
            self._stopping.clear()
            self._poller = threading.Thread(
                target=self._poll, args=(self._producer,), name="event-publisher", daemon=True
            )
            self._poller.start()
        return self

    def _poll(self, producer: Producer) -> None:
        while not self._stopping.is_set():
            producer.poll(0.1)

    async def close(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109 (flush's own timeout)
        """Deliver what is queued (up to ``timeout`` seconds), then stop."""
        producer, poller = self._producer, self._poller
        self._producer = self._poller = None
        if producer is None:
            return
        await asyncio.to_thread(producer.flush, timeout)
        self._stopping.set()
        if poller is not None:
            await asyncio.to_thread(poller.join, 5.0)

    async def __aenter__(self) -> EventPublisher:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def encode(self, event: Mapping[str, Any]) -> bytes:
        """``event`` as bare Avro; a terminal ``EventSchemaError`` if it does not fit."""
        try:
            fastavro.validation.validate(event, self._schema, raise_errors=True)
            buf = io.BytesIO()
            fastavro.schemaless_writer(buf, self._schema, dict(event))
        except (ValidationError, ValueError, TypeError, KeyError) as exc:
            raise schema_error(f"event does not fit {self.ce_type}: {exc}") from None
        return buf.getvalue()

    async def publish(
        self,
        topic: str,
        *,
        key: str | bytes,
        event: Mapping[str, Any],
        idempotency_key: str | None = None,
        headers: Mapping[str, str | bytes] | None = None,
    ) -> Published:
        """Publish one event and wait until the brokers acknowledged it.

        ``idempotency_key`` defaults to the running activity's key; outside an
        activity it is required. Failures raise a classified ApplicationError; with no
        delivery report ``delivery_timeout`` + 5 s after producing (the publisher was
        closed or restarted meanwhile), a retryable ``KafkaDeliveryUnknown``.
        """
        if idempotency_key is None:
            if not activity.in_activity():
                raise ValueError("idempotency_key is required outside an activity")
            idempotency_key = activity.info().idempotency_key
        if self._producer is None:
            raise RuntimeError("EventPublisher.start() was not called")
        if self._fatal:
            # A fatal error (e.g. the idempotent producer was fenced or lost its
            # sequence state) leaves the producer unusable: start a fresh one.
            self._fatal = False
            await self.close(timeout=1.0)
            await self.start()
        assert self._producer is not None
        value = self.encode(event)
        out_headers: list[tuple[str, str | bytes | None]] = [
            ("ce_specversion", b"1.0"),
            ("ce_id", idempotency_key.encode()),
            ("ce_type", self.ce_type.encode()),
            ("ce_source", self._source.encode()),
            ("content-type", b"application/avro"),
            (IDEMPOTENCY_HEADER, idempotency_key.encode()),
        ]
        for name, val in (headers or {}).items():
            out_headers.append((name, val.encode() if isinstance(val, str) else val))
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Published] = loop.create_future()
        ikey = idempotency_key

        def settle(err: KafkaError | None, msg: Message) -> None:
            if done.done():
                return
            if err is not None:
                self._fatal = self._fatal or err.fatal()
                done.set_exception(error_for_kafka(err))
            else:
                done.set_result(
                    Published(msg.topic() or topic, msg.partition() or 0, msg.offset() or 0, ikey)
                )

        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            loop.call_soon_threadsafe(settle, err, msg)

        try:
            self._producer.produce(
                topic, value=value, key=key, headers=out_headers, on_delivery=on_delivery
            )
        except (BufferError, TypeError, ValueError, RuntimeError, KafkaException) as exc:
            raise error_for_kafka(exc) from None
        # librdkafka reports every message by message.timeout.ms, but only while the
        # poller runs: close() or a restart after a fatal error may stop it first.
        wait = self._delivery_timeout + _DELIVERY_MARGIN_S
        try:
            return await asyncio.wait_for(done, wait)
        except TimeoutError:
            raise delivery_unknown_error(topic, wait) from None
