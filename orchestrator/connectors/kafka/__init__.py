"""Kafka connector: publish Avro events from activities (egress), classified errors.

See docs/connectors.md.
"""

from orchestrator.connectors.kafka._errors import EXCEPTION_RULES, TERMINAL_CODES, error_for_kafka
from orchestrator.connectors.kafka._publisher import (
    CONNECTOR_SCHEMAS,
    IDEMPOTENCY_HEADER,
    EventPublisher,
    Published,
)

__all__ = [
    "CONNECTOR_SCHEMAS",
    "EXCEPTION_RULES",
    "IDEMPOTENCY_HEADER",
    "TERMINAL_CODES",
    "EventPublisher",
    "Published",
    "error_for_kafka",
]
