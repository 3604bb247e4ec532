"""Every confluent-kafka exception maps into the taxonomy; events are checked by schema."""

from __future__ import annotations

import inspect
import io

import confluent_kafka
import confluent_kafka.error
import fastavro
import pytest
from confluent_kafka import KafkaError, KafkaException

from orchestrator.connectors.kafka import (
    CONNECTOR_SCHEMAS,
    EXCEPTION_RULES,
    EventPublisher,
    error_for_kafka,
)
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


def _confluent_exception_classes() -> set[type[BaseException]]:
    found: set[type[BaseException]] = set()
    todo = [
        obj
        for module in (confluent_kafka, confluent_kafka.error)
        for obj in vars(module).values()
        if inspect.isclass(obj) and issubclass(obj, BaseException)
    ]
    while todo:
        klass = todo.pop()
        if klass in found or not klass.__module__.startswith(("confluent_kafka", "cimpl")):
            continue
        found.add(klass)
        todo.extend(klass.__subclasses__())
    return found


def test_every_confluent_kafka_exception_class_has_an_explicit_rule() -> None:
    classes = _confluent_exception_classes()
    assert len(classes) >= 10
    missing = sorted(k.__name__ for k in classes if k not in EXCEPTION_RULES)
    assert missing == []


@pytest.mark.parametrize(
    "klass", sorted(_confluent_exception_classes(), key=lambda k: k.__name__)
)
def test_each_class_maps_to_an_application_error(klass: type[BaseException]) -> None:
    if issubclass(klass, KafkaException):
        exc: BaseException = klass(KafkaError(KafkaError._TRANSPORT))
    else:
        exc = klass("boom")
    assert isinstance(error_for_kafka(exc), ApplicationError)


@pytest.mark.parametrize(
    ("code", "retryable"),
    [
        (KafkaError._MSG_TIMED_OUT, True),
        (KafkaError._TRANSPORT, True),
        (KafkaError._ALL_BROKERS_DOWN, True),
        (KafkaError.NOT_ENOUGH_REPLICAS, True),
        (KafkaError.UNKNOWN_TOPIC_OR_PART, True),
        (KafkaError.MSG_SIZE_TOO_LARGE, False),
        (KafkaError.TOPIC_AUTHORIZATION_FAILED, False),
        (KafkaError._INVALID_ARG, False),
    ],
)
def test_delivery_error_codes(code: int, retryable: bool) -> None:
    err = error_for_kafka(KafkaError(code))
    assert err.retryable is retryable
    assert err.type == "KafkaError"
    assert error_for_kafka(KafkaException(KafkaError(code))).retryable is retryable


def test_local_queue_full_is_retryable_and_bad_arguments_are_not() -> None:
    assert error_for_kafka(BufferError("Local: Queue full")).type == "KafkaQueueFull"
    assert error_for_kafka(BufferError("x")).retryable
    assert not error_for_kafka(TypeError("key must be bytes")).retryable


def test_encode_writes_bare_avro_and_rejects_bad_events() -> None:
    pub = EventPublisher({"bootstrap.servers": "127.0.0.1:1"}, SCHEMA)
    assert pub.ce_type == "payments.transfer-event.v1"
    raw = pub.encode(EVENT)
    schema = fastavro.schema.load_schema(str(SCHEMA))
    decoded = fastavro.schemaless_reader(io.BytesIO(raw), schema, None)
    assert decoded == {**EVENT, "currency": "EUR", "attributes": {}}
    for bad in ({**EVENT, "amount": "five"}, {k: v for k, v in EVENT.items() if k != "event"}):
        with pytest.raises(ApplicationError) as info:
            pub.encode(bad)
        assert info.value.type == "EventSchemaError"
        assert not info.value.retryable


def test_a_missing_schema_file_fails_at_construction() -> None:
    with pytest.raises(ValueError, match="cannot load event schema"):
        EventPublisher({}, CONNECTOR_SCHEMAS / "nope.v1.avsc")
