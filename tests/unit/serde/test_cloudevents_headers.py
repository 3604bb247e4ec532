"""CloudEvents headers: the usual ones are read in one go, anything else is checked
field by field; both give the same attributes, or the same error."""

from __future__ import annotations

import pytest

from orchestrator.serde.cloudevents import CloudEvent, parse_headers
from orchestrator.serde.errors import DecodeFailure, RecordDecodeError

BASE: list[tuple[str, bytes | None]] = [
    ("ce_specversion", b"1.0"),
    ("ce_id", b"wf/run/1"),
    ("ce_type", b"saga.history.event.v7"),
    ("ce_source", b"/saga"),
    ("content-type", b"application/avro"),
]


def _with(**changes: bytes | None) -> list[tuple[str, bytes | None]]:
    names = {k.replace("_dash_", "-"): v for k, v in changes.items()}
    kept = [(n, v) for n, v in BASE if n not in names]
    return kept + [(n, v) for n, v in names.items()]


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (BASE, CloudEvent("saga.history.event.v7", "wf/run/1", "/saga")),
        (
            [*BASE, ("traceparent", b"00-ab-cd-01"), ("tracestate", b"k=v")],
            CloudEvent("saga.history.event.v7", "wf/run/1", "/saga", "00-ab-cd-01", "k=v"),
        ),
        # a valueless optional header reads as empty, not as absent
        (
            [*BASE, ("traceparent", None)],
            CloudEvent("saga.history.event.v7", "wf/run/1", "/saga", ""),
        ),
        # content-type parameters and no content-type at all are accepted
        (
            _with(content_dash_type=b"application/avro; v=1"),
            CloudEvent("saga.history.event.v7", "wf/run/1", "/saga"),
        ),
        (BASE[:4], CloudEvent("saga.history.event.v7", "wf/run/1", "/saga")),
        # a repeated header: the last one wins
        ([*BASE, ("ce_id", b"again")], CloudEvent("saga.history.event.v7", "again", "/saga")),
        ([("x-other", b"\xff"), *BASE], CloudEvent("saga.history.event.v7", "wf/run/1", "/saga")),
    ],
)
def test_valid_headers_give_their_attributes(
    headers: list[tuple[str, bytes | None]], expected: CloudEvent
) -> None:
    assert parse_headers(headers) == expected


@pytest.mark.parametrize(
    ("headers", "failure"),
    [
        (_with(ce_specversion=b"0.3"), DecodeFailure.BAD_HEADER),
        (_with(ce_id=b""), DecodeFailure.MISSING_HEADER),
        (_with(ce_source=None), DecodeFailure.MISSING_HEADER),
        (BASE[1:], DecodeFailure.MISSING_HEADER),
        (_with(ce_id=b"\xff\xfe"), DecodeFailure.BAD_HEADER),
        (_with(ce_type=b"t" * 5000), DecodeFailure.BAD_HEADER),
        ([*BASE, ("traceparent", b"x" * 5000)], DecodeFailure.BAD_HEADER),
        ([*BASE, ("tracestate", b"\xff")], DecodeFailure.BAD_HEADER),
        (_with(content_dash_type=b"application/json"), DecodeFailure.UNSUPPORTED_CONTENT_TYPE),
        (_with(content_dash_type=None), DecodeFailure.UNSUPPORTED_CONTENT_TYPE),
    ],
)
def test_invalid_headers_say_what_is_wrong(
    headers: list[tuple[str, bytes | None]], failure: DecodeFailure
) -> None:
    with pytest.raises(RecordDecodeError) as caught:
        parse_headers(headers)
    assert caught.value.reason is failure
