"""History events: every event type round-trips, and the model cannot drift from the schema."""

from __future__ import annotations

import dataclasses
import io
import json
from typing import Any

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from serde_strategies import TEXT, records

from orchestrator.converter import Payload
from orchestrator.engine.events import (
    EVENT_TYPES,
    ActivityCompleted,
    DecisionEvent,
    Event,
    Failure,
    TimerCancelled,
)
from orchestrator.serde import SchemaError, SchemaRegistry, WireFormat, event_key
from orchestrator.serde.failures import failure_mapping
from orchestrator.serde.history import EventMapper
from orchestrator.serde.mapping import CustomMapping, named_types

WIRE = WireFormat()

events = st.one_of(*(records(cls) for cls in EVENT_TYPES.values()))


@settings(max_examples=600)
@given(workflow_id=TEXT, run_id=TEXT, event=events)
def test_every_event_type_round_trips(workflow_id: str, run_id: str, event: Event) -> None:
    encoded = WIRE.encode_event(workflow_id, run_id, event)
    decoded = WIRE.decode_event(encoded.headers, encoded.value)
    assert decoded.record.event == event
    assert type(decoded.record.event) is type(event)
    assert (decoded.record.workflow_id, decoded.record.run_id) == (workflow_id, run_id)
    assert encoded.key == event_key(workflow_id, run_id, event.seq)
    assert decoded.cloud_event.type == "saga.history.event.v7"
    assert decoded.cloud_event.id == encoded.key.decode()


@pytest.mark.parametrize("name", sorted(EVENT_TYPES))
def test_each_event_class_has_its_own_union_branch(name: str) -> None:
    schema = json.loads(
        (WIRE.registry.directory / "saga.history.event.v7.avsc").read_text(encoding="utf-8")
    )
    event_field = next(f for f in schema["fields"] if f["name"] == "event")
    branch_names = [b["name"] if isinstance(b, dict) else b for b in event_field["type"]]
    assert name in branch_names


def test_decision_events_carry_their_build_id_in_the_envelope() -> None:
    event = TimerCancelled(seq=4, time=5, build_id="build-42", timer_id="t")
    encoded = WIRE.encode_event("w", "r", event)
    datum = fastavro.schemaless_reader(
        io.BytesIO(encoded.value), WIRE.registry.reader("saga.history.event").parsed
    )
    assert isinstance(datum, dict)
    assert datum["build_id"] == "build-42"
    assert WIRE.decode_event(encoded.headers, encoded.value).record.event == event


def _envelope() -> tuple[Any, dict[str, Any], dict[type, CustomMapping]]:
    reader = SchemaRegistry().reader("saga.history.event")
    named = named_types(reader.parsed)
    return reader.parsed, named, {Failure: failure_mapping(named, {})}


def test_an_event_class_without_a_schema_branch_fails() -> None:
    @dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
    class BrandNewEvent(DecisionEvent):
        note: str

    envelope, named, custom = _envelope()
    with pytest.raises(SchemaError, match="BrandNewEvent"):
        EventMapper(envelope, named, custom, {**EVENT_TYPES, "BrandNewEvent": BrandNewEvent})


def test_a_field_added_to_an_event_without_the_schema_fails() -> None:
    @dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
    class TimerFired(Event):  # same name as the real one, one field more
        timer_id: str
        extra: int = 0

    envelope, named, custom = _envelope()
    with pytest.raises(SchemaError, match=r"TimerFired.*extra"):
        EventMapper(envelope, named, custom, {**EVENT_TYPES, "TimerFired": TimerFired})


def test_a_schema_branch_without_an_event_class_fails() -> None:
    envelope, named, custom = _envelope()
    fewer = {k: v for k, v in EVENT_TYPES.items() if k != "TimerFired"}
    with pytest.raises(SchemaError, match="schema branches without an event class"):
        EventMapper(envelope, named, custom, fewer)


def test_a_changed_field_type_fails() -> None:
    @dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
    class TimerFired(Event):
        timer_id: int

    envelope, named, custom = _envelope()
    with pytest.raises(SchemaError, match=r"TimerFired.timer_id"):
        EventMapper(envelope, named, custom, {**EVENT_TYPES, "TimerFired": TimerFired})


def test_payload_bytes_survive_exactly() -> None:
    payload = Payload({"encoding": b"binary/plain", "x": b"\x00\xff"}, bytes(range(256)))
    event = ActivityCompleted(
        seq=7, time=1_700_000_000_000, activity_seq=1, attempt=3, result=payload
    )
    encoded = WIRE.encode_event("w", "r", event)
    assert WIRE.decode_event(encoded.headers, encoded.value).record.event == event
