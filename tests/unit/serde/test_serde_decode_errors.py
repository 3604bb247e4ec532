"""Decoding fails with one error type, a stable reason and a precise message; never otherwise."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from serde_strategies import records

from orchestrator.engine.events import EVENT_TYPES, TimerFired
from orchestrator.serde import (
    ActivityTask,
    CancelWorkflow,
    Decoded,
    DecodeFailure,
    RecordDecodeError,
    Reply,
    StartWorkflow,
    WireFormat,
    WorkflowSnapshot,
)
from orchestrator.serde.wire import COMMAND_FAMILIES

WIRE = WireFormat()
CANCEL = WIRE.encode_command(CancelWorkflow(workflow_id="w", reason="because"))


def _headers(**overrides: bytes | None) -> list[tuple[str, bytes | None]]:
    base: dict[str, bytes | None] = dict(CANCEL.headers)
    base.update(overrides)
    return [(k, v) for k, v in base.items() if v is not None or k in overrides]


def _fails(
    headers: Any, value: bytes | None, reason: DecodeFailure, match: str
) -> RecordDecodeError:
    with pytest.raises(RecordDecodeError, match=match) as caught:
        WIRE.decode_command(headers, value)
    assert caught.value.reason is reason
    return caught.value


def test_unknown_ce_type() -> None:
    error = _fails(
        _headers(ce_type=b"saga.command.launch.v1"),
        CANCEL.value,
        DecodeFailure.UNKNOWN_TYPE,
        "no schema for ce_type 'saga.command.launch.v1'",
    )
    assert error.ce_type == "saga.command.launch.v1"
    assert str(error).startswith("unknown-type (saga.command.launch.v1): ")


def test_unversioned_ce_type() -> None:
    _fails(
        _headers(ce_type=b"com.example.start"),
        CANCEL.value,
        DecodeFailure.UNKNOWN_TYPE,
        "no schema",
    )


def test_newer_schema_version_than_this_reader_knows() -> None:
    _fails(
        _headers(ce_type=b"saga.command.cancel.v7"),
        CANCEL.value,
        DecodeFailure.UNSUPPORTED_VERSION,
        r"v7 of saga.command.cancel is not known here \(known: v1\)",
    )


def test_record_of_another_topic_on_commands() -> None:
    event = WIRE.encode_event("w", "r", TimerFired(seq=1, time=1, timer_id="t"))
    _fails(event.headers, event.value, DecodeFailure.UNKNOWN_TYPE, "do not belong here")


@pytest.mark.parametrize("header", ["ce_specversion", "ce_id", "ce_type", "ce_source"])
def test_each_required_header_is_checked(header: str) -> None:
    headers = [(k, v) for k, v in CANCEL.headers if k != header]
    _fails(headers, CANCEL.value, DecodeFailure.MISSING_HEADER, header)
    _fails(_headers(**{header: b""}), CANCEL.value, DecodeFailure.MISSING_HEADER, header)
    _fails(_headers(**{header: None}), CANCEL.value, DecodeFailure.MISSING_HEADER, header)


def test_no_headers_at_all() -> None:
    _fails(
        None,
        CANCEL.value,
        DecodeFailure.MISSING_HEADER,
        "ce_specversion, ce_id, ce_type, ce_source",
    )


def test_structured_mode_gets_a_hint() -> None:
    headers = [("content-type", b"application/cloudevents+json")]
    _fails(headers, b"{}", DecodeFailure.MISSING_HEADER, "structured mode")


def test_wrong_specversion() -> None:
    _fails(_headers(ce_specversion=b"0.3"), CANCEL.value, DecodeFailure.BAD_HEADER, "'0.3'")


def test_header_not_utf8() -> None:
    _fails(
        _headers(ce_id=b"\xff\xfe"), CANCEL.value, DecodeFailure.BAD_HEADER, "ce_id is not UTF-8"
    )


def test_json_content_type() -> None:
    _fails(
        _headers(**{"content-type": b"application/json"}),
        b'{"workflow_id": "w"}',
        DecodeFailure.UNSUPPORTED_CONTENT_TYPE,
        "application/json",
    )


def test_truncated_value() -> None:
    _fails(CANCEL.headers, CANCEL.value[:-3], DecodeFailure.TRUNCATED, "ends early")


def test_trailing_bytes_suggest_a_version_mix_up() -> None:
    _fails(CANCEL.headers, CANCEL.value + b"\x00\x00", DecodeFailure.TRAILING_BYTES, "2 bytes left")


def test_oversized_value_limit_is_configurable() -> None:
    small = WireFormat(WIRE.registry, max_record_bytes=8)
    with pytest.raises(RecordDecodeError, match="over the 8-byte limit") as caught:
        small.decode_command(CANCEL.headers, CANCEL.value)
    assert caught.value.reason is DecodeFailure.OVERSIZED


def test_tombstone() -> None:
    _fails(CANCEL.headers, None, DecodeFailure.EMPTY_VALUE, "tombstone")


def test_malformed_utf8_in_a_string_field() -> None:
    value = b"\x04\xff\xfe" + CANCEL.value[2:]
    _fails(CANCEL.headers, value, DecodeFailure.MALFORMED, "CancelWorkflow")


def test_last_header_wins_when_repeated() -> None:
    headers = [("ce_type", b"nonsense"), *CANCEL.headers]
    assert WIRE.decode_command(headers, CANCEL.value).record == CancelWorkflow(
        workflow_id="w", reason="because"
    )


# --- fuzzing ------------------------------------------------------------------------

_FAMILY_HEADERS = [
    WIRE.encode_command(StartWorkflow(workflow_id="w", workflow_type="t", task_queue="q")).headers,
    CANCEL.headers,
    WIRE.encode_event("w", "r", TimerFired(seq=1, time=1, timer_id="t")).headers,
]
_ALL_TYPES = [f"{family}.v1" for family in WIRE.registry.families()]

all_records = st.one_of(
    *(records(cls) for cls in COMMAND_FAMILIES),
    records(ActivityTask),
    records(Reply),
    records(WorkflowSnapshot),
    st.tuples(
        st.text(max_size=5),
        st.text(max_size=5),
        st.one_of(*(records(c) for c in EVENT_TYPES.values())),
    ),
)


def _decode_or_error(headers: Any, value: bytes | None) -> Decoded[Any] | RecordDecodeError:
    """The decoded record, or the RecordDecodeError; any other exception fails the test."""
    try:
        return WIRE.decode_any(headers, value)
    except RecordDecodeError as error:
        assert str(error)
        return error


def _encode(record: Any) -> tuple[list[tuple[str, bytes]], bytes]:
    if isinstance(record, tuple):
        encoded = WIRE.encode_event(*record)
    elif isinstance(record, ActivityTask):
        encoded = WIRE.encode_task(record)
    elif isinstance(record, Reply):
        encoded = WIRE.encode_reply(record)
    elif isinstance(record, WorkflowSnapshot):
        encoded = WIRE.encode_snapshot(record)
    else:
        encoded = WIRE.encode_command(record)
    return encoded.headers, encoded.value


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(ce_type=st.sampled_from(_ALL_TYPES), value=st.binary(max_size=200))
def test_random_values_only_raise_record_decode_error(ce_type: str, value: bytes) -> None:
    headers = [*CANCEL.headers, ("ce_type", ce_type.encode())]
    try:
        WIRE.decode_any(headers, value)
    except RecordDecodeError as error:
        assert error.reason in set(DecodeFailure)
        assert error.ce_type == ce_type


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(record=all_records, data=st.data())
def test_every_truncation_of_a_valid_record_is_reported(record: Any, data: st.DataObject) -> None:
    headers, value = _encode(record)
    cut = data.draw(st.integers(min_value=0, max_value=len(value) - 1))
    with pytest.raises(RecordDecodeError) as caught:
        WIRE.decode_any(headers, value[:cut])
    assert caught.value.reason in (DecodeFailure.TRUNCATED, DecodeFailure.MALFORMED)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(record=all_records, data=st.data())
def test_corrupted_records_decode_or_raise_record_decode_error(
    record: Any, data: st.DataObject
) -> None:
    headers, value = _encode(record)
    position = data.draw(st.integers(min_value=0, max_value=len(value) - 1))
    byte = data.draw(st.integers(min_value=0, max_value=255))
    corrupted = value[:position] + bytes([byte]) + value[position + 1 :]
    outcome = _decode_or_error(headers, corrupted)
    if not isinstance(outcome, RecordDecodeError):
        assert type(outcome.record) is type(record) or isinstance(record, tuple)


header_values = (
    st.none()
    | st.binary(max_size=12)
    | st.sampled_from(
        [b"1.0", b"saga.command.start.v1", b"application/avro", b"saga.history.event.v1"]
    )
)
header_names = st.sampled_from(
    ["ce_specversion", "ce_id", "ce_type", "ce_source", "content-type", "traceparent", "x"]
)


@settings(max_examples=400)
@given(
    headers=st.none() | st.lists(st.tuples(header_names, header_values), max_size=8),
    value=st.none() | st.binary(max_size=64),
)
def test_random_headers_only_raise_record_decode_error(
    headers: list[tuple[str, bytes | None]] | None, value: bytes | None
) -> None:
    outcome = _decode_or_error(headers, value)
    assert isinstance(outcome, RecordDecodeError | Decoded)


@pytest.mark.parametrize("headers", _FAMILY_HEADERS)
def test_hostile_length_prefixes_are_reported_not_allocated(
    headers: list[tuple[str, bytes]],
) -> None:
    huge = b"\xfe\xff\xff\xff\xff\xff\xff\xff\x7f"  # zig-zag varint of about 2**62
    for value in (huge, b"\x02a" + huge, b"\xff" * 11):
        with pytest.raises(RecordDecodeError):
            WIRE.decode_any(headers, value)
