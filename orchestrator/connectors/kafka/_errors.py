"""confluent-kafka failures in the orchestrator's taxonomy.

Publishing is at-least-once with a stable idempotency key in the headers, so the
default for a broker-side failure is *retryable*: a duplicate is harmless to a
consumer that dedupes, a lost event is not. Only errors that no retry can fix
(bad configuration, authorization, an oversized or schema-invalid record) are
terminal. Every exception class confluent-kafka exports has an entry in
:data:`EXCEPTION_RULES`.
"""

from __future__ import annotations

from collections.abc import Mapping

import confluent_kafka
import confluent_kafka.error
from confluent_kafka import KafkaError, KafkaException

from orchestrator.exceptions import ApplicationError

__all__ = [
    "EXCEPTION_RULES",
    "TERMINAL_CODES",
    "delivery_unknown_error",
    "error_for_kafka",
    "schema_error",
]

TERMINAL_CODES: frozenset[int] = frozenset(
    {
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.INVALID_MSG_SIZE,
        KafkaError.RECORD_LIST_TOO_LARGE,
        KafkaError.INVALID_RECORD,
        KafkaError.TOPIC_EXCEPTION,
        KafkaError.INVALID_REQUIRED_ACKS,
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,
        KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
        KafkaError.SASL_AUTHENTICATION_FAILED,
        KafkaError._AUTHENTICATION,
        KafkaError._INVALID_ARG,
        KafkaError._INVALID_TYPE,
        KafkaError._UNSUPPORTED_FEATURE,
        KafkaError._KEY_SERIALIZATION,
        KafkaError._VALUE_SERIALIZATION,
    }
)
"""Error codes that no later attempt can fix."""

# class -> (error type, retryable); KafkaException subclasses carry a KafkaError
# whose code decides instead when there is one.
EXCEPTION_RULES: Mapping[type[BaseException], tuple[str, bool]] = {
    KafkaException: ("KafkaError", True),
    confluent_kafka.error._KafkaClientError: ("KafkaError", True),
    confluent_kafka.error.ProduceError: ("KafkaError", True),
    confluent_kafka.error.ConsumeError: ("KafkaError", True),
    confluent_kafka.error.SerializationError: ("EventSchemaError", False),
    confluent_kafka.error.KeySerializationError: ("EventSchemaError", False),
    confluent_kafka.error.ValueSerializationError: ("EventSchemaError", False),
    confluent_kafka.error.KeyDeserializationError: ("EventSchemaError", False),
    confluent_kafka.error.ValueDeserializationError: ("EventSchemaError", False),
    confluent_kafka.ConcurrentModificationException: ("KafkaUsageError", False),
    confluent_kafka.IllegalStateException: ("KafkaUsageError", False),
    BufferError: ("KafkaQueueFull", True),  # the local queue is full: back off
    TypeError: ("KafkaUsageError", False),  # produce() refused its arguments
    ValueError: ("KafkaUsageError", False),
}


def _from_kafka_error(err: KafkaError) -> ApplicationError:
    code = err.code()
    terminal = code in TERMINAL_CODES and not err.retriable()
    return ApplicationError(
        f"Kafka {err.name()}: {err.str()}"[:500],
        {"code": code, "name": err.name(), "fatal": err.fatal()},
        type="KafkaError",
        non_retryable=terminal,
    )


def error_for_kafka(exc: BaseException | KafkaError) -> ApplicationError:
    """The ApplicationError a delivery error or a confluent-kafka exception stands for."""
    if isinstance(exc, KafkaError):
        return _from_kafka_error(exc)
    kafka_error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
    if kafka_error is None:
        kafka_error = getattr(exc, "error", None)
    rule = None
    for klass in type(exc).__mro__:
        rule = EXCEPTION_RULES.get(klass)
        if rule is not None:
            break
    kind, retryable = rule or ("KafkaError", False)
    if isinstance(kafka_error, KafkaError) and kind == "KafkaError":
        return _from_kafka_error(kafka_error)
    return ApplicationError(
        f"{type(exc).__name__}: {exc}"[:500],
        {"exception": type(exc).__name__},
        type=kind,
        non_retryable=not retryable,
    )


def schema_error(message: str) -> ApplicationError:
    """A terminal error for an event that does not fit its schema."""
    return ApplicationError(message[:500], type="EventSchemaError", non_retryable=True)


def delivery_unknown_error(topic: str, waited_s: float) -> ApplicationError:
    """A retryable error for an event whose delivery report never came.

    The event may or may not have reached the brokers; a retry publishes it again
    with the same idempotency key, which consumers dedupe.
    """
    return ApplicationError(
        f"no delivery report for the event to {topic!r} after {waited_s:g} s (most "
        "likely the publisher was closed or restarted while it was in flight); it may "
        "or may not have been written, a retry publishes it again with the same "
        "idempotency key",
        {"topic": topic},
        type="KafkaDeliveryUnknown",
    )
