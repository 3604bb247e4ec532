"""Errors raised by the wire format layer.

::

    SerdeError
    ├── RecordDecodeError      a Kafka record cannot be decoded (goes to the DLQ)
    ├── RecordEncodeError      a value does not fit its schema (a bug in the caller)
    ├── SchemaError            the schema folder is missing, inconsistent or drifted
    └── PayloadCodecError      a payload codec cannot encode or decode
        └── PayloadKeyError    decryption key unknown or wrong
"""

from __future__ import annotations

import enum


class DecodeFailure(enum.StrEnum):
    """Why a record could not be decoded; stable codes for DLQ headers and metrics."""

    EMPTY_VALUE = "empty-value"
    OVERSIZED = "oversized"
    MISSING_HEADER = "missing-header"
    BAD_HEADER = "bad-header"
    UNSUPPORTED_CONTENT_TYPE = "unsupported-content-type"
    UNKNOWN_TYPE = "unknown-type"
    UNSUPPORTED_VERSION = "unsupported-version"
    TRUNCATED = "truncated"
    TRAILING_BYTES = "trailing-bytes"
    MALFORMED = "malformed"


class SerdeError(Exception):
    """Base class of every error raised by :mod:`orchestrator.serde`."""


class RecordDecodeError(SerdeError):
    """A Kafka record cannot be decoded.

    ``reason`` is a stable code (one of :class:`DecodeFailure`), ``detail`` says
    exactly what is wrong, and ``ce_type`` is the record type when it was known.
    """

    def __init__(self, reason: DecodeFailure, detail: str, ce_type: str | None = None) -> None:
        self.reason = reason
        self.detail = detail
        self.ce_type = ce_type
        where = f" ({ce_type})" if ce_type else ""
        super().__init__(f"{reason.value}{where}: {detail}")


class RecordEncodeError(SerdeError):
    """A value cannot be encoded with its schema; always a programming error."""


class SchemaError(SerdeError):
    """The schema folder is missing, malformed, or does not match the Python types."""


class PayloadCodecError(SerdeError):
    """A payload codec failed to encode or decode a payload."""


class PayloadKeyError(PayloadCodecError):
    """The key needed to decrypt a payload is unknown, or it is the wrong key."""
