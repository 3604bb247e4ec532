"""Schemaless Avro encoding of one datum, with every decoding failure mapped to one error.

Values on the wire are bare Avro binary (no container header, no framing): the
writer schema is named by the record's ``ce_type`` header.
"""

from __future__ import annotations

import io
import struct
import threading
from collections.abc import Mapping
from typing import Any

import fastavro
from fastavro.read import SchemaResolutionError

from orchestrator.serde.errors import DecodeFailure, RecordDecodeError, RecordEncodeError
from orchestrator.serde.registry import SchemaVersion

# Everything fastavro (C or pure-Python reader) raises on hostile bytes; found by the
# fuzz tests in tests/unit/serde. Anything else escaping would be a bug to fix here.
_MALFORMED = (
    ValueError,  # includes UnicodeDecodeError
    IndexError,
    KeyError,
    TypeError,
    OverflowError,
    MemoryError,
    RecursionError,
    StopIteration,
    struct.error,
    SchemaResolutionError,
)


class _Buffers(threading.local):
    """One reusable output buffer per thread: encoders run on worker threads too."""

    def __init__(self) -> None:
        self.out = io.BytesIO()


_buffers = _Buffers()


def encode_datum(schema: SchemaVersion, datum: Mapping[str, Any]) -> bytes:
    """Encode ``datum`` (a dict shaped like ``schema``) as bare Avro binary."""
    out = _buffers.out
    out.seek(0)
    out.truncate()
    try:
        fastavro.schemaless_writer(out, schema.parsed, datum)
    except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
        raise RecordEncodeError(f"{schema.ce_type}: {type(exc).__name__}: {exc}") from exc
    return out.getvalue()


def decode_datum(writer: SchemaVersion, reader: SchemaVersion, value: bytes) -> dict[str, Any]:
    """Decode bare Avro ``value`` written with ``writer``, resolved to ``reader``.

    Raises :class:`RecordDecodeError` (truncated, trailing bytes or malformed) and
    nothing else, whatever the bytes.
    """
    source = io.BytesIO(value)
    try:
        datum = fastavro.schemaless_reader(
            source,
            writer.parsed,
            None if writer is reader else reader.parsed,
            return_record_name=True,
            return_record_name_override=True,
        )
    except EOFError as exc:
        raise RecordDecodeError(
            DecodeFailure.TRUNCATED,
            f"value ends early ({len(value)} bytes): {exc}",
            writer.ce_type,
        ) from None
    except _MALFORMED as exc:
        raise RecordDecodeError(
            DecodeFailure.MALFORMED,
            f"not a valid {writer.name} record: {type(exc).__name__}: {exc}",
            writer.ce_type,
        ) from None
    if source.tell() != len(value):
        raise RecordDecodeError(
            DecodeFailure.TRAILING_BYTES,
            f"{len(value) - source.tell()} bytes left after the {writer.name} record; "
            "was it written with another schema version?",
            writer.ce_type,
        )
    if not isinstance(datum, dict):
        raise RecordDecodeError(
            DecodeFailure.MALFORMED, f"{writer.name} did not decode to a record", writer.ce_type
        )
    return datum
