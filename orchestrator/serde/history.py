"""Maps history events to the ``saga.history.HistoryEvent`` envelope and back.

The envelope carries what every event has (workflow id, run id, ``seq``, ``time``,
``build_id``); its ``event`` field is a union with one record per event class, named
``saga.history.event.<ClassName>``. Building an :class:`EventMapper` checks that
the union and :data:`~orchestrator.engine.events.EVENT_TYPES` match exactly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any, NamedTuple

from orchestrator.engine.events import EVENT_TYPES, DecisionEvent, Event
from orchestrator.serde.errors import SchemaError
from orchestrator.serde.mapping import CustomMapping, RecordMapper

EVENT_NAMESPACE = "saga.history.event"
_ENVELOPE_FIELDS = frozenset({"workflow_id", "run_id", "seq", "time", "build_id", "event"})
_BASE_FIELDS = frozenset({"seq", "time", "build_id"})


class HistoryRecord(NamedTuple):
    """One decoded history record: the event and the run it belongs to."""

    workflow_id: str
    run_id: str
    event: Event


class EventMapper:
    """Converts events of every type in EVENT_TYPES to envelope datums and back."""

    def __init__(
        self,
        envelope: Any,
        named: Mapping[str, Any],
        custom: Mapping[type, CustomMapping],
        event_types: Mapping[str, type[Event]] = EVENT_TYPES,
    ) -> None:
        names = {f["name"] for f in envelope["fields"]}
        if names != _ENVELOPE_FIELDS:
            raise SchemaError(f"HistoryEvent fields differ by {sorted(names ^ _ENVELOPE_FIELDS)}")
        branches = next(f["type"] for f in envelope["fields"] if f["name"] == "event")
        by_name = {}
        for branch in branches:
            resolved = named[branch] if isinstance(branch, str) else branch
            by_name[resolved["name"]] = resolved
        expected = {f"{EVENT_NAMESPACE}.{name}" for name in event_types}
        problems = []
        if missing := sorted(expected - set(by_name)):
            problems.append(f"event classes without a schema branch: {missing}")
        if extra := sorted(set(by_name) - expected):
            problems.append(f"schema branches without an event class: {extra}")
        if problems:
            raise SchemaError("HistoryEvent union: " + "; ".join(problems))
        self._to: dict[type[Event], tuple[str, RecordMapper[Any], bool]] = {}
        self._back: dict[str, tuple[RecordMapper[Any], bool]] = {}
        for name, cls in event_types.items():
            base = {f.name for f in fields(cls)} & _BASE_FIELDS
            if not {"seq", "time"} <= base:
                raise SchemaError(f"{name}: events need seq and time fields")
            full = f"{EVENT_NAMESPACE}.{name}"
            mapper = RecordMapper.build(cls, by_name[full], named, custom, exclude=_BASE_FIELDS)
            decision = issubclass(cls, DecisionEvent)
            self._to[cls] = (full, mapper, decision)
            self._back[full] = (mapper, decision)

    def to_avro(self, workflow_id: str, run_id: str, event: Event) -> dict[str, Any]:
        """The envelope datum of ``event``; KeyError if its class is not in the model."""
        full, mapper, decision = self._to[type(event)]
        return {
            "workflow_id": workflow_id,
            "run_id": run_id,
            "seq": event.seq,
            "time": event.time,
            "build_id": event.build_id if decision else "",  # type: ignore[attr-defined]
            "event": (full, mapper.to_avro(event)),
        }

    def from_avro(self, datum: Mapping[str, Any]) -> HistoryRecord:
        """Rebuild the record from a datum decoded with ``return_record_name=True``."""
        full, body = datum["event"]
        mapper, decision = self._back[full]
        if decision:
            event = mapper.from_avro(
                body, seq=datum["seq"], time=datum["time"], build_id=datum["build_id"]
            )
        else:
            event = mapper.from_avro(body, seq=datum["seq"], time=datum["time"])
        return HistoryRecord(datum["workflow_id"], datum["run_id"], event)
