"""CloudEvents Kafka protocol binding, binary content mode.

Attributes travel as ``ce_*`` headers, the value is the bare Avro datum, and
``content-type`` is ``application/avro``. W3C trace context rides along in
``traceparent`` / ``tracestate`` so OpenTelemetry propagators work unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from orchestrator.serde.errors import DecodeFailure, RecordDecodeError

SPEC_VERSION = "1.0"
CONTENT_TYPE = "application/avro"

Headers = list[tuple[str, bytes]]
"""Kafka headers as confluent-kafka and aiokafka take them."""

InHeaders = Sequence[tuple[str, bytes | None]] | None
"""Kafka headers as consumers return them (confluent-kafka gives None for no headers)."""

_REQUIRED = ("ce_specversion", "ce_id", "ce_type", "ce_source")
_WANTED = frozenset({*_REQUIRED, "content-type", "traceparent", "tracestate"})
_MAX_HEADER_BYTES = 4096


class CloudEvent(NamedTuple):
    """The CloudEvents attributes of one Kafka record (the data is decoded separately)."""

    type: str
    id: str
    source: str
    traceparent: str | None = None
    tracestate: str | None = None

    def headers(self) -> Headers:
        """Kafka headers carrying these attributes in binary content mode."""
        headers = [
            ("ce_specversion", b"1.0"),
            ("ce_id", self.id.encode()),
            ("ce_type", self.type.encode()),
            ("ce_source", self.source.encode()),
            ("content-type", b"application/avro"),
        ]
        if self.traceparent is not None:
            headers.append(("traceparent", self.traceparent.encode()))
        if self.tracestate is not None:
            headers.append(("tracestate", self.tracestate.encode()))
        return headers


def parse_headers(headers: InHeaders) -> CloudEvent:
    """Read the CloudEvents attributes of a record; :class:`RecordDecodeError` if invalid.

    When a header repeats, the last one wins, as in Kafka's ``lastHeader``.
    """
    raw_found: dict[str, bytes | None] = {}
    for name, raw in headers or ():
        if name in _WANTED:
            raw_found[name] = raw
    usual = _usual(raw_found)  # what every record of ours carries: checked in one go
    if usual is not None:
        return usual
    ce_type = _text("ce_type", raw_found.get("ce_type"), None) or None
    found = {name: _text(name, raw, ce_type) for name, raw in raw_found.items()}
    missing = [name for name in _REQUIRED if not found.get(name)]
    if missing:
        hint = (
            "; structured mode (JSON envelope) is not supported, use binary mode"
            if found.get("content-type", "").startswith("application/cloudevents")
            else ""
        )
        raise RecordDecodeError(
            DecodeFailure.MISSING_HEADER,
            f"missing or empty header(s) {', '.join(missing)}{hint}",
            ce_type,
        )
    if found["ce_specversion"] != SPEC_VERSION:
        raise RecordDecodeError(
            DecodeFailure.BAD_HEADER,
            f"ce_specversion {found['ce_specversion']!r} is not supported (expected '1.0')",
            ce_type,
        )
    content_type = found.get("content-type")
    if content_type is not None and content_type.split(";", 1)[0].strip() != CONTENT_TYPE:
        raise RecordDecodeError(
            DecodeFailure.UNSUPPORTED_CONTENT_TYPE,
            f"content-type {content_type!r}; values must be bare Avro ({CONTENT_TYPE})",
            ce_type,
        )
    return CloudEvent(
        type=found["ce_type"],
        id=found["ce_id"],
        source=found["ce_source"],
        traceparent=found.get("traceparent"),
        tracestate=found.get("tracestate"),
    )


def _usual(raw: dict[str, bytes | None]) -> CloudEvent | None:
    """The attributes when the headers are plainly valid (spec 1.0, the required ones
    present and short, content-type absent or exactly Avro's); None otherwise, and
    :func:`parse_headers` then says what is wrong."""
    ce_id, ce_type, source = raw.get("ce_id"), raw.get("ce_type"), raw.get("ce_source")
    if (
        raw.get("ce_specversion") != b"1.0"
        or not ce_id
        or not ce_type
        or not source
        or raw.get("content-type", _AVRO) != _AVRO
        or max(len(v) for v in raw.values() if v is not None) > _MAX_HEADER_BYTES
    ):
        return None
    try:
        return CloudEvent(
            ce_type.decode(),
            ce_id.decode(),
            source.decode(),
            _optional(raw, "traceparent"),
            _optional(raw, "tracestate"),
        )
    except UnicodeDecodeError:
        return None


def _optional(raw: dict[str, bytes | None], name: str) -> str | None:
    """An optional attribute as :func:`parse_headers` reads it: absent None, valueless ""."""
    if name not in raw:
        return None
    value = raw[name]
    return "" if value is None else value.decode()


_AVRO = CONTENT_TYPE.encode()


def _text(name: str, raw: bytes | None, ce_type: str | None) -> str:
    if raw is None:
        return ""
    if len(raw) > _MAX_HEADER_BYTES:
        raise RecordDecodeError(
            DecodeFailure.BAD_HEADER,
            f"header {name} is {len(raw)} bytes (limit {_MAX_HEADER_BYTES})",
            ce_type,
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise RecordDecodeError(
            DecodeFailure.BAD_HEADER, f"header {name} is not UTF-8", ce_type
        ) from None
