"""HTTP connector: idempotency keys, timeouts and classified errors for activities.

See docs/connectors.md for the error table.
"""

from orchestrator.connectors.http._client import IDEMPOTENCY_HEADER, HttpConnector, Timeout
from orchestrator.connectors.http._errors import (
    DEFAULT_RETRYABLE_STATUSES,
    EXCEPTION_RULES,
    ErrorRule,
    error_for_exception,
    error_for_response,
    parse_retry_after,
    redact,
)

__all__ = [
    "DEFAULT_RETRYABLE_STATUSES",
    "EXCEPTION_RULES",
    "IDEMPOTENCY_HEADER",
    "ErrorRule",
    "HttpConnector",
    "Timeout",
    "error_for_exception",
    "error_for_response",
    "parse_retry_after",
    "redact",
]
